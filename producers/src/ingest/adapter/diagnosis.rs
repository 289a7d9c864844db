//! Diagnoses: ICD-10 codes, or local codes mapped through the hospital's code table.

use vigil_schemas::{Diagnosis, Payload};

use super::reason::{reject, Reason, Reject};
use super::values::{shown, valid_icd10};
use super::{Fact, RowReader};
use crate::edge::shapes::decode;
use crate::edge::HospitalProfile;

/// The ICD-10 code of a diagnosis: as written, or (a `local` code) through the hospital's code
/// table; whatever door it came through, it must look like ICD-10.
pub(crate) fn icd10_of(
    profile: &HospitalProfile,
    code: String,
    local: bool,
) -> Result<String, Reject> {
    let icd10 = if local {
        profile.codes.diagnosis.get(&code).cloned().ok_or_else(|| {
            reject(
                Reason::UnknownLocalCode,
                format!(
                    "diagnosis code {} has no ICD-10 mapping for {}",
                    shown(&code),
                    profile.id
                ),
            )
        })?
    } else {
        code
    };
    if !valid_icd10(&icd10) {
        return Err(reject(
            Reason::InvalidCode,
            format!("{} is not an ICD-10 code", shown(&icd10)),
        ));
    }
    Ok(icd10)
}

pub(super) fn read(r: &RowReader<'_>) -> Result<Fact, Reject> {
    let d = &r.vendor().diagnosis;
    let code = r.text(&d.code);
    let local = !d.code_system.is_empty() && r.text(&d.code_system).eq_ignore_ascii_case("LOCAL");
    let icd10 = icd10_of(r.profile, code, local)?;
    let encounter = Some(r.text(&d.encounter)).filter(|s| !s.is_empty());
    let diagnosis = Diagnosis {
        icd10,
        is_primary: decode(&d.codes.primary, &r.text(&d.primary)) == Some("yes"),
        department_code: r.text(&d.department),
        encounter_id: encounter,
    };
    Ok(Fact::new(Payload::Diagnosis(diagnosis), r.time(&d.time)?))
}
