//! Single-object encoding with schemas parsed and resolved once.
//!
//! apache-avro re-resolves a schema on every `from_avro_datum` call (apache/avro-rs#310), so the
//! codec builds its datum writer and one datum reader per known writer schema up front and
//! reuses them; nothing is parsed per message. Reading and writing go straight between bytes and
//! the Rust types through apache-avro's schema-aware serde, without an intermediate `Value`.

use std::sync::OnceLock;

use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::direct::Malformation;
use crate::error::SchemaError;
use crate::records::{
    Alert, AlertAck, AlertDelivery, ClinicalEvent, DeadLetter, PatientStatus, PipelineStat,
};

/// The two bytes that open every single-object encoded message (Avro spec).
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

/// A record type with an `.avsc` contract.
pub trait WireRecord: Serialize + DeserializeOwned {
    /// Record name, for messages.
    const NAME: &'static str;
    /// The parsed current schema and every older writer schema still readable.
    fn schemas() -> Result<&'static RecordSchemas, SchemaError>;
    /// A direct decoder of a datum written under the current schema, where one exists
    /// (`direct.rs`); `None` leaves it to apache-avro.
    fn decode_current(_datum: &[u8]) -> Option<Result<Self, Malformation>> {
        None
    }
    /// A direct encoder for the current schema, where one exists (`direct.rs`): appends the
    /// datum and says so; `false` leaves it to apache-avro.
    fn encode_current(&self, _out: &mut Vec<u8>) -> bool {
        false
    }
}

/// The parsed schemas of one record type.
#[derive(Debug)]
pub struct RecordSchemas {
    pub current: Schema,
    pub current_fingerprint: u64,
    /// Older writer schemas, oldest first, with their fingerprints.
    pub history: Vec<(u64, Schema)>,
}

impl RecordSchemas {
    fn parse(
        name: &'static str,
        current: &str,
        history: &[&str],
    ) -> Result<RecordSchemas, SchemaError> {
        let parse = |text: &str| {
            Schema::parse_str(text).map_err(|e| SchemaError::InvalidSchema {
                name,
                source: Box::new(e),
            })
        };
        let current = parse(current)?;
        let mut past = Vec::with_capacity(history.len());
        for text in history {
            let schema = parse(text)?;
            past.push((fingerprint(&schema), schema));
        }
        Ok(RecordSchemas {
            current_fingerprint: fingerprint(&current),
            current,
            history: past,
        })
    }

    /// The single-object header that the current writer puts in front of each datum.
    pub fn header(&self) -> Vec<u8> {
        RabinFingerprintHeader::from_schema(&self.current).build_header()
    }
}

fn fingerprint(schema: &Schema) -> u64 {
    let header = RabinFingerprintHeader::from_schema(schema).build_header();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&header[2..HEADER_LEN]);
    u64::from_le_bytes(bytes)
}

macro_rules! wire_record {
    ($ty:ty, $file:literal, [$($old:literal),* $(,)?]
     $(, direct = $direct:path)? $(, direct_encode = $encode:path)?) => {
        impl WireRecord for $ty {
            $(
                fn decode_current(datum: &[u8]) -> Option<Result<Self, Malformation>> {
                    Some($direct(datum))
                }
            )?
            $(
                fn encode_current(&self, out: &mut Vec<u8>) -> bool {
                    $encode(self, out);
                    true
                }
            )?
            const NAME: &'static str = stringify!($ty);
            fn schemas() -> Result<&'static RecordSchemas, SchemaError> {
                static CELL: OnceLock<RecordSchemas> = OnceLock::new();
                if let Some(parsed) = CELL.get() {
                    return Ok(parsed);
                }
                let parsed = RecordSchemas::parse(
                    Self::NAME,
                    include_str!(concat!("../avro/", $file)),
                    &[$(include_str!(concat!("../avro/history/", $old))),*],
                )?;
                Ok(CELL.get_or_init(|| parsed))
            }
        }
    };
}

wire_record!(
    ClinicalEvent,
    "clinical_event.avsc",
    ["clinical_event.v1.avsc", "clinical_event.v2.avsc"],
    direct = crate::direct::clinical_event,
    direct_encode = crate::direct::clinical_event_into
);
wire_record!(Alert, "alert.avsc", ["alert.v1.avsc"]);
wire_record!(
    PatientStatus,
    "patient_status.avsc",
    ["patient_status.v1.avsc"],
    direct = crate::direct::patient_status_from,
    direct_encode = crate::direct::patient_status
);
wire_record!(DeadLetter, "dead_letter.avsc", []);
wire_record!(AlertAck, "alert_ack.avsc", []);
wire_record!(AlertDelivery, "alert_delivery.avsc", []);
wire_record!(PipelineStat, "pipeline_stat.avsc", []);

