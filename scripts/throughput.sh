#!/usr/bin/env bash
# Harness throughput vs the fixed Python anchor (Hypothesis + PyTorch), same case class, same
# machine, same run. Needs Debian's python3-torch and python3-hypothesis for the anchor.
# On a shared machine set OMP_NUM_THREADS=1: small tensors gain nothing from intra-op threads and
# a busy machine makes torch's thread pool erratic (it applies to the anchor and to moecheck).
#   scripts/throughput.sh [ANCHOR_EXAMPLES]
# Environment:
#   MOECHECK_ANCHOR             the anchor script (default ../shared/anchors/hypothesis_routing_anchor.py)
#   MOECHECK_THROUGHPUT_ROUNDS  benchmark + anchor runs, back to back (default 1); medians are reported
#   MOECHECK_ANCHOR_CPU=0       skip the anchor's CPU-time rate (it runs the anchor a second time
#                               with twice the examples: CPU seconds of the difference, no start-up)
# Rates: moecheck's examples/s are per CPU second of the benchmark thread (Google Benchmark's
# items_per_second) and, separately, per wall-clock second; the anchor's own figure is per
# wall-clock second. On an idle machine they agree; on a busy one compare CPU with CPU (per core)
# and wall with wall. The `threads:2` benchmarks give the scaling over two cores.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
anchor="${MOECHECK_ANCHOR:-$root/../shared/anchors/hypothesis_routing_anchor.py}"
n="${1:-2000}"
rounds="${MOECHECK_THROUGHPUT_ROUNDS:-1}"
bench="build/${MOECHECK_PRESET:-default}/properties/throughput_bench"
[[ -x "$bench" ]] || { echo "build first: bash scripts/run.sh build" >&2; exit 2; }
[[ -f "$anchor" ]] || { echo "anchor not found: $anchor (set MOECHECK_ANCHOR)" >&2; exit 2; }
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "MOECHECK_THROUGHPUT_ROUNDS must be a positive integer" >&2; exit 2; }
out="$(mktemp -d "${TMPDIR:-/tmp}/moecheck-throughput.XXXXXX")"
trap 'rm -rf "$out"' EXIT
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}; $rounds round(s)"
for r in $(seq "$rounds"); do
  "$bench" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true --benchmark_format=console \
    --benchmark_out="$out/bench-$r.json" --benchmark_out_format=json | tee "$out/bench-$r.txt"
  /usr/bin/python3 - "$anchor" "$n" "$out/anchor-$r.txt" "${MOECHECK_ANCHOR_CPU:-1}" <<'PY'
import re, resource, subprocess, sys
anchor, n, dest, cpu = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] != "0"
def run(count):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = subprocess.run(["/usr/bin/python3", anchor, str(count)], check=True, capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return text, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
text, cpu1 = run(n)
print(text, end="")
line = text
if cpu:
    text2, cpu2 = run(2 * n)
    if cpu2 > cpu1:
        line += f"anchor CPU time: {n} more examples in {cpu2 - cpu1:.2f} CPU s = {n / (cpu2 - cpu1):.0f} cpu-examples/s\n"
        print(line.splitlines()[-1])
open(dest, "w").write(line)
PY
done
python3 - "$out" "$rounds" <<'PY'
import json, re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
wall_anchor, cpu_anchor, rates = [], [], {}
for r in range(1, rounds + 1):
    a = open(f"{out}/anchor-{r}.txt").read()
    wall_anchor.append(float(re.search(r"= ([0-9.]+) examples/s", a).group(1)))
    m = re.search(r"= ([0-9.]+) cpu-examples/s", a)
    if m:
        cpu_anchor.append(float(m.group(1)))
    for b in json.load(open(f"{out}/bench-{r}.json"))["benchmarks"]:
        if b.get("aggregate_name") != "median" or "items_per_second" not in b:
            continue
        unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
        threads = b.get("threads", 1)
        name = re.sub(r"/min_time:[0-9.]+", "", b["run_name"])
        # single thread: CPU rate = items_per_second, wall rate = one example per real_time;
        # threads:N (UseRealTime): items_per_second is already per wall-clock second
        cpu = b["items_per_second"] if threads == 1 else None
        wall = 1.0 / (b["real_time"] * unit) if threads == 1 else b["items_per_second"]
        rates.setdefault(name, []).append((cpu, wall, threads))
wa = statistics.median(wall_anchor)
ca = statistics.median(cpu_anchor) if cpu_anchor else None
print(f"anchor: {wa:.0f} examples/s (wall clock, its own timer)" +
      (f", {ca:.0f} examples/s per CPU second" if ca else "") + f"; median of {rounds} run(s)")
single_wall = {}
for name, vals in rates.items():
    threads = vals[0][2]
    wall = statistics.median(v[1] for v in vals)
    if threads == 1:
        cpu = statistics.median(v[0] for v in vals)
        single_wall[name] = wall
        per_core = f" = {cpu / ca:5.1f}x the anchor per core" if ca else ""
        print(f"{name:28s} {cpu:8.0f} examples/s per CPU second{per_core}; "
              f"wall clock {wall:8.0f}/s = {wall / wa:5.1f}x the anchor's wall-clock rate ({wa:.0f}/s)")
for name, vals in rates.items():
    threads = vals[0][2]
    if threads == 1:
        continue
    base = re.sub(r"/real_time|/threads:[0-9]+", "", name)
    wall = statistics.median(v[1] for v in vals)
    one = single_wall.get(base)
    scale = f" = {wall / one:4.2f}x one thread's wall-clock rate" if one else ""
    print(f"{base:28s} {threads} threads: {wall:8.0f} examples/s (wall clock){scale}")
PY
# The Python package (moecheck.fuzz / moecheck.check with torch routers as fn), same case class,
# against the anchor of the last round (python/bench/throughput.py).
pkg="build/${MOECHECK_PRESET:-default}/python"
if [[ -x .deps/venv/bin/python ]] && compgen -G "$pkg/moecheck/_core*.so" >/dev/null; then
  (cd "$pkg" && PYTHONPATH="$PWD" "$root/.deps/venv/bin/python" "$root/python/bench/throughput.py" "${MOECHECK_PY_EXAMPLES:-3000}") \
    | tee "$out/python-throughput.txt"
  python3 - "$out/anchor-$rounds.txt" "$out/python-throughput.txt" <<'PY'
import re, sys
anchor = float(re.search(r"= ([0-9.]+) examples/s", open(sys.argv[1]).read()).group(1))
for line in open(sys.argv[2]):
    m = re.match(r"moecheck-python (\S+)\s+fn=(\S+)\s*:.*= ([0-9.]+) examples/s", line)
    if m:
        v = float(m.group(3))
        print(f"python {m.group(1):5s} fn={m.group(2):9s} {v:10.0f} examples/s  = {v/anchor:6.1f}x the anchor ({anchor:.0f} examples/s)")
PY
else
  echo "(Python package not built: bash scripts/run.sh python, then rerun for its numbers)" >&2
fi
