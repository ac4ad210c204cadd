//! Go duration strings, as Consul reads and writes them.
//!
//! This module owns the conversion between [`std::time::Duration`] and Go's `time.Duration`
//! text form: [`parse_go_duration`] accepts what Go's `time.ParseDuration` accepts
//! (`"10s"`, `"1.5m"`, `"0.001s"`, `"60000ms"`, `"1h2m3.5s"`, `"300us"`, `"0"`), except
//! that negative durations are rejected; [`format_go_duration`] renders what Go's
//! `Duration.String()` renders (`"10s"`, `"1m0s"`, `"1.5s"`, `"0s"`, `"100ms"`).
//! [`GoDuration`] is the serde form used in request and response bodies: it reads a Go
//! string, an integer of nanoseconds or a float of nanoseconds, and writes a Go string.

use crate::ProtoError;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// The largest duration Go can represent: `math.MaxInt64` nanoseconds (about 292 years).
pub const MAX_GO_DURATION_NANOS: u128 = i64::MAX as u128;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Nanoseconds per unit, for each unit spelling Go accepts.
fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        // U+00B5 (micro sign) and U+03BC (Greek small letter mu) are both accepted by Go.
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        _ => return None,
    })
}

fn invalid(orig: &str) -> ProtoError {
    ProtoError::Invalid(format!("time: invalid duration {orig:?}"))
}

/// Parses a Go duration string such as `"10s"`, `"1.5m"`, `"1h2m3.5s"` or `"0"`.
///
/// Follows Go's `time.ParseDuration`: a sequence of decimal numbers, each with an optional
/// fraction and a mandatory unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`); a bare `"0"` is
/// allowed. Fractions are computed exactly and truncated to whole nanoseconds. Negative
/// durations (other than `-0`) and durations beyond Go's range are errors.
pub fn parse_go_duration(s: &str) -> Result<Duration, ProtoError> {
    let orig = s;
    let mut rest = s;
    let mut negative = false;
    if let Some(stripped) = rest.strip_prefix('-') {
        negative = true;
        rest = stripped;
    } else if let Some(stripped) = rest.strip_prefix('+') {
        rest = stripped;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid(orig));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let bytes = rest.as_bytes();
        if !(bytes[0] == b'.' || bytes[0].is_ascii_digit()) {
            return Err(invalid(orig));
        }
        // Integer part.
        let int_len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        let mut int_part: u128 = 0;
        for &b in &bytes[..int_len] {
            int_part = int_part * 10 + u128::from(b - b'0');
            if int_part > MAX_GO_DURATION_NANOS {
                return Err(invalid(orig));
            }
        }
        let mut idx = int_len;
        // Fraction part: keep up to 30 digits, which is far beyond nanosecond precision.
        let mut frac_digits: u128 = 0;
        let mut frac_scale: u128 = 1;
        let mut has_frac = false;
        if bytes.get(idx) == Some(&b'.') {
            idx += 1;
            let frac_len = bytes[idx..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            has_frac = frac_len > 0;
            for &b in &bytes[idx..idx + frac_len] {
                if frac_scale < 10u128.pow(30) {
                    frac_digits = frac_digits * 10 + u128::from(b - b'0');
                    frac_scale *= 10;
                }
            }
            idx += frac_len;
        }
        if int_len == 0 && !has_frac {
            return Err(invalid(orig));
        }
        // Unit: everything up to the next digit or '.'.
        let unit_len = bytes[idx..]
            .iter()
            .take_while(|b| !(**b == b'.' || b.is_ascii_digit()))
            .count();
        if unit_len == 0 {
            return Err(ProtoError::Invalid(format!(
                "time: missing unit in duration {orig:?}"
            )));
        }
        // `idx` and `idx + unit_len` sit before ASCII bytes or at the end, so both are
        // char boundaries.
        let unit = rest.get(idx..idx + unit_len).ok_or_else(|| invalid(orig))?;
        let per_unit = unit_nanos(unit).ok_or_else(|| {
            ProtoError::Invalid(format!("time: unknown unit {unit:?} in duration {orig:?}"))
        })?;
        let value = int_part
            .checked_mul(per_unit)
            .and_then(|v| v.checked_add(frac_digits * per_unit / frac_scale))
            .ok_or_else(|| invalid(orig))?;
        total = total.checked_add(value).ok_or_else(|| invalid(orig))?;
        if total > MAX_GO_DURATION_NANOS {
            return Err(invalid(orig));
        }
        rest = rest.get(idx + unit_len..).ok_or_else(|| invalid(orig))?;
    }
    if negative && total != 0 {
        return Err(ProtoError::Invalid(format!(
            "time: invalid duration {orig:?}: negative durations are not allowed"
        )));
    }
    Ok(nanos_to_duration(total))
}

