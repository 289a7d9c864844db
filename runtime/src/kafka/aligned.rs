//! Time-aligned consumption of several partitions, as Kafka Streams does for a task's inputs.
//!
//! A consumer reading a backlog gets partitions in whatever order the broker serves them (Tansu
//! drains one partition completely before the next). A stage that merges partitions into one
//! stream (the ingest merges change-event partitions into per-patient partitions) would then
//! emit months of one partition before the same months of another, and the processor would see
//! most of it as late. The aligner buffers per partition and releases records in timestamp order,
//! only while every assigned partition either has buffered records or has nothing more to read;
//! a partition whose buffer is full is paused so the broker serves the others. Memory stays
//! bounded by (partitions × pause threshold) records.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::message::{Message, OwnedMessage};

use super::{GroupConsumer, TopicPartition};

/// Buffered records per partition, released in timestamp order.
pub struct Aligner {
    buffers: BTreeMap<(String, i32), VecDeque<OwnedMessage>>,
    paused: BTreeMap<(String, i32), bool>,
    /// When an empty partition was last checked and found to have nothing left to read.
    drained_at: BTreeMap<(String, i32), Instant>,
    pause_at: usize,
    resume_at: usize,
    drained_for: Duration,
}

fn timestamp(message: &OwnedMessage) -> i64 {
    message.timestamp().to_millis().unwrap_or(i64::MIN)
}

/// Whether a partition is known to hold nothing more to read. An unknown lag (the broker is
/// away, or the partition is missing from the answer) is not "nothing": releasing the others
/// then would put months of one partition before another, and the processor would drop the
/// rest as late.
fn is_drained(lags: Option<&[(String, i32, i64)]>, tp: &TopicPartition) -> bool {
    lags.and_then(|lags| {
        lags.iter()
            .find(|(t, p, _)| *p == tp.partition && *t == tp.topic)
    })
    .is_some_and(|(_, _, lag)| *lag == 0)
}

impl Aligner {
    /// Pauses a partition holding `pause_at` records, resumes it below a quarter of that.
    pub fn new(pause_at: usize) -> Self {
        Aligner {
            buffers: BTreeMap::new(),
            paused: BTreeMap::new(),
            drained_at: BTreeMap::new(),
            pause_at: pause_at.max(4),
            resume_at: (pause_at / 4).max(1),
            drained_for: Duration::from_millis(250),
        }
    }

    pub fn push(&mut self, message: OwnedMessage) {
        let key = (message.topic().to_string(), message.partition());
        self.drained_at.remove(&key);
        self.buffers.entry(key).or_default().push_back(message);
    }

    /// Records held back.
    pub fn buffered(&self) -> usize {
        self.buffers.values().map(VecDeque::len).sum()
    }

    /// Forgets revoked partitions (their records are re-read by the new owner: nothing was
    /// committed past what was released).
    pub fn forget(&mut self, revoked: &[TopicPartition]) {
        for tp in revoked {
            let key = (tp.topic.clone(), tp.partition);
            self.buffers.remove(&key);
            self.paused.remove(&key);
            self.drained_at.remove(&key);
        }
    }

    /// Releases every record that can go now, in timestamp order, and pauses or resumes
    /// partitions by how full their buffers are. `assigned` is what the consumer owns.
    pub fn release(
        &mut self,
        consumer: &GroupConsumer,
        assigned: &[TopicPartition],
        out: &mut Vec<OwnedMessage>,
    ) {
        // An empty partition blocks release unless it is known to have nothing more to read.
        let mut blocking = false;
        let mut lags: Option<Option<Vec<(String, i32, i64)>>> = None;
        for tp in assigned {
            let key = (tp.topic.clone(), tp.partition);
            if self.buffers.get(&key).is_some_and(|b| !b.is_empty()) {
                continue;
            }
            if self
                .drained_at
                .get(&key)
                .is_some_and(|at| at.elapsed() < self.drained_for)
            {
                continue;
            }
            let lags = lags.get_or_insert_with(|| consumer.lag().ok());
            if is_drained(lags.as_deref(), tp) {
                self.drained_at.insert(key, Instant::now());
            } else {
                blocking = true;
            }
        }
        if !blocking {
            self.merge(assigned, out);
        }
        self.throttle(consumer);
    }

    /// Pops records in timestamp order until some non-drained partition runs empty.
    fn merge(&mut self, assigned: &[TopicPartition], out: &mut Vec<OwnedMessage>) {
        loop {
            let next = self
                .buffers
                .iter()
                .filter_map(|(key, buffer)| buffer.front().map(|m| (timestamp(m), key.clone())))
                .min();
            let Some((_, key)) = next else { return };
            let Some(message) = self.buffers.get_mut(&key).and_then(VecDeque::pop_front) else {
                return;
            };
            out.push(message);
            let now_empty = self.buffers.get(&key).is_none_or(VecDeque::is_empty);
            let still_assigned = assigned
                .iter()
                .any(|tp| tp.partition == key.1 && tp.topic == key.0);
            if now_empty && still_assigned && !self.drained_at.contains_key(&key) {
                // It may have more at the broker: wait for it before going further in time.
                return;
            }
        }
    }

    fn throttle(&mut self, consumer: &GroupConsumer) {
        for (key, buffer) in &self.buffers {
            let paused = self.paused.get(key).copied().unwrap_or(false);
            let tp = [TopicPartition {
                topic: key.0.clone(),
                partition: key.1,
            }];
            if !paused && buffer.len() >= self.pause_at {
                consumer.pause(&tp);
                self.paused.insert(key.clone(), true);
            } else if paused && buffer.len() < self.resume_at {
                consumer.resume(&tp);
                self.paused.insert(key.clone(), false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(partition: i32) -> TopicPartition {
        TopicPartition {
            topic: "changes".into(),
            partition,
        }
    }

    #[test]
    fn only_a_known_zero_lag_counts_as_drained() {
        let lags = vec![("changes".to_string(), 0, 0), ("changes".to_string(), 1, 7)];
        assert!(is_drained(Some(&lags), &tp(0)));
        assert!(!is_drained(Some(&lags), &tp(1)), "records left to read");
        assert!(!is_drained(Some(&lags), &tp(2)), "missing from the answer");
        assert!(!is_drained(None, &tp(0)), "the broker did not answer");
    }
}
