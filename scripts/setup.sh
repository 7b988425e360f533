#!/usr/bin/env bash
# Installs whatever is missing to build and test moecheck on Debian 12. Safe to run twice:
# every step checks first and does nothing when its result is already there.
#
#   Debian packages : compiler toolchain, GoogleTest, RapidCheck, Google Benchmark, CLI11,
#                     nlohmann-json, Chart.js, PyYAML; Slurm (slurm-wlm) and munge for the
#                     `distributed` test's single-node cluster (system-wide, through apt;
#                     their services are not started)
#   .deps/tools     : CMake 4.x and Ninja from PyPI (CMake 3.25 predates CUDA 13)
#   .deps/libtorch  : LibTorch 2.11.0 taken from the pinned PyPI torch wheel (sha256 checked)
#   .deps/venv      : Python environment of the moecheck package (scripts/setup_python.sh)
#
# Environment: MOECHECK_SKIP_APT=1 skips the apt step (for machines without root);
#              MOECHECK_SKIP_PYTHON=1 skips the Python environment.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps="$root/.deps"
mkdir -p "$deps"

TORCH_VERSION=2.11.0
TORCH_WHEEL=torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl
TORCH_SHA256=7aa2f9bbc6d4595ba72138026b2074be1233186150e9292865e04b7a63b8c67a
CMAKE_VERSION=4.1.2
NINJA_VERSION=1.13.0

log() { printf '[setup] %s\n' "$*" >&2; }

# ---- Debian packages ---------------------------------------------------------------
apt_pkgs=(build-essential git unzip python3 python3-venv libgtest-dev libgmock-dev
          librapidcheck-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev libjs-chart.js
          python3-yaml slurm-wlm munge)
if [[ "${MOECHECK_SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    # Package scripts must not start services (slurmctld, slurmd, munge): the tests start their
    # own. Containers usually deny it already (policy-rc.d); elsewhere it is denied for the install.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [[ ! -e "$policy" ]]; then
      printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 755 "$policy" && own_policy=1
    fi
    set +e
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
    rc=$?
    set -e
    ((own_policy)) && $sudo rm -f "$policy"
    ((rc == 0)) || { log "apt-get install failed (exit $rc)"; exit "$rc"; }
  else
    log "Debian packages present"
  fi
fi

# ---- CMake + Ninja -----------------------------------------------------------------
tools="$deps/tools"
if [[ ! -x "$tools/bin/cmake" || ! -x "$tools/bin/ninja" ]] \
   || ! "$tools/bin/cmake" --version 2>/dev/null | grep -q "$CMAKE_VERSION"; then
  log "installing cmake $CMAKE_VERSION and ninja $NINJA_VERSION into $tools"
  rm -rf "$tools"
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install -q --disable-pip-version-check \
    "cmake==$CMAKE_VERSION" "ninja==$NINJA_VERSION"
else
  log "cmake $CMAKE_VERSION and ninja present"
fi

# ---- LibTorch ----------------------------------------------------------------------
lt="$deps/libtorch"
if [[ ! -f "$lt/.moecheck-version" ]] || [[ "$(cat "$lt/.moecheck-version")" != "$TORCH_VERSION" ]]; then
  log "fetching LibTorch $TORCH_VERSION (the torch wheel from PyPI)"
  dl="$deps/download"
  mkdir -p "$dl"
  if [[ ! -f "$dl/$TORCH_WHEEL" ]] || ! echo "$TORCH_SHA256  $dl/$TORCH_WHEEL" | sha256sum -c --quiet -; then
    rm -f "$dl/$TORCH_WHEEL"
    python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      --python-version 3.11 --implementation cp --platform manylinux_2_28_x86_64 \
      -d "$dl" "torch==$TORCH_VERSION"
  fi
  echo "$TORCH_SHA256  $dl/$TORCH_WHEEL" | sha256sum -c --quiet - \
    || { log "checksum mismatch for $TORCH_WHEEL"; exit 1; }
  rm -rf "$lt" "$deps/libtorch.tmp"
  unzip -q "$dl/$TORCH_WHEEL" 'torch/lib/*' 'torch/include/*' 'torch/share/*' -d "$deps/libtorch.tmp"
  mv "$deps/libtorch.tmp/torch" "$lt"
  rmdir "$deps/libtorch.tmp"
  echo "$TORCH_VERSION" > "$lt/.moecheck-version"
else
  log "LibTorch $TORCH_VERSION present"
fi

# ---- Python environment (.deps/venv: torch from the same wheel, pytest, build tools) ---
if [[ "${MOECHECK_SKIP_PYTHON:-0}" != 1 ]]; then
  TORCH_WHEEL="$TORCH_WHEEL" TORCH_SHA256="$TORCH_SHA256" bash "$root/scripts/setup_python.sh"
fi
rm -f "$deps/download/$TORCH_WHEEL"  # LibTorch and the venv are unpacked: the wheel is not kept

log "ready: $(
  "$tools/bin/cmake" --version | head -1), ninja $("$tools/bin/ninja" --version), LibTorch $(cat "$lt/.moecheck-version")"
