#!/bin/bash
# ctest label `slurm`: jobs/train.sbatch on a real single-node Slurm started by
# tests/slurm/local_slurm.sh, with the tiny pipeline from `init-tiny` and 2 MPI tasks (srun
# --mpi=pmix). 1) a job runs to the end: checkpoint with every group, both ranks in the log;
# 2) the same job signalled mid-run (scancel --signal=USR1) checkpoints, exits 75, is
# requeued by the script, resumes by itself and ends with LoRA weights bitwise equal to 1);
# 3) SDXL_LAUNCH=mpirun inside the allocation; 4) generate.sbatch; 5) an array of two configs;
# 6) launches that never start the program; 7) a stop before the program started: requeued.
# Needs root. SDXL_BIN: the binary under test. KEEP=1 keeps the work folder.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${SDXL_BIN:?set SDXL_BIN to the sdxl-dreambooth binary}
work=$(mktemp -d /tmp/sdxl-slurm-test.XXXXXX)
prefix=$work/slurm

cleanup() {
  bash "$root/tests/slurm/local_slurm.sh" down "$prefix" >/dev/null 2>&1 || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 60 "$f" >&2; }; done
  exit 1
}
wait_for() {  # SECONDS COMMAND...: poll until the command succeeds
  local limit=$1; shift
  local end=$((SECONDS + limit))
  until "$@"; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.1
  done
}
job_state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
job_done() { case "$(job_state "$1")" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) return 0;; esac; return 1; }
node_idle() { [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && [ -z "$(squeue -h -s 2>/dev/null)" ]; }
requeued_and_pending() {
  scontrol show job "$1" 2>/dev/null | grep -q "Restarts=1" && [ "$(job_state "$1")" = PENDING ]
}
metrics_rows_at_least() { [ -f "$1" ] && [ "$(wc -l < "$1")" -gt "$2" ]; }

bash "$root/tests/slurm/local_slurm.sh" up "$prefix"
# shellcheck disable=SC1091
source "$prefix/env.sh"

"$bin" init-tiny --out "$work/tiny-sdxl" >/dev/null
cat > "$work/tiny.toml" <<EOF
[model]
pretrained = "$work/tiny-sdxl"
[data]
instance_dir = "$root/examples/subject-cat"
instance_prompt = "a photo of sks cat"
resolution = 64
center_crop = true
[train]
seed = 0
batch_size = 1
max_steps = 60
learning_rate = 1e-3
[checkpoint]
every_steps = 25
[validation]
prompts = ["sks cat"]
num_images = 2
steps = 2
every_steps = 50
[logging]
every_steps = 10
EOF

submit() {  # OUT LOG [sbatch options...]: prints the job id
  local out=$1 log=$2
  shift 2
  (cd "$root" && sbatch --parsable --ntasks=2 --ntasks-per-node=2 --gpus-per-task=0 --cpus-per-task=1 \
     --output="$log" --export="ALL,SDXL_BIN=$bin,OMP_NUM_THREADS=1" "$@" \
     jobs/train.sbatch "$work/tiny.toml" --set "output.dir=\"$out\"")
}

# 1. An uninterrupted job.
start=$SECONDS
submit "$work/a" "$work/a.log" --wait >/dev/null || fail "job 1 did not succeed"
echo "job 1 (60 steps, 2 tasks) took $((SECONDS - start)) s"
ck=$work/a/checkpoints/checkpoint-60.h5
[ -f "$ck" ] || fail "job 1 wrote no $ck"
groups=$(h5ls "$ck" | awk '{print $1}' | tr '\n' ' ')
[ "$groups" = "config lora metrics optimizer samples state " ] || fail "h5ls $ck lists: $groups"
grep -q "rank 0 of 2 on" "$work/a.log" || fail "rank 0 missing from the log"
grep -q "\[rank 1/2\] .*rank 1 of 2 on" "$work/a.log" || fail "rank 1 missing from the log"
grep -q "2 rank(s) (mpi collectives)" "$work/a.log" || fail "not 2 ranks"
[ -f "$work/a/pytorch_lora_weights.safetensors" ] || fail "job 1 exported no LoRA"

# 2. The same job, signalled mid-run: checkpoint, exit 75, requeue, resume, same bits.
jid=$(submit "$work/b" "$work/b.log")
wait_for 120 metrics_rows_at_least "$work/b/metrics.csv" 4 || fail "job 2 did not start training"
scancel --signal=USR1 "$jid"
# Slurm holds a requeued batch job for about two minutes before it may start again; the test
# lets it start as soon as the node has cleaned up the old step (starting it earlier makes
# the new srun step collide with the old one's teardown: "launch failed").
wait_for 120 requeued_and_pending "$jid" || fail "job 2 was not requeued (state $(job_state "$jid"))"
wait_for 60 node_idle || fail "the node did not become idle after the requeue"
sleep 2
scontrol update JobId="$jid" StartTime=now
wait_for 300 job_done "$jid" || fail "job 2 did not finish (state $(job_state "$jid"))"
[ "$(job_state "$jid")" = COMPLETED ] || fail "job 2 ended $(job_state "$jid")"
restarts=$(scontrol show job "$jid" | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p')
[ "$restarts" = 1 ] || fail "job 2 restarted $restarts times, expected 1"
grep -q "preemption requested" "$work/b.log" || fail "no preemption in the log"
grep -q "exit 75): requeueing job $jid" "$work/b.log" || fail "the script did not requeue"
grep -q "requeued job (SLURM_RESTART_COUNT > 0): resuming" "$work/b.log" || fail "the requeued job did not resume"
stopped=$(sed -n 's/.*checkpointing step \([0-9]*\).*/\1/p' "$work/b.log" | head -1)
[ -n "$stopped" ] && [ "$stopped" -lt 60 ] || fail "stopped at step '$stopped'"
cmp -s "$work/a/pytorch_lora_weights.safetensors" "$work/b/pytorch_lora_weights.safetensors" ||
  fail "resumed LoRA differs from the uninterrupted one"
echo "job 2: preempted at step $stopped, requeued, resumed; LoRA bitwise equal to job 1"

# 3. mpirun inside the allocation instead of srun.
SDXL_LAUNCH=mpirun submit "$work/c" "$work/c.log" --wait >/dev/null || fail "the mpirun-launched job failed"
grep -q "2 rank(s) (mpi collectives)" "$work/c.log" || fail "mpirun launch: not 2 ranks"
cmp -s "$work/a/pytorch_lora_weights.safetensors" "$work/c/pytorch_lora_weights.safetensors" ||
  fail "mpirun launch: LoRA differs from the srun-launched run"

# 4. Base vs fine-tuned through generate.sbatch.
(cd "$root" && GEN_ARGS="--steps 2 --size 64x64 --num-images 1 --seed 0" sbatch --parsable --wait --ntasks=2 \
   --ntasks-per-node=2 --gpus-per-task=0 --cpus-per-task=1 --output="$work/gen.log" \
   --export="ALL,SDXL_BIN=$bin,OMP_NUM_THREADS=1" jobs/generate.sbatch "$work/tiny-sdxl" \
   "$work/a/pytorch_lora_weights.safetensors" "$work/gen" "sks cat" "sks cat on grass" >/dev/null) ||
  fail "generate.sbatch failed"
[ -f "$work/gen/compare.png" ] && [ "$(ls "$work/gen/lora" | wc -l)" = 2 ] || fail "generate.sbatch wrote no comparison"

# 5. One training per config of a list, as an array job.
for s in x y; do
  sed -e "s#^max_steps = .*#max_steps = 5#" "$work/tiny.toml" > "$work/$s.toml"
  printf '[output]\ndir = "%s"\n' "$work/$s" >> "$work/$s.toml"
  echo "$work/$s.toml"
done > "$work/subjects.txt"
(cd "$root" && sbatch --parsable --wait --array=0-1%1 --ntasks=1 --gpus-per-task=0 --cpus-per-task=1 \
   --output="$work/array-%a.log" --export="ALL,SDXL_BIN=$bin,OMP_NUM_THREADS=1" jobs/train-array.sbatch \
   "$work/subjects.txt" >/dev/null) || fail "the array job failed"
[ -f "$work/x/pytorch_lora_weights.safetensors" ] && [ -f "$work/y/pytorch_lora_weights.safetensors" ] ||
  fail "the array job did not train both configs"
echo "mpirun launch, generate.sbatch and the array job: OK"

# 6. A launch that never starts the program, as when a requeued job's new srun step collides with
# the old one's teardown: srun returns 0 and nothing ran. The wrapper makes the first launch
# exactly that (every task exits 0 at once); train.sbatch must launch again and finish the run.
cat > "$work/first-launch-fails" <<WRAPPER
#!/bin/bash
[ -e "$work/launched.\$SLURM_PROCID" ] || { touch "$work/launched.\$SLURM_PROCID"; exit 0; }
exec "$bin" "\$@"
WRAPPER
chmod +x "$work/first-launch-fails"
SDXL_LAUNCH_RETRY_DELAY=1 submit "$work/d" "$work/d.log" --wait \
  --export="ALL,SDXL_BIN=$work/first-launch-fails,OMP_NUM_THREADS=1" >/dev/null || fail "job 4 failed"
grep -q "srun exited with 0 and sdxl-dreambooth never started; launching again" "$work/d.log" ||
  fail "train.sbatch did not notice the launch that never started"
cmp -s "$work/a/pytorch_lora_weights.safetensors" "$work/d/pytorch_lora_weights.safetensors" ||
  fail "relaunched job: LoRA differs from job 1"
# ...and when no launch ever starts it, the job fails instead of ending COMPLETED.
if SDXL_LAUNCH_RETRIES=1 SDXL_LAUNCH_RETRY_DELAY=0 submit "$work/e" "$work/e.log" --wait \
     --export="ALL,SDXL_BIN=/bin/true" >/dev/null; then
  fail "a job whose launches never started the program succeeded"
fi
grep -q "sdxl-dreambooth never started in 2 launch(es) (srun exit code 0)" "$work/e.log" ||
  fail "train.sbatch did not say that the program never started"
if (cd "$root" && sbatch --parsable --wait --ntasks=1 --gpus-per-task=0 --cpus-per-task=1 --output="$work/gen-e.log" \
      --export="ALL,SDXL_BIN=/bin/true" jobs/generate.sbatch m l "$work/gen-e" p >/dev/null); then
  fail "generate.sbatch succeeded although the program never ran"
fi
grep -q "sdxl-dreambooth did not finish (srun exit code 0)" "$work/gen-e.log" ||
  fail "generate.sbatch did not say that the program never ran"
echo "launches that never started the program: relaunched, or the job failed"

# 7. A stop in the first moments of a launch, before the program could catch it (the dynamic
# loader still mapping its libraries): the wrapper's first launch of each task waits where the
# program would be loading, and scancel --signal=USR1 kills it. train.sbatch treats that as a
# preemption: requeued, and the requeued job trains the run to the end.
cat > "$work/slow-start" <<WRAPPER
#!/bin/bash
[ -e "$work/slow.\$SLURM_PROCID" ] || { touch "$work/slow.\$SLURM_PROCID"; exec sleep 120; }
exec "$bin" "\$@"
WRAPPER
chmod +x "$work/slow-start"
sed -e "s#^max_steps = .*#max_steps = 5#" "$work/tiny.toml" > "$work/short.toml"
jid=$(cd "$root" && sbatch --parsable --ntasks=2 --ntasks-per-node=2 --gpus-per-task=0 --cpus-per-task=1 \
        --output="$work/f.log" --export="ALL,SDXL_BIN=$work/slow-start,OMP_NUM_THREADS=1" jobs/train.sbatch \
        "$work/short.toml" --set "output.dir=\"$work/f\"")
wait_for 120 test -e "$work/slow.1" || fail "job 7 did not launch its tasks"
sleep 1
scancel --signal=USR1 "$jid"
wait_for 120 requeued_and_pending "$jid" || fail "job 7 was not requeued (state $(job_state "$jid"))"
grep -q "asked to stop before sdxl-dreambooth started (srun exit code 138): nothing to save, treated as a preemption" \
  "$work/f.log" || fail "train.sbatch did not treat the early stop as a preemption"
wait_for 60 node_idle || fail "the node did not become idle after the requeue"
sleep 2
scontrol update JobId="$jid" StartTime=now
wait_for 300 job_done "$jid" || fail "job 7 did not finish (state $(job_state "$jid"))"
[ "$(job_state "$jid")" = COMPLETED ] || fail "job 7 ended $(job_state "$jid")"
[ -f "$work/f/pytorch_lora_weights.safetensors" ] || fail "job 7 exported no LoRA"
echo "a stop before the program started: requeued, then trained to the end"

leftover=$(find "$root" -maxdepth 1 -name '.sdxl-dreambooth-*.status')
[ -z "$leftover" ] || fail "status files left behind: $leftover"
