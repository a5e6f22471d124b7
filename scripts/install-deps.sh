#!/usr/bin/env bash
# Installs the Debian 12 packages sdxl-dreambooth needs to build and test, if any are
# missing. Needs root (or sudo) only when something is missing. Quiet when nothing is.
set -euo pipefail

packages=(
  build-essential cmake ccache pkg-config git
  libtorch-dev                          # LibTorch 1.13 (CPU)
  libopenblas0-openmp                   # its BLAS: without it libblas.so.3 is the reference one, 3-17x slower CPU steps
  libblas3                              # that reference BLAS, which libtorch depends on; a test checks the warning on it
  libopenmpi-dev openmpi-bin            # MPI
  libhdf5-dev hdf5-tools                # checkpoints; h5ls/h5dump for users and tests
  libtomlplusplus-dev                   # configuration
  nlohmann-json3-dev                    # diffusers/HF JSON files, safetensors headers
  libutf8proc-dev                       # Unicode classes for the CLIP tokenizer
  libssl-dev                            # SHA-256 of the base model's weight files (checkpoint provenance)
  libfreetype-dev libfontconfig-dev fonts-dejavu-core  # labels drawn into generate --compare-base grids
  libgtest-dev                          # tests
  libprotobuf-dev protobuf-compiler     # TensorBoard event files (proto/tensorboard_event.proto)
  munge slurmctld slurmd slurm-client libpmix-dev  # the single-node Slurm of the `slurm` tests; srun --mpi=pmix
  libjpeg62-turbo-dev libpng-dev libexif-dev libwebp-dev  # image decoding
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "error: missing packages (${missing[*]}) and not root; install them first" >&2; exit 1; }
  sudo=sudo
fi
log=$(mktemp)
if ! { $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "error: apt-get install failed (full log: $log)" >&2
  exit 1
fi
rm -f "$log"
