//! Exact numbers. serde_json parses with `arbitrary_precision`, so a number arrives as the text it was
//! written as; this module decides, per field type, whether that exact value can be kept and gives
//! its one canonical form, or says why not. Nothing is ever rounded silently:
//!
//! - `integer`: any JSON number whose value is a whole number in −2^63 … 2^63−1 (`7`, `7.0`, `7e0`
//!   and `70e-1` are all `7`); written in decimal.
//! - `number`: a whole number in that range is kept as an integer, as above; any other value is kept
//!   when it is exactly the shortest decimal of an IEEE-754 double (every decimal of up to 15
//!   significant digits in the double range is), and written in that shortest form (`52000.5`,
//!   `1e+21`, `1.5e-7`). `123456789012345678901234567890` or `1e-400` would change, so they are refused.
//!
//! Two submissions whose numbers have the same value therefore have the same canonical record.

use std::str::FromStr;

use serde_json::Number;

/// The largest exponent we look at: beyond it no non-zero value fits an `i64` or a finite double.
const MAX_EXPONENT: i64 = 100_000;

/// A decimal value: `(-1)^negative × digits × 10^exponent`, with `digits` free of leading and
/// trailing zeros (empty for zero, which is never negative).
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: String,
    exponent: i64,
}

/// Why a number cannot be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inexact {
    /// Out of the type's range.
    OutOfRange,
    /// More precise than a double holds.
    TooPrecise,
}

impl Inexact {
    /// The reason given to the client (it never repeats the value).
    pub(crate) fn reason(self, integer: bool) -> &'static str {
        match (self, integer) {
            (Inexact::OutOfRange, true) => "outside the integer range -2^63 to 2^63-1",
            (Inexact::OutOfRange, false) => "outside the range of a number field",
            (Inexact::TooPrecise, _) => {
                "more precise than a number field keeps (the shortest decimal of a double)"
            }
        }
    }
}

/// Reads JSON number text (already checked against JSON's grammar by the parser, which also writes
/// a positive exponent as `e+N`). `None` only for an exponent too large to mean anything.
fn decimal(text: &str) -> Option<Decimal> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exp_text) = match rest.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (rest, None),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = int_part.chars().chain(frac_part.chars()).collect();
    let trimmed = all.trim_start_matches('0');
    if trimmed.is_empty() {
        return Some(Decimal {
            negative: false,
            digits: String::new(),
            exponent: 0,
        });
    }
    let mut exponent = match exp_text {
        None => 0,
        Some(e) => {
            let e = e.strip_prefix('+').unwrap_or(e);
            let (sign, mag) = match e.strip_prefix('-') {
                Some(m) => (-1, m),
                None => (1, e),
            };
            let mag = mag.trim_start_matches('0');
            if mag.len() > 7 {
                return None;
            }
            sign * mag.parse::<i64>().unwrap_or(0)
        }
    };
    exponent -= i64::try_from(frac_part.len()).ok()?;
    let digits = trimmed.trim_end_matches('0');
    exponent += i64::try_from(trimmed.len() - digits.len()).ok()?;
    if exponent.abs() > MAX_EXPONENT {
        return None;
    }
    Some(Decimal {
        negative,
        digits: digits.to_owned(),
        exponent,
    })
}

/// The value as an `i64`, if it is a whole number in range.
fn whole(d: &Decimal) -> Result<Option<i64>, Inexact> {
    if d.digits.is_empty() {
        return Ok(Some(0));
    }
    if d.exponent < 0 {
        return Ok(None);
    }
    // 19 digits is the most an i64 has; more is out of range, and the check bounds the string below.
    let len = i64::try_from(d.digits.len()).unwrap_or(i64::MAX);
    if len.saturating_add(d.exponent) > 19 {
        return Err(Inexact::OutOfRange);
    }
    let mut text = String::with_capacity(21);
    if d.negative {
        text.push('-');
    }
    text.push_str(&d.digits);
    text.extend(std::iter::repeat_n(
        '0',
        usize::try_from(d.exponent).unwrap_or(0),
    ));
    text.parse::<i64>()
        .map(Some)
        .map_err(|_| Inexact::OutOfRange)
}

