#!/usr/bin/env bash
# Stops exactly what make up started (by pid file), gracefully, then forcefully after 15 s.
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/lib.sh
[ -d "$PID_DIR" ] || { echo "kubegate: nothing is running"; exit 0; }
for name in haproxy proxy-2 proxy-1 kubeconfig identity kube-sim nats; do
  pidfile="$PID_DIR/$name.pid"
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    echo "  stopped $name"
  fi
  rm -f "$pidfile"
done
