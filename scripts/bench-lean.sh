# shellcheck shell=bash
# The --lean section of scripts/bench.sh (issue 11: memory and CPU), sourced
# by it after its helpers (start_sockmq, start_mosquitto, start_scs,
# stop_server, rss_kib, cpu_ticks, log, scale, $LOAD, $WORK, $HZ, $REPS).
# It appends one JSON line per measurement to $LEAN_RESULTS, each carrying
# section "lean", the run id, the sockmq build label and the repetition;
# scripts/bench-lean-report.jq turns the lines of one run into markdown.
#
# Servers run on CPU $LEAN_SERVER_CPU and the load tool on $LEAN_LOAD_CPU
# (taskset; empty = unpinned), so that each server gets one core and the
# tool another: mosquitto and socketcluster-server are single-threaded, and
# sockmq then runs with GOMAXPROCS 1 (the Go runtime follows the affinity
# mask). A run is "tool-limited" when the tool's core was >= 95% busy.

LEAN_SERVER_CPU=${LEAN_SERVER_CPU-0}
LEAN_LOAD_CPU=${LEAN_LOAD_CPU-1}
LEAN_RUN=$(date -u +%Y%m%dT%H%M%SZ)
if [ -z "$LABEL" ]; then
  if [ -n "$SOCKMQ_BIN" ]; then LABEL=$(basename "$SOCKMQ_BIN"); else LABEL=$(git describe --tags --always --dirty 2>/dev/null || echo dev); fi
fi
mkdir -p "$(dirname "$LEAN_RESULTS")"
touch "$LEAN_RESULTS"

LEAN_LOAD=("$LOAD")
[ -z "$LEAN_LOAD_CPU" ] || LEAN_LOAD=(taskset -c "$LEAN_LOAD_CPU" "$LOAD")
LEAN_SRV_PIN=(env)
[ -z "$LEAN_SERVER_CPU" ] || LEAN_SRV_PIN=(taskset -c "$LEAN_SERVER_CPU")

hwm_kib() { awk '/^VmHWM:/{print $2}' "/proc/$1/status"; }

# rss_settled PID [WINDOW]: "RSS HWM" (KiB) once RSS has stopped moving:
# readings every 0.5 s, all within 0.5% of each other for WINDOW seconds
# (default 0.5, i.e. two readings), at most 60 s. Reads after a burst use
# LEAN_SETTLE (default 4 s): sockmq's trimmer starts 2-3 s after a burst and
# its pages go back to the OS over the following seconds (broker/memtrim.go),
# so a shorter window would catch the burst's peak; the same window applies
# to every server.
rss_settled() {
  local pid=$1 win=${2:-0.5} cur i lo hi need k
  local -a r=()
  need=$(awk -v w="$win" 'BEGIN{printf "%d", w / 0.5 + 1}')
  for ((i = 0; i < 121; i++)); do
    cur=$(rss_kib "$pid")
    r+=("$cur")
    if [ "${#r[@]}" -ge "$need" ]; then
      lo=$cur hi=$cur
      for ((k = ${#r[@]} - need; k < ${#r[@]}; k++)); do
        [ "${r[k]}" -lt "$lo" ] && lo=${r[k]}
        [ "${r[k]}" -gt "$hi" ] && hi=${r[k]}
      done
      [ $((hi - lo)) -le $((hi / 200)) ] && break
    fi
    sleep 0.5
  done
  echo "$cur $(hwm_kib "$pid")"
}

# lean_emit JSON: adds the common fields and appends the line.
lean_emit() {
  jq -c --arg run "$LEAN_RUN" --arg build "$LABEL" --argjson load1 "$(cut -d' ' -f1 /proc/loadavg)" \
    '. + {section:"lean", run:$run, build:$build, load1:$load1}' <<<"$1" >>"$LEAN_RESULTS"
  tail -n 1 "$LEAN_RESULTS"
}

# lean_start SERVER NAME: a fresh server (sockmq, mosquitto or
# socketcluster-server), pinned; sets LPID, LADDR (MQTT) and LURL (SC).
lean_start() {
  local saved=("${SRV_PIN[@]}")
  SRV_PIN=("${LEAN_SRV_PIN[@]}")
  LADDR="" LURL=""
  case "$1" in
    sockmq) start_sockmq "lean-$2"; LPID=$SMQ_PID LADDR=$SMQ_ADDR LURL=$BRIDGE_URL ;;
    mosquitto) start_mosquitto "lean-$2"; LPID=$MOSQ_PID LADDR=$MOSQ_ADDR ;;
    socketcluster-server) start_scs "lean-$2"; LPID=$SCS_PID LURL=$SCS_URL ;;
  esac
  SRV_PIN=("${saved[@]}")
}

