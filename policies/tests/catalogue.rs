//! The catalogue of invalid policies: every file in `tests/invalid/` must be refused with exactly the
//! errors its first line announces, `# expect: L:C code[; L:C code…]` (`-` for an unknown position).

// Test code: a failed unwrap is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use policies::PolicySet;

fn actual(path: &Path) -> String {
    match PolicySet::load(path) {
        Ok(_) => "accepted".to_owned(),
        Err(errors) => errors
            .0
            .iter()
            .map(|e| match e.position {
                Some((l, c)) => format!("{l}:{c} {}", e.code),
                None => format!("- {}", e.code),
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}

#[test]
fn every_invalid_policy_is_refused_with_its_exact_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 25, "the catalogue has {} cases", files.len());
    let mut wrong = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or("(no expect line)");
        let got = actual(file);
        if got != expected {
            wrong.push(format!(
                "{}:\n  expected {expected}\n  got      {got}",
                file.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
