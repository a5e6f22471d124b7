#!/usr/bin/env bash
# The GPU checks of issues 7 and 10, run on a lent GPU machine (the `device` tool) from the
# project root, after bench/gpu/stage.sh has filled .gpu/ here. Phases, in the order given:
#   setup   unpack .gpu/debs over / (files the image already has are kept), configure against
#           the CUDA LibTorch of the machine's Python torch and build into build-gpu/
#   run1    version; CUDA parity of the text encoders and the VAE (.gpu/ref-a, copied to
#           /tmp/ref, outside the tree, so that the next call finds it); 1-rank train on CUDA
#           with NCCL (twice) and with MPI; 2 ranks on one GPU (clear error?); bench: SDXL's
#           UNet at 1024² in bf16 (batch 1 with and without gradient checkpointing, batch 8)
#           and a 1024², 25-step CFG validation image
#   run2    with .gpu/ref-b added to /tmp/ref: every CUDA parity test, then the CPU parity
#           tests under this LibTorch
#   tune    channels-last at batch 1 and 8, then batch 16 in the faster layout (needs .gpu/ref-a;
#           SDXL_GPU_TARGETS=sdxl-dreambooth makes setup build only the binary)
#   prof    bench --profile at batch 8 and 1 (GPU kernels by total time) and
#           train.cudnn_benchmark at batch 8 and 16 (needs .gpu/ref-a)
#   opt     contiguous GEGLU halves, adapters inside their GEMM: a tiny bf16 train, bench at
#           batch 1, 8 and 16 with fused projections off/on, a batch-8 profile (needs .gpu/ref-a)
#   fast    the step that never waits for the GPU (CudaParity.TrainStepNeverWaitsForTheDevice)
#           and train.fuse_projections: bench at batch 1 and 8, fusing off/on, with and without
#           phase syncs (needs .gpu/ref-a)
#   host    the step's host-side work: NCCL collectives queued behind LibTorch's kernels with
#           their deadline on the watchdog thread (CudaCollectives.*, under mpirun -np 1), a
#           1-rank NCCL train, adapters cast once per pass (CudaParity.Bf16Adapters*,
#           bench_adapter_cast), bench at batch 1 and 16 (needs .gpu/ref-a and
#           cuda_parity_tests in SDXL_GPU_TARGETS)
#   graph   batch 16 eager first (the MFU target's figure) and with train.fused_kernels, then
#           bench_geglu (if in SDXL_GPU_TARGETS), CudaParity.FusedGegluKernels* and train.cuda_graphs:
#           CudaParity.GraphedSteps* (and SamplingSteps*, sampling without host waits), a 1-rank
#           NCCL bf16 train, bench at batch 1 eager and with graphs, batch 8 and 16 with graphs,
#           the 1024² image, and batch 24 eager if the call has time left (needs .gpu/ref-a and
#           cuda_parity_tests in SDXL_GPU_TARGETS)
#   dist    issue 26 on one GPU: a 1-rank NCCL train under SDXL_DISTRIBUTED_DEBUG=detail (every
#           collective's route: gradients and the restored adapters via nccl, the rest via mpi),
#           the start-up line with NCCL's and CUDA's versions, and 3,000 CUDA-graph steps with
#           the process's thread count sampled every second (constant: no thread per call).
#           Needs no reference data. Several GPUs: bench/gpu/multi_gpu.sh.
# A call carries at most 64 MiB, so the reference travels in two parts, and the second call
# must come while the machine is still warm (the tool's 30 s).
# Logs and bench JSON go to $OUT (the device tool's folder) or /tmp/gpu-out.
#   bash bench/gpu/checks.sh setup run1      # first call: carry .gpu/debs .gpu/ref-a .gpu/nccl
#   bash bench/gpu/checks.sh run2            # second call, machine still warm: carry .gpu/ref-b
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 1
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
build=$root/build-gpu
bin=$build/sdxl-dreambooth
ref=/tmp/ref
t0=$SECONDS
say() { printf '\n== [%4d s] %s\n' $((SECONDS - t0)) "$*"; }

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_plm_rsh_agent=false            # one node: no ssh needed (none on the image)
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export NCCL_DEBUG=WARN
export SDXL_REFERENCE_DIR=$ref SDXL_REFERENCE_REQUIRED=1

