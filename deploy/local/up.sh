#!/usr/bin/env bash
# Starts the local stack in the background: its own nats-server (JetStream, one user per
# service with the deployed permissions, on 4223), the demo Kubernetes API (when no real cluster is
# configured), identity, kubeconfig, two proxy replicas and HAProxy in front of them on
# https://127.0.0.1:9443. Logs and pid files go under .kubegate/. Running it again starts only
# what is not running.
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/lib.sh
mkdir -p "$PID_DIR" "$LOG_DIR"

bin() {
  local b="$TARGET/$1"
  [ -x "$b" ] || { echo "kubegate: $b is missing; run make build" >&2; exit 1; }
  echo "$b"
}

# New keys with databases of an earlier stack would start a stack that cannot open its own
# data (every sign-in fails): stop before making any.
if [ ! -f "$KG_DIR/master-key" ] && [ -n "$(existing_databases)" ]; then
  echo "kubegate: PostgreSQL still holds $(existing_databases | paste -sd' ' -) from an earlier local stack," >&2
  echo "  sealed with keys that were in the removed $KG_DIR. Run 'make reset' to drop them" >&2
  echo "  (their data is lost) and start anew, or put that directory back." >&2
  exit 1
fi
"$(bin kubegate)" dev init --dir "$KG_DIR" >/dev/null
# The admin command line, at a stable path for the walk-through.
mkdir -p "$KG_DIR/bin"
ln -sf "$(bin kubegate)" "$KG_DIR/bin/kubegate"
MASTER_KEY=$(cat "$KG_DIR/master-key")
ADMIN_PASSWORD="${KUBEGATE_ADMIN_PASSWORD:-$(cat "$KG_DIR/admin-password")}"
FLEET_KEY=$(head -n1 "$KG_DIR/fleet-key")
FLEET_PUBLIC=$(head -n1 "$KG_DIR/fleet-key.pub")

start() { # start <name> <admin port> <env assignments...> -- <command...>
  local name=$1 admin=$2; shift 2
  if running "$name"; then
    echo "  $name already running (pid $(cat "$PID_DIR/$name.pid"))"
    return 0
  fi
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]}" KUBEGATE_ADMIN_LISTEN="127.0.0.1:$admin" KUBEGATE_LOG_FORMAT=json \
    nohup "$@" >>"$LOG_DIR/$name.log" 2>&1 &
  echo $! >"$PID_DIR/$name.pid"
  wait_ready "$name" "$admin" 120
  echo "  $name ready"
}

COMMON=(
  KUBEGATE_NATS_URL="nats://127.0.0.1:$NATS_PORT"
  KUBEGATE_TLS_CERT="$KG_DIR/server.pem"
  KUBEGATE_TLS_KEY="$KG_DIR/server-key.pem"
)

echo "kubegate: starting the local stack"
# NATS of its own with JetStream and the permission layout of the Kubernetes deployment: the
# same auth.conf, one user per service, passwords generated once under .kubegate/nats/.
mkdir -p "$NATS_DIR/store"
# nats-server reads a variable's value as a number when it starts with a digit (and then refuses
# the configuration), so each password starts with letters.
for svc in identity kubeconfig proxy audit; do
  if ! grep -qs '^[A-Za-z]' "$NATS_DIR/$svc.password"; then
    (umask 077; printf 'kg%s' "$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32)" \
      >"$NATS_DIR/$svc.password")
  fi
done
nats_password() { cat "$NATS_DIR/$1.password"; }
nats_env() { # nats_env <service>: the service's bus credentials
  echo "KUBEGATE_NATS_USER=kubegate-$1"
  echo "KUBEGATE_NATS_PASSWORD=$(nats_password "$1")"
}
if running nats; then
  echo "  nats already running (pid $(cat "$PID_DIR/nats.pid"))"
