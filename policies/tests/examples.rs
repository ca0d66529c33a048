//! The shipped example policies load, and behave as their comments say.

// Test code: a failed unwrap is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use policies::{
    Action, KeyBytes, KeyError, KeyProvider, PeerIdentity, PolicySet, RecordErrorCode, SaltSource,
};
use serde_json::json;

struct Keys;
impl KeyProvider for Keys {
    fn current(&self, _: &str) -> Result<(u32, KeyBytes), KeyError> {
        Ok((1, KeyBytes::new(vec![9; 32])))
    }
    fn version(&self, _: &str, _: u32) -> Result<KeyBytes, KeyError> {
        Ok(KeyBytes::new(vec![9; 32]))
    }
}
struct Salts;
impl SaltSource for Salts {
    fn fill(&mut self, s: &mut [u8]) {
        s.fill(3);
    }
}

fn examples() -> PolicySet {
    PolicySet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")).unwrap()
}

fn provider(name: &str) -> PeerIdentity {
    PeerIdentity {
        san_uris: vec![format!("spiffe://ledgergate.local/provider/{name}")],
        cn: Some(name.into()),
        ..Default::default()
    }
}

#[test]
fn the_example_directory_loads_as_one_policy() {
    let p = examples();
    assert_eq!(
        p.record_types().keys().collect::<Vec<_>>(),
        ["lab_result", "loan_application"]
    );
    assert_eq!(p.subjects().len(), 4);
    assert_eq!(
        p.record_types()["lab_result"].unseal,
        ["registry".to_owned()].into_iter().collect()
    );
    assert!(p.record_types()["loan_application"].unseal.is_empty());
    assert_eq!(p.digest_hex().len(), 64);
    // The digest is of the meaning: loading again gives the same one.
    assert_eq!(p.digest(), examples().digest());
}

#[test]
fn a_loan_application_is_desensitized_field_by_field() {
    let p = examples();
    let s = p.identify(&provider("provider-a")).unwrap();
    let rt = p.authorize(s, Action::Submit, "loan_application").unwrap();
    let fields = json!({
        "applicant_id": "A-1001", "name": "Erika Mustermann", "phone": "+49 170 1234567",
        "email": "erika@example.org", "age": 37, "birth_date": "1987-06-15", "salary": 52000.5,
        "amount": 250000, "currency": "EUR", "term_months": 240, "submitted_at": "2026-11-24T10:15:00+01:00",
        "address": { "street": "Hauptstr. 1", "city": "Berlin", "zip": "10115" }, "tags": ["first-home"]
    });
    let out = p.desensitize(rt, &fields, &Keys, &mut Salts).unwrap();
    let payload = serde_json::Value::Object(out.payload.clone());
    assert_eq!(payload["phone"], "***********4567");
    assert_eq!(payload["email"], "[email]");
    assert_eq!(payload["age"], "30-39");
    assert_eq!(payload["birth_date"], "1987-01-01");
    assert_eq!(payload["submitted_at"], "2026-11-24T00:00:00Z");
    assert_eq!(
        payload["address"],
        json!({ "city": "Berlin", "zip": "10***" })
    );
    assert!(payload.get("name").is_none());
    assert!(
        payload["salary"]
            .as_str()
            .unwrap()
            .starts_with("sealed:sha256:")
    );
    assert_eq!(out.sealed.len(), 1);
    assert_eq!(out.sealed[0].path, "salary");
    assert_eq!(out.subject, "A-1001");
    assert_eq!(
        out.key_refs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["pseudonym@1"]
    );
    let text = payload.to_string();
    for secret in [
        "Erika",
        "Mustermann",
        "erika@example.org",
        "1987-06-15",
        "52000.5",
        "Hauptstr",
        "A-1001",
        "170 123",
    ] {
        assert!(!text.contains(secret), "{secret} leaked into {text}");
    }
}

#[test]
fn lab_results_drop_unknown_fields_and_officers_may_read_but_not_submit() {
    let p = examples();
    let officer = p
        .identify(&PeerIdentity {
            cn: Some("officer".into()),
            ..Default::default()
        })
        .unwrap();
    assert!(p.authorize(officer, Action::Read, "lab_result").is_ok());
    assert_eq!(
        p.authorize(officer, Action::Submit, "lab_result")
            .unwrap_err()
            .code,
        RecordErrorCode::Forbidden
    );
    let s = p.identify(&provider("provider-b")).unwrap();
    let rt = p.authorize(s, Action::Submit, "lab_result").unwrap();
    let fields = json!({
        "patient_id": "P-9", "birth_date": "1950-02-03", "test_code": "HBA1C", "value": 6.1,
        "collected_at": "2026-11-24T08:42:10Z", "lab_internal_ref": "XYZ-123"
    });
    let out = p.desensitize(rt, &fields, &Keys, &mut Salts).unwrap();
    assert!(!out.payload.contains_key("lab_internal_ref"));
    assert_eq!(out.payload["collected_at"], "2026-11-24T08:00:00Z");
}