setup() {
  say "machine"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  nproc; (. /etc/os-release && echo "$PRETTY_NAME"); g++ --version | head -1; cmake --version | head -1
  python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)'

  say "unpack .gpu/debs over / (existing files kept)"
  local stage=/tmp/deb-stage
  rm -rf "$stage" && mkdir -p "$stage"
  for f in .gpu/debs/*.deb; do
    if command -v dpkg-deb >/dev/null; then dpkg-deb -x "$f" "$stage"
    else (cd /tmp && ar p "$root/$f" "$(ar t "$root/$f" | grep '^data.tar')" | tar -x -J -C "$stage" 2>/dev/null ||
          ar p "$root/$f" "$(ar t "$root/$f" | grep '^data.tar')" | tar -x --zstd -C "$stage"); fi
  done
  (cd "$stage" && tar -cf - .) | tar -C / -xf - --skip-old-files --keep-directory-symlink
  # A -dev package's lib*.so link can name a version the image replaced: point it at the one there.
  for l in /usr/lib/x86_64-linux-gnu/*.so; do
    if [ -L "$l" ] && [ ! -e "$l" ]; then
      c=$(ls -1 "$l".* 2>/dev/null | sort -V | tail -n 1)
      [ -n "$c" ] && ln -sfn "$(basename "$c")" "$l" && echo "relinked $l -> $c"
    fi
  done
  ldconfig
  mpirun --version | head -1

  say "configure"
  local torch_prefix nvcc cuda nccl_py
  torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
  nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc)
  cuda=$(dirname "$(dirname "$(readlink -f "$nvcc")")")
  export CUDA_HOME=$cuda PATH=$cuda/bin:$PATH TORCH_CUDA_ARCH_LIST=9.0
  # NCCL: PyTorch's own (the wheel's libnccl.so.2), so one NCCL is loaded; nccl.h from the wheel
  # or, if it has none, the one staged from CUDA 13 here.
  nccl_py=$(python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2>/dev/null || true)
  mkdir -p /tmp/nccl/include /tmp/nccl/lib
  if [ -n "$nccl_py" ] && [ -f "$nccl_py/include/nccl.h" ]; then ln -sfn "$nccl_py/include/nccl.h" /tmp/nccl/include/nccl.h
  else cp .gpu/nccl/include/nccl.h /tmp/nccl/include/; fi
  if [ -n "$nccl_py" ] && [ -f "$nccl_py/lib/libnccl.so.2" ]; then ln -sfn "$nccl_py/lib/libnccl.so.2" /tmp/nccl/lib/libnccl.so
  else ln -sfn "$(ls "$cuda"/lib64/libnccl.so* | head -n 1)" /tmp/nccl/lib/libnccl.so; fi
  export NCCL_HOME=/tmp/nccl
  ls -l /tmp/nccl/include /tmp/nccl/lib
  cmake -G Ninja -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix" \
    -DCUDAToolkit_ROOT="$cuda" -DSDXL_ASAN=OFF -DSDXL_BUILD_BENCH=ON -DSDXL_UNITY_BATCH_SIZE=4 >"$out/configure.log" 2>&1
  local rc=$?
  grep -E "sdxl-dreambooth:|CUDA|Torch|NCCL|Error|error" "$out/configure.log" | head -30
  [ $rc -eq 0 ] || { tail -n 40 "$out/configure.log"; return 1; }

  say "build (ninja -k 0: every error in one pass)"
  # shellcheck disable=SC2086
  timeout 420 ninja -C "$build" -k 0 ${SDXL_GPU_TARGETS:-sdxl-dreambooth cuda_parity_tests parity_tests} \
    >"$out/build.log" 2>&1
  rc=$?
  grep -E "error|FAILED" "$out/build.log" | head -60
  tail -n 3 "$out/build.log"
  say "build rc=$rc"
  [ -x "$bin" ] && "$bin" version | head -n 3
}

train_config() {  # train_config FILE PIPELINE: the tiny pipeline, 64 px, 20 steps on CUDA
  cat >"$1" <<EOF
[model]
pretrained = "$2"
[data]
instance_dir = "$root/examples/subject-cat"
instance_prompt = "a photo of sks cat"
resolution = 64
center_crop = true
[train]
device = "cuda"
seed = 0
batch_size = 2
max_steps = 20
learning_rate = 1e-3
[checkpoint]
every_steps = 10
[validation]
prompts = ["a photo of sks cat"]
num_images = 1
steps = 8
every_steps = 10
[logging]
every_steps = 5
EOF
}

bench_config() {  # bench_config FILE: 1024², bf16 on CUDA, tokenizers/scheduler from tiny-sdxl
  cat >"$1" <<EOF
[model]
pretrained = "$ref/tiny-sdxl"
[data]
instance_dir = "$root/examples/subject-cat"
instance_prompt = "a photo of sks dog"
resolution = 1024
[train]
device = "cuda"
mixed_precision = "bf16"
batch_size = 1
seed = 0
[validation]
prompts = ["a photo of sks dog in a bucket"]
negative_prompt = "blurry"
steps = 25
guidance_scale = 5.0
scheduler = "dpmpp2m"
EOF
}

run_bench() {  # run_bench NAME ARGS...: SDXL's UNet architecture with random weights
  local name=$1; shift
  # NCCL prints its version banner on standard output when NCCL_DEBUG is set.
  NCCL_DEBUG="" timeout 150 "$bin" bench /tmp/bench.toml --architecture "$ref/sdxl-base-1.0-manifest" --json "$@" \
    >"$out/bench-$name.json" 2>>"$out/bench.log"
  echo "$name (exit $?): $(python3 -c "
import json, sys
t = open(sys.argv[1]).read(); d = json.loads(t[t.index('{'):])
keep = ('batch_rows', 'gradient_checkpointing', 'channels_last', 'fuse_projections', 'cuda_graphs', 'fused_kernels', 'phase_sync', 'seconds_per_step', 'images_per_s_total', 'mfu', 'achieved_tflops_per_rank',
      'peak_memory_bytes', 'seconds_per_image', 'per_step_s', 'seconds_per_step')
print({k: d[k] for k in d if k in keep})" "$out/bench-$name.json" 2>&1 | tail -n 1)"
}

run1() {
  say "version"
  "$bin" version

  mkdir -p "$ref" && cp -a .gpu/ref-a/. "$ref/"
  say "CUDA parity: text encoders, VAE (the UNet's weights come in run2)"
  timeout 120 "$build/tests/cuda_parity_tests" --gtest_filter='CudaParity.TextEncoders*:CudaParity.Vae' 2>&1 | tail -n 25

  say "train on CUDA, 1 rank: NCCL vs MPI collectives"
  rm -rf /tmp/tiny /tmp/run-*
  "$bin" init-tiny --out /tmp/tiny >/dev/null
  train_config /tmp/train.toml /tmp/tiny
  for run in nccl nccl2 mpi; do
    timeout 180 mpirun -np 1 "$bin" train /tmp/train.toml --set "distributed.backend=\"${run%2}\"" \
      --set "output.dir=\"/tmp/run-$run\"" >"$out/train-$run.log" 2>&1
    echo "$run: exit $?"; grep -iE "collectives|step 20|error" "$out/train-$run.log" | head -n 4
  done
  # Two NCCL runs show CUDA's run-to-run variation (atomics in backward kernels); NCCL vs MPI
  # is the same comparison across backends.
  python3 - <<'EOF'
import csv
from safetensors.torch import load_file
def lora(r): return load_file(f"/tmp/run-{r}/pytorch_lora_weights.safetensors")
def metrics(r): return list(csv.DictReader(open(f"/tmp/run-{r}/metrics.csv")))
for x, y in (("nccl", "nccl2"), ("nccl", "mpi")):
    a, b = lora(x), lora(y)
    assert a.keys() == b.keys(), "different tensors"
    d = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    ma, mb = metrics(x), metrics(y)
    s1 = "step 1 loss/grad_norm %s/%s vs %s/%s" % (ma[0]["loss"], ma[0]["grad_norm"], mb[0]["loss"], mb[0]["grad_norm"])
    print(f"{x} vs {y} after 20 steps: {len(a)} tensors, max |diff| = {d:.3g}; {s1}")
EOF
  ls /tmp/run-nccl /tmp/run-nccl/samples/* 2>/dev/null | head -n 12

  say "2 ranks on one GPU with NCCL: must end with a clear error, not hang"
  local s=$SECONDS
  timeout 120 mpirun -np 2 "$bin" train /tmp/train.toml --set 'distributed.backend="nccl"' \
    --set 'output.dir="/tmp/run-2"' >"$out/train-2ranks.log" 2>&1
  echo "exit $? after $((SECONDS - s)) s"; grep -iE "error|gpu" "$out/train-2ranks.log" | head -n 5

  say "bench: SDXL base 1.0 UNet (random weights), 1024², bf16, LoRA rank 4"
  bench_config /tmp/bench.toml
  run_bench b1 --steps 10 --warmup 3
  run_bench b1-ckpt --steps 10 --warmup 3 --set train.gradient_checkpointing=true
  run_bench b8 --steps 4 --warmup 2 --set train.batch_size=8
  run_bench gen --generate --steps 2 --warmup 1
  say "run1 done"
}

run2() {
  say "reference: add the UNet weights and LoRA vectors (.gpu/ref-b)"
  [ -f "$ref/README.md" ] || { echo "no $ref/README.md: the machine was not the one run1 used"; return 1; }
  cp -a .gpu/ref-b/. "$ref/"
  say "every CUDA parity test"
  timeout 240 "$build/tests/cuda_parity_tests" 2>&1 | grep -vE "^\[ +(RUN|OK) " | tail -n 60
  say "CPU parity under this LibTorch (no fp16 UNet file, no subject photos carried)"
  OMP_NUM_THREADS=8 timeout 240 "$build/tests/parity_tests" \
    --gtest_filter='-NetworkParity.UNetFp16VariantLoadsTheSameWeights:PreprocessParity.*' 2>&1 |
    grep -vE "^\[ +(RUN|OK) " | tail -n 40
  say "run2 done"
}

tune() {  # channels-last at batch 1 and 8, then batch 16 in the faster layout
  mkdir -p "$ref" && cp -a .gpu/ref-a/. "$ref/"
  bench_config /tmp/bench.toml
  say "bench: channels-last"
  run_bench b8-cl --steps 4 --warmup 2 --set train.batch_size=8 --set train.channels_last=true
  run_bench b1-cl --steps 10 --warmup 3 --set train.channels_last=true
  # batch 8 in plain layout measured 18.61 img/s at 0fc469b
  local cl
  cl=$(python3 -c "
import json; t = open('$out/bench-b8-cl.json').read(); d = json.loads(t[t.index('{'):])
print('true' if d['images_per_s_total'] > 18.61 else 'false')" 2>/dev/null || echo false)
  say "bench: batch 16, channels_last=$cl"
  run_bench b16 --steps 3 --warmup 2 --set train.batch_size=16 --set train.channels_last=$cl
  say "train (tiny pipeline) on CUDA in bf16 with channels-last, through validation and export"
  rm -rf /tmp/tiny /tmp/run-cl && "$bin" init-tiny --out /tmp/tiny >/dev/null && train_config /tmp/train.toml /tmp/tiny
  timeout 120 mpirun -np 1 "$bin" train /tmp/train.toml --set train.channels_last=true \
    --set 'train.mixed_precision="bf16"' --set 'output.dir="/tmp/run-cl"' >"$out/train-cl.log" 2>&1
  echo "exit $?"; grep -iE "step 20|error|pytorch_lora" "$out/train-cl.log" | head -n 4
  say "tune done"
}

fast() {  # the sync-free step and fused projections (commit after dfde415)
  mkdir -p "$ref" && cp -a .gpu/ref-a/. "$ref/"
  say "CUDA: the training step under sync debug mode \"error\""
  timeout 120 "$build/tests/cuda_parity_tests" --gtest_filter='CudaParity.TrainStepNeverWaitsForTheDevice' 2>&1 |
    tail -n 8
  bench_config /tmp/bench.toml
  say "bench: fuse_projections off/on, phase syncs on/off"
  run_bench b1-sep --steps 10 --warmup 3 --set train.fuse_projections=false
  run_bench b1-fused --steps 10 --warmup 3 --set train.fuse_projections=true
  run_bench b1-fused-async --steps 10 --warmup 3 --set train.fuse_projections=true --no-phase-sync
  run_bench b8-sep --steps 4 --warmup 2 --set train.batch_size=8 --set train.fuse_projections=false
  run_bench b8-fused-async --steps 4 --warmup 2 --set train.batch_size=8 --set train.fuse_projections=true --no-phase-sync
  run_bench b16-fused-async --steps 3 --warmup 2 --set train.batch_size=16 --set train.fuse_projections=true --no-phase-sync
  say "fast done"
}

prof() {  # where the step's GPU time goes (bench --profile), and cuDNN's algorithm search
  mkdir -p "$ref" && cp -a .gpu/ref-a/. "$ref/"
  bench_config /tmp/bench.toml
  say "bench: train.cudnn_benchmark=true, no phase syncs (compare b8-fused-async, b16-fused-async)"
  run_bench b8-cudnn --steps 4 --warmup 2 --set train.batch_size=8 --no-phase-sync --set train.cudnn_benchmark=true
  run_bench b16-cudnn --steps 3 --warmup 2 --set train.batch_size=16 --no-phase-sync --set train.cudnn_benchmark=true
  say "profile: batch 8 and batch 1, GPU kernels by total time"
  for b in 8 1; do
    NCCL_DEBUG="" timeout 150 "$bin" bench /tmp/bench.toml --architecture "$ref/sdxl-base-1.0-manifest" --profile \
      --steps 2 --warmup 2 --set train.batch_size=$b >"$out/prof-b$b.txt" 2>>"$out/bench.log"
    echo "batch $b (exit $?)"; grep -A 40 "^profile" "$out/prof-b$b.txt" | cut -c1-160
  done
  say "prof done"
}

opt() {  # contiguous GEGLU halves, adapters added inside their GEMM (1ed4d72), linear_rows (89d7ef6)
  mkdir -p "$ref" && cp -a .gpu/ref-a/. "$ref/"
  say "train (tiny pipeline) on CUDA in bf16 with fused projections, through validation and export"
  rm -rf /tmp/tiny /tmp/run-opt && "$bin" init-tiny --out /tmp/tiny >/dev/null && train_config /tmp/train.toml /tmp/tiny
  timeout 120 mpirun -np 1 "$bin" train /tmp/train.toml --set train.fuse_projections=true \
    --set 'train.mixed_precision="bf16"' --set 'output.dir="/tmp/run-opt"' >"$out/train-opt.log" 2>&1
  echo "exit $?"; grep -iE "step 20|error|pytorch_lora" "$out/train-opt.log" | head -n 4
  bench_config /tmp/bench.toml
  say "bench: fuse_projections off/on, no phase syncs"
  run_bench b8-sep --steps 4 --warmup 2 --set train.batch_size=8 --no-phase-sync --set train.fuse_projections=false
  run_bench b8-fused --steps 4 --warmup 2 --set train.batch_size=8 --no-phase-sync --set train.fuse_projections=true
  run_bench b16-fused --steps 3 --warmup 2 --set train.batch_size=16 --no-phase-sync --set train.fuse_projections=true
  run_bench b1-sep --steps 10 --warmup 3 --no-phase-sync --set train.fuse_projections=false
  run_bench b1-fused --steps 10 --warmup 3 --no-phase-sync --set train.fuse_projections=true
  say "profile: batch 8, fused projections, kernels with the operators that launched them"
  NCCL_DEBUG="" timeout 150 "$bin" bench /tmp/bench.toml --architecture "$ref/sdxl-base-1.0-manifest" --profile \
    --steps 2 --warmup 2 --set train.batch_size=8 --set train.fuse_projections=true >"$out/prof-b8.txt" 2>>"$out/bench.log"
  echo "exit $?"; grep -A 100 "^profile" "$out/prof-b8.txt" | cut -c1-220
  say "opt done"
}

host() {  # host-side work of the step: collectives that do not wait, adapters cast once
  mkdir -p "$ref" && cp -a .gpu/ref-a/. "$ref/"
  say "CUDA: an NCCL all-reduce queued behind ~12 s of products, deadline 5 s; adapters cast once"
  timeout 150 mpirun -np 1 "$build/tests/cuda_parity_tests" \
    --gtest_filter='CudaCollectives.*:CudaParity.Bf16Adapters*' 2>&1 | grep -E "measured|OK|FAILED|Failure" | head -n 40
  say "train (tiny pipeline) on CUDA, 1 rank, NCCL, bf16"
  rm -rf /tmp/tiny /tmp/run-host && "$bin" init-tiny --out /tmp/tiny >/dev/null && train_config /tmp/train.toml /tmp/tiny
  timeout 120 mpirun -np 1 "$bin" train /tmp/train.toml --set 'distributed.backend="nccl"' \
    --set 'train.mixed_precision="bf16"' --set 'output.dir="/tmp/run-host"' >"$out/train-host.log" 2>&1
  echo "exit $?"; grep -iE "collectives|step 20|error" "$out/train-host.log" | head -n 4
  say "bench_adapter_cast: SDXL's 560 adapters, per use against once (host and device)"
  timeout 200 ninja -C "$build" bench_adapter_cast >/dev/null 2>&1 && timeout 60 "$build/bench/bench_adapter_cast" --device cuda --iters 50
  bench_config /tmp/bench.toml
  say "bench: batch 1 and 16, fused projections, no phase syncs"
  run_bench b1-host --steps 10 --warmup 3 --no-phase-sync --set train.fuse_projections=true
  run_bench b16-host --steps 3 --warmup 2 --set train.batch_size=16 --no-phase-sync --set train.fuse_projections=true
  say "host done"
}

graph() {  # train.cuda_graphs: the recorded step against the eager one, then its speed
  mkdir -p "$ref" && cp -a .gpu/ref-a/. "$ref/"
  bench_config /tmp/bench.toml
  # First, so that a call cut short still brings the MFU target's figure back.
  say "bench: batch 16 eager (the MFU target's figure, with nn/linear_rows), then with the fused GEGLU kernels"
  run_bench b16-eager --steps 3 --warmup 2 --set train.batch_size=16 --no-phase-sync --set train.fuse_projections=true
  run_bench b16-fused --steps 3 --warmup 2 --set train.batch_size=16 --no-phase-sync --set train.fuse_projections=true \
    --set train.fused_kernels=true
  if [ -x "$build/bench/bench_geglu" ]; then  # built when SDXL_GPU_TARGETS names it
    say "bench_geglu: GEGLU's product and gradient alone (ATen, recomputing, fused), batch 16, bf16"
    timeout 90 "$build/bench/bench_geglu" --device cuda --batch 16 --iters 5 2>&1 | tee "$out/bench-geglu.txt"
  fi
  say "fused GEGLU kernels against ATen; CUDA graphs: replayed steps against eager steps; sampling without waits"
  timeout 150 "$build/tests/cuda_parity_tests" \
    --gtest_filter='CudaParity.FusedGeglu*:CudaParity.GraphedSteps*:CudaParity.SamplingSteps*' 2>&1 |
    grep -E "measured|OK|FAILED|Failure|error" | head -n 80
  say "train (tiny pipeline) on CUDA, 1 rank, NCCL, bf16, train.cuda_graphs"
  rm -rf /tmp/tiny /tmp/run-graph && "$bin" init-tiny --out /tmp/tiny >/dev/null && train_config /tmp/train.toml /tmp/tiny
  timeout 120 mpirun -np 1 "$bin" train /tmp/train.toml --set 'distributed.backend="nccl"' \
    --set 'train.mixed_precision="bf16"' --set 'output.dir="/tmp/run-graph"' --set train.cuda_graphs=true \
    >"$out/train-graph.log" 2>&1
  echo "exit $?"; grep -iE "graph|step 20|error" "$out/train-graph.log" | head -n 5
  say "bench: batch 1 eager and with graphs, batch 8 and 16 with graphs (fused projections, no phase syncs)"
  run_bench b1-eager --steps 10 --warmup 3 --no-phase-sync --set train.fuse_projections=true
  run_bench b1-graph --steps 10 --warmup 3 --no-phase-sync --set train.fuse_projections=true --set train.cuda_graphs=true
  run_bench b8-graph --steps 4 --warmup 2 --set train.batch_size=8 --no-phase-sync --set train.fuse_projections=true \
    --set train.cuda_graphs=true
  run_bench b16-graph --steps 3 --warmup 2 --set train.batch_size=16 --no-phase-sync \
    --set train.fuse_projections=true --set train.cuda_graphs=true
  say "bench --generate: a 1024², 25-step CFG image (1.39 s when each step waited for the GPU)"
  run_bench gen --generate --steps 2 --warmup 1
  # Batch 24 (131 GiB by the batch-8 and -16 peaks, about 112 GiB with GEGLU's smaller backward)
  # only if the call has time left: the tool ends a call at 600 s.
  if (( SECONDS - t0 < 470 )); then
    say "bench: batch 24 eager (does a larger batch raise MFU?)"
    run_bench b24-eager --steps 2 --warmup 1 --set train.batch_size=24 --no-phase-sync --set train.fuse_projections=true
  fi
  say "graph done"
}

dist() {  # issue 26 on one GPU: every collective's route, versions, no thread growth
  rm -rf /tmp/tiny /tmp/run-dist && "$bin" init-tiny --out /tmp/tiny >/dev/null && train_config /tmp/train.toml /tmp/tiny
  say "1-rank NCCL train, SDXL_DISTRIBUTED_DEBUG=detail: one line per collective"
  SDXL_DISTRIBUTED_DEBUG=detail timeout 120 mpirun -np 1 -x SDXL_DISTRIBUTED_DEBUG "$bin" train /tmp/train.toml \
    --set 'distributed.backend="nccl"' --set 'output.dir="/tmp/run-dist"' >"$out/train-dist.log" 2>&1
  echo "exit $?"; grep -E "collectives: NCCL|collectives issued|step 20/20|error" "$out/train-dist.log" | head -n 6
  echo "routes (what: op via route):"
  grep -E "TRACE .*collective [0-9]+ at" "$out/train-dist.log" | sed -E 's/.* at [^:]*: //; s/, [a-z0-9]+ x [0-9]+ on .*//' |
    sort | uniq -c | sort -rn | head -n 30
  say "3,000 steps with train.cuda_graphs: threads of the process, sampled each second"
  rm -rf /tmp/run-threads
  mpirun -np 1 "$bin" train /tmp/train.toml --set 'distributed.backend="nccl"' --set 'output.dir="/tmp/run-threads"' \
    --set train.cuda_graphs=true --set 'train.mixed_precision="bf16"' --set train.max_steps=3000 \
    --set checkpoint.every_steps=3000 --set validation.every_steps=3000 --set logging.every_steps=500 \
    >"$out/train-threads.log" 2>&1 &
  local launcher=$! pid= samples=()
  for _ in $(seq 1 240); do
    sleep 1
    pid=${pid:-$(pgrep -f "sdxl-dreambooth train /tmp/train.toml" | head -n 1)}
    [ -n "$pid" ] && [ -r "/proc/$pid/status" ] || { kill -0 $launcher 2>/dev/null && continue; break; }
    samples+=("$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")")
  done
  wait $launcher; echo "exit $?"; grep -E "step 3000/3000|error" "$out/train-threads.log" | head -n 3
  echo "threads per second (${#samples[@]} samples): $(printf '%s ' "${samples[@]}" | tr ' ' '\n' | sort -n | uniq -c | tr '\n' ' ')"
  say "dist done"
}

for phase in "$@"; do
  case $phase in
    setup) setup || { say "setup failed"; exit 1; } ;;
    run1) run1 ;;
    run2) run2 ;;
    tune) tune ;;
    fast) fast ;;
    prof) prof ;;
    opt) opt ;;
    host) host ;;
    graph) graph ;;
    dist) dist ;;
    *) echo "unknown phase $phase (setup, run1, run2, tune, fast, prof, opt, host, graph, dist)" >&2; exit 2 ;;
  esac
done 2>&1 | tee -a "$out/checks.log"
