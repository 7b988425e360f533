#!/usr/bin/env bash
# Builds and runs everything GPU-side in one call, on a GPU machine without internet access:
# LibTorch from the machine's Python (torch.utils.cmake_prefix_path), GoogleTest / RapidCheck /
# Google Benchmark / CLI11 / nlohmann-json from .deps/sysroot (made by scripts/gpu_deps.sh).
#
#   scripts/gpu.sh OUTDIR [STEPS]
#
# STEPS is a comma-separated subset of (default: build,tests,substitution,fuzz,mutants,bench):
#   build         configure + build with the cuda preset's settings
#   tests         ctest: the gpu label, then the quick label
#   substitution  the functional-substitution suite with CUDA tensors
#   fuzz          a GPU fuzzing campaign (MOECHECK_FUZZ_SECONDS, default 120; resumable state in OUTDIR)
#   mutants       the kill matrix on the GPU (all kernel mutants, GPU-only ones included;
#                 MOECHECK_MUTANTS_CASES: cases per mutant and variant, default 1000)
#   bench         Google Benchmark routing benchmarks -> OUTDIR/bench.json + dashboard
#   sanitize      compute-sanitizer memcheck and racecheck on a representative GPU test run
#   profile       Nsight Compute reports of the large-T kernels (MOECHECK_PROFILE_FILTER: a
#                 benchmark-name regex) -> OUTDIR/profile-*.txt
#   python        `pip install ./python` with the machine's Python (offline: no build isolation)
#                 into OUTDIR/python/site, then the Python tests: the CPU ones and, printing
#                 each campaign, the gpu-marked ones (the Triton router under device="cuda")
# Logs go to OUTDIR/<step>.log; a summary table is printed last.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:?usage: scripts/gpu.sh OUTDIR [STEPS]}"
steps=",${2:-build,tests,substitution,fuzz,mutants,bench},"
mkdir -p "$out"
py="${MOECHECK_PYTHON:-/opt/torch/.venv/bin/python}"
[[ -x "$py" ]] || py=python3
sysroot="$root/.deps/sysroot"
build="$root/build/cuda"
bin="$build/harness/moecheck"
export LD_LIBRARY_PATH="$sysroot/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
declare -a summary

step() {  # step NAME CMD...
  local name="$1"; shift
  local t0=$(date +%s)
  echo "=== $name: $*" >&2
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  summary+=("$(printf '%-14s rc=%-3s %5ss' "$name" "$rc" "$(( $(date +%s) - t0 ))")")
  tail -n 25 "$out/$name.log" >&2
  return $rc
}

if [[ "$steps" == *,build,* ]]; then
  [[ -d "$sysroot/usr" ]] || { echo "missing $sysroot: run scripts/gpu_deps.sh and carry .deps/sysroot" >&2; exit 2; }
  torch_prefix="$("$py" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
  step configure cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOECHECK_CUDA=ON \
    -DMOECHECK_TORCH_CUDA=AUTO -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DCMAKE_PREFIX_PATH="$torch_prefix;$sysroot/usr" || { printf '%s\n' "${summary[@]}"; exit 1; }
  step build cmake --build "$build" -j "$(nproc)" || { printf '%s\n' "${summary[@]}"; exit 1; }
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv > "$out/device.txt" 2>&1

if [[ "$steps" == *,tests,* ]]; then
  step tests-gpu ctest --test-dir "$build" -L gpu --output-on-failure --output-junit "$out/ctest-gpu.xml"
  step tests-quick ctest --test-dir "$build" -L quick -j 8 --output-on-failure --output-junit "$out/ctest-quick.xml"
fi
if [[ "$steps" == *,substitution,* ]]; then
  step substitution "$bin" substitution --device cuda --cases 200 --variant all --mode all \
    --corpus "$out/subst-corpus" --json "$out/substitution.json"
  step substitution-fused "$bin" substitution --device cuda --backend fused --cases 200 --variant all --mode all \
    --corpus "$out/subst-corpus" --json "$out/substitution-fused.json"
fi
if [[ "$steps" == *,fuzz,* ]]; then
  # One campaign per kernel variant, each split into MOECHECK_FUZZ_SHARDS shards that run in
  # parallel (the oracle runs on the host's cores; the shards share the GPU). Resumable: the
  # state files live in OUTDIR/fuzz and a later call with the same OUTDIR continues them.
  shards="${MOECHECK_FUZZ_SHARDS:-4}"
  secs="${MOECHECK_FUZZ_SECONDS:-120}"
  fdir="$out/fuzz"
  mkdir -p "$fdir"
  t0=$(date +%s)
  pids=()
  for v in warp_per_row block_per_row thread_per_row; do
    for ((i = 0; i < shards; i++)); do
      st="$fdir/state-$v-$i.json"
      resume=()
      [[ -f "$st" ]] && resume=(--resume)
      "$bin" fuzz --target "cuda:$v" --seconds "$secs" --seed "${MOECHECK_FUZZ_SEED:-20261124}" --shard "$i/$shards" \
        --max-T 300000 --no-progress --state "$st" "${resume[@]}" --corpus "$fdir/corpus" \
        --json "$fdir/campaign-$v-$i.json" --junit "$fdir/campaign-$v-$i.xml" > "$fdir/fuzz-$v-$i.log" 2>&1 &
      pids+=($!)
    done
  done
  rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  "$py" - "$fdir" > "$out/fuzz.log" 2>&1 <<'PY' || rc=1
