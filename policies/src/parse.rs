//! From one file's YAML to the model, collecting every error with its YAML path (and position, where
//! the locator finds it). Checks that need all files at once (roles, duplicates across files) are in
//! `load`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_yaml::{Mapping, Value};

use crate::error::PolicyError;
use crate::locate::{Seg, locate};
use crate::model::{
    Field, FieldType, Limits, Matcher, RecordIds, RecordType, ScalarType, Subject, Transform,
    TruncateUnit, UnknownFields,
};

/// Deepest nesting of object fields: keeps record validation and its recursion shallow and bounded.
pub(crate) const MAX_SCHEMA_DEPTH: usize = 8;
/// Largest `max_record_bytes` a policy may allow: 16 MiB.
const MAX_RECORD_BYTES_CEILING: u64 = 16 * 1024 * 1024;

/// What one file says, before cross-file checks.
#[derive(Debug, Default)]
pub(crate) struct FileDoc {
    pub(crate) subjects: Vec<(Subject, Vec<Seg>)>,
    pub(crate) record_types: Vec<(RecordType, Vec<Seg>)>,
    pub(crate) limits: Vec<(String, Limits, Vec<Seg>)>,
    /// Every role named outside `subjects`, with where: checked against the subjects of all files.
    pub(crate) role_refs: Vec<(String, Vec<Seg>)>,
}

pub(crate) struct Parser<'a> {
    file: &'a Path,
    src: &'a str,
    pub(crate) errors: Vec<PolicyError>,
}

pub(crate) fn display_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn child(path: &[Seg], key: &str) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.push(Seg::Key(key.to_owned()));
    p
}

fn item(path: &[Seg], i: usize) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.push(Seg::Index(i));
    p
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 64
}

impl<'a> Parser<'a> {
    pub(crate) fn new(file: &'a Path, src: &'a str) -> Parser<'a> {
        Parser {
            file,
            src,
            errors: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, path: &[Seg], code: &'static str, message: impl Into<String>) {
        self.errors.push(PolicyError {
            file: self.file.to_owned(),
            position: locate(self.src, path),
            path: display_path(path),
            code,
            message: message.into(),
        });
    }

