//! Medication reminders: the next due times of an active MedicationRequest, computed offline
//! from its dosage timing (<https://hl7.org/fhir/R4/datatypes.html#Timing>).
//!
//! Supported: `event`; `repeat` with `timeOfDay` or `when` (daily clock times, every `period`
//! days), or `frequency` per `period` `periodUnit` (evenly spaced from the start);
//! `dayOfWeek`; `boundsPeriod`; `count`. Clock times are local to the clinic; the caller gives
//! the UTC offset. `when` codes map to fixed clock times (morning 08:00, noon 12:00, evening
//! 18:00, night and bedtime 21:00, meals 08:00/12:00/18:00); offsets (`offset`) are ignored.

use crate::models::{MedicationRequest, Repeat, Timing};
use crate::time;

const DAY: i64 = 86_400;

fn unit_seconds(unit: &str) -> Option<i64> {
    Some(match unit {
        "s" => 1,
        "min" => 60,
        "h" => 3600,
        "d" => DAY,
        "wk" => 7 * DAY,
        "mo" => 30 * DAY,
        "a" => 365 * DAY,
        _ => return None,
    })
}

fn when_clock(code: &str) -> &'static [i64] {
    const H: i64 = 3600;
    match code {
        "MORN" | "CM" | "ACM" | "PCM" => &[8 * H],
        "MORN.early" => &[6 * H],
        "MORN.late" => &[10 * H],
        "WAKE" => &[7 * H],
        "NOON" | "CD" | "ACD" | "PCD" => &[12 * H],
        "AFT" => &[14 * H],
        "AFT.early" => &[13 * H],
        "AFT.late" => &[16 * H],
        "EVE" | "CV" | "ACV" | "PCV" => &[18 * H],
        "EVE.early" => &[17 * H],
        "EVE.late" => &[20 * H],
        "NIGHT" | "HS" | "PHS" => &[21 * H],
        "C" | "AC" | "PC" => &[8 * H, 12 * H, 18 * H],
        _ => &[],
    }
}

fn weekday(days: i64) -> &'static str {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][(days + 3).rem_euclid(7) as usize]
}

/// The next `count` due times (Unix seconds, ascending) strictly after `after`.
/// `authored` anchors schedules without a `boundsPeriod.start`. Inactive requests have none.
pub fn next_due(req: &MedicationRequest, after: i64, count: usize, utc_offset: i64) -> Vec<i64> {
    if req.status != "active" || count == 0 {
        return Vec::new();
    }
    let authored = req.authored_on.as_deref().and_then(time::parse);
    let mut out: Vec<i64> = req
        .dosage_instruction
        .iter()
        .filter_map(|d| d.timing.as_ref())
        .flat_map(|t| timing_due(t, authored, after, count, utc_offset))
        .collect();
    out.sort_unstable();
    out.dedup();
    out.truncate(count);
    out
}

fn timing_due(
    t: &Timing,
    authored: Option<i64>,
    after: i64,
    count: usize,
    utc_offset: i64,
) -> Vec<i64> {
    let mut out: Vec<i64> = t
        .event
        .iter()
        .filter_map(|e| time::parse(e))
        .filter(|e| *e > after)
        .collect();
    if let Some(r) = &t.repeat {
        out.extend(repeat_due(r, authored, after, count, utc_offset));
    }
    out
}

