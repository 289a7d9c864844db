#!/usr/bin/env bash
# Makes what compose.yaml mounts and a trial of it needs, once: a CA and a certificate per
# service (tls/), random passwords for the Kafka users and the ClickHouse roles, the edge's
# pseudonymisation key and the hospitals' webhook secrets (secrets/, owner-only), and .env
# (the Kafka cluster id). A province uses its own CA and secret store instead: the files and
# variable names below are what to provide. Never overwrites an existing file.
#
#   deploy/production/make-secrets.sh [DIR]      (default: deploy/production)
set -euo pipefail
dir=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
tls=$dir/tls secrets=$dir/secrets
umask 077
mkdir -p "$tls" "$secrets/clickhouse" "$secrets/notify" "$secrets/edge-h0001"

random() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
once() { [ -e "$1" ] && return 1; return 0; } # whether $1 still has to be made

# The CA and one certificate per service, named for the hosts compose.yaml gives them.
if once "$tls/ca.crt"; then
  openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=Vigil deployment CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
fi
certificate() { # name, subjectAltName
  once "$tls/$1.crt" || return 0
  openssl req -newkey rsa:3072 -nodes -subj "/CN=$1" -keyout "$tls/$1.key" -out "$tls/$1.csr" 2>/dev/null
  printf 'subjectAltName=%s\n' "$2" >"$tls/$1.ext"
  openssl x509 -req -days 825 -in "$tls/$1.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
    -CAcreateserial -extfile "$tls/$1.ext" -out "$tls/$1.crt" 2>/dev/null
  rm -f "$tls/$1.csr" "$tls/$1.ext"
  # Kafka reads key and certificate from one PEM file (PKCS#8 key).
  { openssl pkcs8 -topk8 -nocrypt -in "$tls/$1.key"; cat "$tls/$1.crt"; } >"$tls/$1.pem"
}
for n in 1 2 3; do certificate "kafka-$n" "DNS:kafka-$n"; done
certificate kafka-admin "DNS:kafka-admin"
certificate clickhouse "DNS:clickhouse-1,DNS:clickhouse-2"
certificate keeper "DNS:keeper-1,DNS:keeper-2,DNS:keeper-3"
certificate serve "DNS:serve,DNS:localhost"
certificate grafana "DNS:grafana,DNS:localhost"
# The containers read them as their own users: certificates and keys readable, directory listable.
chmod 644 "$tls"/*.crt "$tls"/*.key "$tls"/*.pem
chmod 600 "$tls/ca.key"
chmod 755 "$tls"
if once "$tls/admin.properties"; then
  printf '%s\n' "security.protocol=SSL" "ssl.keystore.type=PEM" \
    "ssl.keystore.location=/etc/kafka/tls/kafka-admin.pem" "ssl.truststore.type=PEM" \
    "ssl.truststore.location=/etc/kafka/tls/ca.crt" >"$tls/admin.properties"
  chmod 644 "$tls/admin.properties"
fi

# Kafka: one SCRAM user per stage; kafka/setup.sh creates them from kafka-users.env.
if once "$secrets/kafka-users.env"; then
  for stage in EDGE PROCESS SINK NOTIFY SERVE; do
    printf 'VIGIL_KAFKA_%s_PASSWORD=%s\n' "$stage" "$(random)"
  done >"$secrets/kafka-users.env"
fi
# shellcheck disable=SC1091
. "$secrets/kafka-users.env"
stage_env() { # file, user, password
  once "$1" || return 0
  printf '%s\n' "VIGIL_KAFKA__CLIENT_PROPERTIES__SASL_USERNAME=$2" \
    "VIGIL_KAFKA__CLIENT_PROPERTIES__SASL_PASSWORD=$3" >"$1"
}
stage_env "$secrets/kafka-process.env" vigil-process "$VIGIL_KAFKA_PROCESS_PASSWORD"
stage_env "$secrets/kafka-sink.env" vigil-sink "$VIGIL_KAFKA_SINK_PASSWORD"
stage_env "$secrets/kafka-notify.env" vigil-notify "$VIGIL_KAFKA_NOTIFY_PASSWORD"
stage_env "$secrets/kafka-serve.env" vigil-serve "$VIGIL_KAFKA_SERVE_PASSWORD"
stage_env "$secrets/kafka-edge-h0001.env" vigil-edge "$VIGIL_KAFKA_EDGE_PASSWORD"
if once "$dir/.env"; then
  # A KRaft cluster id: 16 random bytes, URL-safe base64 without padding.
  printf 'KAFKA_CLUSTER_ID=%s\n' "$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')" >"$dir/.env"
fi

# ClickHouse: the roles' passwords (what vigil reads through clickhouse.credentials_file), the
# administrator's SHA-256 and the replicas' shared secret for the servers.
if once "$secrets/clickhouse/credentials.env"; then
  for role in ADMIN WRITER READER COMMISSION INSURANCE; do
    printf 'VIGIL_CH_%s_PASSWORD=%s\n' "$role" "$(random)"
  done >"$secrets/clickhouse/credentials.env"
fi
# shellcheck disable=SC1091
. "$secrets/clickhouse/credentials.env"
if once "$secrets/clickhouse/server.env"; then
  printf '%s\n' \
    "CLICKHOUSE_ADMIN_PASSWORD_SHA256=$(printf '%s' "$VIGIL_CH_ADMIN_PASSWORD" | sha256sum | cut -d' ' -f1)" \
    "CLICKHOUSE_INTERSERVER_SECRET=$(random)" >"$secrets/clickhouse/server.env"
fi
once "$secrets/grafana.env" && printf 'VIGIL_COMMISSION_PASSWORD=%s\n' "$VIGIL_CH_COMMISSION_PASSWORD" >"$secrets/grafana.env"

# The edge's pseudonymisation key (one for the province: the same patient, the same pseudonym
# at every hospital) and the hospitals' webhook secrets.
once "$secrets/edge-h0001/pseudonym.key" && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$secrets/edge-h0001/pseudonym.key"
once "$secrets/edge-h0001.env" && : >"$secrets/edge-h0001.env"
if once "$secrets/notify/notify-secrets.toml"; then
  for hospital in H0001 H0002 H0003 H0004; do printf '%s = "%s"\n' "$hospital" "$(random)$(random)"; done \
    >"$secrets/notify/notify-secrets.toml"
fi
# The containers run as their own users and must read these files; the directory itself lists
# nothing to other users of the host (0711), and belongs on a host only operators log in to.
chmod -R a+rX "$secrets"
chmod 711 "$secrets"
echo "made $tls and $secrets (and $dir/.env); keep them out of version control"
