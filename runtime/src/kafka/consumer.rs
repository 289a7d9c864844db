//! The consumer-group member every stage reads through.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use super::{client_config, kafka_err};
use crate::config::KafkaConfig;
use crate::RuntimeError;

/// One topic-partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

/// A change of what this consumer owns, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentChange {
    Assigned(Vec<TopicPartition>),
    Revoked(Vec<TopicPartition>),
}

/// Records rebalances for the stage loop to act on between batches.
#[derive(Default)]
pub struct GroupContext {
    changes: Mutex<Vec<AssignmentChange>>,
}

fn partitions_of(list: &TopicPartitionList) -> Vec<TopicPartition> {
    list.elements()
        .iter()
        .map(|e| TopicPartition {
            topic: e.topic().to_string(),
            partition: e.partition(),
        })
        .collect()
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let revoked = partitions_of(list);
            info!(partitions = ?revoked, "Partitions revoked from this instance.");
            if let Ok(mut changes) = self.changes.lock() {
                changes.push(AssignmentChange::Revoked(revoked));
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let assigned = partitions_of(list);
                info!(partitions = ?assigned, "Partitions assigned to this instance.");
                if let Ok(mut changes) = self.changes.lock() {
                    changes.push(AssignmentChange::Assigned(assigned));
                }
            }
            Rebalance::Error(error) => {
                warn!(%error, "Consumer group rebalance failed; the group will retry.")
            }
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &TopicPartitionList,
    ) {
        if let Err(error) = result {
            // A failed commit only means a replay after a restart; outputs are idempotent.
            debug!(%error, "Offset commit was not accepted.");
        }
    }
}

/// How a group consumer fetches.
#[derive(Debug, Clone)]
pub struct ConsumerTuning {
    /// Where a group with no committed offset starts.
    pub start_from_earliest: bool,
    /// librdkafka stalls this long whenever its prefetch queue fills (default 1000 ms); keep it small.
    pub fetch_queue_backoff: Duration,
}

impl Default for ConsumerTuning {
    fn default() -> Self {
        ConsumerTuning {
            start_from_earliest: true,
            fetch_queue_backoff: Duration::from_millis(10),
        }
    }
}

/// A consumer-group member that polls in batches and commits explicitly.
pub struct GroupConsumer {
    consumer: BaseConsumer<GroupContext>,
    group_id: String,
    topics: Vec<String>,
    session_timeout: Duration,
    watch: Mutex<StrandWatch>,
}

/// What the member knows about having no partitions (see [`GroupConsumer::heal_if_stranded`]).
#[derive(Debug, Default)]
struct StrandWatch {
    /// Since when the member has owned nothing.
    empty_since: Option<Instant>,
    last_check: Option<Instant>,
    /// The group's committed offsets at the last check, where they lagged behind the log.
    stalled_at: Option<Vec<(String, i32, i64)>>,
    /// The last check found the group's input consumed or moving: owning nothing is right
    /// (more members than partitions).
    surplus_member: bool,
    /// Rejoins made while nothing waited (see [`idle_rejoin_wait`]).
    idle_rejoins: u32,
}

/// How long a member that owns nothing, while the group's input is all consumed, waits before
/// joining again: a member stranded by the broker while input was idle would otherwise heal
/// only when input arrives, and its timers (missed follow-ups) would wait with it. The wait
/// doubles from two session timeouts to at most ten minutes, so a true surplus member (more
/// instances than partitions) costs the group a rebalance that seldom.
fn idle_rejoin_wait(session_timeout: Duration, rejoins: u32) -> Duration {
    (session_timeout * 2u32.saturating_pow(rejoins.min(16) + 1)).min(Duration::from_secs(600))
}

/// What a look at the group's progress said, for a member that owns nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GroupView {
    /// The progress could not be read: wait.
    Unknown,
    /// Every partition is read to its end, or its committed offset moved since the last look:
    /// someone consumes it.
    Progressing,
    /// Some partitions lag and their committed offsets are these.
    Lagging(Vec<(String, i32, i64)>),
}

/// Whether nobody consumed since the last look: the same lagging partitions, at the same
/// committed offsets, after a whole session timeout.
fn stalled(previous: Option<&Vec<(String, i32, i64)>>, now: &GroupView) -> bool {
    matches!((previous, now), (Some(before), GroupView::Lagging(after)) if before == after)
}