fn repeat_due(
    r: &Repeat,
    authored: Option<i64>,
    after: i64,
    count: usize,
    utc_offset: i64,
) -> Vec<i64> {
    let bounds = r.bounds_period.as_ref();
    let start = bounds
        .and_then(|b| b.start.as_deref())
        .and_then(time::parse)
        .or(authored);
    let end = bounds.and_then(|b| b.end.as_deref()).and_then(time::parse);
    let in_bounds = |t: i64| start.is_none_or(|s| t >= s) && end.is_none_or(|e| t <= e);
    let day_ok = |t: i64| {
        r.day_of_week.is_empty()
            || r.day_of_week
                .iter()
                .any(|d| d == weekday((t + utc_offset).div_euclid(DAY)))
    };
    let max_total = r.count.map(|c| c as usize);
    let mut out = Vec::new();

    let mut clocks: Vec<i64> = r
        .time_of_day
        .iter()
        .filter_map(|c| time::clock_seconds(c))
        .collect();
    clocks.extend(r.when.iter().flat_map(|w| when_clock(w).iter().copied()));
    clocks.sort_unstable();
    clocks.dedup();
    let period_secs = r
        .period
        .as_ref()
        .and_then(serde_json::Number::as_f64)
        .zip(r.period_unit.as_deref().and_then(unit_seconds))
        .map(|(p, u)| (p * u as f64) as i64)
        .filter(|s| *s > 0);

    if !clocks.is_empty() {
        // Clock times every `period` days (1 unless stated), counted from the start day.
        let step_days = period_secs.map_or(1, |s| (s / DAY).max(1));
        let after_day = (after + utc_offset).div_euclid(DAY);
        let first_day = start.map_or(after_day, |s| (s + utc_offset).div_euclid(DAY));
        // With a `count`, walk from the first day so earlier doses are counted; otherwise start
        // near `after`, on the schedule's day grid.
        let mut day = if max_total.is_some() || first_day >= after_day {
            first_day
        } else {
            after_day - (after_day - first_day).rem_euclid(step_days)
        };
        let mut seen = 0usize;
        let horizon = after_day + 366 * step_days.max(1) + count as i64 * step_days;
        while day <= horizon {
            for c in &clocks {
                let t = day * DAY + c - utc_offset;
                if !in_bounds(t) || !day_ok(t) {
                    continue;
                }
                if max_total.is_some_and(|m| seen >= m) {
                    return out;
                }
                seen += 1;
                if t > after {
                    out.push(t);
                    if out.len() == count {
                        return out;
                    }
                }
            }
            if end.is_some_and(|e| day * DAY - utc_offset > e) {
                break;
            }
            day += step_days;
        }
        return out;
    }

    let (Some(period), Some(anchor)) = (period_secs, start) else {
        return out;
    };
    let frequency = i64::from(r.frequency.unwrap_or(1).max(1));
    let interval = (period / frequency).max(60);
    let first = if after < anchor {
        0
    } else {
        (after - anchor) / interval + 1
    };
    // Bounded: day-of-week filters skip at most 6 of every 7 slots.
    for k in first..first + (count as i64) * 64 + 64 {
        if max_total.is_some_and(|m| k as usize >= m) {
            break;
        }
        let t = anchor + k * interval;
        if end.is_some_and(|e| t > e) {
            break;
        }
        if t > after && day_ok(t) {
            out.push(t);
            if out.len() == count {
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(timing: serde_json::Value) -> MedicationRequest {
        serde_json::from_value(json!({
            "status": "active", "intent": "order", "subject": {"reference": "Patient/p"},
            "authoredOn": "2026-11-20T10:00:00Z",
            "dosageInstruction": [{"timing": timing}]
        }))
        .unwrap()
    }

    fn at(s: &str) -> i64 {
        time::parse(s).unwrap()
    }

    #[test]
    fn twice_daily_at_clock_times() {
        let r = req(
            json!({"repeat": {"frequency": 2, "period": 1, "periodUnit": "d", "timeOfDay": ["08:00:00", "20:00:00"]}}),
        );
        let due = next_due(&r, at("2026-11-21T09:00:00Z"), 3, 0);
        assert_eq!(
            due,
            vec![
                at("2026-11-21T20:00:00Z"),
                at("2026-11-22T08:00:00Z"),
                at("2026-11-22T20:00:00Z")
            ]
        );
        // The same schedule for a clinic at UTC-5: 08:00 local is 13:00Z.
        let due = next_due(&r, at("2026-11-21T09:00:00Z"), 1, -5 * 3600);
        assert_eq!(due, vec![at("2026-11-21T13:00:00Z")]);
    }

    #[test]
    fn every_eight_hours_from_the_start() {
        let r = req(
            json!({"repeat": {"frequency": 1, "period": 8, "periodUnit": "h", "boundsPeriod": {"start": "2026-11-20T06:00:00Z"}}}),
        );
        let due = next_due(&r, at("2026-11-20T15:00:00Z"), 3, 0);
        assert_eq!(
            due,
            vec![
                at("2026-11-20T22:00:00Z"),
                at("2026-11-21T06:00:00Z"),
                at("2026-11-21T14:00:00Z")
            ]
        );
    }

    #[test]
    fn bounds_count_weekdays_and_status() {
        let r = req(
            json!({"repeat": {"period": 1, "periodUnit": "d", "count": 3, "boundsPeriod": {"start": "2026-11-20T09:00:00Z"}}}),
        );
        assert_eq!(next_due(&r, at("2026-11-20T00:00:00Z"), 10, 0).len(), 3);
        let r = req(
            json!({"repeat": {"when": ["MORN"], "dayOfWeek": ["mon"], "boundsPeriod": {"end": "2026-12-31"}}}),
        );
        // 2026-11-23 is a Monday.
        assert_eq!(
            next_due(&r, at("2026-11-20T12:00:00Z"), 2, 0),
            vec![at("2026-11-23T08:00:00Z"), at("2026-11-30T08:00:00Z")]
        );
        let r = req(
            json!({"repeat": {"timeOfDay": ["08:00:00"], "boundsPeriod": {"end": "2026-11-21T12:00:00Z"}}}),
        );
        assert_eq!(
            next_due(&r, at("2026-11-20T12:00:00Z"), 5, 0),
            vec![at("2026-11-21T08:00:00Z")]
        );
        let mut stopped = req(json!({"event": ["2026-12-01T08:00:00Z"]}));
        assert_eq!(
            next_due(&stopped, at("2026-11-20T12:00:00Z"), 5, 0),
            vec![at("2026-12-01T08:00:00Z")]
        );
        stopped.status = "stopped".into();
        assert!(next_due(&stopped, at("2026-11-20T12:00:00Z"), 5, 0).is_empty());
    }
}
