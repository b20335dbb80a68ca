#!/usr/bin/env bash
# `driftrec erase --user ID` takes only a whole user id, a decimal integer
# in [0, 2^53) as the event codec accepts it: anything else (letters,
# trailing junk, exponent, sign, spaces, hex, 2^53, overflow, empty) is
# refused with exit 2 and an error naming the value, and nothing reaches
# the events topic; valid ids, the largest included, are still sent, and
# `driftrec lists` reads such keys back by the same rule.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
start_broker 1 ev
erase() { "$DRIFTREC" erase --set "kafka.bootstrap.servers=$bs" --set topic.events=ev --user "$@"; }

bad_ids=(abc 12abc 1e3 -1 +5 ' 7' '7 ' '' 0x10 1.0 9007199254740992 99999999999999999999999)
for id in "${bad_ids[@]}"; do
  rc=0; erase "$id" >"$dir/out" 2>"$dir/err" || rc=$?
  [ "$rc" -eq 2 ] || { echo "--user '$id': exit $rc (want 2): $(cat "$dir/out" "$dir/err")"; exit 1; }
  grep -qF -- "--user \"$id\" is not a user id" "$dir/err" || { echo "--user '$id': the error does not name it:"; cat "$dir/err"; exit 1; }
  [ ! -s "$dir/out" ] || { echo "--user '$id': printed $(cat "$dir/out")"; exit 1; }
done
sent=$(kcat -C -b "$bs" -t ev -e -q -f '%k %S\n' 2>/dev/null)
[ -z "$sent" ] || { echo "refused ids still reached the topic:"; echo "$sent"; exit 1; }
echo "${#bad_ids[@]} malformed ids refused (exit 2, named), nothing on the topic"

erase 12 >/dev/null
erase 9007199254740991 >/dev/null
sent=$(kcat -C -b "$bs" -t ev -e -q -f '%k %S\n' 2>/dev/null)
[ "$sent" = $'12 -1\n9007199254740991 -1' ] || { echo "valid ids: the topic holds:"; echo "$sent"; exit 1; }
echo "valid ids 12 and 2^53-1 sent as erase requests (null values keyed by the id)"

# `driftrec lists` reads keys the same way: a tombstone keyed by something
# that is no user id (a foreign producer's) is shown as user -1, never as
# the id its leading digits spell (12abc is not user 12).
printf '12abc:\n' | kcat -P -b "$bs" -t ev -K: -Z 2>/dev/null
got=$("$DRIFTREC" lists --last --set "kafka.bootstrap.servers=$bs" --set topic.recommendations=ev | awk '{print $1, $4}' | sort -n)
[ "$got" = $'-1 tombstone\n12 tombstone\n9007199254740991 tombstone' ] || { echo "lists read the keys as:"; echo "$got"; exit 1; }
echo "lists: the tombstones of 12 and 2^53-1 as theirs, the one keyed 12abc as no user (-1)"
echo "1 passed, 0 failed"
