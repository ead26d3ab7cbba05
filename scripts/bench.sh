#!/usr/bin/env bash
# Side-by-side benchmarks: sockmq vs mosquitto (MQTT) and sockmq's
# SocketCluster bridge vs socketcluster-server, in the same run, on
# loopback only, with the same load tool (cmd/sockmq-load).
#
# Usage: scripts/bench.sh [--quick] [--reps N] [--out DIR] [--acks|--lean|--all]
#                         [--before PATH] [--pin-load CPUS] [--pin-server CPUS]
#                         [--sockmq PATH] [--label NAME] [--lean-results FILE]
#   --quick   10x fewer messages and 1 repetition (to try the script)
#   --reps N  repetitions of every configuration (default 3; medians shown)
#   --out DIR where results.jsonl (every run) and results.md go
#             (default: a new /tmp/sockmq-bench-results.* directory)
#   --acks    only the cost of acknowledging after the store committed
#             (issue 10): QoS 1 to a persistent subscriber from 1 and 16
#             publishers on sockmq with persistence.sync true and false,
#             mosquitto (also with max_queued_messages 0) and the "before"
#             binary; then the clean-session MQTT scenarios, before vs after
#   --lean    only the issue-11 section (memory and CPU; about 20 minutes):
#             RSS vs idle MQTT connections (CONNECT + 1 subscription) at 1k,
#             5k, 15k and idle SC sockets at 1k, 5k with a healthy client's
#             round trip while they are held; RSS of 100k retained and of
#             100 offline sessions x 1000 queued QoS 1; server CPU per
#             message vs rate (QoS 1 1->1 paced 500..5000/s, full rate 1->1
#             and 16->1); QoS 1 1->100 at 1000 msg/s latency from the
#             scheduled send time; MQTT -> SC at 10,000 msg/s. sockmq vs
#             mosquitto (and socketcluster-server for SC sockets). Servers
#             on CPU 0, the load tool on CPU 1 (LEAN_SERVER_CPU,
#             LEAN_LOAD_CPU; empty = unpinned). JSON lines are appended to
#             --lean-results; the markdown summary is printed.
#   --all     every section, --acks and --lean included
#   --sockmq PATH  measure this sockmq binary instead of building one
#             (e.g. a build of main as the "before" baseline)
#   --label NAME   name of the sockmq build in --lean results (default:
#             git describe of this checkout, or the --sockmq file name)
#   --lean-results FILE  where --lean appends its JSON lines
#             (default bench/results/lean.jsonl)
#   --before PATH  a sockmq binary to compare with ("before"; also the
#             BEFORE environment variable); without it --acks compares
#             this build with mosquitto only
#   --pin-load CPUS  run the load tool under taskset -c CPUS
#   --pin-server CPUS  run every server of the classic and --acks sections
#             under taskset -c CPUS (--lean pins on its own: LEAN_SERVER_CPU).
#             With --pin-server 0 --pin-load 1 each server has one core
#             (mosquitto and socketcluster-server use one anyway) and the
#             tool the other, so a row is tool-limited when the tool's core
#             is busy (the "tool core %" column; >= 95% is marked)
#
# Needs go, mosquitto (Debian's; scripts/test-deps.sh installs it, or
# apt-get here when root), node/npm (the reference server in bench/ is
# installed with npm ci if missing; not for --acks), jq, curl, taskset. It
# stops with a clear message when one is missing.
# Every server listens on 127.0.0.1 on free ports; everything started here
# is stopped on exit. A watchdog ends the script after 15 minutes (25 with
# --acks and the classic sections, 40 with --lean alone, 55 with --all).
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=3
QUICK=0
OUT=""
CLASSIC=1   # the memory, throughput and stored-state sections
ACKS=0      # the issue-10 section
LEAN=0      # the issue-11 section
SOCKMQ_BIN=""
LABEL=""
LEAN_RESULTS=bench/results/lean.jsonl
BEFORE=${BEFORE:-}
PIN=""
SRV_CPUS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; REPS=1 ;;
    --reps) REPS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --acks) ACKS=1; CLASSIC=0 ;;
    --lean) LEAN=1; CLASSIC=0 ;;
    --all) ACKS=1; CLASSIC=1; LEAN=1 ;;
    --sockmq) SOCKMQ_BIN=$2; shift ;;
    --label) LABEL=$2; shift ;;
    --lean-results) LEAN_RESULTS=$2; shift ;;
    --before) BEFORE=$2; shift ;;
    --pin-load) PIN=$2; shift ;;
    --pin-server) SRV_CPUS=$2; shift ;;
    -h|--help) sed -n '2,55p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [ -n "$BEFORE" ] && [ ! -x "$BEFORE" ]; then echo "bench.sh: before binary $BEFORE is not executable" >&2; exit 2; fi