    fn mapping<'v>(&mut self, v: &'v Value, path: &[Seg]) -> Option<&'v Mapping> {
        match v {
            Value::Mapping(m) => Some(m),
            other => {
                self.error(
                    path,
                    "invalid_type",
                    format!("expected a mapping, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// The entries of a mapping whose keys must be text; others are reported.
    fn entries<'v>(&mut self, m: &'v Mapping, path: &[Seg]) -> Vec<(&'v str, &'v Value)> {
        let mut out = Vec::with_capacity(m.len());
        for (k, v) in m {
            match k.as_str() {
                Some(k) => out.push((k, v)),
                None => self.error(
                    path,
                    "invalid_type",
                    format!("keys must be text, found {}", kind(k)),
                ),
            }
        }
        out
    }

    /// Reports keys of `m` outside `allowed`.
    fn only_keys(&mut self, m: &Mapping, path: &[Seg], allowed: &[&str]) {
        for (k, _) in self.entries(m, path) {
            if !allowed.contains(&k) {
                self.error(
                    &child(path, k),
                    "unknown_key",
                    format!("unknown key; expected one of: {}", allowed.join(", ")),
                );
            }
        }
    }

    /// `get(v)`, or an `invalid_type` error saying what was expected and what was found.
    fn expect<T>(
        &mut self,
        v: &Value,
        path: &[Seg],
        what: &str,
        get: impl FnOnce(&Value) -> Option<T>,
    ) -> Option<T> {
        let got = get(v);
        if got.is_none() {
            self.error(
                path,
                "invalid_type",
                format!("expected {what}, found {}", kind(v)),
            );
        }
        got
    }

    fn text(&mut self, v: &Value, path: &[Seg]) -> Option<String> {
        self.expect(v, path, "text", |v| v.as_str().map(str::to_owned))
    }

    fn boolean(&mut self, v: &Value, path: &[Seg]) -> Option<bool> {
        self.expect(v, path, "true or false", Value::as_bool)
    }

    fn whole(&mut self, v: &Value, path: &[Seg]) -> Option<u64> {
        match v.as_u64() {
            Some(n) => Some(n),
            None => {
                let found = if v.as_i64().is_some() {
                    "a negative number".to_owned()
                } else {
                    kind(v).to_owned()
                };
                self.error(
                    path,
                    "invalid_type",
                    format!("expected a whole number ≥ 0, found {found}"),
                );
                None
            }
        }
    }

    fn number(&mut self, v: &Value, path: &[Seg]) -> Option<f64> {
        self.expect(v, path, "a number", |v| {
            v.as_f64().filter(|n| n.is_finite())
        })
    }

    fn names(&mut self, v: &Value, path: &[Seg]) -> Vec<(String, Vec<Seg>)> {
        let Value::Sequence(items) = v else {
            self.error(
                path,
                "invalid_type",
                format!("expected a list of names, found {}", kind(v)),
            );
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            let p = item(path, i);
            if let Some(s) = self.text(it, &p) {
                out.push((s, p));
            }
        }
        out
    }

    fn required<'v>(&mut self, m: &'v Mapping, path: &[Seg], key: &str) -> Option<&'v Value> {
        let found = m.get(key);
        if found.is_none() {
            self.error(path, "missing_key", format!("`{key}` is required"));
        }
        found
    }

    /// Parses one document.
    pub(crate) fn document(&mut self, root: &Value) -> FileDoc {
        let mut doc = FileDoc::default();
        let top: &[Seg] = &[];
        let Some(m) = self.mapping(root, top) else {
            return doc;
        };
        self.only_keys(m, top, &["version", "subjects", "record_types", "limits"]);
        if let Some(v) = self.required(m, top, "version") {
            let p = child(top, "version");
            if v.as_u64() != Some(1) {
                self.error(&p, "unsupported_version", "only `version: 1` is understood");
            }
        }
        if let Some(v) = m.get("subjects") {
            self.subjects(v, &child(top, "subjects"), &mut doc);
        }
        if let Some(v) = m.get("record_types") {
            self.record_types(v, &child(top, "record_types"), &mut doc);
        }
        if let Some(v) = m.get("limits") {
            self.limits(v, &child(top, "limits"), &mut doc);
        }
        doc
    }

    fn subjects(&mut self, v: &Value, path: &[Seg], doc: &mut FileDoc) {
        let Some(m) = self.mapping(v, path) else {
            return;
        };
        for (name, spec) in self.entries(m, path) {
            let p = child(path, name);
            let Some(sm) = self.mapping(spec, &p) else {
                continue;
            };
            self.only_keys(sm, &p, &["match", "roles"]);
            let matcher = self
                .required(sm, &p, "match")
                .and_then(|mv| self.matcher(mv, &child(&p, "match")));
            let roles_path = child(&p, "roles");
            let roles: BTreeSet<String> = match self.required(sm, &p, "roles") {
                Some(rv) => self
                    .names(rv, &roles_path)
                    .into_iter()
                    .map(|(r, _)| r)
                    .collect(),
                None => BTreeSet::new(),
            };
            if roles.is_empty() && sm.get("roles").is_some() {
                self.error(
                    &roles_path,
                    "empty_roles",
                    "a subject needs at least one role",
                );
            }
            if let Some(matcher) = matcher {
                if let Some((other, _)) = doc.subjects.iter().find(|(s, _)| s.matcher == matcher) {
                    let msg = format!(
                        "matches exactly the certificates subject `{}` matches",
                        other.name
                    );
                    self.error(&child(&p, "match"), "duplicate_subject_match", msg);
                } else {
                    doc.subjects.push((
                        Subject {
                            name: name.to_owned(),
                            matcher,
                            roles,
                        },
                        p,
                    ));
                }
            }
        }
    }

    fn matcher(&mut self, v: &Value, path: &[Seg]) -> Option<Matcher> {
        let m = self.mapping(v, path)?;
        self.only_keys(m, path, &["cn", "san_uri", "san_dns", "fingerprint"]);
        let mut get = |key: &str| m.get(key).and_then(|x| self.text(x, &child(path, key)));
        let mut matcher = Matcher {
            cn: get("cn"),
            san_uri: get("san_uri"),
            san_dns: get("san_dns"),
            fingerprint: None,
        };
        if let Some(fp) = m
            .get("fingerprint")
            .and_then(|x| self.text(x, &child(path, "fingerprint")))
        {
            let hexed: String = fp
                .chars()
                .filter(|c| *c != ':')
                .collect::<String>()
                .to_ascii_lowercase();
            if hexed.len() == 64 && hexed.chars().all(|c| c.is_ascii_hexdigit()) {
                matcher.fingerprint = Some(hexed);
            } else {
                let msg = "expected the SHA-256 of the certificate: 64 hex digits (colons allowed)";
                self.error(&child(path, "fingerprint"), "invalid_fingerprint", msg);
                return None;
            }
        }
        if matcher == Matcher::default() {
            self.error(
                path,
                "empty_match",
                "give at least one of cn, san_uri, san_dns, fingerprint",
            );
            return None;
        }
        Some(matcher)
    }

    fn record_types(&mut self, v: &Value, path: &[Seg], doc: &mut FileDoc) {
        let Some(m) = self.mapping(v, path) else {
            return;
        };
        for (name, spec) in self.entries(m, path) {
            let p = child(path, name);
            if !valid_name(name) {
                self.error(
                    &p,
                    "invalid_name",
                    "record type names are lowercase letters, digits and _, starting with a letter",
                );
            }
            let Some(tm) = self.mapping(spec, &p) else {
                continue;
            };
            self.only_keys(
                tm,
                &p,
                &[
                    "submit",
                    "read",
                    "unseal",
                    "subject_field",
                    "unknown_fields",
                    "record_id",
                    "fields",
                ],
            );
            let mut roles = |this: &mut Self, key: &str| -> BTreeSet<String> {
                let rp = child(&p, key);
                let Some(rv) = tm.get(key) else {
                    return BTreeSet::new();
                };
                let named = this.names(rv, &rp);
                let set = named.iter().map(|(r, _)| r.clone()).collect();
                doc.role_refs.extend(named);
                set
            };
            let submit = roles(self, "submit");
            let read = roles(self, "read");
            let unseal = roles(self, "unseal");
            let unknown_fields = match tm.get("unknown_fields") {
                None => UnknownFields::Reject,
                Some(Value::String(s)) if s == "reject" => UnknownFields::Reject,
                Some(Value::String(s)) if s == "drop" => UnknownFields::Drop,
                Some(_) => {
                    self.error(
                        &child(&p, "unknown_fields"),
                        "invalid_value",
                        "expected `reject` or `drop`",
                    );
                    UnknownFields::Reject
                }
            };
            let record_id = match tm.get("record_id") {
                None => RecordIds::Keyed,
                Some(Value::String(s)) if s == "keyed" => RecordIds::Keyed,
                Some(Value::String(s)) if s == "clear" => RecordIds::Clear,
                Some(_) => {
                    self.error(
                        &child(&p, "record_id"),
                        "invalid_value",
                        "expected `keyed` or `clear`",
                    );
                    RecordIds::Keyed
                }
            };
            let fields_path = child(&p, "fields");
            let fields = match self.required(tm, &p, "fields") {
                Some(fv) => self.fields(fv, &fields_path, 1),
                None => BTreeMap::new(),
            };
            let sf_path = child(&p, "subject_field");
            let subject_field = self
                .required(tm, &p, "subject_field")
                .and_then(|sv| self.text(sv, &sf_path));
            if let Some(sf) = &subject_field {
                match fields.get(sf) {
                    // With no fields at all, `no_fields` has said it already.
                    None if !fields.is_empty() => {
                        self.error(
                            &sf_path,
                            "subject_field_undeclared",
                            format!("`{sf}` is not a declared field"),
                        );
                    }
                    None => {}
                    Some(f)
                        if !matches!(
                            f.ty,
                            FieldType::Scalar(ScalarType::String | ScalarType::Integer)
                        ) =>
                    {
                        self.error(
                            &sf_path,
                            "subject_field_type",
                            format!("`{sf}` must be a string or integer field"),
                        );
                    }
                    Some(f) if !f.required => {
                        self.error(
                            &sf_path,
                            "subject_field_optional",
                            format!("`{sf}` must be `required: true`: every record has a subject"),
                        );
                    }
                    Some(_) => {}
                }
            }
            let rt = RecordType {
                name: name.to_owned(),
                submit,
                read,
                unseal,
                subject_field: subject_field.unwrap_or_default(),
                unknown_fields,
                record_id,
                fields,
            };
            doc.record_types.push((rt, p));
        }
    }

    fn fields(&mut self, v: &Value, path: &[Seg], depth: usize) -> BTreeMap<String, Field> {
        let mut out = BTreeMap::new();
        let Some(m) = self.mapping(v, path) else {
            return out;
        };
        if m.is_empty() {
            self.error(path, "no_fields", "declare at least one field");
        }
        for (name, spec) in self.entries(m, path) {
            let p = child(path, name);
            if !valid_name(name) {
                self.error(
                    &p,
                    "invalid_name",
                    "field names are lowercase letters, digits and _, starting with a letter",
                );
            }
            if let Some(f) = self.field(spec, &p, depth) {
                out.insert(name.to_owned(), f);
            }
        }
        out
    }

    fn scalar_type(&mut self, v: &Value, path: &[Seg]) -> Option<Result<ScalarType, String>> {
        let name = self.text(v, path)?;
        Some(match name.as_str() {
            "string" => Ok(ScalarType::String),
            "integer" => Ok(ScalarType::Integer),
            "number" => Ok(ScalarType::Number),
            "boolean" => Ok(ScalarType::Boolean),
            "date" => Ok(ScalarType::Date),
            "timestamp" => Ok(ScalarType::Timestamp),
            other => Err(other.to_owned()),
        })
    }

    fn field(&mut self, v: &Value, path: &[Seg], depth: usize) -> Option<Field> {
        let m = self.mapping(v, path)?;
        self.only_keys(
            m,
            path,
            &[
                "type",
                "required",
                "max_length",
                "min",
                "max",
                "enum",
                "items",
                "fields",
                "transform",
            ],
        );
        let type_path = child(path, "type");
        let type_name = self
            .required(m, path, "type")
            .and_then(|t| self.text(t, &type_path))?;
        let ty = match type_name.as_str() {
            "object" => {
                if depth >= MAX_SCHEMA_DEPTH {
                    self.error(
                        path,
                        "nested_too_deep",
                        format!("objects nest at most {MAX_SCHEMA_DEPTH} levels deep"),
                    );
                    return None;
                }
                let fp = child(path, "fields");
                let nested = self
                    .required(m, path, "fields")
                    .map(|fv| self.fields(fv, &fp, depth + 1))?;
                FieldType::Object(nested)
            }
            "array" => {
                let ip = child(path, "items");
                match self
                    .required(m, path, "items")
                    .and_then(|iv| self.scalar_type(iv, &ip))?
                {
                    Ok(s) => FieldType::Array(s),
                    Err(other) => {
                        let msg = format!(
                            "arrays hold scalars (string, integer, number, boolean, date, timestamp), not `{other}`"
                        );
                        self.error(&ip, "array_item_type", msg);
                        return None;
                    }
                }
            }
            _ => match self.scalar_type(&Value::String(type_name.clone()), &type_path)? {
                Ok(s) => FieldType::Scalar(s),
                Err(other) => {
                    let msg = format!(
                        "unknown type `{other}`; expected string, integer, number, boolean, date, timestamp, object or array"
                    );
                    self.error(&type_path, "unknown_type", msg);
                    return None;
                }
            },
        };
        if !matches!(ty, FieldType::Object(_)) && m.get("fields").is_some() {
            self.error(
                &child(path, "fields"),
                "unexpected_key",
                "`fields` belongs to `type: object` only",
            );
        }
        if !matches!(ty, FieldType::Array(_)) && m.get("items").is_some() {
            self.error(
                &child(path, "items"),
                "unexpected_key",
                "`items` belongs to `type: array` only",
            );
        }
        let required = m
            .get("required")
            .and_then(|r| self.boolean(r, &child(path, "required")))
            .unwrap_or(false);
        let scalar = match &ty {
            FieldType::Scalar(s) => Some(*s),
            _ => None,
        };
        let max_length = m
            .get("max_length")
            .and_then(|x| self.whole(x, &child(path, "max_length")));
        if max_length.is_some()
            && !matches!(
                ty,
                FieldType::Scalar(ScalarType::String) | FieldType::Array(_)
            )
        {
            self.error(
                &child(path, "max_length"),
                "constraint_type_mismatch",
                "`max_length` applies to strings and arrays",
            );
        }
        let min = m
            .get("min")
            .and_then(|x| self.number(x, &child(path, "min")));
        let max = m
            .get("max")
            .and_then(|x| self.number(x, &child(path, "max")));
        for (key, given) in [("min", min), ("max", max)] {
            if given.is_some() && !matches!(scalar, Some(ScalarType::Integer | ScalarType::Number))
            {
                self.error(
                    &child(path, key),
                    "constraint_type_mismatch",
                    format!("`{key}` applies to integer and number fields"),
                );
            }
        }
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            self.error(
                &child(path, "min"),
                "invalid_range",
                format!("min {lo} is greater than max {hi}"),
            );
        }
        let enum_values = m
            .get("enum")
            .and_then(|e| self.enumeration(e, &child(path, "enum"), scalar));
        let tp = child(path, "transform");
        let Some(tv) = m.get("transform") else {
            self.error(
                path,
                "missing_transform",
                "every field needs exactly one transform",
            );
            return None;
        };
        let transform = self.transform(tv, &tp)?;
        if let Some(why) = transform_mismatch(&transform, &ty) {
            self.error(&tp, "transform_type_mismatch", why);
            return None;
        }
        Some(Field {
            ty,
            required,
            max_length: max_length.and_then(|n| usize::try_from(n).ok()),
            min,
            max,
            enum_values,
            transform,
        })
    }

    fn enumeration(
        &mut self,
        v: &Value,
        path: &[Seg],
        scalar: Option<ScalarType>,
    ) -> Option<Vec<serde_json::Value>> {
        let Value::Sequence(items) = v else {
            self.error(
                path,
                "invalid_enum",
                format!("expected a list of allowed values, found {}", kind(v)),
            );
            return None;
        };
        let Some(scalar) = scalar else {
            self.error(
                path,
                "constraint_type_mismatch",
                "`enum` applies to scalar fields",
            );
            return None;
        };
        if items.is_empty() {
            self.error(
                path,
                "invalid_enum",
                "an empty enum would refuse every value",
            );
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            let json = serde_json::to_value(it)
                .ok()
                .filter(|j| crate::record::check_scalar(j, scalar).is_ok());
            match json {
                Some(j) => out.push(j),
                None => self.error(
                    &item(path, i),
                    "invalid_enum",
                    format!("not a valid {} value", crate::record::type_name(scalar)),
                ),
            }
        }
        Some(out)
    }

    fn transform(&mut self, v: &Value, path: &[Seg]) -> Option<Transform> {
        let (name, params, pp) = match v {
            Value::String(s) => (s.as_str(), None, path.to_vec()),
            Value::Mapping(m) if m.len() == 1 => {
                let (k, p) = m.iter().next()?;
                let Some(k) = k.as_str() else {
                    self.error(path, "invalid_type", "a transform is named by text");
                    return None;
                };
                (k, Some(p), child(path, k))
            }
            Value::Mapping(m) if m.is_empty() => {
                self.error(
                    path,
                    "missing_transform",
                    "every field needs exactly one transform",
                );
                return None;
            }
            Value::Mapping(m) => {
                let names: Vec<&str> = m.keys().filter_map(Value::as_str).collect();
                let msg = format!(
                    "exactly one transform per field, found {}: {}",
                    names.len(),
                    names.join(", ")
                );
                self.error(path, "multiple_transforms", msg);
                return None;
            }
            other => {
                self.error(
                    path,
                    "invalid_type",
                    format!(
                        "expected a transform name or mapping, found {}",
                        kind(other)
                    ),
                );
                return None;
            }
        };
        let empty = Mapping::new();
        let params = match params {
            None | Some(Value::Null) => &empty,
            Some(p) => self.mapping(p, &pp)?,
        };
        let t = match name {
            "keep" | "drop" | "seal" => {
                self.only_keys(params, &pp, &[]);
                match name {
                    "keep" => Transform::Keep,
                    "drop" => Transform::Drop,
                    _ => Transform::Seal,
                }
            }
            "redact" => {
                self.only_keys(params, &pp, &["with"]);
                let with = params
                    .get("with")
                    .and_then(|w| self.text(w, &child(&pp, "with")));
                Transform::Redact {
                    with: with.unwrap_or_else(|| "[REDACTED]".to_owned()),
                }
            }
            "mask" => {
                self.only_keys(params, &pp, &["keep_first", "keep_last", "char"]);
                let keep_first = params
                    .get("keep_first")
                    .and_then(|x| self.whole(x, &child(&pp, "keep_first")))
                    .unwrap_or(0);
                let keep_last = params
                    .get("keep_last")
                    .and_then(|x| self.whole(x, &child(&pp, "keep_last")))
                    .unwrap_or(0);
                let ch = match params.get("char") {
                    None => '*',
                    Some(c) => {
                        let cp = child(&pp, "char");
                        let text = self.text(c, &cp)?;
                        let mut chars = text.chars();
                        match (chars.next(), chars.next()) {
                            (Some(c), None) => c,
                            _ => {
                                self.error(&cp, "invalid_mask", "`char` is exactly one character");
                                return None;
                            }
                        }
                    }
                };
                let (Ok(keep_first), Ok(keep_last)) =
                    (usize::try_from(keep_first), usize::try_from(keep_last))
                else {
                    self.error(&pp, "invalid_mask", "counts are too large");
                    return None;
                };
                Transform::Mask {
                    keep_first,
                    keep_last,
                    ch,
                }
            }
            "hash" => {
                self.only_keys(params, &pp, &["key"]);
                match params
                    .get("key")
                    .and_then(|k| self.text(k, &child(&pp, "key")))
                {
                    Some(key) if !key.is_empty() => Transform::Hash { key },
                    _ => {
                        self.error(
                            &pp,
                            "hash_key_missing",
                            "`hash` names the managed key it uses: `hash: { key: pseudonym }`",
                        );
                        return None;
                    }
                }
            }
            "generalize" => {
                self.only_keys(params, &pp, &["bucket"]);
                let bp = child(&pp, "bucket");
                match params.get("bucket").map(|b| (b.as_u64(), b)) {
                    Some((Some(b), _)) if b > 0 => Transform::Generalize { bucket: b },
                    Some((_, b)) => {
                        self.error(
                            &bp,
                            "invalid_bucket",
                            format!("bucket must be a whole number > 0, found {}", describe(b)),
                        );
                        return None;
                    }
                    None => {
                        self.error(
                            &pp,
                            "invalid_bucket",
                            "`generalize` needs a bucket width: `generalize: { bucket: 10 }`",
                        );
                        return None;
                    }
                }
            }
            "truncate" => {
                self.only_keys(params, &pp, &["to"]);
                let to = match params.get("to").and_then(Value::as_str) {
                    Some("year") => TruncateUnit::Year,
                    Some("month") => TruncateUnit::Month,
                    Some("day") => TruncateUnit::Day,
                    Some("hour") => TruncateUnit::Hour,
                    _ => {
                        self.error(
                            &pp,
                            "invalid_truncate_unit",
                            "`truncate` needs `to: year | month | day | hour`",
                        );
                        return None;
                    }
                };
                Transform::Truncate { to }
            }
            other => {
                let msg = format!(
                    "unknown transform `{other}`; expected keep, drop, redact, mask, hash, generalize, truncate or seal"
                );
                self.error(path, "unknown_transform", msg);
                return None;
            }
        };
        Some(t)
    }

    fn limits(&mut self, v: &Value, path: &[Seg], doc: &mut FileDoc) {
        let Some(m) = self.mapping(v, path) else {
            return;
        };
        for (role, spec) in self.entries(m, path) {
            let p = child(path, role);
            doc.role_refs.push((role.to_owned(), p.clone()));
            let Some(lm) = self.mapping(spec, &p) else {
                continue;
            };
            self.only_keys(lm, &p, &["rate_per_second", "burst", "max_record_bytes"]);
            let rate = self
                .required(lm, &p, "rate_per_second")
                .and_then(|x| self.number(x, &child(&p, "rate_per_second")));
            let burst = self
                .required(lm, &p, "burst")
                .and_then(|x| self.whole(x, &child(&p, "burst")));
            let bytes = self
                .required(lm, &p, "max_record_bytes")
                .and_then(|x| self.whole(x, &child(&p, "max_record_bytes")));
            let mut ok = true;
            if rate.is_some_and(|r| r <= 0.0) {
                self.error(
                    &child(&p, "rate_per_second"),
                    "invalid_limit",
                    "rate_per_second must be > 0",
                );
                ok = false;
            }
            if burst == Some(0) || burst.is_some_and(|b| b > u64::from(u32::MAX)) {
                self.error(
                    &child(&p, "burst"),
                    "invalid_limit",
                    "burst must be at least 1",
                );
                ok = false;
            }
            if bytes.is_some_and(|b| b == 0 || b > MAX_RECORD_BYTES_CEILING) {
                let msg =
                    format!("max_record_bytes must be between 1 and {MAX_RECORD_BYTES_CEILING}");
                self.error(&child(&p, "max_record_bytes"), "invalid_limit", msg);
                ok = false;
            }
            if let (true, Some(rate), Some(burst), Some(bytes)) = (ok, rate, burst, bytes) {
                let limits = Limits {
                    rate_per_second: rate,
                    burst: u32::try_from(burst).unwrap_or(u32::MAX),
                    max_record_bytes: usize::try_from(bytes).unwrap_or(usize::MAX),
                };
                doc.limits.push((role.to_owned(), limits, p));
            }
        }
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        other => kind(other).to_owned(),
    }
}

