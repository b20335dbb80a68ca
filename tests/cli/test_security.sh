#!/usr/bin/env bash
# Security basics, from the outside: secrets given as kafka.* settings never
# reach the output (`config --dump`, the error for a malformed setting, and
# the logs of `driftrec run` with every librdkafka debug context on and
# log.level=debug), and the listening sockets of `driftrec broker` and of
# `driftrec run` (metrics) are on 127.0.0.1.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# (Debian's librdkafka has no OIDC, so the client secret is only dumped, not run)
sets=(--set kafka.sasl.username=alice --set kafka.sasl.password=S3cr3t-sasl
      --set kafka.ssl.key.password=S3cr3t-keypw --set kafka.ssl.keystore.password=S3cr3t-store
      --set kafka.sasl.oauthbearer.config=S3cr3t-oauth)
no_secret() { # FILE WHAT
  if grep -q 'S3cr3t' "$1"; then echo "$2 shows a secret:"; grep -o '.\{30\}S3cr3t-[a-z]*' "$1" | sort -u | head -5; exit 1; fi
}

"$DRIFTREC" config "${sets[@]}" --set kafka.sasl.oauthbearer.client.secret=S3cr3t-client --dump >"$dir/dump.txt"
no_secret "$dir/dump.txt" "config --dump"
[ "$(grep -c ' = \[redacted\]$' "$dir/dump.txt")" -eq 5 ] || { echo "expected 5 redacted settings"; grep kafka "$dir/dump.txt"; exit 1; }
grep -qx 'kafka.sasl.username = alice' "$dir/dump.txt"

printf 'kafka.sasl.password S3cr3t-typo\n' >"$dir/typo.conf"
if "$DRIFTREC" config --config "$dir/typo.conf" --dump >"$dir/typo.out" 2>&1; then echo "a line without '=' was accepted"; exit 1; fi
no_secret "$dir/typo.out" "the error for a malformed line"
grep -q 'typo.conf:1:' "$dir/typo.out"

# Local addresses (hex, as in /proc/net/tcp) of the TCP sockets PID listens on.
listening() {
  local inodes
  inodes=$(ls -l "/proc/$1/fd" 2>/dev/null | sed -n 's/.*socket:\[\([0-9]*\)\]$/\1/p' | tr '\n' ' ')
  awk -v inodes="$inodes" 'BEGIN { n = split(inodes, a, " "); for (i = 1; i <= n; i++) want[a[i]] = 1 }
       FNR > 1 && $4 == "0A" && ($10 in want) { print $2 }' /proc/net/tcp /proc/net/tcp6
}
loopback_only() { # PID WHAT
  local addrs
  addrs=$(listening "$1")
  [ -n "$addrs" ] || { echo "$2: no listening socket found"; exit 1; }
  if grep -qv '^0100007F:' <<<"$addrs"; then echo "$2 listens beyond 127.0.0.1: $addrs"; exit 1; fi
  echo "$2 listens on 127.0.0.1 only ($(wc -l <<<"$addrs") sockets)"
}

start_broker 1 ev recs
loopback_only "${pids[-1]}" "driftrec broker"
"$DRIFTREC" run "${sets[@]}" --set "kafka.bootstrap.servers=$bs" --set topic.events=ev --set topic.recommendations=recs \
    --set "state.dir=$dir/state" --set metrics.listen=127.0.0.1:0 --set kafka.debug=all --set log.level=debug \
    --set run.exit.idle.ms=500 >"$dir/run.log" 2>&1 &
run=$!
pids+=("$run")
metrics_port "$dir/run.log" >/dev/null
loopback_only "$run" "driftrec run (metrics)"
for _ in $(seq 300); do kill -0 "$run" 2>/dev/null || break; sleep 0.1; done
wait "$run" || { echo "run failed"; tail -5 "$dir/run.log"; exit 1; }
grep -q 'sasl.password = \[redacted\]' "$dir/run.log" || { echo "librdkafka's configuration dump was not logged"; exit 1; }
no_secret "$dir/run.log" "the debug log of driftrec run"
echo "secrets: 5 set (4 in the run), none in config --dump, the malformed-line error or $(wc -l <"$dir/run.log") debug log lines"
echo "1 passed, 0 failed"
