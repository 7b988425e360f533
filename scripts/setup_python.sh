#!/usr/bin/env bash
# The project's Python environment for the moecheck package and its tests: .deps/venv with
# torch 2.11.0, pytest, numpy, and the package's build tools (scikit-build-core, nanobind).
# Called by scripts/setup.sh; safe to run twice (a stamp file records what is installed).
#
# torch: the pinned torch-2.11.0 wheel scripts/setup.sh takes LibTorch from (same sha256),
# installed with --no-deps, plus what `import torch` needs on a machine without a GPU: torch's
# pure-Python dependencies and the three CUDA libraries libtorch_cuda.so links that the CUDA
# toolkit in /usr/local/cuda lacks (cuFile, cuSPARSELt, NVSHMEM); cuBLAS, cuDNN, NCCL, cuFFT and
# the rest come from the toolkit. About 1.7 GB installed instead of the 2.6 GB of downloads (and
# roughly twice that installed) of `pip install torch==2.11.0` with every nvidia-* wheel.
# MOECHECK_TORCH_FULL=1 installs that full PyPI torch instead (machines without the toolkit).
#
# Environment: MOECHECK_VENV (default .deps/venv), MOECHECK_DOWNLOAD_DIR (where the torch wheel
# is looked for and downloaded, default .deps/download), TORCH_WHEEL / TORCH_SHA256 (set by
# scripts/setup.sh).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MOECHECK_VENV:-$root/.deps/venv}"
dl="${MOECHECK_DOWNLOAD_DIR:-$root/.deps/download}"
TORCH_VERSION=2.11.0
TORCH_WHEEL="${TORCH_WHEEL:-torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl}"
TORCH_SHA256="${TORCH_SHA256:-7aa2f9bbc6d4595ba72138026b2074be1233186150e9292865e04b7a63b8c67a}"
# torch's own requirements (its METADATA), at the versions this project tested
TORCH_DEPS=(filelock==4.3.1 typing-extensions==4.16.0 sympy==1.14.0 networkx==3.6.1 jinja2==3.1.6
            fsspec==2026.9.0 nvidia-cufile==1.15.1.6 nvidia-cusparselt-cu13==0.8.0 nvidia-nvshmem-cu13==3.4.5)
TOOLS=(pytest==9.2.0 numpy==2.4.6 nanobind==3.1.0 scikit-build-core==1.1.2)

log() { printf '[setup-python] %s\n' "$*" >&2; }

full="${MOECHECK_TORCH_FULL:-0}"
want="torch=$TORCH_VERSION full=$full ${TORCH_DEPS[*]} ${TOOLS[*]}"
if [[ -f "$venv/.moecheck-python" && "$(cat "$venv/.moecheck-python")" == "$want" ]] \
   && "$venv/bin/python" -c "import torch, pytest, numpy, nanobind, scikit_build_core" 2>/dev/null; then
  log "Python environment present ($venv, torch $TORCH_VERSION)"
  exit 0
fi

pyver="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
if [[ "$pyver" != 3.11 && "$full" != 1 ]]; then
  log "python3 is $pyver; the pinned torch wheel is for 3.11: installing PyPI torch==$TORCH_VERSION instead"
  full=1
fi

start=$(date +%s)
rm -rf "$venv"
python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
if [[ "$full" == 1 ]]; then
  log "installing torch==$TORCH_VERSION with its dependencies from PyPI"
  "${pip[@]}" "torch==$TORCH_VERSION"
else
  mkdir -p "$dl"
  if [[ ! -f "$dl/$TORCH_WHEEL" ]] || ! echo "$TORCH_SHA256  $dl/$TORCH_WHEEL" | sha256sum -c --quiet -; then
    rm -f "$dl/$TORCH_WHEEL"
    log "fetching $TORCH_WHEEL"
    python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      --python-version 3.11 --implementation cp --platform manylinux_2_28_x86_64 \
      -d "$dl" "torch==$TORCH_VERSION"
  fi
  echo "$TORCH_SHA256  $dl/$TORCH_WHEEL" | sha256sum -c --quiet - \
    || { log "checksum mismatch for $TORCH_WHEEL"; exit 1; }
  log "installing $TORCH_WHEEL (--no-deps) and ${TORCH_DEPS[*]}"
  "${pip[@]}" --no-deps "$dl/$TORCH_WHEEL"
  "${pip[@]}" "${TORCH_DEPS[@]}"
fi
log "installing ${TOOLS[*]}"
"${pip[@]}" "${TOOLS[@]}"
"$venv/bin/python" -c "import torch; assert torch.randn(4, 8).softmax(-1).sum().item() > 0; import torch.func" \
  || { log "torch does not import in $venv (missing CUDA libraries? try MOECHECK_TORCH_FULL=1)"; exit 1; }
echo "$want" > "$venv/.moecheck-python"
log "ready in $(( $(date +%s) - start )) s: $("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)'), $(du -sh "$venv" | cut -f1) in $venv"
