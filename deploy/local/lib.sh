# Shared by up.sh, down.sh and status.sh: where things live and how to tell if they run.
KG_DIR="${KG_DIR:-$(pwd)/.kubegate}"
PID_DIR="$KG_DIR/pids"
LOG_DIR="$KG_DIR/logs"
PROFILE="${PROFILE:-release}"
TARGET="${CARGO_TARGET_DIR:-$(pwd)/target}/$PROFILE"

# Ports of the local stack (admin listeners are plain HTTP on loopback).
PUBLIC_PORT=9443
IDENTITY_PORT=9441
KUBECONFIG_PORT=9442
PROXY1_PORT=9444
PROXY2_PORT=9445
IDENTITY_ADMIN=9541
KUBECONFIG_ADMIN=9542
PROXY1_ADMIN=9543
PROXY2_ADMIN=9544
KUBESIM_PORT=6443
KUBESIM_ADMIN=9545
# The stack's own nats-server (one user per service, the deployed permissions); not the
# machine's NATS on 4222.
NATS_PORT="${KUBEGATE_LOCAL_NATS_PORT:-4223}"
NATS_DIR="$KG_DIR/nats"
# The services' default databases, which the local stack uses; their secrets are sealed with
# the keys under .kubegate.
LOCAL_DATABASES="kubegate_identity kubegate_kubeconfig"

# Names the local databases that exist on 127.0.0.1:5432 (nothing when PostgreSQL cannot say).
existing_databases() {
  local db
  for db in $LOCAL_DATABASES; do
    if [ "$(psql -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$db'" 2>/dev/null)" = 1 ]; then
      echo "$db"
    fi
  done
}

running() {
  local pidfile="$PID_DIR/$1.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

ready() { # ready <admin port>
  curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$1/readyz" 2>/dev/null
}

wait_ready() { # wait_ready <name> <admin port> <seconds>
  local deadline=$((SECONDS + $3))
  while [ $SECONDS -lt $deadline ]; do
    if ready "$2"; then return 0; fi
    if ! running "$1"; then
      echo "kubegate: $1 stopped while starting; last lines of $LOG_DIR/$1.log:" >&2
      tail -n 20 "$LOG_DIR/$1.log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
  echo "kubegate: $1 not ready after $3 s; see $LOG_DIR/$1.log" >&2
  return 1
}
