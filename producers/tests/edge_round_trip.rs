//! The hospital edge, without a broker: what the simulator writes as each vendor's change events
//! must come out of the ingest as the same clinical content as the simulator's canonical events,
//! and with defects injected, the ingest's verdicts must match the simulator's manifest exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use vigil_producers::edge::Catalog;
use vigil_producers::ingest::{Adapter, Outcome};
use vigil_producers::pseudonym::PseudonymKey;
use vigil_producers::simulator::cdc::{CdcRecord, CdcRenderer};
use vigil_producers::simulator::{CanonicalRenderer, DefectRates, SimulateConfig, Simulation};
use vigil_schemas::{Operation, Payload};

fn catalog() -> Catalog {
    Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/edge")).unwrap()
}

fn config() -> SimulateConfig {
    SimulateConfig {
        patients: 300,
        hospitals: 3,
        end_date: "2026-06-30".into(),
        seed: 5,
        ..SimulateConfig::default()
    }
}

fn key() -> PseudonymKey {
    PseudonymKey::from_bytes(&[9u8; 32]).unwrap()
}

fn squash_icd(code: &str) -> String {
    code.replace('.', "").trim_end_matches('0').to_string()
}

#[test]
fn every_vendor_path_yields_the_canonical_content() {
    let catalog = catalog();
    let config = config();
    let mut sim = Simulation::new(&config);
    let canonical = CanonicalRenderer::new(key(), config.seed);
    let mut cdc = CdcRenderer::new(
        &catalog,
        config.hospitals,
        config.seed,
        480,
        DefectRates::default(),
    )
    .unwrap();
    let key = key();
    let adapter = Adapter {
        catalog: &catalog,
        key: &key,
        utc_offset_minutes: 480,
        now_ms: vigil_runtime::time::now_ms(),
    };
    let mut checked: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut records = Vec::new();
    while let Some(event) = sim.next() {
        let expected = canonical.render(&sim, &event, 0);
        records.clear();
        cdc.render(&sim, &event, &mut records);
        assert_eq!(records.len(), 1, "no defects: one record per fact");
        let got = match adapter.adapt(records[0].value.as_deref()) {
            Outcome::Accepted(e) | Outcome::AcceptedUnmapped(e, _) => e,
            other => panic!(
                "clean record rejected: {other:?}\n{}",
                String::from_utf8_lossy(records[0].value.as_deref().unwrap())
            ),
        };
        assert_eq!(got.patient_pseudonym, expected.patient_pseudonym);
        assert_eq!(got.hospital_id, expected.hospital_id);
        let close = |a: f64, b: f64| (a - b).abs() <= 0.011 * b.abs().max(1.0);
        match (&got.payload, &expected.payload) {
            (Payload::PatientRegistration(a), Payload::PatientRegistration(b)) => {
                assert_eq!(
                    (
                        a.sex,
                        a.birth_year,
                        &a.region_code,
                        a.death_time_ms.is_some()
                    ),
                    (
                        b.sex,
                        b.birth_year,
                        &b.region_code,
                        b.death_time_ms.is_some()
                    )
                );
                assert_eq!(a.programmes.len(), b.programmes.len());
            }
            (Payload::LabResult(a), Payload::LabResult(b)) => {
                assert_eq!((&a.loinc, &a.unit), (&b.loinc, &b.unit));
                assert!(
                    close(a.value, b.value),
                    "{} vs {} ({})",
                    a.value,
                    b.value,
                    a.loinc
                );
                assert!(
                    (got.event_time_ms - expected.event_time_ms).abs() < 1_000,
                    "local-time text keeps seconds"
                );
            }
            (Payload::VitalSign(a), Payload::VitalSign(b)) => assert_eq!(
                (a.systolic_mmhg, a.diastolic_mmhg),
                (b.systolic_mmhg, b.diastolic_mmhg)
            ),
            (Payload::FollowUpVisit(a), Payload::FollowUpVisit(b)) => {
                assert_eq!(
                    (
                        a.condition,
                        a.visit_mode,
                        a.systolic_mmhg,
                        a.fasting_glucose_mmol_l
                    ),
                    (
                        b.condition,
                        b.visit_mode,
                        b.systolic_mmhg,
                        b.fasting_glucose_mmol_l
                    )
                );
                assert!(
                    (got.event_time_ms - expected.event_time_ms).abs() < 1_000,
                    "local-time text keeps seconds"
                );
            }
            (Payload::Diagnosis(a), Payload::Diagnosis(b)) => {
                assert_eq!(squash_icd(&a.icd10), squash_icd(&b.icd10))
            }
            (Payload::Prescription(a), Payload::Prescription(b)) => {
                assert_eq!(a.atc_code, b.atc_code)
            }
            (Payload::Encounter(a), Payload::Encounter(b)) => assert_eq!(
                (a.encounter_type, &a.department_code),
                (b.encounter_type, &b.department_code)
            ),
            (a, b) => panic!("kinds differ: {a:?} vs {b:?}"),
        }
        *checked.entry(expected.payload.kind()).or_default() += 1;
    }
    assert_eq!(
        checked.len(),
        7,
        "every kind of record was checked: {checked:?}"
    );
}