import glob, json, sys
tot = {"cases": 0, "rows": 0, "skipped": 0, "failures": 0}
for f in sorted(glob.glob(sys.argv[1] + "/campaign-*.json")):
    j = json.load(open(f))
    c = j.get("totals", j)
    line = {k: c.get(k, 0) if not isinstance(c.get(k), list) else len(c.get(k)) for k in tot}
    for k in tot: tot[k] += line[k]
    print(f.split("/")[-1], line)
print("TOTAL", tot)
PY
  summary+=("$(printf '%-14s rc=%-3s %5ss' fuzz "$rc" "$(( $(date +%s) - t0 ))")")
  cat "$out/fuzz.log" >&2
  tail -n 3 "$fdir"/fuzz-*.log >&2
fi
if [[ "$steps" == *,mutants,* ]]; then
  # Kernel mutants only (the module and plugin mutants run on the host: the CPU matrix);
  # MOECHECK_MUTANTS_CASES: case budget per mutant and variant (default 1000: each mutant runs
  # one campaign per variant, up to 4 unique failures, so the budget sets the step's length).
  step mutants "$bin" mutants --device cuda --cases "${MOECHECK_MUTANTS_CASES:-1000}" --no-modules --no-plugins \
    --json "$out/mutants.json" --markdown "$out/mutants.md" --corpus "$out/mutant-corpus"
fi
if [[ "$steps" == *,bench,* ]]; then
  step bench "$bin" bench -o "$out/bench.json" --repetitions "${MOECHECK_BENCH_REPS:-5}" ${MOECHECK_BENCH_FILTER:+--filter "$MOECHECK_BENCH_FILTER"}
  if [[ "${MOECHECK_BENCH_RERUN:-1}" == 1 ]]; then
    # An unchanged rerun, compared against the first run: the regression gate must stay quiet.
    step bench-rerun "$bin" bench -o "$out/bench-rerun.json" --repetitions "${MOECHECK_BENCH_REPS:-5}" ${MOECHECK_BENCH_FILTER:+--filter "$MOECHECK_BENCH_FILTER"}
    step dashboard "$bin" report --baseline "$out/bench.json" "$out/bench-rerun.json" -o "$out/dashboard.html"
  else
    step dashboard "$bin" report "$out/bench.json" -o "$out/dashboard.html"
  fi
fi
if [[ "$steps" == *,sanitize,* ]]; then
  cs=compute-sanitizer
  command -v $cs >/dev/null || cs=/usr/local/cuda/bin/compute-sanitizer
  for v in warp_per_row block_per_row thread_per_row; do
    step "memcheck-$v" $cs --tool memcheck --error-exitcode 9 "$bin" fuzz --target "cuda:$v" --cases 150 --seed 7 \
      --max-T 3000 --no-progress --corpus "$out/san-corpus"
    step "racecheck-$v" $cs --tool racecheck --error-exitcode 9 "$bin" fuzz --target "cuda:$v" --cases 40 --seed 8 \
      --max-T 300 --no-progress --corpus "$out/san-corpus"
  done
fi
if [[ "$steps" == *,profile,* ]]; then
  # One profiled launch (the third) per benchmark in MOECHECK_PROFILE (';'-separated
  # benchmark-name regexes), full section set, clocks left as they are.
  ncu_bin=ncu
  command -v $ncu_bin >/dev/null || ncu_bin=/usr/local/cuda/bin/ncu
  bench_bin="$build/bench/moecheck_routing_bench"
  IFS=';' read -ra filters <<< "${MOECHECK_PROFILE:-variant:thread_per_row/dtype:bf16/E:128/k:8/T:250000/;variant:thread_per_row/dtype:f32/E:128/k:8/T:250000/}"
  i=0
  for filt in "${filters[@]}"; do
    step "profile-$i" $ncu_bin --clock-control none --set full --import-source no \
      -k regex:'thread_per_row|warp_per_row|block_per_row' --launch-skip 2 --launch-count 1 --page details \
      "$bench_bin" --benchmark_filter="$filt" --benchmark_min_time=0.001 --benchmark_repetitions=1
    i=$((i + 1))
  done
fi
if [[ "$steps" == *,python,* ]]; then
  pyout="$out/python"
  rm -rf "$pyout/site"
  step python-install "$py" -m pip install --no-build-isolation --no-deps --no-index --disable-pip-version-check \
    --target "$pyout/site" -Cbuild-dir="$pyout/build" -Ccmake.define.CMAKE_PREFIX_PATH="$sysroot/usr" ./python
  pyenv=(env PYTHONPATH="$pyout/site" MOECHECK_SOURCE_DIR="$root" PYTHONDONTWRITEBYTECODE=1)
  [[ -x "$bin" ]] && pyenv+=(MOECHECK_CLI="$bin")
  pytest_args=(-p no:cacheprovider -c python/pyproject.toml --rootdir python --basetemp "$pyout/tmp")
  step python-tests "${pyenv[@]}" "$py" -m pytest "${pytest_args[@]}" -rs -q -m "not gpu" python/tests
  step python-gpu "${pyenv[@]}" "$py" -m pytest "${pytest_args[@]}" -rs -v -s -m gpu python/tests
fi
echo "=== summary ($(cat "$out/device.txt" | tail -n 1))"
printf '%s\n' "${summary[@]}"
