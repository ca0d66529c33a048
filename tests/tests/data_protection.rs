//! Who reads sealed values: the read matrix of a running node (owner, another provider, an auditor
//! without `unseal`, a role with `unseal`, a subject that may not read the type, missing against
//! existing ids, after a shred), with the exact answers.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use e2e::client::Answer;
use e2e::node::{Node, init_node};
use e2e::stderr;
use serde_json::{Value, json};

fn read(node: &Node, who: &str, path: &str) -> Answer {
    node.client(who)
        .request(node.addr, "GET", path, None)
        .unwrap()
}

#[test]
fn sealed_values_reach_their_owner_and_the_unseal_roles_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let node = Node::start(&dir);
    let a = node.client("provider-a");
    let loan = json!({ "type": "loan_application", "id": "APP-1", "fields": {
        "applicant_id": "person-1", "salary": 52000.5, "amount": 1000, "currency": "EUR" } });
    assert_eq!(a.submit(node.addr, &loan).status, 201);
    let lab = json!({ "type": "lab_result", "id": "LAB-1", "fields": {
        "patient_id": "person-2", "birth_date": "1980-01-02", "test_code": "HB", "value": 13.5,
        "diagnosis": "anaemia", "collected_at": "2026-11-30T10:00:00Z" } });
    let submitted = a.submit(node.addr, &lab);
    assert_eq!(submitted.status, 201);
    let lab1 = submitted.json()["index"].as_u64().unwrap();

    let salary = |who: &str, path: &str| read(&node, who, path).json()["sealed"]["salary"].clone();
    let diagnosis =
        |who: &str, path: &str| read(&node, who, path).json()["sealed"]["diagnosis"].clone();
    let in_clear = |v: &str| json!({ "status": "sealed", "value": v });
    // loan_application: read by providers and auditors, unsealed by nobody but the owner.
    assert_eq!(
        salary("provider-a", "/v1/records/APP-1"),
        json!({ "status": "sealed", "value": 52000.5 })
    );
    assert_eq!(
        salary("provider-b", "/v1/records/APP-1?provider=provider-a"),
        json!({ "status": "sealed" })
    );
    assert_eq!(
        salary("officer", "/v1/records/APP-1?provider=provider-a"),
        json!({ "status": "sealed" })
    );
    // lab_result: read by auditors and the registry, unsealed by the registry (and the owner).
    assert_eq!(
        diagnosis("provider-a", "/v1/records/LAB-1"),
        in_clear("anaemia")
    );
    assert_eq!(
        diagnosis("registry", "/v1/records/LAB-1?provider=provider-a"),
        in_clear("anaemia")
    );
    assert_eq!(
        diagnosis("officer", "/v1/records/LAB-1?provider=provider-a"),
        json!({ "status": "sealed" })
    );
    // A subject that may not read lab results learns nothing of which ids exist.
    let existing = read(&node, "provider-b", "/v1/records/LAB-1?provider=provider-a");
    let missing = read(&node, "provider-b", "/v1/records/LAB-9?provider=provider-a");
    assert_eq!(
        (existing.status, existing.json()["code"].clone()),
        (404, json!("not_found"))
    );
    assert_eq!(
        (missing.status, missing.json()["code"].clone()),
        (404, json!("not_found"))
    );
    assert_eq!(
        existing.json()["detail"]
            .as_str()
            .unwrap()
            .replace("LAB-1", "X"),
        missing.json()["detail"]
            .as_str()
            .unwrap()
            .replace("LAB-9", "X")
    );
    // Every read in clear by anyone but the owner is in the audit trail, before the answer.
    let audit = node.keymgr("officer", &["audit", "--json"]);
    assert!(audit.status.success(), "{}", stderr(&audit));
    let events: Value = serde_json::from_slice(&audit.stdout).unwrap();
    let unseals: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "unseal")
        .collect();
    assert_eq!(unseals.len(), 1, "{events}");
    assert_eq!(unseals[0]["actor"], "registry");
    assert_eq!(
        unseals[0]["detail"],
        format!("provider provider-a, entry {lab1}, fields diagnosis")
    );
    // …and in the ledger's audit trail, also before the answer: no id, the record's index.
    let on_ledger: Vec<Value> = node
        .audit_entries()
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e["type"] == "audit.record.unseal")
        .collect();
    assert_eq!(on_ledger.len(), 1, "{on_ledger:?}");
    assert_eq!(on_ledger[0]["actor"], "registry");
    assert_eq!(
        on_ledger[0]["details"]["detail"],
        format!("provider provider-a, entry {lab1}, fields diagnosis")
    );
    // After a shred every reader sees that the value is gone.
    let out = node.keymgr("officer", &["shred", "--subject", "person-2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for who in ["provider-a", "registry", "officer"] {
        let path = "/v1/records/LAB-1?provider=provider-a";
        assert_eq!(
            diagnosis(who, path),
            json!({ "status": "shredded" }),
            "{who}"
        );
    }
}

