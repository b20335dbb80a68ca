#!/usr/bin/env bash
# `driftrec report DIR`: renders a fixture report.json (3 arms, 20 windows, drifts) as
# report.html, loads it in headless Chromium and checks the plots and the summary numbers
# in the rendered DOM, then takes a screenshot. Skips the browser part without chromium.
set -euo pipefail
: "${DRIFTREC:?path of the driftrec binary}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dir="$work/run"
mkdir -p "$dir"
fail() { echo "FAIL: $*"; echo "0 passed, 1 failed"; exit 1; }

# --- the fixture: numbers that do not round on a tie, nulls, a missing metric, and a
# string that would close the script tag if it were not escaped.
python3 - "$dir/report.json" <<'EOF'
import json, math, random, sys
rnd = random.Random(7)
arms = {"full": 0.09, "popularity": 0.045, "no-reset": 0.07}
windows, drifts = [], []
t0 = 964982703000
for w in range(20):
    a, b = w * 5000, (w + 1) * 5000
    per = {}
    for i, (arm, base) in enumerate(arms.items()):
        dip = 0.5 if arm != "popularity" and 8 <= w <= 10 else 1.0
        hr = base * dip * (1 + 0.15 * math.sin(w / 3 + i)) + rnd.random() * 0.004
        per[arm] = {"hr@10": hr, "ndcg@10": hr * 0.55 + rnd.random() * 0.002}
    if w == 5:
        per["no-reset"]["hr@10"] = None  # a gap in one line
    windows.append({"start_event": a, "end_event": b, "start_ms": t0 + a * 60000,
                    "end_ms": t0 + b * 60000, "events_per_second": 240000 + rnd.random() * 30000,
                    "arms": per})
for ev, arm in [(40123, "full"), (41877, "full"), (43010, "no-reset"), (52001, "full"),
                (77777, "no-reset"), (90500, "full")]:
    drifts.append({"event": ev, "timestamp_ms": t0 + ev * 60000, "user_id": ev % 97, "arm": arm})
def summary(arm, base):
    return {"hr@10": base + 0.0012345, "ndcg@10": base * 0.55 + 0.0001111, "mrr": base * 0.4 + 0.00002,
            "mae": None, "rmse": None, "coverage": 0.3 + rnd.random() * 0.1,
            "auc": 0.71234567 if arm == "full" else None, "logloss": 0.4567891,
            "events": 100000, "drifts": sum(1 for d in drifts if d["arm"] == arm)}
report = {"mode": "implicit", "k": 10, "events": 100836, "events_per_second": 251234.56789,
          "wall_seconds": 0.401357, "hr@10": 0.0912345, "ndcg@10": 0.0501234, "mrr": 0.0412,
          "mae": None, "rmse": None,
          "note": "</script><!-- <script>document.body.dataset.rendered='bad'</script>",
          "drifts": drifts,
          "arms": {a: summary(a, b) for a, b in arms.items()},
          "windows": windows}
del report["arms"]["popularity"]["logloss"]  # missing, not null
json.dump(report, open(sys.argv[1], "w"), indent=1)
EOF

