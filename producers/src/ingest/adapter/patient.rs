//! The patient master: sex, birth year, region, programme enrolment, death.

use vigil_schemas::{Condition, PatientRegistration, Payload, ProgrammeEnrolment, Sex};

use super::reason::{reject, Reason, Reject};
use super::{Fact, RowReader};
use crate::edge::shapes::decode;
use crate::edge::time::year_of;

pub(super) fn read(r: &RowReader<'_>) -> Result<Fact, Reject> {
    let p = &r.vendor().patient;
    let sex = match decode(&p.codes.sex, &r.text(&p.sex)) {
        Some("male") => Sex::Male,
        Some("female") => Sex::Female,
        _ => Sex::Unknown,
    };
    let birth = r.date(&p.birth_date).ok_or_else(|| {
        reject(
            Reason::MissingField,
            format!("{} (birth date) is missing or unreadable", p.birth_date),
        )
    })?;
    let birth_year = year_of(birth, r.utc_offset_minutes);
    if !(1900..=year_of(r.now_ms, r.utc_offset_minutes)).contains(&birth_year) {
        return Err(reject(
            Reason::InvalidDate,
            format!("{} gives an implausible birth year", p.birth_date),
        ));
    }
    let mut programmes = Vec::new();
    for (column, condition) in [
        (&p.hypertension_enrolled, Condition::Hypertension),
        (&p.diabetes_enrolled, Condition::Diabetes),
    ] {
        if let Some(at) = r.optional_time(column)? {
            programmes.push(ProgrammeEnrolment {
                condition,
                enrolled_time_ms: at,
            });
        }
    }
    let registration = PatientRegistration {
        sex,
        birth_year,
        region_code: r.text(&p.region),
        programmes,
        death_time_ms: r.optional_time(&p.death)?,
    };
    Ok(Fact::new(
        Payload::PatientRegistration(registration),
        r.change_ms,
    ))
}
