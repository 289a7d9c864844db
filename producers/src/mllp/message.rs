//! One HL7 v2 message in, canonical events and reasoned refusals out.
//!
//! The sending facility (MSH-4) names the hospital in the edge catalogue; the resident identity
//! number is the PID-3 identifier of the hospital's declared type and becomes the pseudonym, as
//! at the CDC door; local codes go through the same code tables. ORU^R01 results become one
//! event per observation (blood pressure as one vital-sign reading per order); ADT A01/A04/A08
//! a registration, an encounter and its diagnoses; A02/A03 update the encounter, A11 retracts it
//! and A13 takes its discharge back; A40 merges the prior patient (MRG-1) into the message's (the
//! processor moves what it holds). A message-level fault (unparseable, unknown facility,
//! unsupported type, no valid patient) refuses the whole message; a refused observation refuses
//! only itself. Event ids derive from the message control id, so a message sent again after a
//! lost acknowledgement gives the same events, which the processor recognises.

use hl7_parser::message::{Segment, Separators};
use hl7_parser::Message;
use serde_json::{json, Value};
use vigil_runtime::time::{days_from_civil, days_in_month};
use vigil_schemas::ids::stable_id;
use vigil_schemas::terminology::Observation;
use vigil_schemas::{
    validate, ClinicalEvent, Diagnosis, Encounter, EncounterType, Operation, PatientMerge,
    PatientRegistration, Payload, Sex, VitalSign, CLINICAL_EVENT_SCHEMA_VERSION,
};

use super::ack::AckCode;
use crate::edge::{Catalog, HospitalProfile};
use crate::ingest::adapter::diagnosis::icd10_of;
use crate::ingest::adapter::lab::canonical_lab;
use crate::ingest::adapter::reason::{reject, Reject};
use crate::ingest::adapter::values::shown;
use crate::ingest::adapter::Reason;
use crate::ingest::redact::safe_text_value;
use crate::ingest::Rejection;
use crate::pseudonym::PseudonymKey;

/// What the sender's header says, echoed in the acknowledgement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    pub sending_application: String,
    pub sending_facility: String,
    pub control_id: String,
    pub message_type: String,
    pub trigger: String,
    pub version: String,
}

/// A part of a message the edge refused, and where it stands (for the ERR segment).
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub rejection: Rejection,
    /// The segment (e.g. "OBX") and its place among the message's segments (1-based); empty
    /// and 0 for the message as a whole.
    pub segment: String,
    pub sequence: usize,
}

/// A message translated: the events to produce, the parts refused, and how to acknowledge.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    pub header: Header,
    pub hospital: String,
    pub events: Vec<ClinicalEvent>,
    pub refused: Vec<Refused>,
    pub code: AckCode,
    /// What a dead letter of this message may keep: its shape and codes, no identifier.
    pub copy: String,
}

/// Settings the translation needs besides the catalogue.
pub struct Hl7Adapter<'a> {
    pub catalog: &'a Catalog,
    pub key: &'a PseudonymKey,
    /// The hospitals' time zone, minutes east of UTC (for times written without an offset).
    pub utc_offset_minutes: i32,
    /// Clinical times further ahead of this than a day are refused.
    pub now_ms: i64,
}

/// A message-level refusal: how it is acknowledged, and why.
struct Fault {
    code: AckCode,
    reject: Reject,
}

fn fault(code: AckCode, reason: Reason, detail: impl Into<String>) -> Fault {
    Fault {
        code,
        reject: reject(reason, detail),
    }
}

impl From<Reject> for Fault {
    fn from(reject: Reject) -> Self {
        Fault {
            code: AckCode::Error,
            reject,
        }
    }
}

/// One message being read: its parse, its hospital and patient, and what it became so far.
struct Reading<'a, 'm> {
    adapter: &'a Hl7Adapter<'a>,
    message: &'m Message<'m>,
    profile: &'a HospitalProfile,
    header: &'a Header,
    pseudonym: String,
    resident: String,
    /// When the message says the change happened (EVN-2, else MSH-7).
    change_ms: i64,
    events: Vec<ClinicalEvent>,
    refused: Vec<Refused>,
}

