#!/usr/bin/env bash
# Installs what the tests and the demo need, and does nothing for what is already there:
#   - Debian packages: rabbitmq-server (the broker under test), prometheus (promtool and the
#     server that checks the dashboard), protobuf-compiler (protoc for `make proto`), nodejs and
#     npm (TypeScript checks the Grafana dashboard against Grafana's own schema types), gcc
#     (the race detector, which the package tests run under, needs cgo);
#   - Kubernetes, etcd, KWOK, metrics-server and KEDA binaries, built from the Go module proxy
#     into the cache directory (HEADROOM_CACHE, default ~/.cache/headroom), by version.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
command -v protoc >/dev/null 2>&1 || packages+=(protobuf-compiler)
command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
command -v gcc >/dev/null 2>&1 || packages+=(gcc libc6-dev)
ls /usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server >/dev/null 2>&1 || packages+=(rabbitmq-server)

if [ ${#packages[@]} -gt 0 ]; then
  echo "deps: installing Debian packages: ${packages[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # Installing must not start the services: the tests start their own instances on loopback.
  blocker=/usr/sbin/policy-rc.d
  made_blocker=""
  if [ ! -e "$blocker" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$blocker" >/dev/null
    $sudo chmod +x "$blocker"
    made_blocker=1
  fi
  trap '[ -n "$made_blocker" ] && $sudo rm -f "$blocker"' EXIT
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

if [ -d internal/cmd/labbuild ]; then
  go run ./internal/cmd/labbuild
fi
