//! Every example payload of every schema goes through the codec, and every committed binary
//! fixture (bytes written by a current or past writer schema) decodes with the current reader.
//!
//! Fixtures are named `<example>.<writer fingerprint>.bin`. After a schema change, write the new
//! ones with `VIGIL_WRITE_FIXTURES=1 cargo test -p vigil-schemas --test examples` and commit them
//! beside the old ones; the old ones must keep decoding.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use vigil_schemas::{
    Alert, AlertAck, AlertDelivery, AvroCodec, ClinicalEvent, DeadLetter, PatientStatus,
    PipelineStat, WireRecord,
};

fn examples_dir(record_dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(record_dir)
}

fn check_examples<T>(record_dir: &str, min_examples: usize)
where
    T: WireRecord + PartialEq + std::fmt::Debug,
{
    let codec = AvroCodec::<T>::new().expect("codec builds");
    let schemas = T::schemas().expect("schemas parse");
    let current = format!("{:016x}", schemas.current_fingerprint);
    let dir = examples_dir(record_dir);
    let write_fixtures = std::env::var_os("VIGIL_WRITE_FIXTURES").is_some();
    let mut seen = 0;
    for entry in fs::read_dir(&dir).expect("examples dir exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        seen += 1;
        let text = fs::read_to_string(&path).expect("example readable");
        let value: T = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} does not match the Rust type: {e}", path.display()));

        // Round trip through the fast serde path.
        let bytes = codec.encode(&value).expect("encodes");
        let back = codec.decode(&bytes).expect("decodes");
        assert_eq!(back, value, "{} does not round-trip", path.display());

        // Independent check: apache-avro's generic decoder reads the datum by the schema alone
        // and must consume exactly the bytes written, and the value must validate.
        let mut body = &bytes[10..];
        let generic = apache_avro::reader::datum::GenericDatumReader::builder(&schemas.current)
            .build()
            .expect("generic reader builds")
            .read_value(&mut body)
            .unwrap_or_else(|e| panic!("{}: generic decoder rejects datum: {e}", path.display()));
        assert!(
            body.is_empty(),
            "{}: trailing bytes after datum",
            path.display()
        );
        assert!(
            generic.validate(&schemas.current),
            "{}: value does not validate",
            path.display()
        );

        // The fixture written by the current schema must be committed and decode to the example.
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("utf-8 name");
        let fixture = dir.join(format!("{stem}.{current}.bin"));
        if write_fixtures && !fixture.exists() {
            fs::write(&fixture, &bytes).expect("fixture written");
        }
        let committed = fs::read(&fixture).unwrap_or_else(|_| {
            panic!(
                "missing fixture {}: run VIGIL_WRITE_FIXTURES=1 cargo test -p vigil-schemas --test examples",
                fixture.display()
            )
        });
        assert_eq!(codec.decode(&committed).expect("fixture decodes"), value);
    }
    assert!(
        seen >= min_examples,
        "{record_dir}: expected at least {min_examples} examples, found {seen}"
    );

    // Fixtures from older writer schemas: still readable, and stable once re-encoded.
    for entry in fs::read_dir(&dir).expect("examples dir exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("bin") {
            continue;
        }
        let bytes = fs::read(&path).expect("fixture readable");
        let decoded = codec
            .decode(&bytes)
            .unwrap_or_else(|e| panic!("{} no longer decodes: {e}", path.display()));
        let again = codec
            .decode(&codec.encode(&decoded).expect("re-encodes"))
            .expect("decodes");
        assert_eq!(again, decoded);
    }
}

#[test]
fn clinical_event_examples() {
    check_examples::<ClinicalEvent>("clinical_event", 8);
}

#[test]
fn alert_examples() {
    check_examples::<Alert>("alert", 2);
}

#[test]
fn patient_status_examples() {
    check_examples::<PatientStatus>("patient_status", 1);
}

#[test]
fn dead_letter_examples() {
    check_examples::<DeadLetter>("dead_letter", 1);
}

#[test]
fn alert_ack_examples() {
    check_examples::<AlertAck>("alert_ack", 2);
}

#[test]
fn alert_delivery_examples() {
    check_examples::<AlertDelivery>("alert_delivery", 2);
}

#[test]
fn pipeline_stat_examples() {
    check_examples::<PipelineStat>("pipeline_stat", 2);
}

#[test]
fn rejects_garbage_with_clear_errors() {
    let codec = AvroCodec::<ClinicalEvent>::new().expect("codec builds");
    let short = codec.decode(b"abc").unwrap_err().to_string();
    assert!(short.contains("single-object"), "{short}");
    let wrong_magic = codec.decode(&[0u8; 16]).unwrap_err().to_string();
    assert!(wrong_magic.contains("magic"), "{wrong_magic}");
    let mut unknown = vec![0xC3, 0x01];
    unknown.extend_from_slice(&[7u8; 8]);
    let msg = codec.decode(&unknown).unwrap_err().to_string();
    assert!(msg.contains("unknown writer schema"), "{msg}");
    // A valid header followed by a truncated body.
    let example =
        fs::read_to_string(examples_dir("clinical_event").join("lab_result.json")).unwrap();
    let event: ClinicalEvent = serde_json::from_str(&example).unwrap();
    let bytes = codec.encode(&event).unwrap();
    let msg = codec
        .decode(&bytes[..bytes.len() - 5])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("malformed"), "{msg}");
}