fn nanos_to_duration(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    // The remainder is always below 1e9, so it fits a u32.
    let sub = u32::try_from(nanos % NANOS_PER_SEC).unwrap_or(0);
    Duration::new(secs, sub)
}

/// Whole nanoseconds of `d`, saturating at `u64::MAX`.
pub fn duration_to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Writes the fraction of `v` with `prec` digits (trailing zeros dropped) in front of
/// `buf`, and returns `v` with those digits removed. Mirrors Go's `fmtFrac`.
fn frac(buf: &mut Vec<u8>, mut v: u128, prec: usize) -> u128 {
    let mut printed = false;
    let mut digits = Vec::with_capacity(prec + 1);
    for _ in 0..prec {
        let digit = (v % 10) as u8;
        printed = printed || digit != 0;
        if printed {
            digits.push(b'0' + digit);
        }
        v /= 10;
    }
    if printed {
        digits.push(b'.');
    }
    digits.reverse();
    digits.extend_from_slice(buf);
    *buf = digits;
    v
}

fn prepend_int(buf: &mut Vec<u8>, v: u128) {
    let mut out = v.to_string().into_bytes();
    out.extend_from_slice(buf);
    *buf = out;
}

fn prepend(buf: &mut Vec<u8>, s: &str) {
    let mut out = s.as_bytes().to_vec();
    out.extend_from_slice(buf);
    *buf = out;
}

/// Formats `d` as Go's `time.Duration.String()` does: `"0s"`, `"100ms"`, `"1.5µs"`,
/// `"10s"`, `"1m0s"`, `"1h2m3.5s"`.
pub fn format_go_duration(d: Duration) -> String {
    let mut u = d.as_nanos();
    let mut buf: Vec<u8> = Vec::new();
    if u < NANOS_PER_SEC {
        if u == 0 {
            return "0s".to_string();
        }
        let prec = if u < 1_000 {
            buf.extend_from_slice(b"ns");
            0
        } else if u < 1_000_000 {
            buf.extend_from_slice("\u{b5}s".as_bytes());
            3
        } else {
            buf.extend_from_slice(b"ms");
            6
        };
        u = frac(&mut buf, u, prec);
        prepend_int(&mut buf, u);
    } else {
        buf.push(b's');
        u = frac(&mut buf, u, 9);
        prepend_int(&mut buf, u % 60);
        u /= 60;
        if u > 0 {
            prepend(&mut buf, "m");
            prepend_int(&mut buf, u % 60);
            u /= 60;
            if u > 0 {
                prepend(&mut buf, "h");
                prepend_int(&mut buf, u);
            }
        }
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// A duration in Consul's JSON forms.
///
/// Deserializes from a Go duration string (`"15s"`), an integer of nanoseconds or a float of
/// nanoseconds (truncated), as Consul's decoders do; serializes as a Go duration string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    /// The wrapped duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// Whole nanoseconds, saturating at `u64::MAX`.
    pub fn as_nanos_u64(self) -> u64 {
        duration_to_nanos(self.0)
    }

    /// Reads a duration from a JSON value in any accepted form (string, integer or float).
    pub fn from_json(value: &serde_json::Value) -> Result<GoDuration, ProtoError> {
        match value {
            serde_json::Value::String(s) => parse_go_duration(s).map(GoDuration),
            serde_json::Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    Ok(GoDuration(Duration::from_nanos(u)))
                } else if let Some(i) = n.as_i64() {
                    Err(ProtoError::Invalid(format!(
                        "invalid duration {i}: negative durations are not allowed"
                    )))
                } else {
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    float_nanos(f)
                        .map(GoDuration)
                        .ok_or_else(|| ProtoError::Invalid(format!("invalid duration {f}")))
                }
            }
            other => Err(ProtoError::Invalid(format!(
                "invalid duration {other}: expected a Go duration string or a number of nanoseconds"
            ))),
        }
    }
}