if [ -n "$SOCKMQ_BIN" ] && [ ! -x "$SOCKMQ_BIN" ]; then echo "bench.sh: sockmq binary $SOCKMQ_BIN is not executable" >&2; exit 2; fi
if [ "$ACKS" = 1 ] && [ "$LEAN" = 1 ] && [ "$CLASSIC" = 0 ]; then echo "bench.sh: --acks and --lean are separate sections; use --all for both" >&2; exit 2; fi
[ -n "$OUT" ] || OUT=$(mktemp -d /tmp/sockmq-bench-results.XXXXXX)
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

WORK=$(mktemp -d /tmp/sockmq-bench.XXXXXX)
PIDS=()
cleanup() {
  local p
  pkill -P "$WATCHDOG" 2>/dev/null || true
  kill "$WATCHDOG" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
LIMIT_MIN=15
if [ "$CLASSIC" = 1 ] && [ "$ACKS" = 1 ]; then LIMIT_MIN=25; fi
if [ "$LEAN" = 1 ]; then LIMIT_MIN=$((LIMIT_MIN + 30)); fi
if [ "$LEAN" = 1 ] && [ "$CLASSIC" = 0 ]; then LIMIT_MIN=40; fi
{ sleep $((LIMIT_MIN * 60)); echo "bench.sh: watchdog: $LIMIT_MIN minutes passed, stopping" >&2; kill -TERM $$; } >/dev/null 2>&1 &
WATCHDOG=$!

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# --- tools -----------------------------------------------------------------
die() { echo "bench.sh: $*" >&2; exit 2; }
need_apt() { # command package
  command -v "$1" >/dev/null 2>&1 && return
  [ -x "/usr/sbin/$1" ] && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing $2"
    apt-get install -y "$2" >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y "$2" >/dev/null 2>&1; } || true
  fi
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] ||
    die "$1 is missing and could not be installed: run scripts/test-deps.sh as root, or apt-get install $2"
}
need_apt mosquitto mosquitto
need_apt jq jq
need_apt curl curl
need_apt taskset util-linux
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
case "$( ("$MOSQUITTO" -h 2>&1 || true) | head -n 1)" in
  *"mosquitto version"*) ;;
  *) die "$MOSQUITTO does not run (mosquitto -h printed no version)" ;;
esac
if [ "$CLASSIC" = 1 ] || [ "$LEAN" = 1 ]; then
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
    die "node and npm are needed for socketcluster-server (bench/sc-server.js): run scripts/test-deps.sh as root, or apt-get install nodejs npm"
  if [ ! -d bench/node_modules/socketcluster-server ]; then
    log "installing bench/ (npm ci)"
    (cd bench && npm ci --no-audit --no-fund >/dev/null) ||
      die "npm ci in bench/ failed: socketcluster-server is not installed (run (cd bench && npm ci) and look at its output)"
  fi
  node -e "require('./bench/node_modules/socketcluster-server')" 2>/dev/null ||
    die "bench/node_modules/socketcluster-server does not load with $(node --version); run (cd bench && npm ci)"
fi

if [ -n "$SOCKMQ_BIN" ]; then
  log "building sockmq-load; sockmq is $SOCKMQ_BIN"
  cp "$SOCKMQ_BIN" "$WORK/sockmq"
else
  log "building sockmq and sockmq-load"
  CGO_ENABLED=0 go build -trimpath -o "$WORK/sockmq" ./cmd/sockmq
fi
CGO_ENABLED=0 go build -trimpath -o "$WORK/sockmq-load" ./cmd/sockmq-load
LOAD=$WORK/sockmq-load
if [ -n "$PIN" ]; then
  command -v taskset >/dev/null || { echo "bench.sh: --pin-load needs taskset (util-linux)" >&2; exit 2; }
  LOAD_RUN=(taskset -c "$PIN" "$LOAD")
else
  LOAD_RUN=("$LOAD")
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

# SRV_PIN: a command prefix for servers (--pin-server; the --lean section
# sets its own).
SRV_PIN=(env)
[ -z "$SRV_CPUS" ] || SRV_PIN=(taskset -c "$SRV_CPUS")
HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Ports come from below the ephemeral range, so that no outgoing
# connection (of this script or of anything else) holds one already.
EPHEMERAL_LOW=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() {
  local p
  while :; do
    p=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
    if port_free "$p"; then echo "$p"; return; fi
  done
}
wait_port() { # port seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    if ! port_free "$1"; then return 0; fi
    sleep 0.1
  done
  return 1
}

