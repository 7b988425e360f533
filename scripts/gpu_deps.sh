#!/usr/bin/env bash
# Prepares .deps/sysroot: Debian's GoogleTest, RapidCheck, Google Benchmark, CLI11 and
# nlohmann-json unpacked into a folder that travels to a GPU machine without internet access
# (see scripts/gpu.sh). Safe to run twice.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sysroot="$root/.deps/sysroot"
[[ -f "$sysroot/.complete" ]] && { echo "[gpu-deps] $sysroot present"; exit 0; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download libgtest-dev libgmock-dev googletest librapidcheck-dev libbenchmark-dev \
   libbenchmark1debian libcli11-dev nlohmann-json3-dev libjs-chart.js >/dev/null)
rm -rf "$sysroot"
mkdir -p "$sysroot"
for deb in "$work"/*.deb; do dpkg -x "$deb" "$sysroot"; done
rm -rf "$sysroot/usr/share/doc" "$sysroot/usr/src"
touch "$sysroot/.complete"
du -sh "$sysroot"
