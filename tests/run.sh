#!/usr/bin/env bash
# The test command: on a fresh Debian 12 machine as root it installs what is missing,
# configures and builds (Release, ccache, a precompiled torch header) and runs every ctest
# label (unit, parity, mpi, e2e). Idempotent; prints little unless something fails.
#   SDXL_BUILD_DIR           build folder (default: build/ in the project)
#   SDXL_REFERENCE_DIR       reference data (default: ../shared/reference)
#   SDXL_REFERENCE_REQUIRED  1: a missing reference folder fails the parity tests
#   CTEST_ARGS               extra ctest arguments, e.g. "-L parity"
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SDXL_BUILD_DIR:-$root/build}
jobs=$(nproc)

bash "$root/scripts/install-deps.sh"

mkdir -p "$build"
log="$build/test-run.log"
: >"$log"
step() {  # step NAME CMD...: run quietly, show the log's tail on failure
  local name=$1; shift
  if ! "$@" >>"$log" 2>&1; then
    echo "error: $name failed; last lines of $log:" >&2
    tail -n 60 "$log" >&2
    exit 1
  fi
}
start=$(date +%s)
step configure cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release
step build cmake --build "$build" -j "$jobs"
echo "built in $(( $(date +%s) - start )) s"

ctest_log="$build/ctest.log"
set +e
# shellcheck disable=SC2086
ctest --test-dir "$build" -j "$jobs" --output-on-failure --timeout 900 ${CTEST_ARGS:-} >"$ctest_log" 2>&1
rc=$?
set -e
if [ $rc -ne 0 ]; then
  cat "$ctest_log"
else
  # The summary: pass count, per-label times, total.
  sed -n '/tests passed/,$p' "$ctest_log"
fi
exit $rc
