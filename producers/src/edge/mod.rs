//! What the hospital edge knows: vendors' table shapes, code tables, hospitals, and how their
//! systems write time. Shared by the CDC simulator (which writes through it) and the ingest
//! (which reads through it).

pub mod catalog;
pub mod config;
pub mod resident_id;
pub mod shapes;
pub mod time;

pub use catalog::{Catalog, CodeTable, HospitalProfile, LabCode};
pub use config::EdgeConfig;
pub use shapes::{TableKind, VendorShape};
