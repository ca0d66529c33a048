//! Support for the black-box tests: where the built binaries are, how to run them, and how to wait for
//! something without bare sleeps.

#![forbid(unsafe_code)]
// This library exists only to serve tests: failing loudly is its job.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

pub mod client;
pub mod consortium;
pub mod load;
pub mod netns;
pub mod node;
pub mod powerfs;
pub mod raw;
pub mod relay;
pub mod softhsm;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A binary of this build, rebuilt first (once per test process) if anything is stale: `cargo test
/// -p e2e` alone does not rebuild other packages' binaries, and testing a stale binary would test the
/// wrong code. The build covers the whole workspace with all targets, so its features resolve as in
/// `cargo test --workspace` and it is a no-op there; building one package alone would resolve them
/// differently (the `testing` features of the test build) and rebuild the binary on every run.
pub fn bin(name: &str) -> PathBuf {
    static PROFILE_DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = PROFILE_DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap_or_default();
        // target/<profile>/deps/<test exe> → target/<profile>/
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .map(PathBuf::from)
            .unwrap_or_default();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "--workspace", "--all-targets"]);
        // Cargo gives a test or bench its package's variables (CARGO_MANIFEST_DIR, …); some build
        // scripts (ring's) rebuild when such a variable changes, so passing them on would make this
        // build differ from a plain `cargo build` and each would undo the other.
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(|n| {
                n.starts_with("CARGO_") && n != "CARGO_HOME" && n != "CARGO_TARGET_DIR"
            }) {
                cmd.env_remove(name);
            }
        }
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        if let Some(target_dir) = profile_dir.parent() {
            cmd.arg("--target-dir").arg(target_dir);
        }
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build the binaries: {e}"));
        assert!(status.success(), "building the workspace's binaries failed");
        profile_dir
    });
    dir.join(name)
}

/// The `gateway` binary of this build.
pub fn gateway_bin() -> PathBuf {
    bin("gateway")
}

/// Runs `gateway` with `args` and returns its output.
pub fn gateway(args: &[&str]) -> Output {
    Command::new(gateway_bin())
        .args(args)
        .env("LEDGERGATE_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("cannot start the gateway binary: {e}"))
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// How long `eventually` waits: `LEDGERGATE_TEST_PATIENCE_MS`, default 20 s (shared CI machines are slow).
pub fn patience() -> Duration {
    let ms = std::env::var("LEDGERGATE_TEST_PATIENCE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    Duration::from_millis(ms)
}

/// Polls `check` until it returns `Some`, or panics with `what` after the patience runs out.
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + patience();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `keymgr` binary of this build.
pub fn keymgr_bin() -> PathBuf {
    bin("keymgr")
}