# --- servers ---------------------------------------------------------------
# Each start_* function starts a fresh server on free loopback ports and
# sets its *_PID and address variables; stop_server stops one.
start_sockmq() { # NAME [BINARY [SYNC]]
  local dir=$WORK/sockmq-$1 bin=${2:-$WORK/sockmq} sync=${3:-true} code
  mkdir -p "$dir"
  SMQ_PORT=$(free_port); SMQ_HTTP=$(free_port)
  cat >"$dir/sockmq.yaml" <<EOF
# Production-like: persistence on (fsync per batch unless sync is false), default limits.
listeners:
  mqtt:
    address: 127.0.0.1:$SMQ_PORT
  http:
    address: 127.0.0.1:$SMQ_HTTP
persistence:
  enabled: true
  data_dir: $dir/data
  sync: $sync
logging:
  level: warn
EOF
  "$bin" check -c "$dir/sockmq.yaml" >/dev/null
  "${SRV_PIN[@]}" "$bin" serve -c "$dir/sockmq.yaml" 2>"$dir/sockmq.log" &
  SMQ_PID=$!; PIDS+=("$SMQ_PID")
  wait_port "$SMQ_PORT" 20 && wait_port "$SMQ_HTTP" 20 || { cat "$dir/sockmq.log"; echo "sockmq did not start" >&2; exit 1; }
  SMQ_ADDR=127.0.0.1:$SMQ_PORT
  SMQ_METRICS=http://127.0.0.1:$SMQ_HTTP/metrics
  BRIDGE_URL=ws://127.0.0.1:$SMQ_HTTP/socketcluster/
  # Is the bridge served? (101 Switching Protocols to a WebSocket upgrade.)
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
    -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "http://127.0.0.1:$SMQ_HTTP/socketcluster/" || true)
  if [ "$code" = 101 ]; then BRIDGE=1; else BRIDGE=0; fi
}

start_mosquitto() { # NAME [EXTRA-CONFIG-LINE]
  local dir=$WORK/mosquitto-$1
  mkdir -p "$dir"; chmod 755 "$WORK" "$dir"
  MOSQ_PORT=$(free_port)
  cat >"$dir/mosquitto.conf" <<EOF
listener $MOSQ_PORT 127.0.0.1
allow_anonymous true
log_type error
log_type warning
${2:-}
EOF
  chmod 644 "$dir/mosquitto.conf"
  "${SRV_PIN[@]}" "$MOSQUITTO" -c "$dir/mosquitto.conf" 2>"$dir/mosquitto.log" &
  MOSQ_PID=$!; PIDS+=("$MOSQ_PID")
  wait_port "$MOSQ_PORT" 20 || { cat "$dir/mosquitto.log"; echo "mosquitto did not start" >&2; exit 1; }
  MOSQ_ADDR=127.0.0.1:$MOSQ_PORT
}

start_scs() { # NAME
  SCS_PORT=$(free_port)
  "${SRV_PIN[@]}" node bench/sc-server.js "$SCS_PORT" >"$WORK/sc-server-$1.log" 2>&1 &
  SCS_PID=$!; PIDS+=("$SCS_PID")
  wait_port "$SCS_PORT" 20 || { cat "$WORK/sc-server-$1.log"; echo "sc-server did not start" >&2; exit 1; }
  SCS_URL=ws://127.0.0.1:$SCS_PORT/socketcluster/
}

stop_server() { # PID
  local p keep=()
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

start_sockmq probe
stop_server "$SMQ_PID"
[ "$BRIDGE" = 1 ] || log "the SocketCluster bridge is not served by this build: sockmq SC scenarios are skipped"

BEFORE_DESC=""
if [ -n "$BEFORE" ]; then
  BEFORE_DESC="; before: $BEFORE ($(stat -c '%y' "$BEFORE" | cut -d. -f1), sha256 $(sha256sum "$BEFORE" | cut -c1-12))"
fi
SCS_VERSION="(not used)"
if [ "$CLASSIC" = 1 ] || [ "$LEAN" = 1 ]; then SCS_VERSION=$(node -p "require('./bench/node_modules/socketcluster-server/package.json').version"); fi
MOSQ_VERSION=$( ("$MOSQUITTO" -h 2>&1 || true) | awk 'NR==1{print $3}')
{
  echo "# sockmq side-by-side benchmark"
  echo
  if [ -n "$SOCKMQ_BIN" ]; then SMQ_DESC="binary $SOCKMQ_BIN ($(stat -c '%y' "$SOCKMQ_BIN" | cut -d. -f1), sha256 $(sha256sum "$SOCKMQ_BIN" | cut -c1-12)); load tool from $(git describe --tags --always --dirty 2>/dev/null || echo dev)"
  else SMQ_DESC=$(git describe --tags --always --dirty 2>/dev/null || echo dev); fi
  echo "- date: $(date -u +%FT%TZ); sockmq $SMQ_DESC$BEFORE_DESC"
  echo "- machine: $(nproc) CPUs, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
  echo "- $(go version | cut -d' ' -f3), mosquitto $MOSQ_VERSION, socketcluster-server $SCS_VERSION, node $(node --version 2>/dev/null || echo -)"
  echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg); repetitions: $REPS (medians shown)"
  [ -z "$PIN" ] || echo "- load tool pinned to CPUs $PIN (taskset)"
  [ -z "$SRV_CPUS" ] || echo "- servers (classic and --acks sections) pinned to CPUs $SRV_CPUS (taskset; sockmq then runs with as many Ps as CPUs)"
} >"$OUT/header.md"
cat "$OUT/header.md" >&2