impl Hl7Adapter<'_> {
    /// Translates one MLLP frame's content.
    pub fn translate(&self, bytes: &[u8]) -> Translated {
        let whole = |header: Header, hospital: String, fault: Fault, copy: String| Translated {
            header,
            hospital: hospital.clone(),
            events: Vec::new(),
            refused: vec![Refused {
                rejection: Rejection {
                    hospital,
                    reason: fault.reject.reason,
                    detail: fault.reject.detail,
                    columns: Vec::new(),
                },
                segment: String::new(),
                sequence: 0,
            }],
            code: fault.code,
            copy,
        };
        let Ok(text) = std::str::from_utf8(bytes) else {
            let detail = "the message is not UTF-8 (MSH-18 must be UNICODE UTF-8)";
            let f = fault(AckCode::Reject, Reason::MalformedRecord, detail);
            return whole(Header::default(), String::new(), f, withheld(bytes));
        };
        let message = match Message::parse_with_lenient_newlines(text.trim_end(), true) {
            Ok(message) => message,
            Err(error) => {
                // The parser's message quotes the text it failed on: only its position is kept.
                let position = match error {
                    hl7_parser::parser::ParseError::FailedToParse { position, .. } => position,
                    hl7_parser::parser::ParseError::IncompleteInput(_) => text.len(),
                };
                let detail = format!("not an HL7 v2 message (unreadable at byte {position})");
                let f = fault(AckCode::Reject, Reason::MalformedRecord, detail);
                return whole(Header::default(), String::new(), f, withheld(bytes));
            }
        };
        let header = header(&message);
        let copy = safe_copy(&message, &header);
        let profile = match self.hospital(&message, &header) {
            Ok(profile) => profile,
            Err(f) => return whole(header, String::new(), f, copy),
        };
        let hospital = profile.id.clone();
        match self.read(&message, profile, &header) {
            Ok((events, refused)) => {
                let code = if refused.is_empty() {
                    AckCode::Accept
                } else {
                    AckCode::Error
                };
                Translated {
                    header,
                    hospital,
                    events,
                    refused,
                    code,
                    copy,
                }
            }
            Err(f) => whole(header, hospital, f, copy),
        }
    }

    /// The hospital the message comes from, if the edge takes this kind of message from it.
    fn hospital<'c>(
        &'c self,
        message: &Message<'_>,
        header: &Header,
    ) -> Result<&'c HospitalProfile, Fault> {
        if header.control_id.is_empty() {
            let detail = "MSH-10 (the message control id) is missing";
            return Err(fault(AckCode::Reject, Reason::MissingField, detail));
        }
        let processing = text(message, "MSH", 11, 1);
        if processing != "P" {
            let detail = format!("processing id {} is not P (production)", shown(&processing));
            return Err(fault(AckCode::Reject, Reason::UnsupportedMessage, detail));
        }
        self.catalog
            .by_facility(&header.sending_facility)
            .map(|profile| profile.as_ref())
            .ok_or_else(|| {
                let detail = format!(
                    "no hospital in the edge catalogue has the HL7 facility {}",
                    shown(&header.sending_facility)
                );
                fault(AckCode::Reject, Reason::UnknownHospital, detail)
            })
    }

    /// The message's patient and content, by message type.
    #[allow(clippy::type_complexity)]
    fn read(
        &self,
        message: &Message<'_>,
        profile: &HospitalProfile,
        header: &Header,
    ) -> Result<(Vec<ClinicalEvent>, Vec<Refused>), Fault> {
        let kind = (header.message_type.as_str(), header.trigger.as_str());
        let supported = matches!(
            kind,
            ("ORU", "R01")
                | (
                    "ADT",
                    "A01" | "A02" | "A03" | "A04" | "A08" | "A11" | "A13" | "A40"
                )
        );
        if !supported {
            let detail = format!(
                "message type {}^{} is not one the edge takes (ORU^R01; ADT A01, A02, A03, \
                 A04, A08, A11, A13, A40)",
                shown(&header.message_type),
                shown(&header.trigger)
            );
            return Err(fault(AckCode::Reject, Reason::UnsupportedMessage, detail));
        }
        let resident = resident_id(message, profile)?;
        let change_ms = self
            .time(message, "EVN", 2)?
            .or(self.time(message, "MSH", 7)?)
            .ok_or_else(|| {
                reject(
                    Reason::MissingField,
                    "MSH-7 (the message time) is missing or unreadable",
                )
            })?;
        let mut reading = Reading {
            adapter: self,
            message,
            profile,
            header,
            pseudonym: self.key.pseudonymise(&resident),
            resident,
            change_ms,
            events: Vec::new(),
            refused: Vec::new(),
        };
        if kind.0 == "ORU" {
            reading.results()?;
        } else {
            reading.admission(kind.1)?;
        }
        Ok((reading.events, reading.refused))
    }

    /// An HL7 time of the first segment of that name (see [`checked_time`]).
    fn time(
        &self,
        message: &Message<'_>,
        segment: &str,
        field: usize,
    ) -> Result<Option<i64>, Reject> {
        let raw = text(message, segment, field, 1);
        checked_time(&raw, &format!("{segment}-{field}"), self)
    }
}

