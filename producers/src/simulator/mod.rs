//! `vigil simulate`: a synthetic region of hospitals and chronic-disease patients.

mod canonical;
pub mod cdc;
pub mod config;
pub mod facts;
pub mod identity;
pub mod population;
mod run;

pub use canonical::CanonicalRenderer;
pub use cdc::{DefectRates, Manifest};
pub use config::{Output, Pace, SimulateConfig};
pub use population::Simulation;
pub use run::{run, SimulateSummary};
