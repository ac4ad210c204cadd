//! Go-style duration strings (`"30s"`, `"1m30s"`, `"1.5h"`, `"250ms"`), as Consul's
//! configuration files and flags use them.

use std::time::Duration;

/// Nanoseconds per unit, longest suffix first so that `ms` wins over `m`.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
];

/// Parses a non-negative Go duration string. `"0"` is accepted without a unit.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let text = input.trim();
    let invalid = || format!("invalid duration {input:?}");
    let text = text.strip_prefix('+').unwrap_or(text);
    if text.starts_with('-') {
        return Err(format!("duration {input:?} cannot be negative"));
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(invalid());
    }
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let (number, tail) = rest.split_at(number_len);
        let (unit, scale) = UNITS
            .iter()
            .filter(|(suffix, _)| tail.starts_with(suffix))
            .max_by_key(|(suffix, _)| suffix.len())
            .ok_or_else(invalid)?;
        total = total
            .checked_add(scaled(number, *scale).ok_or_else(invalid)?)
            .ok_or_else(invalid)?;
        rest = &tail[unit.len()..];
    }
    let nanos = u64::try_from(total).map_err(|_| format!("duration {input:?} is too large"))?;
    Ok(Duration::from_nanos(nanos))
}

/// `number` (digits with an optional fraction) times `scale` nanoseconds, truncated.
fn scaled(number: &str, scale: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let whole_value: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut value = whole_value.checked_mul(scale)?;
    let mut divisor: u128 = 1;
    for digit in fraction.chars() {
        let digit = u128::from(digit.to_digit(10)?);
        divisor = divisor.checked_mul(10)?;
        if divisor > 1_000_000_000_000_000_000 {
            break;
        }
        value = value.checked_add(digit * scale / divisor)?;
    }
    Some(value)
}

/// Formats a duration the way Go prints it (`1m30s`, `250ms`, `0s`), for logs and `--help`.
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            format!("{}µs", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let secs = duration.as_secs();
    let (hours, minutes, seconds) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let sub = duration.subsec_nanos();
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    if sub == 0 {
        out.push_str(&format!("{seconds}s"));
    } else {
        let fraction = format!("{sub:09}");
        out.push_str(&format!("{seconds}.{}s", fraction.trim_end_matches('0')));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("0", 0),
            ("30s", 30_000_000_000),
            ("1m30s", 90_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("250ms", 250_000_000),
            ("15.0s", 15_000_000_000),
            ("0.001s", 1_000_000),
            ("10us", 10_000),
            ("10µs", 10_000),
            ("7ns", 7),
            ("87600h", 87_600 * 3_600 * 1_000_000_000),
            (".5s", 500_000_000),
        ];
        for (text, nanos) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_nanos(nanos)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_bad_durations() {
        for text in ["", "5", "s", "1x", "-1s", "1.s.", "1..5s", "ms"] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
