#!/usr/bin/env bash
# `driftrec report DIR`: renders a backtest's report.json (3 arms, 20 windows, drifts) and a
# closed-loop demo's (tests/cli/fixtures/feed_report.json: 3 arms, 240 rounds, a shift, the
# recovery curve around switches; and variants with nulls and missing keys) as report.html,
# checks which page each report.json gets, loads the pages in headless Chromium and checks
# the plots, the tables and the numbers in the rendered DOM and that the page logged no
# script error, then takes screenshots. Skips the browser part without chromium.
set -euo pipefail
: "${DRIFTREC:?path of the driftrec binary}"
fixtures=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/fixtures
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dir="$work/run"
mkdir -p "$dir"
fail() { echo "FAIL: $*"; echo "0 passed, 1 failed"; exit 1; }
FEED_MARK='<meta name="driftrec-report" content="feed">'

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
grep -qF "$FEED_MARK" "$dir/report.html" && fail "the backtest report got the feed page"
grep -q '<title>driftrec backtest report</title>' "$dir/report.html" || fail "backtest page: no title"

# --- the closed-loop demo's report: the feed page, for a top-level "feed" object only.
# page_of JSON: which page `driftrec report` writes for that report.json (feed|backtest).
page_of() {
    local d
    d=$(mktemp -d "$work/kind.XXXXXX")
    printf '%s' "$1" >"$d/report.json"
    "$DRIFTREC" report "$d" >/dev/null 2>"$d/err" || { cat "$d/err"; fail "driftrec report on $1"; }
    if grep -qF "$FEED_MARK" "$d/report.html"; then echo feed; else echo backtest; fi
}
check_page() {
    local got
    got=$(page_of "$2")
    [ "$got" = "$1" ] || fail "report.json $2: $got page, want $1"
}
check_page feed '{"feed": {}}'
check_page feed $'{\n "events" : 3,\n "scenario": {"name": "feed", "feed": null},\n "feed"\t:\n{"rounds": 2}}'
check_page feed '{"note": "a \"feed\": {", "arms": [{"feed": 1}, "}"], "x": -1.5e3, "feed": {"a": [1, {"b": "]"}]}, "y": true}'
check_page feed '{"feed": null, "feed": {}}'
check_page backtest '{"feed": {}, "feed": null}'
check_page backtest '{"feed": null}'
check_page backtest '{"feed": []}'
check_page backtest '{"feed": "{"}'
check_page backtest '{"scenario": {"name": "feed", "feed": {}}}'
check_page backtest '{"note": "\"feed\": {}", "feeds": {}, "fee": {}}'
check_page backtest '{"arms": [{"feed": {}}]}'
check_page backtest '{"feed": {'
check_page backtest '{"feed" {}}'
check_page backtest '{}'
# the open-loop demo's report (what `driftrec demo` wrote before the feed scenario)
check_page backtest '{"events": 400000, "events_per_second": 350000, "hr@10": 0.25,
  "drift_detections": 12, "scenario": {"users": 4000, "items": 2000, "clusters": 20, "seed": 7}}'

feed="$work/feed"
mkdir -p "$feed"
cp "$fixtures/feed_report.json" "$feed/report.json"
out=$("$DRIFTREC" report "$feed/") || fail "driftrec report on the feed fixture exited $?"
[ "$out" = "$feed/report.html" ] || fail "driftrec report printed '$out', want $feed/report.html"
grep -qF "$FEED_MARK" "$feed/report.html" || fail "the feed fixture did not get the feed page"
n=$(grep -o '</script>' "$feed/report.html" | wc -l || true)
[ "$n" = 2 ] || fail "feed report.html has $n '</script>', want 2"
grep -Eq '<link|(src|href) *= *["'"'"']?(https?:)?//|@import|url\(' "$feed/report.html" \
    && fail "feed report.html refers to an external resource"

