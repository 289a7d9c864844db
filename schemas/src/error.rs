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
    /// The value does not fit the schema (a programming error in the producer).
    #[error("cannot encode {record}: {source}")]
    Encode {
        record: &'static str,
        #[source]
        source: Box<apache_avro::Error>,
    },
}