#[test]
fn ingest_verdicts_reconcile_exactly_with_the_injected_defects() {
    let catalog = catalog();
    let config = config();
    let rates = DefectRates {
        duplicate: 0.02,
        late: 0.02,
        correction: 0.02,
        deletion: 0.02,
        unknown_code: 0.02,
        wrong_unit: 0.02,
        missing_field: 0.02,
        impossible_value: 0.02,
        missing_identifier: 0.02,
        malformed: 0.02,
    };
    let mut sim = Simulation::new(&config);
    let mut cdc = CdcRenderer::new(&catalog, config.hospitals, config.seed, 480, rates).unwrap();
    let mut all: Vec<CdcRecord> = Vec::new();
    while let Some(event) = sim.next() {
        cdc.render(&sim, &event, &mut all);
    }
    cdc.finish(&mut all);
    let manifest = cdc.manifest.clone();
    assert_eq!(manifest.records as usize, all.len());
    for kind in [
        "duplicate",
        "late",
        "correction",
        "deletion",
        "unknown_code",
        "wrong_unit",
        "missing_field",
        "impossible_value",
        "missing_identifier",
        "malformed",
    ] {
        assert!(
            manifest.defects.get(kind).copied().unwrap_or(0) > 0,
            "{kind} injected: {:?}",
            manifest.defects
        );
    }

    let key = key();
    let adapter = Adapter {
        catalog: &catalog,
        key: &key,
        utc_offset_minutes: 480,
        now_ms: vigil_runtime::time::now_ms(),
    };
    let (mut accepted, mut tombstones, mut rejected) = (0u64, 0u64, BTreeMap::<String, u64>::new());
    let mut operations = BTreeMap::<String, u64>::new();
    for record in &all {
        match adapter.adapt(record.value.as_deref()) {
            Outcome::Accepted(e) | Outcome::AcceptedUnmapped(e, _) => {
                accepted += 1;
                *operations.entry(format!("{:?}", e.operation)).or_default() += 1;
            }
            Outcome::Rejected(r) => {
                *rejected.entry(r.reason.as_str().to_string()).or_default() += 1
            }
            Outcome::Tombstone => tombstones += 1,
        }
    }
    assert_eq!(
        (accepted, &rejected),
        (manifest.accepted, &manifest.rejected)
    );
    assert_eq!(tombstones, manifest.tombstones);
    assert_eq!(rejected, manifest.rejected);
    // Corrections and deletions arrive as canonical updates and retractions.
    assert!(
        operations
            .get(&format!("{:?}", Operation::Update))
            .copied()
            .unwrap_or(0)
            >= manifest.defects["correction"]
    );
    assert_eq!(
        operations[&format!("{:?}", Operation::Delete)],
        manifest.defects["deletion"]
    );
}
