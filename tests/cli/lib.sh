# lib.sh - helpers shared by the command-line tests that run driftrec
# against a standalone embedded broker. Source it after `set -euo pipefail`.
# Every process started here is killed, and $dir removed, on exit.
dir=$(mktemp -d)
pids=()

# kill_child PID [SIGNAL]: signals PID (default KILL) only while it is still
# a child of this shell. A pid recorded earlier may belong to another
# process by now: pids wrap at pid_max (32768 here) within minutes while
# tests run side by side, and this shell reaps its children as they end.
# (A blind kill -9 of every recorded pid once killed a concurrent
# test_pipeline in CI.)
kill_child() {
  local stat ppid
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) } # past "pid (comm) ": state, then the parent's pid
  read -r _ ppid _ <<<"$stat"
  [ "$ppid" = "$BASHPID" ] || return 0
  kill -"${2:-KILL}" "$1" 2>/dev/null || true
}

cleanup() { for p in "${pids[@]}"; do kill_child "$p"; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

# start_broker PARTITIONS TOPIC...: starts a `driftrec broker` with those
# topics (and the options in the array BROKER_ARGS, if set) and sets $bs to
# its address. (Not in a $(...) subshell: the pid must reach $pids so that
# cleanup stops the broker.)
start_broker() {
  local parts=$1 name=$2 args=()
  shift
  for t in "$@"; do args+=(--topic "$t"); done
  "$DRIFTREC" broker --partitions "$parts" "${args[@]}" ${BROKER_ARGS[@]+"${BROKER_ARGS[@]}"} >"$dir/$name.addr" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 200); do [ -s "$dir/$name.addr" ] && break; sleep 0.05; done
  [ -s "$dir/$name.addr" ] || { echo "broker did not start" >&2; exit 1; }
  bs=$(head -1 "$dir/$name.addr")
}

# produce BOOTSTRAP TOPIC EVENTS USERS ITEMS [DEMO OPTION]...: the demo's
# synthetic stream (e.g. --erase-share 0.005 mixes erase requests in).
produce() {
  "$DRIFTREC" demo --bootstrap "$1" --produce-only --events "$3" --users "$4" --items "$5" \
      --set "topic.events=$2" --quiet "${@:6}" 2>"$dir/produce.log" || { cat "$dir/produce.log"; exit 1; }
}

# metrics_port LOG: the port `driftrec run` logged for metrics.listen=127.0.0.1:0
# (prints it; safe in $(...), it starts nothing).
metrics_port() {
  local port=""
  for _ in $(seq 200); do
    port=$(sed -n 's/.*listen=127.0.0.1:\([0-9]*\).*/\1/p' "$1" | head -1)
    [ -n "$port" ] && break; sleep 0.05
  done
  [ -n "$port" ] || { echo "no metrics port in $1" >&2; cat "$1" >&2; exit 1; }
  echo "$port"
}

# metric PORT NAME: one sample's value from /metrics.
metric() { local m; m=$(curl -sf "http://127.0.0.1:$1/metrics") && awk -v k="$2" '$1 == k {print $2}' <<<"$m"; }

# counters STATE_DIR [INSPECT OPTION]...: every stored user's applied-event
# counter, sorted (the oracle the multi-run tests compare).
counters() { "$DRIFTREC" inspect --state-dir "$1" users "${@:2}" | sort -n; }

# wait_log LOG PATTERN SECONDS: waits until LOG holds PATTERN; fails the test
# (with the log's tail) when it does not within SECONDS.
wait_log() {
  for _ in $(seq $(($3 * 20))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "$1: no \"$2\" within $3 s"; tail -20 "$1"; exit 1
}

# no_errors NAME...: fails the test when $dir/NAME.log holds an error of
# driftrec's own (librdkafka's transient ones, mod=kafka, are not).
no_errors() {
  for n in "$@"; do
    if grep "level=error" "$dir/$n.log" | grep -qv "mod=kafka"; then
      echo "$n logged an error:"; grep "level=error" "$dir/$n.log" | grep -v "mod=kafka" | head -5; exit 1
    fi
  done
}