impl Reading<'_, '_> {
    /// ORU^R01: every observation of every order; blood pressure as one reading per order.
    fn results(&mut self) -> Result<(), Fault> {
        let message = self.message;
        let mut order = None;
        let mut pressure = Pressure::default();
        for (index, segment) in message.segments().enumerate() {
            let sequence = index + 1;
            match segment.name {
                "OBR" => {
                    self.pressure(std::mem::take(&mut pressure))?;
                    order = Some(Order::of(self, segment));
                }
                "OBX" => {
                    let Some(order) = &order else {
                        let detail = "an OBX comes before any OBR (its order)";
                        self.refuse(reject(Reason::MissingField, detail), segment, sequence);
                        continue;
                    };
                    if let Err(reject) = self.observation(order, segment, sequence, &mut pressure) {
                        self.refuse(reject, segment, sequence);
                    }
                }
                _ => {}
            }
        }
        self.pressure(pressure)
    }

    /// One OBX: a laboratory result, or half of a blood-pressure reading.
    fn observation(
        &mut self,
        order: &Order,
        segment: &Segment<'_>,
        sequence: usize,
        pressure: &mut Pressure,
    ) -> Result<(), Reject> {
        let id = order.id.as_ref().map_err(Clone::clone)?;
        let code = self.field(segment, 3, 1);
        let status = self.field(segment, 11, 1);
        let operation = result_operation(&status)?;
        let time = match self.time(segment, 14)? {
            Some(ms) => ms,
            None => order.time.clone()?,
        };
        // An unknown code is the finding that matters for a value that is not a number either.
        let value = match self.profile.codes.lab.contains_key(&code) {
            true => numeric(&self.field(segment, 5, 1))?,
            false => None,
        };
        let unit = self.field(segment, 6, 1);
        let lab = canonical_lab(self.profile, code.clone(), value, &unit, "OBX-5")?;
        let concept = Observation::from_loinc(&lab.loinc);
        if matches!(
            concept,
            Some(Observation::Systolic | Observation::Diastolic)
        ) {
            pressure.take(order, sequence, concept, lab.value, time, operation);
            return Ok(());
        }
        let sub_id = self.field(segment, 4, 1);
        let record = self.record("hl7_result", &[id, &code, &sub_id]);
        let event_time = if operation.is_retraction() {
            self.change_ms
        } else {
            time
        };
        let event = self.event(
            sequence,
            operation,
            record,
            event_time,
            Payload::LabResult(lab),
        )?;
        self.events.push(event);
        Ok(())
    }

