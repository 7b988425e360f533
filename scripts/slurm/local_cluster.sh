#!/usr/bin/env bash
# A throw-away single-node Slurm cluster on this machine: munged, slurmctld and slurmd on
# 127.0.0.1 with everything (config, munge key and socket, state, logs) under one folder. For
# trying scripts/slurm/ without a cluster, and for the `distributed` test.
#
#   scripts/slurm/local_cluster.sh up DIR [--cpus N] [--watch PID [--remove]]
#       starts it and prints the shell lines that point sbatch/squeue/... at it:
#         eval "$(scripts/slurm/local_cluster.sh up /tmp/slurm)"
#       --cpus N     CPUs the node offers (default: this machine's count)
#       --watch PID  a watchdog tears the cluster down when PID exits (with --remove it also
#                    deletes DIR), so a caller killed by a timeout still leaves nothing running
#   scripts/slurm/local_cluster.sh down DIR
#       cancels its jobs, stops its daemons and ends every process left from it
#
# Needs root (slurmd starts jobs as their owners) and Debian's slurm-wlm and munge packages
# (scripts/setup.sh installs them); no systemd: the daemons run in the foreground (-D, -F) in
# the background of this script, on free TCP ports with their own munge key and socket, so
# several such clusters run side by side and nothing under /etc is touched. Every process of
# the cluster carries MOECHECK_LOCAL_SLURM=DIR in its environment (jobs inherit it from the
# submitting shell): `down` ends exactly those, by pid, never the processes that called it.
# Exit status of `up`: 0 running, 77 Slurm cannot run here (message says why), 1 it failed to
# start (daemon logs printed).
set -uo pipefail

self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
log() { printf '[local-slurm] %s\n' "$*" >&2; }

# The comment block at the top of this file; exit status $1 (default 2).
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$self" >&2; exit "${1:-2}"; }

# Pids of processes whose environment holds MOECHECK_LOCAL_SLURM=$1, except this process and
# its ancestors.
cluster_pids() {
  local mark="MOECHECK_LOCAL_SLURM=$1" p
  local -A keep=()
  p=$$
  while [[ -n "$p" && "$p" != 0 ]]; do
    keep[$p]=1
    p="$(awk '/^PPid:/ {print $2}' "/proc/$p/status" 2>/dev/null)"
  done
  for d in /proc/[0-9]*; do
    p="${d#/proc/}"
    [[ -n "${keep[$p]:-}" ]] && continue
    if tr '\0' '\n' < "$d/environ" 2>/dev/null | grep -qxF -- "$mark"; then
      echo "$p"
    fi
  done
}

down() {
  local dir="$1"
  [[ -d "$dir" ]] || { log "no cluster folder '$dir'"; return 0; }
  dir="$(cd "$dir" && pwd)"
  if [[ -f "$dir/watchdog.pid" ]]; then
    local w
    w="$(cat "$dir/watchdog.pid")"
    # Stop the watchdog unless it is the one running this.
    if [[ "$w" != "$PPID" && "$w" != "$$" ]] && kill -0 "$w" 2>/dev/null; then kill "$w" 2>/dev/null; fi
    rm -f "$dir/watchdog.pid"
  fi
  if [[ -f "$dir/slurm.conf" ]] && command -v squeue >/dev/null; then
    export SLURM_CONF="$dir/slurm.conf"
    local jobs
    jobs="$(timeout 5 squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')"
    if [[ -n "${jobs// /}" ]]; then
      timeout 5 scancel $jobs 2>/dev/null
      for _ in $(seq 50); do
        [[ -z "$(timeout 5 squeue -h -o %A 2>/dev/null)" ]] && break
        sleep 0.2
      done
    fi
  fi
  local pids=()
  [[ -f "$dir/daemons.pid" ]] && mapfile -t pids < "$dir/daemons.pid"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 50); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  # Whatever is left: daemons that did not stop, slurmstepd, job processes.
  for p in "${pids[@]}" $(cluster_pids "$dir"); do kill -KILL "$p" 2>/dev/null; done
  rm -f "$dir/daemons.pid"
  log "stopped the cluster in $dir"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

