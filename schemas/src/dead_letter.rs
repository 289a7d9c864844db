//! The one way every stage builds a dead letter.
//!
//! A dead letter is kept for an operator, and it leaves the stage that wrote it: it carries a
//! reason, where the input was read, and only what is known to be safe of the input itself. The
//! id is derived from the stage and the input's position, so a replay overwrites rather than
//! duplicates; every text is bounded, so a letter always fits in a Kafka record whatever the
//! input was (a 2 MB field must not make its own dead letter unproducible).

use crate::ids::stable_id;
use crate::validate::{is_hospital_id, truncate_to_boundary};
use crate::{DeadLetter, SourcePosition};

/// Longest reason detail kept, in bytes.
pub const MAX_DETAIL_BYTES: usize = 300;
/// Longest copy of the input kept, in bytes.
pub const MAX_COPY_BYTES: usize = 4_000;
/// Longest source name (a topic, or `file:` and a path) kept, in bytes.
const MAX_SOURCE_BYTES: usize = 200;

/// Where a rejected input was read.
#[derive(Debug, Clone, Copy)]
pub struct InputPosition<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl InputPosition<'_> {
    /// The position as a clinical event records it.
    pub fn source(&self) -> SourcePosition {
        SourcePosition {
            topic: self.topic.to_string(),
            partition: self.partition,
            offset: self.offset,
        }
    }
}

impl DeadLetter {
    /// A letter for the input at `at`, rejected by `stage` for `reason_code`. The detail must
    /// name fields and bounds, never values; it is bounded here all the same.
    pub fn new(
        stage: &str,
        at: InputPosition<'_>,
        reason_code: &str,
        reason_detail: &str,
        received_time_ms: i64,
    ) -> DeadLetter {
        DeadLetter {
            dead_letter_id: stable_id(&[
                stage.as_bytes(),
                at.topic.as_bytes(),
                &at.partition.to_le_bytes(),
                &at.offset.to_le_bytes(),
            ]),
            stage: stage.to_string(),
            hospital_id: String::new(),
            reason_code: truncate_to_boundary(reason_code, 64).to_string(),
            reason_detail: truncate_to_boundary(reason_detail, MAX_DETAIL_BYTES).to_string(),
            source_topic: truncate_to_boundary(at.topic, MAX_SOURCE_BYTES).to_string(),
            source_partition: at.partition,
            source_offset: at.offset,
            event_time_ms: None,
            received_time_ms,
            redacted_payload: String::new(),
        }
    }

    /// The hospital the input came from, if the text is a plausible hospital id.
    pub fn with_hospital(mut self, hospital_id: &str) -> DeadLetter {
        if is_hospital_id(hospital_id) {
            self.hospital_id = hospital_id.to_string();
        }
        self
    }

    pub fn with_event_time(mut self, event_time_ms: Option<i64>) -> DeadLetter {
        self.event_time_ms = event_time_ms;
        self
    }

    /// A copy of the input that the caller made safe (redacted or built from an allow-list).
    pub fn with_copy(mut self, copy: &str) -> DeadLetter {
        let kept = truncate_to_boundary(copy, MAX_COPY_BYTES);
        self.redacted_payload = if kept.len() < copy.len() {
            format!("{kept}…<truncated>")
        } else {
            kept.to_string()
        };
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(topic: &str) -> InputPosition<'_> {
        InputPosition {
            topic,
            partition: 2,
            offset: 7,
        }
    }

    #[test]
    fn ids_follow_the_stage_and_position_and_texts_are_bounded() {
        let a = DeadLetter::new("ingest", at("t"), "r", "d", 1);
        let b = DeadLetter::new("ingest", at("t"), "r", "other detail", 2);
        assert_eq!(a.dead_letter_id, b.dead_letter_id);
        assert_ne!(
            a.dead_letter_id,
            DeadLetter::new("process", at("t"), "r", "d", 1).dead_letter_id
        );
        let long = "王".repeat(1_000_000);
        let letter = DeadLetter::new("ingest", at(&long), "r", &long, 1)
            .with_hospital(&long)
            .with_copy(&long);
        assert!(letter.reason_detail.len() <= MAX_DETAIL_BYTES);
        assert!(letter.source_topic.len() <= MAX_SOURCE_BYTES);
        assert!(letter.redacted_payload.len() <= MAX_COPY_BYTES + 20);
        assert!(letter.redacted_payload.ends_with("…<truncated>"));
        assert_eq!(letter.hospital_id, "");
    }

    #[test]
    fn only_plausible_hospital_ids_are_copied() {
        let letter = |h: &str| DeadLetter::new("s", at("t"), "r", "d", 1).with_hospital(h);
        assert_eq!(letter("H0001").hospital_id, "H0001");
        assert_eq!(letter("gz-tianhe_03").hospital_id, "gz-tianhe_03");
        assert_eq!(letter("patient 何玉兰").hospital_id, "");
        assert_eq!(letter("13912345678 x").hospital_id, "");
    }
}
