#!/usr/bin/env bash
# Packaging: `make package` (CPack) builds a .deb holding the binary, the
# man page (generated from the help texts), the systemd unit, the default
# configuration and the alerting rules; the man page renders.
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cpack --config "$DR_BUILD_DIR/CPackConfig.cmake" -G DEB -B "$dir" >"$dir/cpack.log" 2>&1 || { cat "$dir/cpack.log"; exit 1; }
deb=$(ls "$dir"/driftrec_*.deb)
dpkg-deb -c "$deb" | awk '{print $6}' >"$dir/files"
for f in ./usr/bin/driftrec ./usr/lib/systemd/system/driftrec.service ./etc/driftrec/driftrec.conf \
         ./usr/share/driftrec/alerts.yml ./usr/share/driftrec/driftrec.json; do
  grep -qx "$f" "$dir/files" || { echo "missing $f in $deb"; cat "$dir/files"; exit 1; }
done
grep -q '^./usr/share/man/man1/driftrec.1' "$dir/files" || { echo "no man page in $deb"; exit 1; }
grep -q librdkafka1 <<<"$(dpkg-deb -f "$deb" Depends)"
grep -q "driftrec - streaming" <<<"$(MANWIDTH=100 man -l "$DR_BUILD_DIR/driftrec.1" 2>/dev/null)"
grep -q "ExecStart=/usr/bin/driftrec run" "$DR_SOURCE_DIR/ops/driftrec.service"
echo "package: $(basename "$deb"), $(wc -l <"$dir/files") entries"
echo "1 passed, 0 failed"
