//! The power-loss file system (`src/bin/powerfs.rs`) mounted for a test: everything written under
//! [`PowerFs::path`] that was not synced is lost at [`PowerFs::cut`].

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// A mounted powerfs; unmounted when dropped.
#[derive(Debug)]
pub struct PowerFs {
    at: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl PowerFs {
    /// Mounts a new, empty powerfs at `at` (created if missing). Needs /dev/fuse: `.ci/run` installs
    /// fuse3, and a machine without FUSE fails here with the reason rather than skipping.
    pub fn mount(at: &Path) -> PowerFs {
        std::fs::create_dir_all(at).unwrap_or_else(|e| panic!("{}: {e}", at.display()));
        let mut child = Command::new(crate::bin("powerfs"))
            .arg(at)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("powerfs starts");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let stdin = child.stdin.take();
        let mut fs = PowerFs {
            at: at.to_owned(),
            child,
            stdin,
            stdout,
        };
        assert_eq!(
            fs.read_line(),
            "mounted",
            "powerfs could not mount at {} (is /dev/fuse there?)",
            at.display()
        );
        fs
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.at
    }

    fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("powerfs answers");
        line.trim_end().to_owned()
    }

    fn command(&mut self, command: &str) -> String {
        let stdin = self.stdin.as_mut().expect("powerfs is running");
        writeln!(stdin, "{command}").expect("powerfs takes commands");
        stdin.flush().expect("powerfs takes commands");
        self.read_line()
    }

    /// The power cut: everything not synced is gone, and the kernel's caches with it (the file system
    /// is unmounted and mounted again). Stop every process that uses it first.
    pub fn cut(&mut self) {
        assert_eq!(self.command("cut"), "ok", "powerfs power cut");
    }

    /// How many file syncs, directory syncs and writes it has seen.
    pub fn stats(&mut self) -> String {
        self.command("stats")
    }
}

impl Drop for PowerFs {
    fn drop(&mut self) {
        // End of input: powerfs unmounts and exits.
        self.stdin.take();
        let _ = self.child.wait();
    }
}
