#!/usr/bin/env bash
# `pip install ./python` for real: builds the package with scikit-build-core from this checkout
# (no build isolation: scikit-build-core and nanobind come from the same environment, so it also
# works offline), installs it into a fresh folder, and runs a user's test file against that
# install, the pytest plugin loaded through its pytest11 entry point.
#   pip_install_check.sh PYTHON WORKDIR
set -euo pipefail
py="${1:?usage: pip_install_check.sh PYTHON WORKDIR}"
work="${2:?usage: pip_install_check.sh PYTHON WORKDIR}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rm -rf "$work"
mkdir -p "$work"
if command -v ccache >/dev/null 2>&1; then export CMAKE_CXX_COMPILER_LAUNCHER=ccache; fi
start=$(date +%s)
"$py" -m pip install --no-build-isolation --no-deps --no-index --disable-pip-version-check -q \
  --target "$work/site" -Cbuild-dir="$work/build" "$here/.."
echo "[pip-install] built and installed in $(( $(date +%s) - start )) s: $(du -sh "$work/site" | cut -f1) in $work/site"
test -f "$work/site/moecheck-0.1.0.dist-info/entry_points.txt"
cp "$here/pip_install_sample.py" "$work/test_user_sample.py"
cd "$work"
MOECHECK_SITE="$work/site" PYTHONPATH="$work/site" PYTHONDONTWRITEBYTECODE=1 \
  "$py" -m pytest -q -p no:cacheprovider --moecheck-cases 150 --moecheck-corpus "$work/corpus" test_user_sample.py
