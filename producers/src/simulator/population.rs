//! The synthetic population and its clinical course.
//!
//! Each patient has latent characteristics (true blood pressure, glycaemia, kidney function,
//! adherence) that drift with treatment, and a schedule of visits kept in one priority queue, so
//! the whole region's history comes out in time order with memory proportional to the number of
//! patients, not events. One seeded ChaCha generator drives everything: same seed, same history.
//!
//! Figures are plausible orders of magnitude for a Chinese primary-care chronic-disease
//! programme, chosen so that every alert rule and metric has something to show: about 75% of
//! enrolled patients have hypertension and 40% diabetes (15% both); roughly two thirds attend
//! each quarterly follow-up; complications occur at a few per hundred patient-years.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use vigil_schemas::{Condition, EncounterType, Sex, VisitMode};

use super::config::SimulateConfig;
use super::facts::{Drug, Fact, LabTest, Registration, SimEvent};

const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: i64 = 60_000;

/// County-level region codes the hospitals serve (Hangzhou districts).
pub const REGIONS: [&str; 6] = ["330102", "330105", "330106", "330108", "330110", "330114"];

/// What a patient is, as the simulation sees it (hidden from the HIS).
#[derive(Debug, Clone)]
pub struct SimPatient {
    pub hospital: u16,
    pub sex: Sex,
    pub birth_year: i32,
    pub birth_day_of_year: u16,
    pub region: u8,
    pub hypertension: bool,
    pub diabetes: bool,
    pub enrolled_ms: i64,
    pub registration_seq: u64,
    /// Probability of attending a due follow-up.
    adherence: f32,
    /// Untreated mean systolic pressure.
    sbp_untreated: f32,
    /// 0..1: how far treatment has brought values towards target.
    treatment: f32,
    fpg_untreated: f32,
    egfr: f32,
    /// eGFR change per year (negative: decline).
    egfr_slope: f32,
    complications: u8,
    pub dead: bool,
    last_visit_ms: i64,
    uncontrolled_streak: u8,
}

const COMP_STROKE: u8 = 1;
const COMP_MI: u8 = 2;
const COMP_KIDNEY: u8 = 4;
const COMP_EYE: u8 = 8;
const COMP_FOOT: u8 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Visit {
    Registration,
    FollowUp,
    Clinic,
}

/// Generates the region's history in time order.
pub struct Simulation {
    rng: ChaCha8Rng,
    patients: Vec<SimPatient>,
    queue: BinaryHeap<Reverse<(i64, u32, Visit)>>,
    /// Facts already decided, released in event-time order (a complication reported days
    /// after the visit that found it comes out after everything in between).
    ready: BinaryHeap<Reverse<(i64, u64)>>,
    ready_events: HashMap<u64, SimEvent>,
    ready_order: u64,
    record_seq: Vec<u64>,
    end_ms: i64,
    pub start_ms: i64,
    hospitals: u16,
}

impl Simulation {
    pub fn new(config: &SimulateConfig) -> Self {
        let (start_ms, end_ms) = config.span_ms();
        Self::with_span(config, start_ms, end_ms)
    }

