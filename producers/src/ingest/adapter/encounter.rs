//! Encounters: type, department, start and end.

use vigil_schemas::{Encounter, EncounterType, Payload};

use super::reason::{reject, Reason, Reject};
use super::values::shown;
use super::{Fact, RowReader};
use crate::edge::shapes::decode;

pub(super) fn read(r: &RowReader<'_>) -> Result<Fact, Reject> {
    let e = &r.vendor().encounter;
    let encounter_type = match decode(&e.codes.kind, &r.text(&e.kind)) {
        Some("inpatient") => EncounterType::Inpatient,
        Some("emergency") => EncounterType::Emergency,
        Some("home_visit") => EncounterType::HomeVisit,
        Some("outpatient") => EncounterType::Outpatient,
        _ => {
            return Err(reject(
                Reason::InvalidCode,
                format!(
                    "{} {} is not one of the vendor's encounter types",
                    e.kind,
                    shown(&r.text(&e.kind))
                ),
            ))
        }
    };
    let start = r.time(&e.start)?;
    let encounter = Encounter {
        encounter_type,
        department_code: r.text(&e.department),
        start_time_ms: start,
        end_time_ms: r.optional_time(&e.end)?,
    };
    Ok(Fact::new(Payload::Encounter(encounter), start))
}
