//! FHIR R4 primitive types and their lexical rules
//! (<https://hl7.org/fhir/R4/datatypes.html#primitive>).

use base64::Engine;
use serde_json::Value;

/// A FHIR primitive type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prim {
    /// `boolean`
    Boolean,
    /// `integer` (32-bit signed)
    Integer,
    /// `positiveInt` (≥ 1)
    PositiveInt,
    /// `unsignedInt` (≥ 0)
    UnsignedInt,
    /// `decimal`
    Decimal,
    /// `string`
    String,
    /// `markdown`
    Markdown,
    /// `code`
    Code,
    /// `id`
    Id,
    /// `uri`, `url`, `canonical`, `oid`, `uuid`
    Uri,
    /// `date`
    Date,
    /// `dateTime`
    DateTime,
    /// `instant`
    Instant,
    /// `time`
    Time,
    /// `base64Binary`
    Base64Binary,
}

impl Prim {
    /// The FHIR name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Prim::Boolean => "boolean",
            Prim::Integer => "integer",
            Prim::PositiveInt => "positiveInt",
            Prim::UnsignedInt => "unsignedInt",
            Prim::Decimal => "decimal",
            Prim::String => "string",
            Prim::Markdown => "markdown",
            Prim::Code => "code",
            Prim::Id => "id",
            Prim::Uri => "uri",
            Prim::Date => "date",
            Prim::DateTime => "dateTime",
            Prim::Instant => "instant",
            Prim::Time => "time",
            Prim::Base64Binary => "base64Binary",
        }
    }

    /// Checks a JSON value against the type; returns why it is not valid.
    pub fn check(self, v: &Value) -> Result<(), String> {
        let want = || format!("must be a FHIR {}", self.name());
        match self {
            Prim::Boolean => v.as_bool().map(|_| ()).ok_or_else(want),
            Prim::Integer => match v.as_i64() {
                Some(n) if i32::try_from(n).is_ok() => Ok(()),
                _ => Err(want()),
            },
            Prim::PositiveInt => match v.as_i64() {
                Some(n) if n >= 1 && i32::try_from(n).is_ok() => Ok(()),
                _ => Err(want()),
            },
            Prim::UnsignedInt => match v.as_i64() {
                Some(n) if n >= 0 && i32::try_from(n).is_ok() => Ok(()),
                _ => Err(want()),
            },
            Prim::Decimal => {
                if v.is_number() {
                    Ok(())
                } else {
                    Err(want())
                }
            }
            _ => {
                let s = v.as_str().ok_or_else(want)?;
                if s.is_empty() {
                    return Err("must not be an empty string (omit the element instead)".into());
                }
                let ok = match self {
                    Prim::String | Prim::Markdown => !s.trim().is_empty(),
                    Prim::Code => is_code(s),
                    Prim::Id => is_id(s),
                    Prim::Uri => !s.chars().any(char::is_whitespace),
                    Prim::Date => is_date(s),
                    Prim::DateTime => is_date_time(s, false),
                    Prim::Instant => is_date_time(s, true),
                    Prim::Time => is_time(s),
                    Prim::Base64Binary => base64::engine::general_purpose::STANDARD
                        .decode(s.split_whitespace().collect::<String>())
                        .is_ok(),
                    _ => true,
                };
                if ok { Ok(()) } else { Err(want()) }
            }
        }
    }
}

/// `[^\s]+(\s[^\s]+)*`: no leading, trailing or doubled whitespace.
pub fn is_code(s: &str) -> bool {
    !s.is_empty()
        && s.split(' ')
            .all(|part| !part.is_empty() && !part.chars().any(char::is_whitespace))
}

/// `[A-Za-z0-9\-\.]{1,64}`
pub fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, with a real month and day.
pub fn is_date(s: &str) -> bool {
    let mut parts = s.split('-');
    let Some(year) = parts.next().and_then(|y| digits(y, 4)) else {
        return false;
    };
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => true,
        (Some(m), None, _) => digits(m, 2).is_some_and(|m| (1..=12).contains(&m)),
        (Some(m), Some(d), None) => match (digits(m, 2), digits(d, 2)) {
            (Some(m), Some(d)) => (1..=12).contains(&m) && d >= 1 && d <= days_in_month(year, m),
            _ => false,
        },
        _ => false,
    }
}

