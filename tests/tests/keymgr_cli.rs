//! `keymgr` as a security officer uses it: the real binary on a real store.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::{Command, Output};

use e2e::{eventually, keymgr_bin, stderr, stdout};
use serde_json::Value;

const PASS: &str = "officer test passphrase 1";

fn keymgr(store: &Path, pass: &str, args: &[&str]) -> Output {
    Command::new(keymgr_bin())
        .arg("--store")
        .arg(store)
        .args(args)
        .env("LEDGERGATE_KEK_PASSPHRASE", pass)
        .env("LEDGERGATE_ACTOR", "alice")
        .output()
        .unwrap()
}

fn ok_json(store: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = keymgr(store, PASS, &all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn init() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys");
    let out = keymgr(&store, PASS, &["init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    (dir, store)
}

/// What the store holds, as officers can read it: every key record and the whole audit trail. (Its
/// file is no measure: the storage engine may write to it whenever a store is opened.)
fn snapshot(store: &Path) -> (Value, Value) {
    (ok_json(store, &["list"]), ok_json(store, &["audit"]))
}

fn states(key: &Value) -> Vec<(u64, String)> {
    key["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_full_lifecycle_through_the_cli() {
    let (_d, store) = init();
    let k = ok_json(
        &store,
        &[
            "create",
            "pseudonym",
            "--purpose",
            "pseudonym",
            "--rotate-every",
            "30d",
            "--max-age",
            "90d",
        ],
    )["key"]
        .clone();
    assert_eq!(
        (
            k["primary"].as_u64(),
            k["max_age"].as_u64(),
            k["rotate_every"].as_u64()
        ),
        (Some(1), Some(90 * 86400), Some(30 * 86400))
    );
    assert_eq!(states(&k), [(1, "active".into())]);
    assert_eq!(k["versions"][0]["created_by"], "alice");

    let k = ok_json(&store, &["rotate", "pseudonym"])["key"].clone();
    assert_eq!(k["primary"], 2);
    assert_eq!(
        states(&k),
        [(1, "deactivated".into()), (2, "active".into())]
    );

    let k = ok_json(
        &store,
        &[
            "revoke",
            "pseudonym",
            "--version",
            "1",
            "--reason",
            "compromised",
            "--occurred-at",
            "2026-01-01T00:00:00Z",
        ],
    )["key"]
        .clone();
    assert_eq!(
        states(&k),
        [(1, "compromised".into()), (2, "active".into())]
    );
    assert_eq!(k["versions"][0]["detail"]["occurred_at"], 1_767_225_600);
    assert_eq!(k["versions"][0]["detail"]["by"], "alice");

    let k = ok_json(
        &store,
        &[
            "schedule-destroy",
            "pseudonym",
            "--version",
            "1",
            "--window",
            "1s",
        ],
    )["key"]
        .clone();
    assert_eq!(
        states(&k),
        [(1, "destroy-scheduled".into()), (2, "active".into())]
    );

    // Destruction is refused until the window has passed, then done.
    let k = eventually("the destroy window to pass", || {
        let out = keymgr(
            &store,
            PASS,
            &["destroy", "pseudonym", "--version", "1", "--json"],
        );
        out.status
            .success()
            .then(|| serde_json::from_str::<Value>(&stdout(&out)).unwrap()["key"].clone())
    });
    assert_eq!(states(&k), [(1, "destroyed".into()), (2, "active".into())]);

    let audit = ok_json(&store, &["audit"]);
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "init",
            "create",
            "rotate",
            "revoke",
            "schedule-destroy",
            "destroy"
        ]
    );
    assert!(
        audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "alice")
    );

    let listed = ok_json(&store, &["list"]);
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1);
    let text = stdout(&keymgr(&store, PASS, &["list"]));
    assert!(
        text.lines().nth(1).unwrap().starts_with("pseudonym "),
        "{text}"
    );
}

