//! Reading and writing the ways hospital systems spell time (per vendor shape).

use serde_json::Value;
use vigil_runtime::time::{
    civil_from_days, days_from_civil, local_day, local_day_start_ms, MS_PER_DAY,
};

use super::shapes::{DateFormat, TimestampFormat};

/// An instant as the vendor writes it. `offset` is the hospital's zone, minutes east of UTC.
pub fn write_timestamp(ms: i64, format: TimestampFormat, offset: i32) -> Value {
    match format {
        TimestampFormat::EpochMillis => Value::from(ms),
        TimestampFormat::EpochMicros => Value::from(ms * 1_000),
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
    match format {
        TimestampFormat::EpochMillis => number(value),
        TimestampFormat::EpochMicros => number(value).map(|us| us.div_euclid(1_000)),
        TimestampFormat::LocalDatetime => value.as_str().and_then(|t| local_text(t, offset)),
    }
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