    /// The order's blood pressure, once its OBX segments are all read.
    fn pressure(&mut self, pressure: Pressure) -> Result<(), Fault> {
        let Some((order, sequence)) = pressure.order else {
            return Ok(());
        };
        let operation = pressure.operation.unwrap_or(Operation::Create);
        let reading = VitalSign {
            systolic_mmhg: pressure.systolic,
            diastolic_mmhg: pressure.diastolic,
            ..VitalSign::default()
        };
        let outcome = match (reading.systolic_mmhg, reading.diastolic_mmhg) {
            (Some(s), Some(d)) if s <= d => Err(reject(
                Reason::ValueOutOfRange,
                "the systolic pressure is not above the diastolic",
            )),
            _ => {
                let record = self.record("hl7_vitals", &[&order]);
                let time = if operation.is_retraction() {
                    self.change_ms
                } else {
                    pressure.time
                };
                let payload = Payload::VitalSign(reading);
                self.event(sequence, operation, record, time, payload)
            }
        };
        match outcome {
            Ok(event) => self.events.push(event),
            Err(reject) => {
                let segment = self.message.segments().nth(sequence - 1);
                let name = segment.map(|s| s.name).unwrap_or("OBX");
                self.refused.push(Refused {
                    rejection: self.rejection(reject),
                    segment: name.to_string(),
                    sequence,
                });
            }
        }
        Ok(())
    }

    /// ADT^A40: the prior patient (MRG-1) merged into the message's (PID). One event, keyed by
    /// the prior patient, whose partition holds what moves. A prior record without a resident
    /// ID of the hospital's type was never Vigil's (it knows patients by that ID only): nothing
    /// to move.
    fn merge(&mut self) -> Result<(), Fault> {
        let Some((mrg, sequence)) = self.segment("MRG") else {
            return Err(reject(
                Reason::MissingField,
                "the MRG segment (the prior patient) is missing",
            )
            .into());
        };
        let wanted = &self.profile.hl7_resident_id_type;
        let separators = &self.message.separators;
        let prior = mrg
            .field(1)
            .into_iter()
            .flat_map(|f| f.repeats())
            .find(|r| {
                r.component(5)
                    .is_some_and(|c| c.display(separators).to_string() == *wanted)
            });
        let Some(prior) = prior else {
            return Ok(());
        };
        let prior = prior
            .component(1)
            .map(|c| c.display(separators).to_string())
            .unwrap_or_default();
        if !crate::edge::resident_id::is_valid(&prior) {
            let detail =
                format!("the MRG-1 identifier of type {wanted} is not a valid resident ID");
            return Err(reject(Reason::InvalidPatientIdentifier, detail).into());
        }
        if prior == self.resident {
            return Ok(());
        }
        let record = self.record("hl7_merge", &[&prior, &self.resident.clone()]);
        let payload = Payload::PatientMerge(PatientMerge {
            surviving_pseudonym: self.pseudonym.clone(),
        });
        let mut event = self.event(sequence, Operation::Update, record, self.change_ms, payload)?;
        event.patient_pseudonym = self.adapter.key.pseudonymise(&prior);
        self.events.push(event);
        Ok(())
    }

