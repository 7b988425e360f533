#!/usr/bin/env bash
# `moecheck merge` and `moecheck fuzz --workers/--devices` through the command line, on the
# kernel host emulation with a planted bug:
#   * four shards merged with `moecheck merge` equal one process's run (results, corpus entries),
#     the merged document renders with `moecheck report` and its corpus replays;
#   * mismatched, missing, duplicated and malformed shards exit 2 naming the problem;
#   * --workers 3 equals one process's run case for case (results and corpus);
#   * Ctrl-C (SIGINT to the parent) stops every worker, the results are still written;
#     killing the parent outright takes its workers with it;
#   * bad --devices / --workers values exit 2.
#
#   cli_test.sh MOECHECK_BINARY SOURCE_DIR
set -uo pipefail

bin="$(realpath "${1:?usage: cli_test.sh MOECHECK SOURCE_DIR}")"
src="$(realpath "${2:?usage: cli_test.sh MOECHECK SOURCE_DIR}")"
equal="$src/properties/distributed/campaign_equal.py"
work="$(mktemp -d /tmp/moecheck-cli-dist.XXXXXX)"
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
# expect RC REGEX CMD...: runs CMD, checks its exit status and that its output matches REGEX.
expect() {
  local want="$1" regex="$2"
  shift 2
  local out rc
  out="$("$@" 2>&1)"
  rc=$?
  [[ "$rc" == "$want" ]] || fail "exit $rc (expected $want): $*"$'\n'"$out"
  grep -Eq -- "$regex" <<<"$out" || fail "output of '$*' does not match '$regex':"$'\n'"$out"
  echo "ok (exit $rc): $*"
}

camp=(--target kernel:auto --mutant ignore_col_stride --seed 41 --max-failures 0 --no-progress)

# ---- shards merged by moecheck merge == one process
expect 1 "failures [1-9]" "$bin" fuzz "${camp[@]}" --cases 240 --json single.json --corpus c-single
for i in 0 1 2 3; do
  expect 1 "shard $i/4" "$bin" fuzz "${camp[@]}" --cases 60 --shard "$i/4" --json "s$i.json" --corpus "c-s$i"
done
expect 1 "merged 4 shards: cases [0-9]+" "$bin" merge s3.json s1.json s0.json s2.json --corpus c-s0 c-s1 c-s2 c-s3 \
  --into c-merged --json merged.json --junit merged.xml
python3 "$equal" single.json merged.json || fail "merged shards differ from the single run"
grep -q "<failure" merged.xml || fail "merged JUnit has no failure"
expect 0 "campaign report written" "$bin" report merged.json -o merged.html
grep -q "failures found" merged.html || fail "report of the merged campaign shows no failures"
expect 0 " 0 did not match" "$bin" replay c-merged
# Merging again into the same folder copies nothing.
expect 1 "0 copied" "$bin" merge s0.json s1.json s2.json s3.json --corpus c-s0 c-s1 c-s2 c-s3 --into c-merged
# A shard that found nothing has an empty corpus folder: merged like any other.
mkdir -p c-empty
expect 1 "0 copied" "$bin" merge s0.json s1.json s2.json s3.json --corpus c-s0 c-s1 c-s2 c-s3 c-empty --into c-merged

