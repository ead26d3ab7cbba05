#!/usr/bin/env bash
# Smoke test: the README's first command starts a working broker on its
# embedded defaults (127.0.0.1:1883 and :8080) that answers /healthz and
# exits 0 on SIGTERM. Run from the repository root.
set -euo pipefail
log=$(mktemp)
setsid go run ./cmd/sockmq >"$log" 2>&1 &
pid=$!
cleanup() { kill -KILL -- -"$pid" 2>/dev/null || true; rm -f "$log"; }
trap cleanup EXIT
for _ in $(seq 1 600); do
  if body=$(curl -fsS http://127.0.0.1:8080/healthz 2>/dev/null); then
    break
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "smoke: sockmq exited before answering /healthz:"; cat "$log"; exit 1
  fi
  sleep 0.1
done
echo "smoke: /healthz -> $body"
grep -q '"status":"ok"' <<<"$body" || { echo "smoke: unexpected /healthz body"; cat "$log"; exit 1; }
curl -fsS http://127.0.0.1:8080/metrics | grep -q '^sockmq_clients_connected' || { echo "smoke: /metrics lacks sockmq_clients_connected"; exit 1; }
# Signal the broker itself (go run's child), as a service manager would.
child=$(pgrep -P "$pid" | head -n1)
kill -TERM "$child"
status=0
wait "$pid" || status=$?
if [ "$status" -ne 0 ]; then echo "smoke: exit status $status after SIGTERM"; cat "$log"; exit 1; fi
grep -q "sockmq broker stopped" "$log" || { echo "smoke: no clean shutdown logged"; cat "$log"; exit 1; }
echo "smoke: ok (started from 'go run ./cmd/sockmq', answered /healthz, exited 0 on SIGTERM)"
