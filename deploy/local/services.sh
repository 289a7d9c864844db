#!/usr/bin/env bash
# Local services for Vigil: a Kafka-API broker (Tansu 0.6.0 on SQLite storage) and ClickHouse,
# both on loopback, with their data under $VIGIL_HOME. Idempotent: installs what is missing,
# starts what is not running, and leaves alone what already runs.
#
#   deploy/local/services.sh install   install ClickHouse (Debian package) and build Tansu (cached)
#   deploy/local/services.sh start     install if needed, start both, wait until they answer
#   deploy/local/services.sh stop      stop both
#   deploy/local/services.sh start|stop clickhouse|tansu   just one of them (outage tests)
#   deploy/local/services.sh status    say what runs where
#   deploy/local/services.sh env       print the environment variables that point Vigil at them
#   deploy/local/services.sh reset     stop both and delete their data (topics, tables, state)
#   deploy/local/services.sh user NAME PASSWORD   add a SCRAM-SHA-512 user to the running Tansu
#                                      (before it is started with VIGIL_KAFKA_AUTHENTICATION=1)
#   deploy/local/services.sh install socat   the TLS terminator VIGIL_KAFKA_TLS_PORT uses
#   deploy/local/services.sh install|start|stop zookeeper   ZooKeeper (Debian's package) for a replicated
#                                      ClickHouse cluster on loopback (not part of plain start)
#
# Settings (environment):
#   VIGIL_HOME                     data, logs and pid files        (default: <repo>/.vigil)
#   VIGIL_CACHE                    where the Tansu build is kept   (default: ~/.cache/vigil)
#   VIGIL_KAFKA_PORT               broker port                     (default: 9092)
#   VIGIL_CLICKHOUSE_HTTP_PORT     ClickHouse HTTP port            (default: 8123)
#   VIGIL_CLICKHOUSE_TCP_PORT      ClickHouse native port          (default: 9000)
#   VIGIL_CLICKHOUSE_INTERSERVER_PORT                              (default: 9009)
#   VIGIL_KAFKA_STORAGE            Tansu storage engine            (default: sqlite://tansu.db)
#   VIGIL_CH_DATABASES             Vigil databases the ClickHouse users may use, "*" for every
#                                  one (a test server)             (default: vigil)
#   VIGIL_KAFKA_AUTHENTICATION     1: Tansu requires SASL (SCRAM) from every client (default: 0)
#   VIGIL_CLICKHOUSE_HTTPS_PORT    also serve HTTPS on this port, with a certificate from a local
#                                  CA made once ($VIGIL_HOME/clickhouse/tls/ca.crt) (default: off)
#   VIGIL_KAFKA_TLS_PORT           serve Kafka over TLS on this port: a TLS terminator (socat) in
#                                  front of Tansu, which then advertises this port, with a
#                                  certificate of a local CA ($VIGIL_HOME/kafka-tls/ca.crt);
#                                  clients must use TLS (default: off)
#   VIGIL_ZOOKEEPER_PORT           ZooKeeper's client port         (default: 2181)
#   VIGIL_CLICKHOUSE_CLUSTER       make this ClickHouse a replica of this cluster (empty: standalone)
#   VIGIL_CLICKHOUSE_REPLICA       its replica name                (default: r1)
#   VIGIL_CLICKHOUSE_CLUSTER_HOSTS the cluster's replicas, "host:native_port ..." (one shard)
#                                  (the replicas share one credentials.env: copy it before starting)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
home=${VIGIL_HOME:-$repo/.vigil}
cache=${VIGIL_CACHE:-$HOME/.cache/vigil}
kafka_port=${VIGIL_KAFKA_PORT:-9092}
ch_http=${VIGIL_CLICKHOUSE_HTTP_PORT:-8123}
ch_tcp=${VIGIL_CLICKHOUSE_TCP_PORT:-9000}
ch_inter=${VIGIL_CLICKHOUSE_INTERSERVER_PORT:-9009}
# sqlite://tansu.db keeps acknowledged records across crashes; memory:// is for throughput
# benchmarks only (a consumer resuming inside a record batch misses records).
kafka_storage=${VIGIL_KAFKA_STORAGE:-sqlite://tansu.db}
kafka_authentication=${VIGIL_KAFKA_AUTHENTICATION:-0}
ch_https=${VIGIL_CLICKHOUSE_HTTPS_PORT:-}
kafka_tls_port=${VIGIL_KAFKA_TLS_PORT:-}
zk_port=${VIGIL_ZOOKEEPER_PORT:-2181}
ch_cluster=${VIGIL_CLICKHOUSE_CLUSTER:-}
ch_replica=${VIGIL_CLICKHOUSE_REPLICA:-r1}
ch_cluster_hosts=${VIGIL_CLICKHOUSE_CLUSTER_HOSTS:-}

tansu_version=0.6.0
tansu_root=$cache/tansu-$tansu_version
tansu_bin=$tansu_root/bin/tansu
ch_config=$repo/deploy/clickhouse/server/config.xml

say() { printf 'vigil services: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "installing packages needs root: run '$*' as root, then try again"
  fi
}

# Installs Debian packages: apt_install WHAT [apt-get install arguments...].
apt_install() {
  local what=$1; shift
  say "installing $what from Debian's packages ($*)"
  as_root apt-get update -qq >/dev/null ||
    die "apt-get update failed; check that Debian's package mirror is reachable"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null ||
    die "apt-get install $* failed; see the messages above"
}

install_clickhouse() {
  if command -v clickhouse-server >/dev/null 2>&1 && command -v clickhouse-client >/dev/null 2>&1; then
    return
  fi
  apt_install ClickHouse clickhouse-server clickhouse-client
}

zookeeper_jar=/usr/share/java/zookeeper.jar

install_zookeeper() {
  [ -f "$zookeeper_jar" ] && return
  apt_install ZooKeeper --no-install-recommends zookeeper
}

install_socat() {
  command -v socat >/dev/null 2>&1 && return
  apt_install "socat (Kafka's TLS terminator)" --no-install-recommends socat
}

# Serving sessions, not only running: `ruok` answers `imok` before the server takes sessions,
# and a ClickHouse 18.16 whose first ZooKeeper handshake failed crashes on its first ON CLUSTER
# statement. `srvr` names the mode only once the server serves.
zookeeper_ready() {
  (exec 3<>"/dev/tcp/127.0.0.1/$zk_port" && printf srvr >&3 && timeout 2 cat <&3) 2>/dev/null |
    grep -q '^Mode: '
}

start_zookeeper() {
  local pidfile=$home/zookeeper.pid dir=$home/zookeeper
  if pid_alive "$pidfile"; then
    say "ZooKeeper already runs (pid $(cat "$pidfile")) on 127.0.0.1:$zk_port"
    return
  fi
  port_open "$zk_port" && die "port $zk_port is taken by another program; set VIGIL_ZOOKEEPER_PORT to a free port"
  mkdir -p "$dir/data"
  printf '%s\n' "tickTime=2000" "dataDir=$dir/data" "clientPort=$zk_port" \
    "clientPortAddress=127.0.0.1" "admin.enableServer=false" "maxClientCnxns=0" \
    "4lw.commands.whitelist=srvr" >"$dir/zoo.cfg"
  (cd "$dir" && exec java -Xmx256m -cp "$zookeeper_jar" -Dzookeeper.log.dir="$dir" \
      org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" >"$dir/zookeeper.log" 2>&1) &
  echo $! >"$pidfile"
  wait_for "ZooKeeper" 60 alive_and "$pidfile" "$dir/zookeeper.log" zookeeper_ready
  say "ZooKeeper runs on 127.0.0.1:$zk_port, data in $dir"
}

# This server as a replica of a one-shard cluster: ZooKeeper, its macros, the cluster's
# replicas (Distributed DDL runs `ON CLUSTER` statements on each of them).
render_cluster() {
  local dir=$1 replicas="" host
  mkdir -p "$dir/config.d"
  rm -f "$dir/config.d/cluster.xml"
  [ -n "$ch_cluster" ] || return 0
  [ -n "$ch_cluster_hosts" ] || die "VIGIL_CLICKHOUSE_CLUSTER is set without VIGIL_CLICKHOUSE_CLUSTER_HOSTS"
  for host in $ch_cluster_hosts; do
    replicas="$replicas<replica><host>${host%:*}</host><port>${host##*:}</port><user>default</user><password>$VIGIL_CH_ADMIN_PASSWORD</password></replica>"
  done
  printf '%s\n' "<yandex>" \
    "<zookeeper><node><host>127.0.0.1</host><port>$zk_port</port></node><session_timeout_ms>6000</session_timeout_ms></zookeeper>" \
    "<macros><shard>1</shard><replica>$ch_replica</replica></macros>" \
    "<remote_servers><$ch_cluster><shard><internal_replication>true</internal_replication>$replicas</shard></$ch_cluster></remote_servers>" \
    "<distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>" \
    "<interserver_http_host>127.0.0.1</interserver_http_host>" \
    "</yandex>" >"$dir/config.d/cluster.xml"
}

install_tansu() {
  if [ -x "$tansu_bin" ]; then
    return
  fi
  command -v cargo >/dev/null 2>&1 || die "building Tansu needs cargo (the Rust toolchain)"
  say "building Tansu $tansu_version once into $tansu_root (about 10 minutes on 2 cores)"
  mkdir -p "$cache"
  # --locked matters: without it the build picks newer dependencies and fails.
  # Build into a scratch root and move it into place, so an interrupted build is never mistaken
  # for a finished one.
  local scratch
  scratch=$(mktemp -d "$cache/tansu-build.XXXXXX")
  if ! cargo install --locked "tansu@$tansu_version" --features dynostore,libsql \
      --root "$scratch" >"$cache/tansu-build.log" 2>&1; then
    tail -20 "$cache/tansu-build.log" >&2
    rm -rf "$scratch"
    die "building Tansu failed; the full log is $cache/tansu-build.log"
  fi
  rm -rf "$tansu_root"
  mv "$scratch" "$tansu_root"
}

wait_for() { # name, seconds, command...
  local name=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    if [ $SECONDS -ge $deadline ]; then
      die "$name did not come up within ${seconds}s; its log is in $home"
    fi
    sleep 0.2
  done
}

# Succeeds once the service answers; fails the whole script at once if its process died.
alive_and() { # pidfile, log, command...
  local pidfile=$1 log=$2; shift 2
  if ! pid_alive "$pidfile"; then
    tail -5 "$log" >&2 2>/dev/null || true
    rm -f "$pidfile"
    die "the service exited at start; its log is $log"
  fi
  "$@"
}
alive_and_listening() { alive_and "$1" "$3" port_open "$2"; }

clickhouse_ready() {
  [ "$(curl -fsS "http://127.0.0.1:$ch_http/ping" 2>/dev/null)" = "Ok." ]
}

# Passwords of the ClickHouse users, generated once per installation and kept (mode 600) in
# $dir/credentials.env (one VIGIL_CH_<ROLE>_PASSWORD line each, what vigil reads through
# clickhouse.credentials_file); a role an older installation lacks gets one. users.xml gets
# their SHA-256.
render_users() {
  local dir=$1 credentials=$1/credentials.env user
  (umask 077
   touch "$credentials"
   for user in ADMIN WRITER READER COMMISSION INSURANCE; do
     grep -q "^VIGIL_CH_${user}_PASSWORD=" "$credentials" ||
       printf 'VIGIL_CH_%s_PASSWORD=%s\n' "$user" "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >>"$credentials"
   done)
  # shellcheck disable=SC1090
  . "$credentials"
  local sha
  sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
  # Each served database, its published <db>_insurance companion and its <db>_audit (API
  # tokens and the access log: the writer's user serves the API's writes, the others never read it).
  # "*": every database (a shared test server whose tests make databases of their own).
  local db main="" published="" audit=""
  if [ "${VIGIL_CH_DATABASES:-vigil}" != "*" ]; then
    for db in ${VIGIL_CH_DATABASES:-vigil}; do
      main="$main<database>$db</database>"
      published="$published<database>${db}_insurance</database>"
      audit="$audit<database>${db}_audit</database>"
    done
  fi
  sed -e "s/@ADMIN_SHA256@/$(sha "$VIGIL_CH_ADMIN_PASSWORD")/" \
      -e "s/@WRITER_SHA256@/$(sha "$VIGIL_CH_WRITER_PASSWORD")/" \
      -e "s/@READER_SHA256@/$(sha "$VIGIL_CH_READER_PASSWORD")/" \
      -e "s/@COMMISSION_SHA256@/$(sha "$VIGIL_CH_COMMISSION_PASSWORD")/" \
      -e "s/@INSURANCE_SHA256@/$(sha "$VIGIL_CH_INSURANCE_PASSWORD")/" \
      -e "s|@WRITER_DATABASES@|$main$published$audit|" \
      -e "s|@READER_DATABASES@|$main|" \
      -e "s|@COMMISSION_DATABASES@|$main|" \
      -e "s|@INSURANCE_DATABASES@|$published|" \
      "$(dirname "$ch_config")/users.xml" >"$dir/users.xml"
}

# A local CA and a certificate for 127.0.0.1 it signed, made once (clients trust ca.crt).
make_certificates() {
  local tls=$1
  [ -f "$tls/server.crt" ] && return
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Vigil local CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$tls/san.cnf"
  openssl x509 -req -days 3650 -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
    -CAcreateserial -extfile "$tls/san.cnf" -out "$tls/server.crt" 2>/dev/null
  chmod 600 "$tls/ca.key" "$tls/server.key"
}

start_clickhouse() {
  local pidfile=$home/clickhouse.pid dir=$home/clickhouse
  if pid_alive "$pidfile"; then
    say "ClickHouse already runs (pid $(cat "$pidfile")) on http://127.0.0.1:$ch_http"
    return
  fi
  for port in "$ch_http" "$ch_tcp" "$ch_inter"; do
    port_open "$port" && die "port $port is taken by another program; set VIGIL_CLICKHOUSE_HTTP_PORT, VIGIL_CLICKHOUSE_TCP_PORT or VIGIL_CLICKHOUSE_INTERSERVER_PORT to free ports"
  done
  mkdir -p "$dir"/{data,tmp,user_files,format_schemas}
  # The server reads users.xml relative to the config file: keep both together in $dir.
  cp "$ch_config" "$dir/config.xml"
  render_users "$dir"
  render_cluster "$dir"
  local https=()
  if [ -n "$ch_https" ]; then
    make_certificates "$dir/tls"
    https=(--https_port="$ch_https" --openSSL.server.certificateFile="$dir/tls/server.crt"
           --openSSL.server.privateKeyFile="$dir/tls/server.key")
  fi
  (cd "$dir" && exec clickhouse-server --config-file="$dir/config.xml" -- \
      --path="$dir/data/" --tmp_path="$dir/tmp/" --user_files_path="$dir/user_files/" \
      --format_schema_path="$dir/format_schemas/" \
      --logger.log="$dir/clickhouse-server.log" --logger.errorlog="$dir/clickhouse-server.err.log" \
      --http_port="$ch_http" --tcp_port="$ch_tcp" --interserver_http_port="$ch_inter" \
      "${https[@]}" \
      >"$dir/stdout.log" 2>&1) &
  echo $! >"$pidfile"
  wait_for "ClickHouse" 60 alive_and "$pidfile" "$dir/clickhouse-server.err.log" clickhouse_ready
  say "ClickHouse runs on http://127.0.0.1:$ch_http (native port $ch_tcp), data in $dir"
}

start_tansu() {
  local pidfile=$home/tansu.pid dir=$home/tansu
  if pid_alive "$pidfile"; then
    say "Tansu already runs (pid $(cat "$pidfile")) on 127.0.0.1:$kafka_port"
    [ -n "$kafka_tls_port" ] && start_kafka_tls
    return 0
  fi
  port_open "$kafka_port" && die "port $kafka_port is taken by another program; set VIGIL_KAFKA_PORT to a free port"
  mkdir -p "$dir"
  local authentication=()
  # Users are added before (services.sh user): an authenticating Tansu refuses the request too.
  [ "$kafka_authentication" = 1 ] && authentication=(--authentication)
  # With TLS, clients reach Tansu through the terminator only: it advertises that port.
  local advertised=$kafka_port
  [ -n "$kafka_tls_port" ] && advertised=$kafka_tls_port
  # Tansu resolves a sqlite:// path against its working directory, so run it from $dir.
  (cd "$dir" && exec "$tansu_bin" broker \
      --storage-engine "$kafka_storage" \
      --listener-url "tcp://127.0.0.1:$kafka_port" \
      --advertised-listener-url "tcp://127.0.0.1:$advertised" \
      "${authentication[@]}" \
      >"$dir/tansu.log" 2>&1) &
  echo $! >"$pidfile"
  wait_for "Tansu" 30 alive_and_listening "$pidfile" "$kafka_port" "$dir/tansu.log"
  say "Tansu runs on 127.0.0.1:$kafka_port with $kafka_storage storage, data in $dir"
  [ -n "$kafka_tls_port" ] && start_kafka_tls
  return 0
}

# Tansu 0.6.0's own TLS listener cannot be started (its --cert and --key conflict), so TLS is
# terminated in front of it: every connection to the TLS port is decrypted and passed to Tansu.
start_kafka_tls() {
  local pidfile=$home/kafka-tls.pid tls=$home/kafka-tls
  pid_alive "$pidfile" && return
  install_socat
  port_open "$kafka_tls_port" && die "port $kafka_tls_port is taken by another program; set VIGIL_KAFKA_TLS_PORT to a free port"
  make_certificates "$tls"
  [ -f "$tls/server.pem" ] || cat "$tls/server.key" "$tls/server.crt" >"$tls/server.pem"
  chmod 600 "$tls/server.pem"
  socat "OPENSSL-LISTEN:$kafka_tls_port,bind=127.0.0.1,reuseaddr,fork,cert=$tls/server.pem,verify=0" \
    "TCP:127.0.0.1:$kafka_port" >"$tls/socat.log" 2>&1 &
  echo $! >"$pidfile"
  wait_for "Kafka's TLS terminator" 30 alive_and_listening "$pidfile" "$kafka_tls_port" "$tls/socat.log"
  say "Kafka over TLS on 127.0.0.1:$kafka_tls_port (CA: $tls/ca.crt)"
}

stop_one() { # name, pidfile
  local name=$1 pidfile=$2
  if ! pid_alive "$pidfile"; then
    rm -f "$pidfile"
    return
  fi
  local pid
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  say "stopped $name"
}

print_env() {
  cat <<EOF
export VIGIL_KAFKA__BROKERS=127.0.0.1:$kafka_port
export VIGIL_CLICKHOUSE__URL=http://127.0.0.1:$ch_http
export VIGIL_TEST_KAFKA_BROKERS=127.0.0.1:$kafka_port
export VIGIL_TEST_CLICKHOUSE_URL=http://127.0.0.1:$ch_http
export VIGIL_CLICKHOUSE__CREDENTIALS_FILE=$home/clickhouse/credentials.env
export VIGIL_TEST_CLICKHOUSE_CREDENTIALS=$home/clickhouse/credentials.env
EOF
}

case "${1:-}" in
  install)
    if [ "${2:-}" = zookeeper ]; then install_zookeeper; exit 0; fi
    if [ "${2:-}" = socat ]; then install_socat; exit 0; fi
    install_clickhouse
    install_tansu
    ;;
  start)
    mkdir -p "$home"
    if [ "${2:-}" = zookeeper ]; then install_zookeeper; start_zookeeper; exit 0; fi
    if [ "${2:-clickhouse}" = clickhouse ]; then install_clickhouse; start_clickhouse; fi
    if [ "${2:-tansu}" = tansu ]; then install_tansu; start_tansu; fi
    ;;
  stop)
    if [ "${2:-}" = zookeeper ]; then stop_one ZooKeeper "$home/zookeeper.pid"; exit 0; fi
    if [ "${2:-tansu}" = tansu ]; then
      stop_one "Kafka's TLS terminator" "$home/kafka-tls.pid"
      stop_one Tansu "$home/tansu.pid"
    fi
    if [ "${2:-clickhouse}" = clickhouse ]; then stop_one ClickHouse "$home/clickhouse.pid"; fi
    ;;
  status)
    pid_alive "$home/tansu.pid" && say "Tansu runs on 127.0.0.1:$kafka_port" || say "Tansu is stopped"
    pid_alive "$home/clickhouse.pid" && say "ClickHouse runs on http://127.0.0.1:$ch_http" || say "ClickHouse is stopped"
    ;;
  env)
    print_env
    ;;
  user)
    [ $# -eq 3 ] || die "usage: services.sh user NAME PASSWORD"
    pid_alive "$home/tansu.pid" || die "Tansu is not running; start it first (without authentication)"
    "$tansu_bin" user create --broker "tcp://127.0.0.1:$kafka_port" --mechanism scram512 "$2" "$3" ||
      die "could not add the user $2 to Tansu"
    say "Tansu user $2 added (SCRAM-SHA-512)"
    ;;
  reset)
    stop_one Tansu "$home/tansu.pid"
    stop_one ClickHouse "$home/clickhouse.pid"
    stop_one ZooKeeper "$home/zookeeper.pid"
    stop_one "Kafka's TLS terminator" "$home/kafka-tls.pid"
    rm -rf "$home/tansu" "$home/clickhouse" "$home/zookeeper" "$home/kafka-tls"
    say "deleted the local services' data in $home"
    ;;
  *)
    sed -n '2,39p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
