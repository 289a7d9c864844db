//! The direct `ClinicalEvent` decoder against apache-avro's, on the same bytes: every example,
//! values with multi-byte text and megabyte fields, arrays written in byte-sized blocks, and
//! hundreds of thousands of mutated encodings (bytes changed, cut, inserted, removed). Both
//! must give the same value, or both an error. And the direct `ClinicalEvent` and `PatientStatus`
//! encoders against apache-avro's writer: the same bytes for every example and for records at
//! every field's extremes and every enum symbol.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use vigil_schemas::{
    AvroCodec, ClinicalEvent, Condition, EncounterType, Operation, PatientStatus, Payload,
    PeriodKind, ProgrammeEnrolment, RiskLevel, SchemaError, Sex, SourcePosition, VisitMode,
    WireRecord,
};

const HEADER: usize = 10;

/// apache-avro's answer for a datum of the current schema: Some(value), or None for an error.
fn by_apache_avro<T: WireRecord>(codec: &AvroCodec<T>, header: &[u8], datum: &[u8]) -> Option<T> {
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(datum);
    codec.decode_with_apache_avro(&bytes).ok()
}

/// The codec's answer (the direct decoder, for the current schema).
fn by_codec<T: WireRecord>(codec: &AvroCodec<T>, header: &[u8], datum: &[u8]) -> Option<T> {
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(datum);
    match codec.decode(&bytes) {
        Ok(value) => Some(value),
        Err(SchemaError::Malformed { .. }) => None,
        Err(other) => panic!("the direct decoder was not used: {other}"),
    }
}

/// The example payloads of a record type (`examples/<dir>/*.json`).
fn examples_of<T: WireRecord>(dir: &str) -> Vec<T> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(dir);
    let out: Vec<T> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect();
    assert!(!out.is_empty());
    out
}

fn examples() -> Vec<ClinicalEvent> {
    let out = examples_of::<ClinicalEvent>("clinical_event");
    assert!(out.len() >= 8, "every payload kind has an example");
    out
}

/// Mutates the datum of `value`'s encoding `times` times and asks both decoders each time:
/// they must agree (compared encoded again: a NaN read from changed bytes is not equal to
/// itself). Returns how many mutations decoded to a value and how many to an error.
fn agree_under_mutation<T: WireRecord>(
    codec: &AvroCodec<T>,
    value: &T,
    times: usize,
    mutations: &mut Mutations,
) -> (usize, usize) {
    let bytes = codec.encode(value).unwrap();
    let (header, datum) = bytes.split_at(HEADER);
    let canonical = |decoded: Option<T>| decoded.map(|v| codec.encode(&v).unwrap());
    let (mut values, mut errors) = (0, 0);
    for _ in 0..times {
        let mutated = mutations.mutate(datum);
        let expected = canonical(by_apache_avro(codec, header, &mutated));
        let got = canonical(by_codec(codec, header, &mutated));
        assert_eq!(got, expected, "bytes {mutated:02x?}");
        if got.is_some() {
            values += 1;
        } else {
            errors += 1;
        }
    }
    (values, errors)
}

/// Examples, and the same with multi-byte text and a field of two megabytes.
fn values() -> Vec<ClinicalEvent> {
    let mut values = examples();
    let mut wide = values[0].clone();
    wide.record_id = "高血压随访记录·é·🩺".repeat(3);
    wide.source_system = "x".repeat(2 * 1024 * 1024);
    values.push(wide);
    let registration = values
        .iter()
        .find(|e| matches!(e.payload, Payload::PatientRegistration(_)))
        .cloned()
        .expect("a registration example");
    let mut many = registration;
    if let Payload::PatientRegistration(r) = &mut many.payload {
        r.programmes = (0..40)
            .map(|i| ProgrammeEnrolment {
                condition: if i % 2 == 0 {
                    Condition::Hypertension
                } else {
                    Condition::Diabetes
                },
                enrolled_time_ms: -1_000_000 + i * 86_400_000,
            })
            .collect();
    }
    values.push(many);
    values
}

