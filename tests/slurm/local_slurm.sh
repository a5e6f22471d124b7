#!/bin/bash
# local_slurm.sh — a single-node Slurm (munge + slurmctld + slurmd, no systemd) on localhost
# for the `slurm` tests. Needs root and Debian's munge, slurmctld, slurmd, slurm-client and
# libpmix-dev (scripts/install-deps.sh installs them).
#
#   tests/slurm/local_slurm.sh up PREFIX     start; writes PREFIX/env.sh (SLURM_CONF)
#   tests/slurm/local_slurm.sh down PREFIX   stop what `up` started, by PID, and nothing else
#
# The daemons run in their own sessions with PID files under PREFIX/run; a munged that was
# already running is used and left alone.
set -euo pipefail
cmd=${1:?usage: local_slurm.sh up|down PREFIX}
prefix=${2:?usage: local_slurm.sh up|down PREFIX}
export SLURM_CONF=$prefix/etc/slurm.conf
say() { echo "[local_slurm $(date +%T)] $*"; }

alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
stop() {  # NAME PIDFILE
  local f=$2 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 80); do alive "$pid" || break; sleep 0.25; done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null
    say "$1 ($pid) stopped"
  fi
  rm -f "$f"
}

if [ "$cmd" = down ]; then
  if [ -s "$prefix/run/slurmctld.pid.bg" ] && alive "$(cat "$prefix/run/slurmctld.pid.bg")"; then
    scancel --partition=test 2>/dev/null || true
    for _ in $(seq 40); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.25; done
  fi
  stop slurmd "$prefix/run/slurmd.pid.bg"
  stop slurmctld "$prefix/run/slurmctld.pid.bg"
  stop munged "$prefix/run/munged.pid.ours"
  exit 0
fi
[ "$cmd" = up ] || { echo "local_slurm.sh: unknown command $cmd" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "local_slurm.sh: needs root (slurmd runs jobs as their user)" >&2; exit 1; }
for tool in munged slurmctld slurmd sbatch; do
  command -v "$tool" >/dev/null || { echo "local_slurm.sh: $tool missing (run scripts/install-deps.sh)" >&2; exit 1; }
done
mkdir -p "$prefix"/{etc,state,spool,log,run}

# munge: a key, its runtime folder, and a daemon unless one already answers.
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  cp /run/munge/munged.pid "$prefix/run/munged.pid.ours"
  munge -n | unmunge >/dev/null
fi

node=$(hostname -s)
nodeline=$(slurmd -C | head -1 | sed -e 's/ UpTime=.*//' -e "s/^NodeName=[^ ]*/NodeName=$node/")
cat > "$SLURM_CONF" <<CONF
ClusterName=sdxltest
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MailProg=/bin/true
StateSaveLocation=$prefix/state
SlurmdSpoolDir=$prefix/spool
SlurmctldPidFile=$prefix/run/slurmctld.pid
SlurmdPidFile=$prefix/run/slurmd.pid
SlurmctldLogFile=$prefix/log/slurmctld.log
SlurmdLogFile=$prefix/log/slurmd.log
$nodeline NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
echo "export SLURM_CONF=$SLURM_CONF" > "$prefix/env.sh"

setsid /usr/sbin/slurmctld -D -c >"$prefix/log/slurmctld.out" 2>&1 </dev/null &
echo $! > "$prefix/run/slurmctld.pid.bg"
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.2; done
scontrol ping | grep -q 'is UP' || { tail -20 "$prefix/log/slurmctld.log" >&2; exit 1; }
setsid /usr/sbin/slurmd -D -N "$node" >"$prefix/log/slurmd.out" 2>&1 </dev/null &
echo $! > "$prefix/run/slurmd.pid.bg"
for _ in $(seq 150); do [ "$(sinfo -h -n "$node" -o %T 2>/dev/null)" = idle ] && break; sleep 0.2; done
[ "$(sinfo -h -n "$node" -o %T)" = idle ] || { sinfo -R >&2; tail -20 "$prefix/log/slurmd.log" >&2; exit 1; }
say "up: slurmctld $(cat "$prefix/run/slurmctld.pid.bg"), slurmd $(cat "$prefix/run/slurmd.pid.bg"), node $node"
