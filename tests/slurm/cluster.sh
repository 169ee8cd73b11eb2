#!/usr/bin/env bash
# One-node Slurm cluster (slurmctld + slurmd + munged on localhost) for tests.
# Usage: bash tests/slurm/cluster.sh [start [--install]|stop|status]      (default: start)
# Debian 12 (Slurm 22.05), no systemd and policy-rc.d blocks service starts, so the
# daemons are started directly.  `start` is idempotent: on a running cluster it only checks.
# No slurmdbd, so `sacct` does not work: use squeue/scontrol (MinJobAge keeps finished
# jobs there for 5 min).  Logs: /var/log/slurm/*.log, /var/log/munge/munged.log.
#
# It leaves a real Slurm alone: before it changes anything it refuses, in one line, where a
# slurm.conf it did not write exists ($SLURM_CONF, Slurm's own variable, or /etc/slurm/slurm.conf)
# or a slurmctld runs that it did not start. Debian's slurm-wlm and munge are installed only with
# --install (what CI asks for).
set -euo pipefail

CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
MARK="# Written by tests/slurm/cluster.sh -- one-node test cluster; edits are overwritten."
ACTION=${1:-start}
INSTALL=0
[[ ${2:-} == --install ]] && INSTALL=1

ours() { [[ -f $CONF ]] && [[ $(head -n 1 "$CONF") == "$MARK" ]]; }
refuse() { echo "slurm: $*; nothing changed" >&2; exit 1; }

if [[ $ACTION == start || $ACTION == stop ]]; then   # read-only checks first, before root or sudo
  if [[ -e $CONF ]] && ! ours; then
    refuse "$CONF exists and was not written by this script (a real Slurm?); it leaves it alone (SLURM_CONF=<another path> runs a test cluster beside it)"
  fi
  if ! ours && ps -C slurmctld -o stat= 2>/dev/null | grep -qv "^Z"; then
    refuse "a slurmctld runs that this script did not start (no $CONF of its own); it leaves it alone"
  fi
fi

if [[ $EUID -ne 0 ]]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then exec sudo -n env SLURM_CONF="$CONF" bash "$0" "$@"; fi
  echo "slurm: cluster.sh must run as root (or with passwordless sudo)" >&2; exit 1
fi
export SLURM_CONF=$CONF   # the daemons and the client commands below read this configuration
LOGS=(/var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log /var/log/munge/munged.log)

die() {  # show the logs that explain a failure, then one clear line
  for f in "${LOGS[@]}"; do [[ -f $f ]] && { echo "--- tail $f" >&2; tail -n 20 "$f" >&2; }; done
  echo "slurm: $*" >&2; exit 1
}
running() { ps -C "$1" -o stat= | grep -v "^Z" >/dev/null; }   # ignore zombies of daemonizing parents
node_state() { sinfo -h -n localhost -o %T 2>/dev/null | head -n1; }
node_ok() { [[ $(node_state) =~ ^(idle|mixed|allocated|completing)$ ]]; }

wait_gone() { for _ in $(seq 50); do running "$1" || return 0; sleep 0.2; done; return 1; }

stop() {
  scontrol shutdown >/dev/null 2>&1 || true   # lets slurmctld save its state
  local d sig
  for d in slurmd slurmctld munged; do
    [[ $d == munged ]] || wait_gone "$d" || true
    for sig in TERM KILL; do                   # still there: TERM, then KILL
      running "$d" || break
      kill -s "$sig" $(pgrep -x -r D,R,S,T "$d") 2>/dev/null || true
      wait_gone "$d" || true
    done
  done
  echo "slurm: stopped"
}

start() {
  # 1. Packages, only when asked (--install) and a daemon binary is missing (apt-get update only if needed).
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    ((INSTALL)) || refuse "slurmctld, slurmd or munged is not installed; run with --install to apt-get install slurm-wlm munge"
    local pkgs=(slurm-wlm munge)
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${pkgs[@]}" >/tmp/slurm-apt.log 2>&1 \
      || { apt-get update >>/tmp/slurm-apt.log 2>&1 && apt-get install -y --no-install-recommends "${pkgs[@]}" >>/tmp/slurm-apt.log 2>&1; } \
      || { tail -n 20 /tmp/slurm-apt.log >&2; echo "slurm: apt-get install ${pkgs[*]} failed" >&2; exit 1; }
  fi

  # 2. Munge: key (only if absent); munged runs as user munge (Debian's default), which
  #    then insists that its key, state, log and socket directories are owned by munge.
  mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge /var/log/slurm /var/spool/slurmctld /var/spool/slurmd
  [[ -s /etc/munge/munge.key ]] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
  chmod 400 /etc/munge/munge.key
  if ! running munged; then runuser -u munge -- munged || die "munged failed to start"; fi
  for _ in $(seq 25); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
  munge -n | unmunge >/dev/null 2>&1 || die "munge credentials do not work (munge -n | unmunge)"

  # 3. slurm.conf, rewritten only when its content differs so a running cluster is left alone.
  local mem_mb new changed=0 cpus
  # the machine's cores, whatever OMP_NUM_THREADS a caller set (GNU nproc obeys it; the tests set it
  # to share the cores between pytest's workers)
  cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
  mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)   # a bit under MemTotal
  new=$(cat <<EOF
$MARK
ClusterName=w2s-test
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
# Schedule every second (defaults: 60 s main loop, 30 s backfill) so tests do not wait.
SchedulerParameters=sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# scancel: SIGKILL follows SIGTERM after 5 s; finished jobs stay in squeue/scontrol 5 min.
KillWait=5
MinJobAge=300
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=localhost CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
)
  if [[ ! -f $CONF || $(cat "$CONF") != "$new" ]]; then
    mkdir -p "$(dirname "$CONF")"; printf '%s\n' "$new" >"$CONF"; changed=1
  fi
  if ((changed)) && { running slurmctld || running slurmd; }; then
    echo "slurm: slurm.conf changed, restarting slurmctld/slurmd"
    scontrol shutdown >/dev/null 2>&1 || true
    { wait_gone slurmctld && wait_gone slurmd; } || die "slurmctld/slurmd did not shut down for the restart"
  fi

  # 4. Daemons.  The hostname is not "localhost", so slurmd is told its node name.
  if ! running slurmctld; then slurmctld -f "$CONF" || die "slurmctld failed to start"; fi
  if ! running slurmd; then slurmd -f "$CONF" -N localhost || die "slurmd failed to start"; fi

  # 5. Wait for the node to be usable; resume it if a previous run left it down/drained.
  for _ in $(seq 60); do
    node_ok && break
    [[ $(node_state) =~ ^(down|drain|drained|draining|fail) ]] \
      && scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
    sleep 0.5
  done
  node_ok || die "node localhost not idle after 30 s (state: $(node_state || echo '?'))"

  # 6. End-to-end check: a one-task job step must run (skipped while jobs fill the
  #    node, where it would just queue; running jobs already show the cluster works).
  if [[ ! $(node_state) =~ ^(allocated|completing)$ ]]; then
    timeout 60 srun -n1 -t 1 true || die "srun -n1 -t 1 true failed"
  fi
  local ver; ver=$(sinfo -V | awk '{print $2}')
  echo "slurm: one-node cluster up (Slurm $ver, $cpus CPUs, partition debug)"
}

status() {
  sinfo || true
  node_ok
}

case "$ACTION" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 [start [--install]|stop|status]" >&2; exit 2 ;;
esac
