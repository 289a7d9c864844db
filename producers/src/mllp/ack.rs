//! The HL7 v2 acknowledgement (original mode): MSH, MSA and one ERR per refusal.

use vigil_schemas::ids::stable_id;

use super::message::{separators, Header, Refused};
use crate::ingest::adapter::Reason;

/// How a message was taken (HL7 table 0008).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// AA: everything in it is durable.
    Accept,
    /// AE: its content was (partly) refused; what was accepted is durable.
    Error,
    /// AR: refused as a whole (header, type, hospital), or not taken because the edge could
    /// not make it durable just now: the sender may send it again.
    Reject,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::Accept => "AA",
            AckCode::Error => "AE",
            AckCode::Reject => "AR",
        }
    }
}

/// HL7 table 0357's error code for a reason.
fn error_code(reason: Reason) -> (&'static str, &'static str) {
    match reason {
        Reason::UnsupportedMessage => ("200", "Unsupported message type"),
        Reason::UnknownHospital => ("204", "Unknown key identifier"),
        Reason::MissingField | Reason::MissingPatientIdentifier => {
            ("101", "Required field missing")
        }
        Reason::InvalidCode | Reason::UnknownLocalCode | Reason::UnknownTable => {
            ("103", "Table value not found")
        }
        Reason::MalformedRecord
        | Reason::InvalidPatientIdentifier
        | Reason::InvalidDate
        | Reason::NonNumericResult
        | Reason::UnexpectedUnit
        | Reason::ValueOutOfRange
        | Reason::FieldTooLong
        | Reason::RecordTooLarge => ("102", "Data type error"),
    }
}

/// What the acknowledgement says besides the code.
pub enum AckText<'a> {
    /// Accepted: how many canonical events the message became.
    Accepted(usize),
    /// Refused, in part or whole.
    Refused(&'a [Refused]),
    /// Not taken: the edge could not make it durable (the broker is unreachable).
    Unavailable,
}

/// The acknowledgement of `header`'s message, written with the default separators.
pub fn acknowledgement(header: &Header, code: AckCode, text: AckText<'_>, now: &str) -> String {
    let sep = separators();
    let escape = |value: &str| sep.encode(value).to_string();
    let version = if header.version.is_empty() {
        "2.5"
    } else {
        &header.version
    };
    let ack_id = &stable_id(&[header.control_id.as_bytes(), b"ack", now.as_bytes()])[..20];
    let mut out = format!(
        "MSH|^~\\&|VIGIL|VIGIL-EDGE|{}|{}|{now}||ACK^{}^ACK|{ack_id}|P|{}\r",
        escape(&header.sending_application),
        escape(&header.sending_facility),
        escape(&header.trigger),
        escape(version),
    );
    let summary = match &text {
        AckText::Accepted(events) => format!("accepted as {events} event(s)"),
        AckText::Refused(refused) => match refused {
            [one] if one.sequence == 0 => one.rejection.detail.clone(),
            many => format!("{} part(s) refused; the rest accepted", many.len()),
        },
        AckText::Unavailable => {
            "not stored: the edge cannot reach its broker; send the message again".to_string()
        }
    };
    out.push_str(&format!(
        "MSA|{}|{}|{}\r",
        code.as_str(),
        escape(&header.control_id),
        escape(&summary)
    ));
    match text {
        AckText::Refused(refused) => {
            for part in refused {
                let (number, name) = error_code(part.rejection.reason);
                let location = if part.sequence == 0 {
                    String::new()
                } else {
                    format!("{}^{}", part.segment, part.sequence)
                };
                out.push_str(&format!(
                    "ERR||{location}|{number}^{name}^HL70357|E||||{}\r",
                    escape(&format!(
                        "{}: {}",
                        part.rejection.reason.as_str(),
                        part.rejection.detail
                    ))
                ));
            }
        }
        AckText::Unavailable => {
            out.push_str("ERR|||207^Application internal error^HL70357|E\r");
        }
        AckText::Accepted(_) => {}
    }
    out
}
