#!/usr/bin/env bash
# Installs what a Debian machine lacks for building, running and testing kubegate, and starts
# the local PostgreSQL and NATS (with JetStream) when they are not running. Idempotent: quick
# when everything is there. Says exactly what is missing when it cannot install it.
set -euo pipefail

say() { printf 'deps: %s\n' "$*"; }
fail() { printf 'deps: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi

# command -> Debian package
declare -A NEED=(
  [nats-server]=nats-server
  [psql]=postgresql-client
  [pg_ctlcluster]=postgresql
  [haproxy]=haproxy
  [curl]=curl
  [busybox]=busybox-static
  [openssl]=openssl
  # The benchmarks' load tools and baseline (make test runs a smoke run of make bench).
  [wrk]=wrk
  [h2load]=nghttp2-client
  [nginx]=nginx
  # The web page's browser tests (headless).
  [chromium]=chromium
  [chromedriver]=chromium-driver
)
missing=()
for cmd in "${!NEED[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ] && [ ! -x "/usr/bin/$cmd" ]; then
    missing+=("${NEED[$cmd]}")
  fi
done
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then missing+=(python3-venv); fi
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
    fail "missing packages: ${missing[*]} (run as root or install them: apt-get install -y ${missing[*]})"
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || fail "apt-get update failed; install by hand: ${missing[*]}"
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null || fail "apt-get install failed for: ${missing[*]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  fail "cargo is missing: install Rust 1.89 or newer (https://rustup.rs)"
fi
if ! ls /usr/bin/kubectl* /usr/lib/google-cloud-sdk/bin/kubectl.1.* >/dev/null 2>&1 && ! command -v kubectl >/dev/null 2>&1; then
  say "note: kubectl is not installed; the walk-through and the kubectl tests need it (Debian package kubectl)"
fi

# cargo-fuzz for make fuzz (and make test): from crates.io into a cache directory, once.
FUZZ_ROOT="${KUBEGATE_CARGO_BIN:-$HOME/.cache/kubegate/cargo-bin}"
if [ ! -x "$FUZZ_ROOT/bin/cargo-fuzz" ]; then
  say "installing cargo-fuzz into $FUZZ_ROOT (once)"
  cargo install --locked --quiet --root "$FUZZ_ROOT" cargo-fuzz --version 0.13.2 \
    || fail "cargo install cargo-fuzz failed (needs crates.io); make fuzz and make test need it"
fi

# PostgreSQL on 127.0.0.1:5432
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }
if ! pg_up; then
  say "starting PostgreSQL"
  versions=$(ls /etc/postgresql 2>/dev/null || true)
  [ -n "$versions" ] || fail "PostgreSQL is installed but has no cluster in /etc/postgresql (create one: pg_createcluster <version> main)"
  for v in $versions; do
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$v" main start >/dev/null 2>&1 || true
  done
  for _ in $(seq 1 50); do pg_up && break; sleep 0.2; done
  pg_up || fail "PostgreSQL did not start on 127.0.0.1:5432 (see /var/log/postgresql/)"
fi
if ! psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
  fail "PostgreSQL on 127.0.0.1:5432 does not let user postgres in without a password; for local use add 'host all all 127.0.0.1/32 trust' to pg_hba.conf, or point KUBEGATE_*_DATABASE_URL and KUBEGATE_TEST_PG at a server you can use"
fi

# NATS with JetStream on 127.0.0.1:4222
nats_up() { (exec 3<>/dev/tcp/127.0.0.1/4222) >/dev/null 2>&1; }
if ! nats_up; then
  say "starting nats-server with JetStream"
  $SUDO mkdir -p /var/lib/nats-server
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  for _ in $(seq 1 50); do nats_up && break; sleep 0.1; done
  nats_up || fail "nats-server did not start on 127.0.0.1:4222 (see /var/log/nats-server.log)"
fi

# Python venv with the official Kubernetes client (tests use it as a second client library).
VENV="${KUBEGATE_VENV:-$HOME/.cache/kubegate/venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import kubernetes' >/dev/null 2>&1; then
  say "creating $VENV with the kubernetes Python client"
  python3 -m venv "$VENV" || fail "cannot create a Python venv at $VENV (install python3-venv)"
  "$VENV/bin/pip" install -q kubernetes || fail "pip could not install the kubernetes client into $VENV"
fi

# The deployment tests validate rendered manifests with kubernetes-validate (own venv).
bash "$(dirname "$0")/../scripts/install-test-deps.sh" || fail "cannot install kubernetes-validate (see above)"
