#!/usr/bin/env bash
# Installs what `make test` needs beyond Go, so that `make test` works on a
# fresh machine: Debian's mosquitto (password-file interop), chromium (browser
# tests), curl (smoke test) and nats-server (cluster refusal test) when
# running as root with apt-get, and
# the interop suite's npm packages (npm ci, from the committed lock file).
# Without root it installs nothing from Debian and says what is missing;
# the tests that need a missing tool then say so (and fail under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-liberation)
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
# Debian's nats-server (2.9): the cluster test that sockmq refuses a NATS
# server too old for its design (cluster/oldserver_test.go).
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test-deps: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # The package may start the system mosquitto service on :1883, which the
    # smoke test needs for sockmq's defaults. Stop that service only.
    if command -v systemctl >/dev/null 2>&1; then systemctl stop mosquitto 2>/dev/null || true; fi
    if command -v service >/dev/null 2>&1; then service mosquitto stop >/dev/null 2>&1 || true; fi
    if [ -f /run/mosquitto/mosquitto.pid ]; then kill "$(cat /run/mosquitto/mosquitto.pid)" 2>/dev/null || true; fi
    # Likewise a nats-server service the package may start (tests start
    # their own on free ports).
    if command -v systemctl >/dev/null 2>&1; then systemctl stop nats-server 2>/dev/null || true; fi
    if command -v service >/dev/null 2>&1; then service nats-server stop >/dev/null 2>&1 || true; fi
  else
    echo "test-deps: missing ${need[*]} (install them, or run make test as root on Debian)"
  fi
fi

# npm ci when node_modules is missing or older than the lock file.
if command -v npm >/dev/null 2>&1; then
  for dir in interop; do
    if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
      echo "test-deps: npm ci in $dir"
      (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error && touch node_modules)
    fi
  done
fi