up() {
  local dir="" cpus watch="" remove=0
  cpus="$(nproc)"
  while (($#)); do
    case "$1" in
      --cpus) cpus="${2:-}"; shift 2 ;;
      --watch) watch="${2:-}"; shift 2 ;;
      --remove) remove=1; shift ;;
      -*) log "unknown option '$1'"; usage ;;
      *) [[ -z "$dir" ]] || usage; dir="$1"; shift ;;
    esac
  done
  [[ -n "$dir" ]] || usage
  [[ "$cpus" =~ ^[1-9][0-9]*$ ]] || { log "--cpus must be a positive integer"; exit 2; }
  local missing=()
  for c in munged munge slurmctld slurmd sbatch squeue scontrol sinfo scancel python3; do
    command -v "$c" >/dev/null || missing+=("$c")
  done
  if ((${#missing[@]})); then
    log "Slurm cannot run here: missing ${missing[*]} (scripts/setup.sh installs slurm-wlm and munge)"
    exit 77
  fi
  if [[ "$(id -u)" != 0 ]]; then
    log "Slurm cannot run here: slurmd must run as root to start jobs (running as uid $(id -u))"
    exit 77
  fi

  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
  chmod 755 "$dir" "$dir/munge"
  export MOECHECK_LOCAL_SLURM="$dir"
  : > "$dir/daemons.pid"

  # munge: own key and socket.
  local sock="$dir/munge/munge.socket"
  head -c 1024 /dev/urandom > "$dir/munge/munge.key"
  chmod 400 "$dir/munge/munge.key"
  munged -F --force --socket="$sock" --key-file="$dir/munge/munge.key" \
    --log-file="$dir/log/munged.log" --pid-file="$dir/munge/munged.pid" --seed-file="$dir/munge/seed" \
    </dev/null >"$dir/log/munged.out" 2>&1 &
  echo $! >> "$dir/daemons.pid"

  if [[ -n "$watch" ]]; then
    # The watchdog has a session of its own (a process-group kill of the caller spares it) and
    # does not carry the cluster mark.
    env -u MOECHECK_LOCAL_SLURM setsid bash -c '
      while [[ -e "/proc/$1" ]] && ! grep -q "^State:[[:space:]]*Z" "/proc/$1/status" 2>/dev/null; do sleep 1; done
      bash "$2" down "$3"
      [[ "$4" == 1 ]] && rm -rf "$3"' watchdog "$watch" "$self" "$dir" "$remove" \
      </dev/null >/dev/null 2>&1 &
    echo $! > "$dir/watchdog.pid"
  fi

  local ok=0
  for _ in $(seq 100); do
    if [[ -S "$sock" ]] && munge -n --socket="$sock" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.1
  done
  if ((!ok)); then
    log "munged did not start:"; cat "$dir/log/munged.out" "$dir/log/munged.log" >&2 2>/dev/null
    down "$dir"; exit 1
  fi

  local host ctld_port slurmd_port
  host="$(hostname -s 2>/dev/null || echo localhost)"
  ctld_port="$(free_port)"
  slurmd_port="$(free_port)"
  while [[ "$slurmd_port" == "$ctld_port" ]]; do slurmd_port="$(free_port)"; done
  mkdir -p "$dir/spool/slurmd-$host"
  cat > "$dir/slurm.conf" <<EOF
# Generated by scripts/slurm/local_cluster.sh: a single-node cluster on 127.0.0.1.
ClusterName=moecheck-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/slurmd-%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
KillWait=10
Waittime=0
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -D -f "$SLURM_CONF" </dev/null >"$dir/log/slurmctld.out" 2>&1 &
  echo $! >> "$dir/daemons.pid"
  slurmd -D -f "$SLURM_CONF" -N "$host" </dev/null >"$dir/log/slurmd.out" 2>&1 &
  echo $! >> "$dir/daemons.pid"

  ok=0
  for _ in $(seq 300); do
    if [[ "$(timeout 5 sinfo -h -N -o %T 2>/dev/null)" == idle ]]; then ok=1; break; fi
    sleep 0.1
  done
  if ((!ok)); then
    log "the node did not come up (sinfo: $(timeout 5 sinfo -h -N -o '%T %E' 2>&1)); daemon logs:"
    tail -n 30 "$dir"/log/*.out "$dir"/log/*.log >&2 2>/dev/null
    down "$dir"; exit 1
  fi
  log "cluster up in $dir: node $host ($cpus CPUs), slurmctld port $ctld_port, slurmd port $slurmd_port"
  printf 'export SLURM_CONF=%q\nexport MOECHECK_LOCAL_SLURM=%q\n' "$SLURM_CONF" "$dir"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) shift; [[ $# == 1 ]] || usage; down "$1" ;;
  -h|--help) usage 0 ;;
  *) usage ;;
esac
