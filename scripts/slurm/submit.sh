#!/usr/bin/env bash
# Submits a moecheck campaign to Slurm: a job array with one task per shard and a merge job
# that runs once every task has ended.
#
#   scripts/slurm/submit.sh --shards N --out DIR [options] -- [moecheck fuzz flags...]
#
#   --shards N        number of shards = array tasks (task i runs --shard i/N)
#   --out DIR         campaign folder on a filesystem every node sees (created)
#   --moecheck PATH   the moecheck executable (default: moecheck on PATH), also on every node
#   --gpu | --no-gpu  ask each task for one GPU (--gres=gpu:1); default: when the fuzz flags
#                     name a CUDA target (--target cuda:..., composite:cuda, --device cuda)
#   --max-parallel M  run at most M tasks at once (--array=0-(N-1)%M)
#   --sbatch ARG      extra sbatch argument for every job (repeatable), e.g. --sbatch=--time=2:00:00
#   --dry-run         print the two sbatch commands instead of submitting
#
# Prints the two job ids ("ARRAY_ID MERGE_ID") on stdout. Results: DIR/campaign.{json,xml,html},
# DIR/corpus/merged/, per shard DIR/shards/ and DIR/logs/shard-<i>.log. A requeued task
# resumes from its state file; resubmitting a single task keeps its shard:
#   sbatch --array=2 --export=ALL,MOECHECK_OUT=DIR,MOECHECK_SHARDS=N,MOECHECK_BIN=... campaign.sbatch FLAGS
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The comment block at the top of this file; exit status $1 (default 2).
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2; exit "${1:-2}"; }
die() { echo "submit.sh: $*" >&2; exit 2; }

shards="" out="" bin="moecheck" gpu="auto" max_parallel="" dry=0
extra=()
while (($#)); do
  case "$1" in
    --shards) shards="${2:-}"; shift 2 || die "--shards needs a value" ;;
    --shards=*) shards="${1#*=}"; shift ;;
    --out) out="${2:-}"; shift 2 || die "--out needs a value" ;;
    --out=*) out="${1#*=}"; shift ;;
    --moecheck) bin="${2:-}"; shift 2 || die "--moecheck needs a value" ;;
    --moecheck=*) bin="${1#*=}"; shift ;;
    --gpu) gpu=1; shift ;;
    --no-gpu) gpu=0; shift ;;
    --max-parallel) max_parallel="${2:-}"; shift 2 || die "--max-parallel needs a value" ;;
    --max-parallel=*) max_parallel="${1#*=}"; shift ;;
    --sbatch) extra+=("${2:-}"); shift 2 || die "--sbatch needs a value" ;;
    --sbatch=*) extra+=("${1#*=}"); shift ;;
    --dry-run) dry=1; shift ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    *) die "unknown option '$1' (fuzz flags go after --)" ;;
  esac
done
fuzz=("$@")

[[ "$shards" =~ ^[1-9][0-9]*$ ]] || die "--shards must be a positive integer, got '$shards'"
[[ -n "$out" ]] || die "--out DIR is required"
[[ -z "$max_parallel" || "$max_parallel" =~ ^[1-9][0-9]*$ ]] || die "--max-parallel must be a positive integer"
for f in "${fuzz[@]}"; do
  case "$f" in
    --shard|--shard=*|--json|--json=*|--junit|--junit=*|--corpus|--corpus=*|--state|--state=*|--resume)
      die "'$f' is set per shard by the job script; leave it out" ;;
  esac
done
if [[ "$bin" == */* ]]; then
  bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
else
  resolved="$(command -v "$bin" || true)"
  [[ -n "$resolved" ]] || ((dry)) || die "'$bin' is not on PATH (use --moecheck PATH)"
  bin="${resolved:-$bin}"
fi
[[ $dry == 1 || -x "$bin" ]] || die "'$bin' is not executable"
mkdir -p "$out/logs" "$out/shards"
out="$(cd "$out" && pwd)"

# A CUDA target needs a GPU per task.
if [[ "$gpu" == auto ]]; then
  gpu=0
  for ((k = 0; k < ${#fuzz[@]}; k++)); do
    f="${fuzz[k]}"
    next="${fuzz[k + 1]:-}"
    case "$f" in
      --target|-t) [[ "$next" == cuda:* || "$next" == composite:cuda ]] && gpu=1 ;;
      --target=cuda:*|--target=composite:cuda) gpu=1 ;;
      --device) [[ "$next" == cuda ]] && gpu=1 ;;
      --device=cuda) gpu=1 ;;
    esac
  done
fi

array="0-$((shards - 1))${max_parallel:+%$max_parallel}"
env_list="ALL,MOECHECK_OUT=$out,MOECHECK_SHARDS=$shards,MOECHECK_BIN=$bin"
shard_cmd=(sbatch --parsable --array="$array" --output="$out/logs/shard-%a.log" --export="$env_list")
((gpu)) && shard_cmd+=(--gres=gpu:1)
shard_cmd+=("${extra[@]}" "$here/campaign.sbatch" "${fuzz[@]}")
merge_cmd=(sbatch --parsable --output="$out/logs/merge.log" --export="$env_list" --kill-on-invalid-dep=yes)
merge_cmd+=("${extra[@]}")

if ((dry)); then
  printf '%q ' "${shard_cmd[@]}"; echo
  printf '%q ' "${merge_cmd[@]}" --dependency=afterany:ARRAY_ID "$here/merge.sbatch"; echo
  exit 0
fi
command -v sbatch >/dev/null || die "sbatch not found: is this a Slurm login node?"
array_id="$("${shard_cmd[@]}")"
array_id="${array_id%%;*}"
merge_id="$("${merge_cmd[@]}" --dependency="afterany:$array_id" "$here/merge.sbatch")"
merge_id="${merge_id%%;*}"
echo "submitted $shards shards as array job $array_id, merge job $merge_id; results in $out" >&2
echo "$array_id $merge_id"
