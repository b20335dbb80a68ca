#!/usr/bin/env bash
# run.sh [SECONDS] - a bounded libFuzzer run of every fuzz target, for CI
# (`make test` runs it): installs clang if missing (ops/bootstrap.sh fuzz),
# builds the targets in build-fuzz/ (DRIFTREC_FUZZ=ON: ASan + UBSan + coverage),
# writes the seed corpora from the current encoders, and runs each target for
# SECONDS (default 30). Any crash, sanitizer report, leak, input slower than
# 10 s, single allocation over 64 MiB (inputs are at most 4 KiB) or RSS over
# 2 GiB fails the run; the input is kept in build-fuzz/artifacts/ (fix the
# decoder, then add the input to the unit tests). The corpora grow in
# build-fuzz/corpus-*/ from one run to the next on the same machine.
set -euo pipefail
secs=${1:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${FUZZ_BUILD:-$root/build-fuzz}
"$root/ops/bootstrap.sh" fuzz
CC=clang cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDRIFTREC_FUZZ=ON >/dev/null
cmake --build "$build" -j "${JOBS:-2}" --target fuzz >/dev/null
rm -rf "$build/seeds"
"$build/tests/fuzz/fuzz_seeds" "$build/seeds"
mkdir -p "$build/artifacts"
failed=0
for t in event:fuzz_event_decoder user:fuzz_user_state; do
  kind=${t%%:*} target=${t#*:}
  log="$build/$target.log"
  mkdir -p "$build/corpus-$kind"
  rc=0
  timeout $((secs + 120)) "$build/tests/fuzz/$target" -max_total_time="$secs" -timeout=10 \
      -rss_limit_mb=2048 -malloc_limit_mb=64 -max_len=4096 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$target-" "$build/corpus-$kind" "$build/seeds/$kind" \
      >"$log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "$target: FAILED (exit $rc); input kept in $build/artifacts/" >&2
    grep -E "ERROR|SUMMARY|Test unit written|==[0-9]+==" "$log" | head -20 >&2 || tail -30 "$log" >&2
    failed=1
    continue
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")
  echo "$target: $runs inputs in ${secs} s, corpus $(ls "$build/corpus-$kind" | wc -l) files, peak RSS $rss MiB, no failure"
done
exit "$failed"