impl GroupConsumer {
    pub fn new(
        kafka: &KafkaConfig,
        group_id: &str,
        client_id: &str,
        topics: &[&str],
        tuning: &ConsumerTuning,
    ) -> Result<Self, RuntimeError> {
        let mut config = client_config(kafka, client_id);
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                if tuning.start_from_earliest {
                    "earliest"
                } else {
                    "latest"
                },
            )
            // Range assignment gives one member the same partition number of every topic it
            // reads: the processor relies on that to co-locate events and acknowledgements.
            .set("partition.assignment.strategy", "range")
            .set(
                "fetch.queue.backoff.ms",
                tuning.fetch_queue_backoff.as_millis().to_string(),
            )
            .set(
                "fetch.wait.max.ms",
                kafka.fetch_wait_max.as_millis().to_string(),
            )
            .set(
                "session.timeout.ms",
                kafka.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (kafka.session_timeout.as_millis() / 4).max(100).to_string(),
            )
            .set("enable.partition.eof", "false");
        for (key, value) in &kafka.client_properties {
            config.set(key, value);
        }
        let consumer: BaseConsumer<GroupContext> = config
            .create_with_context(GroupContext::default())
            .map_err(kafka_err("consumer creation"))?;
        consumer.subscribe(topics).map_err(kafka_err("subscribe"))?;
        Ok(GroupConsumer {
            consumer,
            group_id: group_id.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            session_timeout: kafka.session_timeout,
            watch: Mutex::new(StrandWatch::default()),
        })
    }

    /// Rejoins the group when it left this member with nothing while the input waits. A
    /// member restarted at once in the same group meets this on Tansu: the group waits for the
    /// killed member (its leader) until the session times out, and when that happens while the
    /// new member's SyncGroup is in flight, the broker forms the group around the new member
    /// with the empty assignment a follower sends, and never rebalances again. Nobody then
    /// consumes: the group's committed offsets lag and stand still. A member that owns nothing
    /// and sees that for a whole session timeout leaves and joins afresh, which makes it the
    /// leader of a real assignment. (The group is judged by its progress, not described:
    /// Tansu's SQLite storage fails DescribeGroups and drops the connection.)
    fn heal_if_stranded(&self) {
        let Ok(mut watch) = self.watch.lock() else {
            return;
        };
        let owns_something = self
            .consumer
            .assignment()
            .map(|list| list.count() > 0)
            .unwrap_or(false);
        if owns_something {
            *watch = StrandWatch::default();
            return;
        }
        let now = Instant::now();
        let empty_since = *watch.empty_since.get_or_insert(now);
        let checked_recently = watch
            .last_check
            .is_some_and(|at| now.duration_since(at) < self.session_timeout);
        if now.duration_since(empty_since) < self.session_timeout || checked_recently {
            return;
        }
        watch.last_check = Some(now);
        let view = self.group_progress();
        watch.surplus_member = view == GroupView::Progressing;
        let idle_rejoin = view == GroupView::Progressing
            && now.duration_since(empty_since)
                >= idle_rejoin_wait(self.session_timeout, watch.idle_rejoins);
        if stalled(watch.stalled_at.as_ref(), &view) || idle_rejoin {
            warn!(
                group = %self.group_id,
                waiting_input = !idle_rejoin,
                "This member owns no partition; leaving and joining the group again (the broker may have left it out; with more instances than partitions this repeats, ever more seldom)."
            );
            self.consumer.unsubscribe();
            let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
            if let Err(error) = self.consumer.subscribe(&topics) {
                warn!(%error, "Subscribing again failed; the next check retries.");
            }
            *watch = StrandWatch {
                empty_since: Some(now),
                last_check: Some(now),
                idle_rejoins: watch.idle_rejoins + u32::from(idle_rejoin),
                ..StrandWatch::default()
            };
            return;
        }
        watch.stalled_at = match view {
            GroupView::Lagging(offsets) => Some(offsets),
            _ => None,
        };
    }

    /// The group's committed offsets against the end of each partition it reads.
    fn group_progress(&self) -> GroupView {
        let timeout = Duration::from_secs(5);
        let mut list = TopicPartitionList::new();
        for topic in &self.topics {
            let Ok(metadata) = self.consumer.fetch_metadata(Some(topic), timeout) else {
                return GroupView::Unknown;
            };
            for t in metadata.topics() {
                for p in t.partitions() {
                    list.add_partition(topic, p.id());
                }
            }
        }
        let Ok(committed) = self.consumer.committed_offsets(list, timeout) else {
            return GroupView::Unknown;
        };
        let mut lagging = Vec::new();
        for element in committed.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let Ok((low, high)) = self.consumer.fetch_watermarks(topic, partition, timeout) else {
                return GroupView::Unknown;
            };
            let position = match element.offset() {
                Offset::Offset(offset) => offset,
                _ => low,
            };
            if position < high {
                lagging.push((topic.to_string(), partition, position));
            }
        }
        if lagging.is_empty() {
            GroupView::Progressing
        } else {
            GroupView::Lagging(lagging)
        }
    }

    /// Whether this member owns nothing because the group has more members than partitions
    /// (its input is consumed by the others), as opposed to not having been given its share.
    pub fn is_surplus_member(&self) -> bool {
        self.watch.lock().map(|w| w.surplus_member).unwrap_or(false)
    }

    /// Polls until `max` messages arrived or `max_wait` passed. Consumer errors are logged and
    /// skipped: librdkafka recovers from them by itself.
    pub fn poll_batch(&self, max: usize, max_wait: Duration) -> Vec<BorrowedMessage<'_>> {
        self.heal_if_stranded();
        let deadline = Instant::now() + max_wait;
        let mut batch = Vec::with_capacity(max.min(65_536));
        while batch.len() < max {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.consumer.poll(remaining) {
                Some(Ok(message)) => batch.push(message),
                Some(Err(error)) => {
                    warn!(%error, "Kafka consumer reported an error; continuing.");
                }
                None => {
                    if remaining.is_zero() {
                        break;
                    }
                }
            }
            if remaining.is_zero() {
                break;
            }
        }
        batch
    }

    /// Assignment changes since the last call, oldest first.
    pub fn take_assignment_changes(&self) -> Vec<AssignmentChange> {
        self.consumer
            .context()
            .changes
            .lock()
            .map(|mut changes| std::mem::take(&mut *changes))
            .unwrap_or_default()
    }

    /// Commits the given next-offsets. Failures are logged, not fatal: they mean a replay.
    pub fn commit(&self, positions: &Positions, mode: CommitMode) {
        if positions.is_empty() {
            return;
        }
        let list = positions.to_list();
        if let Err(error) = self.consumer.commit(&list, mode) {
            warn!(%error, "Committing offsets failed; a restart will replay from the previous commit.");
        }
    }

    /// Records each assigned partition still holds for this member: high watermark minus its
    /// position (or, where it read nothing yet, its group's committed offset, else the log
    /// start). Empty while nothing is assigned.
    pub fn lag(&self) -> Result<Vec<(String, i32, i64)>, RuntimeError> {
        let positions = self
            .consumer
            .position()
            .map_err(kafka_err("read positions"))?;
        let mut committed: Option<TopicPartitionList> = None;
        let mut out = Vec::with_capacity(positions.count());
        for element in positions.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let (low, high) = self
                .consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(5))
                .map_err(kafka_err("fetch watermarks"))?;
            let position = match element.offset() {
                Offset::Offset(offset) => offset,
                _ => {
                    if committed.is_none() {
                        committed = Some(
                            self.consumer
                                .committed(Duration::from_secs(5))
                                .map_err(kafka_err("read committed offsets"))?,
                        );
                    }
                    match committed
                        .as_ref()
                        .and_then(|c| c.find_partition(topic, partition))
                        .map(|e| e.offset())
                    {
                        Some(Offset::Offset(offset)) => offset,
                        _ => low,
                    }
                }
            };
            out.push((topic.to_string(), partition, (high - position).max(0)));
        }
        Ok(out)
    }

    /// The group's committed next offset of each partition of `partitions` in each of
    /// `topics`, asked of the group coordinator (not this member's cache); a partition without
    /// a committed offset is absent.
    pub fn committed_offsets(
        &self,
        topics: &[&str],
        partitions: &[i32],
    ) -> Result<std::collections::BTreeMap<(String, i32), i64>, RuntimeError> {
        let mut wanted = TopicPartitionList::new();
        for topic in topics {
            for &partition in partitions {
                wanted.add_partition(topic, partition);
            }
        }
        let committed = self
            .consumer
            .committed_offsets(wanted, Duration::from_secs(10))
            .map_err(kafka_err("read committed offsets"))?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(next) => Some(((e.topic().to_string(), e.partition()), next)),
                _ => None,
            })
            .collect())
    }

    /// Whether this member has read everything its assigned partitions hold right now. No input
    /// for a while does not mean that: a broker may serve some partitions only after others
    /// are drained. A member without partitions is not caught up: it has not started.
    pub fn caught_up(&self) -> Result<bool, RuntimeError> {
        let lag = self.lag()?;
        Ok(!lag.is_empty() && lag.iter().all(|(_, _, l)| *l == 0))
    }

    /// Publishes the lag per topic as the gauge `vigil_consumer_lag_messages{stage, topic}`.
    pub fn report_lag(&self, stage: &'static str) {
        match self.lag() {
            Ok(lag) => {
                let mut per_topic: std::collections::BTreeMap<String, i64> =
                    std::collections::BTreeMap::new();
                for (topic, _, l) in lag {
                    *per_topic.entry(topic).or_default() += l;
                }
                for (topic, l) in per_topic {
                    metrics::gauge!("vigil_consumer_lag_messages", "stage" => stage, "topic" => topic).set(l as f64);
                }
            }
            Err(error) => debug!(%error, "Could not measure consumer lag."),
        }
    }

    /// The partitions this member owns now.
    pub fn assigned(&self) -> Vec<TopicPartition> {
        self.consumer
            .assignment()
            .map(|list| partitions_of(&list))
            .unwrap_or_default()
    }

    /// Stops fetching the given partitions (e.g. while their state is restored).
    pub fn pause(&self, partitions: &[TopicPartition]) {
        if let Err(error) = self.consumer.pause(&to_list(partitions)) {
            warn!(%error, "Pausing partitions failed; they keep being fetched.");
        }
    }

    pub fn resume(&self, partitions: &[TopicPartition]) {
        if let Err(error) = self.consumer.resume(&to_list(partitions)) {
            warn!(%error, "Resuming partitions failed.");
        }
    }

    pub fn consumer(&self) -> &BaseConsumer<GroupContext> {
        &self.consumer
    }
}

