//! The deployable node: the systemd unit passes `systemd-analyze verify` without a warning and keeps
//! the hardening the docs promise.

// Test code: a failed unwrap or index is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd/ledgergate.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/ledgergate",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "LoadCredential=kek:/etc/credstore/ledgergate.kek",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "UMask=0077",
        "RestartPreventExitStatus=78",
    ] {
        assert!(text.contains(line), "the unit lacks {line:?}");
    }
    // verify checks that ExecStart's program exists: point it at this build's binary.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("ledgergate.service");
    let gateway = e2e::gateway_bin();
    std::fs::write(
        &copy,
        text.replace("/usr/local/bin/gateway", gateway.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (Debian package systemd; scripts/test installs it)");
    // An unknown key or system-call group is only a warning: any output fails the test.
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        e2e::stderr(&out)
    );
}
