#!/usr/bin/env bash
# The whole pipeline on this machine, in one command: installs and starts the local services
# (Tansu and ClickHouse, on loopback, data in .vigil/), builds Vigil, and runs every stage with the
# simulator feeding it two years of a synthetic region's clinical history. It ends by showing
# what landed in ClickHouse and how to look further. The services keep running afterwards.
#
#   deploy/local/demo.sh                          2,000 patients in 3 hospitals (about a minute)
#   deploy/local/demo.sh --patients 20000 --hospitals 8
#   deploy/local/demo.sh --pace live --rate 50    a live feed until Ctrl-C (event times = now)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

echo "==> starting the local services (first run on a new machine installs them: ~15 minutes)"
deploy/local/services.sh start
eval "$(deploy/local/services.sh env)"

echo "==> building Vigil"
cargo build --release --locked --quiet

live=false
for arg in "$@"; do [ "$arg" = live ] && live=true; done
until_idle=(--until-idle 5)
$live && until_idle=()

# Each part of Vigil connects to ClickHouse as its role's user, with the passwords services.sh
# generated (clickhouse.credentials_file); what this script shows is read as the commission.
# shellcheck disable=SC1090
source "${VIGIL_CLICKHOUSE__CREDENTIALS_FILE:-.vigil/clickhouse/credentials.env}"
# The page asks for a token with the commission's role: one for this demo, in the link below.
./target/release/vigil migrate >/dev/null
token=$(./target/release/vigil token add --role commission --name "demo.sh" --quiet)
dashboard="http://${VIGIL_SERVE__LISTEN:-127.0.0.1:8080}/"
link="${dashboard}?token=$token"
$live && echo "==> the dashboard will be at $link while the pipeline runs"

echo "==> running the pipeline: simulate -> Kafka -> process -> Kafka -> sink -> ClickHouse"
# A few defects per thousand records, so the data-quality figures have something to show.
./target/release/vigil up --simulate --defects 0.002 "${until_idle[@]}" "$@"

port=${VIGIL_CLICKHOUSE_TCP_PORT:-9000}
ch() {
  clickhouse-client --port "$port" --user commission --password "$VIGIL_CH_COMMISSION_PASSWORD" \
    --format PrettyCompactMonoBlock --query "$1"
}

echo
echo "==> alerts raised for clinicians, by rule"
ch "SELECT rule_id, severity, countIf(status = 'RAISED') AS raised, countIf(status = 'RENOTIFIED') AS renotified,
           countIf(status = 'RESOLVED') AS resolved
    FROM vigil.alerts FINAL GROUP BY rule_id, severity ORDER BY raised DESC"
echo
echo "==> three of the latest crisis alerts"
ch "SELECT event_time, hospital_id, substring(patient_pseudonym, 1, 12) AS patient, message
    FROM vigil.alerts FINAL WHERE severity = 'CRITICAL' AND status = 'RAISED' ORDER BY event_time DESC LIMIT 3"
echo
echo "==> hypertension control and standardised management per hospital, last full year"
ch "SELECT hospital_id, count() AS patients, round(100 * avg(standardised), 1) AS standardised_pct,
           round(100 * avg(controlled), 1) AS controlled_pct
    FROM vigil.patient_status FINAL
    WHERE condition = 'HYPERTENSION' AND period_kind = 'YEAR' AND managed = 1
      AND period_start = toStartOfYear(today() - 365)
    GROUP BY hospital_id ORDER BY hospital_id"

cat <<MSG

Everything above is in ClickHouse (database 'vigil'). Every ClickHouse user has a password; the
local ones are in ${VIGIL_CLICKHOUSE__CREDENTIALS_FILE:-.vigil/clickhouse/credentials.env}
(source it first). Look further, read-only, as the commission, for example:
  clickhouse-client --port $port --user commission --password "\$VIGIL_CH_COMMISSION_PASSWORD" --query "SELECT * FROM vigil.alerts FINAL ORDER BY event_time DESC LIMIT 10 FORMAT Vertical"
  clickhouse-client --port $port --user commission --password "\$VIGIL_CH_COMMISSION_PASSWORD" --query "SELECT kind, count() FROM vigil.clinical_events GROUP BY kind"
or over HTTP: curl -u "commission:\$VIGIL_CH_COMMISSION_PASSWORD" 'http://127.0.0.1:${VIGIL_CLICKHOUSE_HTTP_PORT:-8123}/?query=SELECT+count()+FROM+vigil.alerts'

The services keep running: deploy/local/services.sh stop  (or: reset, to delete their data too).
MSG

# The commission's dashboard, left running for you to open.
mkdir -p .vigil
[ -f .vigil/serve.pid ] && kill "$(cat .vigil/serve.pid)" 2>/dev/null && sleep 0.5
./target/release/vigil serve > .vigil/serve.log 2>&1 &
echo $! > .vigil/serve.pid
for _ in $(seq 50); do
  curl -fsS "${dashboard}healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
cat <<MSG

==> the commission's dashboard (Chinese; English by the switch at the top right):

    $link

(the link carries a commission token, kept in a cookie once opened; mint others with
 ./target/release/vigil token add --role commission|insurance|operator|hospital:<id>)

It keeps running (log: .vigil/serve.log); stop it with: kill \$(cat .vigil/serve.pid)
MSG
