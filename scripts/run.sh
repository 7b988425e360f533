#!/usr/bin/env bash
# One entry point for a fresh machine: installs what is missing, builds, then
#   scripts/run.sh fuzz [moecheck fuzz flags]   the default fuzzing campaign (GPU when present, else CPU)
#   scripts/run.sh test [ctest flags]           the test suite (all labels; gpu tests skip without a GPU)
#   scripts/run.sh build                        just set up and build
#   scripts/run.sh python [pytest flags]        the Python package's tests (.deps/venv; builds the
#                                               extension and the CLI only)
# Environment: MOECHECK_PRESET (default: cuda when a GPU is visible, else default),
#              MOECHECK_JOBS (build parallelism, default: number of cores).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
  fuzz|test|build|python) ;;
  *) echo "usage: scripts/run.sh {fuzz|test|build|python} [args...]" >&2; exit 2 ;;
esac

bash scripts/setup.sh
export PATH="$root/.deps/tools/bin:$PATH"

preset="${MOECHECK_PRESET:-default}"
if [[ -z "${MOECHECK_PRESET:-}" ]] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  preset=cuda
fi
jobs="${MOECHECK_JOBS:-$(nproc)}"
start=$(date +%s)
cmake --preset "$preset" >/dev/null
if [[ "$cmd" == python ]]; then
  cmake --build --preset "$preset" -j "$jobs" --target moecheck_python moecheck
else
  cmake --build --preset "$preset" -j "$jobs"
fi
echo "[run] build finished in $(( $(date +%s) - start )) s (preset $preset)" >&2
bin="build/$preset/harness/moecheck"

case "$cmd" in
  build) ;;
  fuzz)
    # Default campaign: 60 s on the auto target (the CUDA kernels when a GPU is usable,
    # else the kernels' own algorithm on the host), failures shrunk into corpora/found/.
    mkdir -p reports/out
    if [[ $# -eq 0 ]]; then
      set -- --seconds 60 --json reports/out/campaign.json --junit reports/out/campaign.xml
    fi
    set +e
    "$bin" fuzz "$@"
    rc=$?
    set -e
    if [[ -f reports/out/campaign.json ]]; then
      "$bin" report reports/out/campaign.json -o reports/out/campaign.html >/dev/null && \
        echo "[run] report: reports/out/campaign.html" >&2
    fi
    exit $rc
    ;;
  python)
    # The package's tests against the build tree's package (build/<preset>/python), with the
    # plugin loaded explicitly, then `pip install ./python` for real (ctest python_pip_install).
    set +e
    (cd "build/$preset/python" && PYTHONPATH="$PWD" MOECHECK_SOURCE_DIR="$root" MOECHECK_CLI="$root/$bin" \
      "$root/.deps/venv/bin/python" -m pytest -p moecheck.pytest_plugin -p no:cacheprovider -rs \
      -c "$root/python/pyproject.toml" --rootdir "$root/python" "$root/python/tests" "$@")
    rc=$?
    [[ $rc -eq 0 ]] && { ctest --preset "$preset" -R '^python_pip_install$'; rc=$?; }
    set -e
    exit $rc
    ;;
  test)
    mkdir -p reports/out
    set +e
    ctest --preset "$preset" -j 2 --output-junit "$root/reports/out/ctest.xml" "$@"
    rc=$?
    set -e
    echo "[run] tests finished in $(( $(date +%s) - start )) s total (exit $rc)" >&2
    exit $rc
    ;;
esac
