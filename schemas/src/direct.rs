//! A decoder of `ClinicalEvent` for the current writer schema that reads the Avro binary
//! encoding straight into the Rust record: no schema walk, no serde visitor per field. The
//! processor decodes every event it reads, and apache-avro's schema-aware serde took about as
//! long as the clinical engine itself (BENCHMARKS.md). Older writer schemas still go through
//! apache-avro. A differential test holds the two to the same answer, value or error, for every
//! example and for mutated bytes. Encoders of `ClinicalEvent` (the edge writes one per change)
//! and `PatientStatus` (the processor, one per changed period) write apache-avro's bytes
//! exactly, held to them by the same test.
//!
//! The Avro specification's binary encoding: `int`/`long` are zig-zag varints (at most ten
//! bytes), `string` a length then UTF-8 bytes, `double` eight little-endian bytes, `boolean`
//! one byte 0 or 1, enums and unions an index, arrays blocks of items ended by a zero count (a
//! negative count is followed by the block's size in bytes).

use crate::records::{
    ClinicalEvent, Condition, Diagnosis, Encounter, EncounterType, FollowUpVisit, LabResult,
    Operation, PatientMerge, PatientRegistration, PatientStatus, Payload, PeriodKind, Prescription,
    ProgrammeEnrolment, RiskLevel, Sex, SourcePosition, VisitMode, VitalSign,
};

/// Why bytes are not a datum of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformation {
    #[error("the bytes end inside a value")]
    Truncated,
    #[error("a variable-length integer runs past ten bytes")]
    VarintTooLong,
    #[error("an int is out of the 32-bit range")]
    IntOutOfRange,
    #[error("a length is negative or larger than the bytes left")]
    BadLength,
    #[error("a string is not UTF-8")]
    NotUtf8,
    #[error("a boolean is neither 0 nor 1")]
    BadBoolean,
    #[error("an enum symbol index is out of range")]
    BadEnumIndex,
    #[error("a union branch index is out of range")]
    BadUnionIndex,
}

type Read<T> = Result<T, Malformation>;

/// A cursor over one datum's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Read<u8> {
        let (&first, rest) = self.bytes.split_first().ok_or(Malformation::Truncated)?;
        self.bytes = rest;
        Ok(first)
    }

    fn take(&mut self, n: usize) -> Read<&'a [u8]> {
        if n > self.bytes.len() {
            return Err(Malformation::Truncated);
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    fn long(&mut self) -> Read<i64> {
        let mut value = 0u64;
        for shift in 0..10 {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7F) << (shift * 7);
            if byte & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(Malformation::VarintTooLong)
    }

    fn int(&mut self) -> Read<i32> {
        i32::try_from(self.long()?).map_err(|_| Malformation::IntOutOfRange)
    }

    fn string(&mut self) -> Read<String> {
        let len = usize::try_from(self.long()?).map_err(|_| Malformation::BadLength)?;
        if len > self.bytes.len() {
            return Err(Malformation::BadLength);
        }
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| Malformation::NotUtf8)
    }

    fn double(&mut self) -> Read<f64> {
        let bytes = self.take(8)?;
        let mut le = [0u8; 8];
        le.copy_from_slice(bytes);
        Ok(f64::from_le_bytes(le))
    }

    fn boolean(&mut self) -> Read<bool> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Malformation::BadBoolean),
        }
    }

    /// An enum's symbol index, mapped through `symbols` (schema order).
    fn symbol<T: Copy>(&mut self, symbols: &[T]) -> Read<T> {
        let index = self.long()?;
        usize::try_from(index)
            .ok()
            .and_then(|i| symbols.get(i).copied())
            .ok_or(Malformation::BadEnumIndex)
    }

    /// A union's branch index, below `branches`.
    fn branch(&mut self, branches: usize) -> Read<usize> {
        let index = self.long()?;
        usize::try_from(index)
            .ok()
            .filter(|&i| i < branches)
            .ok_or(Malformation::BadUnionIndex)
    }

    /// `["null", T]`.
    fn optional<T>(&mut self, read: impl FnOnce(&mut Self) -> Read<T>) -> Read<Option<T>> {
        match self.branch(2)? {
            0 => Ok(None),
            _ => read(self).map(Some),
        }
    }

    fn array<T>(&mut self, mut read: impl FnMut(&mut Self) -> Read<T>) -> Read<Vec<T>> {
        let mut items = Vec::new();
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(items);
            }
            if count < 0 {
                self.long()?; // the block's size in bytes
            }
            for _ in 0..count.unsigned_abs() {
                items.push(read(self)?);
            }
        }
    }
}

