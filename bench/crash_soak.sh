#!/usr/bin/env bash
# crash_soak.sh - the crash test's long form (`make soak`): 100 SIGKILLs on 4
# partitions and 20 on one partition, with the same small cache, lagging
# deliveries and erases as tests/cli/test_crash.sh (which `make test` runs
# with 20 and 5). The killed runs' rate cap is lower (1,000 events/s) and
# the stream longer (400,000 events), so that every kill lands mid-stream.
# Prints what it compared.
# Knobs (environment): KILLS, KILLS1, EVENTS, EVENTS1, RATE, SEED, and
# DRIFTREC_RUN=BINARY to soak another build's pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
export DRIFTREC=${DRIFTREC:-$PWD/build/driftrec}
export KILLS=${KILLS:-100} KILLS1=${KILLS1:-20} EVENTS=${EVENTS:-400000} EVENTS1=${EVENTS1:-60000}
export RATE=${RATE:-1000} SEED=${SEED:-$(date +%s)}
echo "crash soak: $KILLS + $KILLS1 SIGKILLs, seed $SEED, $(nproc) cores, $(date -u +%FT%TZ)"
start=$(date +%s)
bash tests/cli/test_crash.sh
echo "crash soak: $((KILLS + KILLS1)) kills in $(( $(date +%s) - start )) s, everything as in the uninterrupted runs"
