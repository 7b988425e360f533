#!/usr/bin/env bash
# A planted-mutant campaign through a real single-node Slurm cluster (ctest label `distributed`):
# scripts/slurm/submit.sh submits a 4-task job array and its dependent merge job to a cluster
# started here (scripts/slurm/local_cluster.sh); one task is requeued while it runs and must
# resume from its state file; the merged result must equal a single-process run of the same
# campaign (cases, rows, classes, every failure and its corpus entry), the merge job must report
# the failures (exit 1), and the merged corpus must replay.
#
#   slurm_test.sh MOECHECK_BINARY SOURCE_DIR
#
# Exit 77 (ctest SKIP_RETURN_CODE) only where Slurm cannot run: packages missing, not root.
set -uo pipefail

bin="$(realpath "${1:?usage: slurm_test.sh MOECHECK SOURCE_DIR}")"
src="$(realpath "${2:?usage: slurm_test.sh MOECHECK SOURCE_DIR}")"
t0=$(date +%s%N)
elapsed() { local ms=$((($(date +%s%N) - t0) / 1000000)); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
say() { echo "[slurm-test $(elapsed)s] $*"; }

work="$(mktemp -d /tmp/moecheck-slurm-test.XXXXXX)"
cluster="$work"  # the cluster's files live beside the campaign; its watchdog removes it all
reference_pid=""
finish() {
  local rc=$?
  [[ -n "$reference_pid" ]] && kill "$reference_pid" 2>/dev/null
  if ((rc != 0 && rc != 77)); then
    echo "---- logs (test failed with $rc) ----"
    for f in "$work"/campaign/logs/*.log "$cluster"/log/slurmctld.out "$cluster"/log/slurmd.out "$work"/single.log; do
      [[ -f "$f" ]] && { echo "== $f"; tail -n 40 "$f"; }
    done
  fi
  bash "$src/scripts/slurm/local_cluster.sh" down "$cluster" >/dev/null 2>&1
  rm -rf "$work"
  say "done (exit $rc)"
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM
fail() { say "FAIL: $*"; exit 1; }

# ---- the cluster (torn down by finish, or by its watchdog if this script is killed)
env_lines="$(bash "$src/scripts/slurm/local_cluster.sh" up "$cluster" --cpus 4 --watch $$ --remove 2>"$work/up.log")"
rc=$?
if ((rc == 77)); then
  echo "SKIP: $(sed 's/^\[local-slurm\] //' "$work/up.log")"
  exit 77
fi
((rc == 0)) || fail "the local Slurm cluster did not start (exit $rc): $(cat "$work/up.log")"
cat "$work/up.log"
eval "$env_lines"
say "cluster up: $(sinfo -h -N -o '%N %T %c CPUs')"

# ---- the campaign: kernel host emulation with a planted bug, no early stop
camp=(--target kernel:auto --mutant ignore_col_stride --seed 20261201 --max-failures 0)
per_shard=600
shards=4

# The single-process run of the same campaign, side by side with the cluster.
"$bin" fuzz "${camp[@]}" --cases $((per_shard * shards)) --no-progress \
  --json "$work/single.json" --corpus "$work/single-corpus" >"$work/single.log" 2>&1 &
reference_pid=$!

read -r array merge < <(bash "$src/scripts/slurm/submit.sh" --shards "$shards" --out "$work/campaign" \
  --moecheck "$bin" -- "${camp[@]}" --cases "$per_shard")
[[ "$array" =~ ^[0-9]+$ && "$merge" =~ ^[0-9]+$ ]] || fail "submit.sh did not print two job ids (got '$array' '$merge')"
say "array job $array, merge job $merge"

# ---- requeue task 1 while it runs: it must resume from its state file
task="${array}_1"
log1="$work/campaign/logs/shard-1.log"
# Its campaign has begun once moecheck printed its banner (the shard runs for a few seconds
# more); the log is polled often so that the requeue lands mid-campaign.
running=0
for _ in $(seq 3000); do
  if grep -q "moecheck fuzz: target" "$log1" 2>/dev/null; then
    running=1
    break
  fi
  sleep 0.02
done
((running)) || fail "task $task did not start its campaign within 60 s"
scontrol requeue "$task" || fail "scontrol requeue $task failed"
say "requeued $task while it ran"
# slurmd revokes the first attempt's job credential when the requeue kills it, and refuses a new
# launch whose credential is not strictly newer than that revocation, at a one-second resolution
# ("Killing non-startable batch JobId=..: Job credential revoked": the task then ends FAILED
# without a second attempt). So the task is released only after its first attempt has stopped
# (its interrupted summary is in the log) and the clock has moved on by more than a second.
for _ in $(seq 300); do
  grep -q "\[interrupted: resume with --resume" "$log1" 2>/dev/null && break
  sleep 0.1
done
sleep 2
# Slurm holds a requeued job back for a while (BeginTime); let it start again right away.
released=0
for _ in $(seq 300); do
  if [[ "$(squeue -h -j "$task" -o %T 2>/dev/null)" == PENDING ]]; then
    scontrol update JobId="$task" StartTime=now 2>/dev/null && { released=1; break; }
  fi
  sleep 0.1
done
((released)) || fail "requeued task $task did not return to the queue"

# ---- wait for the merge job (every task ended)
done_=0
for _ in $(seq 1500); do
  if [[ -z "$(squeue -h -j "$array,$merge" 2>/dev/null)" ]]; then done_=1; break; fi
  sleep 0.1
done
((done_)) || fail "jobs still queued after 150 s: $(squeue -h -o '%i %T %r' 2>&1)"
say "all jobs ended"
wait "$reference_pid"
reference_rc=$?
reference_pid=""
((reference_rc == 1)) || fail "the single-process run should find the planted bug (exit 1), got $reference_rc"

merge_info="$(scontrol show job "$merge")"
grep -q "ExitCode=1:0" <<<"$merge_info" || fail "merge job should exit 1 (failures found): $(grep -o 'JobState=[A-Z_]* .*ExitCode=[0-9:]*' <<<"$merge_info")"
for i in $(seq 0 $((shards - 1))); do
  info="$(scontrol show job "${array}_$i")"
  grep -q "ExitCode=0:0" <<<"$info" || fail "task ${array}_$i: $(grep -o 'JobState=[A-Z_]*' <<<"$info") $(grep -o 'ExitCode=[0-9:]*' <<<"$info" | head -1)"
done
grep -q "Restarts=1" <<<"$(scontrol show job "$task")" || fail "task $task was not restarted once"

# The requeued task resumed mid-campaign (not from the start, not after the end).
resumed="$(grep -o 'resuming at case [0-9]*' "$log1" | head -1 | awk '{print $4}')"
[[ -n "$resumed" ]] || fail "task $task did not resume from its state file: $(cat "$log1")"
final="$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["next_index"], d["interrupted"])' "$work/campaign/shards/shard-1.json")"
read -r final_next final_interrupted <<<"$final"
((resumed < final_next)) || fail "task $task resumed at case $resumed, after its campaign had ended ($final_next)"
[[ "$final_interrupted" == False ]] || fail "shard 1's final results are marked interrupted"
say "task $task resumed at case $resumed of its shard (which ends at $final_next)"

# ---- the merged campaign equals the single-process run, case for case
python3 "$src/properties/distributed/campaign_equal.py" "$work/single.json" "$work/campaign/campaign.json" \
  || fail "merged campaign differs from the single-process run"
python3 - "$work/campaign/campaign.json" <<'EOF' || fail "merged document"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["schema"] == "moecheck-campaign/1" and d["shard"] == {"index": 0, "count": 1}, d["shard"]
m = d["merged_from"]
assert [s["index"] for s in m["shards"]] == [0, 1, 2, 3] and m["missing"] == [] and m["duplicated"] == [], m
assert d["failures"] > 0 and m["cross_shard_duplicates"] > 0, (d["failures"], m["cross_shard_duplicates"])
EOF
[[ -s "$work/campaign/campaign.html" ]] || fail "no campaign.html"
grep -q "failures found" "$work/campaign/campaign.html" || fail "campaign.html does not show the failures"
"$bin" replay "$work/campaign/corpus/merged" >"$work/replay.log" 2>&1 || fail "merged corpus does not replay: $(tail -5 "$work/replay.log")"
say "PASS: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["cases"], "cases,", d["rows"], "rows,", d["failures"], "failures")' "$work/campaign/campaign.json") - merged shards equal the single-process run; $(tail -1 "$work/replay.log")"
exit 0
