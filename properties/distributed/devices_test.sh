#!/usr/bin/env bash
# Every GPU of the host (ctest label gpu): `moecheck fuzz --devices all` (one worker per GPU,
# results merged) must equal the plain single-process run of the same campaign case for case,
# for the correct kernels and for a planted mutant; `--devices 0` too. Skips (77) without a
# usable CUDA device.
#
#   devices_test.sh MOECHECK_BINARY SOURCE_DIR
set -uo pipefail
bin="$(realpath "${1:?usage: devices_test.sh MOECHECK SOURCE_DIR}")"
src="$(realpath "${2:?usage: devices_test.sh MOECHECK SOURCE_DIR}")"
equal="$src/properties/distributed/campaign_equal.py"
work="$(mktemp -d /tmp/moecheck-devices.XXXXXX)"
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
fail() { echo "FAIL: $*"; exit 1; }

probe="$("$bin" fuzz --target cuda:auto --devices all --cases 1 --no-progress --corpus "" 2>&1)"
if grep -Eq "no CUDA device is visible|needs a CUDA device|needs the CUDA kernels" <<<"$probe"; then
  echo "SKIP: no usable CUDA device: $(grep -E 'CUDA' <<<"$probe" | head -1)"
  exit 77
fi
echo "devices: $(grep -o 'workers\? on devices [0-9,]*' <<<"$probe")"

run_pair() {  # NAME DEVICES FLAGS...
  local name="$1" devices="$2"
  shift 2
  local flags=(--target cuda:auto --seed 77 --cases 3000 --max-failures 0 --no-progress "$@")
  "$bin" fuzz "${flags[@]}" --json "$name-plain.json" --corpus "c-$name-plain" >"$name-plain.log" 2>&1
  local a=$?
  "$bin" fuzz "${flags[@]}" --devices "$devices" --json "$name-devices.json" --corpus "c-$name-devices" >"$name-devices.log" 2>&1
  local b=$?
  [[ "$a" == "$b" ]] || fail "$name: plain run exit $a, --devices $devices exit $b: $(tail -5 "$name-devices.log")"
  python3 "$equal" "$name-plain.json" "$name-devices.json" || fail "$name: --devices $devices differs from the plain run"
  echo "ok: $name (--devices $devices, exit $a)"
}
run_pair correct all
run_pair mutant all --mutant ignore_col_stride
run_pair first 0
echo PASS