# ---- what cannot be merged: exit 2, the problem named
expect 1 "shard 1/4" "$bin" fuzz "${camp[@]/41/42}" --cases 60 --shard 1/4 --json other-seed.json --corpus c-other
expect 2 "field 'seed' differs" "$bin" merge s0.json other-seed.json s2.json s3.json --json x.json
expect 1 "shard 1/4" "$bin" fuzz "${camp[@]/ignore_col_stride/scale_by_slot}" --cases 60 --shard 1/4 --json other-mutant.json --corpus c-other
expect 2 "field 'mutant' differs" "$bin" merge s0.json other-mutant.json s2.json s3.json
expect 1 "shard 1/4" "$bin" fuzz "${camp[@]}" --max-T 99 --cases 60 --shard 1/4 --json other-gen.json --corpus c-other
expect 2 "field 'generator' differs" "$bin" merge s0.json other-gen.json s2.json s3.json
expect 2 "missing shard indices 2 of 4" "$bin" merge s0.json s1.json s3.json --json x.json
[[ ! -e x.json ]] || fail "a refused merge wrote results"
expect 1 "1 shard\(s\) missing" "$bin" merge s0.json s1.json s3.json --allow-partial --json partial.json
python3 -c 'import json,sys; d=json.load(open("partial.json")); sys.exit(0 if d["merged_from"]["missing"]==[2] and d["interrupted"] else 1)' \
  || fail "partial merge does not record the missing shard"
expect 2 "given more than once: 1" "$bin" merge s0.json s1.json s1.json s2.json s3.json
echo '{"schema": "moecheck-campaign/1"' > broken.json
expect 2 "not valid JSON" "$bin" merge s0.json broken.json
expect 2 "no such file|cannot read" "$bin" merge s0.json nonexistent.json
expect 2 "need a destination \(--into DIR\)" "$bin" merge s0.json s1.json s2.json s3.json --corpus c-s0
expect 2 "required|shards" "$bin" merge

# ---- --workers: one process's campaign split over processes, merged back
expect 1 " s \([0-9.]+k? cases/s, [0-9.]+[kMG]? rows/s\), 3 workers" "$bin" fuzz "${camp[@]}" --cases 240 --workers 3 --json workers.json --corpus c-workers
python3 "$equal" single.json workers.json || fail "--workers 3 differs from the single run"
[[ "$(ls c-workers | wc -l)" == "$(ls c-single | wc -l)" ]] || fail "--workers saved $(ls c-workers | wc -l) corpus files, one process $(ls c-single | wc -l)"
# A shard of a campaign in workers equals that shard in one process.
expect 1 "failures" "$bin" fuzz "${camp[@]}" --cases 101 --shard 1/3 --json shard.json --corpus c-shard
expect 1 "2 workers" "$bin" fuzz "${camp[@]}" --cases 101 --shard 1/3 --workers 2 --json shard-workers.json --corpus c-shard-workers
python3 "$equal" shard.json shard-workers.json || fail "--shard 1/3 --workers 2 differs from --shard 1/3"

# ---- Ctrl-C stops every worker; results are written and marked interrupted
"$bin" fuzz --target kernel:auto --seed 5 --seconds 60 --workers 2 --no-progress --json int.json --corpus c-int \
  >int.out 2>int.err &
parent=$!
for _ in $(seq 100); do grep -q "\[worker 1\] moecheck fuzz: target" int.err 2>/dev/null && break; sleep 0.1; done
workers="$(pgrep -P "$parent" | tr '\n' ' ')"
[[ -n "$workers" ]] || fail "no worker processes under $parent: $(cat int.err)"
kill -INT "$parent"
start=$SECONDS
wait "$parent"
rc=$?
((SECONDS - start < 20)) || fail "the workers took $((SECONDS - start)) s to stop"
for w in $workers; do kill -0 "$w" 2>/dev/null && fail "worker $w still runs after Ctrl-C"; done
python3 -c 'import json,sys; d=json.load(open("int.json")); sys.exit(0 if d["interrupted"] and d["cases"] > 0 else 1)' \
  || fail "interrupted --workers run wrote no interrupted results (exit $rc): $(cat int.err)"
# As one process: interrupted with no failure found is exit 4.
[[ "$rc" == 4 ]] || fail "interrupted --workers run exited $rc (expected 4): $(cat int.err)"
echo "ok: Ctrl-C stopped workers $workers (exit $rc), results written"

