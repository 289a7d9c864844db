#!/usr/bin/env bash
# Runs Vigil's benchmarks on this machine and prints every figure (BENCHMARKS.md explains them).
# Throughput and latency runs use a second Tansu on its memory storage (fast, but only right for
# consumers that read from the start); the restore run, which restarts a consumer, uses the
# local services' SQLite-backed Tansu. ClickHouse is the local services' one.
#
#   deploy/local/bench.sh                         everything, figures also in target/bench.json
#   deploy/local/bench.sh --runs 1 --events 200000   extra arguments go to `vigil bench`
#   deploy/local/bench.sh --only engine,stages    some of them (restore runs on the SQLite broker)
set -euo pipefail
# --only is split here: restore needs the SQLite broker, everything else the memory broker.
only="engine,stages,e2e,latency,backfill,restore"
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --only) only=${2:?--only needs a list}; shift 2 ;;
    --only=*) only=${1#--only=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
[ "$only" = all ] && only="engine,spool,stages,e2e,latency,backfill,restore,dashboard,backtest"
memory_only=$(tr ',' '\n' <<<"$only" | grep -vx restore | paste -sd, - || true)
# The peer (PyFlink 2.3 on a local mini-cluster; it brings its own Flink runtime and needs Java
# 17): installed into a cached virtualenv the first time.
if tr ',' '\n' <<<"$only" | grep -qx peer; then
  command -v java >/dev/null || { echo "bench.sh: the Flink peer needs Java 17 (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
  flink_venv=${XDG_CACHE_HOME:-$HOME/.cache}/vigil/flink-venv
  if ! "$flink_venv/bin/python" -c 'import pyflink' 2>/dev/null; then
    echo "==> installing PyFlink 2.3 into $flink_venv (about 850 MB, once)"
    python3 -m venv "$flink_venv"
    "$flink_venv/bin/pip" install -q "apache-flink==2.3.0"
  fi
  export VIGIL_PEER_PYTHON=$flink_venv/bin/python
fi
restore=$(tr ',' '\n' <<<"$only" | grep -x restore || true)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

cargo build --release --locked --bin vigil
# Every run makes a database of its own, which the stages' ClickHouse users must be allowed.
export VIGIL_CH_DATABASES="*"
deploy/local/services.sh start
if grep -q "<allow_databases><database>" "${VIGIL_HOME:-$repo/.vigil}/clickhouse/users.xml"; then
  echo "bench.sh: ClickHouse already runs with its users limited to Vigil's own databases; the bench makes one per run. Restart it: deploy/local/services.sh stop clickhouse, then run the bench again." >&2
  exit 1
fi
eval "$(deploy/local/services.sh env)"

memory_home=$(mktemp -d "${TMPDIR:-/tmp}/vigil-bench-broker.XXXXXX")
# The stages run from a copy, so a rebuild during the (long) run cannot pull the binary away.
vigil=$memory_home/vigil
cp target/release/vigil "$vigil"
memory_port=$(free_port)
stop_memory_broker() {
  VIGIL_HOME=$memory_home VIGIL_KAFKA_PORT=$memory_port deploy/local/services.sh stop tansu || true
  rm -rf "$memory_home"
}
trap stop_memory_broker EXIT
VIGIL_HOME=$memory_home VIGIL_KAFKA_PORT=$memory_port VIGIL_KAFKA_STORAGE=memory:// \
  deploy/local/services.sh start tansu

echo "==> $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "==> throughput, latency, memory (Tansu memory:// on port $memory_port)"
# The memory broker answers at once: a short fetch wait is what makes it fast (BENCHMARKS.md).
# The end-to-end run says where each CPU-second went, the broker's and ClickHouse's too.
export VIGIL_BENCH_BROKER_PID=$(cat "$memory_home/tansu.pid")
export VIGIL_BENCH_CLICKHOUSE_PID=$(cat "${VIGIL_HOME:-$repo/.vigil}/clickhouse.pid")
if [ -n "$memory_only" ]; then
  VIGIL_KAFKA__FETCH_WAIT_MAX=10ms VIGIL_KAFKA__BROKERS=127.0.0.1:$memory_port "$vigil" bench \
    --only "$memory_only" --json target/bench.json ${args[@]+"${args[@]}"}
fi
if [ -n "$restore" ]; then
  echo "==> restore after SIGKILL (Tansu sqlite://)"
  "$vigil" bench --only restore --json target/bench-restore.json ${args[@]+"${args[@]}"}
fi