#[test]
fn a_record_that_names_a_key_twice_is_refused_not_resolved() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&init_node(tmp.path()));
    let a = node.client("provider-a");
    let body = br#"{"type": "loan_application", "id": "DUP-1", "fields": {"applicant_id": "p", "amount": 1, "currency": "EUR", "amount": 1000000}}"#;
    let answer = a
        .request(node.addr, "POST", "/v1/records", Some(body))
        .unwrap();
    assert_eq!(
        (answer.status, answer.json()["code"].as_str()),
        (400, Some("malformed_json")),
        "{}",
        answer.text()
    );
    assert!(
        answer.json()["detail"]
            .as_str()
            .unwrap()
            .contains("duplicate key `amount`"),
        "{}",
        answer.text()
    );
    // The same inside a batch line: that line alone is refused.
    let batch = [
        &body[..],
        br#"{"type": "loan_application", "id": "DUP-2", "fields": {"applicant_id": "p", "amount": 1, "currency": "EUR"}}"#,
    ]
    .join(&b'\n');
    let lines = a
        .request(node.addr, "POST", "/v1/records:batch", Some(&batch))
        .unwrap()
        .text();
    let statuses: Vec<u64> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["status"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(statuses, vec![400, 201]);
}

/// Numbers keep the exact value they were sent with or are refused with the field named; `1` and
/// `1.0` in a `number` field are one submission.
#[test]
fn numbers_are_kept_exactly_or_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&init_node(tmp.path()));
    let a = node.client("provider-a");
    let post = |id: &str, fields: &str| {
        let body = format!(
            r#"{{"type": "loan_application", "id": "{id}", "fields": {{"applicant_id": "p", "currency": "EUR", {fields}}}}}"#
        );
        a.request(node.addr, "POST", "/v1/records", Some(body.as_bytes()))
            .unwrap()
    };
    let refused = |id: &str, fields: &str, path: &str, reason: &str| {
        let answer = post(id, fields);
        assert_eq!(answer.status, 422, "{fields}: {}", answer.text());
        let problem = answer.json();
        assert_eq!(problem["code"], "invalid_field", "{fields}");
        assert_eq!(problem["detail"], format!("{path}: {reason}"));
        // the refused value is not echoed back
        assert!(!answer.text().contains(fields.split(": ").nth(1).unwrap()));
    };
    let too_precise = "more precise than a number field keeps (the shortest decimal of a double)";
    refused(
        "N-1",
        r#""amount": 123456789012345678901234567890"#,
        "amount",
        too_precise,
    );
    refused(
        "N-2",
        r#""amount": 1e-400"#,
        "amount",
        "outside the range of a number field",
    );
    refused(
        "N-3",
        r#""amount": 1e400"#,
        "amount",
        "outside the range of a number field",
    );
    refused(
        "N-4",
        r#""amount": 0.10000000000000001"#,
        "amount",
        too_precise,
    );
    refused(
        "N-5",
        r#""amount": 1, "term_months": 9223372036854775808"#,
        "term_months",
        "outside the integer range -2^63 to 2^63-1",
    );
    refused(
        "N-6",
        r#""amount": 1, "address": {"zip": "10115", "city": "Berlin"}, "salary": 1e999"#,
        "salary",
        "outside the range of a number field",
    );

    // Kept exactly, in one canonical spelling, on the ledger.
    let kept = |id: &str, fields: &str, entry_has: &str| {
        let answer = post(id, fields);
        assert_eq!(answer.status, 201, "{fields}: {}", answer.text());
        let read = read(&node, "provider-a", &format!("/v1/records/{id}"));
        assert!(
            read.text().contains(entry_has),
            "{fields} should be kept as {entry_has}: {}",
            read.text()
        );
    };
    kept("K-1", r#""amount": 0.1"#, r#""amount":0.1"#);
    kept(
        "K-2",
        r#""amount": 9007199254740993"#,
        r#""amount":9007199254740993"#,
    );
    kept("K-3", r#""amount": 52000.50"#, r#""amount":52000.5"#);
    kept("K-4", r#""amount": 1e21"#, r#""amount":1e+21"#);
    kept(
        "K-5",
        r#""amount": 1, "term_months": 1.2e2"#,
        r#""term_months":120"#,
    );

    // Idempotency compares values: the same record with 1.0 for 1 is the same submission.
    let first = post("I-1", r#""amount": 1, "term_months": 12"#);
    assert_eq!(first.status, 201, "{}", first.text());
    let again = post("I-1", r#""term_months": 12.0, "amount": 1.0"#);
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json(), first.json(), "the same receipt");
    let other = post("I-1", r#""amount": 1.5, "term_months": 12"#);
    assert_eq!(other.status, 409, "{}", other.text());
}

/// Record ids stay off the shared ledger (a keyed reference stands in) unless the type's policy says
/// `record_id: clear`; reads by id work either way.
#[test]
fn record_ids_are_keyed_on_the_ledger_unless_the_policy_shares_them() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&init_node(tmp.path()));
    let (a, officer) = (node.client("provider-a"), node.client("officer"));
    let loan = |id: &str| {
        json!({ "type": "loan_application", "id": id, "fields": {
            "applicant_id": "person-9", "amount": 10, "currency": "EUR" } })
    };
    assert_eq!(a.submit(node.addr, &loan("CASE-7731-KEYED")).status, 201);
    let b = node.client("provider-b");
    assert_eq!(b.submit(node.addr, &loan("CASE-7731-KEYED")).status, 201);
    let entries = node.entries();
    assert_eq!(entries.len(), 2);
    let refs: Vec<&str> = entries
        .iter()
        .map(|(_, e)| {
            assert!(e.get("id").is_none(), "{e}");
            assert!(!e.to_string().contains("CASE-7731"), "{e}");
            e["ref"].as_str().unwrap()
        })
        .collect();
    assert!(
        refs.iter().all(|r| r.starts_with("v1:") && r.len() > 40),
        "{refs:?}"
    );
    assert_ne!(refs[0], refs[1], "one id of two providers: two references");
    // The owner still reads it by its id.
    let read_a = read(&node, "provider-a", "/v1/records/CASE-7731-KEYED");
    assert_eq!(read_a.status, 200, "{}", read_a.text());
    assert_eq!(read_a.json()["record"]["ref"], refs[0]);

    // A type whose policy shares its ids.
    let finance = node.dir.join("policies/finance.yaml");
    let text = std::fs::read_to_string(&finance).unwrap();
    std::fs::write(
        &finance,
        text.replace(
            "    unknown_fields: reject\n",
            "    unknown_fields: reject\n    record_id: clear\n",
        ),
    )
    .unwrap();
    let reload = officer
        .request(node.addr, "POST", "/admin/v1/reload", None)
        .unwrap();
    assert_eq!(reload.status, 200, "{}", reload.text());
    assert_eq!(a.submit(node.addr, &loan("CASE-7732-CLEAR")).status, 201);
    let (_, shared) = node.entries().pop().unwrap();
    assert_eq!(shared["id"], "CASE-7732-CLEAR", "{shared}");
    assert!(shared.get("ref").is_none(), "{shared}");
}

/// Every file under `dir`, as bytes.
fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn no_personal_data_or_secret_reaches_the_log_and_no_protected_value_the_ledger() {
    for format in ["text", "json"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = init_node(tmp.path());
        let log_path = tmp.path().join("node.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut node = Node::start_logging(
            &dir,
            &[],
            std::process::Stdio::from(log),
            &["--log-format", format],
            "debug",
        );
        let a = node.client("provider-a");
        let loan = json!({ "type": "loan_application", "id": "LOAN-XJ-4471", "fields": {
            "applicant_id": "APPLICANT-7781", "name": "Erika Mustermann", "phone": "+49 170 1234567",
            "email": "erika@example.org", "salary": 52917.25, "amount": 250000, "currency": "EUR" } });
        let lab = json!({ "type": "lab_result", "id": "LAB-XJ-9902", "fields": {
            "patient_id": "PATIENT-5523", "patient_name": "Max Beispiel", "birth_date": "1980-01-02",
            "test_code": "HB", "value": 13.5, "diagnosis": "iron-deficiency-anaemia",
            "collected_at": "2026-11-30T10:00:00Z", "clinician": "Dr-Quincy-Harlow" } });
        assert_eq!(a.submit(node.addr, &loan).status, 201);
        assert_eq!(a.submit(node.addr, &lab).status, 201);
        // Failures of every kind, which are what gets logged.
        let mut conflict = loan.clone();
        conflict["fields"]["amount"] = json!(1);
        assert_eq!(a.submit(node.addr, &conflict).status, 409);
        let mut invalid = loan.clone();
        invalid["fields"]["currency"] = json!("XYZ-SECRET-CURRENCY");
        invalid["id"] = json!("LOAN-XJ-4471-B");
        let refused = a.submit(node.addr, &invalid);
        assert_eq!(refused.status, 422);
        assert!(
            !refused.text().contains("XYZ-SECRET-CURRENCY"),
            "a problem detail quotes a submitted value: {}",
            refused.text()
        );
        read(&node, "provider-a", "/v1/records/LOAN-XJ-4471");
        read(
            &node,
            "registry",
            "/v1/records/LAB-XJ-9902?provider=provider-a",
        );
        read(
            &node,
            "provider-b",
            "/v1/records/LAB-XJ-9902?provider=provider-a",
        );
        for args in [
            &["shred", "--subject", "PATIENT-5523"][..],
            &["shred", "--subject", "APPLICANT-7781"][..],
            &["rotate", "pseudonym"][..],
        ] {
            let out = node.keymgr("officer", args);
            assert!(out.status.success(), "{}", stderr(&out));
        }
        // What the ledger shares carries no record id or subject id either, audit entries (the
        // shreds, the unseals) included: keyed references stand in.
        let shared = node.entries_from(0);
        assert!(
            shared.iter().any(|(_, e)| e["type"] == "audit.key.shred"),
            "the shreds are not in the audit trail"
        );
        for (index, entry) in shared {
            for id in [
                "LOAN-XJ-4471",
                "LAB-XJ-9902",
                "PATIENT-5523",
                "APPLICANT-7781",
            ] {
                assert!(!entry.to_string().contains(id), "entry {index}: {entry}");
            }
        }
        assert_eq!(node.stop(), Some(0));

        let log = std::fs::read(&log_path).unwrap();
        assert!(!log.is_empty(), "the node logged nothing at debug level");
        let passphrase = std::fs::read_to_string(dir.join("kek.pass")).unwrap();
        let personal = [
            "APPLICANT-7781",
            "PATIENT-5523",
            "Erika Mustermann",
            "+49 170 1234567",
            "erika@example.org",
            "52917.25",
            "Max Beispiel",
            "iron-deficiency-anaemia",
            "Dr-Quincy-Harlow",
            "XYZ-SECRET-CURRENCY",
            "LOAN-XJ-4471",
            "LAB-XJ-9902",
            passphrase.trim_end(),
        ];
        for needle in personal {
            assert!(
                !contains(&log, needle),
                "{format} log carries {needle:?}:\n{}",
                String::from_utf8_lossy(&log)
            );
        }
        // Dropped, hashed and sealed values are in no file of the data directory (record ids are in
        // the node's own submission index, beside the ledger in its store, by design: see
        // docs/policies.md, "Record ids on the ledger").
        for (path, bytes) in files(&dir.join("data")) {
            for needle in &personal[..10] {
                assert!(
                    !contains(&bytes, needle),
                    "{} holds {needle:?}",
                    path.display()
                );
            }
        }
    }
}

/// Checks an opening the way an independent party would, in Python with only its standard library:
/// the commitment over salt ‖ canonical JSON, the commitment inside the exact entry bytes, the leaf
/// hash, and the RFC 9162 inclusion proof up to the checkpoint's root.
const PYTHON_CHECK: &str = r#"
import base64, hashlib, json, sys
o = json.load(sys.stdin)
b = base64.b64decode
h = lambda data: hashlib.sha256(data).digest()
canonical = json.dumps(o["value"], separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()
assert canonical == b(o["canonical"]), (canonical, b(o["canonical"]))
assert base64.b64encode(h(b(o["salt"]) + canonical)).decode() == o["commitment"], "commitment"
entry = b(o["entry"])
field = o["path"].split(".")
payload = json.loads(entry)["payload"]
for part in field:
    payload = payload[part]
assert payload == "sealed:sha256:" + o["commitment"], "the commitment is not in the entry"
leaf = h(b"\x00" + entry)
assert base64.b64encode(leaf).decode() == o["leaf_hash"], "leaf hash"
fn, sn, r = o["proof"]["leaf_index"], o["proof"]["tree_size"] - 1, leaf
assert fn <= sn
for p in map(b, o["proof"]["hashes"]):
    assert sn != 0
    if fn & 1 or fn == sn:
        r = h(b"\x01" + p + r)
        while not fn & 1 and fn != 0:
            fn >>= 1
            sn >>= 1
    else:
        r = h(b"\x01" + r + p)
    fn >>= 1
    sn >>= 1
root = b(o["checkpoint"].split("\n")[2])
assert sn == 0 and r == root, "inclusion proof"
print("opening verified")
"#;

fn python_check(opening: &str) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("python3")
        .args(["-c", PYTHON_CHECK])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(opening.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_opening_verifies_against_the_ledger_in_python() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&init_node(tmp.path()));
    let a = node.client("provider-a");
    // Some records before and after, so that the proof has a few levels.
    for i in 0..5 {
        let filler = json!({ "type": "loan_application", "id": format!("F-{i}"), "fields": {
            "applicant_id": format!("f-{i}"), "amount": i, "currency": "EUR" } });
        assert_eq!(a.submit(node.addr, &filler).status, 201);
    }
    let loan = json!({ "type": "loan_application", "id": "OPEN-1", "fields": {
        "applicant_id": "person-9", "salary": 52000.5, "amount": 10, "currency": "EUR" } });
    assert_eq!(a.submit(node.addr, &loan).status, 201);
    let lab = json!({ "type": "lab_result", "id": "OPEN-2", "fields": {
        "patient_id": "person-8", "birth_date": "1980-01-02", "test_code": "HB", "value": 13.5,
        "diagnosis": "Anämie \"leicht\"\n", "collected_at": "2026-11-30T10:00:00Z" } });
    assert_eq!(a.submit(node.addr, &lab).status, 201);

    let own = read(&node, "provider-a", "/v1/records/OPEN-1/openings/salary");
    assert_eq!(own.status, 200, "{}", own.text());
    assert_eq!(own.json()["value"], json!(52000.5));
    assert_eq!(python_check(&own.text()), "opening verified\n");
    // The checkpoint the proof ends in is signed by the node's key.
    let vkey = read(&node, "provider-a", "/v1/checkpoint/key").text();
    let verifier = gateway::ledger::NoteVerifier::from_vkey(vkey.trim()).unwrap();
    gateway::ledger::SignedCheckpoint::open(
        own.json()["checkpoint"].as_str().unwrap(),
        &[verifier],
    )
    .unwrap();
    // A role in `unseal`, with a string that needs escaping and non-ASCII characters.
    let registry = read(
        &node,
        "registry",
        "/v1/records/OPEN-2/openings/diagnosis?provider=provider-a",
    );
    assert_eq!(registry.status, 200, "{}", registry.text());
    assert_eq!(python_check(&registry.text()), "opening verified\n");
    // Nobody else gets one, nor learns whether the record exists.
    for (who, path) in [
        (
            "provider-b",
            "/v1/records/OPEN-1/openings/salary?provider=provider-a",
        ),
        (
            "officer",
            "/v1/records/OPEN-1/openings/salary?provider=provider-a",
        ),
        (
            "provider-b",
            "/v1/records/NOPE/openings/salary?provider=provider-a",
        ),
    ] {
        let answer = read(&node, who, path);
        assert_eq!(
            (answer.status, answer.json()["code"].as_str()),
            (404, Some("not_found")),
            "{who} {path}: {}",
            answer.text()
        );
    }
    let no_field = read(&node, "provider-a", "/v1/records/OPEN-1/openings/amount");
    assert_eq!(
        (no_field.status, no_field.json()["code"].as_str()),
        (404, Some("not_found"))
    );
    // A shredded field has no opening.
    let out = node.keymgr("officer", &["shred", "--subject", "person-9"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let gone = read(&node, "provider-a", "/v1/records/OPEN-1/openings/salary");
    assert_eq!(
        (gone.status, gone.json()["code"].as_str()),
        (410, Some("shredded")),
        "{}",
        gone.text()
    );
}

/// A read in clear by a non-owner is in the audit trail before the answer: when the ledger cannot
/// take the entry (no usable checkpoint-signing key), the reader gets 503 and no value, while the
/// provider still reads its own record (it discloses nothing to anyone else).
#[test]
fn a_disclosure_that_cannot_be_audited_is_refused_and_owners_still_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let node = Node::start(&dir);
    let a = node.client("provider-a");
    let lab = json!({ "type": "lab_result", "id": "LAB-503", "fields": {
        "patient_id": "person-503", "birth_date": "1980-01-02", "test_code": "HB", "value": 13.5,
        "diagnosis": "anaemia", "collected_at": "2026-11-30T10:00:00Z" } });
    assert_eq!(a.submit(node.addr, &lab).status, 201);
    let out = node.keymgr(
        "officer",
        &[
            "revoke",
            "checkpoint-signing",
            "--version",
            "1",
            "--reason",
            "compromised",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let refused = read(&node, "registry", "/v1/records/LAB-503?provider=provider-a");
    assert_eq!(
        (refused.status, refused.json()["code"].as_str()),
        (503, Some("unavailable")),
        "{}",
        refused.text()
    );
    assert!(!refused.text().contains("anaemia"), "{}", refused.text());
    let own = read(&node, "provider-a", "/v1/records/LAB-503");
    assert_eq!(own.status, 200, "{}", own.text());
    assert_eq!(own.json()["sealed"]["diagnosis"]["value"], "anaemia");
}
