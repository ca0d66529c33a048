//! Records against a record type: bounded JSON parsing, type and constraint checks, and the walk that
//! desensitizes every field. The walk follows the schema (never the input), so its depth is the
//! schema's, at most `MAX_SCHEMA_DEPTH`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;

use crate::error::{RecordError, RecordErrorCode};
use crate::keys::KeyRef;
use crate::model::{Field, FieldType, RecordType, ScalarType, Transform, UnknownFields};
use crate::transform::{Ctx, SealedField, apply_scalar};

/// RFC 3339 full-date.
pub(crate) const DATE_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// Bounds on untrusted JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    /// Largest document, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of arrays and objects.
    pub max_depth: usize,
}

impl Default for JsonLimits {
    fn default() -> Self {
        JsonLimits {
            max_bytes: 64 * 1024,
            max_depth: 32,
        }
    }
}

/// Parses untrusted JSON within `limits`. serde_json itself stops at 128 levels, so even a document of
/// 10,000 nested arrays is refused without deep recursion; `max_depth` is then checked iteratively.
pub fn parse_json(bytes: &[u8], limits: JsonLimits) -> Result<Value, RecordError> {
    if bytes.len() > limits.max_bytes {
        let why = format!(
            "{} bytes is more than the limit of {}",
            bytes.len(),
            limits.max_bytes
        );
        return Err(RecordError::new(
            RecordErrorCode::PayloadTooLarge,
            None,
            why,
        ));
    }
    // Strict: an object naming a key twice is refused, not resolved to whichever came last.
    let value: Value = crate::strict_json::from_slice(bytes).map_err(|e| {
        let why = if e.to_string().contains("recursion limit") {
            format!("nested deeper than {} levels", limits.max_depth)
        } else {
            format!("not valid JSON: {e}")
        };
        RecordError::new(RecordErrorCode::MalformedJson, None, why)
    })?;
    let mut stack = vec![(&value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        if depth >= limits.max_depth {
            let why = format!("nested deeper than {} levels", limits.max_depth);
            return Err(RecordError::new(RecordErrorCode::MalformedJson, None, why));
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    Ok(value)
}

/// The name of a scalar type, as written in policies.
pub(crate) fn type_name(t: ScalarType) -> &'static str {
    match t {
        ScalarType::String => "string",
        ScalarType::Integer => "integer",
        ScalarType::Number => "number",
        ScalarType::Boolean => "boolean",
        ScalarType::Date => "date",
        ScalarType::Timestamp => "timestamp",
    }
}

/// Checks that `v` is a value of type `t`; the error says what was expected, never what was found.
pub(crate) fn check_scalar(v: &Value, t: ScalarType) -> Result<(), String> {
    let ok = match t {
        ScalarType::String => v.is_string(),
        ScalarType::Integer => v.as_i64().is_some(),
        ScalarType::Number => v.as_f64().is_some_and(f64::is_finite),
        ScalarType::Boolean => v.is_boolean(),
        ScalarType::Date => v
            .as_str()
            .is_some_and(|s| time::Date::parse(s, DATE_FORMAT).is_ok()),
        ScalarType::Timestamp => v
            .as_str()
            .is_some_and(|s| time::OffsetDateTime::parse(s, &Rfc3339).is_ok()),
    };
    if ok {
        return Ok(());
    }
    Err(match t {
        ScalarType::Date => "expected a date (RFC 3339 full-date, YYYY-MM-DD)".to_owned(),
        ScalarType::Timestamp => "expected a timestamp (RFC 3339)".to_owned(),
        other => format!(
            "expected {} {}",
            if other == ScalarType::Integer {
                "an"
            } else {
                "a"
            },
            type_name(other)
        ),
    })
}

fn check_constraints(v: &Value, f: &Field, path: &str) -> Result<(), RecordError> {
    let invalid = |why: String| RecordError::field(RecordErrorCode::InvalidField, path, why);
    if let (Some(max), Some(s)) = (f.max_length, v.as_str())
        && s.chars().count() > max
    {
        return Err(invalid(format!("longer than {max} characters")));
    }
    if let Some(n) = v.as_f64() {
        if f.min.is_some_and(|min| n < min) {
            return Err(invalid(format!(
                "below the minimum {}",
                f.min.unwrap_or_default()
            )));
        }
        if f.max.is_some_and(|max| n > max) {
            return Err(invalid(format!(
                "above the maximum {}",
                f.max.unwrap_or_default()
            )));
        }
    }
    if let Some(allowed) = &f.enum_values
        && !allowed
            .iter()
            .any(|a| a == v || (a.as_f64().is_some() && a.as_f64() == v.as_f64()))
    {
        return Err(invalid("not one of the allowed values".to_owned()));
    }
    Ok(())
}

/// Rewrites every number in the declared fields of `fields` (a record's `fields` object) into its one
/// canonical form, or refuses a number its field's type cannot keep exactly (`invalid_field` at its
/// path; see `number.rs`). Run before anything hashes or compares the record, so that `1` and `1.0`
/// in a `number` field are the same submission. Everything else is left to [`desensitize`]'s checks.
pub fn canonicalize_numbers(rt: &RecordType, fields: &mut Value) -> Result<(), RecordError> {
    match fields {
        Value::Object(obj) => canonical_walk(&rt.fields, obj, ""),
        _ => Ok(()),
    }
}

fn canonical_walk(
    decl: &BTreeMap<String, Field>,
    obj: &mut Map<String, Value>,
    prefix: &str,
) -> Result<(), RecordError> {
    for (name, f) in decl {
        let Some(v) = obj.get_mut(name) else {
            continue;
        };
        let path = join(prefix, name);
        match (&f.ty, v) {
            (FieldType::Object(nested), Value::Object(inner)) => {
                canonical_walk(nested, inner, &path)?;
            }
            (FieldType::Scalar(t), v) => canonical_number(v, *t, &path)?,
            (FieldType::Array(t), Value::Array(items)) => {
                for (i, it) in items.iter_mut().enumerate() {
                    canonical_number(it, *t, &format!("{path}[{i}]"))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn canonical_number(v: &mut Value, t: ScalarType, path: &str) -> Result<(), RecordError> {
    let integer = match t {
        ScalarType::Integer => true,
        ScalarType::Number => false,
        _ => return Ok(()),
    };
    let Value::Number(n) = v else {
        return Ok(());
    };
    match crate::number::canonical(n, integer) {
        Ok(Some(c)) => *n = c,
        Ok(None) => {}
        Err(why) => {
            return Err(RecordError::field(
                RecordErrorCode::InvalidField,
                path,
                why.reason(integer),
            ));
        }
    }
    Ok(())
}

/// What the ledger may see of a record, and what must go elsewhere.
#[derive(Debug)]
pub struct Desensitized {
    /// The desensitized fields, ready to be written (keys sorted).
    pub payload: Map<String, Value>,
    /// Values sealed for the vault.
    pub sealed: Vec<SealedField>,
    /// Every managed key version the transforms used, sorted.
    pub key_refs: Vec<KeyRef>,
    /// The data subject (the raw value of the record type's `subject_field`). It is personal data: it
    /// goes to the vault's key index, never to the ledger or the logs.
    pub subject: String,
}

/// Validates `fields` against `rt` and desensitizes them.
pub(crate) fn desensitize(
    rt: &RecordType,
    fields: &Value,
    ctx: &mut Ctx<'_>,
) -> Result<(Map<String, Value>, String), RecordError> {
    let Value::Object(input) = fields else {
        return Err(RecordError::new(
            RecordErrorCode::InvalidField,
            Some("fields"),
            "expected an object",
        ));
    };
    let subject = match input.get(&rt.subject_field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(), // missing or mistyped: the walk below reports it
    };
    let mut out = Map::new();
    walk(
        &rt.fields,
        input,
        "",
        rt.unknown_fields,
        Some(ctx),
        &mut out,
    )?;
    Ok((out, subject))
}

/// Checks a record's `fields` against its type (required and unknown fields, types, constraints,
/// nesting) without transforming anything: what a node without keys (an edge) can check before it
/// forwards a record. A value that passes may still fail a transform on the ledger node (a
/// generalisation of a value outside its ranges); everything else fails here as it would there.
pub(crate) fn validate(rt: &RecordType, fields: &Value) -> Result<(), RecordError> {
    let Value::Object(input) = fields else {
        return Err(RecordError::new(
            RecordErrorCode::InvalidField,
            Some("fields"),
            "expected an object",
        ));
    };
    walk(
        &rt.fields,
        input,
        "",
        rt.unknown_fields,
        None,
        &mut Map::new(),
    )
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn walk(
    decl: &BTreeMap<String, Field>,
    input: &Map<String, Value>,
    prefix: &str,
    unknown: UnknownFields,
    mut ctx: Option<&mut Ctx<'_>>,
    out: &mut Map<String, Value>,
) -> Result<(), RecordError> {
    if unknown == UnknownFields::Reject
        && let Some(extra) = input.keys().find(|k| !decl.contains_key(*k))
    {
        let path = join(prefix, extra);
        return Err(RecordError::field(
            RecordErrorCode::UnknownField,
            &path,
            "not declared by the record type",
        ));
    }
    for (name, f) in decl {
        let path = join(prefix, name);
        let value = match input.get(name) {
            None | Some(Value::Null) if f.required => {
                return Err(RecordError::field(
                    RecordErrorCode::MissingField,
                    &path,
                    "required",
                ));
            }
            None | Some(Value::Null) => continue,
            Some(v) => v,
        };
        if let Some(v) = field(f, value, &path, unknown, ctx.as_deref_mut())? {
            out.insert(name.clone(), v);
        }
    }
    Ok(())
}

/// One field: validated, then transformed (without a context, only validated); `None` when it is
/// dropped or not transformed.
fn field(
    f: &Field,
    value: &Value,
    path: &str,
    unknown: UnknownFields,
    mut ctx: Option<&mut Ctx<'_>>,
) -> Result<Option<Value>, RecordError> {
    let invalid = |why: String| RecordError::field(RecordErrorCode::InvalidField, path, why);
    // Validate the whole value first: a sealed or dropped value must still be what the schema says.
    let transformed_object = match &f.ty {
        FieldType::Scalar(t) => {
            check_scalar(value, *t).map_err(invalid)?;
            check_constraints(value, f, path)?;
            None
        }
        FieldType::Array(t) => {
            let items = value
                .as_array()
                .ok_or_else(|| invalid("expected an array".to_owned()))?;
            if let Some(max) = f.max_length
                && items.len() > max
            {
                return Err(invalid(format!("more than {max} items")));
            }
            for (i, it) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                check_scalar(it, *t)
                    .map_err(|why| RecordError::field(RecordErrorCode::InvalidField, &p, why))?;
                check_constraints(it, f, &p)?;
            }
            None
        }
        FieldType::Object(nested) => {
            let obj = value
                .as_object()
                .ok_or_else(|| invalid("expected an object".to_owned()))?;
            let mut inner = Map::new();
            walk(nested, obj, path, unknown, ctx.as_deref_mut(), &mut inner)?;
            Some(inner)
        }
    };
    let Some(ctx) = ctx else {
        return Ok(None);
    };
    Ok(match &f.transform {
        Transform::Drop => None,
        Transform::Seal => Some(ctx.seal(path, value)),
        Transform::Redact { with } => Some(Value::String(with.clone())),
        Transform::Keep => Some(match transformed_object {
            Some(inner) => Value::Object(inner),
            None => value.clone(),
        }),
        t => match (&f.ty, value) {
            (FieldType::Scalar(s), v) => Some(apply_scalar(t, v, *s, path, ctx)?),
            (FieldType::Array(s), Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, it) in items.iter().enumerate() {
                    out.push(apply_scalar(t, it, *s, &format!("{path}[{i}]"), ctx)?);
                }
                Some(Value::Array(out))
            }
            _ => return Err(invalid("transform does not apply to this value".to_owned())),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_thousand_levels_of_nesting_are_refused_without_overflow() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let err = parse_json(
            deep.as_bytes(),
            JsonLimits {
                max_bytes: 1 << 20,
                max_depth: 32,
            },
        )
        .unwrap_err();
        assert_eq!(err.code, RecordErrorCode::MalformedJson);
        assert_eq!(err.reason, "nested deeper than 32 levels");
        let deep_obj = format!("{}1{}", "{\"a\":".repeat(40), "}".repeat(40));
        let err = parse_json(deep_obj.as_bytes(), JsonLimits::default()).unwrap_err();
        assert_eq!(err.reason, "nested deeper than 32 levels");
        let ok = format!("{}1{}", "{\"a\":".repeat(31), "}".repeat(31));
        assert!(parse_json(ok.as_bytes(), JsonLimits::default()).is_ok());
    }

    #[test]
    fn size_and_syntax_are_checked() {
        let big = vec![b' '; 70_000];
        assert_eq!(
            parse_json(&big, JsonLimits::default()).unwrap_err().code,
            RecordErrorCode::PayloadTooLarge
        );
        assert_eq!(
            parse_json(b"{\"a\":", JsonLimits::default())
                .unwrap_err()
                .code,
            RecordErrorCode::MalformedJson
        );
    }

    #[test]
    fn scalar_checks_name_what_was_expected() {
        assert_eq!(
            check_scalar(&Value::from(1.5), ScalarType::Integer),
            Err("expected an integer".into())
        );
        assert_eq!(
            check_scalar(&Value::from("1987-02-30"), ScalarType::Date),
            Err("expected a date (RFC 3339 full-date, YYYY-MM-DD)".into())
        );
        assert!(
            check_scalar(
                &Value::from("2024-03-05T14:23:11.5+02:00"),
                ScalarType::Timestamp
            )
            .is_ok()
        );
    }
}
