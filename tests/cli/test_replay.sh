#!/usr/bin/env bash
# Backtesting: `driftrec load` + `driftrec replay` on a standalone embedded
# broker, and `replay --embedded`. Claims checked: report.json has the keys
# the issue names; the same range and config give the same metrics; the
# model beats popularity on clustered data; on MovieLens (../shared, skipped
# when absent) the popularity arm scores the known hr@10 ~ 0.045 and the
# rating-mode model an mae below 0.67 (at most 0.97x bias with the genres).
# Baseline arms (issue 15): the mode's default arms include itemknn and
# recentpop (implicit) or bias (rating) with sane figures and a "baselines"
# summary; an arm the mode cannot measure is refused; itemknn ranks the item
# that co-occurred with the user's last one first on a hand-made stream; on
# MovieLens itemknn scores the known hr@10 ~ 0.1037 and bias an mae below 0.67.
# Spliced users (--splice, issue 13): on a topic range and on a file, every
# user with >= 20 events becomes a composite (first half + another user's
# second half), the others stay; the ground truth and the per-arm splice
# figures are in report.json and the summary; the same seed gives the same
# report, another seed other pairs; --splice-control leaves the metrics of
# an unspliced replay unchanged; malformed option values are refused.
set -euo pipefail
dir=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

# a clustered history: 300 users, 600 items in 6 clusters, 30 clicks each
python3 - "$dir/events.jsonl" <<'PY'
import json, random, sys
random.seed(3)
with open(sys.argv[1], "w") as f:
    t = 1700000000000
    for step in range(30):
        for u in range(1, 301):
            c = u % 6
            item = 1 + c + 6 * min(int(random.expovariate(1 / 12)), 99)
            t += 1000
            f.write(json.dumps({"user_id": u, "item_id": item, "type": "CLICK", "timestamp": t}) + "\n")
PY

"$DRIFTREC" broker --partitions 4 --topic hist > "$dir/addr" 2>/dev/null &
pid=$!
for _ in $(seq 100); do [ -s "$dir/addr" ] && break; sleep 0.05; done
bs=$(head -1 "$dir/addr")
"$DRIFTREC" load --format jsonl "$dir/events.jsonl" --topic hist --bootstrap "$bs" --quiet 2>"$dir/load.log" \
  || { cat "$dir/load.log"; exit 1; }
for run in 1 2; do
  "$DRIFTREC" replay --bootstrap "$bs" --topic hist --from beginning --to end --window 1000 \
    --report "$dir/r$run" --quiet 2>"$dir/replay$run.log" || { cat "$dir/replay$run.log"; exit 1; }
done
# a range past what exists is refused clearly
if "$DRIFTREC" replay --bootstrap "$bs" --topic hist --from abc --report "$dir/bad" 2>"$dir/bad.log"; then
  echo "accepted --from abc"; exit 1; fi
grep -q "from" "$dir/bad.log"

python3 - "$dir/r1/report.json" "$dir/r2/report.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for k in ("events", "events_per_second", "wall_seconds", "hr@10", "ndcg@10", "mrr", "mae", "rmse",
          "drifts", "arms", "windows"):
    assert k in a, k
assert a["events"] == 9000, a["events"]
assert set(a["arms"]) == {"full", "prior", "nodrift", "popularity", "itemknn", "recentpop"}, a["arms"].keys()
for n, m in a["arms"].items():
    assert 0 <= m["hr@10"] <= 1 and 0 <= m["ndcg@10"] <= m["hr@10"] and 0 < m["mrr"] <= 1, (n, m)
    assert m["ranked_events"] == a["arms"]["full"]["ranked_events"] and m["mae"] is None, (n, m)
    assert 0 < m["coverage"] <= 1 and "cold_start" in m, (n, m)
    assert ("population_prior" in m) == (n in ("full", "prior", "nodrift")), n