# lean_probe PROTO: a healthy client's round trip (1 pub -> 1 sub, 200
# msg/s for 2 s, QoS 1 over MQTT, transmit over SC) as a JSON object.
lean_probe() {
  local out
  if [ "$1" = mqtt ]; then
    out=$("${LEAN_LOAD[@]}" mqtt --addr "$LADDR" --pubs 1 --subs 1 --qos 1 --rate 200 --msgs 400 --window 0 --drain 2s --timeout 40s --json 2>/dev/null) || true
  else
    out=$("${LEAN_LOAD[@]}" sc --url "$LURL" --pubs 1 --subs 1 --rate 200 --msgs 400 --window 0 --drain 2s --timeout 40s --json 2>/dev/null) || true
  fi
  [ -n "$out" ] || out='{}'
  jq -c '{p50:.lat_p50_ms, p99:.lat_p99_ms, not_received:.not_received, never_sent:.never_sent}' <<<"$out" 2>/dev/null || echo '{}'
}

# lean_idle SERVER PROTO N REP: RSS of N idle connections (MQTT: CONNECT +
# one QoS 1 subscription each; SC: handshake done) on a fresh server, and a
# healthy client's round trip before and while they are held.
lean_idle() {
  local srv=$1 proto=$2 n=$3 rep=$4 b bh a ah lp i line ready connected failed rtt0 rtt1 out=$WORK/lean-conns.out
  lean_start "$srv" "idle-$proto-$n-$rep"
  read -r b bh < <(rss_settled "$LPID")
  rtt0=$(lean_probe "$proto")
  read -r b bh < <(rss_settled "$LPID")
  if [ "$proto" = mqtt ]; then
    "${LEAN_LOAD[@]}" conns --addr "$LADDR" --sub --n "$n" --concurrency 64 --hold 300s >"$out" 2>&1 &
  else
    "${LEAN_LOAD[@]}" sc-conns --url "$LURL" --n "$n" --concurrency 64 --hold 300s >"$out" 2>&1 &
  fi
  lp=$!
  ready=0 connected="" failed=""
  for ((i = 0; i < 2400; i++)); do
    line=$(grep -m1 '^READY [0-9]* [0-9]*$' "$out" || true)
    if [ -n "$line" ]; then read -r _ connected failed <<<"$line"; ready=1; break; fi
    kill -0 "$lp" 2>/dev/null || break
    sleep 0.1
  done
  read -r a ah < <(rss_settled "$LPID" "${LEAN_SETTLE:-4}")
  rtt1='{}'
  [ "$ready" = 1 ] && rtt1=$(lean_probe "$proto")
  kill "$lp" 2>/dev/null || true
  wait "$lp" 2>/dev/null || true
  stop_server "$LPID"
  lean_emit "$(jq -nc --arg srv "$srv" --arg scen "idle-$proto" --argjson n "$n" --argjson rep "$rep" \
    --argjson c "${connected:-0}" --argjson f "${failed:-0}" --argjson b "$b" --argjson bh "$bh" --argjson a "$a" --argjson ah "$ah" \
    --argjson rtt0 "$rtt0" --argjson rtt1 "$rtt1" --arg err "$(if [ "$ready" != 1 ]; then echo "no READY line from the load tool: $(tail -c 300 "$out")"; else grep -m1 'first error' "$out" || true; fi)" \
    '{scenario:$scen, server:$srv, n:$n, rep:$rep, connected:$c, failed:$f, rss_before_kib:$b, hwm_before_kib:$bh,
      rss_after_kib:$a, hwm_after_kib:$ah, kib_per_conn:(if $c > 0 then ($a - $b) / $c else null end),
      rtt_empty_p50_ms:$rtt0.p50, rtt_empty_p99_ms:$rtt0.p99, rtt_held_p50_ms:$rtt1.p50, rtt_held_p99_ms:$rtt1.p99,
      rtt_held_not_received:$rtt1.not_received} + (if $err != "" then {error:$err} else {} end)')" |
    jq -r '"  \(.scenario) \(.server) n=\(.n): \(.connected) connected, \(.kib_per_conn) KiB/conn, RSS \(.rss_before_kib) -> \(.rss_after_kib) KiB, round trip p99 \(.rtt_empty_p99_ms) -> \(.rtt_held_p99_ms) ms"' >&2
}