# --- measurement helpers ---------------------------------------------------
scale() { if [ "$QUICK" = 1 ]; then echo $(($1 / 10)); else echo "$1"; fi; }

# commit_stats URL: the store's commit histograms' sums and counts from
# sockmq's /metrics as a JSON object ({} if the server has none).
commit_stats() {
  [ -n "$1" ] || { echo '{}'; return; }
  curl -s --max-time 3 "$1" 2>/dev/null | awk '
    /^sockmq_store_commit_seconds_sum /{s=$2} /^sockmq_store_commit_seconds_count /{n=$2}
    /^sockmq_store_commit_writes_sum /{w=$2}
    END{ if (n != "") printf "{\"secs\":%s,\"commits\":%s,\"writes\":%s}\n", s, n, w; else print "{}" }'
}

# pubsub SCENARIO SERVER PID LOADTOOL-ARGS...: one run, one JSON line.
# With METRICS set to a sockmq /metrics URL, the store's commits during the
# run are added (commits, commit_secs, commit_writes); SECTION and ORDER
# (the server's place in its table) are copied into the line.
pubsub() {
  local scen=$1 srv=$2 pid=$3; shift 3
  local c0 c1 json m0 m1 load1
  load1=$(cut -d' ' -f1 /proc/loadavg)
  m0=$(commit_stats "${METRICS:-}")
  c0=$(cpu_ticks "$pid")
  json=$("${LOAD_RUN[@]}" "$@" --json --timeout 90s --label "$scen") || true
  c1=$(cpu_ticks "$pid")
  m1=$(commit_stats "${METRICS:-}")
  [ -n "$json" ] || json='{"error":"no output"}'
  jq -c --arg scen "$scen" --arg srv "$srv" --argjson cpu "$((c1 - c0))" --argjson hz "$HZ" \
    --argjson m0 "$m0" --argjson m1 "$m1" --argjson load1 "$load1" --arg section "${SECTION:-main}" --argjson order "${ORDER:-0}" \
    '. + {scenario:$scen, server:$srv, server_cpu_secs:($cpu/$hz), load1:$load1, section:$section, order:$order}
     + (if $m0.commits != null and $m1.commits != null then
          {commits:($m1.commits - $m0.commits), commit_secs:($m1.secs - $m0.secs), commit_writes:($m1.writes - $m0.writes)}
        else {} end)' <<<"$json" | tee -a "$RESULTS" |
    jq -r '"  \(.scenario) \(.server): \(.deliver_rate|floor) msg/s delivered, p50 \(.lat_p50_ms) ms, p99 \(.lat_p99_ms) ms, ack p99 \(.ack_p99_ms) ms, lost \(.lost) \(.error // "")"' >&2
}

# conns SCENARIO SERVER PID COMMAND TARGET-FLAG TARGET N: RSS per idle connection.
conns() {
  local scen=$1 srv=$2 pid=$3 cmd=$4 flag=$5 target=$6 n=$7
  local before after lp connected i
  sleep 1
  before=$(rss_kib "$pid")
  "$LOAD" "$cmd" "$flag" "$target" --n "$n" --hold 120s >"$WORK/conns.out" 2>&1 &
  lp=$!
  for ((i = 0; i < 600; i++)); do grep -q '^READY' "$WORK/conns.out" && break; sleep 0.1; done
  sleep 2
  after=$(rss_kib "$pid")
  connected=$(awk '/^READY/{print $2}' "$WORK/conns.out")
  kill "$lp" 2>/dev/null || true
  wait "$lp" 2>/dev/null || true
  [ -n "$connected" ] || connected=0
  jq -nc --arg scen "$scen" --arg srv "$srv" --argjson b "$before" --argjson a "$after" --argjson c "$connected" --argjson n "$n" \
    '{scenario:$scen, server:$srv, requested:$n, connected:$c, rss_before_kib:$b, rss_after_kib:$a,
      kib_per_conn:(if $c > 0 then (($a - $b) / $c) else null end)}' | tee -a "$RESULTS" |
    jq -r '"  \(.scenario) \(.server): \(.connected)/\(.requested) connected, \(.kib_per_conn) KiB/conn (RSS \(.rss_before_kib) -> \(.rss_after_kib) KiB)"' >&2
}

