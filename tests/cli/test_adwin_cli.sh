#!/usr/bin/env bash
# `driftrec adwin` on the public ADWIN stream (../shared/data/adwin): MOA's
# detections at 0-based indices 1023 and 1055 (δ=0.002, clock 32, M=5), and
# only 1023 with --reset. Skips cleanly when ../shared is absent.
set -euo pipefail
f="$DR_SHARED_DIR/data/adwin/skmultiflow_drift_stream.txt"
if [ ! -f "$f" ]; then echo "skipped: $f not found (../shared is absent)"; echo "0 passed, 0 failed, 1 skipped"; exit 0; fi
got=$("$DRIFTREC" adwin < "$f" | tr '\n' ' ')
[ "$got" = "1023 1055 " ] || { echo "without reset: got '$got'"; exit 1; }
got=$("$DRIFTREC" adwin --reset --delta 0.002 --clock 32 --max-buckets 5 < "$f" | tr '\n' ' ')
[ "$got" = "1023 " ] || { echo "with reset: got '$got'"; exit 1; }
# bad input is refused with the line number
if out=$(printf '1\nabc\n' | "$DRIFTREC" adwin 2>&1); then echo "accepted a bad line"; exit 1; fi
grep -q "2" <<<"$out"
echo "1 passed, 0 failed"
