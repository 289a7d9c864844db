//! Vigil's wire format.
//!
//! Every record that crosses Kafka is Avro in single-object encoding: two magic bytes, the
//! CRC-64-AVRO fingerprint of the writer's schema, then the datum. The `.avsc` files in
//! `schemas/avro/` are the contract; the Rust types here mirror them field by field and are
//! (de)serialised with schemas parsed once per process (see [`codec`]).
//!
//! Evolution rule: every change is backward compatible (new fields carry defaults). A replaced
//! schema moves to `schemas/avro/history/` and stays readable: the decoder picks the writer schema
//! by fingerprint and serde fills new fields from their defaults.

mod codec;
mod dead_letter;
mod direct;
mod error;
pub mod ids;
mod records;
pub mod terminology;
pub mod validate;

pub use codec::{AvroCodec, WireRecord, SINGLE_OBJECT_MAGIC};
pub use dead_letter::InputPosition;
pub use error::SchemaError;
pub use records::*;