hr = {n: m["hr@10"] for n, m in a["arms"].items()}
bl = a["baselines"]
best = max(("popularity", "itemknn", "recentpop"), key=lambda n: hr[n])
assert bl["best"] == best and bl["metric"] == "hr@10", bl
assert abs(bl["full_over_best"] - hr["full"] / hr[best]) < 1e-4, (bl, hr)
# co-engagement in clusters: itemknn beats popularity
assert hr["itemknn"] > hr["popularity"], hr
assert len(a["windows"]) == 9
# reproducible: the same range and config give the same metrics
strip = lambda arms: {n: {k: v for k, v in m.items() if k != "seconds"} for n, m in arms.items()}
assert strip(a["arms"]) == strip(b["arms"]), "replays differ"
full, pop = a["arms"]["full"]["hr@10"], a["arms"]["popularity"]["hr@10"]
print(f"clustered history: full hr@10 {full:.4f}, popularity {pop:.4f}")
assert full > pop, (full, pop)
PY

# ---- baseline arms ----
# itemknn, deterministic: 30 one-event users make items 50..52 popular (10
# engagements each); then users 1..5 engage item 1, then item 2. When users
# 2..5 engage item 2, their last engaged item 1 has co-occurred with item 2
# only: itemknn ranks it first (user 1's item 2 is new, a miss): hr@1 = 4/5;
# popularity ranks items 50..52 above it: hr@1 = 0.
python3 - "$dir/knn.jsonl" "$dir/rate.jsonl" <<'PY'
import json, random, sys
t = 1700000000000
with open(sys.argv[1], "w") as f:
    ev = [(200 + u, 50 + u % 3) for u in range(30)] + [(u, i) for u in range(1, 6) for i in (1, 2)]
    for n, (u, i) in enumerate(ev):
        f.write(json.dumps({"user_id": u, "item_id": i, "type": "CLICK", "timestamp": t + 1000 * n}) + "\n")
# ratings = 3 + user bias + item bias + noise: the biases-only model fits them
random.seed(5)
ub = {u: random.choice((-1.2, -0.5, 0, 0.5, 1.2)) for u in range(1, 61)}
ib = {i: random.gauss(0, 0.5) for i in range(1, 41)}
with open(sys.argv[2], "w") as f:
    for n in range(3000):
        u, i = random.randint(1, 60), random.randint(1, 40)
        r = min(5, max(1, round(2 * (3 + ub[u] + ib[i] + random.gauss(0, 0.3))) / 2))
        f.write(json.dumps({"user_id": u, "item_id": i, "type": "RATE", "value": r, "timestamp": t + 1000 * n}) + "\n")
PY
# expknn (the study tool) with no DR_EXP_* variables is itemknn, and no baseline
env -u DR_EXP_BLEND "$DRIFTREC" replay --embedded --input "$dir/knn.jsonl" --format jsonl --arms itemknn,popularity,recentpop,expknn --k 1 \
  --report "$dir/knn" 2>"$dir/knn.log" || { cat "$dir/knn.log"; exit 1; }
grep -q "full / best baseline" "$dir/knn.log" && { echo "a ratio without the full arm"; exit 1; }
"$DRIFTREC" replay --embedded --input "$dir/rate.jsonl" --format jsonl --mode rating --window 1000 \
  --report "$dir/rate" 2>"$dir/rate.log" || { cat "$dir/rate.log"; exit 1; }
grep -q "full / best baseline (bias) mae: " "$dir/rate.log" || { cat "$dir/rate.log"; exit 1; }
python3 - "$dir/knn/report.json" "$dir/rate/report.json" <<'PY'
import json, sys
k, r = (json.load(open(p)) for p in sys.argv[1:3])
arms = k["arms"]
print(f"hand-made stream: hr@1 itemknn {arms['itemknn']['hr@1']}, popularity {arms['popularity']['hr@1']}")
assert arms["itemknn"]["ranked_events"] == 5 and arms["itemknn"]["hr@1"] == 0.8, arms["itemknn"]
assert arms["popularity"]["hr@1"] == 0 and arms["recentpop"]["hr@1"] == 0, arms
assert all(arms["expknn"][m] == arms["itemknn"][m] for m in ("hr@1", "ranked_events", "mrr")), arms["expknn"]
assert k["baselines"] == {"best": "itemknn", "metric": "hr@1", "full_over_best": None}, k["baselines"]
assert set(r["arms"]) == {"full", "prior", "nodrift", "popularity", "bias"}, r["arms"].keys()
mae = {n: m["mae"] for n, m in r["arms"].items()}
for n, m in r["arms"].items():
    assert m["rated_events"] == 3000 and 0 < m["mae"] <= m["rmse"] < 2 and m["hr@10"] is None, (n, m)
    assert all(w["arms"][n]["mae"] is not None for w in r["windows"]), n
