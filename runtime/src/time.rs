//! Time helpers. Clinical logic runs on event time; wall time is only for ingest stamps,
//! latency measurement and idle-partition fallbacks. Calendar arithmetic is proleptic Gregorian
//! on day numbers (days since 1970-01-01), so reporting periods need no time-zone database: the
//! reporting zone is a fixed UTC offset (China has no daylight saving).

use std::time::{SystemTime, UNIX_EPOCH};

pub const MS_PER_DAY: i64 = 86_400_000;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Day number of a civil date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i32;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date (year, month 1-12, day 1-31) of a day number.
pub fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses `YYYY-MM-DD` into a day number.
pub fn parse_date(text: &str) -> Option<i32> {
    let mut parts = text.trim().splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

pub fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Day number (in a zone `offset_minutes` east of UTC) of an instant.
pub fn local_day(ms: i64, offset_minutes: i32) -> i32 {
    (ms + offset_minutes as i64 * 60_000).div_euclid(MS_PER_DAY) as i32
}

/// The instant at which a local day starts.
pub fn local_day_start_ms(day: i32, offset_minutes: i32) -> i64 {
    day as i64 * MS_PER_DAY - offset_minutes as i64 * 60_000
}

/// The reporting calendar every stage that counts periods follows (the processor's settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reporting {
    /// The reporting time zone, minutes east of UTC.
    pub utc_offset_minutes: i32,
    /// How long after a period closes its figures can still change: then they are final.
    pub allowed_lateness: std::time::Duration,
}

impl Reporting {
    /// Whether a period ending (exclusive) on local day `end` is final at `now_ms`.
    pub fn is_final(&self, end: i32, now_ms: i64) -> bool {
        let lateness = i64::try_from(self.allowed_lateness.as_millis()).unwrap_or(i64::MAX);
        now_ms >= local_day_start_ms(end, self.utc_offset_minutes).saturating_add(lateness)
    }
}

/// The day after a period of `kind` (`MONTH`, `QUARTER`, `YEAR`) starting on `start` ends.
pub fn period_end(kind: &str, start: i32) -> i32 {
    let months = match kind {
        "MONTH" => 1,
        "QUARTER" => 3,
        _ => 12,
    };
    let (year, month, _) = civil_from_days(start);
    let index = year * 12 + month as i32 - 1 + months;
    days_from_civil(index.div_euclid(12), index.rem_euclid(12) as u32 + 1, 1)
}

/// Formats a day number as `YYYY-MM-DD`.
pub fn format_date(day: i32) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_over_four_centuries() {
        for day in (-200_000..200_000).step_by(7) {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2025, 1, 1), 20_089);
        assert_eq!(civil_from_days(20_089), (2025, 1, 1));
    }

    #[test]
    fn a_period_is_final_once_closed_and_its_lateness_passed() {
        let start = days_from_civil(2025, 11, 1);
        assert_eq!(period_end("QUARTER", start), days_from_civil(2026, 2, 1));
        assert_eq!(
            period_end("MONTH", days_from_civil(2025, 12, 1)),
            days_from_civil(2026, 1, 1)
        );
        assert_eq!(
            period_end("YEAR", days_from_civil(2025, 1, 1)),
            days_from_civil(2026, 1, 1)
        );
        let reporting = Reporting {
            utc_offset_minutes: 480,
            allowed_lateness: std::time::Duration::from_secs(86_400),
        };
        let end = days_from_civil(2026, 1, 1);
        // 2026-01-01 00:00 at UTC+8 is 2025-12-31 16:00 UTC; a day of lateness after that.
        let closes = i64::from(end) * MS_PER_DAY - 8 * 3_600_000 + MS_PER_DAY;
        assert!(!reporting.is_final(end, closes - 1));
        assert!(reporting.is_final(end, closes));
    }

    #[test]
    fn dates_parse_and_reject_impossible_days() {
        assert_eq!(parse_date("2024-02-29"), Some(days_from_civil(2024, 2, 29)));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2023-13-01"), None);
        assert_eq!(parse_date("yesterday"), None);
        assert_eq!(format_date(days_from_civil(2026, 11, 5)), "2026-11-05");
    }

    #[test]
    fn local_days_follow_the_offset() {
        // 2025-01-01T16:30Z is already 2 January in Beijing (UTC+8).
        let ms = local_day_start_ms(days_from_civil(2025, 1, 1), 0) + 16 * 3_600_000 + 1_800_000;
        assert_eq!(local_day(ms, 0), days_from_civil(2025, 1, 1));
        assert_eq!(local_day(ms, 480), days_from_civil(2025, 1, 2));
        assert_eq!(
            local_day_start_ms(days_from_civil(2025, 1, 2), 480),
            ms - 30 * 60_000
        );
    }
}
