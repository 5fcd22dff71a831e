//! FHIR dates and times as Unix seconds (UTC), without a date-time dependency.

use crate::primitives::{is_date, is_date_time};

/// Days from 1970-01-01 to a civil date (proleptic Gregorian; Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parses a FHIR `date`, `dateTime` or `instant` to Unix seconds at the start of the period it
/// names (a bare date is midnight UTC; `2026` is 2026-01-01).
pub fn parse(s: &str) -> Option<i64> {
    if !(is_date(s) || is_date_time(s, false)) {
        return None;
    }
    let (date, time) = s.split_once('T').unwrap_or((s, ""));
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next().map_or(Some(1), |m| m.parse().ok())?;
    let d: u32 = parts.next().map_or(Some(1), |d| d.parse().ok())?;
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if !time.is_empty() {
        let (clock, offset) = if let Some(c) = time.strip_suffix('Z') {
            (c, 0)
        } else {
            let (c, z) = time.split_at(time.len() - 6);
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let h: i64 = z[1..3].parse().ok()?;
            let mm: i64 = z[4..6].parse().ok()?;
            (c, sign * (h * 3600 + mm * 60))
        };
        secs += clock_seconds(clock)? - offset;
    }
    Some(secs)
}

/// `hh:mm:ss(.f)` to seconds after midnight.
pub fn clock_seconds(s: &str) -> Option<i64> {
    let main = s.split('.').next()?;
    let mut p = main.split(':');
    let h: i64 = p.next()?.parse().ok()?;
    let m: i64 = p.next()?.parse().ok()?;
    let sec: i64 = p.next()?.parse().ok()?;
    Some(h * 3600 + m * 60 + sec)
}

/// Formats Unix seconds as a FHIR `instant` in UTC.
pub fn instant(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The current time in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse("1970-01-01"), Some(0));
        assert_eq!(
            parse("2026-11-20T09:30:00Z"),
            Some(parse("2026-11-20").unwrap() + 9 * 3600 + 1800)
        );
        assert_eq!(
            parse("2026-11-20T10:30:00+01:00"),
            parse("2026-11-20T09:30:00Z")
        );
        assert_eq!(parse("2026"), parse("2026-01-01"));
        assert_eq!(parse("2026-13-01"), None);
        assert_eq!(
            instant(parse("2024-02-29T23:59:59Z").unwrap()),
            "2024-02-29T23:59:59Z"
        );
        for d in [-1000, 0, 11_016, 20_777, 40_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }
}
