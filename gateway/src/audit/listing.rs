//! Listing the audit trail: which entries of a stretch of the ledger are audit entries a filter
//! keeps. Shared by `GET /admin/v1/audit` (a running node) and `gateway ledger audit` (a stopped
//! node's store), which add each entry's inclusion proof.

use serde_json::Value;

/// Most entries one page of `GET /admin/v1/audit` lists.
pub const MAX_PAGE: usize = 1000;
/// Entries one page lists unless asked for fewer.
pub const DEFAULT_PAGE: usize = 100;
/// Most ledger entries one page reads: a page is bounded work however sparse the audit entries
/// are; the answer's `next` says where to go on.
pub const SCAN_BUDGET: u64 = 20_000;

/// Which audit entries a listing keeps; every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Filter {
    /// The entry's `actor` is exactly this.
    pub actor: Option<String>,
    /// The entry's kind (its type without `audit.`) is this or starts with it and a dot
    /// (`key` keeps `key.rotate` and `key.revoke`).
    pub kind: Option<String>,
    /// At or after this time (RFC 3339); entries without a time are left out.
    pub since: Option<String>,
    /// Before this time (RFC 3339); entries without a time are left out.
    pub until: Option<String>,
}

/// A filter whose times are read.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    actor: Option<String>,
    kind: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
}

fn parse_time(name: &str, text: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| format!("`{name}` is not an RFC 3339 time, e.g. 2026-12-01T08:00:00Z"))
}

impl Filter {
    /// Reads the times; says which one is not a time.
    pub fn parse(self) -> Result<Parsed, String> {
        Ok(Parsed {
            since: self
                .since
                .as_deref()
                .map(|t| parse_time("since", t))
                .transpose()?,
            until: self
                .until
                .as_deref()
                .map(|t| parse_time("until", t))
                .transpose()?,
            actor: self.actor,
            kind: self.kind,
        })
    }
}

impl Parsed {
    /// The entry, parsed, if `bytes` is an audit entry this filter keeps.
    pub fn keeps(&self, bytes: &[u8]) -> Option<Value> {
        if !crate::audit::is_audit(bytes) {
            return None;
        }
        let entry: Value = serde_json::from_slice(bytes).ok()?;
        let field = |name: &str| entry.get(name).and_then(Value::as_str);
        let kind = field("type")?.strip_prefix(crate::audit::TYPE_PREFIX)?;
        if let Some(wanted) = &self.kind
            && !(kind == wanted
                || kind
                    .strip_prefix(wanted.as_str())
                    .is_some_and(|rest| rest.starts_with('.')))
        {
            return None;
        }
        if let Some(actor) = &self.actor
            && field("actor") != Some(actor)
        {
            return None;
        }
        if self.since.is_some() || self.until.is_some() {
            let at = field("time").and_then(|t| parse_time("time", t).ok())?;
            if self.since.is_some_and(|s| at < s) || self.until.is_some_and(|u| at >= u) {
                return None;
            }
        }
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, actor: &str, time: Option<&str>) -> Vec<u8> {
        let mut v = serde_json::json!({ "type": format!("audit.{kind}"), "actor": actor, "v": 1 });
        if let Some(t) = time {
            v["time"] = t.into();
        }
        serde_json::to_vec(&v).unwrap()
    }

    fn filter(f: Filter) -> Parsed {
        f.parse().unwrap()
    }

    #[test]
    fn kind_matches_whole_dotted_prefixes() {
        let f = filter(Filter {
            kind: Some("key".into()),
            ..Filter::default()
        });
        assert!(f.keeps(&entry("key.rotate", "o", None)).is_some());
        assert!(f.keeps(&entry("key", "o", None)).is_some());
        assert!(f.keeps(&entry("keyring.x", "o", None)).is_none());
        assert!(f.keeps(&entry("config.reload", "o", None)).is_none());
    }

    #[test]
    fn records_are_never_listed() {
        let f = filter(Filter::default());
        assert!(
            f.keeps(br#"{"type":"loan_application","actor":"o"}"#)
                .is_none()
        );
        assert!(f.keeps(b"not json").is_none());
        assert!(f.keeps(&entry("key.rotate", "o", None)).is_some());
    }

    #[test]
    fn actor_and_time_window() {
        let f = filter(Filter {
            actor: Some("officer".into()),
            since: Some("2026-12-01T00:00:00Z".into()),
            until: Some("2026-12-02T00:00:00Z".into()),
            ..Filter::default()
        });
        assert!(
            f.keeps(&entry(
                "key.rotate",
                "officer",
                Some("2026-12-01T10:00:00Z")
            ))
            .is_some()
        );
        assert!(
            f.keeps(&entry(
                "key.rotate",
                "gateway",
                Some("2026-12-01T10:00:00Z")
            ))
            .is_none()
        );
        assert!(
            f.keeps(&entry(
                "key.rotate",
                "officer",
                Some("2026-12-02T00:00:00Z")
            ))
            .is_none(),
            "until is exclusive"
        );
        assert!(
            f.keeps(&entry(
                "key.rotate",
                "officer",
                Some("2026-11-30T23:59:59Z")
            ))
            .is_none()
        );
        assert!(f.keeps(&entry("key.rotate", "officer", None)).is_none());
    }

    #[test]
    fn a_bad_time_is_named() {
        let e = Filter {
            until: Some("yesterday".into()),
            ..Filter::default()
        }
        .parse()
        .unwrap_err();
        assert!(e.contains("`until`"), "{e}");
    }
}