# --- the command line
"$DRIFTREC" report --help | grep -q "usage: driftrec report DIR" || fail "--help"
rc=0; "$DRIFTREC" report >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "no DIR: exit $rc, want 2"
rc=0; "$DRIFTREC" report a b >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "two DIRs: exit $rc, want 2"
rc=0; err=$("$DRIFTREC" report "$work/missing" 2>&1) || rc=$?
[ "$rc" = 1 ] || fail "missing dir: exit $rc, want 1"
grep -q "missing/report.json" <<<"$err" || fail "missing dir: message '$err' names no file"
mkdir -p "$work/empty" && : >"$work/empty/report.json"
rc=0; err=$("$DRIFTREC" report "$work/empty" 2>&1) || rc=$?
[ "$rc" = 1 ] || fail "empty report.json: exit $rc, want 1"
grep -q "empty" <<<"$err" || fail "empty report.json: message '$err'"
[ ! -e "$work/empty/report.html" ] || fail "empty report.json still wrote report.html"
left=("$work"/empty/*)
[ "${#left[@]}" = 1 ] || fail "temporary file left behind: ${left[*]}"

"$DRIFTREC" report "$dir/" >/dev/null || fail "driftrec report exited $?"
[ -s "$dir/report.html" ] || fail "no report.html"
n=$(grep -o '</script>' "$dir/report.html" | wc -l || true)
[ "$n" = 2 ] || fail "report.html has $n '</script>', want 2 (the JSON must be escaped)"
grep -Eq '<link|(src|href) *= *["'"'"']?(https?:)?//|@import|url\(' "$dir/report.html" \
    && fail "report.html refers to an external resource"
"$DRIFTREC" report "$dir" >/dev/null || fail "re-rendering failed"

# --- the browser
if ! command -v chromium >/dev/null 2>&1; then
    echo "skipped: chromium not installed (ops/bootstrap.sh report)"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
fi
browse() {
    timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --disable-dev-shm-usage --user-data-dir="$(mktemp -d "$work/profile.XXXXXX")" \
        --virtual-time-budget=5000 "$@" "file://$dir/report.html" 2>>"$work/chromium.log"
}
browse --dump-dom >"$work/dom.html" || { tail -20 "$work/chromium.log"; fail "chromium --dump-dom"; }

python3 - "$dir/report.json" "$work/dom.html" <<'EOF' || fail "DOM checks"
import json, sys
from decimal import Decimal, ROUND_HALF_UP
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}

class Dom(HTMLParser):
    """Every element with its attributes, its text and the elements inside it."""
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.all = [], []
    def handle_starttag(self, tag, attrs):
        rec = {"tag": tag, "attrs": dict(attrs), "text": [], "inner": []}
        for r in self.stack:
            r["inner"].append(rec)
        self.all.append(rec)
        if tag not in VOID:
            self.stack.append(rec)
    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()
    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i]["tag"] == tag:
                del self.stack[i:]
                break
    def handle_data(self, data):
        for r in self.stack:
            r["text"].append(data)

def fixed4(v):
    """What JavaScript's toFixed(4) prints: the exact binary value, ties away from zero."""
    if v is None or isinstance(v, bool):
        return "–"
    return str(Decimal(v).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))

report = json.load(open(sys.argv[1]))
dom = Dom()
dom.feed(open(sys.argv[2], encoding="utf-8").read())
ids = {r["attrs"]["id"]: r for r in dom.all if "id" in r["attrs"]}
text = lambda r: "".join(r["text"]).strip()
errors = []

body = [r for r in dom.all if r["tag"] == "body"]
if not body or body[0]["attrs"].get("data-rendered") != "1":
    errors.append("body has no data-rendered=\"1\"")
if "error" not in ids or text(ids["error"]):
    errors.append("error banner: %r" % (text(ids["error"]) if "error" in ids else "missing"))
for pid in ("plot-hr", "plot-ndcg", "plot-drifts", "plot-throughput"):
    r = ids.get(pid)
    if r is None or not any(e["tag"] == "svg" for e in r["inner"]):
        errors.append("%s: no <svg>" % pid)
    elif not any(e["tag"] == "text" for e in r["inner"]):
        errors.append("%s: no axis text" % pid)
arms = sorted({a for w in report["windows"] for a in w["arms"]})
for pid in ("plot-hr", "plot-ndcg"):
    lines = [e for e in ids.get(pid, {"inner": []})["inner"] if e["tag"] in ("path", "polyline")]
    for arm in arms:
        if not any(e["attrs"].get("data-arm") == arm for e in lines):
            errors.append("%s: no line for arm %s" % (pid, arm))
    if len(lines) < len(arms):
        errors.append("%s: %d lines for %d arms" % (pid, len(lines), len(arms)))
    legend = {text(e) for e in ids.get(pid, {"inner": []})["inner"] if e["tag"] == "text"}
    if not set(arms) <= legend:
        errors.append("%s: legend %s lacks arms %s" % (pid, sorted(legend), arms))
for arm in sorted({d["arm"] for d in report["drifts"]}):
    if not any(e["tag"] == "path" and e["attrs"].get("data-arm") == arm for e in ids["plot-drifts"]["inner"]):
        errors.append("plot-drifts: no ticks for arm %s" % arm)
if text(ids.get("drift-count", {"text": []})) != str(len(report["drifts"])):
    errors.append("drift count %r, want %d" % (text(ids.get("drift-count", {"text": []})), len(report["drifts"])))

k = report["k"]
want = {"sum-events": report["events"], "sum-eps": report["events_per_second"],
        "sum-wall": report["wall_seconds"], "sum-hr": report["hr@%d" % k],
        "sum-ndcg": report["ndcg@%d" % k], "sum-mrr": report["mrr"]}
for i, v in want.items():
    got = text(ids[i]) if i in ids else None
    if got != fixed4(v):
        errors.append("#%s: %r, want %r" % (i, got, fixed4(v)))
metrics = ["hr@%d" % k, "ndcg@%d" % k, "mrr", "mae", "rmse", "coverage", "auc", "logloss"]
cells = {(r["attrs"]["data-arm"], r["attrs"]["data-metric"]): text(r)
         for r in dom.all if "data-arm" in r["attrs"] and "data-metric" in r["attrs"]}
for arm, vals in report["arms"].items():
    for m in metrics:
        got, exp = cells.get((arm, m)), fixed4(vals.get(m))
        if got != exp:
            errors.append("cell %s/%s: %r, want %r" % (arm, m, got, exp))
if len(cells) != len(report["arms"]) * len(metrics):
    errors.append("%d summary cells, want %d" % (len(cells), len(report["arms"]) * len(metrics)))
if errors:
    print("\n".join(errors))
    sys.exit(1)
print("DOM checks: %d summary cells, %d arms, %d drifts" % (len(cells), len(arms), len(report["drifts"])))
EOF

browse --screenshot="$dir/report.png" --window-size=1280,2000 >/dev/null \
    || { tail -20 "$work/chromium.log"; fail "chromium --screenshot"; }
size=$(stat -c %s "$dir/report.png" 2>/dev/null || echo 0)
[ "$size" -gt 10240 ] || fail "screenshot is $size bytes, want > 10 KB"
# DR_REPORT_PNG=FILE keeps a copy of the screenshot (to look at the page).
if [ -n "${DR_REPORT_PNG:-}" ]; then cp "$dir/report.png" "$DR_REPORT_PNG"; fi
echo "1 passed, 0 failed"
