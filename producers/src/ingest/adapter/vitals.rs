//! Vital signs: blood pressure, heart rate, weight, height.

use vigil_schemas::{Payload, VitalSign};

use super::reason::Reject;
use super::values::{blood_pressure, within};
use super::{Fact, RowReader};

pub(super) fn read(r: &RowReader<'_>) -> Result<Fact, Reject> {
    let v = &r.vendor().vitals;
    let (systolic, diastolic) = blood_pressure(r.row, &v.systolic, &v.diastolic)?;
    let vitals = VitalSign {
        systolic_mmhg: systolic,
        diastolic_mmhg: diastolic,
        heart_rate_bpm: within(r.row, &v.heart_rate, 20.0, 250.0)?,
        weight_kg: within(r.row, &v.weight, 2.0, 400.0)?,
        height_cm: within(r.row, &v.height, 40.0, 250.0)?,
        encounter_id: None,
    };
    Ok(Fact::new(Payload::VitalSign(vitals), r.time(&v.time)?))
}
