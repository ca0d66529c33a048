//! JSON into a `serde_json::Value`, refusing an object that names a key twice. serde_json keeps the
//! last of two equal keys without a word; in a ledger of financial records `{"amount": 1, "amount":
//! 1000000}` must not mean whichever the parser happened to keep, and two systems reading the same
//! bytes must not disagree about them.

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use std::str::FromStr;

use serde_json::{Map, Number, Value};

/// Parses one JSON document (nothing but white space after it), refusing duplicate object keys at
/// any depth. serde_json's own recursion limit (128 levels) still applies.
pub(crate) fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// With `arbitrary_precision` serde_json hands a number to a visitor as a one-entry map under this
/// private key, its value the number's text (serde_json's `number::TOKEN`; the tests below fail if it
/// ever changes).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// The text of a number under [`NUMBER_TOKEN`]. serde_json gives it as an owned `String`; a JSON
/// string in the document arrives borrowed or as `&str`, never through `visit_string`.
struct NumberText;

impl<'de> DeserializeSeed<'de> for NumberText {
    type Value = String;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_string(self)
    }
}

impl Visitor<'_> for NumberText {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a number")
    }

    fn visit_string<E>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<String, E> {
        Err(E::custom("an object key reserved by the JSON parser"))
    }
}

/// One value, strictly.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element_seed(Strict)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.is_empty() && key == NUMBER_TOKEN {
                // The parser's own number (its text, as an owned string), or a client's object that
                // borrows the parser's private key to pass for one: a reading no other JSON parser
                // shares, so it is refused.
                let text = map.next_value_seed(NumberText)?;
                return Number::from_str(&text)
                    .map(Value::Number)
                    .map_err(A::Error::custom);
            }
            if out.contains_key(&key) {
                return Err(A::Error::custom(format!("duplicate key `{key}`")));
            }
            let value = map.next_value_seed(Strict)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for bad in [
            r#"{"amount": 1, "amount": 1000000}"#,
            r#"{"fields": {"a": 1, "b": {"c": 2, "c": 3}}}"#,
            r#"[{"x": 1}, {"y": 1, "y": 1}]"#,
        ] {
            let err = from_slice(bad.as_bytes()).unwrap_err().to_string();
            assert!(err.starts_with("duplicate key `"), "{bad}: {err}");
        }
        assert!(from_slice(br#"{"a": {"a": 1}, "b": [{"a": 2}]}"#).is_ok());
        assert!(from_slice(b"{} x").is_err(), "trailing characters");
    }

    #[test]
    fn numbers_keep_their_text_and_the_parsers_private_key_is_refused() {
        let v =
            from_slice(br#"{"a": 123456789012345678901234567890, "b": [1.0, 1e-400]}"#).unwrap();
        assert_eq!(v["a"].to_string(), "123456789012345678901234567890");
        assert_eq!(v["b"][0].to_string(), "1.0");
        assert_eq!(v["b"][1].to_string(), "1e-400");
        for masquerade in [
            r#"{"a": {"$serde_json::private::Number": "5"}}"#,
            r#"{"a": {"\u0024serde_json::private::Number": "5"}}"#,
            r#"{"a": {"$serde_json::private::Number": "\u0035"}}"#,
        ] {
            let err = from_slice(masquerade.as_bytes()).unwrap_err().to_string();
            assert!(
                err.starts_with("an object key reserved"),
                "{masquerade}: {err}"
            );
        }
        // as a later key it is just a key
        assert!(from_slice(br#"{"x": 1, "$serde_json::private::Number": "5"}"#).is_ok());
    }

    proptest! {
        /// On documents without duplicate keys the strict parser agrees with serde_json exactly.
        #[test]
        fn agrees_with_serde_json(v in json_value()) {
            let text = serde_json::to_vec(&v).unwrap();
            prop_assert_eq!(from_slice(&text).unwrap(), serde_json::from_slice::<Value>(&text).unwrap());
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| Value::Number(i.into())),
            any::<u64>().prop_map(|i| Value::Number(i.into())),
            (-1e300f64..1e300).prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
