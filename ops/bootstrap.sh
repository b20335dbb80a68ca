#!/usr/bin/env bash
# bootstrap.sh - installs what driftrec needs to build, test and run, from
# Debian's packages. Idempotent: installs only what is missing, and runs
# `apt-get update` only when something is. Used by `make demo` and `make test`.
set -euo pipefail

# chromium renders report.html in the tests (headless); python3 checks reports;
# prometheus scrapes a running driftrec in the tests (and promtool checks ops/prometheus);
# libcurl and jansson are the Schema Registry client's HTTP and JSON (registry/);
# hnswlib (header-only C++, and g++ from build-essential) is the approximate
# retrieval index (retrieval/, issue 17; chosen over FAISS in docs/RETRIEVAL.md).
packages=(build-essential cmake pkg-config librdkafka-dev libavro-dev librocksdb-dev
          libopenblas-dev libuv1-dev libhttp-parser-dev kcat libcmocka-dev python3 chromium
          curl prometheus libcurl4-openssl-dev libjansson-dev libhnswlib-dev)
# Extra groups, enabled with arguments: `bootstrap.sh fuzz` adds clang and its
# runtimes (libFuzzer, sanitizers: a recommendation of clang, which
# --no-install-recommends would leave out).
for extra in "$@"; do
  case "$extra" in
    fuzz) packages+=(clang libclang-rt-dev) ;;
    *) echo "bootstrap.sh: unknown group '$extra'" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "bootstrap.sh: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "bootstrap.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
