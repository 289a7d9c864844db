//! Reading and writing the ways hospital systems spell time (per vendor shape).

use serde_json::Value;
use vigil_runtime::time::{
    civil_from_days, days_from_civil, local_day, local_day_start_ms, MS_PER_DAY,
};

use super::shapes::{DateFormat, TimestampFormat};

/// An instant as the vendor writes it. `offset` is the hospital's zone, minutes east of UTC.
pub fn write_timestamp(ms: i64, format: TimestampFormat, offset: i32) -> Value {
    let wall = ms + offset as i64 * 60_000;
    match format {
        TimestampFormat::EpochMillis => Value::from(ms),
        TimestampFormat::EpochMicros => Value::from(ms * 1_000),
        TimestampFormat::EpochNanos => Value::from(ms * 1_000_000),
        TimestampFormat::LocalMillis => Value::from(wall),
        TimestampFormat::LocalMicros => Value::from(wall * 1_000),
        TimestampFormat::LocalNanos => Value::from(wall * 1_000_000),
        TimestampFormat::ZonedText => {
            let day = ms.div_euclid(MS_PER_DAY) as i32;
            let in_day = ms.rem_euclid(MS_PER_DAY);
            let (y, m, d) = civil_from_days(day);
            Value::from(format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
                in_day / 3_600_000,
                in_day / 60_000 % 60,
                in_day / 1_000 % 60,
                in_day % 1_000
            ))
        }
        TimestampFormat::LocalDatetime => {
            let local = ms + offset as i64 * 60_000;
            let day = local.div_euclid(MS_PER_DAY) as i32;
            let in_day = local.rem_euclid(MS_PER_DAY) / 1_000;
            let (y, m, d) = civil_from_days(day);
            Value::from(format!(
                "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
                in_day / 3600,
                in_day / 60 % 60,
                in_day % 60
            ))
        }
    }
}

/// A calendar date (the local day containing `ms`) as the vendor writes it.
pub fn write_date(ms: i64, format: DateFormat, offset: i32) -> Value {
    let day = local_day(ms, offset);
    match format {
        DateFormat::EpochDays => Value::from(day),
        DateFormat::EpochMillis => Value::from(local_day_start_ms(day, offset)),
        DateFormat::LocalDate => {
            let (y, m, d) = civil_from_days(day);
            Value::from(format!("{y:04}-{m:02}-{d:02}"))
        }
    }
}