# variants of the fixture: nulls and missing keys everywhere, and an empty "feed" object
python3 - "$feed/report.json" "$work" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))
f = r["feed"]
f["arms"][0]["ctr"] = None                       # the page computes it from clicks / impressions
del f["arms"][2]["clicks"]
f["ctr_by_round"]["popular"] = [None] * len(f["ctr_by_round"]["popular"])
f["ctr_by_round"]["control"] = f["ctr_by_round"]["control"][:100]  # shorter than the rounds
f["shift"] = None
del f["switch"]["curve"]
f["switch"]["recovery_impressions"]["control"] = None
f["switch"]["delay_median"] = 17.25
f["switch"]["detected"] = None
del f["false_alarms"]
del f["gradual"]
f["cold"] = None
del r["events_per_second"]
r["note"] = "</script><!-- <script>document.body.dataset.rendered='bad'</script>"
for name, rep in (("nulls", r), ("bare", {"scenario": {"name": "feed"}, "feed": {}})):
    os.makedirs(os.path.join(sys.argv[2], name))
    json.dump(rep, open(os.path.join(sys.argv[2], name, "report.json"), "w"), indent=1)
PY
for v in nulls bare; do
    "$DRIFTREC" report "$work/$v" >/dev/null || fail "driftrec report on the $v variant"
    grep -qF "$FEED_MARK" "$work/$v/report.html" || fail "the $v variant did not get the feed page"
done
n=$(grep -o '</script>' "$work/nulls/report.html" | wc -l || true)
[ "$n" = 2 ] || fail "nulls variant: report.html has $n '</script>', want 2 (the JSON must be escaped)"

# --- the browser
if ! command -v chromium >/dev/null 2>&1; then
    echo "skipped: chromium not installed (ops/bootstrap.sh report)"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
fi
# browse PAGE LOG CHROMIUM-OPTION...: loads PAGE; chromium's own messages and the page's
# console (script errors included) go to LOG.
browse() {
    local page=$1 log=$2
    shift 2
    timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --disable-dev-shm-usage --user-data-dir="$(mktemp -d "$work/profile.XXXXXX")" \
        --enable-logging=stderr --v=0 \
        --virtual-time-budget=5000 "$@" "file://$page" 2>>"$log"
}
# console_clean LOG NAME: fails when the page wrote to the console (an uncaught error does).
console_clean() {
    if grep -a ':CONSOLE' "$1" >"$1.console"; then
        cat "$1.console"
        fail "$2: the page logged to the console (script error?)"
    fi
}

# The DOM as a tree, for the checks below.
cat >"$work/domlib.py" <<'PY'
"""domlib - the DOM chromium dumped, as a flat list of elements with their attributes,
their text and the elements inside them."""
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

def text(r):
    return "".join(r["text"]).strip()

def load(path):
    dom = Dom()
    dom.feed(open(path, encoding="utf-8").read())
    return dom
PY

# --- the backtest page
browse "$dir/report.html" "$work/chromium.log" --dump-dom >"$work/dom.html" \
    || { tail -20 "$work/chromium.log"; fail "chromium --dump-dom"; }
console_clean "$work/chromium.log" "backtest page"

PYTHONPATH="$work" python3 - "$dir/report.json" "$work/dom.html" <<'EOF' || fail "DOM checks"
import json, sys
from decimal import Decimal, ROUND_HALF_UP
from domlib import load, text

def fixed4(v):
    """What JavaScript's toFixed(4) prints: the exact binary value, ties away from zero."""
    if v is None or isinstance(v, bool):
        return "–"
    return str(Decimal(v).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))

report = json.load(open(sys.argv[1]))
dom = load(sys.argv[2])
ids = {r["attrs"]["id"]: r for r in dom.all if "id" in r["attrs"]}
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
    exp = str(v) if i == "sum-events" else fixed4(v)  # a count reads as one
    if got != exp:
        errors.append("#%s: %r, want %r" % (i, got, exp))
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

browse "$dir/report.html" "$work/chromium.log" --screenshot="$dir/report.png" --window-size=1280,2000 >/dev/null \
    || { tail -20 "$work/chromium.log"; fail "chromium --screenshot"; }
size=$(stat -c %s "$dir/report.png" 2>/dev/null || echo 0)
[ "$size" -gt 10240 ] || fail "screenshot is $size bytes, want > 10 KB"
# DR_REPORT_PNG=FILE keeps a copy of the screenshot (to look at the page).
if [ -n "${DR_REPORT_PNG:-}" ]; then cp "$dir/report.png" "$DR_REPORT_PNG"; fi

