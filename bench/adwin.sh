#!/usr/bin/env bash
# bench/adwin.sh - ns per ADWIN update (bench/adwin_bench.c, built here
# against a build directory's libraries; issue 18 benchmark 5, target 100 ns).
#
#   bench/adwin.sh [BUILD_DIR] [N]
#   bench/adwin.sh BUILD_DIR N BASELINE_ADWIN_C [REPS]
# The second form also builds the bench with BASELINE_ADWIN_C (e.g. an older
# learner/adwin.c, copied out of the tree) in place of the library's
# detector, same flags, and runs the two REPS times (default 5) alternately
# on this machine: per setting, the median of each and new/baseline, and
# the cut counts, which must agree.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
n=${2:-10000000}
tmp=$(mktemp -d /tmp/driftrec-adwin-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
flags=(-std=c11 -O2 -g -D_GNU_SOURCE -I"$root/common" -I"$root/learner")
cc "${flags[@]}" "$root/bench/adwin_bench.c" -o "$tmp/adwin_bench" \
   "$build/libdr_learner.a" "$build/libdr_common.a" -lm
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
if [ $# -lt 3 ]; then
  "$tmp/adwin_bench" "$n"
  exit 0
fi
# The library's adwin.c is built -O3 (CMakeLists.txt): so is the baseline.
cc "${flags[@]}" -O3 -c "$3" -o "$tmp/baseline_adwin.o"
cc "${flags[@]}" "$root/bench/adwin_bench.c" "$tmp/baseline_adwin.o" -o "$tmp/adwin_baseline" \
   "$build/libdr_common.a" -lm
for ((r = 0; r < ${4:-5}; r++)); do
  if ((r % 2 == 0)); then order="adwin_baseline adwin_bench"; else order="adwin_bench adwin_baseline"; fi
  for b in $order; do "$tmp/$b" "$n" | sed "s/^/$b|/"; done
done > "$tmp/runs"
awk -F'|' '
  { split($2, f, "  +"); name = f[1]; sub(/^ +/, "", f[2]); split(f[2], t, " ");
    key = $1 SUBSEP name; ns[key, ++cnt[key]] = t[1]; names[name] = 1;
    match($2, /[0-9,]+ cuts/); cuts[key] = substr($2, RSTART, RLENGTH) }
  function median(key,   k, i, j, v, x) {
    k = cnt[key]; for (i = 1; i <= k; i++) v[i] = ns[key, i] + 0;
    for (i = 2; i <= k; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
    return k % 2 ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2 }
  END { for (name in names) {
          b = median("adwin_baseline" SUBSEP name); m = median("adwin_bench" SUBSEP name);
          printf "%-34s baseline %6.1f ns  new %6.1f ns  new/baseline %.2f  (%s; baseline %s)\n",
                 name, b, m, m / b, cuts["adwin_bench" SUBSEP name], cuts["adwin_baseline" SUBSEP name] } }' "$tmp/runs" | sort
