//! Prescriptions: local drug codes to ATC (an unmapped drug is accepted and counted), doses.

use vigil_schemas::{Payload, Prescription};

use super::reason::{reject, Reason, Reject};
use super::values::number;
use super::{Fact, RowReader};

pub(super) fn read(r: &RowReader<'_>) -> Result<Fact, Reject> {
    let p = &r.vendor().prescription;
    let drug = r.text(&p.drug);
    let atc = r.profile.codes.drug.get(&drug).cloned().unwrap_or_default();
    let dose = number(r.row, &p.dose)?.ok_or_else(|| {
        reject(
            Reason::MissingField,
            format!("{} (the dose) is missing", p.dose),
        )
    })?;
    let days = number(r.row, &p.days)?.unwrap_or(0.0);
    let unmapped = atc.is_empty().then_some("drug_code");
    let prescription = Prescription {
        drug_code: drug,
        atc_code: atc,
        dose,
        dose_unit: r.text(&p.dose_unit),
        frequency: r.text(&p.frequency),
        days_supply: days.clamp(0.0, 3650.0) as i32,
        encounter_id: None,
    };
    let mut fact = Fact::new(Payload::Prescription(prescription), r.time(&p.time)?);
    fact.unmapped = unmapped;
    Ok(fact)
}
