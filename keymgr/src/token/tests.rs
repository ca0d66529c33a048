//! The token's wrapping against a real SoftHSM2 token: what it opens and what it refuses. SoftHSM2
//! reads its configuration from `SOFTHSM2_CONF` when the module is initialised, once per process,
//! and setting the variable in this process would take `unsafe`: so the test makes a token, then
//! runs its other half in a child process of this test binary with the variable set.

use std::path::Path;
use std::process::Command;

use super::*;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "keymgr-unit";
const PIN: &str = "4711-0815";
/// Set in the child: the directory holding the PIN file.
const CHILD_ENV: &str = "KEYMGR_TOKEN_TEST_DIR";

fn config(dir: &Path, key_label: &str) -> Pkcs11Config {
    Pkcs11Config {
        module: MODULE.into(),
        token_label: TOKEN.into(),
        key_label: key_label.into(),
        pin: PinSource::File(dir.join("pin")),
    }
}

#[test]
fn a_token_blob_opens_only_unaltered_under_its_own_key_and_binding() {
    assert!(
        Path::new(MODULE).exists(),
        "SoftHSM2 is not installed: apt-get install softhsm2 (scripts/test does it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("softhsm2.conf");
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let made = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", TOKEN, "--pin", PIN])
        .args(["--so-pin", "so-pin-0815"])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let pin = dir.path().join("pin");
    std::fs::write(&pin, format!("{PIN}\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "token::tests::child_wraps_and_refuses",
        ])
        .args(["--nocapture", "--test-threads=1"])
        .env("SOFTHSM2_CONF", &conf)
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success() && out.contains("1 passed"),
        "{out}\n{}",
        String::from_utf8_lossy(&child.stderr)
    );
}

/// The child half of the test above (ignored when run on its own: it needs the parent's token).
#[test]
#[ignore = "run by a_token_blob_opens_only_unaltered_under_its_own_key_and_binding"]
fn child_wraps_and_refuses() {
    let dir = std::env::var_os(CHILD_ENV).expect("run by its parent test");
    let dir = Path::new(&dir);
    let kek = TokenKek::open(&config(dir, "kek-a"), true).unwrap();
    let other = TokenKek::open(&config(dir, "kek-b"), true).unwrap();
    let secret = [0x5au8; 32];
    let aad = b"ledgergate-key/1\0pseudonym\x001\0pseudonym";
    let blob = kek.wrap(&secret, aad).unwrap();
    assert_eq!(blob.len(), 1 + IV_LEN + secret.len() + 16);
    assert_eq!(blob[0], WRAP_TOKEN_V1);
    let opened = kek.unwrap(&blob, aad).unwrap().expect("its own blob opens");
    assert_eq!(opened.expose(), secret);
    // Two wraps of one secret differ (a fresh IV each).
    assert_ne!(kek.wrap(&secret, aad).unwrap(), blob);

    // Every single flipped bit, every truncation and every other binding is refused as the
    // blob's fault (`Ok(None)`), never as the token's (`Err`, which would answer 503 and drop
    // the session).
    for bit in 0..blob.len() * 8 {
        let mut bad = blob.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let r = kek.unwrap(&bad, aad);
        assert!(matches!(r, Ok(None)), "bit {bit}: {r:?}");
    }
    for len in 0..blob.len() {
        let r = kek.unwrap(&blob[..len], aad);
        assert!(matches!(r, Ok(None)), "length {len}: {r:?}");
    }
    for other_aad in [
        &b"ledgergate-key/1\0pseudonym\x002\0pseudonym"[..],
        b"ledgergate-key/1\0request-mac\x001\0request-mac",
        b"",
    ] {
        assert!(kek.unwrap(&blob, other_aad).unwrap().is_none());
    }
    // Another key of the same token does not open it.
    assert!(other.unwrap(&blob, aad).unwrap().is_none());

    // The session survived every refusal: it still wraps and opens.
    let again = kek.wrap(b"after", b"aad").unwrap();
    assert_eq!(
        kek.unwrap(&again, b"aad").unwrap().unwrap().expose(),
        &b"after"[..]
    );
}