    /// ADT: the patient's registration (A01, A04, A08), the visit, and its diagnoses.
    fn admission(&mut self, trigger: &str) -> Result<(), Fault> {
        if trigger == "A40" {
            return self.merge();
        }
        if matches!(trigger, "A01" | "A04" | "A08") {
            let registration = self.registration()?;
            let record = self.record("hl7_patient", &[&self.resident.clone()]);
            let operation = if trigger == "A08" {
                Operation::Update
            } else {
                Operation::Create
            };
            let payload = Payload::PatientRegistration(registration);
            let event = self.event(0, operation, record, self.change_ms, payload)?;
            self.events.push(event);
        }
        let Some((pv1, sequence)) = self.segment("PV1") else {
            if trigger == "A08" {
                return Ok(()); // a change of the patient's details only
            }
            return Err(reject(
                Reason::MissingField,
                "the PV1 segment (the visit) is missing",
            )
            .into());
        };
        let visit = self.field(pv1, 19, 1);
        if visit.is_empty() {
            if trigger == "A08" {
                return Ok(());
            }
            return Err(
                reject(Reason::MissingField, "PV1-19 (the visit number) is missing").into(),
            );
        }
        let record = self.record("hl7_visit", &[&visit]);
        if trigger == "A11" {
            // A cancelled visit never happened: its record is retracted.
            let payload = Payload::Encounter(self.encounter(pv1, trigger)?);
            let event = self.event(sequence, Operation::Delete, record, self.change_ms, payload)?;
            self.events.push(event);
            return Ok(());
        }
        let encounter = self.encounter(pv1, trigger)?;
        let (start, department) = (encounter.start_time_ms, encounter.department_code.clone());
        let event = self.event(
            sequence,
            Operation::Update,
            record,
            start,
            Payload::Encounter(encounter),
        )?;
        self.events.push(event);
        self.diagnoses(&visit, &department, start)
    }

    /// PID: sex, birth year, region (the address's county code), death.
    fn registration(&self) -> Result<PatientRegistration, Reject> {
        let sex = match self.text("PID", 8).as_str() {
            "M" => Sex::Male,
            "F" => Sex::Female,
            _ => Sex::Unknown,
        };
        let offset = self.adapter.utc_offset_minutes;
        let birth = hl7_time(&self.text("PID", 7), offset).ok_or_else(|| {
            reject(
                Reason::MissingField,
                "PID-7 (the birth date) is missing or unreadable",
            )
        })?;
        let birth_year = crate::edge::time::year_of(birth, offset);
        if !(1900..=crate::edge::time::year_of(self.adapter.now_ms, offset)).contains(&birth_year) {
            return Err(reject(
                Reason::InvalidDate,
                "PID-7 gives an implausible birth year",
            ));
        }
        let death = self.adapter.time(self.message, "PID", 29)?;
        Ok(PatientRegistration {
            sex,
            birth_year,
            region_code: text(self.message, "PID", 11, 9),
            // HL7 ADT says nothing of programme enrolment: the patient master's stays in force.
            programmes: Vec::new(),
            death_time_ms: death,
        })
    }

    /// PV1: class, department, admission and discharge.
    fn encounter(&self, pv1: &Segment<'_>, trigger: &str) -> Result<Encounter, Reject> {
        let class = self.field(pv1, 2, 1);
        let encounter_type = match class.as_str() {
            "I" => EncounterType::Inpatient,
            "O" => EncounterType::Outpatient,
            "E" => EncounterType::Emergency,
            _ => {
                return Err(reject(
                    Reason::InvalidCode,
                    format!("PV1-2 patient class {} is not I, O or E", shown(&class)),
                ))
            }
        };
        let mut department = self.field(pv1, 3, 1);
        if department.is_empty() {
            department = self.field(pv1, 10, 1);
        }
        let start = self.time(pv1, 44)?.unwrap_or(self.change_ms);
        let end = match trigger {
            // A discharge taken back: the visit is open again.
            "A13" => None,
            "A03" => Some(self.time(pv1, 45)?.unwrap_or(self.change_ms)),
            _ => self.time(pv1, 45)?,
        };
        Ok(Encounter {
            encounter_type,
            department_code: department,
            start_time_ms: start,
            end_time_ms: end,
        })
    }