const OPERATIONS: [Operation; 4] = [
    Operation::Create,
    Operation::Update,
    Operation::Delete,
    Operation::Snapshot,
];
const SEXES: [Sex; 3] = [Sex::Male, Sex::Female, Sex::Unknown];
const CONDITIONS: [Condition; 2] = [Condition::Hypertension, Condition::Diabetes];
const ENCOUNTER_TYPES: [EncounterType; 4] = [
    EncounterType::Outpatient,
    EncounterType::Inpatient,
    EncounterType::Emergency,
    EncounterType::HomeVisit,
];
const VISIT_MODES: [VisitMode; 4] = [
    VisitMode::Clinic,
    VisitMode::Home,
    VisitMode::Phone,
    VisitMode::Online,
];

/// Decodes one `ClinicalEvent` datum written under the current `clinical_event.avsc` (the
/// bytes after the single-object header). Bytes after the datum are ignored, as apache-avro
/// ignores them.
pub fn clinical_event(datum: &[u8]) -> Result<ClinicalEvent, Malformation> {
    let r = &mut Reader { bytes: datum };
    Ok(ClinicalEvent {
        event_id: r.string()?,
        hospital_id: r.string()?,
        source_system: r.string()?,
        operation: r.symbol(&OPERATIONS)?,
        event_time_ms: r.long()?,
        ingest_time_ms: r.long()?,
        patient_pseudonym: r.string()?,
        record_id: r.string()?,
        schema_version: r.int()?,
        payload: payload(r)?,
        source: r.optional(|r| {
            Ok(SourcePosition {
                topic: r.string()?,
                partition: r.int()?,
                offset: r.long()?,
            })
        })?,
    })
}

fn payload(r: &mut Reader<'_>) -> Read<Payload> {
    Ok(match r.branch(8)? {
        0 => Payload::PatientRegistration(PatientRegistration {
            sex: r.symbol(&SEXES)?,
            birth_year: r.int()?,
            region_code: r.string()?,
            programmes: r.array(|r| {
                Ok(ProgrammeEnrolment {
                    condition: r.symbol(&CONDITIONS)?,
                    enrolled_time_ms: r.long()?,
                })
            })?,
            death_time_ms: r.optional(Reader::long)?,
        }),
        1 => Payload::Encounter(Encounter {
            encounter_type: r.symbol(&ENCOUNTER_TYPES)?,
            department_code: r.string()?,
            start_time_ms: r.long()?,
            end_time_ms: r.optional(Reader::long)?,
        }),
        2 => Payload::Diagnosis(Diagnosis {
            icd10: r.string()?,
            is_primary: r.boolean()?,
            department_code: r.string()?,
            encounter_id: r.optional(Reader::string)?,
        }),
        3 => Payload::LabResult(LabResult {
            loinc: r.string()?,
            value: r.double()?,
            unit: r.string()?,
            local_code: r.string()?,
            encounter_id: r.optional(Reader::string)?,
        }),
        4 => Payload::VitalSign(VitalSign {
            systolic_mmhg: r.optional(Reader::double)?,
            diastolic_mmhg: r.optional(Reader::double)?,
            heart_rate_bpm: r.optional(Reader::double)?,
            weight_kg: r.optional(Reader::double)?,
            height_cm: r.optional(Reader::double)?,
            encounter_id: r.optional(Reader::string)?,
        }),
        5 => Payload::Prescription(Prescription {
            drug_code: r.string()?,
            atc_code: r.string()?,
            dose: r.double()?,
            dose_unit: r.string()?,
            frequency: r.string()?,
            days_supply: r.int()?,
            encounter_id: r.optional(Reader::string)?,
        }),
        6 => Payload::FollowUpVisit(FollowUpVisit {
            condition: r.symbol(&CONDITIONS)?,
            visit_mode: r.symbol(&VISIT_MODES)?,
            systolic_mmhg: r.optional(Reader::double)?,
            diastolic_mmhg: r.optional(Reader::double)?,
            fasting_glucose_mmol_l: r.optional(Reader::double)?,
            hba1c_percent: r.optional(Reader::double)?,
            next_visit_time_ms: r.optional(Reader::long)?,
            clinician_id: r.string()?,
        }),
        _ => Payload::PatientMerge(PatientMerge {
            surviving_pseudonym: r.string()?,
        }),
    })
}