# idle_cpu SCENARIO SERVER PID SECONDS: CPU used while nothing happens.
idle_cpu() {
  local scen=$1 srv=$2 pid=$3 secs=$4 c0 c1
  c0=$(cpu_ticks "$pid"); sleep "$secs"; c1=$(cpu_ticks "$pid")
  jq -nc --arg scen "$scen" --arg srv "$srv" --argjson t "$((c1 - c0))" --argjson hz "$HZ" --argjson s "$secs" --argjson rss "$(rss_kib "$pid")" \
    '{scenario:$scen, server:$srv, cpu_ms_per_s:($t / $hz * 1000 / $s), rss_kib:$rss}' | tee -a "$RESULTS" |
    jq -r '"  \(.scenario) \(.server): \(.cpu_ms_per_s) ms CPU per second, RSS \(.rss_kib) KiB"' >&2
}

# --- scenarios -------------------------------------------------------------
# The MQTT scenarios with clean sessions: the rows of the side-by-side
# throughput section, and what the --acks section checks did not get slower.
clean_mqtt_scenarios() { # RUNNER: called as RUNNER SCENARIO LOAD-ARGS...
  "$1" mqtt-1to1-qos0 --pubs 1 --subs 1 --msgs "$(scale 100000)" --qos 0 --size 64
  "$1" mqtt-1to1-qos1 --pubs 1 --subs 1 --msgs "$(scale 50000)" --qos 1 --size 64
  "$1" mqtt-fanout-1to100-qos0 --pubs 1 --subs 100 --msgs "$(scale 5000)" --qos 0 --size 64
  "$1" mqtt-fanin-50to1-qos0 --pubs 50 --subs 1 --msgs "$(scale 2000)" --qos 0 --size 64 --topic-fanout per-pub
  # No window: the publisher runs as fast as it can and the brokers' queue
  # limits decide what is dropped (mosquitto max_queued_messages 1000,
  # sockmq limits.max_inflight 8192 / max_queued_messages 1024).
  "$1" mqtt-fanout-1to20-qos1-unthrottled --pubs 1 --subs 20 --msgs "$(scale 20000)" --qos 1 --size 64 --window 0
  "$1" mqtt-1to1-qos1-at-2000/s --pubs 1 --subs 1 --msgs "$(scale 6000)" --qos 1 --size 64 --rate 2000 --window 0
}

if [ "$CLASSIC" = 1 ]; then
# Idle memory: every measurement on a freshly started server, so that
# memory freed by earlier runs cannot be reused and hide the growth.
log "idle connections: memory per connection"
for ((r = 1; r <= REPS; r++)); do
  start_sockmq "mem-mqtt-$r"; conns idle-mqtt-1000 sockmq "$SMQ_PID" conns --addr "$SMQ_ADDR" 1000; stop_server "$SMQ_PID"
  start_mosquitto "mem-$r"; conns idle-mqtt-1000 mosquitto "$MOSQ_PID" conns --addr "$MOSQ_ADDR" 1000; stop_server "$MOSQ_PID"
  if [ "$BRIDGE" = 1 ]; then
    start_sockmq "mem-sc-$r"; conns idle-sc-1000 sockmq "$SMQ_PID" sc-conns --url "$BRIDGE_URL" 1000; stop_server "$SMQ_PID"
  fi
  start_scs "mem-$r"; conns idle-sc-1000 socketcluster-server "$SCS_PID" sc-conns --url "$SCS_URL" 1000; stop_server "$SCS_PID"
done

start_sockmq main
start_mosquitto main
start_scs main

