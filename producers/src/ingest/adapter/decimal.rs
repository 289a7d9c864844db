//! DECIMAL and NUMERIC columns as Debezium writes them by default (`decimal.handling.mode =
//! precise`): base64 of the big-endian two's-complement unscaled integer, with the scale in the
//! Kafka Connect schema (`org.apache.kafka.connect.data.Decimal`, when schemas are enabled) or
//! declared by the vendor shape (when they are not); PostgreSQL's NUMERIC without a scale comes
//! as `io.debezium.data.VariableScaleDecimal`, an object of scale and value. The other modes
//! (`double`, `string`) arrive as numbers or numeric text and need nothing here.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

use super::values::{column_schemas, Row};

/// Scales of the decimal columns of an event's row image, from its Connect schema, over the
/// vendor's declared ones.
pub fn scales(
    event: &Value,
    image: &str,
    declared: &BTreeMap<String, u32>,
) -> BTreeMap<String, u32> {
    let mut scales = declared.clone();
    for field in column_schemas(event, image) {
        let is_decimal = field.get("name").and_then(Value::as_str)
            == Some("org.apache.kafka.connect.data.Decimal");
        let column = field.get("field").and_then(Value::as_str);
        let scale = field
            .get("parameters")
            .and_then(|v| v.get("scale"))
            .and_then(|s| s.as_str().and_then(|t| t.parse().ok()).or(s.as_u64()))
            .and_then(|s| u32::try_from(s).ok());
        if let (true, Some(column), Some(scale)) = (is_decimal, column, scale) {
            scales.insert(column.to_string(), scale);
        }
    }
    scales
}

/// The row with its decimal columns as JSON numbers, or None when nothing needed decoding. A
/// value that does not decode is left as it is, for the column's reader to reject.
pub fn normalise(row: &Row, scales: &BTreeMap<String, u32>) -> Option<Row> {
    let mut changed: Option<Row> = None;
    for (column, value) in row {
        let decoded = match value {
            Value::String(text) => scales.get(column).and_then(|s| decode(text, *s)),
            Value::Object(variable) => variable_scale(variable),
            _ => None,
        };
        if let Some(number) = decoded.and_then(serde_json::Number::from_f64) {
            changed
                .get_or_insert_with(|| row.clone())
                .insert(column.clone(), Value::Number(number));
        }
    }
    changed
}

/// `io.debezium.data.VariableScaleDecimal`: `{"scale": s, "value": "<base64>"}`.
fn variable_scale(object: &serde_json::Map<String, Value>) -> Option<f64> {
    let scale = u32::try_from(object.get("scale")?.as_u64()?).ok()?;
    decode(object.get("value")?.as_str()?, scale)
}

/// The decimal that base64 `text` (big-endian two's-complement unscaled integer) encodes.
pub fn decode(text: &str, scale: u32) -> Option<f64> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    if bytes.is_empty() || bytes.len() > 16 || scale > 38 {
        return None;
    }
    // Sign-extend into 128 bits.
    let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0x00 };
    let mut wide = [fill; 16];
    wide[16 - bytes.len()..].copy_from_slice(&bytes);
    let unscaled = i128::from_be_bytes(wide);
    Some(unscaled as f64 / 10f64.powi(scale as i32))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unscaled_big_endian_bytes_decode_with_their_scale() {
        // 7.90 at scale 2 is 790 = 0x0316; -5.5 at scale 1 is -55 = 0xC9.
        assert_eq!(decode("AxY=", 2), Some(7.9));
        assert_eq!(decode("yQ==", 1), Some(-5.5));
        assert_eq!(decode("AA==", 3), Some(0.0));
        assert_eq!(decode("not base64!", 2), None);
        assert_eq!(decode("", 2), None);
    }

    #[test]
    fn scales_come_from_the_connect_schema_over_the_vendor_shape() {
        let event = json!({"schema": {"type": "struct", "fields": [
            {"field": "before", "type": "struct", "fields": []},
            {"field": "after", "type": "struct", "fields": [
                {"field": "jg", "type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                 "parameters": {"scale": "2", "connect.decimal.precision": "10"}},
                {"field": "dw", "type": "string"}]}]}});
        let declared = BTreeMap::from([("jg".to_string(), 1), ("jl".to_string(), 3)]);
        let scales = scales(&event, "after", &declared);
        assert_eq!(scales.get("jg"), Some(&2));
        assert_eq!(scales.get("jl"), Some(&3));
        assert_eq!(scales.get("dw"), None);
    }

    #[test]
    fn rows_are_normalised_only_where_a_decimal_was_sent() {
        let row = json!({"jg": "AxY=", "dw": "mmol/L", "ts": 30,
                         "v": {"scale": 1, "value": "yQ=="}});
        let row = row.as_object().unwrap().clone();
        let scales = BTreeMap::from([("jg".to_string(), 2)]);
        let normalised = normalise(&row, &scales).unwrap();
        assert_eq!(normalised["jg"], json!(7.9));
        assert_eq!(normalised["v"], json!(-5.5));
        assert_eq!(normalised["dw"], json!("mmol/L"));
        let plain = json!({"jg": 7.9}).as_object().unwrap().clone();
        assert!(normalise(&plain, &scales).is_none());
    }
}
