#!/usr/bin/env bash
# multi_gpu.sh — issue 26's validation for the day a machine with 2-8 GPUs is lent (none has
# been yet). Run from the project root after `bash bench/gpu/checks.sh setup` built build-gpu/
# (carry .gpu/debs and .gpu/nccl as for checks.sh; no reference data needed):
#   bash bench/gpu/multi_gpu.sh [N]        # N ranks, one per GPU (default: every GPU)
# Each check prints what it expects beside what it saw; logs go to $OUT (or /tmp/gpu-out).
#   1. N ranks on NCCL under SDXL_DISTRIBUTED_DEBUG=detail with the weight check every step:
#      step 20/20, every rank issues the same collectives in the same order, and nvidia-smi
#      shows exactly one process per GPU while it runs.
#   2. N ranks at batch 1 against 1 rank at batch N: both finish; their losses (not bitwise:
#      each rank draws its own noise) side by side.
#   3. A stalled rank (SDXL_TEST_FAULT=stall:1:3, distributed.timeout_s = 30): the job ends
#      within about 30 s of step 3, naming the collective; a rank that exits (exit:1:3) ends it
#      within seconds.
#   4. Two ranks on one GPU (CUDA_VISIBLE_DEVICES=0 for both): a clear error before NCCL starts.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 1
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
bin=$root/build-gpu/sdxl-dreambooth
[ -x "$bin" ] || { echo "multi_gpu.sh: build first: bash bench/gpu/checks.sh setup" >&2; exit 2; }
gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
n=${1:-$gpus}
[ "$n" -ge 2 ] && [ "$n" -le "$gpus" ] || { echo "multi_gpu.sh: needs 2..$gpus ranks, got $n" >&2; exit 2; }
t0=$SECONDS
say() { printf '\n== [%4d s] %s\n' $((SECONDS - t0)) "$*"; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_plm_rsh_agent=false
export OMPI_MCA_btl_vader_single_copy_mechanism=none NCCL_DEBUG=WARN

# train_config (the tiny pipeline, 64 px, 20 steps on CUDA) comes from checks.sh, which runs no
# phase when given none.
# shellcheck source=bench/gpu/checks.sh
set --  # no phases
source "$root/bench/gpu/checks.sh"
rm -rf /tmp/tiny && "$bin" init-tiny --out /tmp/tiny >/dev/null && train_config /tmp/multi.toml /tmp/tiny
# Batch 1 per rank, NCCL, the weight check every step, one validation image per rank.
common=(--set train.batch_size=1 --set 'distributed.backend="nccl"' --set logging.every_steps=1
        --set "validation.num_images=$n")
train() {  # train NAME NP [ENV=VALUE...] -- [ARGS...]: mpirun with -x for each variable
  local name=$1 np=$2; shift 2
  local envs=() xs=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); xs+=(-x "${1%%=*}"); shift; done
  [ "${1:-}" = -- ] && shift
  rm -rf "/tmp/run-$name"
  env "${envs[@]}" timeout 300 mpirun -np "$np" "${xs[@]}" "$bin" train /tmp/multi.toml "${common[@]}" \
    --set "output.dir=\"/tmp/run-$name\"" "$@" >"$out/multi-$name.log" 2>&1
}

say "1. $n ranks, NCCL, detail log, weight check every step; one process per GPU?"
train detail "$n" SDXL_DISTRIBUTED_DEBUG=detail &
job=$!
contexts=
for _ in $(seq 1 60); do
  sleep 1
  c=$(nvidia-smi --query-compute-apps=gpu_bus_id,pid --format=csv,noheader 2>/dev/null)
  [ "$(grep -c . <<<"$c")" -ge "$n" ] && { contexts=$c; break; }
  kill -0 $job 2>/dev/null || break
done
wait $job; echo "exit $? (expect 0)"
grep -E "step 20/20|error" "$out/multi-detail.log" | head -n 4
echo "processes per GPU (expect $n GPUs with 1 each):"; cut -d, -f1 <<<"$contexts" | sort | uniq -c
for r in $(seq 0 $((n - 1))); do
  if [ "$r" = 0 ]; then pat='^[^[]*TRACE [^[]*collective'; else pat="TRACE \[rank $r/$n\] collective"; fi
  grep -E "$pat" "$out/multi-detail.log" | sed -E 's/.*collective [0-9]+ at //; s/, [a-z0-9]+ x [0-9]+ on .*//' \
    >"/tmp/calls-$r.txt"
done
echo "collectives per rank: $(wc -l </tmp/calls-0.txt); identical sequences on every rank:"
for r in $(seq 1 $((n - 1))); do cmp -s /tmp/calls-0.txt "/tmp/calls-$r.txt" && echo "  rank $r: same" || echo "  rank $r: DIFFERENT"; done
sed -E 's/^[^:]*: //' /tmp/calls-0.txt | sort | uniq -c | sort -rn | head -n 20

say "2. $n ranks at batch 1 against 1 rank at batch $n"
train one 1 -- --set "train.batch_size=$n" --set logging.every_steps=5
echo "1 rank, batch $n: exit $?"; tail -n +2 /tmp/run-one/metrics.csv 2>/dev/null | cut -d, -f1-3 | tail -n 3
echo "$n ranks, batch 1 (run 1):"; tail -n +2 /tmp/run-detail/metrics.csv 2>/dev/null | cut -d, -f1-3 | tail -n 3

say "3. a rank stalled at step 3, distributed.timeout_s = 30 (expect an end within ~30 s of step 3)"
start=$SECONDS
train stall "$n" SDXL_TEST_FAULT=stall:1:3 -- --set distributed.timeout_s=30
echo "exit $? after $((SECONDS - start)) s (expect non-zero, start-up + ~30 s)"
grep -E "SDXL_TEST_FAULT|did not complete|NCCL collective|aborting" "$out/multi-stall.log" | head -n 4
start=$SECONDS
train exit "$n" SDXL_TEST_FAULT=exit:1:3
echo "a rank exiting at step 3: exit $? after $((SECONDS - start)) s (expect non-zero within seconds of step 3)"

say "4. two ranks on one GPU (expect a clear error, exit 2)"
train shared 2 CUDA_VISIBLE_DEVICES=0
echo "exit $?"; grep -E "would share GPU" "$out/multi-shared.log" | head -n 2
say "multi_gpu done"
