#!/usr/bin/env bash
# bench/drift.sh - the drift figures of docs/DRIFT.md: the closed-loop feed
# demo (`driftrec demo`, its default scenario) over several seeds, each in a
# fresh embedded broker, then the median and spread of every figure the
# issue's goals name (switch detection and delay, false alarms, recovery per
# arm, the population shift, CTR of the full model against the most-popular
# feed).
#
#   bench/drift.sh [SEEDS] [--set key=value | demo option]...   (SEEDS: "1 2 3")
# Environment: DRIFTREC (build/driftrec). Reports stay in $OUT (a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DRIFTREC:-build/driftrec}
seeds=${1:-"1 2 3"}
[ $# -gt 0 ] && shift
out=${OUT:-$(mktemp -d /tmp/driftrec-drift-XXXXXX)}
mkdir -p "$out"
echo "reports in $out" >&2
for s in $seeds; do
  start=$SECONDS
  "$bin" demo --quiet --seed "$s" --report "$out/seed-$s" "$@" >"$out/seed-$s.log" 2>&1 ||
    { echo "seed $s failed:"; tail -20 "$out/seed-$s.log"; exit 1; }
  echo "seed $s: $((SECONDS - start)) s" >&2
done
python3 - "$out" $seeds <<'PY'
import json, statistics, sys
out, seeds = sys.argv[1], sys.argv[2:]
reps = [json.load(open("%s/seed-%s/report.json" % (out, s))) for s in seeds]

def get(d, path):
    for k in path.split("."):
        if d is None: return None
        d = d.get(k) if isinstance(d, dict) else None
    return d

def arm(r, name, key):
    for a in r["feed"]["arms"]:
        if a["name"] == name: return a[key]
    return None

def row(label, vals, fmt="%.3f"):
    xs = [v for v in vals if v is not None]
    cells = ["–" if v is None else fmt % v for v in vals]
    med = fmt % statistics.median(xs) if xs else "–"
    spread = ("%s..%s" % (fmt % min(xs), fmt % max(xs))) if xs else "–"
    print("| %s | %s | %s | %s |" % (label, " / ".join(cells), med, spread))

print("| figure (seeds %s) | per seed | median | range |" % ", ".join(seeds))
print("|---|---|---|---|")
ctr = lambda n: [arm(r, n, "ctr") for r in reps]
row("CTR drift arm", ctr("drift"))
row("CTR control arm", ctr("control"))
row("CTR most-popular arm", ctr("popular"))
row("CTR full (drift arm) / most-popular", [arm(r, "drift", "ctr") / arm(r, "popular", "ctr") for r in reps], "%.2f")
row("switch users eligible (>= 100 labelled before)", [get(r, "feed.switch.eligible") for r in reps], "%d")
row("detected share (both arms)", [get(r, "feed.switch.detected_share") for r in reps])
row("delay median (labelled events)", [get(r, "feed.switch.delay_median") for r in reps], "%.0f")
row("served users (lists engaged them before the switch)", [(lambda x: x and x["drift"] + x["control"])(get(r, "feed.switch.served")) for r in reps], "%d")
row("served users detected", [get(r, "feed.switch.served_detected_share") for r in reps])
row("served users' delay median", [get(r, "feed.switch.served_delay_median") for r in reps], "%.0f")
row("delay p90", [get(r, "feed.switch.delay_p90") for r in reps], "%.0f")
row("false alarms / 10k labelled events", [get(r, "feed.false_alarms.per_10k") for r in reps], "%.2f")
row("pre-switch CTR drift / control", [get(r, "feed.switch.pre_switch_ctr.drift") for r in reps])
row("", [get(r, "feed.switch.pre_switch_ctr.control") for r in reps])
row("recovery to 90% (impressions) drift", [get(r, "feed.switch.recovery_impressions.drift") for r in reps], "%.0f")
row("recovery to 90% (impressions) control", [get(r, "feed.switch.recovery_impressions.control") for r in reps], "%.0f")
def ratio(r):
    d, c = get(r, "feed.switch.recovery_impressions.drift"), get(r, "feed.switch.recovery_impressions.control")
    return d / c if d is not None and c else None
row("recovery drift / control", [ratio(r) for r in reps], "%.2f")
wins = reps[0]["feed"].get("detected_recovery", {}).get("window_from", [])
for w in range(len(wins) - 1):
    for arm in ("drift", "control"):
        row("detected users' CTR %d-%d impressions after the switch, %s" % (wins[w], wins[w + 1], arm),
            [get(r, "feed.detected_recovery.%s" % arm)[w] for r in reps])
row("post-switch CTR drift", [get(r, "feed.switch.post_switch_ctr.drift") for r in reps])
row("post-switch CTR control", [get(r, "feed.switch.post_switch_ctr.control") for r in reps])
row("shift: global detection after (events)", [get(r, "feed.shift.detected_after_events") for r in reps], "%.0f")
row("shift: trend responses before the shift (false starts)", [get(r, "feed.shift.global_cuts_before_shift") for r in reps], "%.0f")
row("shift dip: rounds to 90% drift", [get(r, "feed.shift.dip.drift.rounds_to_90") for r in reps], "%.0f")
row("shift dip: rounds to 90% control", [get(r, "feed.shift.dip.control.rounds_to_90") for r in reps], "%.0f")
row("throughput (events/s)", [r.get("events_per_second") for r in reps], "%.0f")
row("wall (s)", [r.get("wall_seconds") for r in reps], "%.0f")
PY
