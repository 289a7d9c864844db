#!/usr/bin/env bash
# Creates Vigil's topics on the province's Kafka cluster with the settings Vigil relies on (the
# stages run with kafka.create_topics = false). Idempotent. Run with Kafka's own tools on the
# path, as an administrator, e.g. inside a broker container:
#
#   BOOTSTRAP=kafka-1:9093 COMMAND_CONFIG=/etc/kafka/admin.properties deploy/production/topics.sh
#
# Every topic: replication 3, min.insync.replicas 2 (a produce is acknowledged by two brokers;
# one broker may be down without stopping anything), PARTITIONS partitions (24: fixed once, it
# bounds the processor instances). Retention per topic below; ARCHITECTURE.md ("Sizing a
# province") gives the storage it takes.
set -euo pipefail
bootstrap=${BOOTSTRAP:?set BOOTSTRAP to a broker address}
partitions=${PARTITIONS:-24}
command_config=()
[ -n "${COMMAND_CONFIG:-}" ] && command_config=(--command-config "$COMMAND_CONFIG")
day=86400000

topic() { # name, config...
  local name=$1; shift
  local configs=(--config min.insync.replicas=2)
  for config in "$@"; do configs+=(--config "$config"); done
  kafka-topics.sh --bootstrap-server "$bootstrap" "${command_config[@]}" --create --if-not-exists \
    --topic "$name" --partitions "$partitions" --replication-factor 3 "${configs[@]}"
}

# Canonical events: ClickHouse keeps every year; the topic keeps a month for replays and for a
# processor rebuilt from scratch (longer than process.engine.allowed_lateness).
topic vigil.clinical.events "retention.ms=$((35 * day))"
# Hospitals' change events, where an edge reads them from this cluster (a week of catch-up).
topic vigil.his.changes "retention.ms=$((7 * day))"
topic vigil.clinical.alerts "retention.ms=$((35 * day))"
topic vigil.clinical.patient-status "retention.ms=$((35 * day))"
topic vigil.clinical.alert-acks "retention.ms=$((35 * day))"
topic vigil.pipeline.dead-letters "retention.ms=$((35 * day))"
topic vigil.clinical.late-events "retention.ms=$((35 * day))"
topic vigil.pipeline.stats "retention.ms=$((7 * day))"
# The processor's changelog: snapshots and deltas are its state, never deleted by age (a quiet
# partition's snapshot may be old); one partition per clinical-events partition.
topic vigil.processor.state retention.ms=-1 max.message.bytes=1048588
# The notifier's memory of what each hospital acknowledged: the latest outcome per alert.
topic vigil.notify.deliveries cleanup.policy=compact min.compaction.lag.ms=3600000
