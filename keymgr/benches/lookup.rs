//! The hot-path key lookup (the primary of a name, as every submission asks for it), against a baseline
//! measured in the same run: a plain `HashMap` lookup with an `Arc` clone, the least any cache can cost.
//!
//! Run: `cargo bench -p keymgr --bench lookup`. Target: ≤ 1 µs per lookup.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss
)]
#![allow(clippy::indexing_slicing)] // a benchmark: fixed, known sizes

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use keymgr::{KekSource, KeyManager, Purpose, Secret};

const NOW: i64 = 1_800_000_000;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn ns_per_op(n: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let kek = KekSource::Passphrase(Secret::new(b"benchmark passphrase".to_vec()));
    let m = KeyManager::init(&dir.path().join("keys"), &kek, NOW, "bench").unwrap();
    for i in 0..50 {
        m.create(
            &format!("key-{i}"),
            Purpose::Pseudonym,
            None,
            None,
            NOW,
            "bench",
        )
        .unwrap();
    }
    m.create("pseudonym", Purpose::Pseudonym, None, None, NOW, "bench")
        .unwrap();
    let first = m.primary("pseudonym", NOW).unwrap(); // fills the cache
    let map: HashMap<String, Arc<Secret>> = (0..51)
        .map(|i| {
            (
                if i == 50 {
                    "pseudonym".to_owned()
                } else {
                    format!("key-{i}")
                },
                Arc::new(Secret::new(vec![1; 32])),
            )
        })
        .collect();

    let n = 2_000_000;
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        base.push(ns_per_op(n, || {
            black_box(Arc::clone(map.get(black_box("pseudonym")).unwrap()));
        }));
        ours.push(ns_per_op(n, || {
            black_box(m.primary(black_box("pseudonym"), NOW).unwrap());
        }));
    }
    // A cold lookup (after a change dropped the cache entry): store read, JSON decode, unwrap.
    let cold = ns_per_op(200, || {
        m.rotate("key-0", NOW, "bench").unwrap();
        black_box(m.primary("key-0", NOW).unwrap());
    });
    let (o, b) = (median(ours), median(base));
    println!("keymgr hot-path lookup (primary of a name), 51 keys in the store");
    println!("   cached primary():            {o:>8.1} ns");
    println!(
        "   baseline HashMap + Arc:      {b:>8.1} ns   (ratio {:.1}x)",
        o / b
    );
    println!(
        "   rotate + cold primary():     {:>8.1} µs   (for scale: a change and a re-read)",
        cold / 1000.0
    );
    println!(
        "   target cached <= 1 µs: {}",
        if o <= 1000.0 {
            "meets target"
        } else {
            "MISSES target"
        }
    );
    black_box(first);
}
