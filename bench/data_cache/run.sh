#!/bin/bash
# The data.cache_dir benchmark of docs/benchmarks.md ("Datasets of many images"): N generated
# 64 px images with captions on `mpirun -np 2`, a cold run (encodes and stores everything) and a
# warm one (reads everything from the cache), for N = 1,000 and 20,000.
#
# usage: bench/data_cache/run.sh [BUILD_DIR] [N ...]     (from the project root)
# Prints, per N and run: listing time, encode time and rate, cache hits, time to the first
# step, seconds per step, peak RSS of each rank; and the cache's size on disk.
set -euo pipefail
build=${1:-build}
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 20000)
work=${SDXL_BENCH_DIR:-/tmp/sdxl-data-cache-bench}
here=$(cd "$(dirname "$0")" && pwd)
model=${SDXL_REFERENCE_DIR:-../shared/reference}/tiny-sdxl
mkdir -p "$work"

for n in "${sizes[@]}"; do
  data=$work/images-$n
  if [ ! -f "$data/$(printf %06d $((n - 1))).txt" ]; then
    rm -rf "$data"
    python3 "$here/make_dataset.py" "$n" "$data"
  fi
  rm -rf "$work/cache-$n"
  cat > "$work/run-$n.toml" <<TOML
[model]
pretrained = "$model"
[data]
instance_dir = "$data"
instance_prompt = "sks pattern"
caption_ext = ".txt"
resolution = 64
center_crop = true
cache_dir = "$work/cache-$n"
[train]
seed = 0
batch_size = 4
max_steps = 100
[checkpoint]
every_steps = 100000
[logging]
every_steps = 50
tensorboard = false
TOML
  for run in cold warm; do
    out=$work/out-$n-$run
    rm -rf "$out"
    start=$(date +%s.%N)
    # Each rank's peak RSS from time(1); the log's clock gives the start-up (first line to the
    # "training N steps" line).
    mpirun --allow-run-as-root --oversubscribe -np 2 \
      sh -c '/usr/bin/time -f "peak RSS of a rank ($OMPI_COMM_WORLD_RANK): %M KB" "$0" "$@"' \
      "$build/sdxl-dreambooth" train "$work/run-$n.toml" --set "output.dir=\"$out\"" > "$out.log" 2>&1
    end=$(date +%s.%N)
    echo "== $n images, $run run: $(echo "$end - $start" | bc) s in all"
    grep -E "images listed|examples encoded|data.cache_dir:|prompt embeddings:|training [0-9]+ steps|done:" "$out.log"
    grep "peak RSS of a rank" "$out.log"
  done
  echo "cache on disk: $(du -sh "$work/cache-$n" | cut -f1) in $(find "$work/cache-$n" -name '*.h5' | wc -l) shards"
done
