//! The direct `ClinicalEvent` decoder against apache-avro's, on the same bytes: every example,
//! values with multi-byte text and megabyte fields, arrays written in byte-sized blocks, and
//! hundreds of thousands of mutated encodings (bytes changed, cut, inserted, removed). Both
//! must give the same value, or both an error. And the direct `PatientStatus` encoder against
//! apache-avro's writer: the same bytes for every example and for rows at every field's extremes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use vigil_schemas::{
    AvroCodec, ClinicalEvent, Condition, PatientStatus, Payload, PeriodKind, ProgrammeEnrolment,
    RiskLevel, SchemaError, Sex,
};

const HEADER: usize = 10;

/// apache-avro's answer for a datum of the current schema: Some(value), or None for an error.
fn by_apache_avro(
    codec: &AvroCodec<ClinicalEvent>,
    header: &[u8],
    datum: &[u8],
) -> Option<ClinicalEvent> {
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(datum);
    codec.decode_with_apache_avro(&bytes).ok()
}

/// The codec's answer (the direct decoder, for the current schema).
fn by_codec(
    codec: &AvroCodec<ClinicalEvent>,
    header: &[u8],
    datum: &[u8],
) -> Option<ClinicalEvent> {
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(datum);
    match codec.decode(&bytes) {
        Ok(event) => Some(event),
        Err(SchemaError::Malformed { .. }) => None,
        Err(other) => panic!("the direct decoder was not used: {other}"),
    }
}

fn examples() -> Vec<ClinicalEvent> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/clinical_event");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("json") {
            out.push(serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap());
        }
    }
    assert!(out.len() >= 8, "every payload kind has an example");
    out
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
    let (mut agreed_values, mut agreed_errors) = (0, 0);
    for value in examples() {
        let bytes = codec.encode(&value).unwrap();
        let (header, datum) = bytes.split_at(HEADER);
        for _ in 0..20_000 {
            let mutated = mutations.mutate(datum);
            // Compared as encoded again: a NaN read from changed bytes is not equal to itself.
            let canonical = |event: Option<ClinicalEvent>| event.map(|e| codec.encode(&e).unwrap());
            let expected = canonical(by_apache_avro(&codec, header, &mutated));
            let got = canonical(by_codec(&codec, header, &mutated));
            assert_eq!(got, expected, "bytes {mutated:02x?}");
            if got.is_some() {
                agreed_values += 1;
            } else {
                agreed_errors += 1;
            }
        }
    }
    // Both outcomes were exercised, not only one.
    assert!(agreed_values > 10_000, "{agreed_values} values");
    assert!(agreed_errors > 10_000, "{agreed_errors} errors");
}

/// Patient-status rows: the examples, and rows drawn from every field's extremes.
fn status_rows() -> Vec<PatientStatus> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/patient_status");
    let mut rows: Vec<PatientStatus> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect();
    assert!(!rows.is_empty());
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

#[test]
fn status_rows_and_their_mutations_decode_alike_by_both_decoders() {
    let codec = AvroCodec::<PatientStatus>::new().unwrap();
    let mut mutations = Mutations(0x5DEE_CE66_D1CE_4E5B);
    let canonical = |row: Option<PatientStatus>| row.map(|r| codec.encode(&r).unwrap());
    let (mut values, mut errors) = (0, 0);
    for row in status_rows().into_iter().step_by(50) {
        let bytes = codec.encode(&row).unwrap();
        let back = codec.decode(&bytes).unwrap();
        assert_eq!(codec.encode(&back).unwrap(), bytes, "{row:?}");
        let (header, datum) = bytes.split_at(HEADER);
        for _ in 0..400 {
            let mut mutated = header.to_vec();
            mutated.extend_from_slice(&mutations.mutate(datum));
            let expected = canonical(codec.decode_with_apache_avro(&mutated).ok());
            let got = match codec.decode(&mutated) {
                Ok(row) => Some(row),
                Err(SchemaError::Malformed { .. }) => None,
                Err(other) => panic!("the direct decoder was not used: {other}"),
            };
            let got = canonical(got);
            assert_eq!(got, expected, "bytes {mutated:02x?}");
            if got.is_some() {
                values += 1;
            } else {
                errors += 1;
            }
        }
    }
    assert!(
        values > 5_000 && errors > 5_000,
        "{values} values, {errors} errors"
    );
}