#[test]
fn every_value_decodes_to_itself_by_both_decoders() {
    let codec = AvroCodec::<ClinicalEvent>::new().unwrap();
    for value in values() {
        let bytes = codec.encode(&value).unwrap();
        let (header, datum) = bytes.split_at(HEADER);
        assert_eq!(by_apache_avro(&codec, header, datum).as_ref(), Some(&value));
        assert_eq!(by_codec(&codec, header, datum).as_ref(), Some(&value));
    }
}

#[test]
fn an_array_written_in_sized_blocks_reads_the_same() {
    // Writers may send an array as blocks with a negative count followed by the block's size
    // in bytes; apache-avro's writer never does, so the bytes are rewritten here.
    let codec = AvroCodec::<ClinicalEvent>::new().unwrap();
    let registration = values().pop().unwrap();
    let bytes = codec.encode(&registration).unwrap();
    let (header, datum) = bytes.split_at(HEADER);
    // The array's count (40, zig-zag 80 = 0x50) follows the payload's fixed fields; find it by
    // re-encoding without the programmes.
    let mut none = registration.clone();
    if let Payload::PatientRegistration(r) = &mut none.payload {
        r.programmes.clear();
    }
    let empty = codec.encode(&none).unwrap();
    let at = datum
        .iter()
        .zip(&empty[HEADER..])
        .position(|(a, b)| a != b)
        .unwrap();
    assert_eq!(datum[at], 0x50, "the array's count");
    let items_end = datum.len() - (empty.len() - HEADER - at - 1);
    let items = &datum[at + 1..items_end - 1];
    let mut rewritten = datum[..at].to_vec();
    // Two blocks: -25 items (zig-zag 49) with their byte size, then 15 items, then the end.
    let first: usize = {
        let mut probe = registration.clone();
        if let Payload::PatientRegistration(r) = &mut probe.payload {
            r.programmes.truncate(25);
        }
        codec.encode(&probe).unwrap().len() - empty.len() - 1
    };
    rewritten.push(49);
    rewritten.extend_from_slice(&long(first as i64));
    rewritten.extend_from_slice(&items[..first]);
    rewritten.push(30);
    rewritten.extend_from_slice(&items[first..]);
    rewritten.push(0);
    rewritten.extend_from_slice(&datum[items_end..]);
    assert_eq!(
        by_apache_avro(&codec, header, &rewritten).as_ref(),
        Some(&registration)
    );
    assert_eq!(
        by_codec(&codec, header, &rewritten).as_ref(),
        Some(&registration)
    );
}

