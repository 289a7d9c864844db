//! Why the edge rejects a change event: the reason codes of its dead letters, shared by the
//! adapter, the simulator's defect manifest and the metrics, so none is spelled twice.

use vigil_schemas::validate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Not JSON, not UTF-8, not an object.
    MalformedRecord,
    /// No hospital of the catalogue has the event's connector name.
    UnknownHospital,
    /// The hospital's vendor has no table of that name.
    UnknownTable,
    MissingField,
    MissingPatientIdentifier,
    /// Not a resident identity number with the right check character.
    InvalidPatientIdentifier,
    /// A time or date that is missing its sense: before 1990, after tomorrow, impossible.
    InvalidDate,
    /// An enumerated column with a value the vendor shape does not list.
    InvalidCode,
    /// A local code the hospital's code table does not map.
    UnknownLocalCode,
    NonNumericResult,
    UnexpectedUnit,
    ValueOutOfRange,
    /// A text longer than the canonical contract allows.
    FieldTooLong,
    /// The canonical event would not fit in a Kafka record, or a message is over the size limit.
    RecordTooLarge,
    /// An HL7 v2 message of a type, trigger or processing mode the edge does not take.
    UnsupportedMessage,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MalformedRecord => "malformed_record",
            Reason::UnknownHospital => "unknown_hospital",
            Reason::UnknownTable => "unknown_table",
            Reason::MissingField => "missing_field",
            Reason::MissingPatientIdentifier => "missing_patient_identifier",
            Reason::InvalidPatientIdentifier => "invalid_patient_identifier",
            Reason::InvalidDate => "invalid_date",
            Reason::InvalidCode => "invalid_code",
            Reason::UnknownLocalCode => "unknown_local_code",
            Reason::NonNumericResult => "non_numeric_result",
            Reason::UnexpectedUnit => "unexpected_unit",
            Reason::ValueOutOfRange => "value_out_of_range",
            Reason::FieldTooLong => "field_too_long",
            Reason::RecordTooLarge => "record_too_large",
            Reason::UnsupportedMessage => "unsupported_message",
        }
    }
}

/// The canonical contract's verdicts in the edge's terms (the edge checks the contract last).
impl From<validate::Reason> for Reason {
    fn from(reason: validate::Reason) -> Self {
        match reason {
            validate::Reason::InvalidPseudonym => Reason::InvalidPatientIdentifier,
            validate::Reason::InvalidHospitalId => Reason::UnknownHospital,
            validate::Reason::FieldTooLong => Reason::FieldTooLong,
            validate::Reason::MissingField => Reason::MissingField,
            validate::Reason::NonFiniteValue => Reason::NonNumericResult,
            validate::Reason::ValueOutOfRange => Reason::ValueOutOfRange,
            validate::Reason::UnexpectedUnit => Reason::UnexpectedUnit,
            validate::Reason::EventTimeImplausible | validate::Reason::EventTimeInFuture => {
                Reason::InvalidDate
            }
        }
    }
}

/// A rejection inside the adapter: the reason and a detail naming fields, never values.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub reason: Reason,
    pub detail: String,
}

pub fn reject(reason: Reason, detail: impl Into<String>) -> Reject {
    Reject {
        reason,
        detail: detail.into(),
    }
}

impl From<validate::Invalid> for Reject {
    fn from(invalid: validate::Invalid) -> Self {
        reject(invalid.reason.into(), invalid.detail)
    }
}
