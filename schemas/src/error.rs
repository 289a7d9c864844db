use thiserror::Error;

/// What can go wrong turning records into bytes and back.
#[derive(Debug, Error)]
pub enum SchemaError {
    /// A bundled `.avsc` file does not parse: a build defect, not a data problem.
    #[error("the bundled Avro schema {name} is invalid: {source}")]
    InvalidSchema {
        name: &'static str,
        #[source]
        source: Box<apache_avro::Error>,
    },
    /// The message is shorter than a single-object header or has the wrong magic bytes.
    #[error("not an Avro single-object message: {0}")]
    NotSingleObject(&'static str),
    /// The header names a schema this build does not know (written by a newer producer?).
    #[error("unknown writer schema fingerprint {fingerprint:016x} for {record}")]
    UnknownWriterSchema {
        record: &'static str,
        fingerprint: u64,
    },
    /// The bytes do not decode under the writer schema they claim.
    #[error("malformed {record} datum: {source}")]
    Decode {
        record: &'static str,
        #[source]
        source: Box<apache_avro::Error>,
    },
    /// The bytes do not decode under the writer schema they claim (the direct decoder's
    /// finding; its reason quotes nothing of the data).
    #[error("malformed {record} datum: {reason}")]
    Malformed {
        record: &'static str,
        reason: crate::direct::Malformation,
    },
    /// The value does not fit the schema (a programming error in the producer).
    #[error("cannot encode {record}: {source}")]
    Encode {
        record: &'static str,
        #[source]
        source: Box<apache_avro::Error>,
    },
}

impl SchemaError {
    /// What went wrong, without anything of the data itself (Avro's own messages may quote a
    /// decoded value): fit for dead letters and logs.
    pub fn safe_detail(&self) -> String {
        match self {
            SchemaError::Decode { record, .. } => {
                format!("the bytes do not decode as a {record} under the schema they name")
            }
            SchemaError::Encode { record, .. } => format!("a {record} could not be encoded"),
            other => other.to_string(),
        }
    }
}
