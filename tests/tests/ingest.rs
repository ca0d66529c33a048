//! Submitting records to a running gateway over mTLS: the real binary, a real TLS client.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use e2e::client::Client;
use e2e::node::{Node, init_node};
use gateway::ledger::{Hash, NoteVerifier, SignedCheckpoint, leaf_hash, verify_inclusion};
use rcgen::{CertificateParams, DistinguishedName, DnType, Issuer, KeyPair, SanType};
use serde_json::{Value, json};

fn loan(id: &str) -> Value {
    json!({ "type": "loan_application", "id": id, "fields": {
        "applicant_id": "A-1001", "name": "Erika Mustermann", "phone": "+49 170 1234567", "age": 37,
        "birth_date": "1987-06-15", "salary": 52000.5, "amount": 250000, "currency": "EUR" } })
}

fn post(c: &Client, n: &Node, body: &[u8]) -> e2e::client::Answer {
    c.request(n.addr, "POST", "/v1/records", Some(body))
        .unwrap()
}

/// A client certificate made here: signed by the node's CA (`ca = true`) or a stranger's, valid or not.
fn minted(node: &Node, cn: &str, uri: Option<&str>, node_ca: bool, expired: bool) -> Client {
    let pki = node.dir.join("pki");
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    if let Some(u) = uri {
        p.subject_alt_names = vec![SanType::URI(u.try_into().unwrap())];
    }
    let now = time::OffsetDateTime::now_utc();
    (p.not_before, p.not_after) = if expired {
        (
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        )
    } else {
        (
            now - time::Duration::days(1),
            now + time::Duration::days(30),
        )
    };
    let pem = if node_ca {
        let ca_key =
            KeyPair::from_pem(&std::fs::read_to_string(pki.join("ca.key")).unwrap()).unwrap();
        let issuer = Issuer::from_ca_cert_pem(
            &std::fs::read_to_string(pki.join("ca.pem")).unwrap(),
            ca_key,
        )
        .unwrap();
        p.signed_by(&key, &issuer).unwrap().pem()
    } else {
        let other_key = KeyPair::generate().unwrap();
        let mut other = CertificateParams::default();
        other.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        other
            .distinguished_name
            .push(DnType::CommonName, "Some other CA");
        let issuer = Issuer::new(other, other_key);
        p.signed_by(&key, &issuer).unwrap().pem()
    };
    Client::from_pem(&pki.join("ca.pem"), Some((&pem, &key.serialize_pem())))
}

#[test]
fn a_record_round_trips_and_its_proof_verifies_against_the_signed_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&init_node(tmp.path()));
    let a = node.client("provider-a");
    let body = serde_json::to_vec(&loan("A-1001")).unwrap();
    let first = post(&a, &node, &body);
    assert_eq!(first.status, 201, "{}", first.text());
    let again = post(&a, &node, &body);
    assert_eq!(
        (again.status, again.json()),
        (200, first.json()),
        "a retry gets the original receipt"
    );

    let read = a
        .request(node.addr, "GET", "/v1/records/A-1001", None)
        .unwrap();
    assert_eq!(read.status, 200, "{}", read.text());
    let r = read.json();
    let payload = &r["record"]["payload"];
    assert_eq!(
        (payload["phone"].as_str(), payload["age"].as_str()),
        (Some("***********4567"), Some("30-39"))
    );
    assert!(payload.get("name").is_none());
    assert_eq!(
        r["sealed"]["salary"],
        json!({ "status": "sealed", "value": 52000.5 })
    );
    for secret in ["Erika", "Mustermann", "1987-06-15", "52000.5", "170 123"] {
        assert!(
            !r["record"].to_string().contains(secret),
            "{secret} reached the ledger entry"
        );
    }

    // The client-side check: the note is signed by the node's key, and the entry is in its tree.
    let vkey = a
        .request(node.addr, "GET", "/v1/checkpoint/key", None)
        .unwrap()
        .text();
    let trusted = [NoteVerifier::from_vkey(vkey.trim()).unwrap()];
    let cp = SignedCheckpoint::open(r["checkpoint"].as_str().unwrap(), &trusted)
        .unwrap()
        .checkpoint;
    let entry = serde_json::to_vec(&r["record"]).unwrap();
    let proof: Vec<Hash> = r["proof"]["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| Hash::from_base64(h.as_str().unwrap()).unwrap())
        .collect();
    let index = r["proof"]["leaf_index"].as_u64().unwrap();
    assert_eq!(
        leaf_hash(&entry).to_base64(),
        first.json()["leaf_hash"].as_str().unwrap()
    );
    verify_inclusion(&leaf_hash(&entry), index, cp.size, &proof, &cp.root).unwrap();

    // Another provider may read it too (both hold the read role), naming the provider.
    let b = node
        .client("provider-b")
        .request(
            node.addr,
            "GET",
            "/v1/records/A-1001?provider=provider-a",
            None,
        )
        .unwrap();
    assert_eq!(b.status, 200, "{}", b.text());
}