# --- the feed page: the fixture, its variant with nulls and missing keys, an empty "feed"
cat >"$work/check_feed.py" <<'PY'
"""check_feed REPORT_JSON DOM_HTML NAME - checks the feed page chromium rendered against
report.json: rendered without a script error, the summary tables' numbers, the CTR per round
and recovery plots with one line per arm, the shift, switch and 90% markers where they belong."""
import json, math, re, sys
from decimal import Decimal, ROUND_HALF_UP
from domlib import load, text

report, dom, name = json.load(open(sys.argv[1])), load(sys.argv[2]), sys.argv[3]
ids = {r["attrs"]["id"]: r for r in dom.all if "id" in r["attrs"]}
errors = []
DASH = "–"

def obj(v): return v if isinstance(v, dict) else {}
def num(v):
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return v if ok else None
def ratio(a, b): return a / b if a is not None and b is not None and b != 0 else None
def q(v, places): return Decimal(v).quantize(Decimal(places), rounding=ROUND_HALF_UP)
def grouped(v): return "{:,}".format(int(q(v, "1")))
FMT = {  # what the page's FMT prints (JavaScript's toFixed: the exact double, ties away from 0)
    "pct": lambda v: str(q(v * 100, "0.01")) + "%",
    "ratio": lambda v: str(q(v, "0.01")) + "×",
    "int": grouped,
    "num": lambda v: grouped(v) if float(v).is_integer() else str(q(v, "0.1")),
    "num2": lambda v: str(q(v, "0.01")),
}
def fmt(v, kind): return DASH if v is None else FMT[kind](v)

f = obj(report.get("feed"))
names, arm = [], {}
def add(n):
    if isinstance(n, str) and n and n not in names:
        names.append(n)
for a in f.get("arms") if isinstance(f.get("arms"), list) else []:
    if isinstance(a, dict):
        add(a.get("name"))
        if isinstance(a.get("name"), str):
            arm[a["name"]] = a
by_round, shift, sw = obj(f.get("ctr_by_round")), obj(f.get("shift")), obj(f.get("switch"))
curve = obj(sw.get("curve"))
for k in by_round:
    add(k)
for k, v in curve.items():
    if isinstance(v, list):
        add(k)
ORDER = ["drift", "control", "popular"]
names.sort(key=lambda a: ORDER.index(a) if a in ORDER else 99)

def ctr(a):
    o = obj(arm.get(a))
    if num(o.get("ctr")) is not None:
        return o["ctr"]
    c, i = num(o.get("clicks")), num(o.get("impressions"))
    return c / i if c is not None and i is not None and i > 0 else None
def per(key, a): return num(sw[key].get(a)) if isinstance(sw.get(key), dict) else None
def dip(a, key): return num(obj(obj(shift.get("dip")).get(a)).get(key))

# --- every number of the two summary tables
want = {}
for a in names:
    for key, kind, v in (("users", "int", num(obj(arm.get(a)).get("users"))),
                         ("impressions", "int", num(obj(arm.get(a)).get("impressions"))),
                         ("clicks", "int", num(obj(arm.get(a)).get("clicks"))),
                         ("ctr", "pct", ctr(a)),
                         ("detected", "int", per("detected", a)),
                         ("pre_switch_ctr", "pct", per("pre_switch_ctr", a)),
                         ("post_switch_ctr", "pct", per("post_switch_ctr", a)),
                         ("recovery_impressions", "int", per("recovery_impressions", a)),
                         ("dip_depth", "pct", dip(a, "depth")),
                         ("dip_rounds_to_90", "int", dip(a, "rounds_to_90"))):
        want["%s/%s" % (key, a)] = (v, kind)
if names:
    want["ctr/drift_vs_control"] = (ratio(ctr("drift"), ctr("control")), "ratio")
    want["ctr/drift_vs_popular"] = (ratio(ctr("drift"), ctr("popular")), "ratio")
    for key in ("post_switch_ctr", "recovery_impressions"):
        want[key + "/drift_vs_control"] = (ratio(per(key, "drift"), per(key, "control")), "ratio")
