#!/usr/bin/env bash
# bench/retrieval.sh - the approximate retrieval stage (retrieval/, issue 17)
# against the production full scan (dr_emit_topk), built here against a
# build directory's libraries (bench/retrieval_bench.c): lists per CPU
# second of both paths, their ratio, recall@50 of the ANN candidates, build
# time, bytes per item, what a stale index costs (recall before and after
# upserting the touched items; upserts/s), and what a restart costs with
# the index saved (save and load seconds, disk bytes) against a build, per
# catalog size.
#
#   bench/retrieval.sh [BUILD_DIR]     (default build; RelWithDebInfo or Release)
# Environment: ITEMS ("10000 30000 100000 300000 1000000"), KINDS ("clustered
#   gauss"), GAUSS_ITEMS (gauss only up to this size: 300000), RUNS (3: medians
#   of the timed repetitions on one index), BATCH (512), THREADS (2: build),
#   M (48), EFC (100), EF ("50,64,100"), CAND ("50"), STALE (1), SAVE (1), SEED (1), IN_PLACE (0).
# The 1M-item build takes ~3 minutes on 2 cores; all sizes and both kinds ~15.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
ITEMS=${ITEMS:-"10000 30000 100000 300000 1000000"} KINDS=${KINDS:-"clustered gauss"}
GAUSS_ITEMS=${GAUSS_ITEMS:-300000}
export RUNS=${RUNS:-3} BATCH=${BATCH:-512} THREADS=${THREADS:-2} M=${M:-48} EFC=${EFC:-100}
export EF=${EF:-"50,64,100"} CAND=${CAND:-50} STALE=${STALE:-1} SAVE=${SAVE:-1} SEED=${SEED:-1}
[ -f "$build/libdr_retrieval.a" ] || { echo "retrieval.sh: $build/libdr_retrieval.a missing (build first)" >&2; exit 1; }
tmp=$(mktemp -d /tmp/driftrec-retrieval-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

cc -std=c11 -O2 -g -D_GNU_SOURCE -I"$root/common" -I"$root/learner" -I"$root/emitter" \
   -I"$root/schemas" -I"$root/retrieval" "$root/bench/retrieval_bench.c" -o "$tmp/retrieval_bench" \
   "$build/libdr_emitter.a" "$build/libdr_learner.a" "$build/libdr_retrieval.a" \
   "$build/libdr_common.a" -lopenblas -lstdc++ -lpthread -lm

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg); build: $build"
echo "settings: M=$M EFC=$EFC EF=$EF CAND=$CAND RUNS=$RUNS BATCH=$BATCH THREADS=$THREADS"
for kind in $KINDS; do
  for n in $ITEMS; do
    [ "$kind" = gauss ] && [ "$n" -gt "$GAUSS_ITEMS" ] && continue
    "$tmp/retrieval_bench" "$kind" "$n" | tee -a "$tmp/out.txt"
  done
done

# The summary: one row per kind, size and ef (the first candidate count).
python3 - "$tmp/out.txt" <<'PY'
import re, sys
rows, scan, build, stale, saved = [], {}, {}, {}, {}
for line in open(sys.argv[1]):
    f = line.split(); kind, n = f[0], int(f[1].split('=')[1]); kv = dict(x.split('=') for x in f[3:] if '=' in x)
    if f[2] == 'scan': scan[kind, n] = kv
    elif f[2] == 'build': build[kind, n] = kv
    elif f[2] == 'stale': stale[kind, n] = kv
    elif f[2] == 'saved': saved[kind, n] = kv
    elif f[2] == 'ann': rows.append((kind, n, kv))
print()
print("| kind | items | scan lists/CPU s | ef | cand | ANN lists/CPU s | ratio | recall@50 | build s | bytes/item | upserts/s | recall: steps not indexed / + replaced / replaced upserted / all upserted |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for kind, n, kv in rows:
    b, s, st = build[kind, n], scan[kind, n], stale.get((kind, n))
    first = st and st['ef'] == kv['ef'] and st['cand'] == kv['cand']
    print(f"| {kind} | {n:,} | {float(s['lists_per_cpu_s']):,.0f} | {kv['ef']} | {kv['cand']} | "
          f"{float(kv['lists_per_cpu_s']):,.0f} | {float(kv['ratio']):.1f} | {float(kv['recall50']):.3f} | "
          f"{float(b['build_s']):.1f} | {float(b['bytes_per_item']):.0f} | "
          + (f"{float(st['upserts_per_s']):,.0f} | {float(st['recall50_steps_only']):.3f} / {float(st['recall50_stale']):.3f} / "
             f"{float(st['recall50_replaced_upserted']):.3f} / {float(st['recall50_after_upserts']):.3f} |" if first else "| |"))
if saved:
    print()
    print("| kind | items | build s (CPU s) | saved: disk bytes/item, save s | load s (CPU s), rows renamed | build CPU / load CPU | recall@50 loaded |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for (kind, n), kv in sorted(saved.items()):
        print(f"| {kind} | {n:,} | {float(kv['build_s']):.1f} ({float(kv['build_cpu_s']):.1f}) | "
              f"{float(kv['disk_bytes_per_item']):.0f}, {float(kv['save_s']):.2f} | "
              f"{float(kv['load_s']):.2f} ({float(kv['load_cpu_s']):.2f}) | {float(kv['build_over_load']):.0f}x | "
              f"{float(kv['recall50_loaded']):.3f} |")
# crossover: the smallest size where the ANN path (first ef, first cand) beats the scan
for kind in sorted({k for k, _, _ in rows}):
    pts = [(n, float(kv['ratio'])) for k, n, kv in rows if k == kind and kv is next(v for kk, nn, v in rows if kk == k and nn == n)]
    below = [n for n, r in pts if r < 1]; above = [n for n, r in pts if r >= 1]
    print(f"{kind}: ratio at the first ef by size: " + ", ".join(f"{n:,}: {r:.2f}" for n, r in pts)
          + (f"; crossover between {max(below):,} and {min(n for n in above if n > max(below)):,} items" if below and any(n > max(below) for n in above) else ""))
PY
