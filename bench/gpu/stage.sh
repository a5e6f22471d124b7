#!/usr/bin/env bash
# Run here (Debian 12), before asking for a lent GPU machine: puts what the device checks need
# into the ignored folder .gpu/ of the project, to travel with the `device` tool's `carry`.
#   .gpu/debs/    the Debian packages the build needs (MPI, HDF5, TOML++, image and font
#                 libraries, GoogleTest) with their library dependencies, less the toolchain and
#                 the base system every image has; bench/gpu/checks.sh unpacks them there
#   .gpu/ref-a/   the reference data but the tiny UNet's weights and the LoRA training vectors
#   .gpu/ref-b/   those two (the 64 MiB a call may carry does not hold both parts with the debs)
#   .gpu/nccl/    nccl.h, for an image whose NCCL (PyTorch's wheel) comes without it
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ref=${SDXL_REFERENCE_DIR:-$root/../shared/reference}
out=$root/.gpu
grep -qx '/.gpu/' "$root/.git/info/exclude" 2>/dev/null || echo '/.gpu/' >>"$root/.git/info/exclude"

wanted="libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools libtomlplusplus-dev nlohmann-json3-dev libutf8proc-dev
  libssl-dev libfreetype-dev libfontconfig-dev libgtest-dev libjpeg62-turbo-dev libpng-dev libexif-dev libwebp-dev
  libprotobuf-dev protobuf-compiler pkgconf"
# The toolchain, the C library and packages of every base system: the image has its own.
base="gcc-12 cpp-12 gfortran-12 libgcc-12-dev libgfortran-12-dev libasan8 libtsan2 libubsan1 liblsan0 libitm1
  libc6 libc6-dev linux-libc-dev libc-dev-bin libcrypt-dev libcrypt1 libnsl-dev libnsl2 libtirpc-dev libtirpc3
  libtirpc-common rpcsvc-proto binutils binutils-common binutils-x86-64-linux-gnu libbinutils libctf0 libctf-nobfd0
  libgprofng0 perl perl-base perl-modules-5.36 libperl5.36 libgdbm6 libgdbm-compat4 libdb5.3 dpkg tar passwd
  adduser debconf debianutils libpam0g libpam-modules libpam-modules-bin libaudit1 libaudit-common libsemanage2
  libsemanage-common libsepol2 libselinux1 openssh-client libstdc++6 libgcc-s1 gcc-12-base libgomp1 libatomic1
  libcc1-0 libisl23 libmpc3 libmpfr6 libgmp10 autoconf automake autotools-dev m4 libjs-jquery libjs-jquery-ui
  libicu72 libxml2 libedit2 libbsd0 libmd0 libtinfo6 libcap-ng0 libacl1 libudev1 libkeyutils1 libcom-err2 libssl3
  libgnutls30 libhogweed6 libnettle8 libp11-kit0 libtasn1-6 libidn2-0 libunistring2 libffi8 libpcre2-8-0 zlib1g
  liblzma5 libzstd1 libbz2-1.0 libgfortran5 libquadmath0 libhdf5-fortran-102 libhdf5-hl-fortran-100 libfido2-1
  libcbor0.8 libuuid1 libexpat1 libltdl-dev"
status=$(mktemp)
# shellcheck disable=SC2086
apt-get -s -o Dir::State::status="$status" install --no-install-recommends $wanted 2>/dev/null |
  awk '/^Inst /{print $2}' | sort -u >"$status.all"
tr -s ' \n' '\n' <<<"$base" | sed '/^$/d' | sort -u >"$status.base"
mapfile -t packages < <(comm -23 "$status.all" "$status.base")
rm -f "$status" "$status.all" "$status.base"

rm -rf "$out/debs" && mkdir -p "$out/debs"
(cd "$out/debs" && apt-get download -q "${packages[@]}" >/dev/null 2>&1)
echo "debs: ${#packages[@]} packages, $(du -sh "$out/debs" | cut -f1)"

rm -rf "$out/nccl" && mkdir -p "$out/nccl/include"
cp "${CUDA_HOME:-/usr/local/cuda}/include/nccl.h" "$out/nccl/include/"

rm -rf "$out/ref-a" "$out/ref-b"
mkdir -p "$out/ref-a" "$out/ref-b/tiny-sdxl/unet" "$out/ref-b/vectors"
cp -a "$ref/." "$out/ref-a/"
rm -f "$out"/ref-a/tiny-sdxl/unet/*.safetensors "$out"/ref-a/vectors/lora_train_* "$out"/ref-a/vectors/preprocess.*
cp "$ref/tiny-sdxl/unet/diffusion_pytorch_model.safetensors" "$out/ref-b/tiny-sdxl/unet/"
cp "$ref"/vectors/lora_train_* "$out/ref-b/vectors/"
echo "reference: ref-a $(du -sh "$out/ref-a" | cut -f1), ref-b $(du -sh "$out/ref-b" | cut -f1)"