const PERIOD_KINDS: [PeriodKind; 3] = [PeriodKind::Month, PeriodKind::Quarter, PeriodKind::Year];
const RISK_LEVELS: [RiskLevel; 5] = [
    RiskLevel::NotAssessed,
    RiskLevel::Low,
    RiskLevel::Medium,
    RiskLevel::High,
    RiskLevel::VeryHigh,
];

/// Decodes one `PatientStatus` datum written under the current `patient_status.avsc`: the
/// writer reads one per changed period of every changed patient.
pub fn patient_status_from(datum: &[u8]) -> Result<PatientStatus, Malformation> {
    let r = &mut Reader { bytes: datum };
    Ok(PatientStatus {
        status_id: r.string()?,
        version: r.long()?,
        definition: r.string()?,
        patient_pseudonym: r.string()?,
        hospital_id: r.string()?,
        region_code: r.string()?,
        department_code: r.string()?,
        condition: r.symbol(&CONDITIONS)?,
        period_kind: r.symbol(&PERIOD_KINDS)?,
        period_start: r.int()?,
        managed: r.boolean()?,
        managed_since_ms: r.long()?,
        managed_days: r.int()?,
        follow_ups: r.int()?,
        follow_ups_ytd: r.int()?,
        standardised: r.boolean()?,
        controlled: r.boolean()?,
        last_follow_up_ms: r.optional(Reader::long)?,
        last_systolic_mmhg: r.optional(Reader::double)?,
        last_diastolic_mmhg: r.optional(Reader::double)?,
        last_fasting_glucose_mmol_l: r.optional(Reader::double)?,
        new_complications: r.int()?,
        has_complications: r.boolean()?,
        bp_grade: r.int()?,
        risk_level: r.symbol(&RISK_LEVELS)?,
        age_band: r.string()?,
        sex: r.symbol(&SEXES)?,
        event_time_ms: r.long()?,
    })
}

/// Appends the Avro binary encoding of a `PatientStatus` under the current
/// `patient_status.avsc` (the datum, after the single-object header): byte for byte what
/// apache-avro writes (a differential test holds it to that). The processor writes one per
/// changed period of every changed patient at each checkpoint.
pub fn patient_status(status: &PatientStatus, out: &mut Vec<u8>) {
    let w = &mut Writer { out };
    w.string(&status.status_id);
    w.long(status.version);
    w.string(&status.definition);
    w.string(&status.patient_pseudonym);
    w.string(&status.hospital_id);
    w.string(&status.region_code);
    w.string(&status.department_code);
    w.long(status.condition as i64);
    w.long(status.period_kind as i64);
    w.long(status.period_start.into());
    w.boolean(status.managed);
    w.long(status.managed_since_ms);
    w.long(status.managed_days.into());
    w.long(status.follow_ups.into());
    w.long(status.follow_ups_ytd.into());
    w.boolean(status.standardised);
    w.boolean(status.controlled);
    w.optional(status.last_follow_up_ms, Writer::long);
    w.optional(status.last_systolic_mmhg, Writer::double);
    w.optional(status.last_diastolic_mmhg, Writer::double);
    w.optional(status.last_fasting_glucose_mmol_l, Writer::double);
    w.long(status.new_complications.into());
    w.boolean(status.has_complications);
    w.long(status.bp_grade.into());
    w.long(status.risk_level as i64);
    w.string(&status.age_band);
    w.long(status.sex as i64);
    w.long(status.event_time_ms);
}

/// Appends the Avro binary encoding of a `ClinicalEvent` under the current
/// `clinical_event.avsc` (the datum, after the single-object header): byte for byte what
/// apache-avro writes (a differential test holds it to that). The edge writes one per accepted
/// change; apache-avro's schema-aware serde took about a tenth of its CPU (BENCHMARKS.md).
pub fn clinical_event_into(event: &ClinicalEvent, out: &mut Vec<u8>) {
    let w = &mut Writer { out };
    w.string(&event.event_id);
    w.string(&event.hospital_id);
    w.string(&event.source_system);
    w.symbol(&OPERATIONS, event.operation);
    w.long(event.event_time_ms);
    w.long(event.ingest_time_ms);
    w.string(&event.patient_pseudonym);
    w.string(&event.record_id);
    w.long(event.schema_version.into());
    write_payload(w, &event.payload);
    w.optional(event.source.as_ref(), |w, source| {
        w.string(&source.topic);
        w.long(source.partition.into());
        w.long(source.offset);
    });
}

