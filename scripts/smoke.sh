#!/usr/bin/env bash
# Smoke test of the README's quick start: `make build`, then `bin/sockmq` on
# its embedded defaults (127.0.0.1:1883 and :8080) answers /healthz and
# /metrics, passes a message from mosquitto_pub to mosquitto_sub (when the
# mosquitto clients are installed; CI installs them) and exits 0 on SIGTERM.
# The broker runs in a temporary directory, so its ./data goes there and not
# into the repository. Run from the repository root.
set -euo pipefail
repo=$(pwd)

# The defaults need both ports: say so plainly rather than fail later (or,
# worse, test whatever already answers there).
busy=()
for port in 1883 8080; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then busy+=("$port"); fi
done
if [ "${#busy[@]}" -gt 0 ]; then
  echo "smoke: 127.0.0.1 port(s) ${busy[*]} already in use; the smoke test runs bin/sockmq on its defaults and needs 1883 and 8080 free."
  if command -v ss >/dev/null 2>&1; then
    ports=$(IFS='|'; echo "${busy[*]}")
    ss -ltnp | awk -v p=":($ports)\$" 'NR == 1 || $4 ~ p' || true
  fi
  echo "smoke: stop whatever listens there (another sockmq, mosquitto?) and run 'make smoke' again."
  exit 1
fi

make -s build
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
(cd "$work" && exec "$repo/bin/sockmq") >"$work/log" 2>&1 &
pid=$!

for _ in $(seq 1 300); do
  if body=$(curl -fsS http://127.0.0.1:8080/healthz 2>/dev/null); then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "smoke: bin/sockmq exited before answering /healthz:"; cat "$work/log"; exit 1
  fi
  sleep 0.1
done
echo "smoke: /healthz -> ${body:-nothing}"
grep -q '"status":"ok"' <<<"${body:-}" || { echo "smoke: no healthy /healthz within 30s"; cat "$work/log"; exit 1; }
curl -fsS http://127.0.0.1:8080/metrics | grep -q '^sockmq_clients_connected' || { echo "smoke: /metrics lacks sockmq_clients_connected"; exit 1; }

if command -v mosquitto_sub >/dev/null 2>&1 && command -v mosquitto_pub >/dev/null 2>&1; then
  # The README's pub/sub. The subscriber may not be subscribed yet when the
  # first publish goes out, so publish until it has printed one message.
  mosquitto_sub -h 127.0.0.1 -t 'sensors/#' -v -C 1 -W 20 >"$work/sub" 2>&1 &
  sub=$!
  for _ in $(seq 1 100); do
    kill -0 "$sub" 2>/dev/null || break
    mosquitto_pub -h 127.0.0.1 -t sensors/room1 -m 21.5 -q 1
    sleep 0.2
  done
  wait "$sub" || true
  grep -qx 'sensors/room1 21.5' "$work/sub" || { echo "smoke: mosquitto_sub did not print 'sensors/room1 21.5':"; cat "$work/sub"; exit 1; }
  echo "smoke: mosquitto_pub -> mosquitto_sub: $(cat "$work/sub")"
else
  echo "smoke: mosquitto clients not installed; skipping the pub/sub step"
fi

kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
if [ "$status" -ne 0 ]; then echo "smoke: exit status $status after SIGTERM"; cat "$work/log"; exit 1; fi
grep -q "sockmq broker stopped" "$work/log" || { echo "smoke: no clean shutdown logged"; cat "$work/log"; exit 1; }
[ -f "$work/data/sockmq.db" ] || { echo "smoke: no store in the working directory's ./data"; exit 1; }
echo "smoke: ok (make build; bin/sockmq answered /healthz and /metrics, passed a message, exited 0 on SIGTERM; data in a temporary directory)"