mqtt_pair() { # scenario load-args...
  local scen=$1; shift
  pubsub "$scen" sockmq "$SMQ_PID" mqtt --addr "$SMQ_ADDR" "$@"
  pubsub "$scen" mosquitto "$MOSQ_PID" mqtt --addr "$MOSQ_ADDR" "$@"
}
sc_pair() {
  local scen=$1; shift
  if [ "$BRIDGE" = 1 ]; then pubsub "$scen" sockmq "$SMQ_PID" sc --url "$BRIDGE_URL" "$@"; fi
  pubsub "$scen" socketcluster-server "$SCS_PID" sc --url "$SCS_URL" "$@"
}

log "throughput and latency"
for ((r = 1; r <= REPS; r++)); do
  log "repetition $r of $REPS"
  clean_mqtt_scenarios mqtt_pair
  sc_pair sc-1to1 --pubs 1 --subs 1 --msgs "$(scale 50000)" --size 64
  sc_pair sc-fanout-1to100 --pubs 1 --subs 100 --msgs "$(scale 3000)" --size 64
  if [ "$BRIDGE" = 1 ]; then
    pubsub mqtt-pub-to-sc-subs-1to100 sockmq "$SMQ_PID" sc --url "$BRIDGE_URL" --mqtt-pub "$SMQ_ADDR" --pubs 1 --subs 100 --msgs "$(scale 3000)" --size 64
  fi
done

# What stored state costs while nothing is published: 100k retained
# messages, or 100 offline persistent sessions with 1000 queued QoS 1
# messages each. Fresh servers for each kind of state.
log "idle cost of stored state"
stop_server "$SMQ_PID"; stop_server "$MOSQ_PID"; stop_server "$SCS_PID"
for state in retained queued; do
  if [ "$state" = retained ]; then args=(--retained "$(scale 100000)"); else args=(--sessions 100 --queued "$(scale 1000)"); fi
  for srv in sockmq mosquitto; do
    if [ "$srv" = sockmq ]; then start_sockmq "state-$state"; pid=$SMQ_PID addr=$SMQ_ADDR
    else start_mosquitto "state-$state"; pid=$MOSQ_PID addr=$MOSQ_ADDR; fi
    [ "$state" = retained ] && idle_cpu idle-cpu-empty "$srv" "$pid" 3
    "$LOAD" state --addr "$addr" "${args[@]}" --json >>"$WORK/state.out" 2>&1 || log "state fill failed: $(tail -1 "$WORK/state.out")"
    sleep 2
    for ((r = 1; r <= REPS; r++)); do idle_cpu "idle-cpu-$state" "$srv" "$pid" 3; done
    stop_server "$pid"
  done
done
fi # CLASSIC

# Acknowledged means stored (issue 10): sockmq acknowledges a QoS 1/2
# publish only once the store has committed what it promises. QoS 1 to one
# persistent subscriber (clean_session=false, so every message is stored
# and deleted again) from 1 and from 16 publishers on one shared topic:
# this build with persistence.sync true and false, mosquitto (persistence
# off: it never fsyncs) and, with --before, an earlier sockmq binary
# (sync true). Then the clean-session MQTT scenarios on before, after
# (sync true) and mosquitto. Every server runs for the whole section and
# each scenario visits them in turn, so load from other processes spreads
# over all of them.
if [ "$ACKS" = 1 ]; then
  log "acknowledged means stored: starting servers"
  ACK_NAMES=(); ACK_PIDS=(); ACK_ADDRS=(); ACK_METRICS=()
  add_ack_server() { ACK_NAMES+=("$1"); ACK_PIDS+=("$2"); ACK_ADDRS+=("$3"); ACK_METRICS+=("$4"); }
  if [ -n "$BEFORE" ]; then
    start_sockmq acks-before "$BEFORE" true; add_ack_server "before" "$SMQ_PID" "$SMQ_ADDR" "$SMQ_METRICS"
  fi
  start_sockmq acks-sync "$WORK/sockmq" true; add_ack_server "after, sync true" "$SMQ_PID" "$SMQ_ADDR" "$SMQ_METRICS"
  start_sockmq acks-nosync "$WORK/sockmq" false; add_ack_server "after, sync false" "$SMQ_PID" "$SMQ_ADDR" "$SMQ_METRICS"
  start_mosquitto acks; add_ack_server mosquitto "$MOSQ_PID" "$MOSQ_ADDR" ""
  # mosquitto's default max_queued_messages (1000) counts a subscriber's
  # unacknowledged messages; when the load tool's subscriber lags with its
  # PUBACKs (16 publishers compete with it for the CPU) mosquitto drops
  # messages. This one does not, so its throughput is for every message.
  start_mosquitto acks-unlimited "max_queued_messages 0"
  add_ack_server "mosquitto, max_queued_messages 0" "$MOSQ_PID" "$MOSQ_ADDR" ""

  # on_servers PATTERN SCENARIO LOAD-ARGS...: one run on every server
  # whose name matches the extended regular expression PATTERN.
  on_servers() {
    local pat=$1 scen=$2 i; shift 2
    for i in "${!ACK_NAMES[@]}"; do
      [[ ${ACK_NAMES[$i]} =~ $pat ]] || continue
      SECTION=acks ORDER=$i METRICS=${ACK_METRICS[$i]} \
        pubsub "$scen" "${ACK_NAMES[$i]}" "${ACK_PIDS[$i]}" mqtt --addr "${ACK_ADDRS[$i]}" "$@"
    done
  }
  clean_on_servers() { on_servers '^(before|after, sync true|mosquitto)$' "$@"; }

  for ((r = 1; r <= REPS; r++)); do
    log "acknowledged means stored: repetition $r of $REPS"
    on_servers . persistent-qos1-1pub --pubs 1 --subs 1 --msgs "$(scale 30000)" --qos 1 --size 64 --persistent
    on_servers . persistent-qos1-16pubs --pubs 16 --subs 1 --msgs "$(scale 3000)" --qos 1 --size 64 --persistent
    clean_mqtt_scenarios clean_on_servers
  done
  for i in "${!ACK_PIDS[@]}"; do stop_server "${ACK_PIDS[$i]}"; done
