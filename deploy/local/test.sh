#!/usr/bin/env bash
# Runs Vigil's whole test suite: formatting, lints, unit tests and the end-to-end tests against a
# real broker (Tansu) and a real ClickHouse. The services are installed if missing, started on
# free loopback ports with throwaway data, and stopped when the suite ends, pass or fail.
#
#   deploy/local/test.sh                  everything
#   deploy/local/test.sh -E 'test(crisis)'  extra arguments go to cargo nextest (a filter here)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

export VIGIL_HOME
VIGIL_HOME=$(mktemp -d "${TMPDIR:-/tmp}/vigil-test-services.XXXXXX")
export VIGIL_KAFKA_PORT=${VIGIL_TEST_KAFKA_PORT:-$(free_port)}
export VIGIL_CLICKHOUSE_HTTP_PORT=$(free_port)
export VIGIL_CLICKHOUSE_TCP_PORT=$(free_port)
export VIGIL_CLICKHOUSE_INTERSERVER_PORT=$(free_port)

cleanup() {
  deploy/local/services.sh stop || true
  rm -rf "$VIGIL_HOME"
}
trap cleanup EXIT

echo "==> checking formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> starting the local services (first run on a new machine installs them)"
# Every test makes a database of its own, and each stage connects as its role's user: those
# users may use every database here (the access test checks the narrowed users on a server of
# its own).
export VIGIL_CH_DATABASES="*"
deploy/local/services.sh start
eval "$(deploy/local/services.sh env)"
# The cluster test starts ZooKeeper and two ClickHouse replicas of its own; the Kafka TLS test
# a TLS terminator (socat) in front of a broker of its own.
deploy/local/services.sh install zookeeper
deploy/local/services.sh install socat

echo "==> installing chDB (a current ClickHouse engine in-process, for the SQL check), hl7 (a real MLLP client) and PyYAML (the deployment check)"
python3 -m pip install --quiet --disable-pip-version-check chdb hl7==0.4.5 pyyaml

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "==> installing Debian's Chromium, its WebDriver and a CJK font (the dashboard's browser test)"
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver fonts-wqy-zenhei >/dev/null
fi

echo "==> running the tests"
# Release builds: the end-to-end tests exercise timing (batches, checkpoints, rebalances) as
# deployed, and the demo and benchmarks share the build.
cargo nextest run --workspace --locked --release --no-fail-fast "$@"
