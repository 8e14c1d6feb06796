#!/bin/sh
# run.sh — runs the full microbenchmark set (perf/micro/tally-micro) at its
# real sizes and writes Google Benchmark's JSON (context: CPU, caches, load;
# every repetition and its mean/median/stddev) for docs/benchmarks.md.
#
# Usage: perf/micro/run.sh [extra Google Benchmark arguments...]
#   BUILD_DIR=dir        meson build directory (default: build); built first
#   OUT=file.json        where the JSON goes (default: $BUILD_DIR/tally-micro.json)
#   REPETITIONS=n        repetitions of each benchmark (default: 3; report the median)
#   TALLY_BENCH_LARGE=1  also run lookup over 10M counters (needs ~2.5 GB of RAM)
#   TALLY_BENCH_DIR=dir  where store files are made (default: /tmp)
#   TALLY_WAL_BENCH_DIR=dir, TALLY_CHECKPOINT_BENCH_DIR=dir  where the log and the
#                        checkpoints are written with a real fdatasync (default: /var/tmp)
# Example: OUT=/tmp/micro.json perf/micro/run.sh --benchmark_filter='^shard'
#
# Numbers only: nothing here passes or fails on a time. Run on an idle host;
# on a laptop or VM, expect a few percent of noise between runs.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$root/build}
repetitions=${REPETITIONS:-3}

if [ ! -f "$build/build.ninja" ]; then
  echo "run.sh: $build is not a meson build directory (meson setup $build)" >&2
  exit 1
fi
ninja -C "$build" perf/micro/tally-micro >/dev/null || {
  echo "run.sh: cannot build perf/micro/tally-micro (configured with -Dperf=true?" \
    "libbenchmark-dev installed?)" >&2
  exit 1
}
out=${OUT:-$build/tally-micro.json}

"$build/perf/micro/tally-micro" \
  --benchmark_repetitions="$repetitions" \
  --benchmark_display_aggregates_only=true \
  --benchmark_out="$out" \
  --benchmark_out_format=json \
  "$@"
echo "run.sh: results in $out" >&2
