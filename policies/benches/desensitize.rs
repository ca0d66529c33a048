//! Desensitization throughput against its baseline, in one run.
//!
//! Run: `cargo bench -p policies`.
//!
//! Ours: a ~1 KiB record of 12 fields with mixed transforms, taken as the gateway takes it: bounded JSON
//! parse, validation, desensitization (HMAC pseudonym, mask, redact, generalize, truncate, seal) and the
//! payload serialised. Baseline: `serde_json` parsing the same bytes into a `Value` and serialising it.
//! Both single-threaded, so records/s is per core.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss
)]
#![allow(clippy::indexing_slicing, clippy::cast_possible_truncation)] // a benchmark: fixed, known sizes

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use policies::{
    Action, JsonLimits, KeyBytes, KeyError, KeyProvider, PeerIdentity, PolicySet, SaltSource,
    canonicalize_numbers, parse_json,
};

const POLICY: &str = r#"
version: 1
subjects:
  bank: { match: { cn: bank }, roles: [provider] }
record_types:
  loan_application:
    submit: [provider]
    read: [provider]
    subject_field: applicant_id
    fields:
      applicant_id: { type: string, required: true, transform: { hash: { key: pseudonym } } }
      name:         { type: string, transform: drop }
      phone:        { type: string, transform: { mask: { keep_last: 4 } } }
      email:        { type: string, transform: { redact: { with: "[email]" } } }
      age:          { type: integer, transform: { generalize: { bucket: 10 } } }
      birth_date:   { type: date, transform: { truncate: { to: year } } }
      salary:       { type: number, transform: seal }
      amount:       { type: number, required: true, min: 0, transform: keep }
      currency:     { type: string, enum: [EUR, USD, GBP], transform: keep }
      term_months:  { type: integer, min: 1, max: 480, transform: keep }
      submitted_at: { type: timestamp, transform: { truncate: { to: day } } }
      notes:        { type: string, max_length: 2000, transform: keep }
"#;

struct Keys(KeyBytes);
impl KeyProvider for Keys {
    fn current(&self, _: &str) -> Result<(u32, KeyBytes), KeyError> {
        Ok((7, self.0.clone()))
    }
    fn version(&self, _: &str, _: u32) -> Result<KeyBytes, KeyError> {
        Ok(self.0.clone())
    }
}

/// A cheap deterministic salt stream: the benchmark measures our code, not the system's RNG.
struct Salts(u64);
impl SaltSource for Salts {
    fn fill(&mut self, s: &mut [u8]) {
        for b in s.iter_mut() {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (self.0 >> 56) as u8;
        }
    }
}

fn record() -> Vec<u8> {
    let notes = "Applicant requests a fixed-rate mortgage for a first home; documents verified by branch 0412. ".repeat(8);
    serde_json::to_vec(&serde_json::json!({
        "applicant_id": "A-1001-7734-XK", "name": "Erika Mustermann", "phone": "+49 170 1234567",
        "email": "erika.mustermann@example.org", "age": 37, "birth_date": "1987-06-15", "salary": 52000.5,
        "amount": 250000, "currency": "EUR", "term_months": 240, "submitted_at": "2026-11-24T10:15:00+01:00",
        "notes": notes,
    }))
    .unwrap()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn rate(iterations: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..iterations / 10 {
        f(); // warm up
    }
    let t = Instant::now();
    for _ in 0..iterations {
        f();
    }
    iterations as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let policy = PolicySet::from_yaml(Path::new("bench.yaml"), POLICY).unwrap();
    let subject = policy
        .identify(&PeerIdentity {
            cn: Some("bank".into()),
            ..Default::default()
        })
        .unwrap();
    let rt = policy
        .authorize(subject, Action::Submit, "loan_application")
        .unwrap();
    let keys = Keys(KeyBytes::new(vec![0x5a; 32]));
    let mut salts = Salts(1);
    let bytes = record();
    let limits = JsonLimits::default();
    println!(
        "policies benchmark: {}-byte record, 12 fields, mixed transforms, one core",
        bytes.len()
    );

    let n = 200_000;
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        // Alternate, so that neither always runs on the warmer or the quieter machine.
        base.push(rate(n, || {
            let v: serde_json::Value = serde_json::from_slice(black_box(&bytes)).unwrap();
            black_box(serde_json::to_vec(&v).unwrap());
        }));
        ours.push(rate(n, || {
            let mut v = parse_json(black_box(&bytes), limits).unwrap();
            canonicalize_numbers(rt, &mut v).unwrap();
            let out = policy.desensitize(rt, &v, &keys, &mut salts).unwrap();
            black_box(serde_json::to_vec(&out.payload).unwrap());
            black_box(out.sealed);
        }));
    }
    let (o, b) = (median(ours), median(base));
    println!("   desensitize (parse + check + transform + serialise): {o:>10.0} records/s");
    println!("   baseline serde_json parse + serialise:               {b:>10.0} records/s");
    println!("   time ratio ours/baseline: {:.2}x", b / o);
    let ok = o >= 100_000.0 && b / o <= 3.0;
    println!(
        "   target >= 100000 records/s per core and <= 3x the baseline's time: {}",
        if ok { "meets target" } else { "MISSES target" }
    );
}