print(f"rating stream: mae bias {mae['bias']:.4f}, popularity {mae['popularity']:.4f}, full {mae['full']:.4f}")
assert mae["bias"] < mae["popularity"], mae  # user biases matter here, item means miss them
assert r["baselines"]["best"] == "bias" and r["baselines"]["metric"] == "mae", r["baselines"]
assert abs(r["baselines"]["full_over_best"] - mae["full"] / mae["bias"]) < 1e-4, r["baselines"]
PY
# an arm the mode cannot measure is refused before anything is read
bad_arm() { # TEXT OPTION...
  local text=$1 rc=0; shift
  "$DRIFTREC" replay --embedded --input "$dir/knn.jsonl" --format jsonl --report "$dir/bad" "$@" \
    >"$dir/bad.out" 2>"$dir/bad.log" || rc=$?
  [ "$rc" = 2 ] || { echo "replay $* exited $rc, expected 2"; cat "$dir/bad.log"; exit 1; }
  grep -q -- "$text" "$dir/bad.log" || { echo "replay $*: no '$text' in:"; cat "$dir/bad.log"; exit 1; }
}
bad_arm "the bias arm predicts ratings: use --mode rating" --arms full,bias
bad_arm "the itemknn arm ranks items" --mode rating --arms itemknn
bad_arm "the recentpop arm ranks items" --mode rating --arms popularity,recentpop
bad_arm "--recentpop-halflife takes a number of events" --recentpop-halflife 0
bad_arm "--recentpop-halflife takes a number of events" --recentpop-halflife 5k
"$DRIFTREC" replay --help | grep -q "itemknn     implicit only" || { echo "--help lacks the new arms"; exit 1; }

# ---- spliced users ----
# the topic range above, spliced after it is read
"$DRIFTREC" replay --bootstrap "$bs" --topic hist --arms full,nodrift --splice --window 1000 \
  --report "$dir/st" --quiet 2>"$dir/st.log" || { cat "$dir/st.log"; exit 1; }
grep -q "spliced users: 300 composites" "$dir/st.log" || { cat "$dir/st.log"; exit 1; }
# a file: the clustered history plus 10 users with 5 events (too few to splice)
cp "$dir/events.jsonl" "$dir/splice.jsonl"
python3 - "$dir/splice.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "a") as f:
    for u in range(1001, 1011):
        for step in range(5):
            f.write(json.dumps({"user_id": u, "item_id": 1 + 6 * step, "type": "CLICK",
                                "timestamp": 1700009000000 + 1000 * (5 * (u - 1001) + step)}) + "\n")