    /// DG1: each diagnosis of the visit, ICD-10 or a local code of the hospital's table.
    fn diagnoses(&mut self, visit: &str, department: &str, start: i64) -> Result<(), Fault> {
        let message = self.message;
        let segments: Vec<(usize, &Segment<'_>)> = message
            .segments()
            .enumerate()
            .filter(|(_, s)| s.name == "DG1")
            .map(|(i, s)| (i + 1, s))
            .collect();
        for (sequence, segment) in segments {
            match self.diagnosis(segment, visit, department, start, sequence) {
                Ok(event) => self.events.push(event),
                Err(reject) => self.refuse(reject, segment, sequence),
            }
        }
        Ok(())
    }

    fn diagnosis(
        &self,
        segment: &Segment<'_>,
        visit: &str,
        department: &str,
        start: i64,
        sequence: usize,
    ) -> Result<ClinicalEvent, Reject> {
        let code = self.field(segment, 3, 1);
        let system = self.field(segment, 3, 3).to_ascii_uppercase();
        let local = !matches!(system.as_str(), "I10" | "ICD10" | "ICD-10" | "I10C");
        let icd10 = icd10_of(self.profile, code.clone(), local)?;
        let time = self.time(segment, 5)?.unwrap_or(start);
        let diagnosis = Diagnosis {
            icd10,
            is_primary: self.field(segment, 15, 1) == "1",
            department_code: department.to_string(),
            encounter_id: Some(self.record("hl7_visit", &[visit])),
        };
        let record = self.record("hl7_diagnosis", &[visit, &code]);
        self.event(
            sequence,
            Operation::Update,
            record,
            time,
            Payload::Diagnosis(diagnosis),
        )
    }

    /// A canonical event of this message; `part` tells its events apart.
    fn event(
        &self,
        part: usize,
        operation: Operation,
        record_id: String,
        event_time_ms: i64,
        payload: Payload,
    ) -> Result<ClinicalEvent, Reject> {
        let event = ClinicalEvent {
            event_id: stable_id(&[
                self.profile.id.as_bytes(),
                b"hl7",
                self.header.control_id.as_bytes(),
                &(part as u64).to_le_bytes(),
            ]),
            hospital_id: self.profile.id.clone(),
            source_system: format!("hl7v2/{}^{}", self.header.message_type, self.header.trigger),
            operation,
            event_time_ms,
            ingest_time_ms: self.adapter.now_ms,
            patient_pseudonym: self.pseudonym.clone(),
            record_id,
            schema_version: CLINICAL_EVENT_SCHEMA_VERSION,
            payload,
            source: None,
        };
        validate::check_event(&event)?;
        Ok(event)
    }

    /// A record id of the hospital's: its parts pseudonymised (order and visit numbers are
    /// the hospital's keys, and the resident identity number is the patient).
    fn record(&self, kind: &str, parts: &[&str]) -> String {
        let key = format!("{}:{kind}:{}", self.profile.id, parts.join("\u{1f}"));
        format!("{kind}/{}", &self.adapter.key.pseudonymise(&key)[..24])
    }

    fn rejection(&self, reject: Reject) -> Rejection {
        Rejection {
            hospital: self.profile.id.clone(),
            reason: reject.reason,
            detail: reject.detail,
            columns: Vec::new(),
        }
    }

    fn refuse(&mut self, reject: Reject, segment: &Segment<'_>, sequence: usize) {
        self.refused.push(Refused {
            rejection: self.rejection(reject),
            segment: segment.name.to_string(),
            sequence,
        });
    }

    fn segment(&self, name: &str) -> Option<(&Segment<'_>, usize)> {
        self.message
            .segments()
            .enumerate()
            .find(|(_, s)| s.name == name)
            .map(|(i, s)| (s, i + 1))
    }

    fn field(&self, segment: &Segment<'_>, field: usize, component: usize) -> String {
        component_text(self.message, segment, field, component)
    }

    fn text(&self, segment: &str, field: usize) -> String {
        text(self.message, segment, field, 1)
    }

    /// A time field of `segment` (not necessarily the first of its name).
    fn time(&self, segment: &Segment<'_>, field: usize) -> Result<Option<i64>, Reject> {
        let raw = self.field(segment, field, 1);
        checked_time(&raw, &format!("{}-{field}", segment.name), self.adapter)
    }
}

/// An order (OBR) as its observations need it: its id and time, or why they have none.
struct Order {
    id: Result<String, Reject>,
    time: Result<i64, Reject>,
}

impl Order {
    fn of(reading: &Reading<'_, '_>, segment: &Segment<'_>) -> Order {
        // The filler's order number (the laboratory's), else the placer's.
        let mut id = reading.field(segment, 3, 1);
        if id.is_empty() {
            id = reading.field(segment, 2, 1);
        }
        let id = if id.is_empty() {
            Err(reject(
                Reason::MissingField,
                "OBR-3 and OBR-2 (the order number) are both missing",
            ))
        } else {
            Ok(id)
        };
        let time = reading.time(segment, 7).and_then(|t| {
            t.ok_or_else(|| {
                reject(
                    Reason::MissingField,
                    "OBX-14 and OBR-7 (the observation time) are both missing",
                )
            })
        });
        Order { id, time }
    }
}

/// The blood pressure of one order, gathered from its OBX segments.
#[derive(Default)]
struct Pressure {
    /// The order's id and the place of its first pressure OBX.
    order: Option<(String, usize)>,
    systolic: Option<f64>,
    diastolic: Option<f64>,
    time: i64,
    operation: Option<Operation>,
}

impl Pressure {
    fn take(
        &mut self,
        order: &Order,
        sequence: usize,
        concept: Option<Observation>,
        value: f64,
        time: i64,
        operation: Operation,
    ) {
        if self.order.is_none() {
            let id = order.id.clone().unwrap_or_default();
            self.order = Some((id, sequence));
            self.time = time;
            self.operation = Some(operation);
        }
        match concept {
            Some(Observation::Systolic) => self.systolic = Some(value),
            _ => self.diastolic = Some(value),
        }
    }
}

/// OBX-11 (result status, HL7 table 0085) as a change of the result's record.
fn result_operation(status: &str) -> Result<Operation, Reject> {
    match status {
        "F" | "P" | "R" | "S" | "" => Ok(Operation::Create),
        "C" => Ok(Operation::Update),
        // Deleted, or posted to the wrong patient: the result is taken back.
        "D" | "W" => Ok(Operation::Delete),
        other => Err(reject(
            Reason::InvalidCode,
            format!("OBX-11 result status {} carries no result", shown(other)),
        )),
    }
}

/// A numeric OBX-5 (NM, or a plain SN); None when empty.
fn numeric(text: &str) -> Result<Option<f64>, Reject> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    trimmed
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(Some)
        .ok_or_else(|| reject(Reason::NonNumericResult, "OBX-5 is not a number"))
}

