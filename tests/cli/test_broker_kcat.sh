#!/usr/bin/env bash
# `driftrec broker` serves the mock cluster on 127.0.0.1 to other processes:
# kcat lists its metadata, produces and consumes through it; the broker
# stops on SIGTERM.
set -euo pipefail
dir=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
"$DRIFTREC" broker --partitions 3 --topic t1 > "$dir/addr" 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do [ -s "$dir/addr" ] && break; sleep 0.05; done
bs=$(head -1 "$dir/addr")
[[ "$bs" == 127.0.0.1:* ]] || { echo "broker address '$bs' is not on 127.0.0.1"; exit 1; }
grep -q "3 partitions" <<<"$(kcat -b "$bs" -L -t t1)"
printf 'a\nb\nc\n' | kcat -b "$bs" -P -t t1 -p 0
n=$(kcat -b "$bs" -C -t t1 -p 0 -o beginning -e -q | wc -l)
[ "$n" -eq 3 ] || { echo "consumed $n of 3"; exit 1; }
kill -TERM "$pid"; wait "$pid"; pid=""
echo "1 passed, 0 failed"
