#!/usr/bin/env bash
# quickstart.sh — the README's first command. On a fresh Debian 12 machine as root: installs
# what is missing, builds the binary, writes the built-in tiny SDXL pipeline (no downloads),
# fine-tunes it on the sample subject in examples/subject-cat with `mpirun -np 2`, writes
# checkpoints, validation samples and the exported LoRA (diffusers and kohya), draws base vs
# fine-tuned with `generate --compare-base`, and prints where everything is. Idempotent: a
# second run reuses the build and the pipeline and resumes (here: finds the run complete).
#
#   bash jobs/quickstart.sh
#
# Environment: SDXL_BUILD_DIR (default build/), QUICKSTART_DIR (default quickstart/), NP
# (ranks, default 2), STEPS (default 200).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SDXL_BUILD_DIR:-$root/build}
work=${QUICKSTART_DIR:-$root/quickstart}
np=${NP:-2}
steps=${STEPS:-200}
start=$SECONDS
say() { printf '\n== %s\n' "$*"; }

say "dependencies (Debian packages; nothing else is downloaded)"
bash "$root/scripts/install-deps.sh"

say "build ($build)"
log=$build/quickstart-build.log
mkdir -p "$build"
if ! { cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release &&
       cmake --build "$build" --target sdxl-dreambooth -j "$(nproc)"; } >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "error: the build failed (full log: $log)" >&2
  exit 1
fi
bin=$build/sdxl-dreambooth
"$bin" version | head -n 3

mkdir -p "$work"
if [ ! -f "$work/tiny-sdxl/model_index.json" ]; then
  say "tiny SDXL pipeline"
  "$bin" init-tiny --out "$work/tiny-sdxl"
fi

cat > "$work/quickstart.toml" <<EOF
# Written by jobs/quickstart.sh: the tiny pipeline, 64 px, $steps steps on $np ranks.
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
max_steps = $steps
learning_rate = 1e-3
[checkpoint]
every_steps = $((steps / 2))
keep_last = 2
resume = "latest"
[validation]
prompts = ["a photo of sks cat", "a photo of sks cat on the beach"]
num_images = 1
steps = 8
every_steps = $((steps / 2))
[output]
dir = "$work/run"
[logging]
every_steps = 10
EOF

say "train: mpirun -np $np sdxl-dreambooth train $work/quickstart.toml"
mpi=(mpirun -np "$np" --oversubscribe)
[ "$(id -u)" = 0 ] && mpi+=(--allow-run-as-root)
OMP_NUM_THREADS=1 "${mpi[@]}" "$bin" train "$work/quickstart.toml"

ckpt=$(ls -1v "$work/run/checkpoints"/checkpoint-*.h5 | tail -n 1)
say "export the LoRA for ComfyUI / AUTOMATIC1111 (kohya names)"
"$bin" export "$ckpt" --format kohya --out "$work/run/lora-kohya.safetensors" --force

say "base vs fine-tuned: generate --compare-base"
rm -rf "$work/compare"
OMP_NUM_THREADS=1 "$bin" generate --model "$work/tiny-sdxl" --lora "$work/run/pytorch_lora_weights.safetensors" \
  --compare-base --prompt "a photo of sks cat" --size 64x64 --steps 8 --num-images 2 --seed 0 --out "$work/compare"

say "the last checkpoint: h5ls -r $ckpt (one adapter of each group shown)"
h5ls -r "$ckpt" | awk '
  /^\/(lora|optimizer)\/[a-z_0-9]+\/./ { split($1, p, "/"); key = p[2] "/" p[3]; if (++n[key] > 3) { hidden[key]++; next } }
  { print }
  END { for (k in hidden) printf "... and %d more under /%s\n", hidden[k], k }'

say "done in $((SECONDS - start)) s. Where everything is:"
cat <<EOF
  tiny base model        $work/tiny-sdxl                      (sdxl-dreambooth init-tiny)
  config                 $work/quickstart.toml
  checkpoints            $work/run/checkpoints/               (sdxl-dreambooth inspect $ckpt)
  validation samples     $work/run/samples/step_N/*.png
  metrics                $work/run/metrics.csv
  LoRA for diffusers     $work/run/pytorch_lora_weights.safetensors
  LoRA for ComfyUI/A1111 $work/run/lora-kohya.safetensors
  base vs fine-tuned     $work/compare/compare.png  (and base/, lora/)
Next: point model.pretrained at a real SDXL folder or hub id (configs/sdxl-dog.toml) and submit
jobs/train.sbatch on your cluster; see README.md.
EOF
