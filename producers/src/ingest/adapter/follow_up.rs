//! The chronic-disease programme's follow-up forms (随访).

use vigil_schemas::terminology::Observation;
use vigil_schemas::{Condition, FollowUpVisit, Payload, VisitMode};

use super::reason::{reject, Reason, Reject};
use super::values::{blood_pressure, observation, shown};
use super::{Fact, RowReader};
use crate::edge::shapes::decode;

pub(super) fn read(r: &RowReader<'_>) -> Result<Fact, Reject> {
    let f = &r.vendor().follow_up;
    let condition = match decode(&f.codes.program, &r.text(&f.program)) {
        Some("hypertension") => Condition::Hypertension,
        Some("diabetes") => Condition::Diabetes,
        _ => {
            return Err(reject(
                Reason::InvalidCode,
                format!(
                    "{} {} is not one of the vendor's programmes",
                    f.program,
                    shown(&r.text(&f.program))
                ),
            ))
        }
    };
    let visit_mode = match decode(&f.codes.mode, &r.text(&f.mode)) {
        Some("home") => VisitMode::Home,
        Some("phone") => VisitMode::Phone,
        Some("online") => VisitMode::Online,
        Some("clinic") => VisitMode::Clinic,
        _ => {
            return Err(reject(
                Reason::InvalidCode,
                format!(
                    "{} {} is not one of the vendor's follow-up modes",
                    f.mode,
                    shown(&r.text(&f.mode))
                ),
            ))
        }
    };
    let (systolic, diastolic) = blood_pressure(r.row, &f.systolic, &f.diastolic)?;
    let visit = FollowUpVisit {
        condition,
        visit_mode,
        systolic_mmhg: systolic,
        diastolic_mmhg: diastolic,
        fasting_glucose_mmol_l: observation(
            r.row,
            &f.fasting_glucose,
            Observation::FastingGlucose,
        )?,
        hba1c_percent: observation(r.row, &f.hba1c, Observation::Hba1c)?,
        next_visit_time_ms: r.date(&f.next_visit),
        clinician_id: r.text(&f.clinician),
    };
    Ok(Fact::new(Payload::FollowUpVisit(visit), r.time(&f.time)?))
}
