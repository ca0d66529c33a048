//! Properties of desensitization and authorization over random records and subjects.

// Test code: a failed unwrap is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use policies::{
    Action, JsonLimits, KeyBytes, KeyError, KeyProvider, PeerIdentity, PolicySet, RecordErrorCode,
    SaltSource, Subject, canonicalize_numbers, parse_json,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const POLICY: &str = r##"
version: 1
subjects:
  bank: { match: { cn: bank }, roles: [provider] }
  reader: { match: { cn: reader }, roles: [auditor] }
record_types:
  rec:
    submit: [provider]
    read: [provider, auditor]
    subject_field: sid
    fields:
      sid:     { type: string, required: true, transform: { hash: { key: pseudonym } } }
      gone:    { type: string, transform: drop }
      hidden:  { type: string, transform: { redact: { with: "[x]" } } }
      vault:   { type: string, transform: seal }
      masked:  { type: string, transform: { mask: { keep_first: 2, keep_last: 2, char: "#" } } }
      visible: { type: string, max_length: 256, transform: keep }
      n:       { type: integer, transform: { generalize: { bucket: 10 } } }
      d:       { type: date, transform: { truncate: { to: month } } }
      ts:      { type: timestamp, transform: { truncate: { to: hour } } }
      inner:
        type: object
        transform: keep
        fields:
          secret: { type: string, transform: drop }
          open:   { type: string, transform: keep }
      list:    { type: array, items: string, transform: { mask: { keep_last: 1 } } }
  other:
    submit: [provider]
    read: [auditor]
    subject_field: sid
    fields:
      sid: { type: string, required: true, transform: keep }
  nums:
    submit: [provider]
    subject_field: sid
    fields:
      sid: { type: string, required: true, transform: keep }
      h:   { type: number, transform: { hash: { key: pseudonym } } }
      k:   { type: number, transform: keep }
      g:   { type: integer, transform: { generalize: { bucket: 10 } } }
      s:   { type: number, transform: seal }
      i:   { type: integer, transform: keep }
"##;

fn policy() -> PolicySet {
    PolicySet::from_yaml(Path::new("props.yaml"), POLICY).unwrap()
}

/// Keys whose bytes depend on the version, so that versions differ.
struct Keys {
    version: u32,
}
impl KeyProvider for Keys {
    fn current(&self, name: &str) -> Result<(u32, KeyBytes), KeyError> {
        Ok((self.version, self.version(name, self.version)?))
    }
    fn version(&self, _: &str, v: u32) -> Result<KeyBytes, KeyError> {
        Ok(KeyBytes::new(vec![u8::try_from(v % 251).unwrap_or(0); 32]))
    }
}
struct Salts(u8);
impl SaltSource for Salts {
    fn fill(&mut self, s: &mut [u8]) {
        self.0 = self.0.wrapping_add(1);
        s.fill(self.0);
    }
}

fn subject(p: &PolicySet, cn: &str) -> Subject {
    p.identify(&PeerIdentity {
        cn: Some(cn.into()),
        ..Default::default()
    })
    .unwrap()
    .clone()
}

/// Another spelling of the same number: a trailing zero in the fraction (or `.0` added).
fn respell(text: &str) -> String {
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, format!("e{e}")),
        None => (text, String::new()),
    };
    if mantissa.contains('.') {
        format!("{mantissa}0{exponent}")
    } else {
        format!("{mantissa}.0{exponent}")
    }
}

/// A secret that cannot appear by accident: a marker no transform output contains, and random letters.
fn secret() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]{6,24}".prop_map(|s| format!("§{s}§"))
}

