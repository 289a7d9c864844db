//! Copies of rejected input for the dead-letter topic, without what identifies a person.

use serde_json::Value;

/// Longest dead-letter copy kept.
const MAX_COPY: usize = 2_000;

/// Whether a string looks like a resident ID or a phone number: a run of 11 or more digits
/// (the 18th character of an ID may be 'X').
fn looks_identifying(text: &str) -> bool {
    let mut run = 0;
    for c in text.chars() {
        if c.is_ascii_digit() || c == 'X' || c == 'x' {
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

/// Replaces the named columns and anything that looks like an ID or phone number.
fn scrub(value: &mut Value, identifiers: &[String]) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if identifiers.iter().any(|id| id.eq_ignore_ascii_case(key)) {
                    if !inner.is_null() {
                        *inner = Value::from("<redacted>");
                    }
                } else {
                    scrub(inner, identifiers);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| scrub(v, identifiers)),
        Value::String(text) if looks_identifying(text) => *text = "<redacted>".into(),
        _ => {}
    }
}

/// A redacted, bounded copy of a parsed change event.
pub fn redacted_json(value: &Value, identifiers: &[String]) -> String {
    let mut copy = value.clone();
    // The Kafka Connect schema block says nothing about the patient and is long.
    if let Some(map) = copy.as_object_mut() {
        map.remove("schema");
    }
    scrub(&mut copy, identifiers);
    let mut text = copy.to_string();
    if text.len() > MAX_COPY {
        let mut cut = MAX_COPY;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("…<truncated>");
    }
    text
}

/// What is kept of input that is not even JSON: its size only. Its content could hold anything.
pub fn withheld(bytes: &[u8]) -> String {
    format!("<unparseable input of {} bytes withheld>", bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_columns_and_number_runs_are_removed() {
        let value = serde_json::json!({
            "schema": {"type": "struct"},
            "payload": {
                "after": {"sfzh": "11010519491231002X", "brxm": "王芳", "jg": "7.9", "note": "call 13912345678"},
                "before": null,
                "source": {"name": "his-h0001"}
            }
        });
        let text = redacted_json(&value, &["sfzh".into(), "brxm".into()]);
        assert!(!text.contains("11010519491231002X"));
        assert!(!text.contains("王芳"));
        assert!(!text.contains("13912345678"));
        assert!(!text.contains("schema"));
        assert!(text.contains("7.9") && text.contains("his-h0001"));
    }

    #[test]
    fn long_copies_are_bounded() {
        let value = serde_json::json!({ "x": "a".repeat(10_000) });
        assert!(redacted_json(&value, &[]).len() < MAX_COPY + 20);
        assert_eq!(withheld(b"{{{"), "<unparseable input of 3 bytes withheld>");
    }
}