/// A long as Avro writes it: zig-zag, then a varint.
fn long(value: i64) -> Vec<u8> {
    let mut z = ((value << 1) ^ (value >> 63)) as u64;
    let mut out = Vec::new();
    while z > 0x7F {
        out.push((z as u8 & 0x7F) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
    out
}

/// A small deterministic generator (xorshift64*): the same mutations every run.
struct Mutations(u64);

impl Mutations {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn mutate(&mut self, datum: &[u8]) -> Vec<u8> {
        let mut out = datum.to_vec();
        for _ in 0..1 + self.below(3) {
            let at = self.below(out.len());
            match self.below(5) {
                0 => out[at] = self.next() as u8,
                1 => out[at] ^= 1 << self.below(8),
                2 => out.truncate(at),
                3 => out.insert(at, self.next() as u8),
                _ => {
                    if !out.is_empty() {
                        out.remove(at.min(out.len() - 1));
                    }
                }
            }
            if out.is_empty() {
                break;
            }
        }
        out
    }
}

#[test]
fn mutated_bytes_get_the_same_answer_from_both_decoders() {
    let codec = AvroCodec::<ClinicalEvent>::new().unwrap();
    let mut mutations = Mutations(0x9E37_79B9_7F4A_7C15);
    let (mut values, mut errors) = (0, 0);
    for value in examples() {
        let (v, e) = agree_under_mutation(&codec, &value, 20_000, &mut mutations);
        values += v;
        errors += e;
    }
    // Both outcomes were exercised, not only one.
    assert!(values > 10_000, "{values} values");
    assert!(errors > 10_000, "{errors} errors");
}

/// Patient-status rows: the examples, and rows drawn from every field's extremes.
fn status_rows() -> Vec<PatientStatus> {
    let mut rows = examples_of::<PatientStatus>("patient_status");
    let mut mutations = Mutations(0x0123_4567_89AB_CDEF);
    let texts = ["", "x", "高血压·é·🩺", "60-69"];
    let template = rows[0].clone();
    for i in 0..5_000 {
        let mut row = template.clone();
        let int = |m: &mut Mutations| match m.below(4) {
            0 => i32::MIN,
            1 => i32::MAX,
            2 => 0,
            _ => m.next() as i32,
        };
        let long = |m: &mut Mutations| match m.below(4) {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => -1,
            _ => m.next() as i64,
        };
        let double = |m: &mut Mutations| match m.below(6) {
            0 => None,
            1 => Some(f64::NAN),
            2 => Some(f64::INFINITY),
            3 => Some(-0.0),
            _ => Some(f64::from_bits(m.next())),
        };
        row.status_id = texts[mutations.below(4)].repeat(1 + mutations.below(40));
        row.region_code = texts[mutations.below(4)].to_string();
        row.age_band = texts[mutations.below(4)].to_string();
        row.version = long(&mut mutations);
        row.period_start = int(&mut mutations);
        row.managed_days = int(&mut mutations);
        row.follow_ups_ytd = int(&mut mutations);
        row.bp_grade = int(&mut mutations);
        row.event_time_ms = long(&mut mutations);
        row.managed = i % 2 == 0;
        row.controlled = i % 3 == 0;
        row.last_follow_up_ms = (i % 5 != 0).then(|| long(&mut mutations));
        row.last_systolic_mmhg = double(&mut mutations);
        row.last_fasting_glucose_mmol_l = double(&mut mutations);
        row.condition = [Condition::Hypertension, Condition::Diabetes][i % 2];
        row.period_kind = [PeriodKind::Month, PeriodKind::Quarter, PeriodKind::Year][i % 3];
        row.risk_level = [
            RiskLevel::NotAssessed,
            RiskLevel::Low,
            RiskLevel::Medium,
            RiskLevel::High,
            RiskLevel::VeryHigh,
        ][i % 5];
        row.sex = [Sex::Male, Sex::Female, Sex::Unknown][i % 3];
        rows.push(row);
    }
    rows
}

#[test]
fn the_direct_status_encoder_writes_the_bytes_apache_avro_writes() {
    let codec = AvroCodec::<PatientStatus>::new().unwrap();
    for row in status_rows() {
        let (mut direct, mut reference) = (Vec::new(), Vec::new());
        codec.encode_into(&row, &mut direct).unwrap();
        codec.encode_with_apache_avro(&row, &mut reference).unwrap();
        assert_eq!(direct, reference, "{row:?}");
    }
}

/// Every example and value above, then each with every symbol of each of its enums, times and
/// numbers at their extremes, optional fields both ways, empty and multi-byte text.
fn events_at_extremes() -> Vec<ClinicalEvent> {
    let operations = [
        Operation::Create,
        Operation::Update,
        Operation::Delete,
        Operation::Snapshot,
    ];
    let times = [i64::MIN, -1, 0, 1, 63, 64, 8191, 8192, i64::MAX];
    let numbers = [
        f64::NAN,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        1e-300,
        120.5,
        f64::MAX,
    ];
    let mut out = Vec::new();
    for (n, base) in values().into_iter().enumerate() {
        out.push(base.clone());
        let mut event = base.clone();
        event.operation = operations[n % operations.len()];
        event.event_time_ms = times[n % times.len()];
        event.ingest_time_ms = times[(n + 3) % times.len()];
        event.schema_version = [i32::MIN, 0, 3, i32::MAX][n % 4];
        event.record_id = ["", "é", "病历-001"][n % 3].to_string();
        event.source = match n % 3 {
            0 => None,
            _ => Some(SourcePosition {
                topic: "vigil.his.changes".into(),
                partition: [0, i32::MAX][n % 2],
                offset: times[(n + 5) % times.len()],
            }),
        };
        for i in 0..4 {
            let mut variant = event.clone();
            variant.operation = operations[i];
            let number = numbers[(n + i) % numbers.len()];
            let time = times[(n + i) % times.len()];
            let on = i % 2 == 0;
            match &mut variant.payload {
                Payload::PatientRegistration(r) => {
                    r.sex = [Sex::Male, Sex::Female, Sex::Unknown][i % 3];
                    r.death_time_ms = on.then_some(time);
                    r.birth_year = [i32::MIN, 1950, 0, i32::MAX][i];
                    r.programmes.truncate(i);
                }
                Payload::Encounter(e) => {
                    e.encounter_type = [
                        EncounterType::Outpatient,
                        EncounterType::Inpatient,
                        EncounterType::Emergency,
                        EncounterType::HomeVisit,
                    ][i];
                    e.end_time_ms = on.then_some(time);
                    e.start_time_ms = time;
                }
                Payload::Diagnosis(d) => {
                    d.is_primary = i % 2 == 0;
                    d.encounter_id = on.then_some("门诊-7".to_string());
                }
                Payload::LabResult(l) => {
                    l.value = number;
                    l.encounter_id = on.then_some(String::new());
                }
                Payload::VitalSign(v) => {
                    v.systolic_mmhg = on.then_some(number);
                    v.height_cm = (!on).then_some(number);
                }
                Payload::Prescription(p) => {
                    p.dose = number;
                    p.days_supply = [i32::MIN, -1, 0, i32::MAX][i];
                }
                Payload::FollowUpVisit(f) => {
                    f.visit_mode = [
                        VisitMode::Clinic,
                        VisitMode::Home,
                        VisitMode::Phone,
                        VisitMode::Online,
                    ][i];
                    f.condition = [Condition::Hypertension, Condition::Diabetes][i % 2];
                    f.fasting_glucose_mmol_l = on.then_some(number);
                    f.next_visit_time_ms = on.then_some(time);
                }
                Payload::PatientMerge(m) => {
                    m.surviving_pseudonym = "ab".repeat(i * 16);
                }
            }
            out.push(variant);
        }
    }
    out
}

#[test]
fn the_direct_event_encoder_writes_the_bytes_apache_avro_writes() {
    let codec = AvroCodec::<ClinicalEvent>::new().unwrap();
    let events = events_at_extremes();
    assert!(events.len() > 40, "{} events", events.len());
    for event in events {
        let (mut direct, mut reference) = (Vec::new(), Vec::new());
        codec.encode_into(&event, &mut direct).unwrap();
        codec
            .encode_with_apache_avro(&event, &mut reference)
            .unwrap();
        assert_eq!(direct, reference, "{event:?}");
    }
}

#[test]
fn status_rows_and_their_mutations_decode_alike_by_both_decoders() {
    let codec = AvroCodec::<PatientStatus>::new().unwrap();
    let mut mutations = Mutations(0x5DEE_CE66_D1CE_4E5B);
    let (mut values, mut errors) = (0, 0);
    for row in status_rows().into_iter().step_by(50) {
        let bytes = codec.encode(&row).unwrap();
        assert_eq!(
            by_codec(&codec, &bytes[..HEADER], &bytes[HEADER..]).map(|r| codec.encode(&r).unwrap()),
            Some(bytes),
            "{row:?}"
        );
        let (v, e) = agree_under_mutation(&codec, &row, 400, &mut mutations);
        values += v;
        errors += e;
    }
    assert!(
        values > 5_000 && errors > 5_000,
        "{values} values, {errors} errors"
    );
}