/// The canonical form of `n` in a field of type `integer` (`integer` true) or `number`. `Ok(None)`
/// for an `integer` field given a fraction: the type check reports it.
pub(crate) fn canonical(n: &Number, integer: bool) -> Result<Option<Number>, Inexact> {
    let text = n.to_string();
    let Some(d) = decimal(&text) else {
        return Err(Inexact::OutOfRange);
    };
    match whole(&d) {
        Ok(Some(i)) => return Ok(Some(Number::from(i))),
        Ok(None) if integer => return Ok(None),
        Err(e) if integer => return Err(e),
        // A whole number beyond i64 may still be a double's shortest decimal (1e21).
        Ok(None) | Err(_) => {}
    }
    // Rust's parser rounds correctly; the double is kept only if its shortest decimal (what
    // serde_json writes) is the very value that was sent.
    let f = f64::from_str(&text).map_err(|_| Inexact::OutOfRange)?;
    let Some(kept) = Number::from_f64(f) else {
        return Err(Inexact::OutOfRange); // overflowed to infinity
    };
    if decimal(&kept.to_string()).as_ref() == Some(&d) {
        Ok(Some(kept))
    } else if f == 0.0 {
        Err(Inexact::OutOfRange) // underflowed (zero itself is whole, above)
    } else {
        Err(Inexact::TooPrecise)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn num(text: &str) -> Number {
        serde_json::from_str(text).unwrap()
    }

    fn canon(text: &str, integer: bool) -> Result<Option<String>, Inexact> {
        canonical(&num(text), integer).map(|n| n.map(|n| n.to_string()))
    }

    #[test]
    fn the_issue_cases() {
        assert_eq!(
            canon("123456789012345678901234567890", false),
            Err(Inexact::TooPrecise)
        );
        assert_eq!(canon("1e-400", false), Err(Inexact::OutOfRange));
        assert_eq!(canon("1e400", false), Err(Inexact::OutOfRange));
        assert_eq!(canon("1", false), canon("1.0", false));
        assert_eq!(canon("1.0", false), Ok(Some("1".into())));
        assert_eq!(canon("52000.5", false), Ok(Some("52000.5".into())));
        assert_eq!(canon("52000.50", false), Ok(Some("52000.5".into())));
    }

    #[test]
    fn integers_have_the_i64_range() {
        assert_eq!(
            canon("9223372036854775807", true),
            Ok(Some("9223372036854775807".into()))
        );
        assert_eq!(
            canon("-9223372036854775808", true),
            Ok(Some("-9223372036854775808".into()))
        );
        assert_eq!(canon("9223372036854775808", true), Err(Inexact::OutOfRange));
        assert_eq!(canon("1e19", true), Err(Inexact::OutOfRange));
        assert_eq!(canon("7e0", true), Ok(Some("7".into())));
        assert_eq!(canon("70e-1", true), Ok(Some("7".into())));
        assert_eq!(canon("-0", true), Ok(Some("0".into())));
        assert_eq!(canon("0e999999999", true), Ok(Some("0".into())));
        assert_eq!(canon("1.5", true), Ok(None));
        assert_eq!(canon("1e99999999999", true), Err(Inexact::OutOfRange));
        // exact beyond a double's 2^53 in a number field too
        assert_eq!(
            canon("9007199254740993", false),
            Ok(Some("9007199254740993".into()))
        );
    }

    #[test]
    fn doubles_keep_their_shortest_decimal() {
        assert_eq!(canon("0.1", false), Ok(Some("0.1".into())));
        assert_eq!(canon("1e21", false), Ok(Some("1e+21".into())));
        assert_eq!(canon("1E+21", false), Ok(Some("1e+21".into())));
        assert_eq!(canon("0.00000015", false), Ok(Some("1.5e-7".into())));
        assert_eq!(canon("-2.5", false), Ok(Some("-2.5".into())));
        // 17 significant digits that are not a double's shortest form
        assert_eq!(
            canon("0.10000000000000001", false),
            Err(Inexact::TooPrecise)
        );
        assert_eq!(canon("5e-324", false), Ok(Some("5e-324".into())));
        assert_eq!(canon("2e-324", false), Err(Inexact::OutOfRange));
    }

    proptest! {
        /// Every double's shortest decimal is kept as exactly that.
        #[test]
        fn every_double_round_trips(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let n = Number::from_f64(f).unwrap();
            let c = canonical(&num(&n.to_string()), false).unwrap().unwrap();
            prop_assert_eq!(c.as_f64(), Some(if f == 0.0 { 0.0 } else { f }));
        }

        /// Canonical forms are fixed points, and equal values have equal forms however written.
        #[test]
        fn spellings_of_one_value_agree(
            neg in any::<bool>(), digits in "[1-9][0-9]{0,14}", shift in -20i64..20, pad in 0usize..4,
        ) {
            let sign = if neg { "-" } else { "" };
            let plain = format!("{sign}{digits}e{shift}");
            let padded = format!("{sign}{digits}{}e{}", "0".repeat(pad), shift - pad as i64);
            for integer in [false, true] {
                let a = canon(&plain, integer);
                prop_assert_eq!(&a, &canon(&padded, integer));
                if let Ok(Some(c)) = a {
                    prop_assert_eq!(canon(&c, integer), Ok(Some(c.clone())));
                }
            }
        }

        /// Any decimal text either keeps its exact value or is refused; a kept value is never another.
        #[test]
        fn nothing_is_rounded(digits in "0|[1-9][0-9]{0,29}", frac in "[0-9]{0,30}", exp in -400i64..400) {
            let text = if frac.is_empty() { format!("{digits}e{exp}") } else { format!("{digits}.{frac}e{exp}") };
            if let Ok(Some(c)) = canon(&text, false) {
                prop_assert_eq!(decimal(&c), decimal(&num(&text).to_string()));
            }
        }
    }
}