/// Encoder and decoder for one record type. Build it once per stage and reuse it.
pub struct AvroCodec<T: WireRecord> {
    header: Vec<u8>,
    writer: GenericDatumWriter<'static>,
    /// (fingerprint, reader) for the current schema first, then older ones.
    readers: Vec<(u64, GenericDatumReader<'static>)>,
    _record: std::marker::PhantomData<fn() -> T>,
}

/// Largest single allocation a decoded record may ask for (Kafka records are ~1 MB at most).
const MAX_ALLOCATION_BYTES: usize = 16 * 1024 * 1024;

impl<T: WireRecord> AvroCodec<T> {
    pub fn new() -> Result<Self, SchemaError> {
        // A length prefix in garbage bytes may claim gigabytes: no record here is near this, so
        // larger claims fail before anything is allocated (apache-avro's default is 512 MiB).
        apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
        let schemas = T::schemas()?;
        let avro_err = |source| SchemaError::InvalidSchema {
            name: T::NAME,
            source: Box::new(source),
        };
        let writer = GenericDatumWriter::builder(&schemas.current)
            .human_readable(false)
            .build()
            .map_err(avro_err)?;
        let mut readers = Vec::with_capacity(1 + schemas.history.len());
        let current_reader = GenericDatumReader::builder(&schemas.current)
            .human_readable(false)
            .build()
            .map_err(avro_err)?;
        readers.push((schemas.current_fingerprint, current_reader));
        for (fingerprint, schema) in schemas.history.iter().rev() {
            let reader = GenericDatumReader::builder(schema)
                .human_readable(false)
                .build()
                .map_err(avro_err)?;
            readers.push((*fingerprint, reader));
        }
        Ok(AvroCodec {
            header: schemas.header(),
            writer,
            readers,
            _record: std::marker::PhantomData,
        })
    }

    /// Appends the single-object encoding of `value` to `out`.
    pub fn encode_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SchemaError> {
        out.extend_from_slice(&self.header);
        if value.encode_current(out) {
            return Ok(());
        }
        self.write_with_avro(value, out)
    }

    /// Appends the single-object encoding of `value` written by apache-avro, never the direct
    /// encoder: the reference and baseline the direct encoder is measured against.
    pub fn encode_with_apache_avro(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SchemaError> {
        out.extend_from_slice(&self.header);
        self.write_with_avro(value, out)
    }

    fn write_with_avro(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SchemaError> {
        self.writer
            .write_ser(out, value)
            .map_err(|e| SchemaError::Encode {
                record: T::NAME,
                source: Box::new(e),
            })?;
        Ok(())
    }

    pub fn encode(&self, value: &T) -> Result<Vec<u8>, SchemaError> {
        let mut out = Vec::with_capacity(256);
        self.encode_into(value, &mut out)?;
        Ok(out)
    }

    /// Decodes one message written under the current or any older schema of `T`.
    pub fn decode(&self, bytes: &[u8]) -> Result<T, SchemaError> {
        let fingerprint = self.fingerprint(bytes)?;
        if self
            .readers
            .first()
            .is_some_and(|(current, _)| *current == fingerprint)
        {
            if let Some(decoded) = T::decode_current(&bytes[HEADER_LEN..]) {
                return decoded.map_err(|reason| SchemaError::Malformed {
                    record: T::NAME,
                    reason,
                });
            }
        }
        self.decode_with_avro(fingerprint, &bytes[HEADER_LEN..])
    }

    /// Decodes one message through apache-avro whatever its writer schema, never the direct
    /// decoder: the reference and baseline the direct decoder is measured against.
    pub fn decode_with_apache_avro(&self, bytes: &[u8]) -> Result<T, SchemaError> {
        let fingerprint = self.fingerprint(bytes)?;
        self.decode_with_avro(fingerprint, &bytes[HEADER_LEN..])
    }

    /// The writer schema's fingerprint from the single-object header.
    fn fingerprint(&self, bytes: &[u8]) -> Result<u64, SchemaError> {
        if bytes.len() < HEADER_LEN {
            return Err(SchemaError::NotSingleObject(
                "shorter than the 10-byte header",
            ));
        }
        if bytes[..2] != SINGLE_OBJECT_MAGIC {
            return Err(SchemaError::NotSingleObject(
                "missing the C3 01 magic bytes",
            ));
        }
        let mut fp = [0u8; 8];
        fp.copy_from_slice(&bytes[2..HEADER_LEN]);
        Ok(u64::from_le_bytes(fp))
    }

    /// Decodes through apache-avro's reader for the writer schema `fingerprint` names.
    fn decode_with_avro(&self, fingerprint: u64, datum: &[u8]) -> Result<T, SchemaError> {
        let reader = self
            .readers
            .iter()
            .find(|(known, _)| *known == fingerprint)
            .map(|(_, reader)| reader)
            .ok_or(SchemaError::UnknownWriterSchema {
                record: T::NAME,
                fingerprint,
            })?;
        let mut body = datum;
        reader
            .read_deser::<T>(&mut body)
            .map_err(|e| SchemaError::Decode {
                record: T::NAME,
                source: Box::new(e),
            })
    }
}
