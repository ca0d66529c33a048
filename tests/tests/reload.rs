//! Changing certificates, CRLs and policies of a running gateway, by SIGHUP or the admin API.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use e2e::eventually;
use e2e::node::{Node, init_node};
use rcgen::{
    CertificateRevocationListParams, Issuer, KeyIdMethod, KeyPair, RevokedCertParams, SerialNumber,
};
use serde_json::{Value, json};

fn loan(id: &str) -> Vec<u8> {
    json!({ "type": "loan_application", "id": id, "fields": { "applicant_id": "P-1", "phone": "+49 170 1234567", "amount": 1, "currency": "EUR" } })
        .to_string()
        .into_bytes()
}

#[test]
fn a_certificate_added_to_the_crl_is_refused_after_sighup() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&init_node(tmp.path()));
    let b = node.client("provider-b");
    assert_eq!(
        b.request(node.addr, "POST", "/v1/records", Some(&loan("C-1")))
            .unwrap()
            .status,
        201
    );

    // A new CRL, signed by the node's CA, that also lists provider-b (serial 11; `revoked` is 13).
    let pki = node.dir.join("pki");
    let key = KeyPair::from_pem(&std::fs::read_to_string(pki.join("ca.key")).unwrap()).unwrap();
    let issuer =
        Issuer::from_ca_cert_pem(&std::fs::read_to_string(pki.join("ca.pem")).unwrap(), key)
            .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let revoked = |serial: u64| RevokedCertParams {
        serial_number: SerialNumber::from(serial),
        revocation_time: now - time::Duration::minutes(5),
        reason_code: Some(rcgen::RevocationReason::KeyCompromise),
        invalidity_date: None,
    };
    let crl = CertificateRevocationListParams {
        this_update: now - time::Duration::minutes(5),
        next_update: now + time::Duration::days(7),
        crl_number: SerialNumber::from(2u64),
        issuing_distribution_point: None,
        revoked_certs: vec![revoked(13), revoked(11)],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .unwrap();
    std::fs::write(pki.join("crl.pem"), crl.pem().unwrap()).unwrap();
    node.signal("HUP");

    let err = eventually("the new CRL to be in force", || {
        b.request(node.addr, "GET", "/v1/checkpoint", None).err()
    });
    assert!(err.contains("CertificateRevoked"), "{err}");
    let a = node
        .client("provider-a")
        .request(node.addr, "POST", "/v1/records", Some(&loan("C-2")))
        .unwrap();
    assert_eq!(a.status, 201, "others are unaffected: {}", a.text());
}

#[test]
fn a_broken_policy_on_reload_changes_nothing_and_a_good_one_applies_to_new_records() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&init_node(tmp.path()));
    let (a, officer) = (node.client("provider-a"), node.client("officer"));
    let first = a
        .request(node.addr, "POST", "/v1/records", Some(&loan("R-1")))
        .unwrap();
    assert_eq!(first.status, 201);
    let read = |id: &str| {
        a.request(node.addr, "GET", &format!("/v1/records/{id}"), None)
            .unwrap()
            .json()
    };
    let old_digest = read("R-1")["record"]["policy"].clone();

    let finance = node.dir.join("policies/finance.yaml");
    let good = std::fs::read_to_string(&finance).unwrap();
    std::fs::write(
        &finance,
        good.replace(
            "transform: { mask: { keep_last: 4 } }",
            "transform: { mask: { keep_last: 4 }, drop: {} }",
        ),
    )
    .unwrap();
    let refused = officer
        .request(node.addr, "POST", "/admin/v1/reload", None)
        .unwrap();
    assert_eq!(
        (refused.status, refused.json()["code"].as_str()),
        (422, Some("reload_failed")),
        "{}",
        refused.text()
    );
    let detail = refused.json()["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.starts_with("nothing changed; ")
            && detail.contains("finance.yaml:12:")
            && detail.contains("multiple_transforms"),
        "{detail}"
    );
    // Still the old policy: the phone is masked, and the digest is the old one.
    assert_eq!(
        a.request(node.addr, "POST", "/v1/records", Some(&loan("R-2")))
            .unwrap()
            .status,
        201
    );
    let r2: Value = read("R-2");
    assert_eq!(
        (
            r2["record"]["policy"].clone(),
            r2["record"]["payload"]["phone"].as_str()
        ),
        (old_digest.clone(), Some("***********4567"))
    );

    // A good change: phones are dropped from now on; records already written keep what they had.
    std::fs::write(
        &finance,
        good.replace("transform: { mask: { keep_last: 4 } }", "transform: drop"),
    )
    .unwrap();
    let ok = officer
        .request(node.addr, "POST", "/admin/v1/reload", None)
        .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
    let new_digest = ok.json()["policy"].clone();
    assert_ne!(new_digest, old_digest);
    assert_eq!(
        a.request(node.addr, "POST", "/v1/records", Some(&loan("R-3")))
            .unwrap()
            .status,
        201
    );
    let r3 = read("R-3");
    assert_eq!(r3["record"]["policy"], new_digest);
    assert!(r3["record"]["payload"].get("phone").is_none());
    assert_eq!(read("R-1")["record"]["payload"]["phone"], "***********4567");
    // Only officers may reload.
    let provider = a
        .request(node.addr, "POST", "/admin/v1/reload", None)
        .unwrap();
    assert_eq!(provider.status, 403);
}