    pub fn with_span(config: &SimulateConfig, start_ms: i64, end_ms: i64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let hospitals = config.hospitals;
        let mut record_seq = vec![0u64; hospitals as usize];
        let mut patients = Vec::with_capacity(config.patients as usize);
        let mut queue = BinaryHeap::with_capacity(config.patients as usize * 2);
        let span = (end_ms - start_ms).max(DAY_MS);
        let end_year = vigil_runtime::time::civil_from_days((end_ms / DAY_MS) as i32).0;
        for index in 0..config.patients {
            // Hospital sizes differ: a Zipf-like weight favours the first hospitals.
            let hospital = pick_weighted_hospital(&mut rng, hospitals);
            let roll: f64 = rng.random();
            let (hypertension, diabetes) = if roll < 0.60 {
                (true, false)
            } else if roll < 0.85 {
                (false, true)
            } else {
                (true, true)
            };
            let age = (Normal::new(64.0, 11.0)
                .map(|n| n.sample(&mut rng))
                .unwrap_or(64.0) as i32)
                .clamp(30, 95);
            let enrolled_ms = if rng.random_bool(0.85) {
                // Already under management when the history starts.
                start_ms - rng.random_range(30..2_000) * DAY_MS
            } else {
                start_ms + rng.random_range(0..span)
            };
            let seq = next_seq(&mut record_seq, hospital);
            let patient = SimPatient {
                hospital,
                sex: if rng.random_bool(0.5) {
                    Sex::Male
                } else {
                    Sex::Female
                },
                birth_year: end_year - age,
                birth_day_of_year: rng.random_range(1..=365),
                region: rng.random_range(0..REGIONS.len() as u8),
                hypertension,
                diabetes,
                enrolled_ms,
                registration_seq: seq,
                // Most managed patients come most of the time; a minority rarely do.
                adherence: if rng.random_bool(0.8) {
                    rng.random_range(0.75..0.98)
                } else {
                    rng.random_range(0.3..0.7)
                },
                sbp_untreated: normal(&mut rng, 158.0, 14.0).clamp(135.0, 200.0) as f32,
                treatment: if enrolled_ms < start_ms {
                    rng.random_range(0.2..0.8)
                } else {
                    0.0
                },
                fpg_untreated: normal(&mut rng, 9.0, 1.8).clamp(6.5, 15.0) as f32,
                egfr: (normal(&mut rng, 100.0, 14.0) - 0.8 * (age - 40).max(0) as f64)
                    .clamp(12.0, 125.0) as f32,
                egfr_slope: if diabetes && rng.random_bool(0.25) {
                    -rng.random_range(4.0..9.0)
                } else {
                    -rng.random_range(0.3..2.5)
                },
                complications: 0,
                dead: false,
                last_visit_ms: enrolled_ms,
                uncontrolled_streak: 0,
            };
            let registration_at = patient.enrolled_ms.max(start_ms);
            queue.push(Reverse((registration_at, index, Visit::Registration)));
            patients.push(patient);
        }
        Simulation {
            rng,
            patients,
            queue,
            ready: BinaryHeap::new(),
            ready_events: HashMap::new(),
            ready_order: 0,
            record_seq,
            end_ms,
            start_ms,
            hospitals,
        }
    }

    pub fn patient(&self, index: u32) -> Option<&SimPatient> {
        self.patients.get(index as usize)
    }

    pub fn hospitals(&self) -> u16 {
        self.hospitals
    }

    pub fn end_ms(&self) -> i64 {
        self.end_ms
    }

    fn visit(&mut self, time_ms: i64, index: u32, visit: Visit) {
        if self.patients[index as usize].dead {
            return;
        }
        match visit {
            Visit::Registration => self.register(time_ms, index),
            Visit::FollowUp => self.follow_up(time_ms, index),
            Visit::Clinic => self.clinic_visit(time_ms, index),
        }
    }

    fn register(&mut self, time_ms: i64, index: u32) {
        let p = &self.patients[index as usize];
        let mut programmes = Vec::new();
        if p.hypertension {
            programmes.push((Condition::Hypertension, p.enrolled_ms));
        }
        if p.diabetes {
            programmes.push((Condition::Diabetes, p.enrolled_ms));
        }
        let registration = Registration {
            record_seq: p.registration_seq,
            sex: p.sex,
            birth_year: p.birth_year,
            birth_day_of_year: p.birth_day_of_year,
            region_code: REGIONS[p.region as usize],
            programmes,
            death_ms: None,
            is_update: false,
        };
        let hospital = p.hospital;
        let seq = p.registration_seq;
        self.release(SimEvent {
            time_ms,
            hospital,
            patient: index,
            record_seq: seq,
            fact: Fact::Registration(registration),
        });
        // First follow-up: soon after a new enrolment, anywhere in the quarter otherwise.
        let first = if self.patients[index as usize].enrolled_ms >= self.start_ms {
            time_ms + self.rng.random_range(3..20) * DAY_MS
        } else {
            time_ms + self.rng.random_range(0..90) * DAY_MS
        };
        self.schedule(first, index, Visit::FollowUp);
        let clinic = time_ms + self.rng.random_range(10..200) * DAY_MS;
        self.schedule(clinic, index, Visit::Clinic);
    }

