//! `gateway policy check` as an operator uses it.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use e2e::{gateway, stderr, stdout};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

#[test]
fn the_example_policies_pass_with_a_one_line_summary() {
    let dir = repo().join("policies/examples");
    let out = gateway(&["policy", "check", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1);
    assert!(
        text.starts_with(
            "ok: 2 record types (lab_result, loan_application), 4 subjects, 3 files, digest "
        ),
        "{text}"
    );
    let json: Value = serde_json::from_str(&stdout(&gateway(&[
        "policy",
        "check",
        dir.to_str().unwrap(),
        "--json",
    ])))
    .unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["digest"].as_str().unwrap().len(), 64);
}

#[test]
fn every_catalogued_invalid_policy_fails_with_its_located_errors() {
    let dir = repo().join("policies/tests/invalid");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().path();
        let name = file.to_str().unwrap();
        let expect = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# expect: ")
            .unwrap()
            .to_owned();
        let out = gateway(&["policy", "check", name]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let lines: Vec<String> = stderr(&out).lines().map(str::to_owned).collect();
        let wanted: Vec<String> = expect
            .split("; ")
            .map(|e| {
                let (pos, code) = e.split_once(' ').unwrap();
                if pos == "-" {
                    format!("{name}: {code}: ")
                } else {
                    format!("{name}:{pos}: {code}: ")
                }
            })
            .collect();
        assert_eq!(lines.len(), wanted.len(), "{name}: {lines:?}");
        for (line, want) in lines.iter().zip(&wanted) {
            assert!(
                line.starts_with(want),
                "{name}: expected a line starting {want:?}, got {line:?}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 25);
}

#[test]
fn json_errors_carry_file_line_column_path_and_code() {
    let file = repo().join("policies/tests/invalid/bucket_zero.yaml");
    let out = gateway(&["policy", "check", file.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let e = &v["errors"][0];
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64(), e["code"].as_str()),
        (Some(12), Some(56), Some("invalid_bucket"))
    );
    assert_eq!(
        e["path"],
        "record_types.loan.fields.age.transform.generalize.bucket"
    );
}
