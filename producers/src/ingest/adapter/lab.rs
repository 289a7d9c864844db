//! Laboratory results: local codes to LOINC, values to the canonical unit.

use vigil_schemas::terminology::Observation;
use vigil_schemas::{LabResult, Payload};

use super::reason::{reject, Reason, Reject};
use super::values::{number, plausible, shown};
use super::{Fact, RowReader};

pub(super) fn read(r: &RowReader<'_>) -> Result<Fact, Reject> {
    let l = &r.vendor().lab;
    let code = r.text(&l.code);
    let mapped = r.profile.codes.lab.get(&code).ok_or_else(|| {
        reject(
            Reason::UnknownLocalCode,
            format!(
                "lab code {} has no LOINC mapping for {}",
                shown(&code),
                r.profile.id
            ),
        )
    })?;
    let value = number(r.row, &l.value)?.ok_or_else(|| {
        reject(
            Reason::MissingField,
            format!("{} (the result) is missing", l.value),
        )
    })?;
    // The unit on the row wins (labs change units); the code table's is the default.
    let reported_unit = Some(r.text(&l.unit))
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| mapped.unit.clone());
    let at = r.time(&l.time)?;
    let lab = match Observation::from_loinc(&mapped.loinc) {
        Some(concept) => {
            let canonical = concept.to_canonical(value, &reported_unit).ok_or_else(|| {
                reject(
                    Reason::UnexpectedUnit,
                    format!(
                        "unit {} does not fit {} (lab code {})",
                        shown(&reported_unit),
                        mapped.loinc,
                        shown(&code)
                    ),
                )
            })?;
            LabResult {
                loinc: concept.loinc().into(),
                value: plausible(concept, canonical, &l.value)?,
                unit: concept.unit().into(),
                local_code: code,
                encounter_id: None,
            }
        }
        None => LabResult {
            loinc: mapped.loinc.clone(),
            value,
            unit: reported_unit,
            local_code: code,
            encounter_id: None,
        },
    };
    Ok(Fact::new(Payload::LabResult(lab), at))
}
