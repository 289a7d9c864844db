//! Laboratory results: local codes to LOINC, values to the canonical unit.

use vigil_schemas::terminology::Observation;
use vigil_schemas::{LabResult, Payload};

use super::reason::{reject, Reason, Reject};
use super::values::{number, plausible, shown};
use super::{Fact, RowReader};
use crate::edge::HospitalProfile;

pub(super) fn read(r: &RowReader<'_>) -> Result<Fact, Reject> {
    let l = &r.vendor().lab;
    let code = r.text(&l.code);
    let value = number(r.row, &l.value)?;
    let lab = canonical_lab(r.profile, code, value, &r.text(&l.unit), &l.value)?;
    Ok(Fact::new(Payload::LabResult(lab), r.time(&l.time)?))
}

/// A hospital's result for its local `code`, in the canonical unit and checked for plausibility.
/// `unit` is the unit the result came with (empty: the code table's); `what` names the value's
/// field in a rejection. Whatever door a result comes through, it is read by this.
pub(crate) fn canonical_lab(
    profile: &HospitalProfile,
    code: String,
    value: Option<f64>,
    unit: &str,
    what: &str,
) -> Result<LabResult, Reject> {
    let mapped = profile.codes.lab.get(&code).ok_or_else(|| {
        reject(
            Reason::UnknownLocalCode,
            format!(
                "lab code {} has no LOINC mapping for {}",
                shown(&code),
                profile.id
            ),
        )
    })?;
    let value = value.ok_or_else(|| {
        reject(
            Reason::MissingField,
            format!("{what} (the result) is missing"),
        )
    })?;
    // The unit on the row wins (labs change units); the code table's is the default.
    let reported_unit = Some(unit)
        .filter(|u| !u.is_empty())
        .unwrap_or(&mapped.unit)
        .to_string();
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
                value: plausible(concept, canonical, what)?,
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
    Ok(lab)
}
