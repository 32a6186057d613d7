#!/usr/bin/env bash
# A bounded fuzz pass for CI, on the stable toolchain: the two targets, built with
# libFuzzer's coverage instrumentation as `cargo fuzz build -O -s none` builds them
# (without cargo-fuzz, whose flags need no nightly once no sanitizer is asked for),
# each run for FUZZ_SECONDS from the committed seeds, then every fixed regression
# replayed with the production deadline. Any crash, abort, timeout or single
# allocation over 512 MiB fails the run.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-45}"
target=x86_64-unknown-linux-gnu

export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions"
# --target keeps the instrumentation out of build scripts and proc macros.
cargo build --release --locked --target "$target" --bins
bin="target/$target/release"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(-rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 -max_len=4096
        -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$work/")
mkdir -p "$work/run_script" "$work/json_roundtrip"
"$bin/run_script" "$work/run_script" seeds/run_script -dict=rhai.dict "${common[@]}"
"$bin/json_roundtrip" "$work/json_roundtrip" seeds/json_roundtrip "${common[@]}"

# The fixed findings, at the production deadline (a regression marked FIXED must
# neither crash nor overrun it).
fixed=$(grep -l '^// FIXED' regressions/*.rhai)
PICLOUD_FUZZ_TIMEOUT_MS=5000 PICLOUD_FUZZ_OVERRUN_MS=10000 \
  "$bin/run_script" -runs=1 -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=30 $fixed
echo "fuzz pass: ${seconds}s per target, $(echo "$fixed" | wc -l) regressions replayed"