#[test]
fn every_refused_submission_answers_its_exact_problem_and_appends_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&init_node(tmp.path()));
    let a = node.client("provider-a");
    assert_eq!(
        post(&a, &node, &serde_json::to_vec(&loan("dup")).unwrap()).status,
        201
    );
    let size = node.tree_size();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = loan("L-2");
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let deep = format!(
        "{{\"type\":\"loan_application\",\"id\":\"L-3\",\"fields\":{{\"tags\":{}1{}}}}}",
        "[".repeat(40),
        "]".repeat(40)
    );
    let stranger = minted(
        &node,
        "stranger",
        Some("spiffe://ledgergate.local/provider/stranger"),
        true,
        false,
    );
    let cases: Vec<(&str, Client, Vec<u8>, u16, &str)> = vec![
        (
            "certificate mapped to no subject",
            stranger,
            with(&|_| {}),
            403,
            "forbidden",
        ),
        (
            "subject without the submit role",
            node.client("officer"),
            with(&|_| {}),
            403,
            "forbidden",
        ),
        (
            "malformed JSON",
            a.clone(),
            b"{\"type\": \"loan_application\", ".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "body over the limit",
            a.clone(),
            with(&|v| v["fields"]["name"] = json!("x".repeat(70_000))),
            413,
            "payload_too_large",
        ),
        (
            "unknown record type",
            a.clone(),
            with(&|v| v["type"] = json!("car_loan")),
            422,
            "unknown_record_type",
        ),
        (
            "unknown field",
            a.clone(),
            with(&|v| v["fields"]["colour"] = json!("red")),
            422,
            "unknown_field",
        ),
        (
            "missing required field",
            a.clone(),
            with(&|v| {
                v["fields"].as_object_mut().unwrap().remove("applicant_id");
            }),
            422,
            "missing_field",
        ),
        (
            "wrong field type",
            a.clone(),
            with(&|v| v["fields"]["age"] = json!("old")),
            422,
            "invalid_field",
        ),
        (
            "invalid date",
            a.clone(),
            with(&|v| v["fields"]["birth_date"] = json!("1987-02-30")),
            422,
            "invalid_field",
        ),
        (
            "JSON nested deeper than the limit",
            a.clone(),
            deep.into_bytes(),
            400,
            "malformed_json",
        ),
        (
            "same id, another body",
            a.clone(),
            serde_json::to_vec(&{
                let mut v = loan("dup");
                v["fields"]["amount"] = json!(1);
                v
            })
            .unwrap(),
            409,
            "conflict",
        ),
    ];
    for (what, client, body, status, code) in cases {
        let answer = post(&client, &node, &body);
        assert_eq!(
            (answer.status, answer.json()["code"].as_str()),
            (status, Some(code)),
            "{what}: {}",
            answer.text()
        );
        assert_eq!(answer.content_type, "application/problem+json", "{what}");
        assert_eq!(answer.json()["status"], status, "{what}");
        assert!(
            !answer.text().contains("Erika"),
            "{what}: the problem quotes submitted data"
        );
    }
    assert_eq!(
        node.tree_size(),
        size,
        "a refused submission appended something"
    );
}

#[test]
fn clients_the_tls_layer_refuses_never_reach_http() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&init_node(tmp.path()));
    let pki = node.dir.join("pki");
    let cases = [
        (
            "no client certificate",
            Client::from_pem(&pki.join("ca.pem"), None),
            "CertificateRequired",
        ),
        (
            "a certificate from an unknown CA",
            minted(
                &node,
                "provider-a",
                Some("spiffe://ledgergate.local/provider/provider-a"),
                false,
                false,
            ),
            "UnknownCA",
        ),
        (
            "an expired certificate",
            minted(
                &node,
                "provider-a",
                Some("spiffe://ledgergate.local/provider/provider-a"),
                true,
                true,
            ),
            "CertificateExpired",
        ),
        (
            "a revoked certificate (CRL)",
            node.client("revoked"),
            "CertificateRevoked",
        ),
    ];
    let size = node.tree_size();
    for (what, client, alert) in cases {
        let err = client
            .request(
                node.addr,
                "POST",
                "/v1/records",
                Some(&serde_json::to_vec(&loan("T-1")).unwrap()),
            )
            .unwrap_err();
        assert!(
            err.contains(alert),
            "{what}: expected the TLS alert {alert}, got: {err}"
        );
    }
    assert_eq!(node.tree_size(), size);
}