    // Long by design (~125 lines): one follow-up visit as a clinician records it (attendance,
    // mode, readings drawn from the patient's control, the next visit booked); splitting it
    // would scatter one clinical story over several places. Simulator only.
    fn follow_up(&mut self, due_ms: i64, index: u32) {
        let attends = self
            .rng
            .random_bool(self.patients[index as usize].adherence as f64);
        if !attends {
            // Missed: the doctor tries again in one to two months.
            let retry = due_ms + self.rng.random_range(30..60) * DAY_MS;
            self.schedule(retry, index, Visit::FollowUp);
            return;
        }
        let time_ms = due_ms + self.rng.random_range(8 * 60..17 * 60) * MINUTE_MS;
        let mode = match self.rng.random_range(0..100) {
            0..=74 => VisitMode::Clinic,
            75..=89 => VisitMode::Home,
            _ => VisitMode::Phone,
        };
        let face_to_face = mode.is_face_to_face();
        let hospital = self.patients[index as usize].hospital;
        let clinician = self.rng.random_range(1..40) as u16;
        let encounter_type = if mode == VisitMode::Home {
            EncounterType::HomeVisit
        } else {
            EncounterType::Outpatient
        };
        if face_to_face {
            self.emit(
                time_ms,
                index,
                Fact::Encounter {
                    encounter_type,
                    department: "GP",
                    end_ms: time_ms + 20 * MINUTE_MS,
                },
            );
        }
        // Treatment works better the more faithfully it is followed.
        {
            let adherence = self.patients[index as usize].adherence;
            let p = &mut self.patients[index as usize];
            p.treatment = (p.treatment + 0.12 * adherence).min(1.0);
        }
        let (sbp, dbp) = self.measure_bp(index);
        let (fpg, hba1c) = if self.patients[index as usize].diabetes {
            let fpg = self.measure_glucose(index);
            let hba1c = if self.rng.random_bool(0.5) {
                Some(round1(
                    ((fpg * 18.016 + 46.7) / 28.7 + normal(&mut self.rng, 0.3, 0.4))
                        .clamp(4.5, 15.0),
                ))
            } else {
                None
            };
            (Some(fpg), hba1c)
        } else {
            (None, None)
        };
        let measured_bp = face_to_face || self.rng.random_bool(0.3); // self-measured at home
        if face_to_face {
            let heart_rate = normal(&mut self.rng, 76.0, 9.0).round();
            self.emit(
                time_ms + MINUTE_MS,
                index,
                Fact::Vitals {
                    systolic: sbp,
                    diastolic: dbp,
                    heart_rate,
                },
            );
        }
        let uncontrolled = sbp >= 140.0 || dbp >= 90.0;
        let next = if uncontrolled
            && self.patients[index as usize].hypertension
            && self.rng.random_bool(0.6)
        {
            time_ms + 14 * DAY_MS // the standard asks for a re-visit within two weeks
        } else {
            // On schedule: about quarterly, inside the 100-day window of the missed-follow-up rule;
            // only a missed visit (adherence) takes a patient past it.
            time_ms + (normal(&mut self.rng, 82.0, 5.0).clamp(68.0, 96.0) as i64) * DAY_MS
        };
        let conditions: Vec<Condition> = {
            let p = &self.patients[index as usize];
            [
                (p.hypertension, Condition::Hypertension),
                (p.diabetes, Condition::Diabetes),
            ]
            .into_iter()
            .filter(|(has, _)| *has)
            .map(|(_, c)| c)
            .collect()
        };
        for condition in conditions {
            let is_dm = condition == Condition::Diabetes;
            self.emit(
                time_ms + 2 * MINUTE_MS,
                index,
                Fact::FollowUp {
                    condition,
                    mode,
                    systolic: measured_bp.then_some(sbp),
                    diastolic: measured_bp.then_some(dbp),
                    fasting_glucose: if is_dm { fpg } else { None },
                    hba1c: if is_dm { hba1c } else { None },
                    next_visit_ms: next,
                    clinician,
                },
            );
        }
        {
            let p = &mut self.patients[index as usize];
            p.uncontrolled_streak = if uncontrolled {
                p.uncontrolled_streak.saturating_add(1)
            } else {
                0
            };
        }
        if face_to_face {
            self.routine_orders(time_ms + 5 * MINUTE_MS, index, hba1c, fpg);
        }
        self.maybe_complication(time_ms, index);
        self.maybe_die(time_ms, index, hospital);
        self.patients[index as usize].last_visit_ms = time_ms;
        self.schedule(next, index, Visit::FollowUp);
    }

