#!/usr/bin/env bash
# ops/CONFIG.md must be what `driftrec config --markdown` generates from the
# settings table (run `make config-doc` after changing src/config.c).
set -euo pipefail
diff -u "$DR_SOURCE_DIR/ops/CONFIG.md" <("$DRIFTREC" config --markdown)
# the example configuration is valid
"$DRIFTREC" config --config "$DR_SOURCE_DIR/ops/driftrec.conf.example" --dump >/dev/null
# an unknown key is refused, naming the key
if out=$("$DRIFTREC" config --set learner.dimension=3 2>&1); then echo "accepted a bad key"; exit 1; fi
grep -q "learner.dimension" <<<"$out"
echo "1 passed, 0 failed"