# Ctrl-C while the workers are still starting up (before their campaigns have signal handlers):
# the stop waits for them (stop signals are blocked until then), so every worker still writes its
# results and the run is "interrupted" (exit 4), never a worker killed by the forwarded SIGTERM.
for attempt in 1 2 3; do
  "$bin" fuzz --target kernel:auto --seed 7 --seconds 60 --workers 3 --no-progress --json early.json --corpus c-early \
    >early.out 2>early.err &
  parent=$!
  for _ in $(seq 200); do [[ -n "$(pgrep -P "$parent")" ]] && break; sleep 0.005; done
  kill -INT "$parent"
  wait "$parent"
  rc=$?
  grep -q "killed by signal\|signal 15" early.err && fail "a worker was killed by the forwarded stop (attempt $attempt): $(cat early.err)"
  [[ "$rc" == 4 ]] || fail "Ctrl-C during worker start-up exited $rc (expected 4; attempt $attempt): $(cat early.err)"
  python3 -c 'import json,sys; d=json.load(open("early.json")); sys.exit(0 if d["interrupted"] else 1)' \
    || fail "Ctrl-C during worker start-up wrote no interrupted results (attempt $attempt): $(cat early.err)"
  rm -rf early.json c-early
done
echo "ok: Ctrl-C during worker start-up (3 times): exit 4, results written"

# The parent killed outright: its workers die with it (their files stay in its TMPDIR folder).
mkdir -p tmp
TMPDIR="$work/tmp" "$bin" fuzz --target kernel:auto --seed 6 --seconds 60 --workers 2 --no-progress --corpus c-kill \
  >/dev/null 2>kill.err &
parent=$!
for _ in $(seq 100); do grep -q "\[worker 1\] moecheck fuzz: target" kill.err 2>/dev/null && break; sleep 0.1; done
workers="$(pgrep -P "$parent" | tr '\n' ' ')"
[[ -n "$workers" ]] || fail "no worker processes under $parent"
kill -KILL "$parent"
wait "$parent" 2>/dev/null
gone=0
for _ in $(seq 100); do
  alive=0
  for w in $workers; do kill -0 "$w" 2>/dev/null && [[ "$(awk '/^State:/ {print $2}' "/proc/$w/status" 2>/dev/null)" != Z ]] && alive=1; done
  ((alive)) || { gone=1; break; }
  sleep 0.1
done
((gone)) || fail "workers $workers outlived their killed parent"
echo "ok: workers $workers ended with their killed parent"

# ---- flag errors: exit 2, named
# Output paths are checked before any worker starts: nothing runs.
mkdir -p a-folder
expect 2 "--json 'a-folder': is a folder" "$bin" fuzz --target kernel:auto --cases 4 --workers 2 --json a-folder
grep -q "worker" <<<"$("$bin" fuzz --target kernel:auto --cases 4 --workers 2 --json a-folder 2>&1)" \
  && fail "workers started although --json names a folder"
expect 2 "is not a device ordinal" "$bin" fuzz --target kernel:auto --cases 1 --devices x
expect 2 "is not a device ordinal" "$bin" fuzz --target kernel:auto --cases 1 --devices 0,,1
expect 2 "expected 'all'" "$bin" fuzz --target kernel:auto --cases 1 --devices ""
expect 2 "listed twice" "$bin" fuzz --target kernel:auto --cases 1 --devices 0,0
expect 2 "device 4096 is not visible" "$bin" fuzz --target kernel:auto --cases 1 --devices 4096
expect 2 "excludes|exclude" "$bin" fuzz --target kernel:auto --cases 1 --devices 0 --workers 2
expect 2 "workers" "$bin" fuzz --target kernel:auto --cases 1 --workers 0
expect 2 "workers" "$bin" fuzz --target kernel:auto --cases 1 --workers many
expect 2 "first-case" "$bin" fuzz --target kernel:auto --cases 1 --first-case 3 --workers 2
expect 2 "substitution" "$bin" fuzz --target substitution --cases 1 --workers 2
if ! { command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; }; then
  expect 2 "--devices all: no CUDA device is visible" "$bin" fuzz --target kernel:auto --cases 1 --devices all
fi
echo "PASS"