PY
splice_replay() { # NAME OPTION...
  local name=$1; shift
  "$DRIFTREC" replay --embedded --input "$dir/splice.jsonl" --format jsonl --arms full,nodrift,popularity \
    --window 1000 --report "$dir/$name" --quiet "$@" 2>"$dir/$name.log" || { cat "$dir/$name.log"; exit 1; }
}
splice_replay s1 --splice
splice_replay s2 --splice --splice-seed 1
splice_replay s3 --splice --splice-seed 2
splice_replay plain
splice_replay ctl --splice-control
grep -q "hr@10 before" "$dir/s1.log" || { cat "$dir/s1.log"; exit 1; }
python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
st, s1, s2, s3, plain, ctl = (json.load(open(f"{d}/{n}/report.json")) for n in ("st", "s1", "s2", "s3", "plain", "ctl"))
sp = s1["splice"]
assert sp["composite_users"] == 300 and sp["kept_users"] == 10, {k: v for k, v in sp.items() if k != "users"}
assert sp["seed"] == 1 and sp["min_events"] == 20 and sp["control"] is False
assert s1["events"] == plain["events"] == 9050, (s1["events"], plain["events"])  # every event used once
users = sp["users"]
assert len(users) == 300
real = set(range(1, 301))
assert {u["first_user"] for u in users} == real and {u["second_user"] for u in users} == real
assert all(u["first_user"] != u["second_user"] for u in users)
assert all(u["user_id"] > 1010 for u in users), "composites need new ids"
assert all(u["splice_index"] == 15 and u["events"] == 30 and u["shift_ms"] >= 0 for u in users)
assert st["splice"]["composite_users"] == 300 and st["splice"]["kept_users"] == 0
for arm in ("full", "nodrift", "popularity"):
    a = s1["arms"][arm]["splice"]
    assert a["users"] == 300, a
    for b in ("before_splice", "after_splice", "after_splice_first_10_events",
              "after_splice_first_20_events", "after_splice_first_50_events"):
        assert b in a and "hr@10" in a[b] and "ndcg@10" in a[b] and "ranked_events" in a[b], (arm, b)
    assert 0 < a["after_splice_first_10_events"]["ranked_events"] <= a["after_splice"]["ranked_events"]
    det = a["detection"]
    for k in ("drift_handling", "detected_share", "detected_within_10_events_share",
              "detected_within_20_events_share", "detected_within_50_events_share", "detected_users",
              "delay_events_mean", "delay_events_median", "delay_events_p90", "cuts_after_splice",
              "cuts_before_splice", "users_with_cut_before_splice_share"):
        assert k in det, (arm, k)
    assert det["drift_handling"] == (arm == "full"), (arm, det)
    if det["detected_users"]:
        assert 1 <= det["delay_events_median"] <= 15, det  # within the second half's 15 events
    else:
        assert det["delay_events_median"] is None, det
assert s1["arms"]["nodrift"]["splice"]["detection"]["detected_users"] == 0
# the splice hurts: a composite's first 10 events after it score below its events before it
f = s1["arms"]["full"]["splice"]
print(f"spliced clustered history: full hr@10 before {f['before_splice']['hr@10']:.4f}, "
      f"first 10 after {f['after_splice_first_10_events']['hr@10']:.4f}")
assert f["after_splice_first_10_events"]["hr@10"] < f["before_splice"]["hr@10"], f
# existing keys are kept
assert set(s1["arms"]) == {"full", "nodrift", "popularity"} and "hr@10" in s1 and "windows" in s1
# deterministic: the default seed is 1; another seed pairs other users
strip = lambda r: ({n: {k: v for k, v in m.items() if k != "seconds"} for n, m in r["arms"].items()}, r["splice"])
assert strip(s1) == strip(s2), "the same seed gave different reports"
assert [u["second_user"] for u in s3["splice"]["users"]] != [u["second_user"] for u in users]
# the control changes nothing but adds the figures at each user's midpoint
c = ctl["splice"]
assert c["control"] is True and c["composite_users"] == 300 and c["shifted_events"] == 0
assert all(u["user_id"] == u["first_user"] == u["second_user"] for u in c["users"])
nosplice = lambda r: {n: {k: v for k, v in m.items() if k not in ("seconds", "splice")} for n, m in r["arms"].items()}
assert nosplice(ctl) == nosplice(plain), "--splice-control changed the metrics"
assert "splice" not in plain and "splice" not in plain["arms"]["full"]
PY
# malformed values and impossible splices are refused clearly
bad_splice() { # EXPECTED-RC TEXT OPTION...
  local want=$1 text=$2 rc=0; shift 2
  "$DRIFTREC" replay --embedded --input "$dir/splice.jsonl" --format jsonl --arms nodrift --report "$dir/bad" "$@" \
    >"$dir/bad.out" 2>"$dir/bad.log" || rc=$?
  [ "$rc" = "$want" ] || { echo "replay $* exited $rc, expected $want"; cat "$dir/bad.log"; exit 1; }
  grep -q -- "$text" "$dir/bad.log" || { echo "replay $*: no '$text' in:"; cat "$dir/bad.log"; exit 1; }
}
bad_splice 2 "--splice-seed takes an integer" --splice --splice-seed abc
bad_splice 2 "--splice-seed takes an integer" --splice --splice-seed -1
bad_splice 2 "--splice-seed takes an integer" --splice --splice-seed ""
bad_splice 2 "--splice-min-events takes an integer of at least 2" --splice --splice-min-events 1
bad_splice 2 "--splice-min-events takes an integer of at least 2" --splice --splice-min-events 20x
bad_splice 2 "go with --splice" --splice-seed 3
bad_splice 1 "needs at least two users with 31 or more events" --splice --splice-min-events 31
if "$DRIFTREC" load --format jsonl "$dir/splice.jsonl" --topic x --bootstrap "$bs" --splice 2>"$dir/bad.log"; then
  echo "load accepted --splice"; exit 1; fi
