#!/usr/bin/env bash
# bench/split.sh - what splitting the users over instances costs in model
# hr@10, without the timing (bench/split_bench.c: the open-loop demo stream
# through K learner models in one process, sharing their item changes every
# SYNC events). Deterministic: one run a configuration.
#
#   bench/split.sh [BUILD_DIR]
# Environment: EVENTS (400000), USERS (20000), ITEMS (2000),
#   CONFIGS ("K:SYNC:SHARE ...", the first the baseline; default
#            "1:1:all 3:1:all 3:6000:all 3:6000:factors 3:1:none"; SHARE all|factors|none),
#   SETS (settings for every model, e.g. "learner.cooc.neighbors=0").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
EVENTS=${EVENTS:-400000} USERS=${USERS:-20000} ITEMS=${ITEMS:-2000}
read -r -a configs <<<"${CONFIGS:-1:1:all 3:1:all 3:6000:all 3:6000:factors 3:1:none}"
read -r -a sets <<<"${SETS:-}"
tmp=$(mktemp -d /tmp/driftrec-split-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# compiled against the headers, linked as the driftrec binary is (the
# settings come from its config module)
cc -std=c11 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE -c -I"$root/common" -I"$root/learner" -I"$root/src" -I"$root/schemas" \
   -I"$root/emitter" "$root/bench/split_bench.c" -o "$tmp/split_bench.o"
link=$(sed -e 's/^.*src\/main.c.o -o driftrec//' "$build/CMakeFiles/driftrec.dir/link.txt")
(cd "$build" && eval c++ -O2 -g -o "$tmp/split_bench" "$tmp/split_bench.o" "$link")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); build: $build"
echo "stream: $EVENTS open-loop events, $USERS users, $ITEMS items, 12 partitions; sets: ${SETS:-none}"
base=""
for c in "${configs[@]}"; do
  IFS=: read -r k sync how <<<"$c"
  line=$("$tmp/split_bench" "$EVENTS" "$USERS" "$ITEMS" "$k" "$sync" "$how" "${sets[@]}")
  hr=$(sed -n 's/.*hr10=\([0-9.]*\).*/\1/p' <<<"$line")
  [ -n "$base" ] || base=$hr
  printf '%s ratio=%s\n' "$line" "$(awk -v a="$hr" -v b="$base" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')"
done
