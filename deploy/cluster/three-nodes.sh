#!/usr/bin/env bash
# Three sockmq nodes forming one cluster on this machine, each with an
# embedded nats-server (routes + JetStream): nothing else to install.
# The same configuration works across three machines: put each node's
# address in `routes`, listen on a non-loopback address and set
# cluster.embedded.auth (required then).
#
#   three-nodes.sh start <dir>        write configs (once) and start n1..n3
#   three-nodes.sh start-node <dir> N start node N (1-3) again
#   three-nodes.sh kill-node <dir> N  kill -9 node N (a crash)
#   three-nodes.sh stop <dir>         stop every node (SIGTERM)
#
# Environment: SOCKMQ   the sockmq binary (default: sockmq on PATH)
#              PORTS    nine ports "mqtt1 http1 route1 mqtt2 ... route3"
#                       (default 1883 8080 6222 1884 8081 6223 1885 8082 6224)
#              NODE_TTL cluster.node_ttl (default 6s)
# Node N writes <dir>/nN/sockmq.log and <dir>/nN/pid; start waits until
# every node answers /healthz (60 s at most).
set -euo pipefail

cmd=${1:?usage: $0 start|start-node|kill-node|stop <dir> [N]}
dir=${2:?usage: $0 $cmd <dir> [N]}
bin=${SOCKMQ:-sockmq}
read -r -a p <<<"${PORTS:-1883 8080 6222 1884 8081 6223 1885 8082 6224}"
[ "${#p[@]}" -eq 9 ] || { echo "PORTS must list nine ports" >&2; exit 2; }
ttl=${NODE_TTL:-6s}

mqtt() { echo "${p[$(( ($1-1)*3 ))]}"; }
http() { echo "${p[$(( ($1-1)*3+1 ))]}"; }
route() { echo "${p[$(( ($1-1)*3+2 ))]}"; }

configure() {
  mkdir -p "$dir"
  local key="$dir/auth_key"
  [ -s "$key" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$key"
  local routes="nats://127.0.0.1:$(route 1), nats://127.0.0.1:$(route 2), nats://127.0.0.1:$(route 3)"
  for n in 1 2 3; do
    mkdir -p "$dir/n$n"
    cat >"$dir/n$n/config.yaml" <<YAML
listeners:
  mqtt: {address: "127.0.0.1:$(mqtt $n)"}
  http: {address: "127.0.0.1:$(http $n)"}
persistence:
  data_dir: "$dir/n$n/data"
logging: {level: info}
bridge:
  auth_key: "$(cat "$key")"   # the same on every node: tokens work everywhere
cluster:
  name: demo
  node: n$n
  node_ttl: $ttl
  embedded:
    listen: "127.0.0.1:$(route $n)"
    routes: [$routes]
    store_dir: "$dir/n$n/nats"
YAML
  done
}

start_node() {
  local n=$1
  if [ -s "$dir/n$n/pid" ] && kill -0 "$(cat "$dir/n$n/pid")" 2>/dev/null; then
    echo "n$n already running" >&2; return 0
  fi
  "$bin" serve -c "$dir/n$n/config.yaml" >>"$dir/n$n/sockmq.log" 2>&1 &
  echo $! >"$dir/n$n/pid"
}

wait_healthy() {
  local n=$1 i
  for i in $(seq 600); do
    if curl -fsS "http://127.0.0.1:$(http $n)/healthz" >/dev/null 2>&1; then
      echo "n$n: mqtt 127.0.0.1:$(mqtt $n) http 127.0.0.1:$(http $n) route 127.0.0.1:$(route $n)"
      return 0
    fi
    if ! kill -0 "$(cat "$dir/n$n/pid")" 2>/dev/null; then
      echo "n$n exited; its log:" >&2; tail -20 "$dir/n$n/sockmq.log" >&2; return 1
    fi
    sleep 0.1
  done
  echo "n$n did not answer /healthz within 60s" >&2; tail -20 "$dir/n$n/sockmq.log" >&2; return 1
}

case $cmd in
start)
  configure
  for n in 1 2 3; do start_node $n; done   # together: JetStream needs a quorum
  for n in 1 2 3; do wait_healthy $n; done ;;
start-node)
  n=${3:?node number}; start_node "$n"; wait_healthy "$n" ;;
kill-node)
  n=${3:?node number}; kill -9 "$(cat "$dir/n$n/pid")"; rm -f "$dir/n$n/pid" ;;
stop)
  for n in 1 2 3; do
    [ -s "$dir/n$n/pid" ] && kill "$(cat "$dir/n$n/pid")" 2>/dev/null || true
  done
  for n in 1 2 3; do
    if [ -s "$dir/n$n/pid" ]; then
      pid=$(cat "$dir/n$n/pid")
      for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/n$n/pid"
    fi
  done ;;
*) echo "unknown command $cmd" >&2; exit 2 ;;
esac