fi # ACKS

# Memory and CPU (issue 11): scripts/bench-lean.sh.
if [ "$LEAN" = 1 ]; then
  # shellcheck source=scripts/bench-lean.sh
  source scripts/bench-lean.sh
  lean_section
fi

# --- report ----------------------------------------------------------------
echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/header.md"
jq -rs --arg statedesc "idle-cpu-retained: $(scale 100000) retained messages; idle-cpu-queued: 100 offline sessions x $(scale 1000) queued QoS 1 messages (64 B payloads)." '
  def median: map(select(. != null)) | sort | if length == 0 then null
    elif length % 2 == 1 then .[(length - 1) / 2] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def r0: if . == null then "-" else (. + 0.5 | floor | tostring) end;
  def r2: if . == null then "-" else ((. * 100 + 0.5 | floor) / 100 | tostring) end;
  def ratio($a; $b): if $a == null or $b == null or $b == 0 then "-" else ($a / $b | r2) + "×" end;
  def table($title; $head; $rows): if ($rows | length) == 0 then [] else ["", $title, ""] + $head + $rows end;
  def per(f; g): if (f // 0) > 0 and g != null then g / f else null end;
  (map(select(.deliver_rate != null)) | map(select((.section // "main") == "main")) | group_by(.scenario) |
    table("## Throughput and latency (64 B payloads; medians)";
     ["\"vs reference\": sockmq'"'"'s median delivered msg/s over mosquitto'"'"'s (MQTT) or socketcluster-server'"'"'s (SC) in the same scenario. \"tool core %\": the load tool'"'"'s CPU time over wall time per core it may use (median); at 95% or more the row is tool-limited: the tool, not the server, set the rate.", "",
      "| scenario | server | delivered msg/s | vs reference | published msg/s | p50 ms | p99 ms | lost (sum) | dup (sum) | server CPU µs/msg | tool core % |",
      "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"];
    (map((map(select(.server != "sockmq") | .deliver_rate) | median) as $ref | group_by(.server) | map(
      (map(.client_core_util) | median) as $tool |
      "| \(.[0].scenario) | \(.[0].server) | \(map(.deliver_rate) | median | r0) | \(if .[0].server == "sockmq" then ratio(map(.deliver_rate) | median; $ref) else "" end) | \(map(.publish_rate) | median | r0) | \(map(.lat_p50_ms) | median | r2) | \(map(.lat_p99_ms) | median | r2) | \(map(.lost) | add) | \(map(.duplicates) | add) | \(map(if .delivered > 0 then .server_cpu_secs * 1e6 / .delivered else null end) | median | r2) | \(if $tool == null then "-" else ($tool * 100 | r0) + (if $tool >= 0.95 then " tool-limited" else "" end) end) |"
    )) | flatten))) +
  (map(select(.section == "acks" and (.scenario | startswith("persistent-")))) | group_by(.scenario) |
    table("## Acknowledged means stored: QoS 1 to one persistent subscriber (64 B payloads; medians)";
     ["commits/s, writes/commit and ms/commit are the store'"'"'s group commits during the run, from sockmq_store_commit_seconds and sockmq_store_commit_writes on /metrics (- where the server has none).", "",
      "| scenario | server | delivered msg/s | (min–max) | vs mosquitto | ack p50 ms | ack p99 ms | end-to-end p99 ms | lost (sum) | dup (sum) | server CPU µs/msg | commits/s | writes/commit | ms/commit | load avg |",
      "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"];
    (map((map(select(.server == "mosquitto") | .deliver_rate) | median) as $mosq | group_by(.order) | map(
      (map(.deliver_rate) | median) as $rate |
      "| \(.[0].scenario) | \(.[0].server) | \($rate | r0) | \(map(.deliver_rate) | min | r0)–\(map(.deliver_rate) | max | r0) | \(ratio($rate; $mosq)) | \(map(.ack_p50_ms) | median | r2) | \(map(.ack_p99_ms) | median | r2) | \(map(.lat_p99_ms) | median | r2) | \(map(.lost) | add) | \(map(.duplicates) | add) | \(map(per(.delivered; .server_cpu_secs * 1e6)) | median | r2) | \(map(per(.deliver_secs; .commits)) | median | r0) | \(map(per(.commits; .commit_writes)) | median | r0) | \(map(per(.commits; .commit_secs * 1000)) | median | r2) | \(map(.load1) | median | r2) |"
    )) | flatten))) +
  (map(select(.section == "acks" and (.scenario | startswith("persistent-") | not))) | group_by(.scenario) |
    table("## Clean sessions, before vs after (64 B payloads; medians)";
     ["\"vs before\": this row'"'"'s median over the before binary'"'"'s; slower by more than 10% = msg/s below 0.9× (or, at a fixed rate, p50 above 1.1×).", "",
      "| scenario | server | delivered msg/s | (min–max) | vs before | p50 ms | vs before | p99 ms | ack p50 ms | ack p99 ms | lost (sum) | dup (sum) | server CPU µs/msg | load avg |",
      "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"];
    (map((map(select(.server == "before") | .deliver_rate) | median) as $brate |
         (map(select(.server == "before") | .lat_p50_ms) | median) as $bp50 | group_by(.order) | map(
      (map(.deliver_rate) | median) as $rate | (map(.lat_p50_ms) | median) as $p50 |
      "| \(.[0].scenario) | \(.[0].server) | \($rate | r0) | \(map(.deliver_rate) | min | r0)–\(map(.deliver_rate) | max | r0) | \(ratio($rate; $brate)) | \($p50 | r2) | \(ratio($p50; $bp50)) | \(map(.lat_p99_ms) | median | r2) | \(map(.ack_p50_ms) | median | r2) | \(map(.ack_p99_ms) | median | r2) | \(map(.lost) | add) | \(map(.duplicates) | add) | \(map(per(.delivered; .server_cpu_secs * 1e6)) | median | r2) | \(map(.load1) | median | r2) |"
    )) | flatten))) +
  (map(select(.kib_per_conn != null or .connected != null)) | group_by(.scenario) |
    table("## Idle connections (RSS growth per connection; medians)";
     ["| scenario | server | connected | KiB/conn | RSS before KiB | RSS after KiB |", "|---|---|---:|---:|---:|---:|"];
    (map(group_by(.server) | map(
      "| \(.[0].scenario) | \(.[0].server) | \(map(.connected) | min) of \(.[0].requested) | \(map(.kib_per_conn) | median | r2) | \(map(.rss_before_kib) | median | r0) | \(map(.rss_after_kib) | median | r0) |"
    )) | flatten))) +
  (map(select(.cpu_ms_per_s != null)) | group_by(.scenario) |
    table("## Idle CPU with stored state (ms of CPU per second of wall time; medians)";
     [$statedesc, "",
      "| scenario | server | CPU ms/s | RSS KiB |", "|---|---|---:|---:|"];
    (map(group_by(.server) | map(
      "| \(.[0].scenario) | \(.[0].server) | \(map(.cpu_ms_per_s) | median | r2) | \(map(.rss_kib) | median | r0) |"
    )) | flatten))) | .[]' "$RESULTS" >"$OUT/tables.md"
cat "$OUT/header.md" "$OUT/tables.md" >"$OUT/results.md"
[ "$LEAN" = 0 ] || cat "$OUT/lean.md" >>"$OUT/results.md"
cat "$OUT/results.md"
[ "$CLASSIC" = 0 ] || [ "$BRIDGE" = 1 ] || echo -e "\nsockmq SocketCluster scenarios: not measured (bridge not served by this build)."
echo -e "\nraw results: $RESULTS" >&2
[ "$LEAN" = 0 ] || echo "lean results: $LEAN_RESULTS (run $LEAN_RUN); plots: go run ./cmd/sockmq-plot -in $LEAN_RESULTS -out bench/plots" >&2