else
  cp deploy/kubernetes/base/nats/auth.conf "$NATS_DIR/auth.conf"
  sed -e "s/@PORT@/$NATS_PORT/g" -e "s/@MAX_FILE_STORE@/1GB/g" -e "s/@TLS@//g" \
    deploy/local/nats.conf.in >"$NATS_DIR/nats.conf"
  NATS_BIN=$(command -v nats-server || echo /usr/sbin/nats-server)
  NATS_IDENTITY_PASSWORD=$(nats_password identity) NATS_KUBECONFIG_PASSWORD=$(nats_password kubeconfig) \
    NATS_PROXY_PASSWORD=$(nats_password proxy) NATS_AUDIT_PASSWORD=$(nats_password audit) \
    nohup "$NATS_BIN" -c "$NATS_DIR/nats.conf" -js -sd "$NATS_DIR/store" >>"$LOG_DIR/nats.log" 2>&1 &
  echo $! >"$PID_DIR/nats.pid"
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break
    running nats || { echo "kubegate: nats-server stopped; see $LOG_DIR/nats.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "  nats on 127.0.0.1:$NATS_PORT (one user per service)"
fi
# The demo environment: the stand-in API server on 6443 (skipped when KUBEGATE_NO_DEMO is set).
if [ -z "${KUBEGATE_NO_DEMO:-}" ] && [ -x "$TARGET/kube-sim" ]; then
  if running kube-sim; then
    echo "  kube-sim already running"
  else
    nohup "$TARGET/kube-sim" --listen "127.0.0.1:$KUBESIM_PORT" --state-dir "$KG_DIR/kube-sim" \
      >>"$LOG_DIR/kube-sim.log" 2>&1 &
    echo $! >"$PID_DIR/kube-sim.pid"
    for _ in $(seq 1 100); do
      [ -f "$KG_DIR/kube-sim/ca.pem" ] && curl -s -o /dev/null --cacert "$KG_DIR/kube-sim/ca.pem" \
        "https://127.0.0.1:$KUBESIM_PORT/version" && break
      running kube-sim || { echo "kubegate: kube-sim stopped; see $LOG_DIR/kube-sim.log" >&2; exit 1; }
      sleep 0.2
    done
    echo "  kube-sim (demo environment) on https://127.0.0.1:$KUBESIM_PORT"
  fi
fi
start identity "$IDENTITY_ADMIN" "${COMMON[@]}" $(nats_env identity) \
  KUBEGATE_IDENTITY_LISTEN="127.0.0.1:$IDENTITY_PORT" \
  KUBEGATE_MASTER_KEY="$MASTER_KEY" KUBEGATE_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
  -- "$(bin kubegate-identity)"
if [ -x "$TARGET/kubegate-kubeconfig" ]; then
  start kubeconfig "$KUBECONFIG_ADMIN" "${COMMON[@]}" $(nats_env kubeconfig) \
    KUBEGATE_KUBECONFIG_LISTEN="127.0.0.1:$KUBECONFIG_PORT" \
    KUBEGATE_FLEET_PUBLIC_KEY="$FLEET_PUBLIC" \
    KUBEGATE_PUBLIC_URL="https://127.0.0.1:$PUBLIC_PORT" KUBEGATE_PUBLIC_CA_FILE="$KG_DIR/ca.pem" \
    -- "$TARGET/kubegate-kubeconfig"
fi
# The audit stream keeps at most 600 MiB of NATS's 1 GB store, dropping its oldest records
# beyond that: sustained traffic would otherwise fill the store, and then neither identity nor
# kubeconfig could append an event (no sign-in, no download) until it had room again.
AUDIT_MAX_BYTES=$((600 * 1024 * 1024))
if [ -x "$TARGET/kubegate-proxy" ]; then
  for i in 1 2; do
    port_var="PROXY${i}_PORT"; admin_var="PROXY${i}_ADMIN"
    start "proxy-$i" "${!admin_var}" "${COMMON[@]}" $(nats_env proxy) \
      KUBEGATE_PROXY_LISTEN="127.0.0.1:${!port_var}" KUBEGATE_FLEET_KEY="$FLEET_KEY" \
      KUBEGATE_IDENTITY_URL="https://127.0.0.1:$IDENTITY_PORT" \
      KUBEGATE_KUBECONFIG_URL="https://127.0.0.1:$KUBECONFIG_PORT" \
      KUBEGATE_SERVICES_CA_FILE="$KG_DIR/ca.pem" KUBEGATE_REPLICA_ID="local-$i" \
      KUBEGATE_AUDIT_SPOOL_DIR="$KG_DIR/spool-$i" KUBEGATE_AUDIT_MAX_BYTES="$AUDIT_MAX_BYTES" \
      -- "$TARGET/kubegate-proxy"
  done
  if ! running haproxy; then
    sed -e "s/@PUBLIC_PORT@/$PUBLIC_PORT/g" -e "s/@PROXY1_PORT@/$PROXY1_PORT/g" -e "s/@PROXY2_PORT@/$PROXY2_PORT/g" \
      -e "s/@PROXY1_ADMIN@/$PROXY1_ADMIN/g" -e "s/@PROXY2_ADMIN@/$PROXY2_ADMIN/g" \
      deploy/local/haproxy.cfg.in >"$KG_DIR/haproxy.cfg"
    haproxy -f "$KG_DIR/haproxy.cfg" -p "$PID_DIR/haproxy.pid" -D
    echo "  haproxy on 127.0.0.1:$PUBLIC_PORT"
  else
    echo "  haproxy already running"
  fi
  ENTRY="https://127.0.0.1:$PUBLIC_PORT"
else
  ENTRY="https://127.0.0.1:$IDENTITY_PORT"
fi

# The demo environment: the stand-in API server, registered once.
if running kube-sim && running kubeconfig; then
  "$(bin kubegate)" dev register-demo --url "$ENTRY" --ca "$KG_DIR/ca.pem" \
    --password-file <(printf '%s' "$ADMIN_PASSWORD") --kube-sim-dir "$KG_DIR/kube-sim" \
    --kube-sim-url "https://127.0.0.1:$KUBESIM_PORT"
fi

cat <<INFO

kubegate is up at $ENTRY (CA: $KG_DIR/ca.pem)
  admin password: $( [ -n "${KUBEGATE_ADMIN_PASSWORD:-}" ] && echo "\$KUBEGATE_ADMIN_PASSWORD" || echo "in $KG_DIR/admin-password")

Sign in and download a kubeconfig:
  TOKEN=\$(curl -sS --cacert $KG_DIR/ca.pem -X POST $ENTRY/api/auth \\
      -d "{\"username\":\"admin\",\"password\":\"\$(cat $KG_DIR/admin-password)\"}" | sed -E 's/.*"jwt":"([^"]+)".*/\1/')
  curl -sS --cacert $KG_DIR/ca.pem -H "Authorization: Bearer \$TOKEN" -H 'Accept: text/yaml' \\
      $ENTRY/api/kubernetes/config -o admin-kubeconfig.yaml
  kubectl --kubeconfig admin-kubeconfig.yaml get pods -A

The audit timeline reads the bus as its own user:
  KUBEGATE_NATS_URL=nats://127.0.0.1:$NATS_PORT KUBEGATE_NATS_USER=kubegate-audit \\
      KUBEGATE_NATS_PASSWORD=\$(cat $NATS_DIR/audit.password) $KG_DIR/bin/kubegate audit --since 1h

Logs: $LOG_DIR   Stop: make down
INFO
