//! A SoftHSM2 token for the tests: its own configuration and token directory under a test's temporary
//! directory (`SOFTHSM2_CONF`), so tests never touch the machine's tokens or each other's.

// Test support: a failed unwrap is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::node::Node;

/// Debian's SoftHSM2 PKCS#11 module (package `softhsm2`).
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The token's label in every test.
pub const TOKEN: &str = "ledgergate-test";
/// The user PIN of every test token.
pub const PIN: &str = "4711-test-pin";

/// A SoftHSM2 installation of one test.
#[derive(Debug)]
pub struct SoftHsm {
    /// Its configuration file (`SOFTHSM2_CONF`).
    pub conf: PathBuf,
    /// Where its tokens live (remove it to pull the token out).
    pub tokens: PathBuf,
    /// A 0600 file holding [`PIN`].
    pub pin_file: PathBuf,
}

impl SoftHsm {
    /// A configuration under `dir` with one initialised token, [`TOKEN`], whose user PIN is [`PIN`].
    pub fn new(dir: &Path) -> SoftHsm {
        assert!(
            Path::new(MODULE).exists(),
            "SoftHSM2 is not installed: apt-get install softhsm2 (scripts/test does it)"
        );
        let tokens = dir.join("softhsm-tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let hsm = SoftHsm {
            conf,
            tokens,
            pin_file: dir.join("pkcs11.pin"),
        };
        let out = hsm
            .command("softhsm2-util")
            .args(["--init-token", "--free", "--label", TOKEN, "--pin", PIN])
            .args(["--so-pin", "so-pin-0815"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&hsm.pin_file, format!("{PIN}\n")).unwrap();
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&hsm.pin_file, std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
        hsm
    }

    /// `program` with this installation's `SOFTHSM2_CONF`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env("SOFTHSM2_CONF", &self.conf);
        c
    }

    /// The prefix that runs a node with this installation (`Node::start_with`).
    pub fn env_prefix(&self) -> Vec<String> {
        vec![
            "env".into(),
            format!("SOFTHSM2_CONF={}", self.conf.display()),
        ]
    }

    /// keymgr's options naming the token (the PIN from [`SoftHsm::pin_file`]).
    pub fn keymgr_args(&self) -> Vec<String> {
        vec![
            "--pkcs11-module".into(),
            MODULE.into(),
            "--pkcs11-token".into(),
            TOKEN.into(),
            "--pkcs11-pin-file".into(),
            self.pin_file.display().to_string(),
        ]
    }

    /// The `kek:` line of a gateway.yaml that uses the token.
    pub fn kek_config(&self) -> String {
        format!(
            "kek: {{ pkcs11: {{ module: {MODULE}, token_label: {TOKEN}, pin_file: {} }} }}",
            self.pin_file.display()
        )
    }

    /// `pkcs11-tool --list-objects` (OpenSC, an independent client) as the token's user.
    pub fn list_objects(&self) -> String {
        self.pkcs11_tool(&["--list-objects"])
    }

    /// `pkcs11-tool <args>` on the token, logged in as its user; its standard output.
    pub fn pkcs11_tool(&self, args: &[&str]) -> String {
        let out = self
            .command("pkcs11-tool")
            .args([
                "--module",
                MODULE,
                "--token-label",
                TOKEN,
                "--login",
                "--pin",
                PIN,
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `keymgr --store <the key store of the node in `dir`> <args>` with this installation and
    /// `env` set (and no passphrase unless `env` gives one).
    pub fn keymgr_local(&self, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.command(crate::keymgr_bin());
        c.arg("--store")
            .arg(dir.join("data/keys"))
            .args(args)
            .env_remove("LEDGERGATE_KEK_PASSPHRASE");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    /// Moves the key store of the node in `dir` (made by `gateway init`) onto the token (`keymgr
    /// change-kek --to-pkcs11`) and points its gateway.yaml at the token; the passphrase file is
    /// deleted.
    pub fn migrate(&self, dir: &Path) {
        let mut args = vec!["change-kek".to_owned(), "--to-pkcs11".to_owned()];
        args.extend(self.keymgr_args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let pass = passphrase(dir);
        let out = self.keymgr_local(dir, &args, &[("LEDGERGATE_KEK_PASSPHRASE", pass.as_str())]);
        assert!(out.status.success(), "{}", crate::stderr(&out));
        let config = dir.join("gateway.yaml");
        let text = std::fs::read_to_string(&config).unwrap();
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| *l != "kek:" && !l.trim_start().starts_with("passphrase_file:"))
            .collect();
        std::fs::write(
            &config,
            format!("{}\n{}\n", kept.join("\n"), self.kek_config()),
        )
        .unwrap();
        std::fs::remove_file(dir.join("kek.pass")).unwrap();
    }

    /// Starts the node in `dir` with this installation.
    pub fn start(&self, dir: &Path) -> Node {
        let prefix = self.env_prefix();
        let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
        Node::start_with(dir, &prefix, std::process::Stdio::inherit())
    }
}

/// The development passphrase `gateway init` wrote in `dir`.
pub fn passphrase(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("kek.pass"))
        .unwrap()
        .trim_end()
        .to_owned()
}