#[test]
fn the_rate_limit_answers_429_with_retry_after_and_appends_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let subjects = dir.join("policies/subjects.yaml");
    let text = std::fs::read_to_string(&subjects).unwrap();
    let text = text.replace(
        "provider: { rate_per_second: 200, burst: 400,",
        "provider: { rate_per_second: 0.2, burst: 2,",
    );
    std::fs::write(&subjects, text).unwrap();
    let node = Node::start(&dir);
    let a = node.client("provider-a");
    for i in 0..2 {
        assert_eq!(
            post(
                &a,
                &node,
                &serde_json::to_vec(&loan(&format!("R-{i}"))).unwrap()
            )
            .status,
            201
        );
    }
    let size = node.tree_size();
    let limited = post(&a, &node, &serde_json::to_vec(&loan("R-2")).unwrap());
    assert_eq!(
        (limited.status, limited.json()["code"].as_str()),
        (429, Some("rate_limited")),
        "{}",
        limited.text()
    );
    let retry: u64 = limited.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    assert_eq!(node.tree_size(), size);
}

#[test]
fn sigterm_stops_cleanly_and_a_restart_keeps_every_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let mut node = Node::start(&dir);
    let a = node.client("provider-a");
    for i in 0..5 {
        assert_eq!(
            post(
                &a,
                &node,
                &serde_json::to_vec(&loan(&format!("S-{i}"))).unwrap()
            )
            .status,
            201
        );
    }
    assert_eq!(node.stop(), Some(0), "SIGTERM must exit 0 after draining");
    let out = e2e::gateway(&["ledger", "verify", "--data", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", e2e::stderr(&out));
    let node = Node::start(&dir);
    assert_eq!(node.record_count(), 5);
    let read = node
        .client("provider-a")
        .request(node.addr, "GET", "/v1/records/S-3", None)
        .unwrap();
    assert_eq!(read.status, 200);
}

#[test]
fn http2_is_served_as_well_as_http1() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&init_node(tmp.path()));
    let a = node.client("provider-a");
    let h2 = post(
        &a.http2(),
        &node,
        &serde_json::to_vec(&loan("H-2")).unwrap(),
    );
    assert_eq!((h2.status, h2.http2), (201, true), "{}", h2.text());
    let h1 = post(&a, &node, &serde_json::to_vec(&loan("H-1")).unwrap());
    assert_eq!((h1.status, h1.http2), (201, false), "{}", h1.text());
}

#[test]
fn racing_submissions_of_one_id_append_it_once() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&init_node(tmp.path()));
    let body = serde_json::to_vec(&loan("R-1")).unwrap();
    let batch = [body.clone(), b"\n".to_vec(), body.clone()].concat();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(9));
    let (addr, answers) = (node.addr, std::sync::Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for t in 0..9 {
            let (client, barrier, body, batch, answers) =
                (node.client("provider-a"), &barrier, &body, &batch, &answers);
            s.spawn(move || {
                barrier.wait();
                // One of the nine is a batch holding the record twice.
                let (path, sent) = if t == 0 {
                    ("/v1/records:batch", batch)
                } else {
                    ("/v1/records", body)
                };
                let a = client.request(addr, "POST", path, Some(sent)).unwrap();
                let mut got = answers.lock().unwrap();
                if t == 0 {
                    for line in a.text().lines() {
                        let v: Value = serde_json::from_str(line).unwrap();
                        got.push((v["status"].as_u64().unwrap(), v["receipt"].clone()));
                    }
                } else {
                    got.push((u64::from(a.status), a.json()));
                }
            });
        }
    });
    let answers = answers.into_inner().unwrap();
    assert_eq!(answers.len(), 10);
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 1, "{answers:?}");
    let index = node.entries()[0].0;
    assert!(
        answers
            .iter()
            .all(|(s, r)| (*s == 200 || *s == 201) && r["index"] == json!(index))
    );
    assert_eq!(node.record_count(), 1);
}
