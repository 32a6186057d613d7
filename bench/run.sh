#!/usr/bin/env bash
# The one command: builds picloud and the harness in release, runs every scenario and
# prints a markdown results table. Extra arguments go to picloud-bench (see --help);
# PICLOUD_BENCH_* environment variables work too, e.g.
#   PICLOUD_BENCH_DURATION=5 PICLOUD_BENCH_CONNECTIONS=64 ./bench/run.sh
#   PICLOUD_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres ./bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# The server's build profile: `release` (what ships), or `profiling` (the same code
# with line tables, for perf; docs/operations.md "Profiling").
profile="${PICLOUD_BENCH_PROFILE:-release}"

# Two builds, not one: building both packages together would unify their dependency
# features and rebuild the server with the client's.
cargo build --profile "$profile" -p picloud >&2
cargo build --release -p picloud-bench >&2

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git diff --quiet HEAD 2>/dev/null; then commit="$commit (uncommitted changes)"; fi
echo "## Results — $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit, $(nproc) cores"
echo
target/release/picloud-bench --picloud "target/$profile/picloud" "$@"