fa = obj(f.get("false_alarms"))
want.update({
    "switch_users": (num(sw.get("users")), "int"),
    "switch_eligible": (num(sw.get("eligible")), "int"),
    "switch_detected_share": (num(sw.get("detected_share")), "pct"),
    "delay_median": (num(sw.get("delay_median")), "num"),
    "delay_p90": (num(sw.get("delay_p90")), "num"),
    "recovery_ratio": (ratio(per("recovery_impressions", "drift"), per("recovery_impressions", "control")), "ratio"),
    "fa_per_10k": (num(fa.get("per_10k")), "num2"),
    "fa_cuts": (num(fa.get("cuts")), "int"),
    "fa_improving_cuts": (num(fa.get("improving_cuts")), "int"),
    "fa_labelled_events": (num(fa.get("labelled_events")), "int"),
    "shift_round": (num(shift.get("round")), "int"),
    "shift_detected_after": (num(shift.get("detected_after_events")), "int"),
    "events": (num(report.get("events")), "int"),
    "events_per_second": (num(report.get("events_per_second")), "int"),
    "lists_emitted": (num(report.get("lists_emitted")), "int"),
    "timeouts": (num(f.get("timeouts")), "int"),
    "drift_detections": (num(report.get("drift_detections")), "int"),
    "drift_readapted": (num(report.get("drift_readapted")), "int"),
    "global_drifts": (num(report.get("global_drifts")), "int"),
})
cells = {r["attrs"]["data-key"]: r for r in dom.all if r["tag"] == "td" and "data-key" in r["attrs"]}
for key, (v, kind) in want.items():
    c = cells.get(key)
    if c is None:
        errors.append("no cell %s" % key)
    elif c["attrs"].get("data-fmt") != kind or text(c) != fmt(v, kind):
        errors.append("cell %s: %r (%s), want %r (%s)" % (key, text(c), c["attrs"].get("data-fmt"), fmt(v, kind), kind))
for key in cells:
    if key not in want:
        errors.append("unexpected cell %s" % key)

# --- page state
body = [r for r in dom.all if r["tag"] == "body"]
if not body or body[0]["attrs"].get("data-rendered") != "1":
    errors.append("body has no data-rendered=\"1\"")
if "error" not in ids or text(ids["error"]):
    errors.append("error banner: %r" % (text(ids["error"]) if "error" in ids else "missing"))
cards = [r["attrs"]["data-card"] for r in dom.all if "data-card" in r["attrs"]]
want_cards = ["ctr-" + a for a in names if a in arm or a in by_round] + \
    ["ctr-ratio", "switches", "delay", "false-alarms", "recovery"]
if cards != want_cards:
    errors.append("cards %s, want %s" % (cards, want_cards))

# --- the plots
def inner(pid, tag=None, **attrs):
    out = []
    for e in ids.get(pid, {"inner": []})["inner"]:
        if (tag is None or e["tag"] == tag) and all(e["attrs"].get(k.replace("_", "-")) == v for k, v in attrs.items()):
            out.append(e)
    return out
def vertices(path):
    return [(float(x), float(y)) for x, y in re.findall(r"[ML](-?[\d.]+),(-?[\d.]+)", path["attrs"].get("d", ""))]

def y_scale(pid):
    """The value -> y map of a plot, from its y axis labels ("2%" at y + 4)."""
    ts = [(float(text(e)[:-1]) / 100, float(e["attrs"]["y"]) - 4) for e in inner(pid, "text")
          if e["attrs"].get("text-anchor") == "end" and re.fullmatch(r"-?[\d.]+%", text(e))]
    if len(ts) < 2 or ts[0][0] == ts[-1][0]:
        return None
    (v0, y0), (v1, y1) = ts[0], ts[-1]
    return lambda v: y0 + (v - v0) * (y1 - y0) / (v1 - v0)

