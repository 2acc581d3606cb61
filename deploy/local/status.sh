#!/usr/bin/env bash
# Shows which parts of the local stack run and whether they are ready.
set -uo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/lib.sh
row() {
  local name=$1 admin=$2 state="stopped"
  if running "$name"; then
    state="running (pid $(cat "$PID_DIR/$name.pid"))"
    if [ -n "$admin" ]; then ready "$admin" && state="$state, ready" || state="$state, not ready"; fi
  fi
  printf '  %-11s %s\n' "$name" "$state"
}
row nats ""
row kube-sim ""
row identity "$IDENTITY_ADMIN"
row kubeconfig "$KUBECONFIG_ADMIN"
row proxy-1 "$PROXY1_ADMIN"
row proxy-2 "$PROXY2_ADMIN"
row haproxy ""
