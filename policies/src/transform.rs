//! Applying one transform to one validated value. Pure: keys and salts come from the caller.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

use crate::error::{RecordError, RecordErrorCode};
use crate::keys::{KeyBytes, KeyError, KeyProvider, KeyRef, SaltSource};
use crate::model::{ScalarType, Transform, TruncateUnit};
use crate::record::DATE_FORMAT;

/// Length of the random salt of a sealed field's commitment.
pub const SALT_LEN: usize = 16;

/// A value that left the record for the vault. Its bytes are the value's canonical JSON and are zeroized
/// on drop; `Debug` shows only the path.
pub struct SealedField {
    /// The field path.
    pub path: String,
    /// Canonical JSON of the value.
    pub value: Zeroizing<Vec<u8>>,
    /// The commitment's salt.
    pub salt: [u8; SALT_LEN],
    /// SHA-256(salt ‖ value), as kept in the payload.
    pub commitment: [u8; 32],
}

impl std::fmt::Debug for SealedField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedField")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The payload's stand-in for a sealed value: `sealed:sha256:<base64 commitment>`.
pub fn commitment_text(commitment: &[u8; 32]) -> String {
    format!("sealed:sha256:{}", STANDARD.encode(commitment))
}

/// State shared by the transforms of one record: keys are resolved once per record, so that every
/// field hashed under one key name uses the same version.
pub(crate) struct Ctx<'a> {
    keys: &'a dyn KeyProvider,
    salts: &'a mut dyn SaltSource,
    resolved: BTreeMap<String, (u32, KeyBytes)>,
    pub(crate) sealed: Vec<SealedField>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(keys: &'a dyn KeyProvider, salts: &'a mut dyn SaltSource) -> Ctx<'a> {
        Ctx {
            keys,
            salts,
            resolved: BTreeMap::new(),
            sealed: Vec::new(),
        }
    }

    pub(crate) fn key_refs(&self) -> Vec<KeyRef> {
        self.resolved
            .iter()
            .map(|(name, (version, _))| KeyRef {
                name: name.clone(),
                version: *version,
            })
            .collect()
    }

    fn key(&mut self, name: &str, path: &str) -> Result<(u32, &[u8]), RecordError> {
        if !self.resolved.contains_key(name) {
            let got = self.keys.current(name).map_err(|e| {
                let code = match e {
                    KeyError::NoUsableVersion(_) => RecordErrorCode::KeyRevoked,
                    _ => RecordErrorCode::KeyUnavailable,
                };
                RecordError::field(code, path, e.to_string())
            })?;
            self.resolved.insert(name.to_owned(), got);
        }
        let (v, bytes) = self.resolved.get(name).ok_or_else(|| {
            RecordError::field(
                RecordErrorCode::KeyUnavailable,
                path,
                format!("key `{name}` vanished"),
            )
        })?;
        Ok((*v, bytes.as_slice()))
    }

    /// Seals `value` and returns the payload's stand-in.
    pub(crate) fn seal(&mut self, path: &str, value: &Value) -> Value {
        let bytes = Zeroizing::new(serde_json::to_vec(value).unwrap_or_default());
        let mut salt = [0u8; SALT_LEN];
        self.salts.fill(&mut salt);
        let commitment: [u8; 32] = Sha256::new()
            .chain_update(salt)
            .chain_update(bytes.as_slice())
            .finalize()
            .into();
        self.sealed.push(SealedField {
            path: path.to_owned(),
            value: bytes,
            salt,
            commitment,
        });
        Value::String(commitment_text(&commitment))
    }
}

/// The pseudonym of `value` under one key version: `v<version>:<base64url(HMAC-SHA-256(key, canonical JSON))>`.
/// Hashing the canonical JSON keeps `1` and `"1"` apart.
pub fn pseudonym(key: &[u8], version: u32, value: &Value) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return format!("v{version}:"), // unreachable: HMAC takes keys of any length
    };
    mac.update(&serde_json::to_vec(value).unwrap_or_default());
    format!(
        "v{version}:{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// Masks all but the first and last few characters. When those would be the whole value, everything is
/// masked: a mask never gives a short value away whole.
pub fn mask(text: &str, keep_first: usize, keep_last: usize, ch: char) -> String {
    let n = text.chars().count();
    let reveal = keep_first.saturating_add(keep_last) < n;
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            if reveal && (i < keep_first || i >= n - keep_last) {
                c
            } else {
                ch
            }
        })
        .collect()
}

/// The bucket of `v`: `"lo-hi"` with `lo` a multiple of `bucket` and `hi = lo + bucket - 1`.
pub fn generalize(v: f64, bucket: u64) -> Option<String> {
    // i128 keeps lo + bucket - 1 from overflowing at the ends of i64.
    if !v.is_finite() || v.abs() > 9.0e15 {
        return None; // beyond exact integers in f64: no honest bucket
    }
    let b = i128::from(bucket);
    #[allow(clippy::cast_possible_truncation)] // |v| ≤ 9e15 was checked above
    let lo = (v.floor() as i128).div_euclid(b) * b;
    Some(format!("{lo}-{}", lo + b - 1))
}

