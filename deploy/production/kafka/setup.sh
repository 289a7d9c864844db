#!/usr/bin/env bash
# The Kafka side of a Vigil deployment, run once as the administrator (certificate CN=kafka-admin)
# and again after changes (idempotent): each stage's SCRAM-SHA-512 user with only the topics and
# consumer group it needs, then Vigil's topics (../topics.sh). Passwords come from the
# environment (secrets/kafka-users.env, written by make-secrets.sh): VIGIL_KAFKA_<STAGE>_PASSWORD.
set -euo pipefail
bootstrap=${BOOTSTRAP:?set BOOTSTRAP to a broker address (the mutual-TLS listener)}
admin=(--bootstrap-server "$bootstrap" --command-config "${COMMAND_CONFIG:?set COMMAND_CONFIG}")

user() { # name, password
  kafka-configs.sh "${admin[@]}" --alter --entity-type users --entity-name "$1" \
    --add-config "SCRAM-SHA-512=[password=$2]" >/dev/null
}
allow() { # user, operation, resource option, name
  kafka-acls.sh "${admin[@]}" --add --allow-principal "User:$1" --operation "$2" "$3" "$4" >/dev/null
}
reads() { local who=$1; shift; for t in "$@"; do allow "$who" Read --topic "$t"; allow "$who" Describe --topic "$t"; done; }
writes() { local who=$1; shift; for t in "$@"; do allow "$who" Write --topic "$t"; allow "$who" Describe --topic "$t"; done; }
group() { allow "$1" Read --group "$2"; }

user vigil-edge "${VIGIL_KAFKA_EDGE_PASSWORD:?}"
reads vigil-edge vigil.his.changes
writes vigil-edge vigil.clinical.events vigil.pipeline.dead-letters vigil.pipeline.stats
group vigil-edge vigil-ingest

user vigil-process "${VIGIL_KAFKA_PROCESS_PASSWORD:?}"
reads vigil-process vigil.clinical.events vigil.clinical.alert-acks vigil.processor.state
writes vigil-process vigil.clinical.alerts vigil.clinical.patient-status vigil.clinical.late-events \
  vigil.processor.state vigil.pipeline.dead-letters vigil.pipeline.stats
group vigil-process vigil-process

user vigil-sink "${VIGIL_KAFKA_SINK_PASSWORD:?}"
reads vigil-sink vigil.clinical.events vigil.clinical.alerts vigil.clinical.patient-status \
  vigil.pipeline.dead-letters vigil.notify.deliveries vigil.pipeline.stats vigil.clinical.late-events
writes vigil-sink vigil.pipeline.dead-letters vigil.pipeline.stats
group vigil-sink vigil-sink

user vigil-notify "${VIGIL_KAFKA_NOTIFY_PASSWORD:?}"
reads vigil-notify vigil.clinical.alerts vigil.notify.deliveries
writes vigil-notify vigil.notify.deliveries vigil.pipeline.dead-letters vigil.pipeline.stats
group vigil-notify vigil-notify

user vigil-serve "${VIGIL_KAFKA_SERVE_PASSWORD:?}"
writes vigil-serve vigil.clinical.alert-acks

bash "$(dirname "$0")/../topics.sh"
echo "Kafka users, ACLs and topics are in place."