    fn clinic_visit(&mut self, due_ms: i64, index: u32) {
        let time_ms = due_ms + self.rng.random_range(8 * 60..17 * 60) * MINUTE_MS;
        let department = if self.patients[index as usize].diabetes && self.rng.random_bool(0.5) {
            "ENDO"
        } else {
            "CARD"
        };
        self.emit(
            time_ms,
            index,
            Fact::Encounter {
                encounter_type: EncounterType::Outpatient,
                department,
                end_ms: time_ms + 15 * MINUTE_MS,
            },
        );
        let (sbp, dbp) = self.measure_bp(index);
        let heart_rate = normal(&mut self.rng, 78.0, 10.0).round();
        self.emit(
            time_ms + MINUTE_MS,
            index,
            Fact::Vitals {
                systolic: sbp,
                diastolic: dbp,
                heart_rate,
            },
        );
        if self.patients[index as usize].diabetes && self.rng.random_bool(0.6) {
            let glucose = self.measure_glucose(index) + normal(&mut self.rng, 1.5, 1.0).max(0.0);
            self.emit(
                time_ms + 30 * MINUTE_MS,
                index,
                Fact::Lab {
                    test: LabTest::RandomGlucose,
                    value: round1(glucose),
                },
            );
        }
        let diagnosis_code = if department == "ENDO" { "E11.9" } else { "I10" };
        self.emit(
            time_ms + 10 * MINUTE_MS,
            index,
            Fact::Diagnosis {
                icd10: diagnosis_code,
                primary: true,
                department,
            },
        );
        self.maybe_complication(time_ms, index);
        let next = time_ms + self.rng.random_range(60..240) * DAY_MS;
        self.schedule(next, index, Visit::Clinic);
    }

    /// Prescription refills, the chronic diagnosis and the periodic laboratory work-up.
    fn routine_orders(&mut self, time_ms: i64, index: u32, hba1c: Option<f64>, fpg: Option<f64>) {
        let (hypertension, diabetes) = {
            let p = &self.patients[index as usize];
            (p.hypertension, p.diabetes)
        };
        if hypertension {
            self.emit(
                time_ms,
                index,
                Fact::Diagnosis {
                    icd10: "I10",
                    primary: true,
                    department: "GP",
                },
            );
            let drug = [
                Drug::Amlodipine,
                Drug::Enalapril,
                Drug::Losartan,
                Drug::Hydrochlorothiazide,
            ][self.rng.random_range(0..4)];
            self.emit(time_ms + MINUTE_MS, index, Fact::Prescription { drug });
        }
        if diabetes {
            self.emit(
                time_ms,
                index,
                Fact::Diagnosis {
                    icd10: "E11.9",
                    primary: !hypertension,
                    department: "GP",
                },
            );
            let drug = [
                Drug::Metformin,
                Drug::Metformin,
                Drug::Gliclazide,
                Drug::InsulinGlargine,
            ][self.rng.random_range(0..4)];
            self.emit(time_ms + MINUTE_MS, index, Fact::Prescription { drug });
            if let Some(value) = hba1c {
                self.emit(
                    time_ms + 3 * 60 * MINUTE_MS,
                    index,
                    Fact::Lab {
                        test: LabTest::Hba1c,
                        value,
                    },
                );
            }
            if let Some(value) = fpg {
                if self.rng.random_bool(0.3) {
                    self.emit(
                        time_ms + 2 * 60 * MINUTE_MS,
                        index,
                        Fact::Lab {
                            test: LabTest::FastingGlucose,
                            value,
                        },
                    );
                }
            }
        }
        // Kidney function about once a year (twice for diabetes).
        let kidney_check = if diabetes { 0.5 } else { 0.25 };
        if self.rng.random_bool(kidney_check) {
            let egfr = self.current_egfr(index, time_ms);
            let creatinine = creatinine_from_egfr(
                egfr,
                self.age_at(index, time_ms),
                self.patients[index as usize].sex,
            );
            self.emit(
                time_ms + 4 * 60 * MINUTE_MS,
                index,
                Fact::Lab {
                    test: LabTest::Creatinine,
                    value: creatinine.round(),
                },
            );
            self.emit(
                time_ms + 4 * 60 * MINUTE_MS + MINUTE_MS,
                index,
                Fact::Lab {
                    test: LabTest::Egfr,
                    value: egfr.round(),
                },
            );
            if diabetes && self.rng.random_bool(0.5) {
                let acr = if egfr < 60.0 {
                    self.rng.random_range(30.0..600.0)
                } else {
                    self.rng.random_range(5.0..60.0)
                };
                self.emit(
                    time_ms + 4 * 60 * MINUTE_MS + 2 * MINUTE_MS,
                    index,
                    Fact::Lab {
                        test: LabTest::UrineAcr,
                        value: round1(acr),
                    },
                );
            }
        }
    }