/// PID-3's identifier of the hospital's resident-id type, which must be a valid one.
fn resident_id(message: &Message<'_>, profile: &HospitalProfile) -> Result<String, Fault> {
    let Some(pid) = message.segment("PID") else {
        return Err(reject(
            Reason::MissingPatientIdentifier,
            "the PID segment is missing",
        )
        .into());
    };
    let found = pid
        .field(3)
        .into_iter()
        .flat_map(|f| f.repeats())
        .find(|r| {
            r.component(5).is_some_and(|c| {
                c.display(&message.separators).to_string() == profile.hl7_resident_id_type
            })
        });
    let Some(repeat) = found else {
        let detail = format!(
            "PID-3 has no identifier of type {}",
            profile.hl7_resident_id_type
        );
        return Err(reject(Reason::MissingPatientIdentifier, detail).into());
    };
    let resident = repeat
        .component(1)
        .map(|c| c.display(&message.separators).to_string())
        .unwrap_or_default();
    if !crate::edge::resident_id::is_valid(&resident) {
        let detail = format!(
            "the PID-3 identifier of type {} is not a valid resident ID",
            profile.hl7_resident_id_type
        );
        return Err(reject(Reason::InvalidPatientIdentifier, detail).into());
    }
    Ok(resident)
}

/// The header fields the acknowledgement echoes.
fn header(message: &Message<'_>) -> Header {
    Header {
        sending_application: text(message, "MSH", 3, 1),
        sending_facility: text(message, "MSH", 4, 1),
        control_id: text(message, "MSH", 10, 1),
        message_type: text(message, "MSH", 9, 1),
        trigger: text(message, "MSH", 9, 2),
        version: text(message, "MSH", 12, 1),
    }
}

