#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 60) with libFuzzer (cargo fuzz), starting
# from the seed corpus in corpus/<target>/ plus what earlier runs found (kept under the target
# directory, never written into the repository). Prints each target's executions per second;
# exits non-zero when a target crashes, with the crashing input under
# $CARGO_TARGET_DIR/fuzz/runs/artifacts/<target>/ and the fuzzer's report.
# Stable Rust: cargo fuzz needs nightly-only flags, allowed here by RUSTC_BOOTSTRAP=1; the
# code fuzzed is safe Rust, so no sanitizer (-s none) — coverage-guided panics are the findings.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH="${FUZZ_SECONDS:-60}"
export PATH="${KUBEGATE_CARGO_BIN:-$HOME/.cache/kubegate/cargo-bin}/bin:$PATH"
command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz is missing; run make deps" >&2; exit 1; }
TARGET_DIR="${CARGO_TARGET_DIR:-$(pwd)/../../target}/fuzz"
OUT="$TARGET_DIR/runs"
TARGETS=(${FUZZ_TARGETS:-token request_path headers kubeconfig events})
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none --codegen-units 16 --fuzz-dir . --target-dir "$TARGET_DIR"
[ -z "${FUZZ_BUILD_ONLY:-}" ] || exit 0
failed=()
for t in "${TARGETS[@]}"; do
  work="$OUT/corpus/$t"
  artifacts="$OUT/artifacts/$t/"
  log="$OUT/$t.log"
  mkdir -p "$work" "$artifacts"
  if cargo fuzz run -s none --codegen-units 16 --fuzz-dir . --target-dir "$TARGET_DIR" "$t" "$work" "corpus/$t" -- \
      -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$artifacts" \
      -print_final_stats=1 >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    echo "fuzz: $t: $runs executions in ${SECONDS_EACH}s ($((runs / SECONDS_EACH))/s), no crash"
  else
    echo "fuzz: $t FAILED; the fuzzer's report:" >&2
    grep -v '^#[0-9]' "$log" | tail -n 60 >&2
    failed+=("$t")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]} (inputs under $OUT/artifacts/)" >&2
  exit 1
fi
