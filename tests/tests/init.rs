//! `gateway init` makes the contract's node directory, and every part of it works with the other tools.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Command;

use e2e::{gateway, keymgr_bin, stderr, stdout};
use serde_json::Value;

fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed by .ci/run");
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

#[test]
fn init_makes_a_complete_private_node_directory_and_finds_it_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let d = dir.to_str().unwrap();
    let first = gateway(&["init", "--dir", d, "--json"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let first: Value = serde_json::from_str(&stdout(&first)).unwrap();
    assert_eq!(first["created"], true);
    let again: Value =
        serde_json::from_str(&stdout(&gateway(&["init", "--dir", d, "--json"]))).unwrap();
    assert_eq!(
        (again["created"].as_bool(), &again["vkey"]),
        (Some(false), &first["vkey"])
    );

    let expected = [
        "gateway.yaml",
        "kek.pass",
        "pki/ca.pem",
        "pki/ca.key",
        "pki/server.pem",
        "pki/server.key",
        "pki/provider-a.pem",
        "pki/provider-a.key",
        "pki/provider-b.pem",
        "pki/provider-b.key",
        "pki/officer.pem",
        "pki/officer.key",
        "pki/revoked.pem",
        "pki/revoked.key",
        "pki/registry.pem",
        "pki/registry.key",
        "pki/crl.pem",
        "policies/subjects.yaml",
        "policies/finance.yaml",
        "policies/health.yaml",
        "data/keys",
        "data/ledger",
    ];
    for f in expected {
        assert!(dir.join(f).exists(), "{f} is missing");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &str| std::fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
        for secret in [
            "kek.pass",
            "pki/ca.key",
            "pki/server.key",
            "pki/provider-a.key",
            "pki/officer.key",
        ] {
            assert_eq!(mode(secret), 0o600, "{secret}");
        }
        for private in ["", "pki", "data"] {
            assert_eq!(mode(private), 0o700, "{private}/");
        }
    }
}

#[test]
fn a_half_made_directory_is_refused_not_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
    let out = gateway(&["init", "--dir", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "gateway: init: {} exists but is not a complete node directory (no gateway.yaml); move it away or pick another --dir\n",
            tmp.path().display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn the_pki_policies_ledger_and_keys_of_a_new_node_all_check_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let d = dir.to_str().unwrap();
    let made: Value =
        serde_json::from_str(&stdout(&gateway(&["init", "--dir", d, "--json"]))).unwrap();

    // The PKI, checked by an independent implementation.
    let pki = dir.join("pki");
    let (ok, text) = openssl(
        &pki,
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "server.pem",
            "provider-a.pem",
            "provider-b.pem",
            "officer.pem",
        ],
    );
    assert!(ok, "{text}");
    let (ok, text) = openssl(
        &pki,
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "ca.pem",
            "-CRLfile",
            "crl.pem",
            "provider-a.pem",
        ],
    );
    assert!(ok, "{text}");
    let (ok, text) = openssl(
        &pki,
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "ca.pem",
            "-CRLfile",
            "crl.pem",
            "revoked.pem",
        ],
    );
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    let (_, text) = openssl(
        &pki,
        &[
            "x509",
            "-in",
            "provider-b.pem",
            "-noout",
            "-subject",
            "-ext",
            "subjectAltName",
        ],
    );
    assert!(
        text.contains("CN = provider-b")
            && text.contains("URI:spiffe://ledgergate.local/provider/provider-b"),
        "{text}"
    );
    let (_, text) = openssl(
        &pki,
        &[
            "x509",
            "-in",
            "server.pem",
            "-noout",
            "-ext",
            "subjectAltName",
        ],
    );
    assert!(
        text.contains("DNS:localhost") && text.contains("IP Address:127.0.0.1"),
        "{text}"
    );

    // The policies.
    let out = gateway(&["policy", "check", dir.join("policies").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The ledger, against the key `init` printed.
    let out = gateway(&[
        "ledger",
        "verify",
        "--data",
        d,
        "--vkey",
        made["vkey"].as_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The key store, opened with the development passphrase file.
    let pass = std::fs::read_to_string(dir.join("kek.pass")).unwrap();
    let out = Command::new(keymgr_bin())
        .args([
            "--store",
            dir.join("data/keys").to_str().unwrap(),
            "list",
            "--json",
        ])
        .env("LEDGERGATE_KEK_PASSPHRASE", pass.trim_end())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let keys: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let mut purposes: Vec<&str> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["purpose"].as_str().unwrap())
        .collect();
    purposes.sort_unstable();
    assert_eq!(
        purposes,
        [
            "channel-static",
            "checkpoint-signing",
            "node-identity",
            "pseudonym"
        ]
    );
}

#[test]
fn a_data_directory_of_the_old_vault_layout_is_refused_not_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = e2e::node::init_node(tmp.path());
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir.join("data/vault"))
            .unwrap();
    }
    let config = dir.join("gateway.yaml");
    let out = gateway(&["serve", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("data/vault: a vault database of an older layout"),
        "{err}"
    );
}

#[test]
#[cfg(unix)]
fn the_data_directory_is_the_nodes_alone_and_checked_at_start() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let dir = e2e::node::init_node(tmp.path());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // As made by init: every directory 0700, every file 0600.
    for (path, want) in [
        ("data", 0o700),
        ("data/ledger", 0o700),
        ("data/ledger/ledger.redb", 0o600),
        ("data/keys", 0o700),
        ("data/keys/keys.redb", 0o600),
    ] {
        assert_eq!(mode(&dir.join(path)), want, "{path}");
    }
    // Opened up, each is refused at start with one line that names it and the fix.
    let config = dir.join("gateway.yaml");
    for (path, open, fix) in [
        ("data/ledger", 0o755, "700"),
        ("data/ledger/ledger.redb", 0o644, "600"),
        ("data/keys/keys.redb", 0o640, "600"),
        ("data", 0o750, "700"),
    ] {
        let target = dir.join(path);
        let was = mode(&target);
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(open)).unwrap();
        let out = gateway(&["serve", "--config", config.to_str().unwrap()]);
        assert!(!out.status.success(), "{path}");
        assert_eq!(
            stderr(&out),
            format!(
                "gateway: serve: data directory: {}: mode {open:04o} lets others in; it must be \
                 the owner's alone (chmod {fix})\n",
                target.display()
            )
        );
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(was)).unwrap();
    }
}