#[test]
fn failures_are_one_clear_line_and_change_nothing() {
    let (_d, store) = init();
    ok_json(&store, &["create", "node", "--purpose", "node-identity"]);
    ok_json(
        &store,
        &[
            "revoke",
            "node",
            "--version",
            "1",
            "--reason",
            "compromised",
        ],
    );
    ok_json(&store, &["rotate", "node"]);
    ok_json(
        &store,
        &[
            "schedule-destroy",
            "node",
            "--version",
            "1",
            "--window",
            "7d",
        ],
    );
    ok_json(&store, &["create", "other", "--purpose", "pseudonym"]);
    ok_json(
        &store,
        &[
            "revoke",
            "other",
            "--version",
            "1",
            "--reason",
            "compromised",
        ],
    );
    let before = snapshot(&store);
    let cases: [(&str, &[&str], &str); 8] = [
        (
            "wrong passphrase",
            &["rotate", "node"],
            "keymgr: open store: wrong passphrase or key file: it does not open this key store\n",
        ),
        (
            PASS,
            &["show", "nope"],
            "keymgr: show: no key named `nope`\n",
        ),
        (
            PASS,
            &["rotate", "nothing"],
            "keymgr: rotate: no key named `nothing`\n",
        ),
        (
            PASS,
            &["revoke", "other", "--version", "1", "--reason", "retired"],
            "keymgr: revoke: version 1 is compromised and cannot be un-compromised\n",
        ),
        (
            PASS,
            &["revoke", "node", "--version", "1", "--reason", "superseded"],
            "keymgr: revoke: version 1 is scheduled for destruction; cancel that first\n",
        ),
        (
            PASS,
            &[
                "schedule-destroy",
                "node",
                "--version",
                "2",
                "--window",
                "1d",
            ],
            "keymgr: schedule-destroy: version 2 is the primary of a key in use; rotate first, or pass --force\n",
        ),
        (
            PASS,
            &["create", "node", "--purpose", "pseudonym"],
            "keymgr: create: a key named `node` exists already\n",
        ),
        (
            PASS,
            &["revoke", "node", "--version", "9", "--reason", "retired"],
            "keymgr: revoke: key `node` has no version 9\n",
        ),
    ];
    for (pass, args, want) in cases {
        let out = keymgr(&store, pass, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&out), want, "{args:?}");
    }
    let out = keymgr(&store, PASS, &["destroy", "node", "--version", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("keymgr: destroy: version 1 may not be destroyed before ")
            && err.lines().count() == 1,
        "{err}"
    );
    // Bad arguments are refused by the parser, before the store is touched.
    let out = keymgr(
        &store,
        PASS,
        &[
            "revoke",
            "node",
            "--version",
            "2",
            "--reason",
            "retired",
            "--occurred-at",
            "yesterday",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("expected an RFC 3339 time"),
        "{}",
        stderr(&out)
    );
    let json = keymgr(&store, PASS, &["show", "nope", "--json"]);
    let v: Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(
        (v["ok"].as_bool(), v["code"].as_str()),
        (Some(false), Some("not_found"))
    );
    assert_eq!(
        snapshot(&store),
        before,
        "a refused command changed the store"
    );
}

#[test]
fn a_damaged_store_and_a_locked_store_are_reported_not_panicked_on() {
    let (_d, store) = init();
    ok_json(&store, &["create", "node", "--purpose", "node-identity"]);
    {
        let _held = keymgr::KeyManager::open(
            &store,
            &keymgr::KekSource::Passphrase(keymgr::Secret::new(PASS.as_bytes().to_vec())),
        )
        .unwrap();
        let out = keymgr(&store, PASS, &["list"]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            stderr(&out),
            format!(
                "keymgr: open store: key store at {} is locked by another process (is the gateway running? use --gateway)\n",
                store.display()
            )
        );
    }
    let db = store.join("keys.redb");
    let len = usize::try_from(std::fs::metadata(&db).unwrap().len()).unwrap();
    std::fs::write(&db, vec![0x5Au8; len]).unwrap();
    let out = keymgr(&store, PASS, &["list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("keymgr: open store: key store is damaged or not a key store: "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_key_file_kek_must_be_private() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys");
    let kek = dir.path().join("kek.hex");
    let run = |args: &[&str]| {
        Command::new(keymgr_bin())
            .arg("--store")
            .arg(&store)
            .arg("--kek-file")
            .arg(&kek)
            .args(args)
            .env_remove("LEDGERGATE_KEK_PASSPHRASE")
            .output()
            .unwrap()
    };
    assert!(run(&["init"]).status.success());
    assert!(
        run(&["create", "pseudonym", "--purpose", "pseudonym"])
            .status
            .success()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&kek).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = run(&["list"]);
        assert_eq!(
            stderr(&out),
            format!(
                "keymgr: open store: key-encryption key file {}: permissions 644 let others read it; run chmod 600\n",
                kek.display()
            )
        );
    }
}

#[test]
fn changing_the_passphrase_rewraps_everything_and_retires_the_old_one() {
    let (_d, store) = init();
    let before = ok_json(&store, &["create", "pseudonym", "--purpose", "pseudonym"]);
    let out = Command::new(keymgr_bin())
        .arg("--store")
        .arg(&store)
        .args(["change-passphrase", "--json"])
        .env("LEDGERGATE_KEK_PASSPHRASE", PASS)
        .env(
            "LEDGERGATE_NEW_KEK_PASSPHRASE",
            "the new officer passphrase",
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stderr(&keymgr(&store, PASS, &["list"])),
        "keymgr: open store: wrong passphrase or key file: it does not open this key store\n"
    );
    let after = keymgr(
        &store,
        "the new officer passphrase",
        &["show", "pseudonym", "--json"],
    );
    assert!(after.status.success(), "{}", stderr(&after));
    let after: Value = serde_json::from_str(&stdout(&after)).unwrap();
    assert_eq!(after["key"]["versions"], before["key"]["versions"]);
}
