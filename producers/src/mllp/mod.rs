//! `vigil ingest --mllp ADDR`: the edge's second door, HL7 v2 over MLLP, for the laboratory and
//! ADT systems that speak it rather than change data capture. Messages go through the same
//! catalogue, code tables, pseudonymisation and contract as change events, and are answered
//! with HL7 acknowledgements only once what they became is durable in the broker.

mod ack;
mod frame;
mod message;
mod server;

pub use ack::AckCode;
pub use frame::{framed, Frame, FrameReader};
pub use message::{hl7_time, Header, Hl7Adapter, Refused, Translated};
pub use server::run_mllp;

#[cfg(test)]
mod tests;