fn to_list(partitions: &[TopicPartition]) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for tp in partitions {
        list.add_partition(&tp.topic, tp.partition);
    }
    list
}

/// The next offset to read per topic-partition: what a commit records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    next: Vec<(String, i32, i64)>,
}

impl Positions {
    /// Notes that `offset` of (topic, partition) is done.
    pub fn advance(&mut self, topic: &str, partition: i32, offset: i64) {
        for (t, p, next) in &mut self.next {
            if *p == partition && t == topic {
                *next = (*next).max(offset + 1);
                return;
            }
        }
        self.next.push((topic.to_string(), partition, offset + 1));
    }

    /// Notes that the message is done.
    pub fn advance_past(&mut self, message: &BorrowedMessage<'_>) {
        self.advance(message.topic(), message.partition(), message.offset());
    }

    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }

    pub fn clear(&mut self) {
        self.next.clear();
    }

    /// Forgets the given partitions (they were revoked before their batch was committed).
    pub fn forget(&mut self, revoked: &[TopicPartition]) {
        self.next
            .retain(|(t, p, _)| !revoked.iter().any(|r| r.partition == *p && &r.topic == t));
    }

    /// Keeps the commit of (topic, partition) at or below `offset`: records from there on are
    /// not done yet (held back, e.g. a snapshot waiting to be released in order).
    pub fn hold_at(&mut self, topic: &str, partition: i32, offset: i64) {
        for (t, p, next) in &mut self.next {
            if *p == partition && t == topic {
                *next = (*next).min(offset);
            }
        }
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        self.next
            .iter()
            .find(|(t, p, _)| *p == partition && t == topic)
            .map(|(_, _, next)| *next)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, i32, i64)> {
        self.next.iter().map(|(t, p, n)| (t.as_str(), *p, *n))
    }

    pub fn to_list(&self) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for (topic, partition, next) in &self.next {
            // Adding a fresh (topic, partition) cannot fail; a duplicate just overwrites.
            let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*next));
        }
        list
    }
}