/// Cuts a date (`YYYY-MM-DD`) down to `to`, keeping it a valid date: `1987-06-15` → `1987-01-01` for a year.
pub fn truncate_date(text: &str, to: TruncateUnit) -> Option<String> {
    let d = time::Date::parse(text, DATE_FORMAT).ok()?;
    let (month, day) = match to {
        TruncateUnit::Year => (time::Month::January, 1),
        TruncateUnit::Month => (d.month(), 1),
        TruncateUnit::Day | TruncateUnit::Hour => (d.month(), d.day()),
    };
    time::Date::from_calendar_date(d.year(), month, day)
        .ok()?
        .format(DATE_FORMAT)
        .ok()
}

/// Cuts an RFC 3339 timestamp down to `to`, in UTC, keeping it a valid timestamp.
pub fn truncate_timestamp(text: &str, to: TruncateUnit) -> Option<String> {
    let t = time::OffsetDateTime::parse(text, &Rfc3339)
        .ok()?
        .to_offset(time::UtcOffset::UTC);
    let date = match to {
        TruncateUnit::Year => {
            time::Date::from_calendar_date(t.year(), time::Month::January, 1).ok()?
        }
        TruncateUnit::Month => time::Date::from_calendar_date(t.year(), t.month(), 1).ok()?,
        TruncateUnit::Day | TruncateUnit::Hour => t.date(),
    };
    let hour = if to == TruncateUnit::Hour {
        t.hour()
    } else {
        0
    };
    let cut = date.with_hms(hour, 0, 0).ok()?.assume_utc();
    cut.format(&Rfc3339).ok()
}

/// Applies a per-value transform (everything but keep, drop, redact and seal, which the caller handles
/// for whole fields) to one scalar.
pub(crate) fn apply_scalar(
    t: &Transform,
    value: &Value,
    ty: ScalarType,
    path: &str,
    ctx: &mut Ctx<'_>,
) -> Result<Value, RecordError> {
    let invalid =
        |why: &str| RecordError::field(RecordErrorCode::InvalidField, path, why.to_owned());
    Ok(match t {
        Transform::Keep => value.clone(),
        Transform::Drop | Transform::Seal => value.clone(), // handled by the caller
        Transform::Redact { with } => Value::String(with.clone()),
        Transform::Mask {
            keep_first,
            keep_last,
            ch,
        } => {
            let text = value.as_str().ok_or_else(|| invalid("expected text"))?;
            Value::String(mask(text, *keep_first, *keep_last, *ch))
        }
        Transform::Hash { key } => {
            let (version, bytes) = ctx.key(key, path)?;
            Value::String(pseudonym(bytes, version, value))
        }
        Transform::Generalize { bucket } => {
            let v = value.as_f64().ok_or_else(|| invalid("expected a number"))?;
            Value::String(
                generalize(v, *bucket).ok_or_else(|| invalid("number too large to generalize"))?,
            )
        }
        Transform::Truncate { to } => {
            let text = value.as_str().ok_or_else(|| invalid("expected text"))?;
            let cut = match ty {
                ScalarType::Date => truncate_date(text, *to),
                _ => truncate_timestamp(text, *to),
            };
            Value::String(cut.ok_or_else(|| invalid("not a valid date or timestamp"))?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_by_characters_not_bytes() {
        assert_eq!(mask("+49 170 1234567", 0, 4, '*'), "***********4567");
        assert_eq!(mask("Zoë Ångström", 1, 1, '•'), "Z••••••••••m");
        assert_eq!(mask("1234", 0, 4, '*'), "****"); // would give it away whole
        assert_eq!(mask("", 2, 2, '*'), "");
    }

    #[test]
    fn generalizes_into_labelled_buckets() {
        assert_eq!(generalize(37.0, 10).as_deref(), Some("30-39"));
        assert_eq!(generalize(30.0, 10).as_deref(), Some("30-39"));
        assert_eq!(generalize(-5.0, 10).as_deref(), Some("-10--1"));
        assert_eq!(generalize(52_000.5, 10_000).as_deref(), Some("50000-59999"));
        assert_eq!(generalize(f64::NAN, 10), None);
        assert_eq!(generalize(1e300, 10), None);
    }

    #[test]
    fn truncates_dates_and_timestamps_to_valid_values() {
        assert_eq!(
            truncate_date("1987-06-15", TruncateUnit::Year).as_deref(),
            Some("1987-01-01")
        );
        assert_eq!(
            truncate_date("1987-06-15", TruncateUnit::Month).as_deref(),
            Some("1987-06-01")
        );
        assert_eq!(truncate_date("1987-02-30", TruncateUnit::Year), None);
        assert_eq!(
            truncate_timestamp("2024-03-05T14:23:11+02:00", TruncateUnit::Hour).as_deref(),
            Some("2024-03-05T12:00:00Z")
        );
        assert_eq!(
            truncate_timestamp("2024-03-05T14:23:11Z", TruncateUnit::Month).as_deref(),
            Some("2024-03-01T00:00:00Z")
        );
    }

    #[test]
    fn pseudonyms_are_tagged_and_keyed() {
        let a = pseudonym(b"k1", 3, &Value::String("A-1".into()));
        assert!(a.starts_with("v3:"));
        assert_eq!(a, pseudonym(b"k1", 3, &Value::String("A-1".into())));
        assert_ne!(a, pseudonym(b"k2", 3, &Value::String("A-1".into())));
        assert_ne!(
            pseudonym(b"k1", 3, &serde_json::json!(1)),
            pseudonym(b"k1", 3, &serde_json::json!("1"))
        );
    }
}
