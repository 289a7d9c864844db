//! What a dead letter keeps of a rejected change event: an allow-list, not a scrub.
//!
//! Redaction cannot depend on knowing the row's shape (a row of another vendor's table, a JSON
//! array, a string): whatever is not known to be safe is left out. Kept are the envelope fields
//! that say where the change came from, and the columns the vendor shape declares clinical for
//! that table; of those, a value is copied only when its form cannot carry a name, an address or
//! an identity number (numbers, and short code- or date-shaped text without long digit runs).

use serde_json::{Map, Value};

/// Longest text value copied.
const MAX_VALUE_CHARS: usize = 24;

/// Envelope fields of a Debezium `source` block that identify the change, not the person.
const SOURCE_FIELDS: [&str; 8] = [
    "connector",
    "name",
    "db",
    "schema",
    "table",
    "ts_ms",
    "snapshot",
    "version",
];

/// Whether a run of 11 or more digits occurs (an ID card or phone number).
fn has_long_digit_run(text: &str) -> bool {
    let mut run = 0;
    for c in text.chars() {
        if c.is_ascii_digit() {
            run += 1;
            if run >= 11 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// A code (`GLU01`, `I10`, `mmol/L`, `E11.900`) or a date/time (`2025-03-01 08:30:00`).
fn safe_text(text: &str) -> bool {
    let code_like = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '%' | '^'));
    let time_like = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '-' | ':' | ' ' | 'T' | 'Z' | '.' | '+'));
    text.len() <= MAX_VALUE_CHARS && (code_like || time_like) && !has_long_digit_run(text)
}

fn safe_value(value: &Value) -> Value {
    match value {
        Value::Null | Value::Bool(_) => value.clone(),
        Value::Number(n) if !has_long_digit_run(&n.to_string()) => value.clone(),
        Value::String(s) if safe_text(s) => value.clone(),
        Value::String(s) => Value::from(format!("<withheld: {} chars>", s.chars().count())),
        _ => Value::from("<withheld>"),
    }
}

fn pick(map: &Map<String, Value>, keys: &[&str]) -> Map<String, Value> {
    keys.iter()
        .filter_map(|k| map.get(*k).map(|v| (k.to_string(), safe_value(v))))
        .collect()
}

/// The copy of a parsed change event for its dead letter. `columns`: the row columns that may
/// be shown (empty when the hospital or table is unknown).
pub fn safe_copy(value: &Value, columns: &[&str]) -> String {
    // With Kafka Connect's schemas enabled the event sits under "payload".
    let payload = match value.get("payload") {
        Some(p) if value.get("schema").is_some() => p,
        _ => value,
    };
    let Some(event) = payload.as_object() else {
        let kind = match payload {
            Value::Array(_) => "array",
            Value::String(_) => "string",
            Value::Number(_) => "number",
            Value::Bool(_) => "boolean",
            _ => "value",
        };
        return format!("<a JSON {kind}, not a change event: withheld>");
    };
    let mut copy = pick(event, &["op", "ts_ms"]);
    if let Some(source) = event.get("source").and_then(Value::as_object) {
        copy.insert("source".into(), Value::Object(pick(source, &SOURCE_FIELDS)));
    }
    for image in ["before", "after"] {
        match event.get(image) {
            Some(Value::Object(row)) => {
                let mut kept = pick(row, columns);
                let withheld = row.len() - kept.len();
                if withheld > 0 {
                    kept.insert("<other columns withheld>".into(), Value::from(withheld));
                }
                copy.insert(image.into(), Value::Object(kept));
            }
            Some(Value::Null) => {
                copy.insert(image.into(), Value::Null);
            }
            Some(_) => {
                copy.insert(image.into(), Value::from("<withheld>"));
            }
            None => {}
        }
    }
    Value::Object(copy).to_string()
}

/// A text value as a dead letter may keep it: as is when it is code- or time-shaped, else its
/// length only.
pub fn safe_text_value(text: &str) -> Value {
    safe_value(&Value::from(text))
}

/// What is kept of input that is not even JSON: its size only. Its content could hold anything.
pub fn withheld(bytes: &[u8]) -> String {
    format!("<unparseable input of {} bytes withheld>", bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRETS: [&str; 5] = [
        "11010519491231002X",
        "王芳",
        "13912345678",
        "何玉兰",
        "北京市朝阳区",
    ];

    fn assert_clean(text: &str) {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} leaked into {text}");
        }
    }

    #[test]
    fn only_clinical_columns_in_safe_forms_are_kept() {
        let value = serde_json::json!({
            "schema": {"type": "struct"},
            "payload": {
                "op": "c",
                "after": {"sfzh": "11010519491231002X", "brxm": "王芳", "jg": "7.9",
                          "dw": "mmol/L", "lx": "patient 何玉兰", "dh": 13912345678u64,
                          "sj": "2025-03-01 08:30:00"},
                "before": null,
                "source": {"name": "his-h0001", "table": "lis_result", "ts_ms": 1, "file": "x"}
            }
        });
        let text = safe_copy(&value, &["jg", "dw", "lx", "dh", "sj"]);
        assert_clean(&text);
        assert!(!text.contains("schema"));
        for kept in [
            "7.9",
            "mmol/L",
            "his-h0001",
            "lis_result",
            "2025-03-01 08:30:00",
        ] {
            assert!(text.contains(kept), "{kept} missing from {text}");
        }
        assert!(text.contains("<withheld: 11 chars>"));
    }

    #[test]
    fn rows_of_unknown_shape_and_non_objects_keep_nothing_of_the_row() {
        // A row in another vendor's table shape: no column is known, so none is kept.
        let other = serde_json::json!({"op": "c", "after": {"xm": "王芳", "zjhm": "11010519491231002X",
            "addr": "北京市朝阳区", "tel": "13912345678"}, "source": {"name": "unknown"}});
        let text = safe_copy(&other, &[]);
        assert_clean(&text);
        assert!(text.contains("\"<other columns withheld>\":4"));
        for value in [
            serde_json::json!(["王芳", "11010519491231002X"]),
            serde_json::json!("何玉兰 13912345678"),
            serde_json::json!({"op": {"nested": "王芳"}, "source": "何玉兰"}),
        ] {
            assert_clean(&safe_copy(&value, &["xm"]));
        }
        assert_eq!(withheld(b"{{{"), "<unparseable input of 3 bytes withheld>");
    }
}