    fn measure_bp(&mut self, index: u32) -> (f64, f64) {
        let p = &self.patients[index as usize];
        let target = if p.hypertension {
            p.sbp_untreated as f64 - 28.0 * p.treatment as f64
        } else {
            128.0
        };
        let mut sbp = normal(&mut self.rng, target, 9.0);
        // Occasional crisis readings (missed doses, pain, stress).
        if self.rng.random_bool(0.012) {
            sbp += self.rng.random_range(35.0..55.0);
        }
        let dbp = 0.5 * sbp + 15.0 + normal(&mut self.rng, 0.0, 6.0);
        (
            sbp.round().clamp(85.0, 260.0),
            dbp.round().clamp(45.0, 150.0),
        )
    }

    fn measure_glucose(&mut self, index: u32) -> f64 {
        let p = &self.patients[index as usize];
        let target = p.fpg_untreated as f64 - 2.5 * p.treatment as f64;
        let roll: f64 = self.rng.random();
        let value = if roll < 0.006 {
            self.rng.random_range(2.2..3.8) // hypoglycaemia, mostly on insulin or sulfonylureas
        } else if roll < 0.012 {
            self.rng.random_range(16.8..24.0) // hyperglycaemic crisis
        } else {
            normal(&mut self.rng, target, 0.9).clamp(3.9, 16.0)
        };
        round1(value)
    }

    fn current_egfr(&self, index: u32, time_ms: i64) -> f64 {
        let p = &self.patients[index as usize];
        let years = (time_ms - self.start_ms) as f64 / (365.25 * DAY_MS as f64);
        (p.egfr as f64 + p.egfr_slope as f64 * years.max(0.0)).clamp(5.0, 130.0)
    }

    fn age_at(&self, index: u32, time_ms: i64) -> f64 {
        let year = vigil_runtime::time::civil_from_days((time_ms / DAY_MS) as i32).0;
        (year - self.patients[index as usize].birth_year) as f64
    }

    /// Complications at rates of a few per hundred patient-years, higher when uncontrolled.
    fn maybe_complication(&mut self, time_ms: i64, index: u32) {
        let (hypertension, diabetes, streak, existing) = {
            let p = &self.patients[index as usize];
            (
                p.hypertension,
                p.diabetes,
                p.uncontrolled_streak,
                p.complications,
            )
        };
        let risk = 1.0 + streak as f64 * 0.5;
        let mut candidates: Vec<(u8, &'static str, f64, EncounterType, &'static str)> = vec![
            (
                COMP_STROKE,
                "I63.900",
                0.0025 * risk,
                EncounterType::Inpatient,
                "NEURO",
            ),
            (
                COMP_MI,
                "I21.900",
                0.0015 * risk,
                EncounterType::Emergency,
                "CARD",
            ),
        ];
        if diabetes {
            candidates.push((
                COMP_KIDNEY,
                "E11.200",
                0.005,
                EncounterType::Outpatient,
                "NEPH",
            ));
            candidates.push((
                COMP_EYE,
                "E11.300",
                0.005,
                EncounterType::Outpatient,
                "OPHT",
            ));
            candidates.push((
                COMP_FOOT,
                "E11.500",
                0.0015,
                EncounterType::Outpatient,
                "ENDO",
            ));
        }
        if !hypertension && !diabetes {
            return;
        }
        for (bit, icd10, probability, encounter_type, department) in candidates {
            if existing & bit != 0 || !self.rng.random_bool(probability.min(1.0)) {
                continue;
            }
            self.patients[index as usize].complications |= bit;
            let at = time_ms + self.rng.random_range(1..20) * DAY_MS;
            self.emit(
                at,
                index,
                Fact::Encounter {
                    encounter_type,
                    department,
                    end_ms: at + 2 * DAY_MS,
                },
            );
            self.emit(
                at + 60 * MINUTE_MS,
                index,
                Fact::Diagnosis {
                    icd10,
                    primary: true,
                    department,
                },
            );
            if bit == COMP_KIDNEY {
                let p = &mut self.patients[index as usize];
                p.egfr_slope = p.egfr_slope.min(-5.0);
            }
        }
    }