/// A component of the first segment of that name, escapes decoded; empty when absent.
fn text(message: &Message<'_>, segment: &str, field: usize, component: usize) -> String {
    message
        .segment(segment)
        .map(|s| component_text(message, s, field, component))
        .unwrap_or_default()
}

fn component_text(
    message: &Message<'_>,
    segment: &Segment<'_>,
    field: usize,
    component: usize,
) -> String {
    segment
        .field(field)
        .and_then(|f| f.component(component))
        .map(|c| c.display(&message.separators).to_string())
        .unwrap_or_default()
}

/// An HL7 time (`YYYY[MM[DD[HHMM[SS[.S]]]]][+ZZZZ]`) named `what`, held to the edge's clock;
/// without an offset it is the hospitals' local time. None when empty.
fn checked_time(raw: &str, what: &str, adapter: &Hl7Adapter<'_>) -> Result<Option<i64>, Reject> {
    if raw.is_empty() {
        return Ok(None);
    }
    let ms = hl7_time(raw, adapter.utc_offset_minutes)
        .ok_or_else(|| reject(Reason::InvalidDate, format!("{what} is not an HL7 time")))?;
    if ms < validate::EARLIEST_CLINICAL_MS || ms > adapter.now_ms + validate::FUTURE_TOLERANCE_MS {
        return Err(reject(
            Reason::InvalidDate,
            format!("{what} is outside 1990..tomorrow"),
        ));
    }
    Ok(Some(ms))
}

/// An HL7 DTM as epoch milliseconds; `offset_minutes` when it carries no offset of its own.
pub fn hl7_time(text: &str, offset_minutes: i32) -> Option<i64> {
    let stamp: hl7_parser::datetime::TimeStamp = text.trim().parse().ok()?;
    let year = i32::from(stamp.year);
    let month = u32::from(stamp.month.unwrap_or(1));
    let day = u32::from(stamp.day.unwrap_or(1));
    let hour = i64::from(stamp.hour.unwrap_or(0));
    let minute = i64::from(stamp.minute.unwrap_or(0));
    let second = i64::from(stamp.second.unwrap_or(0));
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let offset = match stamp.offset {
        Some(o) => {
            let sign = if o.hours < 0 { -1 } else { 1 };
            i64::from(o.hours) * 60 + sign * i64::from(o.minutes)
        }
        None => i64::from(offset_minutes),
    };
    let days = i64::from(days_from_civil(year, month, day));
    let local_ms = ((days * 24 + hour) * 60 + minute) * 60_000
        + second * 1000
        + i64::from(stamp.microsecond.unwrap_or(0)) / 1000;
    Some(local_ms - offset * 60_000)
}

/// The dead-letter copy of a parsed message: its header codes, its segments' names, and the
/// codes of its observations and diagnoses; no names, identifiers, addresses or free text.
fn safe_copy(message: &Message<'_>, header: &Header) -> String {
    let segments: Vec<&str> = message.segments().map(|s| s.name).collect();
    let codes: Vec<Value> = message
        .segments()
        .filter(|s| matches!(s.name, "OBX" | "DG1"))
        .map(|s| {
            json!({
                "segment": s.name,
                "code": safe_text_value(&component_text(message, s, 3, 1)),
                "unit": safe_text_value(&component_text(message, s, 6, 1)),
            })
        })
        .collect();
    json!({
        "message_type": safe_text_value(&format!("{}^{}", header.message_type, header.trigger)),
        "control_id": safe_text_value(&header.control_id),
        "sending_facility": safe_text_value(&header.sending_facility),
        "version": safe_text_value(&header.version),
        "segments": segments.join(" "),
        "codes": codes,
    })
    .to_string()
}

fn withheld(bytes: &[u8]) -> String {
    crate::ingest::redact::withheld(bytes)
}

/// Separators for text Vigil writes into a message (the acknowledgement).
pub fn separators() -> Separators {
    Separators::default()
}
