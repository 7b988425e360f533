#!/usr/bin/env bash
# Harness throughput vs the fixed Python anchor (Hypothesis + PyTorch), same case class, same
# machine, same run. Needs Debian's python3-torch and python3-hypothesis for the anchor.
# On a shared machine set OMP_NUM_THREADS=1: small tensors gain nothing from intra-op threads and
# a busy machine makes torch's thread pool erratic (it applies to the anchor and to moecheck).
#   scripts/throughput.sh [ANCHOR_EXAMPLES]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
anchor="${MOECHECK_ANCHOR:-$root/../shared/anchors/hypothesis_routing_anchor.py}"
n="${1:-2000}"
bench="build/${MOECHECK_PRESET:-default}/properties/throughput_bench"
[[ -x "$bench" ]] || { echo "build first: bash scripts/run.sh build" >&2; exit 2; }
"$bench" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true --benchmark_format=console | tee /tmp/moecheck-throughput.txt
/usr/bin/python3 "$anchor" "$n" | tee /tmp/moecheck-anchor.txt
python3 - <<'PY'
import re
anchor = float(re.search(r"= ([0-9.]+) examples/s", open("/tmp/moecheck-anchor.txt").read()).group(1))
for line in open("/tmp/moecheck-throughput.txt"):
    m = re.match(r"(BM_\S+)_median\s.*items_per_second=([0-9.]+)([kM]?)/s", line)
    if m:
        v = float(m.group(2)) * {"": 1, "k": 1e3, "M": 1e6}[m.group(3)]
        print(f"{m.group(1):28s} {v:12.0f} examples/s  = {v/anchor:6.1f}x the anchor ({anchor:.0f} examples/s)")
PY
# The Python package (moecheck.fuzz / moecheck.check with torch routers as fn), same case class,
# against the anchor of this run (python/bench/throughput.py).
pkg="build/${MOECHECK_PRESET:-default}/python"
if [[ -x .deps/venv/bin/python && -d "$pkg/moecheck" ]]; then
  (cd "$pkg" && PYTHONPATH="$PWD" "$root/.deps/venv/bin/python" "$root/python/bench/throughput.py" "${MOECHECK_PY_EXAMPLES:-3000}") \
    | tee /tmp/moecheck-python-throughput.txt
  python3 - <<'PY'
import re
anchor = float(re.search(r"= ([0-9.]+) examples/s", open("/tmp/moecheck-anchor.txt").read()).group(1))
for line in open("/tmp/moecheck-python-throughput.txt"):
    m = re.match(r"moecheck-python (\S+)\s+fn=(\S+)\s*:.*= ([0-9.]+) examples/s", line)
    if m:
        v = float(m.group(3))
        print(f"python {m.group(1):5s} fn={m.group(2):9s} {v:10.0f} examples/s  = {v/anchor:6.1f}x the anchor ({anchor:.0f} examples/s)")
PY
else
  echo "(Python package not built: bash scripts/run.sh python, then rerun for its numbers)" >&2
fi