/// Converts a float of nanoseconds (truncating) when it is finite, non-negative and in range.
fn float_nanos(f: f64) -> Option<Duration> {
    // i64::MAX as f64 rounds up to 2^63, so compare with `<`.
    if f.is_finite() && f >= 0.0 && f < i64::MAX as f64 {
        // The range check above makes this conversion exact for the integer part.
        let nanos = f.trunc() as u64;
        Some(Duration::from_nanos(nanos))
    } else {
        None
    }
}

impl From<Duration> for GoDuration {
    fn from(d: Duration) -> Self {
        GoDuration(d)
    }
}

impl From<GoDuration> for Duration {
    fn from(d: GoDuration) -> Self {
        d.0
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_go_duration(self.0))
    }
}

impl std::str::FromStr for GoDuration {
    type Err = ProtoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_go_duration(s).map(GoDuration)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_go_duration(self.0))
    }
}

struct GoDurationVisitor;

impl Visitor<'_> for GoDurationVisitor {
    type Value = GoDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Go duration string or a number of nanoseconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<GoDuration, E> {
        parse_go_duration(v).map(GoDuration).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<GoDuration, E> {
        Ok(GoDuration(Duration::from_nanos(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<GoDuration, E> {
        u64::try_from(v)
            .map(|u| GoDuration(Duration::from_nanos(u)))
            .map_err(|_| {
                E::custom(format!(
                    "invalid duration {v}: negative durations are not allowed"
                ))
            })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<GoDuration, E> {
        float_nanos(v)
            .map(GoDuration)
            .ok_or_else(|| E::custom(format!("invalid duration {v}")))
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(GoDurationVisitor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Duration {
        parse_go_duration(s).unwrap()
    }

    #[test]
    fn parses_go_forms() {
        assert_eq!(p("10s"), Duration::from_secs(10));
        assert_eq!(p("1.5m"), Duration::from_secs(90));
        assert_eq!(p("15.0s"), Duration::from_secs(15));
        assert_eq!(p("9.87s"), Duration::from_millis(9870));
        assert_eq!(p("0.001s"), Duration::from_millis(1));
        assert_eq!(p("60000ms"), Duration::from_secs(60));
        assert_eq!(p("1h2m3.5s"), Duration::from_millis(3_723_500));
        assert_eq!(p("300us"), Duration::from_micros(300));
        assert_eq!(p("300µs"), Duration::from_micros(300));
        assert_eq!(p("300μs"), Duration::from_micros(300));
        assert_eq!(p("7ns"), Duration::from_nanos(7));
        assert_eq!(p("0"), Duration::ZERO);
        assert_eq!(p("-0"), Duration::ZERO);
        assert_eq!(p("+5s"), Duration::from_secs(5));
        assert_eq!(p(".5s"), Duration::from_millis(500));
        assert_eq!(p("5.s"), Duration::from_secs(5));
        assert_eq!(p("0s"), Duration::ZERO);
        assert_eq!(p("1.0000000001s"), Duration::from_secs(1));
        assert_eq!(
            p("2562047h47m16.854775807s"),
            Duration::from_nanos(i64::MAX as u64)
        );
    }

    #[test]
    fn rejects_bad_forms() {
        for s in [
            "",
            "s",
            ".s",
            ".",
            "10",
            "1d",
            "-5s",
            "abc",
            "1.5",
            "5 s",
            "1e3s",
            "--1s",
            "2562047h47m16.854775808s",
            "9999999999999999999h",
        ] {
            assert!(parse_go_duration(s).is_err(), "{s:?} should fail");
        }
        let e = parse_go_duration("10").unwrap_err().to_string();
        assert_eq!(e, "time: missing unit in duration \"10\"");
        let e = parse_go_duration("1d").unwrap_err().to_string();
        assert_eq!(e, "time: unknown unit \"d\" in duration \"1d\"");
        let e = parse_go_duration("x").unwrap_err().to_string();
        assert_eq!(e, "time: invalid duration \"x\"");
    }

    #[test]
    fn formats_like_go() {
        let f = |d| format_go_duration(d);
        assert_eq!(f(Duration::ZERO), "0s");
        assert_eq!(f(Duration::from_secs(10)), "10s");
        assert_eq!(f(Duration::from_secs(60)), "1m0s");
        assert_eq!(f(Duration::from_millis(1500)), "1.5s");
        assert_eq!(f(Duration::from_millis(100)), "100ms");
        assert_eq!(f(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(f(Duration::from_nanos(1500)), "1.5µs");
        assert_eq!(f(Duration::from_nanos(12)), "12ns");
        assert_eq!(f(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(f(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(f(Duration::from_millis(3_723_500)), "1h2m3.5s");
        assert_eq!(f(Duration::from_secs(86_400)), "24h0m0s");
        assert_eq!(f(Duration::from_nanos(1_000_000_001)), "1.000000001s");
        assert_eq!(
            f(Duration::from_nanos(i64::MAX as u64)),
            "2562047h47m16.854775807s"
        );
    }

    #[test]
    fn serde_forms() {
        let d: GoDuration = serde_json::from_str("\"15s\"").unwrap();
        assert_eq!(d.0, Duration::from_secs(15));
        let d: GoDuration = serde_json::from_str("15000000000").unwrap();
        assert_eq!(d.0, Duration::from_secs(15));
        let d: GoDuration = serde_json::from_str("1500000000.7").unwrap();
        assert_eq!(d.0, Duration::from_millis(1500));
        assert!(serde_json::from_str::<GoDuration>("-1").is_err());
        assert!(serde_json::from_str::<GoDuration>("-1.5").is_err());
        assert!(serde_json::from_str::<GoDuration>("true").is_err());
        assert!(serde_json::from_str::<GoDuration>("\"bogus\"").is_err());
        assert!(serde_json::from_str::<GoDuration>("1e300").is_err());
        assert_eq!(
            serde_json::to_string(&GoDuration(Duration::from_secs(90))).unwrap(),
            "\"1m30s\""
        );
        assert_eq!(
            GoDuration::from_json(&serde_json::json!("1m")).unwrap().0,
            Duration::from_secs(60)
        );
        assert_eq!(
            GoDuration::from_json(&serde_json::json!(5)).unwrap().0,
            Duration::from_nanos(5)
        );
        assert!(GoDuration::from_json(&serde_json::json!(-5)).is_err());
        assert!(GoDuration::from_json(&serde_json::json!([1])).is_err());
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(nanos in 0u64..=(i64::MAX as u64)) {
            let d = Duration::from_nanos(nanos);
            let s = format_go_duration(d);
            prop_assert_eq!(parse_go_duration(&s).unwrap(), d);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,24}") {
            let _ = parse_go_duration(&s);
        }

        #[test]
        fn parse_never_panics_on_duration_like(s in "[-+]?[0-9.]{0,6}(ns|us|µs|ms|s|m|h|x)?([0-9.]{0,4}(s|m|h))?") {
            let _ = parse_go_duration(&s);
        }

        #[test]
        fn unit_sums(h in 0u64..1000, m in 0u64..60, s in 0u64..60, ms in 0u64..1000) {
            let text = format!("{h}h{m}m{s}s{ms}ms");
            let want = Duration::from_millis(((h * 60 + m) * 60 + s) * 1000 + ms);
            prop_assert_eq!(parse_go_duration(&text).unwrap(), want);
        }

        #[test]
        fn integer_nanos_deserialize(nanos in 0u64..=u64::MAX) {
            let d: GoDuration = serde_json::from_str(&nanos.to_string()).unwrap();
            prop_assert_eq!(d.0, Duration::from_nanos(nanos));
        }
    }
}
