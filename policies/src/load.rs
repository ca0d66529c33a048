//! Reading policy files: one file or every `*.yaml`/`*.yml` of a directory, parsed, checked across
//! files, and turned into one `PolicySet`, or every error found.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{PolicyError, PolicyErrors};
use crate::locate::locate;
use crate::parse::{FileDoc, Parser, display_path};
use crate::set::PolicySet;

/// The files a path stands for: itself, or a directory's YAML files in name order.
fn files(path: &Path) -> Result<Vec<PathBuf>, PolicyErrors> {
    let meta = std::fs::metadata(path)
        .map_err(|e| PolicyErrors::one(path, "io_error", format!("cannot read it: {e}")))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let listing = std::fs::read_dir(path)
        .map_err(|e| PolicyErrors::one(path, "io_error", format!("cannot list it: {e}")))?;
    let mut out: Vec<PathBuf> = listing
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(PolicyErrors::one(
            path,
            "no_policy_files",
            "no *.yaml files in the directory",
        ));
    }
    Ok(out)
}

/// Parses one file's text; syntax errors carry serde_yaml's position.
pub(crate) fn parse_file(file: &Path, src: &str) -> (FileDoc, Vec<PolicyError>) {
    let value: serde_yaml::Value = match serde_yaml::from_str(src) {
        Ok(v) => v,
        Err(e) => {
            let text = e.to_string();
            // serde_yaml appends " at line L column C"; the position has its own place in our format.
            let message = text.split(" at line ").next().unwrap_or(&text).to_owned();
            let duplicate = message
                .strip_prefix("duplicate entry with key ")
                .map(|k| k.trim_matches('"').to_owned());
            let code = if duplicate.is_some() {
                "duplicate_key"
            } else {
                "yaml_syntax"
            };
            let position = duplicate
                .and_then(|k| crate::locate::locate_duplicate(src, &k))
                .or_else(|| e.location().map(|l| (l.line(), l.column())));
            let error = PolicyError {
                file: file.to_owned(),
                position,
                path: String::new(),
                code,
                message,
            };
            return (FileDoc::default(), vec![error]);
        }
    };
    let mut parser = Parser::new(file, src);
    let doc = parser.document(&value);
    (doc, parser.errors)
}

/// Loads `path` (a file or a directory).
pub(crate) fn load(path: &Path) -> Result<PolicySet, PolicyErrors> {
    let mut sources = Vec::new();
    for file in files(path)? {
        let src = std::fs::read_to_string(&file)
            .map_err(|e| PolicyErrors::one(&file, "io_error", format!("cannot read it: {e}")))?;
        sources.push((file, src));
    }
    build(&sources)
}

/// Builds one policy set from (file, text) pairs: parse each, then check across all of them.
pub(crate) fn build(sources: &[(PathBuf, String)]) -> Result<PolicySet, PolicyErrors> {
    let mut errors = Vec::new();
    let mut docs = Vec::with_capacity(sources.len());
    for (file, src) in sources {
        let (doc, errs) = parse_file(file, src);
        errors.extend(errs);
        docs.push((file, src, doc));
    }
    let mut subjects = BTreeMap::new();
    let mut record_types = BTreeMap::new();
    let mut limits = BTreeMap::new();
    let mut err = |file: &Path, src: &str, path: &[crate::locate::Seg], code, message: String| {
        errors.push(PolicyError {
            file: file.to_owned(),
            position: locate(src, path),
            path: display_path(path),
            code,
            message,
        });
    };
    let mut matchers = BTreeMap::new();
    for (file, src, doc) in &docs {
        for (s, p) in &doc.subjects {
            if subjects.contains_key(&s.name) {
                err(
                    file,
                    src,
                    p,
                    "duplicate_subject",
                    format!("subject `{}` is defined in another file too", s.name),
                );
            } else if let Some(other) = matchers.get(&s.matcher) {
                let msg = format!("matches exactly the certificates subject `{other}` matches");
                err(file, src, p, "duplicate_subject_match", msg);
            } else {
                matchers.insert(s.matcher.clone(), s.name.clone());
                subjects.insert(s.name.clone(), s.clone());
            }
        }
        for (rt, p) in &doc.record_types {
            if record_types.insert(rt.name.clone(), rt.clone()).is_some() {
                err(
                    file,
                    src,
                    p,
                    "duplicate_record_type",
                    format!("record type `{}` is defined in another file too", rt.name),
                );
            }
        }
        for (role, l, p) in &doc.limits {
            if limits.insert(role.clone(), *l).is_some() {
                err(
                    file,
                    src,
                    p,
                    "duplicate_limits",
                    format!("limits for role `{role}` are defined in another file too"),
                );
            }
        }
    }
    let held: BTreeSet<&String> = subjects.values().flat_map(|s| s.roles.iter()).collect();
    for (file, src, doc) in &docs {
        for (role, p) in &doc.role_refs {
            if !held.contains(role) {
                err(
                    file,
                    src,
                    p,
                    "unknown_role",
                    format!("no subject has the role `{role}`"),
                );
            }
        }
    }
    if !errors.is_empty() {
        return Err(PolicyErrors(errors));
    }
    Ok(PolicySet::new(
        subjects.into_values().collect(),
        record_types,
        limits,
        sources.iter().map(|(f, _)| f.clone()).collect(),
    ))
}
