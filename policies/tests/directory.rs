//! Policies spread over a directory: checked across files, and never applied in part.

// Test code: a failed unwrap is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use policies::PolicySet;

const SUBJECTS: &str = "version: 1\nsubjects:\n  bank: { match: { cn: bank }, roles: [provider] }\nlimits:\n  provider: { rate_per_second: 5, burst: 5, max_record_bytes: 1000 }\n";
const LOAN: &str = "version: 1\nrecord_types:\n  loan:\n    submit: [provider]\n    read: [provider]\n    subject_field: id\n    fields:\n      id: { type: string, required: true, transform: keep }\n";

fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(d.path().join(name), text).unwrap();
    }
    d
}

fn errors(d: &tempfile::TempDir) -> Vec<String> {
    PolicySet::load(d.path())
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn roles_are_checked_against_the_subjects_of_every_file() {
    let d = dir(&[
        ("a.yaml", SUBJECTS),
        ("b.yaml", LOAN),
        ("notes.txt", "not yaml: ["),
    ]);
    let p = PolicySet::load(d.path()).unwrap();
    assert_eq!(p.sources().len(), 2, "only *.yaml and *.yml files are read");
}

#[test]
fn duplicates_across_files_are_named_with_file_and_position() {
    let other_subjects = "version: 1\nsubjects:\n  bank: { match: { cn: other }, roles: [provider] }\n  twin: { match: { cn: bank }, roles: [provider] }\nlimits:\n  provider: { rate_per_second: 1, burst: 1, max_record_bytes: 10 }\n";
    let d = dir(&[
        ("a.yaml", SUBJECTS),
        ("b.yaml", LOAN),
        ("c.yaml", other_subjects),
        ("d.yaml", LOAN),
    ]);
    let p = |f: &str| d.path().join(f).display().to_string();
    assert_eq!(
        errors(&d),
        [
            format!(
                "{}:3:3: duplicate_subject: subjects.bank: subject `bank` is defined in another file too",
                p("c.yaml")
            ),
            format!(
                "{}:4:3: duplicate_subject_match: subjects.twin: matches exactly the certificates subject `bank` matches",
                p("c.yaml")
            ),
            format!(
                "{}:6:3: duplicate_limits: limits.provider: limits for role `provider` are defined in another file too",
                p("c.yaml")
            ),
            format!(
                "{}:3:3: duplicate_record_type: record_types.loan: record type `loan` is defined in another file too",
                p("d.yaml")
            ),
        ]
    );
}

#[test]
fn an_empty_or_missing_directory_is_an_error() {
    let d = dir(&[]);
    assert_eq!(
        errors(&d),
        [format!(
            "{}: no_policy_files: no *.yaml files in the directory",
            d.path().display()
        )]
    );
    let missing = d.path().join("nope.yaml");
    let e = PolicySet::load(&missing).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}: io_error: cannot read it:", missing.display())),
        "{e}"
    );
}

#[test]
fn errors_print_as_file_line_column_code_message() {
    let d = dir(&[(
        "a.yaml",
        "version: 1\nsubjects:\n  bank: { match: { cn: bank }, roles: [provider] }\nrecord_types:\n  loan:\n    submit: [provider]\n    read: [provider]\n    subject_field: id\n    fields:\n      id: { type: string, required: true, transform: { generalize: { bucket: 3 } } }\n",
    )]);
    assert_eq!(
        errors(&d),
        [format!(
            "{}:10:43: transform_type_mismatch: record_types.loan.fields.id.transform: `generalize` applies to integer and number fields",
            d.path().join("a.yaml").display()
        )]
    );
}