    fn maybe_die(&mut self, time_ms: i64, index: u32, hospital: u16) {
        let age = self.age_at(index, time_ms);
        // Quarterly probability: ~1% a year at 60, rising with age and complications.
        let complications = self.patients[index as usize].complications.count_ones() as f64;
        let probability = (0.0025 * ((age - 60.0) / 10.0).exp() * (1.0 + complications)).min(0.2);
        if !self.rng.random_bool(probability) {
            return;
        }
        let death_ms = time_ms + self.rng.random_range(5..80) * DAY_MS;
        if death_ms >= self.end_ms {
            return;
        }
        let p = &mut self.patients[index as usize];
        p.dead = true;
        let mut programmes = Vec::new();
        if p.hypertension {
            programmes.push((Condition::Hypertension, p.enrolled_ms));
        }
        if p.diabetes {
            programmes.push((Condition::Diabetes, p.enrolled_ms));
        }
        let registration = Registration {
            record_seq: p.registration_seq,
            sex: p.sex,
            birth_year: p.birth_year,
            birth_day_of_year: p.birth_day_of_year,
            region_code: REGIONS[p.region as usize],
            programmes,
            death_ms: Some(death_ms),
            is_update: true,
        };
        let seq = p.registration_seq;
        self.release(SimEvent {
            time_ms: death_ms + DAY_MS,
            hospital,
            patient: index,
            record_seq: seq,
            fact: Fact::Registration(registration),
        });
    }

    fn emit(&mut self, time_ms: i64, index: u32, fact: Fact) {
        let hospital = self.patients[index as usize].hospital;
        let record_seq = next_seq(&mut self.record_seq, hospital);
        self.release(SimEvent {
            time_ms,
            hospital,
            patient: index,
            record_seq,
            fact,
        });
    }

    fn release(&mut self, event: SimEvent) {
        if event.time_ms >= self.end_ms {
            return;
        }
        self.ready_order += 1;
        self.ready.push(Reverse((event.time_ms, self.ready_order)));
        self.ready_events.insert(self.ready_order, event);
    }

    fn schedule(&mut self, time_ms: i64, index: u32, visit: Visit) {
        if time_ms < self.end_ms {
            self.queue.push(Reverse((time_ms, index, visit)));
        }
    }
}

impl Iterator for Simulation {
    type Item = SimEvent;