/// Whether an error code means the member lost its place in the group (normal during rebalances).
pub fn is_rebalance_noise(code: RDKafkaRespErr) -> bool {
    matches!(
        code,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID
            | RDKafkaRespErr::RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION
            | RDKafkaRespErr::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_with_nothing_rejoins_at_once_when_the_input_waits_and_stands_still() {
        let lag = |offset: i64| GroupView::Lagging(vec![("t".into(), 0, offset)]);
        let before = vec![("t".to_string(), 0, 10)];
        assert!(stalled(Some(&before), &lag(10)), "nobody moved it");
        assert!(!stalled(Some(&before), &lag(12)), "someone consumes");
        assert!(!stalled(None, &lag(10)), "a first look decides nothing");
        assert!(!stalled(Some(&before), &GroupView::Progressing));
        assert!(!stalled(Some(&before), &GroupView::Unknown));
    }

    #[test]
    fn a_member_with_nothing_while_input_is_idle_rejoins_ever_more_seldom() {
        let session = Duration::from_secs(6);
        let waits: Vec<u64> = (0..10)
            .map(|n| idle_rejoin_wait(session, n).as_secs())
            .collect();
        assert_eq!(waits, [12, 24, 48, 96, 192, 384, 600, 600, 600, 600]);
        assert_eq!(
            idle_rejoin_wait(session, u32::MAX),
            Duration::from_secs(600)
        );
    }

    #[test]
    fn positions_keep_the_next_offset_per_partition() {
        let mut positions = Positions::default();
        positions.advance("a", 0, 5);
        positions.advance("a", 0, 3);
        positions.advance("a", 1, 9);
        positions.advance("b", 0, 1);
        assert_eq!(positions.get("a", 0), Some(6));
        assert_eq!(positions.get("a", 1), Some(10));
        assert_eq!(positions.get("b", 0), Some(2));
        positions.forget(&[TopicPartition {
            topic: "a".into(),
            partition: 1,
        }]);
        assert_eq!(positions.get("a", 1), None);
        assert_eq!(positions.to_list().count(), 2);
    }
}
