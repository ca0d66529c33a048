//! Output: tables for people, JSON for scripts (`--json`), and one line per failure.

#![allow(clippy::print_stdout, clippy::print_stderr)] // printing is this module's job

use std::path::Path;

use keymgr::{Command, Error, KeyManager, KeyView, Outcome, rfc3339};
use serde_json::json;

/// The name of the step a command is, for error lines.
pub(crate) fn step(c: &Command) -> &'static str {
    c.verb()
}

pub(crate) fn failure(json_mode: bool, step: &str, e: &Error) {
    if json_mode {
        println!(
            "{}",
            json!({ "ok": false, "code": e.code(), "error": e.to_string() })
        );
    }
    eprintln!("keymgr: {step}: {e}");
}

pub(crate) fn initialised(json_mode: bool, store: &Path, m: &KeyManager) {
    let kek = if m.kek_in_token() { "pkcs11" } else { "local" };
    if json_mode {
        println!("{}", json!({ "ok": true, "store": store, "kek": kek }));
    } else if m.kek_in_token() {
        println!(
            "key store created at {} (its KEK is in the PKCS#11 token)",
            store.display()
        );
    } else {
        println!("key store created at {}", store.display());
    }
}

pub(crate) fn changed(json_mode: bool) {
    if json_mode {
        println!("{}", json!({ "ok": true }));
    } else {
        println!("every key re-wrapped under the new key-encryption key");
    }
}

fn key_table(keys: &[KeyView]) {
    println!(
        "{:<32} {:<19} {:>7} {:>8}  {:<24} DUE",
        "NAME", "PURPOSE", "PRIMARY", "VERSIONS", "STATES"
    );
    for k in keys {
        let states: Vec<String> = k
            .versions
            .iter()
            .map(|v| format!("{}:{}", v.version, v.state))
            .collect();
        println!(
            "{:<32} {:<19} {:>7} {:>8}  {:<24} {}",
            k.name,
            k.purpose.as_str(),
            k.primary.map_or("-".to_owned(), |p| p.to_string()),
            k.versions.len(),
            states.join(","),
            if k.due { "yes" } else { "no" }
        );
    }
}

fn key_detail(k: &KeyView) {
    println!(
        "key {} ({}), primary {}",
        k.name,
        k.purpose,
        k.primary.map_or("none".to_owned(), |p| p.to_string())
    );
    println!(
        "created {} by {}; max age {}s{}",
        k.created_at,
        k.created_by,
        k.max_age,
        k.rotate_every
            .map(|r| format!(", rotate every {r}s"))
            .unwrap_or_default()
    );
    println!(
        "{:>7}  {:<18} {:<21} {:<21} {:<6} PUBLIC KEY",
        "VERSION", "STATE", "CREATED", "EXPIRES", "HELD"
    );
    for v in &k.versions {
        println!(
            "{:>7}  {:<18} {:<21} {:<21} {:<6} {}",
            format!("{}{}", v.version, if v.primary { "*" } else { "" }),
            v.state,
            v.created_at,
            v.expires_at,
            if v.in_token { "token" } else { "store" },
            v.public_key.as_deref().unwrap_or("-")
        );
    }
}

pub(crate) fn outcome(json_mode: bool, o: &Outcome) {
    if json_mode {
        println!("{}", serde_json::to_string(o).unwrap_or_default());
        return;
    }
    match o {
        Outcome::Keys { keys, next } => {
            key_table(keys);
            more(next.as_deref());
        }
        Outcome::Key { key } => key_detail(key),
        Outcome::Shred { shred } => {
            println!("shredded {}: {}", shred.key, shred.message);
            if !shred.destroyed.is_empty() {
                let versions: Vec<String> = shred.destroyed.iter().map(u32::to_string).collect();
                println!("destroyed versions: {}", versions.join(", "));
            }
        }
        Outcome::Affected {
            name,
            version,
            records,
            next,
        } => {
            println!("{} records used {name}@{version}", records.len());
            for r in records {
                println!("{r}");
            }
            more(next.as_deref());
        }
        Outcome::Peers { peers } => {
            println!(
                "{:<64}  {:<12} {:<20} BY",
                "IDENTITY", "REASON", "REVOKED AT"
            );
            for p in peers {
                println!(
                    "{:<64}  {:<12} {:<20} {}",
                    p.identity,
                    format!("{:?}", p.reason).to_lowercase(),
                    rfc3339(p.revoked_at),
                    p.revoked_by
                );
            }
        }
        Outcome::Audit { events, next } => {
            println!(
                "{:>5}  {:<20} {:<16} {:<18} {:<32} DETAIL",
                "SEQ", "AT", "ACTOR", "ACTION", "KEY"
            );
            for e in events {
                let key = match (&e.key, e.version) {
                    (Some(k), Some(v)) => format!("{k}@{v}"),
                    (Some(k), None) => k.clone(),
                    _ => "-".to_owned(),
                };
                println!(
                    "{:>5}  {:<20} {:<16} {:<18} {:<32} {}",
                    e.seq,
                    rfc3339(e.at),
                    e.actor,
                    e.action,
                    key,
                    e.detail
                );
            }
            more(next.map(|n| n.to_string()).as_deref());
        }
    }
}

/// The hint for the next page, when there may be one.
fn more(next: Option<&str>) {
    if let Some(n) = next {
        println!("(more: repeat with --after {n})");
    }
}

/// A page of the node's audit trail in its ledger: the answer as it came (`--json`), or a table
/// with the page's checkpoint size and where the next page starts.
pub(crate) fn ledger_audit(json_mode: bool, page: &serde_json::Value) {
    if json_mode {
        println!("{page}");
        return;
    }
    let field = |e: &serde_json::Value, k: &str| {
        e.get(k)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("-")
            .to_owned()
    };
    println!(
        "{:>8}  {:<20}  {:<26}  {:<14}  {:<10}  target",
        "index", "time", "type", "actor", "outcome"
    );
    for item in page
        .get("entries")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
    {
        let entry = item.get("entry").cloned().unwrap_or_default();
        println!(
            "{:>8}  {:<20}  {:<26}  {:<14}  {:<10}  {}",
            item.get("index")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or_default(),
            field(&entry, "time"),
            field(&entry, "type"),
            field(&entry, "actor"),
            field(&entry, "outcome"),
            field(&entry, "target"),
        );
    }
    let size = page
        .get("tree_size")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_default();
    match page.get("next").and_then(serde_json::Value::as_u64) {
        Some(next) => {
            println!("(proofs against the checkpoint of size {size}; more from --start {next})")
        }
        None => println!("(proofs against the checkpoint of size {size}; --json shows them)"),
    }
}
