#!/bin/bash
# train-mpirun.sh — the same training job without Slurm: mpirun on this machine or on a
# hostfile, and a restart loop that resumes after a preemption (exit 75).
#
#   jobs/train-mpirun.sh CONFIG.toml [--set section.key=value]...
#   NP=8 HOSTFILE=hosts.txt jobs/train-mpirun.sh configs/sdxl-dog.toml
#
# Environment:
#   NP            ranks (default: 1); one per GPU
#   HOSTFILE      Open MPI hostfile (default: this machine only)
#   SDXL_BIN      the binary (default: build/sdxl-dreambooth of this checkout, else PATH)
#   MAX_RESTARTS  how often a preempted run is resumed (default: 3; 0 = never)
#   MPIRUN_ARGS   extra mpirun arguments, e.g. "--oversubscribe" or "-x NCCL_DEBUG"
# Site switches, as in train.sbatch: export HDF5_USE_FILE_LOCKING=FALSE on Lustre/GPFS.
# SIGUSR1/SIGTERM sent to this script reach every rank through mpirun: they checkpoint at
# the next step and exit with 75; after SIGTERM (or Ctrl-C) the script exits with 75 too.
#   SDXL_STATUS_DIR  where the run's status file goes (default: this checkout, or $TMPDIR when
#                    it is read-only and there is no HOSTFILE; with HOSTFILE a folder every host sees)
set -uo pipefail

# A launcher that starts this script with TERM or USR1 blocked (bash keeps an inherited mask,
# and its traps would then never run) gets it again, once, with them unblocked. (INT is not
# looked at: bash blocks it itself while it waits for a command substitution such as this one.)
blocked=$(awk '/^SigBlk:/ {print $2}' /proc/$$/status 2>/dev/null || true)
if [ -z "${SDXL_MPIRUN_UNBLOCKED:-}" ] && [ -n "$blocked" ] &&
   (( (16#$blocked >> 14 & 1) | (16#$blocked >> 9 & 1) )); then
  export SDXL_MPIRUN_UNBLOCKED=1
  exec perl -MPOSIX -e 'sigprocmask(SIG_UNBLOCK, POSIX::SigSet->new(SIGTERM, SIGUSR1, SIGINT)) or die "sigprocmask: $!\n";
                        exec {$ARGV[0]} @ARGV or die "train-mpirun.sh: cannot run $ARGV[0]: $!\n"' bash "$0" "$@"
fi
unset SDXL_MPIRUN_UNBLOCKED blocked

if [ $# -lt 1 ]; then
  echo "usage: jobs/train-mpirun.sh CONFIG.toml [--set section.key=value]..." >&2
  exit 2
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${SDXL_BIN:-$root/build/sdxl-dreambooth}
[ -x "$bin" ] || bin=$(command -v sdxl-dreambooth || true)
if [ -z "$bin" ]; then
  echo "train-mpirun.sh: sdxl-dreambooth not found (build it, or set SDXL_BIN)" >&2
  exit 2
fi
args=(--np "${NP:-1}")
[ "$(id -u)" = 0 ] && args+=(--allow-run-as-root)
[ -n "${HOSTFILE:-}" ] && args+=(--hostfile "$HOSTFILE")
# shellcheck disable=SC2206
args+=(${MPIRUN_ARGS:-})
# CPU threads: OMP_NUM_THREADS when set; otherwise the program divides each rank's affinity
# mask among the ranks that share it (mpirun binds each of 2 ranks to a core, more to a socket).

# mpirun exits 1 when it was signalled itself, whatever the ranks did; the program's first rank
# writes "started", then "exit N" to SDXL_STATUS_FILE (a folder every host sees: SDXL_STATUS_DIR,
# default this checkout), so the loop acts on the program's own exit code.
status_dir=${SDXL_STATUS_DIR:-$root}
# A read-only checkout (an installed copy) on one machine: its temporary folder will do.
[ -n "${SDXL_STATUS_DIR:-}" ] || [ -w "$status_dir" ] || [ -n "${HOSTFILE:-}" ] || status_dir=${TMPDIR:-/tmp}
export SDXL_STATUS_FILE=$status_dir/.sdxl-dreambooth-mpirun-$$.status
# The traps come first, so that a signal at any moment leaves no status file behind. A stop
# asked for before mpirun runs ends the script with 75 (nothing ran, nothing is lost).
pid= stop=0
trap 'rm -f "$SDXL_STATUS_FILE"' EXIT
trap 'if [ -n "$pid" ]; then kill -USR1 $pid 2>/dev/null; else stop=1; fi' USR1
trap 'stop=1; [ -z "$pid" ] || kill -TERM $pid 2>/dev/null' TERM INT
if ! : 2>/dev/null > "$SDXL_STATUS_FILE"; then
  echo "train-mpirun.sh: cannot write $SDXL_STATUS_FILE; set SDXL_STATUS_DIR to a writable folder" \
       "that every host sees" >&2
  exit 2
fi
args+=(-x SDXL_STATUS_FILE)

restarts=0
extra=()
while :; do
  : > "$SDXL_STATUS_FILE"
  if [ $stop = 1 ]; then
    echo "train-mpirun.sh: asked to stop before sdxl-dreambooth started: nothing to save, treated as a" \
         "preemption" >&2
    exit 75
  fi
  # mpirun in a session of its own: a signal to this script's process group (Ctrl-C, a
  # scheduler stopping the group) reaches it once, through the traps — a second signal would
  # make mpirun abort the ranks instead of letting them checkpoint.
  setsid mpirun "${args[@]}" "$bin" train "$@" "${extra[@]}" &
  pid=$!
  while :; do
    wait $pid
    rc=$?
    kill -0 $pid 2>/dev/null || break
  done
  status=$(cat "$SDXL_STATUS_FILE" 2>/dev/null)
  case "$status" in
    "exit "*) rc=${status#exit } ;;
    "")
      # Stopped by TERM or USR1 (128 + 15 or 10) before the program started: nothing ran.
      if [ $stop = 1 ] || [ $rc -eq 143 ] || [ $rc -eq 138 ]; then
        echo "train-mpirun.sh: asked to stop before sdxl-dreambooth started (mpirun exit code $rc):" \
             "nothing to save, treated as a preemption" >&2
        rc=75
      fi ;;
  esac
  if [ $rc -ne 75 ] || [ $stop = 1 ] || [ $restarts -ge "${MAX_RESTARTS:-3}" ]; then
    exit $rc
  fi
  restarts=$((restarts + 1))
  echo "train-mpirun.sh: preempted after a checkpoint; resuming (restart $restarts)"
  extra=(--set 'checkpoint.resume="latest"')
done