def check_lines(pid, series, xs_of):
    """One path per arm with a vertex per non-null value, at its value on the y axis;
    returns x(position) from them."""
    scale, sy = None, y_scale(pid)
    if sy is None and any(num(v) is not None for vals in series.values() for v in vals):
        errors.append("%s: no y axis labels" % pid)
    for a, vals in series.items():
        paths = inner(pid, "path", data_arm=a)
        pts = [(xs_of(i), v) for i, v in enumerate(vals) if num(v) is not None]
        if len(paths) != 1:
            errors.append("%s: %d lines for arm %s, want 1" % (pid, len(paths), a))
            continue
        vs = vertices(paths[0])
        if not pts:
            if paths[0]["attrs"].get("visibility") != "hidden":
                errors.append("%s: arm %s has no value but a visible line" % (pid, a))
            continue
        if len(vs) != len(pts):
            errors.append("%s: arm %s: %d vertices, want %d" % (pid, a, len(vs), len(pts)))
            continue
        if any(b[0] <= p[0] for p, b in zip(vs, vs[1:])):
            errors.append("%s: arm %s: x not increasing" % (pid, a))
        off = [(p, v) for (p, v), (_, y) in zip(pts, vs) if sy and abs(y - sy(v)) > 0.2]
        if off:
            errors.append("%s: arm %s: %d vertices not at their value, first %s" % (pid, a, len(off), off[0]))
        if len(pts) >= 2 and scale is None:
            (p0, _), (p1, _) = pts[0], pts[-1]
            x0, x1 = vs[0][0], vs[-1][0]
            scale = lambda p, p0=p0, p1=p1, x0=x0, x1=x1: x0 + (p - p0) * (x1 - x0) / (p1 - p0)
        legend = {text(e) for e in inner(pid, "text", **{"class": "legend"})}
        if a not in legend:
            errors.append("%s: legend %s lacks %s" % (pid, sorted(legend), a))
    return scale

for pid in ("plot-ctr", "plot-recovery"):
    if not inner(pid, "svg"):
        errors.append("%s: no <svg>" % pid)
    elif len(inner(pid, "text")) < 8:
        errors.append("%s: no axis text" % pid)

series = {a: v for a, v in by_round.items() if isinstance(v, list)}
sx = check_lines("plot-ctr", series, lambda i: i)
if not any(num(v) is not None for v in sum(series.values(), [])) and not inner("plot-ctr", "text", **{"class": "empty"}):
    errors.append("plot-ctr: nothing drawn and no message saying so")
marks = inner("plot-ctr", "line", data_marker="shift")
r = num(shift.get("round"))
if r is None:
    if marks:
        errors.append("plot-ctr: a shift marker without a shift round")
elif len(marks) != 1:
    errors.append("plot-ctr: %d shift markers, want 1" % len(marks))
else:
    if sx and abs(float(marks[0]["attrs"]["x1"]) - sx(r)) > 0.6:
        errors.append("plot-ctr: shift marker at x %s, round %s is at %.1f" % (marks[0]["attrs"]["x1"], r, sx(r)))
    label = " ".join(text(e) for e in inner("plot-ctr", "text", data_marker="shift"))
    if "round %d" % r not in label:
        errors.append("plot-ctr: shift label %r does not name round %d" % (label, r))

cs = {a: v for a, v in curve.items() if isinstance(v, list) and a in names}
start, step = num(curve.get("from")) or 0, num(curve.get("step")) or 1
sx = check_lines("plot-recovery", cs, lambda i: start + i * step)
if not cs and not inner("plot-recovery", "text", **{"class": "empty"}):
    errors.append("plot-recovery: no curve and no message saying so")
marks = inner("plot-recovery", "line", data_marker="switch")
if len(marks) != 1:
    errors.append("plot-recovery: %d switch markers, want 1" % len(marks))
elif sx and abs(float(marks[0]["attrs"]["x1"]) - sx(0)) > 0.6:
    errors.append("plot-recovery: switch marker at x %s, 0 is at %.1f" % (marks[0]["attrs"]["x1"], sx(0)))