fn date() -> impl Strategy<Value = (i32, u8, u8)> {
    (1900i32..2100, 1u8..=12, 1u8..=28)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn nothing_dropped_redacted_sealed_or_masked_away_reaches_the_payload(
        sid in secret(), gone in secret(), hidden in secret(), vault in secret(), middle in secret(),
        inner_secret in secret(), open in "[a-z]{0,12}", n in any::<i32>(), (y, m, dd) in date(),
        hour in 0u8..24, list in prop::collection::vec(secret(), 0..4),
    ) {
        let p = policy();
        let rt = p.authorize(&subject(&p, "bank"), Action::Submit, "rec").unwrap();
        let masked = format!("ab{middle}yz");
        let fields = json!({
            "sid": sid, "gone": gone, "hidden": hidden, "vault": vault, "masked": masked, "visible": "ok",
            "n": n, "d": format!("{y:04}-{m:02}-{dd:02}"), "ts": format!("{y:04}-{m:02}-{dd:02}T{hour:02}:17:59.25+01:30"),
            "inner": { "secret": inner_secret, "open": open }, "list": list,
        });
        let out = p.desensitize(rt, &fields, &Keys { version: 1 }, &mut Salts(0)).unwrap();
        let text = Value::Object(out.payload.clone()).to_string();
        for s in [&sid, &gone, &hidden, &vault, &middle, &inner_secret] {
            prop_assert!(!text.contains(s.as_str()), "{s} leaked into {text}");
        }
        for item in &list {
            // Everything but the last character of each item is masked away.
            let head: String = item.chars().take(item.chars().count() - 1).collect();
            prop_assert!(!text.contains(&head), "{head} leaked into {text}");
        }
        // Masks keep the length in characters and only the promised characters.
        let want = format!("ab{}yz", "#".repeat(middle.chars().count()));
        prop_assert_eq!(out.payload["masked"].as_str(), Some(want.as_str()));
        // The sealed value went to the vault, and the payload keeps its commitment.
        prop_assert_eq!(out.sealed.len(), 1);
        let sealed_json = serde_json::to_vec(&vault).unwrap();
        prop_assert_eq!(out.sealed[0].value.as_slice(), sealed_json.as_slice());
        prop_assert_eq!(out.payload["vault"].as_str().unwrap(), policies::commitment_text(&out.sealed[0].commitment));
        prop_assert_eq!(&out.subject, &sid);
    }

    #[test]
    fn outputs_are_valid_for_their_declared_types(n in any::<i32>(), (y, m, dd) in date(), hour in 0u8..24, off in -14i8..=14) {
        let p = policy();
        let rt = p.authorize(&subject(&p, "bank"), Action::Submit, "rec").unwrap();
        let ts = format!("{y:04}-{m:02}-{dd:02}T{hour:02}:42:07{}{:02}:00", if off < 0 { '-' } else { '+' }, off.unsigned_abs());
        let fields = json!({ "sid": "s", "n": n, "d": format!("{y:04}-{m:02}-{dd:02}"), "ts": ts });
        let out = p.desensitize(rt, &fields, &Keys { version: 1 }, &mut Salts(0)).unwrap();
        // generalize: "lo-hi", a bucket of width 10 holding n.
        let bucket = out.payload["n"].as_str().unwrap();
        let (lo, hi) = bucket.split_at(bucket[1..].find('-').unwrap() + 1);
        let (lo, hi): (i64, i64) = (lo.parse().unwrap(), hi[1..].parse().unwrap());
        prop_assert!(lo <= i64::from(n) && i64::from(n) <= hi && hi - lo == 9 && lo.rem_euclid(10) == 0);
        // truncate: still a valid date / timestamp, cut where promised.
        let d = out.payload["d"].as_str().unwrap();
        prop_assert_eq!(d, format!("{y:04}-{m:02}-01"));
        let t = out.payload["ts"].as_str().unwrap();
        let parsed = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap();
        prop_assert_eq!((parsed.minute(), parsed.second(), parsed.nanosecond()), (0, 0, 0));
        prop_assert!(t.ends_with('Z'));
    }

    #[test]
    fn pseudonyms_are_stable_per_key_version_and_change_with_it(sid in "[ -~]{1,40}", v in 1u32..1000) {
        let p = policy();
        let rt = p.authorize(&subject(&p, "bank"), Action::Submit, "rec").unwrap();
        let run = |version: u32| {
            let out = p.desensitize(rt, &json!({ "sid": sid }), &Keys { version }, &mut Salts(0)).unwrap();
            (out.payload["sid"].as_str().unwrap().to_owned(), out.key_refs)
        };
        let (a, refs) = run(v);
        let (b, _) = run(v);
        let (c, _) = run(v + 1);
        prop_assert_eq!(&a, &b);
        let tag = format!("v{v}:");
        prop_assert!(a.starts_with(&tag));
        prop_assert_ne!(&a, &c);
        prop_assert_eq!(refs.iter().map(ToString::to_string).collect::<Vec<_>>(), vec![format!("pseudonym@{v}")]);
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow(depth in 33usize..10_000) {
        let doc = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let err = parse_json(doc.as_bytes(), JsonLimits { max_bytes: 1 << 20, max_depth: 32 }).unwrap_err();
        prop_assert_eq!(err.code, RecordErrorCode::MalformedJson);
    }

    #[test]
    fn huge_strings_are_refused_and_not_echoed(len in 257usize..2_000_000) {
        let p = policy();
        let rt = p.authorize(&subject(&p, "bank"), Action::Submit, "rec").unwrap();
        let huge = "Z".repeat(len);
        let err = p.desensitize(rt, &json!({ "sid": "s", "visible": huge }), &Keys { version: 1 }, &mut Salts(0)).unwrap_err();
        prop_assert_eq!(err.code, RecordErrorCode::InvalidField);
        prop_assert_eq!(err.to_string(), "visible: longer than 256 characters");
        // And at the JSON layer, before any of that, the byte limit holds.
        let doc = format!("{{\"visible\":\"{huge}\"}}");
        let err = parse_json(doc.as_bytes(), JsonLimits { max_bytes: 64 * 1024, max_depth: 32 });
        prop_assert_eq!(err.map(|_| ()).map_err(|e| e.code), if doc.len() > 64 * 1024 { Err(RecordErrorCode::PayloadTooLarge) } else { Ok(()) });
    }

    #[test]
    fn authorization_is_default_deny(roles in prop::collection::btree_set("[a-z-]{1,12}", 0..5), ty in "[a-z_]{1,12}") {
        prop_assume!(!roles.contains("provider") && !roles.contains("auditor"));
        let p = policy();
        let s = Subject { name: "x".into(), matcher: Default::default(), roles };
        for action in [Action::Submit, Action::Read] {
            for t in ["rec", "other", ty.as_str()] {
                prop_assert_eq!(p.authorize(&s, action, t).unwrap_err().code, RecordErrorCode::Forbidden);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// However a number is spelled, the canonical record, its pseudonyms, commitments, kept values and
    /// generalisations are the same.
    #[test]
    fn spellings_of_a_number_desensitize_alike(x in any::<f64>().prop_filter("finite", |f| f.is_finite()), n in any::<i32>()) {
        let p = policy();
        let rt = p.authorize(&subject(&p, "bank"), Action::Submit, "nums").unwrap();
        let xs = serde_json::Number::from_f64(x).unwrap().to_string();
        let ns = n.to_string();
        let record = |x: &str, n: &str| {
            let text = format!(r#"{{"sid":"s","h":{x},"k":{x},"s":{x},"g":{n},"i":{n}}}"#);
            let mut v = parse_json(text.as_bytes(), JsonLimits::default()).unwrap();
            canonicalize_numbers(rt, &mut v).unwrap();
            let out = p.desensitize(rt, &v, &Keys { version: 1 }, &mut Salts(0)).unwrap();
            (v, out.payload, out.sealed[0].value.to_vec())
        };
        let plain = record(&xs, &ns);
        let other = record(&respell(&xs), &respell(&ns));
        prop_assert_eq!(&plain, &other);
        // And the canonical value is the number itself.
        prop_assert_eq!(plain.0["k"].as_f64(), Some(if x == 0.0 { 0.0 } else { x }));
        prop_assert_eq!(plain.0["i"].as_i64(), Some(i64::from(n)));
    }
}

#[test]
fn record_errors_carry_the_contract_codes() {
    let p = policy();
    let bank = subject(&p, "bank");
    let rt = p.authorize(&bank, Action::Submit, "rec").unwrap();
    let run = |fields: Value| {
        p.desensitize(rt, &fields, &Keys { version: 1 }, &mut Salts(0))
            .unwrap_err()
    };
    let cases = [
        (
            run(json!({ "sid": "s", "colour": "red" })),
            RecordErrorCode::UnknownField,
            "colour: not declared by the record type",
        ),
        (
            run(json!({ "sid": "s", "inner": { "x": 1 } })),
            RecordErrorCode::UnknownField,
            "inner.x: not declared by the record type",
        ),
        (
            run(json!({ "gone": "g" })),
            RecordErrorCode::MissingField,
            "sid: required",
        ),
        (
            run(json!({ "sid": "s", "n": "seven" })),
            RecordErrorCode::InvalidField,
            "n: expected an integer",
        ),
        (
            run(json!({ "sid": "s", "d": "2026-02-30" })),
            RecordErrorCode::InvalidField,
            "d: expected a date (RFC 3339 full-date, YYYY-MM-DD)",
        ),
        (
            run(json!({ "sid": "s", "list": ["a", 2] })),
            RecordErrorCode::InvalidField,
            "list[1]: expected a string",
        ),
        (
            run(json!([1, 2])),
            RecordErrorCode::InvalidField,
            "fields: expected an object",
        ),
    ];
    for (err, code, text) in cases {
        assert_eq!((err.code, err.to_string()), (code, text.to_owned()));
    }
    assert_eq!(
        p.authorize(&bank, Action::Submit, "nope").unwrap_err().code,
        RecordErrorCode::UnknownRecordType
    );
    assert_eq!(
        p.authorize(&bank, Action::Read, "other").unwrap_err().code,
        RecordErrorCode::Forbidden
    );
    let stranger = p
        .identify(&PeerIdentity {
            cn: Some("mallory".into()),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(
        (stranger.code, stranger.to_string()),
        (
            RecordErrorCode::Forbidden,
            "the certificate matches no subject of the policy".to_owned()
        )
    );
}

#[test]
fn a_key_with_no_usable_version_is_key_revoked() {
    struct Revoked;
    impl KeyProvider for Revoked {
        fn current(&self, name: &str) -> Result<(u32, KeyBytes), KeyError> {
            Err(KeyError::NoUsableVersion(name.into()))
        }
        fn version(&self, name: &str, _: u32) -> Result<KeyBytes, KeyError> {
            Err(KeyError::NoUsableVersion(name.into()))
        }
    }
    let p = policy();
    let rt = p
        .authorize(&subject(&p, "bank"), Action::Submit, "rec")
        .unwrap();
    let err = p
        .desensitize(rt, &json!({ "sid": "s" }), &Revoked, &mut Salts(0))
        .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.to_string()),
        (
            "key_revoked",
            "sid: key `pseudonym` has no usable version".to_owned()
        )
    );
}

/// Any small JSON value: what a client may put where a field is expected.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-z0-9:T.+-]{0,12}".prop_map(Value::from),
        (1990i32..2030, 1u8..=12, 1u8..=28)
            .prop_map(|(y, m, d)| json!(format!("{y:04}-{m:02}-{d:02}"))),
        Just(json!("2026-05-01T10:17:59Z")),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("secret|open|x", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// An edge's check refuses exactly what the ledger node's desensitization would refuse for the
    /// same reason (same code and path), and passes everything the ledger node accepts.
    #[test]
    fn validation_without_keys_agrees_with_desensitization(
        fields in prop::collection::btree_map(
            "sid|gone|hidden|vault|masked|visible|n|d|ts|inner|list|extra", any_json(), 0..12),
    ) {
        let p = policy();
        let rt = p.authorize(&subject(&p, "bank"), Action::Submit, "rec").unwrap();
        let fields = Value::Object(fields.into_iter().collect());
        let checked = p.validate(rt, &fields);
        let desensitized = p.desensitize(rt, &fields, &Keys { version: 1 }, &mut Salts(0));
        match (&checked, &desensitized) {
            (Err(a), Err(b)) => prop_assert_eq!((a.code, &a.path), (b.code, &b.path)),
            (Err(a), Ok(_)) => prop_assert!(false, "the check refused {a:?}, the ledger accepts"),
            // What passes the check can fail only in a transform, never on the schema.
            (Ok(()), Err(e)) => prop_assert_eq!(e.code, RecordErrorCode::InvalidField),
            (Ok(()), Ok(_)) => {}
        }
    }
}
