//! Reading one column of a row: text, numbers, plausible clinical values, codes fit to show.

use serde_json::{Map, Value};
use vigil_schemas::terminology::Observation;

use super::reason::{reject, Reason, Reject};

/// A row image of a change event.
pub type Row = Map<String, Value>;

/// The Kafka Connect schemas of the columns of a row image (`before` or `after`), when the
/// connector has schemas enabled: each with `field` (the column) and `name` (its logical type).
pub fn column_schemas<'a>(event: &'a Value, image: &str) -> impl Iterator<Item = &'a Value> {
    let image = image.to_string();
    event
        .get("schema")
        .and_then(|v| v.get("fields"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |f| f.get("field").and_then(Value::as_str) == Some(image.as_str()))
        .filter_map(|f| f.get("fields").and_then(Value::as_array))
        .flatten()
}

/// A column as trimmed text ("" when missing or null).
pub fn text(row: &Row, column: &str) -> String {
    match row.get(column) {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A numeric column: a JSON number or numeric text. "NaN", "inf" and the like are not numbers
/// a clinician wrote, whatever `f64::from_str` accepts.
pub fn number(row: &Row, column: &str) -> Result<Option<f64>, Reject> {
    let parsed = match row.get(column) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match parsed {
        Some(value) if value.is_finite() => Ok(Some(value)),
        _ => Err(reject(
            Reason::NonNumericResult,
            format!("{column} is not a finite number"),
        )),
    }
}

/// A code value as it may appear in a reason detail: short and code-shaped, so it cannot be a
/// name or an identity number; anything else is described, not shown.
pub fn shown(code: &str) -> String {
    if is_code_shaped(code) {
        format!("'{code}'")
    } else {
        "(not code-shaped, not shown)".to_string()
    }
}

/// Short, of code characters, and with too few digits to be an identity or phone number.
pub fn is_code_shaped(code: &str) -> bool {
    code.len() <= 20
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '%'))
        && code.chars().filter(char::is_ascii_digit).count() < 11
}

/// Like [`is_code_shaped`], for units: UCUM also writes braces, brackets and powers
/// ("mL/min/{1.73_m2}", "mm[Hg]", "10*9/L").
pub fn is_unit_shaped(unit: &str) -> bool {
    unit.len() <= 24
        && unit.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '.' | '_' | '-' | '/' | '%' | '{' | '}' | '[' | ']' | '*' | '^' | 'µ'
                )
        })
        && unit.chars().filter(char::is_ascii_digit).count() < 11
}

pub fn plausible(concept: Observation, value: f64, what: &str) -> Result<f64, Reject> {
    if concept.is_plausible(value) {
        return Ok(value);
    }
    let (low, high) = concept.plausible_range();
    Err(reject(
        Reason::ValueOutOfRange,
        format!("{what} is outside {low}..{high} {}", concept.unit()),
    ))
}

/// A reading's systolic and diastolic pressure (either may be missing); systolic must be above
/// diastolic when both are there.
pub fn blood_pressure(
    row: &Row,
    systolic_column: &str,
    diastolic_column: &str,
) -> Result<(Option<f64>, Option<f64>), Reject> {
    let systolic = observation(row, systolic_column, Observation::Systolic)?;
    let diastolic = observation(row, diastolic_column, Observation::Diastolic)?;
    if let (Some(s), Some(d)) = (systolic, diastolic) {
        if s <= d {
            return Err(reject(
                Reason::ValueOutOfRange,
                format!("{systolic_column} is not above {diastolic_column}"),
            ));
        }
    }
    Ok((systolic, diastolic))
}

/// An optional column holding an observation in its canonical unit, checked for plausibility.
pub fn observation(row: &Row, column: &str, concept: Observation) -> Result<Option<f64>, Reject> {
    number(row, column)?
        .map(|value| plausible(concept, value, column))
        .transpose()
}

/// An optional column holding a measurement within [low, high].
pub fn within(row: &Row, column: &str, low: f64, high: f64) -> Result<Option<f64>, Reject> {
    match number(row, column)? {
        Some(value) if !(low..=high).contains(&value) => Err(reject(
            Reason::ValueOutOfRange,
            format!("{column} is outside {low}..{high}"),
        )),
        other => Ok(other),
    }
}

/// A plausible ICD-10 code: a letter, two digits, optionally a dot and more characters.
pub fn valid_icd10(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1].is_ascii_digit() && b[2].is_ascii_digit()
}
