#!/usr/bin/env bash
# bench/demo_eval.sh - the demo's own throughput line with its drift
# evaluation against the same demo without it (issue 18, benchmark 7:
# within 10%, i.e. a ratio of at least 0.9), in pairs run one after the
# other (this machine's load moves within minutes), medians of the pairwise
# ratios. With OLD, a second binary's evaluated run joins each pair, for an
# A/B of a change to the evaluation's cost.
#
#   bench/demo_eval.sh [PAIRS]     (default 5)
# Environment: DRIFTREC (build/driftrec), OLD (unset), SCENARIO (openloop:
#              its evaluation ranks clicks under the model; feed, what
#              `make demo` runs: its evaluation is the detection bookkeeping,
#              and the closed loop's simulated users set the pace, ~50 s a
#              run), EVENTS (openloop only: 2000000).
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-5}
bin=${DRIFTREC:-build/driftrec}
EVENTS=${EVENTS:-2000000}
SCENARIO=${SCENARIO:-openloop}
case $SCENARIO in
  openloop) scenario=(--scenario openloop --events "$EVENTS") ;;
  feed) scenario=(--scenario feed) ;;
  *) echo "SCENARIO: openloop or feed, not $SCENARIO" >&2; exit 2 ;;
esac
out=$(mktemp -d /tmp/driftrec-demo-eval-XXXXXX)
trap 'rm -rf "$out"' EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "scenario: driftrec demo ${scenario[*]} (in-process embedded broker)"
rate() { # binary extra-args...: the demo's own events/s line
  local b=$1; shift
  "$b" demo "${scenario[@]}" --quiet --report "$out/report" "$@" 2>&1 >/dev/null |
    awk '/^  throughput/ {print $2}'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
with=() without=() ratio=() old=() old_ratio=()
for i in $(seq 1 "$pairs"); do
  a=$(rate "$bin") b=$(rate "$bin" --no-drift-eval)
  with+=("$a") without+=("$b") ratio+=("$(python3 -c "print(round($a / $b, 3))")")
  line="pair $i: with the evaluation $a events/s, without $b: ${ratio[-1]}"
  if [ -n "${OLD:-}" ]; then
    c=$(rate "$OLD")
    old+=("$c") old_ratio+=("$(python3 -c "print(round($c / $b, 3))")")
    line="$line; $OLD with the evaluation $c: ${old_ratio[-1]}"
  fi
  echo "$line"
done
echo "median with the evaluation $(median "${with[@]}") events/s, without $(median "${without[@]}");" \
     "pairwise ratio median $(median "${ratio[@]}") (target at least 0.9)"
[ -z "${OLD:-}" ] || echo "$OLD: median with the evaluation $(median "${old[@]}") events/s, pairwise ratio median $(median "${old_ratio[@]}")"
