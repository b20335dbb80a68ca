#!/usr/bin/env bash
# bench/retrieval_e2e.sh - the retrieval index against the full scan in the
# live pipeline: the demo's open-loop scenario (embedded broker, a catalog
# with content) at ITEMS items, once per arm, in turn; events/s, lists
# ranked from the index, hr@10 over clicks, and the rate of each third of
# the events (the first build runs in the first thirds; the last third is
# nearer the index's steady state), and the recall of the lists from the
# index against the full scan's (emit.retrieval.audit.every). docs/RETRIEVAL.md,
# "500,000 and 1M items, and the upkeep".
#
#   bench/retrieval_e2e.sh [ARM ...]   (default: scan index light)
# Arms: scan (emit.retrieval.min.items=0), index (the defaults), index2
# (build.threads=2), light (build.threads=2, refresh.change=1, sync.ms=5).
# Environment: ITEMS (500000), EVENTS (3000000), USERS (100000), SEED (7),
#              AUDIT (emit.retrieval.audit.every: 100 here, so that a run's
#              recall rests on hundreds of lists; its full scans cost the
#              index's arms ~1% of their time), EXTRA (more settings for
#              every arm, e.g. "--set emit.retrieval.popular=1000"),
#              DRIFTREC (build/driftrec).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DRIFTREC:-build/driftrec}
out=$(mktemp -d /tmp/driftrec-retrieval-e2e-XXXXXX)
trap 'rm -rf "$out"' EXIT
arms=("$@")
[ ${#arms[@]} -gt 0 ] || arms=(scan index light)
for arm in "${arms[@]}"; do
  case $arm in
    scan) sets=(--set emit.retrieval.min.items=0) ;;
    index) sets=() ;;
    index2) sets=(--set emit.retrieval.build.threads=2) ;;
    light) sets=(--set emit.retrieval.build.threads=2 --set emit.retrieval.refresh.change=1 --set emit.retrieval.sync.ms=5) ;;
    *) echo "unknown arm: $arm (scan, index, index2, light)" >&2; exit 2 ;;
  esac
  "$bin" demo --scenario openloop --no-drift-eval --events "${EVENTS:-3000000}" --users "${USERS:-100000}" \
         --items "${ITEMS:-500000}" --seed "${SEED:-7}" --set emit.retrieval.audit.every="${AUDIT:-100}" \
         "${sets[@]}" ${EXTRA:-} --report "$out/$arm" > "$out/$arm.log" 2>&1
  python3 - "$out/$arm.log" "$out/$arm/report.json" "$arm" <<'PY'
import json, re, sys
pts = []
for line in open(sys.argv[1]):
    m = re.search(r'\[\s*([\d.]+)s\] consumed (\d+)/(\d+)', line)
    if m: pts.append((float(m.group(1)), int(m.group(2)), int(m.group(3))))
r = json.load(open(sys.argv[2]))
total = pts[-1][2] if pts else 0
def at(n): return next((t for t, c, _ in pts if c >= n), None)
start = next((t for t, c, _ in pts if c > 0), None)
marks = [start] + [at(total * k // 3) for k in (1, 2, 3)]
thirds = " / ".join("%.0f" % ((total / 3) / (b - a)) if b > a else "?" for a, b in zip(marks, marks[1:])) \
    if None not in marks else "?"  # the progress line comes every 0.5 s: a short run has no thirds
fmt = lambda v: "-" if v is None else "%.4f" % v
recall = fmt(r.get("retrieval_recall")) + " (last third " + fmt(r.get("retrieval_recall_last_third")) + ")"
print(f"{sys.argv[3]}: {r['events_per_second']:.0f} events/s, {r['lists_retrieved']} of {r['lists_emitted']} lists "
      f"from the index, recall {recall} ({r.get('retrieval_audited_lists', 0)} audited), "
      f"hr@10 {r['hr@10']:.4f}, thirds {thirds} events/s")
PY
done