grep -q "replay option" "$dir/bad.log"

ml="$DR_SHARED_DIR/data/ml-latest-small/ratings.csv"
if [ -f "$ml" ]; then
  "$DRIFTREC" replay --embedded --input "$ml" --format movielens --arms popularity,itemknn --quiet \
    --report "$dir/ml" 2>"$dir/ml.log" || { cat "$dir/ml.log"; exit 1; }
  # rating mode with its own defaults, no settings file (issue 15: the implicit defaults gave mae 1.99)
  "$DRIFTREC" replay --embedded --input "$ml" --format movielens --mode rating --arms full,bias --quiet \
    --report "$dir/mlr" 2>"$dir/mlr.log" || { cat "$dir/mlr.log"; exit 1; }
  # ... and with the catalog's genres (the blend's per-user genre errors)
  "$DRIFTREC" replay --embedded --input "$ml" --format movielens --mode rating --arms full,bias --quiet \
    --catalog "$(dirname "$ml")/movies.csv" --report "$dir/mlg" 2>"$dir/mlg.log" || { cat "$dir/mlg.log"; exit 1; }
  "$DRIFTREC" replay --embedded --input "$ml" --format movielens --arms popularity --splice --quiet \
    --report "$dir/mls" 2>"$dir/mls.log" || { cat "$dir/mls.log"; exit 1; }
  python3 - "$dir/ml/report.json" "$dir/mlr/report.json" "$dir/mls/report.json" "$dir/mlg/report.json" <<'PY'
import json, sys
pop = json.load(open(sys.argv[1]))["arms"]["popularity"]["hr@10"]
knn = json.load(open(sys.argv[1]))["arms"]["itemknn"]["hr@10"]
rating = json.load(open(sys.argv[2]))["arms"]
mae, bias = rating["full"]["mae"], rating["bias"]["mae"]
rmse, bias_rmse = rating["full"]["rmse"], rating["bias"]["rmse"]
print(f"MovieLens: popularity hr@10 {pop:.4f} (expected ~0.045), itemknn {knn:.4f} (expected ~0.1037), "
      f"rating mae {mae:.4f} rmse {rmse:.4f}, bias {bias:.4f} {bias_rmse:.4f}")
assert 0.04 <= pop <= 0.05, pop
assert 0.1007 <= knn <= 0.1067, knn
assert bias < 0.67, bias
# the rating blend (docs/LEARNER.md): 0.970x / 0.978x; the MF alone was 0.998x
assert mae < 0.98 * bias and rmse < 0.985 * bias_rmse, (mae, bias, rmse, bias_rmse)
genres = json.load(open(sys.argv[4]))["arms"]
gmae, grmse = genres["full"]["mae"], genres["full"]["rmse"]
print(f"MovieLens with genres: rating mae {gmae:.4f} rmse {grmse:.4f} "
      f"({gmae / bias:.3f}x / {grmse / bias_rmse:.3f}x of bias)")
# issue 15's goal, met with the catalog: 0.954x / 0.963x
assert gmae <= 0.97 * bias and grmse <= 0.97 * bias_rmse, (gmae, grmse)
s = json.load(open(sys.argv[3]))
# every ml-latest-small user has >= 20 ratings: 610 composites, none kept
assert s["events"] == 100836, s["events"]
assert s["splice"]["composite_users"] == 610 and s["splice"]["kept_users"] == 0, s["splice"]["kept_users"]
p = s["arms"]["popularity"]["splice"]
print(f"MovieLens spliced: popularity hr@10 before {p['before_splice']['hr@10']:.4f}, "
      f"first 10 after {p['after_splice_first_10_events']['hr@10']:.4f}")
assert p["after_splice_first_10_events"]["ranked_events"] > 0
PY
else
  echo "skipped MovieLens part: $ml not found (../shared is absent)"
fi
echo "1 passed, 0 failed"
