#!/usr/bin/env bash
# make bench: builds the release binaries, installs the load tools when missing (wrk, h2load from
# nghttp2-client, nginx), runs kubegate-bench and leaves bench/report.md and bench/results.json.
# Everything the run starts is stopped when it ends, also when it is interrupted.
# Arguments are passed to kubegate-bench (e.g. --only throughput,watch).
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf 'bench: %s\n' "$*"; }
fail() { printf 'bench: %s\n' "$*" >&2; exit 1; }
started=$(date +%s)

# Load tools: command -> Debian package.
declare -A NEED=([wrk]=wrk [h2load]=nghttp2-client [nginx]=nginx)
missing=()
for cmd in "${!NEED[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ] && [ ! -x "/usr/bin/$cmd" ]; then
    missing+=("${NEED[$cmd]}")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || fail "missing: ${missing[*]} (run as root or: apt-get install -y ${missing[*]})"
    SUDO="sudo"
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || fail "apt-get update failed; install by hand: ${missing[*]}"
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null || fail "apt-get install failed for: ${missing[*]}"
fi

CARGO="${CARGO:-cargo}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(pwd)/target}"
say "building release binaries (cargo build --release --workspace --bins)"
"$CARGO" build --release --locked --workspace --bins
say "building the criterion micro-benchmarks"
"$CARGO" bench --locked -p kubegate-proxy --bench hot_path --no-run
built=$(date +%s)

# A build that just ended leaves the machine busy for a while (its files are still being written
# out): measured at once, the first minute's latencies carry that work. Wait until the written
# data is on disk and the 1-minute load average is below 1.0, for at most 2 minutes.
sync
settle_until=$((built + 120))
while ! awk '{ exit !($1 < 1.0) }' /proc/loadavg && [ "$(date +%s)" -lt "$settle_until" ]; do
  sleep 2
done
say "machine settled for $(($(date +%s) - built)) s (load average $(cut -d' ' -f1 /proc/loadavg))"
settled=$(date +%s)

# The driver runs in a session of its own, so whatever it started is stopped with it even when
# it is killed before its own clean-up runs.
driver_pid=""
cleanup() {
  if [ -n "$driver_pid" ]; then
    kill -TERM -- "-$driver_pid" 2>/dev/null || true
    sleep 1
    kill -KILL -- "-$driver_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "running kubegate-bench (about 10 minutes)"
setsid "$CARGO_TARGET_DIR/release/kubegate-bench" "$@" &
driver_pid=$!
status=0
wait "$driver_pid" || status=$?
cleanup
driver_pid=""
ended=$(date +%s)
say "build $((built - started)) s, settling $((settled - built)) s, benchmarks $((ended - settled)) s, total $((ended - started)) s"
[ "$status" -eq 0 ] || fail "kubegate-bench failed (exit $status); see the report for what ran"
say "wrote the report and results.json (bench/ unless --out said otherwise)"