/// Why `t` does not fit `ty`, if it does not.
fn transform_mismatch(t: &Transform, ty: &FieldType) -> Option<String> {
    use ScalarType as S;
    let scalar = match ty {
        FieldType::Scalar(s) | FieldType::Array(s) => Some(*s),
        FieldType::Object(_) => None,
    };
    match (t, scalar) {
        (Transform::Keep | Transform::Drop | Transform::Seal | Transform::Redact { .. }, _) => None,
        (Transform::Mask { .. }, Some(S::String)) => None,
        (Transform::Mask { .. }, _) => Some("`mask` applies to string fields".into()),
        (Transform::Hash { .. }, Some(_)) => None,
        (Transform::Hash { .. }, None) => {
            Some("`hash` applies to scalar fields; hash the fields inside the object".into())
        }
        (Transform::Generalize { .. }, Some(S::Integer | S::Number)) => None,
        (Transform::Generalize { .. }, _) => {
            Some("`generalize` applies to integer and number fields".into())
        }
        (
            Transform::Truncate {
                to: TruncateUnit::Hour,
            },
            Some(S::Date),
        ) => Some("a date has no hour: truncate a date to year, month or day".into()),
        (Transform::Truncate { .. }, Some(S::Date | S::Timestamp)) => None,
        (Transform::Truncate { .. }, _) => {
            Some("`truncate` applies to date and timestamp fields".into())
        }
    }
}