/// `hh:mm:ss(.fraction)?`
pub fn is_time(s: &str) -> bool {
    let (main, frac) = match s.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (s, None),
    };
    if frac.is_some_and(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    let p: Vec<&str> = main.split(':').collect();
    p.len() == 3
        && digits(p[0], 2).is_some_and(|h| h < 24)
        && digits(p[1], 2).is_some_and(|m| m < 60)
        && digits(p[2], 2).is_some_and(|s| s < 60)
}

/// A date, optionally with a time that then needs a zone (`Z` or `±hh:mm`). `full` (instant)
/// requires the time.
pub fn is_date_time(s: &str, full: bool) -> bool {
    let Some((date, time)) = s.split_once('T') else {
        return !full && is_date(s);
    };
    if date.len() != 10 || !is_date(date) {
        return false;
    }
    let (clock, zone) = if let Some(c) = time.strip_suffix('Z') {
        (c, "Z")
    } else if time.len() > 6 && matches!(time.as_bytes()[time.len() - 6], b'+' | b'-') {
        time.split_at(time.len() - 6)
    } else {
        return false;
    };
    let zone_ok = zone == "Z"
        || (zone.as_bytes()[3] == b':'
            && digits(&zone[1..3], 2).is_some_and(|h| h <= 14)
            && digits(&zone[4..6], 2).is_some_and(|m| m < 60));
    zone_ok && is_time(clock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates() {
        for ok in ["2026", "2026-02", "2024-02-29", "1900-12-31"] {
            assert!(is_date(ok), "{ok}");
        }
        for bad in [
            "26",
            "2026-13",
            "2023-02-29",
            "2026-1-01",
            "2026-01-32",
            "2026/01/01",
            "2026-01-01T00:00:00Z",
        ] {
            assert!(!is_date(bad), "{bad}");
        }
    }

    #[test]
    fn date_times_need_zones_with_times() {
        for ok in [
            "2026",
            "2026-11-20",
            "2026-11-20T09:30:00Z",
            "2026-11-20T09:30:00.123+01:00",
            "2026-11-20T23:59:59-05:00",
        ] {
            assert!(is_date_time(ok, false), "{ok}");
        }
        for bad in [
            "2026-11-20T09:30:00",
            "2026-11-20T9:30:00Z",
            "2026-11-20T09:30Z",
            "2026-11-20T24:00:00Z",
            "2026-11-20 09:30:00Z",
        ] {
            assert!(!is_date_time(bad, false), "{bad}");
        }
        assert!(!is_date_time("2026-11-20", true));
        assert!(is_date_time("2026-11-20T09:30:00.5Z", true));
    }

    #[test]
    fn primitives() {
        assert!(Prim::Code.check(&json!("final")).is_ok());
        assert!(Prim::Code.check(&json!(" final")).is_err());
        assert!(Prim::Code.check(&json!("")).is_err());
        assert!(Prim::Id.check(&json!("p-1.a")).is_ok());
        assert!(Prim::Id.check(&json!("p/1")).is_err());
        assert!(Prim::PositiveInt.check(&json!(0)).is_err());
        assert!(Prim::UnsignedInt.check(&json!(0)).is_ok());
        assert!(Prim::Integer.check(&json!(1.5)).is_err());
        assert!(Prim::Integer.check(&json!(3_000_000_000i64)).is_err());
        assert!(Prim::Decimal.check(&json!("1.5")).is_err());
        assert!(Prim::Boolean.check(&json!("true")).is_err());
        assert!(Prim::Base64Binary.check(&json!("aGVsbG8=")).is_ok());
        assert!(Prim::Base64Binary.check(&json!("%%%")).is_err());
        assert!(Prim::Time.check(&json!("08:00:00")).is_ok());
        assert!(Prim::Time.check(&json!("8:00")).is_err());
        assert!(Prim::String.check(&json!("   ")).is_err());
    }
}