    fn next(&mut self) -> Option<SimEvent> {
        loop {
            let next_visit = self.queue.peek().map(|Reverse((time, _, _))| *time);
            let next_ready = self.ready.peek().map(|Reverse((time, _))| *time);
            let release_first = match (next_ready, next_visit) {
                (None, None) => return None,
                (Some(ready), Some(visit)) => ready <= visit,
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            if release_first {
                let Reverse((_, order)) = self.ready.pop()?;
                if let Some(event) = self.ready_events.remove(&order) {
                    return Some(event);
                }
            } else {
                let Reverse((time_ms, index, visit)) = self.queue.pop()?;
                self.visit(time_ms, index, visit);
            }
        }
    }
}

fn next_seq(record_seq: &mut [u64], hospital: u16) -> u64 {
    let slot = &mut record_seq[hospital as usize];
    *slot += 1;
    *slot
}

fn pick_weighted_hospital(rng: &mut ChaCha8Rng, hospitals: u16) -> u16 {
    // Weight 1/(i+1): the first hospital is the county hospital, the rest smaller centres.
    let total: f64 = (0..hospitals).map(|i| 1.0 / (i as f64 + 1.0)).sum();
    let mut roll = rng.random::<f64>() * total;
    for i in 0..hospitals {
        roll -= 1.0 / (i as f64 + 1.0);
        if roll <= 0.0 {
            return i;
        }
    }
    hospitals - 1
}

fn normal(rng: &mut ChaCha8Rng, mean: f64, sd: f64) -> f64 {
    Normal::new(mean, sd).map(|n| n.sample(rng)).unwrap_or(mean)
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// Serum creatinine (µmol/L) that yields `egfr` under CKD-EPI 2021, by inverting the equation.
pub fn creatinine_from_egfr(egfr: f64, age: f64, sex: Sex) -> f64 {
    let female = sex == Sex::Female;
    let (kappa, alpha) = if female { (0.7, -0.241) } else { (0.9, -0.302) };
    let sex_factor = if female { 1.012 } else { 1.0 };
    let base = 142.0 * 0.9938f64.powf(age) * sex_factor;
    let ratio = egfr / base; // = min(s,1)^alpha * max(s,1)^-1.2 with s = Scr/kappa
    let s = if ratio >= 1.0 {
        ratio.powf(1.0 / alpha)
    } else {
        ratio.powf(1.0 / -1.2)
    };
    s * kappa * 88.4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(patients: u32) -> SimulateConfig {
        SimulateConfig {
            patients,
            hospitals: 3,
            end_date: "2026-01-01".into(),
            ..SimulateConfig::default()
        }
    }

    #[test]
    fn same_seed_same_history_and_time_ordered() {
        let a: Vec<SimEvent> = Simulation::new(&config(300)).collect();
        let b: Vec<SimEvent> = Simulation::new(&config(300)).collect();
        assert_eq!(a, b);
        assert!(
            a.len() > 300 * 10,
            "two years of 300 patients gave only {} events",
            a.len()
        );
        let other: Vec<SimEvent> = Simulation::new(&SimulateConfig {
            seed: 7,
            ..config(300)
        })
        .collect();
        assert_ne!(a, other);
        // The history comes out in event-time order.
        assert!(a.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
        let (start, end) = config(300).span_ms();
        assert!(a.iter().all(|e| e.time_ms >= start && e.time_ms < end));
    }

    #[test]
    fn every_clinical_situation_occurs_in_a_modest_population() {
        let events: Vec<SimEvent> = Simulation::new(&config(2_000)).collect();
        let crisis = events.iter().filter(|e| matches!(e.fact, Fact::Vitals { systolic, diastolic, .. } if systolic >= 180.0 || diastolic >= 110.0)).count();
        let hypo = events
            .iter()
            .filter(
                |e| matches!(e.fact, Fact::FollowUp { fasting_glucose: Some(g), .. } if g < 3.9),
            )
            .count();
        let hyper = events
            .iter()
            .filter(
                |e| matches!(e.fact, Fact::FollowUp { fasting_glucose: Some(g), .. } if g >= 16.7),
            )
            .count();
        let complications = events.iter().filter(|e| matches!(e.fact, Fact::Diagnosis { icd10, .. } if icd10.starts_with("I63") || icd10.starts_with("I21") || icd10.starts_with("E11.2"))).count();
        let deaths = events
            .iter()
            .filter(|e| matches!(&e.fact, Fact::Registration(r) if r.death_ms.is_some()))
            .count();
        let follow_ups = events
            .iter()
            .filter(|e| matches!(e.fact, Fact::FollowUp { .. }))
            .count();
        assert!(crisis > 20, "crisis readings: {crisis}");
        assert!(hypo > 3 && hyper > 3, "hypo {hypo}, hyper {hyper}");
        assert!(complications > 10, "complications: {complications}");
        assert!(deaths > 5, "deaths: {deaths}");
        // Roughly quarterly follow-ups with imperfect adherence: between 2 and 8 a year per condition.
        let per_patient_year = follow_ups as f64 / (2_000.0 * 1.15 * 2.0);
        assert!(
            (2.0..8.0).contains(&per_patient_year),
            "follow-ups per patient-year: {per_patient_year}"
        );
    }

    #[test]
    fn creatinine_inversion_matches_ckd_epi_2021() {
        for (egfr, age, sex) in [
            (95.0, 45.0, Sex::Male),
            (58.0, 70.0, Sex::Female),
            (22.0, 80.0, Sex::Male),
            (110.0, 35.0, Sex::Female),
        ] {
            let scr_umol = creatinine_from_egfr(egfr, age, sex);
            let scr = scr_umol / 88.4;
            let female = sex == Sex::Female;
            let (k, a) = if female { (0.7, -0.241) } else { (0.9, -0.302) };
            let back = 142.0
                * (scr / k).min(1.0).powf(a)
                * (scr / k).max(1.0).powf(-1.2)
                * 0.9938f64.powf(age)
                * if female { 1.012 } else { 1.0 };
            assert!((back - egfr).abs() < 0.01, "{egfr} -> {scr_umol} -> {back}");
        }
    }
}