targets = {}
for a in names:
    pre = per("pre_switch_ctr", a)
    lines = inner("plot-recovery", "line", data_marker="target", data_arm=a)
    expect = pre is not None and (a in cs or not cs)
    if len(lines) != (1 if expect else 0):
        errors.append("plot-recovery: %d 90%% lines for %s, want %d" % (len(lines), a, 1 if expect else 0))
        continue
    if not expect:
        continue
    y, sy = float(lines[0]["attrs"]["y1"]), y_scale("plot-recovery")
    targets[a] = (0.9 * pre, y)
    if sy and abs(y - sy(0.9 * pre)) > 0.2:
        errors.append("plot-recovery: %s's 90%% line at y %.1f, 90%% of %s is at %.1f" % (a, y, pre, sy(0.9 * pre)))
    legend = " ".join(text(e) for e in inner("plot-recovery", "text", **{"class": "legend"}))
    if "90%% of %s's pre-switch CTR" % a not in legend:
        errors.append("plot-recovery: no legend for %s's 90%% line" % a)
    rec, rings = per("recovery_impressions", a), inner("plot-recovery", "circle", data_marker="recovered", data_arm=a)
    if rec is None or not sx:
        continue
    if len(rings) != 1:
        errors.append("plot-recovery: %d recovery rings for %s, want 1" % (len(rings), a))
    elif abs(float(rings[0]["attrs"]["cy"]) - y) > 0.2 or abs(float(rings[0]["attrs"]["cx"]) - sx(rec)) > 0.6:
        errors.append("plot-recovery: %s's ring not at (%s impressions, its 90%% line)" % (a, rec))
by_value = sorted(targets.values())
if any(b[1] >= p[1] for p, b in zip(by_value, by_value[1:]) if b[0] > p[0]):
    errors.append("plot-recovery: 90%% lines not ordered by their CTR: %s" % targets)

# --- the other figures, flattened
SHOWN = {"rounds", "round_minutes", "users", "items", "clusters", "seed", "timeouts", "arms",
         "ctr_by_round", "shift", "switch", "false_alarms"}
more = {r["attrs"]["data-more"]: text(r) for r in dom.all if "data-more" in r["attrs"]}
def leaves(prefix, v):
    if isinstance(v, dict) and v:
        for k, x in v.items():
            yield from leaves(prefix + "." + k, x)
    else:
        yield prefix, v
for k, v in f.items():
    if k in SHOWN:
        continue
    for key, x in leaves(k, v):
        if key not in more:
            errors.append("other figures: no %s" % key)
        elif x is None and more[key] != DASH:
            errors.append("other figures: %s is %r, want %r" % (key, more[key], DASH))
        elif isinstance(x, int) and not isinstance(x, bool) and more[key] != grouped(x):
            errors.append("other figures: %s is %r, want %r" % (key, more[key], grouped(x)))

if errors:
    print("%s:\n  %s" % (name, "\n  ".join(errors)))
    sys.exit(1)
print("%s: %d cells, %d arms, %d values per round" % (name, len(cells), len(names),
      sum(1 for v in sum(series.values(), []) if num(v) is not None)))
PY

for v in feed nulls bare; do
    browse "$work/$v/report.html" "$work/chromium-$v.log" --dump-dom >"$work/dom-$v.html" \
        || { tail -20 "$work/chromium-$v.log"; fail "chromium --dump-dom ($v)"; }
    console_clean "$work/chromium-$v.log" "feed page ($v)"
    PYTHONPATH="$work" python3 "$work/check_feed.py" "$work/$v/report.json" "$work/dom-$v.html" "$v" \
        || fail "feed page DOM checks ($v)"
done
browse "$feed/report.html" "$work/chromium-feed.log" --screenshot="$feed/report.png" --window-size=1280,2600 \
    >/dev/null || { tail -20 "$work/chromium-feed.log"; fail "chromium --screenshot (feed)"; }
size=$(stat -c %s "$feed/report.png" 2>/dev/null || echo 0)
[ "$size" -gt 20480 ] || fail "feed screenshot is $size bytes, want > 20 KB"
# DR_FEED_REPORT_PNG=FILE keeps a copy of the feed page's screenshot.
if [ -n "${DR_FEED_REPORT_PNG:-}" ]; then cp "$feed/report.png" "$DR_FEED_REPORT_PNG"; fi
echo "1 passed, 0 failed"