# lean_state SERVER KIND REP: RSS and HWM of a fresh server, empty and then
# holding 100k retained 64 B messages (KIND retained) or 100 offline
# sessions x 1000 queued QoS 1 messages on a shared topic (KIND queued).
lean_state() {
  local srv=$1 kind=$2 rep=$3 b bh a ah fill args
  if [ "$kind" = retained ]; then args=(--retained "$(scale 100000)"); else args=(--sessions 100 --queued "$(scale 1000)"); fi
  lean_start "$srv" "state-$kind-$rep"
  read -r b bh < <(rss_settled "$LPID")
  fill=$("${LEAN_LOAD[@]}" state --addr "$LADDR" "${args[@]}" --size 64 --timeout 240s --json 2>&1 | tail -n 1) || true
  jq -e . >/dev/null 2>&1 <<<"$fill" || fill=$(jq -nc --arg e "$fill" '{error:$e}')
  # sockmq returns a burst's freed memory to the OS once it has been quiet
  # for 2 s (broker/memtrim.go), gradually: the steady state is read after
  # LEAN_STATE_QUIET seconds without traffic, once RSS has not moved for
  # LEAN_SETTLE seconds; the peak is VmHWM.
  sleep "${LEAN_STATE_QUIET:-2}"
  read -r a ah < <(rss_settled "$LPID" "${LEAN_SETTLE:-4}")
  stop_server "$LPID"
  lean_emit "$(jq -nc --arg srv "$srv" --arg scen "state-$kind" --argjson rep "$rep" --argjson fill "$fill" \
    --argjson b "$b" --argjson bh "$bh" --argjson a "$a" --argjson ah "$ah" \
    '{scenario:$scen, server:$srv, rep:$rep, retained:$fill.retained, sessions:$fill.sessions, queued_per_session:$fill.queued_per_session,
      fill_secs:$fill.secs, rss_empty_kib:$b, hwm_empty_kib:$bh, rss_kib:$a, hwm_kib:$ah,
      rss_over_empty_kib:($a - $b), hwm_over_empty_kib:($ah - $bh)} + (if $fill.error then {error:$fill.error} else {} end)')" |
    jq -r '"  \(.scenario) \(.server): RSS over empty \(.rss_over_empty_kib) KiB (HWM \(.hwm_over_empty_kib) KiB), filled in \(.fill_secs) s \(.error // "")"' >&2
}

# lean_run SCENARIO SERVER PID REP RATE LOAD-ARGS...: one load-tool run with
# the server's CPU over it (utime+stime from /proc/PID/stat).
lean_run() {
  local scen=$1 srv=$2 pid=$3 rep=$4 rate=$5 c0 c1 json; shift 5
  c0=$(cpu_ticks "$pid")
  json=$("${LEAN_LOAD[@]}" "$@" --json --label "$scen" 2>/dev/null) || true
  c1=$(cpu_ticks "$pid")
  jq -e . >/dev/null 2>&1 <<<"$json" || json='{"error":"no output from the load tool"}'
  lean_emit "$(jq -c --arg scen "$scen" --arg srv "$srv" --argjson rep "$rep" --argjson rate "$rate" --argjson cpu "$((c1 - c0))" --argjson hz "$HZ" \
    '{scenario:$scen, server:$srv, rep:$rep, offered_rate:$rate, server_cpu_secs:($cpu / $hz),
      cpu_us_per_msg:(if .delivered > 0 then $cpu / $hz * 1e6 / .delivered else null end),
      deliver_rate, publish_rate, published, delivered, expected, scheduled, never_sent, not_received, pending_at_pub_end,
      lat_from, lat_p50_ms, lat_p99_ms, lat_max_ms, send_lag_p99_ms, client_cpu_secs, client_cores, client_core_util, tool_limited, error}' <<<"$json")" |
    jq -r '"  \(.scenario) \(.server): \(.deliver_rate // 0 | floor) msg/s, \(.cpu_us_per_msg) µs CPU/msg, p50 \(.lat_p50_ms) p99 \(.lat_p99_ms) ms, never sent \(.never_sent), not received \(.not_received), tool core \(.client_core_util)\(if .tool_limited then " TOOL-LIMITED" else "" end) \(.error // "")"' >&2
}

