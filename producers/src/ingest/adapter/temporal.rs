//! Temporal columns as the Connect schema types them, when the connector has schemas enabled:
//! `io.debezium.time.Timestamp`, `MicroTimestamp` and `NanoTimestamp` (the wall clock counted as
//! if UTC), `ZonedTimestamp` (ISO-8601 text with its offset), `Date` (days since the epoch), and
//! Kafka Connect's own `Timestamp` and `Date` (`time.precision.mode = connect`). Without
//! schemas the vendor shape's formats apply. Whether a wall clock is local time or UTC is the
//! database's convention, which only the vendor shape can say.

use std::collections::BTreeMap;

use serde_json::Value;

use super::values::column_schemas;
use crate::edge::shapes::TimestampFormat;

/// How one temporal column is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnTime {
    Instant(TimestampFormat),
    /// Days since the epoch (a calendar date).
    Days,
}

/// The temporal columns of an event's row image, by column, from its Connect schema.
pub fn column_times(
    event: &Value,
    image: &str,
    vendor: TimestampFormat,
) -> BTreeMap<String, ColumnTime> {
    let local = vendor.keeps_local_time();
    let pick =
        |local_form, utc_form| ColumnTime::Instant(if local { local_form } else { utc_form });
    column_schemas(event, image)
        .filter_map(|field| {
            let column = field.get("field").and_then(Value::as_str)?;
            let time = match field.get("name").and_then(Value::as_str)? {
                "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp" => {
                    pick(TimestampFormat::LocalMillis, TimestampFormat::EpochMillis)
                }
                "io.debezium.time.MicroTimestamp" => {
                    pick(TimestampFormat::LocalMicros, TimestampFormat::EpochMicros)
                }
                "io.debezium.time.NanoTimestamp" => {
                    pick(TimestampFormat::LocalNanos, TimestampFormat::EpochNanos)
                }
                "io.debezium.time.ZonedTimestamp" => {
                    ColumnTime::Instant(TimestampFormat::ZonedText)
                }
                "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => ColumnTime::Days,
                _ => return None,
            };
            Some((column.to_string(), time))
        })
        .collect()
}