fn number(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Parses "YYYY-MM-DD" (optionally followed by " HH:MM[:SS]" or "THH:MM[:SS]") as local time.
fn local_text(text: &str, offset: i32) -> Option<i64> {
    let text = text.trim();
    let (date, time) = match text.find([' ', 'T']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let day = vigil_runtime::time::parse_date(date)?;
    let mut seconds = 0i64;
    if let Some(time) = time {
        let mut parts = time.trim_end_matches('Z').split(':');
        let h: i64 = parts.next()?.parse().ok()?;
        let m: i64 = parts.next()?.parse().ok()?;
        let s: f64 = parts.next().map_or(Some(0.0), |s| s.parse().ok())?;
        if !(0..24).contains(&h) || !(0..60).contains(&m) || !(0.0..61.0).contains(&s) {
            return None;
        }
        seconds = h * 3600 + m * 60 + s as i64;
    }
    Some(local_day_start_ms(day, offset) + seconds * 1000)
}

/// An instant the vendor wrote, or `None` if absent or unreadable.
pub fn read_timestamp(value: &Value, format: TimestampFormat, offset: i32) -> Option<i64> {
    if value.is_null() {
        return None;
    }
    let local = offset as i64 * 60_000;
    match format {
        TimestampFormat::EpochMillis => number(value),
        TimestampFormat::EpochMicros => number(value).map(|us| us.div_euclid(1_000)),
        TimestampFormat::EpochNanos => number(value).map(|ns| ns.div_euclid(1_000_000)),
        TimestampFormat::LocalMillis => number(value).map(|ms| ms - local),
        TimestampFormat::LocalMicros => number(value).map(|us| us.div_euclid(1_000) - local),
        TimestampFormat::LocalNanos => number(value).map(|ns| ns.div_euclid(1_000_000) - local),
        TimestampFormat::ZonedText => value.as_str().and_then(zoned_text),
        TimestampFormat::LocalDatetime => value.as_str().and_then(|t| local_text(t, offset)),
    }
}

/// ISO-8601 with an offset: "2025-01-02T07:30:45Z", "2025-01-02T15:30:45.123+08:00".
fn zoned_text(text: &str) -> Option<i64> {
    let text = text.trim();
    let (wall, offset_minutes) = if let Some(wall) = text.strip_suffix('Z') {
        (wall, 0)
    } else {
        let at = text.len().checked_sub(6)?;
        let (wall, zone) = (text.get(..at)?, text.get(at..)?);
        let sign = match zone.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let hours: i32 = zone.get(1..3)?.parse().ok()?;
        let minutes: i32 = zone.get(4..6)?.parse().ok()?;
        (wall, sign * (hours * 60 + minutes))
    };
    let (seconds, millis) = match wall.split_once('.') {
        Some((seconds, fraction)) => {
            // Only ASCII digits (so byte and character counts agree): anything else, multi-byte
            // text included, is not a time.
            if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let digits = &fraction[..fraction.len().min(3)];
            let scale = 10i64.pow(3 - digits.len() as u32);
            (seconds, digits.parse::<i64>().ok()? * scale)
        }
        None => (wall, 0),
    };
    local_text(seconds, offset_minutes).map(|ms| ms + millis)
}

/// A date the vendor wrote, as the instant its local day starts.
pub fn read_date(value: &Value, format: DateFormat, offset: i32) -> Option<i64> {
    if value.is_null() {
        return None;
    }
    match format {
        DateFormat::EpochDays => number(value).map(|d| local_day_start_ms(d as i32, offset)),
        DateFormat::EpochMillis => number(value),
        DateFormat::LocalDate => value.as_str().and_then(|t| local_text(t, offset)),
    }
}

/// The calendar year of a date the vendor wrote.
pub fn year_of(ms: i64, offset: i32) -> i32 {
    civil_from_days(local_day(ms, offset)).0
}

/// Day number of the first of January of `year`.
pub fn year_start_day(year: i32) -> i32 {
    days_from_civil(year, 1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_round_trips() {
        let ms = 1_735_803_045_000; // 2025-01-02T07:30:45Z = 15:30:45 in Beijing
        for format in [
            TimestampFormat::EpochMillis,
            TimestampFormat::EpochMicros,
            TimestampFormat::EpochNanos,
            TimestampFormat::LocalMillis,
            TimestampFormat::LocalMicros,
            TimestampFormat::LocalNanos,
            TimestampFormat::ZonedText,
            TimestampFormat::LocalDatetime,
        ] {
            let written = write_timestamp(ms, format, 480);
            assert_eq!(
                read_timestamp(&written, format, 480),
                Some(ms),
                "{format:?}"
            );
        }
        assert_eq!(
            write_timestamp(ms, TimestampFormat::LocalDatetime, 480),
            Value::from("2025-01-02 15:30:45")
        );
        for format in [
            DateFormat::EpochDays,
            DateFormat::EpochMillis,
            DateFormat::LocalDate,
        ] {
            let written = write_date(ms, format, 480);
            let back = read_date(&written, format, 480).unwrap();
            assert_eq!(local_day(back, 480), local_day(ms, 480), "{format:?}");
        }
    }

    #[test]
    fn debezium_temporal_values_read_as_documented() {
        // 15:30:45 in Beijing on 2025-01-02 (07:30:45Z), as each connector writes it by default.
        let ms = 1_735_803_045_000;
        let wall = 1_735_831_845_000i64; // the local wall clock counted as if UTC
        let cases = [
            (Value::from(wall), TimestampFormat::LocalMillis), // MySQL DATETIME, Oracle DATE
            (Value::from(wall * 1_000), TimestampFormat::LocalMicros), // PostgreSQL timestamp
            (Value::from(wall * 1_000_000), TimestampFormat::LocalNanos), // SQL Server datetime2(7)
            (Value::from(ms), TimestampFormat::EpochMillis),   // a database that keeps UTC
            (
                Value::from("2025-01-02T07:30:45Z"),
                TimestampFormat::ZonedText,
            ), // MySQL TIMESTAMP
            (
                Value::from("2025-01-02T15:30:45+08:00"),
                TimestampFormat::ZonedText,
            ),
            (
                Value::from("2025-01-02T02:30:45-05:00"),
                TimestampFormat::ZonedText,
            ),
        ];
        for (value, format) in cases {
            assert_eq!(
                read_timestamp(&value, format, 480),
                Some(ms),
                "{value} {format:?}"
            );
        }
        let fraction = Value::from("2025-01-02T07:30:45.123456Z"); // PostgreSQL timestamptz
        assert_eq!(
            read_timestamp(&fraction, TimestampFormat::ZonedText, 480),
            Some(ms + 123)
        );
        for bad in [
            "2025-01-02T07:30:45",
            "2025-01-02T07:30:45+0800",
            "yesterday",
            "2025-01-02T07:30:45.王王王Z",
            "2025-01-02T07:30:45.éééZ",
            "2025-01-02T07:30:45.Z",
            "王王王王王王王王",
        ] {
            let value = Value::from(bad);
            assert_eq!(
                read_timestamp(&value, TimestampFormat::ZonedText, 480),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn unreadable_values_are_none() {
        assert_eq!(
            read_timestamp(&Value::Null, TimestampFormat::EpochMillis, 480),
            None
        );
        assert_eq!(
            read_timestamp(
                &Value::from("yesterday"),
                TimestampFormat::LocalDatetime,
                480
            ),
            None
        );
        assert_eq!(
            read_timestamp(
                &Value::from("2025-02-30 10:00:00"),
                TimestampFormat::LocalDatetime,
                480
            ),
            None
        );
        assert_eq!(
            read_timestamp(
                &Value::from("2025-01-02 25:00:00"),
                TimestampFormat::LocalDatetime,
                480
            ),
            None
        );
        assert_eq!(
            read_timestamp(
                &Value::from("1735803045000"),
                TimestampFormat::EpochMillis,
                480
            ),
            Some(1_735_803_045_000)
        );
        assert_eq!(
            read_date(&Value::from(true), DateFormat::EpochDays, 480),
            None
        );
    }
}