lean_section() {
  local r n srv rate ids=() i
  local scales_mqtt=(1000 5000 15000) scales_sc=(1000 5000)
  if [ "$QUICK" = 1 ]; then scales_mqtt=(100 500 1500); scales_sc=(100 500); fi
  {
    echo "- lean section: run $LEAN_RUN, sockmq build \"$LABEL\"; servers on CPU ${LEAN_SERVER_CPU:-any}, load tool on CPU ${LEAN_LOAD_CPU:-any} (taskset)"
    echo "- lean results appended to $LEAN_RESULTS"
  } | tee -a "$OUT/header.md" >&2

  # LEAN_PARTS selects sections: a (idle connections), b (stored state),
  # c (CPU, latency, cross-protocol); default all.
  local parts=${LEAN_PARTS:-abc}
  if [[ $parts == *a* ]]; then
  log "lean (a): idle connections, RSS vs number (fresh server each)"
  for ((r = 1; r <= REPS; r++)); do
    for n in "${scales_mqtt[@]}"; do
      for srv in sockmq mosquitto; do lean_idle "$srv" mqtt "$n" "$r"; done
    done
    for n in "${scales_sc[@]}"; do
      for srv in sockmq socketcluster-server; do
        [ "$srv" = sockmq ] && [ "$BRIDGE" != 1 ] && continue
        lean_idle "$srv" sc "$n" "$r"
      done
    done
  done

  fi
  if [[ $parts == *b* ]]; then
  log "lean (b): stored state, RSS over an empty broker (fresh server each)"
  for ((r = 1; r <= REPS; r++)); do
    for kind in retained queued; do
      for srv in sockmq mosquitto; do lean_state "$srv" "$kind" "$r"; done
    done
  done

  fi
  if [[ $parts == *c* ]]; then
  log "lean (c)-(e): CPU per message, latency under load, cross-protocol"
  lean_start sockmq cpu; local smq_pid=$LPID smq_addr=$LADDR smq_url=$LURL
  lean_start mosquitto cpu; local mosq_pid=$LPID mosq_addr=$LADDR
  local secs=6 lat_secs=8
  [ "$QUICK" = 1 ] && secs=2 lat_secs=2
  for ((r = 1; r <= REPS; r++)); do
    log "lean (c)-(e): repetition $r of $REPS"
    for srv in sockmq mosquitto; do
      if [ "$srv" = sockmq ]; then pid=$smq_pid addr=$smq_addr; else pid=$mosq_pid addr=$mosq_addr; fi
      # (c) QoS 1, 1 -> 1, paced (duration-bounded) and at full rate; fan-in 16 -> 1.
      for rate in 500 1000 2000 5000; do
        lean_run cpu-qos1-1to1 "$srv" "$pid" "$r" "$rate" mqtt --addr "$addr" --pubs 1 --subs 1 --qos 1 --size 64 \
          --rate "$rate" --msgs $((rate * secs)) --window 0 --drain 3s --timeout 60s
      done
      lean_run cpu-qos1-1to1 "$srv" "$pid" "$r" 0 mqtt --addr "$addr" --pubs 1 --subs 1 --qos 1 --size 64 \
        --msgs "$(scale 30000)" --timeout 90s
      lean_run cpu-qos1-fanin-16to1 "$srv" "$pid" "$r" 0 mqtt --addr "$addr" --pubs 16 --subs 1 --qos 1 --size 64 \
        --msgs "$(scale 2000)" --timeout 90s
      # (d) QoS 1, 1 -> 100 at 1000 msg/s (100k deliveries/s offered), no window:
      # latency from the scheduled time, never sent, still queued at the end.
      lean_run lat-qos1-1to100-1000 "$srv" "$pid" "$r" 1000 mqtt --addr "$addr" --pubs 1 --subs 100 --qos 1 --size 64 \
        --rate 1000 --msgs 0 --duration "${lat_secs}s" --window 0 --drain 2s --timeout 90s
    done
    # (e) MQTT publisher -> SC sockets, QoS 0, 64 B, 10,000 msg/s (sockmq only:
    # socketcluster-server has no MQTT side).
    if [ "$BRIDGE" = 1 ]; then
      for n in 1 10; do
        lean_run "xproto-mqtt-to-sc-$n" sockmq "$smq_pid" "$r" 10000 sc --url "$smq_url" --mqtt-pub "$smq_addr" --qos 0 \
          --pubs 1 --subs "$n" --size 64 --rate 10000 --msgs 0 --duration "${secs}s" --window 0 --drain 2s --timeout 60s
      done
    fi
  done
  stop_server "$smq_pid"; stop_server "$mosq_pid"
  fi

  log "lean: report"
  jq -rs --arg run "$LEAN_RUN" -f scripts/bench-lean-report.jq "$LEAN_RESULTS" >"$OUT/lean.md"
}