/// The payload union: its branch index (schema order), then the record.
fn write_payload(w: &mut Writer<'_>, payload: &Payload) {
    let optional_text = |w: &mut Writer<'_>, text: &Option<String>| {
        w.optional(text.as_deref(), Writer::string);
    };
    match payload {
        Payload::PatientRegistration(p) => {
            w.long(0);
            w.symbol(&SEXES, p.sex);
            w.long(p.birth_year.into());
            w.string(&p.region_code);
            w.array(&p.programmes, |w, programme| {
                w.symbol(&CONDITIONS, programme.condition);
                w.long(programme.enrolled_time_ms);
            });
            w.optional(p.death_time_ms, Writer::long);
        }
        Payload::Encounter(e) => {
            w.long(1);
            w.symbol(&ENCOUNTER_TYPES, e.encounter_type);
            w.string(&e.department_code);
            w.long(e.start_time_ms);
            w.optional(e.end_time_ms, Writer::long);
        }
        Payload::Diagnosis(d) => {
            w.long(2);
            w.string(&d.icd10);
            w.boolean(d.is_primary);
            w.string(&d.department_code);
            optional_text(w, &d.encounter_id);
        }
        Payload::LabResult(l) => {
            w.long(3);
            w.string(&l.loinc);
            w.double(l.value);
            w.string(&l.unit);
            w.string(&l.local_code);
            optional_text(w, &l.encounter_id);
        }
        Payload::VitalSign(v) => {
            w.long(4);
            for measure in [
                v.systolic_mmhg,
                v.diastolic_mmhg,
                v.heart_rate_bpm,
                v.weight_kg,
                v.height_cm,
            ] {
                w.optional(measure, Writer::double);
            }
            optional_text(w, &v.encounter_id);
        }
        Payload::Prescription(p) => {
            w.long(5);
            w.string(&p.drug_code);
            w.string(&p.atc_code);
            w.double(p.dose);
            w.string(&p.dose_unit);
            w.string(&p.frequency);
            w.long(p.days_supply.into());
            optional_text(w, &p.encounter_id);
        }
        Payload::FollowUpVisit(f) => {
            w.long(6);
            w.symbol(&CONDITIONS, f.condition);
            w.symbol(&VISIT_MODES, f.visit_mode);
            for measure in [
                f.systolic_mmhg,
                f.diastolic_mmhg,
                f.fasting_glucose_mmol_l,
                f.hba1c_percent,
            ] {
                w.optional(measure, Writer::double);
            }
            w.optional(f.next_visit_time_ms, Writer::long);
            w.string(&f.clinician_id);
        }
        Payload::PatientMerge(m) => {
            w.long(7);
            w.string(&m.surviving_pseudonym);
        }
    }
}

/// Appends Avro binary values.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    /// Zig-zag, then a varint (`int`s are written the same way).
    fn long(&mut self, value: i64) {
        let mut z = ((value << 1) ^ (value >> 63)) as u64;
        while z > 0x7F {
            self.out.push((z as u8 & 0x7F) | 0x80);
            z >>= 7;
        }
        self.out.push(z as u8);
    }

    fn string(&mut self, text: &str) {
        self.long(text.len() as i64);
        self.out.extend_from_slice(text.as_bytes());
    }

    fn double(&mut self, value: f64) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    fn boolean(&mut self, value: bool) {
        self.out.push(u8::from(value));
    }

    /// An enum's symbol index in `symbols` (schema order).
    fn symbol<T: PartialEq>(&mut self, symbols: &[T], value: T) {
        let index = symbols.iter().position(|s| *s == value).unwrap_or(0);
        self.long(index as i64);
    }

    /// One block of all the items, then the end (an empty array is the end alone), as
    /// apache-avro writes arrays.
    fn array<T>(&mut self, items: &[T], mut write: impl FnMut(&mut Self, &T)) {
        if !items.is_empty() {
            self.long(items.len() as i64);
            for item in items {
                write(self, item);
            }
        }
        self.long(0);
    }

    /// `["null", T]`.
    fn optional<T>(&mut self, value: Option<T>, write: impl FnOnce(&mut Self, T)) {
        match value {
            None => self.long(0),
            Some(value) => {
                self.long(1);
                write(self, value);
            }
        }
    }
}
