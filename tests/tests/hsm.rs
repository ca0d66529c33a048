//! A node whose key-encryption key is an AES key in a PKCS#11 token (SoftHSM2, in a configuration of
//! each test's own): migration from a passphrase, the core scenarios, what is left on the disk, the
//! token's own view of the key, the token lost and back at runtime, and a node that cannot start.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use base64::Engine as _;
use e2e::node::{Node, init_node};
use e2e::softhsm::{SoftHsm, TOKEN, passphrase};
use e2e::stderr;
use serde_json::{Value, json};

fn loan(id: &str, applicant: &str) -> Value {
    json!({ "type": "loan_application", "id": id, "fields": {
        "applicant_id": applicant, "salary": 61000, "amount": 1000, "currency": "EUR" } })
}

fn officer(node: &Node, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = node.keymgr("officer", &all);
    assert!(out.status.success(), "keymgr {args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `keymgr rotate <key>` on the stopped node of `dir`, with the token: its JSON answer.
fn rotate_offline(hsm: &SoftHsm, dir: &Path, key: &str) -> Value {
    let out = keymgr_token(hsm, dir, &["--json", "rotate", key], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `keymgr --store <dir's store> <the token's options> <args>`, with `env`.
fn keymgr_token(
    hsm: &SoftHsm,
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut all = hsm.keymgr_args();
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    hsm.keymgr_local(dir, &all, env)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_node_with_its_kek_in_a_token_runs_the_core_scenarios_and_its_disk_opens_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    // What the passphrase opened before the migration: every key's material and wrapped blob.
    let (secrets, old_blobs) = {
        let keys = keymgr::KeyManager::open(
            &dir.join("data/keys"),
            &gateway::init::dev_kek(&dir).unwrap(),
        )
        .unwrap();
        (
            keys.all_material_for_tests().unwrap(),
            keys.all_wrapped_for_tests().unwrap(),
        )
    };
    assert!(secrets.len() >= 4, "the node's keys: {}", secrets.len());
    let hsm = SoftHsm::new(tmp.path());
    let old_pass = passphrase(&dir);
    hsm.migrate(&dir);

    // The passphrase opens nothing any more, and says where the KEK is.
    let out = hsm.keymgr_local(
        &dir,
        &["list"],
        &[("LEDGERGATE_KEK_PASSPHRASE", old_pass.as_str())],
    );
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        "keymgr: open store: this store's KEK is in a PKCS#11 token: pass --pkcs11-module and its options"
    );

    let mut node = hsm.start(&dir);
    let a = node.client("provider-a");
    assert_eq!(a.submit(node.addr, &loan("H-1", "subject-1")).status, 201);
    assert_eq!(a.submit(node.addr, &loan("H-2", "subject-2")).status, 201);
    let read = |id: &str| {
        a.request(node.addr, "GET", &format!("/v1/records/{id}"), None)
            .unwrap()
            .json()
    };
    assert_eq!(
        read("H-1")["sealed"]["salary"],
        json!({ "status": "sealed", "value": 61000 })
    );
    // Rotate, revoke, shred through the running node: each wraps or unwraps in the token.
    let rotated = officer(&node, &["rotate", "pseudonym"]);
    assert_eq!(rotated["key"]["primary"], 2, "{rotated}");
    officer(
        &node,
        &[
            "revoke",
            "pseudonym",
            "--version",
            "1",
            "--reason",
            "superseded",
        ],
    );
    assert_eq!(a.submit(node.addr, &loan("H-3", "subject-3")).status, 201);
    let shred = officer(&node, &["shred", "--subject", "subject-1"]);
    assert_eq!(shred["shred"]["destroyed"], json!([1]));
    assert_eq!(
        read("H-1")["sealed"]["salary"],
        json!({ "status": "shredded" })
    );
    assert_eq!(
        read("H-2")["sealed"]["salary"],
        json!({ "status": "sealed", "value": 61000 })
    );
    let checkpoint = a.request(node.addr, "GET", "/v1/checkpoint", None).unwrap();
    assert_eq!(checkpoint.status, 200);
    assert_eq!(node.stop(), Some(0));
    e2e::node::verify_ledger(&dir);

    // The disk: no key material, no blob the old passphrase opens, no passphrase; every wrapped
    // key in the store is in the token's format (0x02: base64 `Ag`–`Av`), none in the
    // passphrase's (0x01: `AQ`–`Af`).
    let b64 = base64::engine::general_purpose::STANDARD;
    let store = std::fs::read(dir.join("data/keys/keys.redb")).unwrap();
    let wrapped = |second: char| {
        let p = format!("\"wrapped\":\"A{second}");
        store
            .windows(p.len())
            .filter(|w| *w == p.as_bytes())
            .count()
    };
    let token_format: usize = ('g'..='v').map(wrapped).sum();
    let passphrase_format: usize = ('Q'..='Z').chain('a'..='f').map(wrapped).sum();
    assert!(
        token_format >= secrets.len(),
        "{token_format} token-wrapped blobs"
    );
    assert_eq!(
        passphrase_format, 0,
        "blobs wrapped under the passphrase remain"
    );
    for f in files_under(&dir) {
        let bytes = std::fs::read(&f).unwrap();
        for s in &secrets {
            assert!(
                !contains(&bytes, s.expose()),
                "key material in {}",
                f.display()
            );
            assert!(
                !contains(&bytes, hex::encode(s.expose()).as_bytes()),
                "hex key material in {}",
                f.display()
            );
        }
        for blob in &old_blobs {
            assert!(
                !contains(&bytes, blob) && !contains(&bytes, b64.encode(blob).as_bytes()),
                "a blob the old passphrase opens is in {}",
                f.display()
            );
        }
        assert!(
            !contains(&bytes, old_pass.as_bytes()),
            "the passphrase is in {}",
            f.display()
        );
    }

    // The token's own account of the KEK (OpenSC's pkcs11-tool, not our code): one AES-256 key,
    // sensitive and never extractable, for encryption and decryption only.
    let objects = hsm.list_objects();
    assert_eq!(
        objects.matches("Secret Key Object; AES length 32").count(),
        1,
        "{objects}"
    );
    assert!(objects.contains("label:      ledgergate-kek"), "{objects}");
    assert!(
        objects.contains("Access:     sensitive, always sensitive, never extractable, local"),
        "{objects}"
    );
    assert!(
        objects.contains("Usage:      encrypt, decrypt\n"),
        "{objects}"
    );
}

/// `POST /v1/records` as provider-a: status and problem code.
fn submit(node: &Node, id: &str, applicant: &str) -> (u16, Value) {
    let answer = node
        .client("provider-a")
        .submit(node.addr, &loan(id, applicant));
    (answer.status, answer.json())
}

#[test]
fn the_token_lost_at_runtime_refuses_what_needs_it_with_503_and_the_node_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let hsm = SoftHsm::new(tmp.path());
    hsm.migrate(&dir);
    let node = hsm.start(&dir);
    assert_eq!(submit(&node, "L-1", "known").0, 201);
    let size = node.tree_size();

    // The token is pulled: SoftHSM2 finds its directory gone.
    let away = tmp.path().join("tokens-away");
    std::fs::rename(&hsm.tokens, &away).unwrap();
    let (status, problem) = submit(&node, "L-2", "new-subject");
    assert_eq!(
        (status, problem["code"].as_str()),
        (503, Some("unavailable")),
        "{problem}"
    );
    let out = node.keymgr("officer", &["rotate", "pseudonym"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot complete the command now"),
        "{}",
        stderr(&out)
    );
    // A subject whose key was unwrapped before is served from the cache (at most CACHE_TTL).
    assert_eq!(submit(&node, "L-3", "known").0, 201);
    assert_eq!(
        node.tree_size(),
        size + 1,
        "only the cached subject's record"
    );

    // Back: the node finds the token again by itself; nothing of the refused request was kept,
    // so the same record is new (201, not a conflict).
    std::fs::rename(&away, &hsm.tokens).unwrap();
    e2e::eventually("the node to use the token again", || {
        let (status, _) = submit(&node, "L-2", "new-subject");
        (status == 201).then_some(())
    });
    assert_eq!(
        submit(&node, "L-2", "new-subject").0,
        200,
        "a repeat is a duplicate"
    );
    let rotated = officer(&node, &["rotate", "pseudonym"]);
    assert_eq!(rotated["key"]["primary"], 2, "{rotated}");
}

#[test]
fn a_node_without_its_token_or_with_a_wrong_pin_refuses_to_start_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let hsm = SoftHsm::new(tmp.path());
    hsm.migrate(&dir);
    let serve = |dir: &Path| {
        let out = hsm
            .command(e2e::gateway_bin())
            .args(["serve", "--config"])
            .arg(dir.join("gateway.yaml"))
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .env("LEDGERGATE_LOG", "error")
            .output()
            .unwrap();
        let text = stderr(&out);
        assert_eq!(text.lines().count(), 1, "one line: {text}");
        (out.status.code(), text.trim().to_owned())
    };
    // A wrong PIN is a configuration error: status 78, which the systemd unit does not restart.
    std::fs::write(&hsm.pin_file, "0000-wrong\n").unwrap();
    assert_eq!(
        serve(&dir),
        (
            Some(78),
            format!("gateway: serve: key store: token `{TOKEN}` refused the PIN (wrong PIN)")
        )
    );
    std::fs::write(&hsm.pin_file, format!("{}\n", e2e::softhsm::PIN)).unwrap();
    // Another key under the KEK's label (the token re-made, a key replaced): the store's verifier
    // does not open, which no retry mends: 78.
    let kek = ["--type", "secrkey", "--label", "ledgergate-kek"];
    hsm.pkcs11_tool(&[&["--delete-object"][..], &kek[..]].concat());
    hsm.pkcs11_tool(
        &[
            &["--keygen", "--key-type", "AES:32", "--sensitive"][..],
            &kek[2..],
        ]
        .concat(),
    );
    assert_eq!(
        serve(&dir),
        (
            Some(78),
            format!(
                "gateway: serve: key store: the key `ledgergate-kek` in token `{TOKEN}` does not \
                 open this key store (another key of that label?)"
            )
        )
    );
    std::fs::rename(&hsm.tokens, tmp.path().join("away")).unwrap();
    // A missing token may come back: status 1, restarted.
    let (status, line) = serve(&dir);
    assert_eq!(status, Some(1));
    assert!(
        line.starts_with("gateway: serve: key store: PKCS#11 token unavailable: "),
        "{line}"
    );

    // A new store on the token from the start: `keymgr init --pkcs11-module …` makes the key.
    std::fs::rename(tmp.path().join("away"), &hsm.tokens).unwrap();
    let fresh = tmp.path().join("fresh");
    let mut init = vec![
        "--json".to_owned(),
        "--pkcs11-key".to_owned(),
        "second-kek".to_owned(),
    ];
    init.extend(hsm.keymgr_args());
    init.push("init".to_owned());
    let init: Vec<&str> = init.iter().map(String::as_str).collect();
    let out = hsm.keymgr_local(&fresh, &init, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["kek"], "pkcs11");
    assert_eq!(
        hsm.list_objects()
            .matches("Secret Key Object; AES length 32")
            .count(),
        2
    );
}

/// The key id (hex) on each signature line of a note.
fn signer_ids(note: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let block = note.rsplit_once("\n\n").unwrap().1;
    block
        .lines()
        .map(|line| hex::encode(&b64.decode(line.rsplit_once(' ').unwrap().1).unwrap()[..4]))
        .collect()
}

#[test]
fn a_checkpoint_key_made_in_the_token_signs_there_and_is_destroyed_there() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let hsm = SoftHsm::new(tmp.path());
    hsm.migrate(&dir);
    let mut node = hsm.start(&dir);
    let a = node.client("provider-a");
    let get = |path: &str| a.request(node.addr, "GET", path, None).unwrap();

    // Version 1 was made before the migration (wrapped in the store); a rotation makes version 2
    // in the token, and the head is countersigned by it at once.
    let rotated = officer(&node, &["rotate", "checkpoint-signing"]);
    let versions = rotated["key"]["versions"].as_array().unwrap().clone();
    assert_eq!(
        versions
            .iter()
            .map(|v| v["in_token"].as_bool())
            .collect::<Vec<_>>(),
        vec![Some(false), Some(true)],
        "{rotated}"
    );
    let v2 = get("/v1/checkpoint/key").text();
    let v2_id = v2.trim().split('+').nth(1).unwrap().to_owned();
    assert!(signer_ids(&get("/v1/checkpoint").text()).contains(&v2_id));
    let ok = a.submit(node.addr, &loan("K-1", "subject-1"));
    assert_eq!(ok.status, 201, "{}", ok.text());
    assert_eq!(
        signer_ids(ok.json()["checkpoint"].as_str().unwrap()),
        vec![v2_id.clone()]
    );
    // The token's account: an Ed25519 private key, sensitive, never extractable, for signing.
    let objects = hsm.list_objects();
    assert!(
        objects.contains("Private Key Object; EC_EDWARDS"),
        "{objects}"
    );
    assert!(
        objects.contains("label:      ledgergate checkpoint-signing v2"),
        "{objects}"
    );
    assert!(
        objects
            .matches("Access:     sensitive, always sensitive, never extractable, local")
            .count()
            >= 2,
        "the KEK and the signing key: {objects}"
    );

    // Without the token nothing can be signed, so nothing is appended, not even for a subject whose
    // key is cached; back, the node signs again.
    let away = tmp.path().join("tokens-away");
    std::fs::rename(&hsm.tokens, &away).unwrap();
    let refused = a.submit(node.addr, &loan("K-2", "subject-1"));
    assert_eq!(
        (refused.status, refused.json()["code"].as_str()),
        (503, Some("unavailable")),
        "{}",
        refused.text()
    );
    std::fs::rename(&away, &hsm.tokens).unwrap();
    e2e::eventually("the checkpoint key to sign again", || {
        (a.submit(node.addr, &loan("K-2", "subject-1")).status == 201).then_some(())
    });

    // Retired: rotated away, its destruction scheduled and done; the token no longer holds it, and
    // what it signed still verifies offline.
    officer(&node, &["rotate", "checkpoint-signing"]);
    officer(
        &node,
        &[
            "schedule-destroy",
            "checkpoint-signing",
            "--version",
            "2",
            "--window",
            "1s",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let destroyed = officer(&node, &["destroy", "checkpoint-signing", "--version", "2"]);
    assert_eq!(
        destroyed["key"]["versions"][1]["state"], "destroyed",
        "{destroyed}"
    );
    let objects = hsm.list_objects();
    assert!(!objects.contains("checkpoint-signing v2"), "{objects}");
    assert!(
        objects.contains("label:      ledgergate checkpoint-signing v3"),
        "{objects}"
    );
    assert_eq!(a.submit(node.addr, &loan("K-3", "subject-1")).status, 201);
    assert_eq!(node.stop(), Some(0));

    // Version 3 cannot leave the token: a change of KEK to a passphrase is refused, naming it.
    let off = keymgr_token(
        &hsm,
        &dir,
        &["change-kek"],
        &[(
            "LEDGERGATE_NEW_KEK_PASSPHRASE",
            "a new passphrase, long enough",
        )],
    );
    assert_eq!(off.status.code(), Some(1));
    assert!(
        stderr(&off).starts_with(
            "keymgr: change-passphrase: key `checkpoint-signing` version 3 is held in the PKCS#11 \
             token and cannot leave it"
        ),
        "{}",
        stderr(&off)
    );
    // The KEK rotated inside the token: every wrapped key moves to a new key there, the signing
    // key stays, and only the new key opens the store.
    let same = keymgr_token(
        &hsm,
        &dir,
        &["change-kek", "--to-pkcs11-key", "ledgergate-kek"],
        &[],
    );
    assert!(
        stderr(&same).contains("`ledgergate-kek` is the current KEK"),
        "{}",
        stderr(&same)
    );
    let rotated = keymgr_token(&hsm, &dir, &["change-kek", "--to-pkcs11-key", "kek-2"], &[]);
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    // The old key stays for the token's own tools to destroy (other stores may use it).
    let objects = hsm.list_objects();
    for label in ["ledgergate-kek", "kek-2"] {
        assert!(
            objects.contains(&format!("label:      {label}\n")),
            "{objects}"
        );
    }
    let old_label = keymgr_token(&hsm, &dir, &["show", "checkpoint-signing"], &[]);
    assert!(
        stderr(&old_label).contains(&format!(
            "this store's KEK is key `kek-2` of token `{TOKEN}`, not key `ledgergate-kek`"
        )),
        "{}",
        stderr(&old_label)
    );
    let config = dir.join("gateway.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(
        &format!("token_label: {TOKEN},"),
        &format!("token_label: {TOKEN}, key_label: kek-2,"),
    );
    std::fs::write(&config, text).unwrap();
    let node = hsm.start(&dir);
    let a = node.client("provider-a");
    let ok = a.submit(node.addr, &loan("K-4", "subject-4"));
    assert_eq!(ok.status, 201, "{}", ok.text());
    let v3 = a
        .request(node.addr, "GET", "/v1/checkpoint/key", None)
        .unwrap()
        .text();
    assert_eq!(
        signer_ids(ok.json()["checkpoint"].as_str().unwrap()),
        vec![v3.trim().split('+').nth(1).unwrap().to_owned()]
    );
    let read = a
        .request(node.addr, "GET", "/v1/records/K-1", None)
        .unwrap();
    // A subject key wrapped before the rotation opens under the new key (the cache is empty).
    assert_eq!(
        read.json()["sealed"]["salary"],
        json!({ "status": "sealed", "value": 61000 }),
        "{}",
        read.text()
    );
    drop(node);

    e2e::node::verify_ledger(&dir);
}

#[test]
fn a_node_identity_made_in_the_token_proves_the_node_to_its_edge() {
    const EDGE_SEED: [u8; 32] = [23; 32];
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(&tmp.path().join("l"));
    let channel = e2e::node::free_port();
    e2e::node::append_config(
        &dir,
        &format!(
            "channel: {{ listen: \"{channel}\", peers: [{{ name: edge-1, identity: \"{}\" }}] }}",
            e2e::node::identity_of_seed(EDGE_SEED)
        ),
    );
    let edge_dir = tmp.path().join("edge");
    e2e::node::make_edge(&edge_dir, &dir, channel, EDGE_SEED, "");
    let old_identity = e2e::node::node_identity(&dir);
    let hsm = SoftHsm::new(tmp.path());
    hsm.migrate(&dir);

    // Rotated offline with the token: the new identity is made in it.
    let rotated = rotate_offline(&hsm, &dir, "node-identity");
    let v2 = &rotated["key"]["versions"][1];
    assert_eq!(v2["in_token"], true, "{rotated}");
    let new_identity = v2["public_key"].as_str().unwrap().to_owned();
    assert_ne!(new_identity, old_identity);
    let objects = hsm.list_objects();
    assert!(
        objects.contains("label:      ledgergate node-identity v2"),
        "{objects}"
    );

    // An edge that expects the old identity is refused at the handshake: it never gets ready.
    let ledger = hsm.start(&dir);
    let mut stale = Node::start(&edge_dir);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(stale.monitoring("/readyz").0, 503);
    stale.stop();

    // Told the new identity, it connects: the ledger node proves it with a binding the token
    // signed, and records flow.
    let config = edge_dir.join("gateway.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace(&old_identity, &new_identity)).unwrap();
    let edge = Node::start(&edge_dir);
    edge.wait_ready();
    let answer = edge
        .client("provider-a")
        .submit(edge.addr, &loan("E-1", "subject-1"));
    assert_eq!(answer.status, 201, "{}", answer.text());
    drop(ledger);
}

#[test]
fn a_member_whose_identity_is_in_the_token_takes_part_and_cosigns_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (dirs, mut members) = e2e::consortium::consortium(tmp.path(), 3);
    let hsm = SoftHsm::new(&tmp.path().join("m0"));
    hsm.migrate(&dirs[0]);
    let rotated = rotate_offline(&hsm, &dirs[0], "node-identity");
    assert_eq!(rotated["key"]["versions"][1]["in_token"], true, "{rotated}");
    let new_identity = rotated["key"]["versions"][1]["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    // Every member is told m0's new identity, as operators would after a rotation.
    for d in &dirs {
        let config = d.join("gateway.yaml");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, text.replace(&members[0].1, &new_identity)).unwrap();
    }
    members[0].1 = new_identity;

    // m0 proves itself on the channel and cosigns with the key in its token: the checkpoint every
    // member serves carries all three cosignatures, m0's verified against its new identity.
    let m0 = hsm.start(&dirs[0]);
    let m1 = e2e::consortium::start(&dirs[1]);
    let m2 = e2e::consortium::start(&dirs[2]);
    e2e::consortium::agreed_leader(&[&m0, &m1, &m2]);
    e2e::consortium::submit_until_acknowledged(&m1, "T-1");
    e2e::eventually("every member's cosignature on m1's checkpoint", || {
        let note = m1
            .client("provider-a")
            .request(m1.addr, "GET", "/v1/checkpoint", None)
            .ok()?
            .text();
        // The log's signature line and three cosignature lines.
        (note.matches('\u{2014}').count() >= 4).then_some(())
    });
    e2e::consortium::check_cosigned(&m1, &members, 3);
}
