#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for a bounded time.
#
# Usage: tests/fuzz/run-fuzzers.sh BUILD_DIR SECONDS [TARGET...]
#   BUILD_DIR  where binaries, the growing corpus and crash artifacts go (one folder per target)
#   SECONDS    how long each target fuzzes (libFuzzer's -max_total_time)
#   TARGET     protocol, card, card_reference, core_set, pool_settings, ring or spank_options; all of them when
#              none is named
# Environment:
#   SIDECORE_FUZZ_CXX    the clang++ to use (default: clang++)
#   SIDECORE_FUZZ_FLAGS  extra libFuzzer flags for longer campaigns, e.g. "-jobs=8 -workers=8"
#
# The project builds with g++, but libFuzzer comes with clang, so this script compiles each target
# straight from the sources it needs instead of through the CMake build. Seeds are read from
# tests/fuzz/corpus/<target>/ and never written; what the fuzzer learns goes to BUILD_DIR. Inputs kept
# in tests/fuzz/crashes/<target>/ are replayed first, so a crash found once stays a failing test
# until the decoder is fixed. Exits non-zero when clang is missing or any target crashes.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
all_targets=(protocol card card_reference core_set pool_settings ring spank_options)

die() {
  echo "run-fuzzers: $*" >&2
  exit 1
}

(($# >= 2)) || die "usage: $0 BUILD_DIR SECONDS [TARGET...]"
build=$1
seconds=$2
shift 2
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || die "SECONDS must be a positive number, not '$seconds'"
targets=("$@")
((${#targets[@]})) || targets=("${all_targets[@]}")

# What each target is built from, besides its own fuzz_<target>.cpp.
sources_of() {
  case $1 in
    protocol) echo "$root/runtime/src/protocol.cpp" ;;
    card) echo "$root/runtime/src/card.cpp $root/runtime/src/hex.cpp" ;;
    card_reference) echo "$root/runtime/src/card_reference.cpp $root/runtime/src/card.cpp $root/runtime/src/hex.cpp $root/runtime/src/process/card_wait.cpp $root/runtime/src/process/child_process.cpp" ;;
    core_set) echo "$root/runtime/src/core_set.cpp" ;;
    pool_settings) echo "$root/offload/src/mpi/pool_settings.cpp" ;;
    ring) echo "$root/runtime/src/transport/ring.cpp $root/runtime/src/token.cpp" ;;
    spank_options) echo "$root/spank-plugin/src/options.cpp" ;;
  esac
}
for target in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $target "* ]] || die "unknown target '$target' (known: ${all_targets[*]})"
done

# Longest input each target tries: a protocol message can be up to kMaxMessageBytes (4184 bytes)
# over libfabric and 16472 bytes on a ring (kRingInlineLimit inline); a ring input is 17 bytes of
# indices and limit before up to kRingBytes (65536) of ring data.
max_len_of() {
  case $1 in
    protocol) echo 16600 ;;
    ring) echo 65553 ;;
    *) echo 4096 ;;
  esac
}

cxx=${SIDECORE_FUZZ_CXX:-clang++}
command -v "$cxx" >/dev/null ||
  die "'$cxx' not found. The fuzz targets need clang with libFuzzer; on Debian 12 install the packages" \
      "clang and libclang-rt-14-dev (scripts/install-deps.sh), or point SIDECORE_FUZZ_CXX at a clang++."

sanitizers=("-fsanitize=fuzzer,address,undefined" -fno-sanitize-recover=all)
cxxflags=(-std=c++20 -g -O1 "${sanitizers[@]}" -Wall -Wextra
          -I"$root/runtime/src" -I"$root/runtime/include" -I"$root/offload/src" -I"$root/offload/include")

read -r -a fmt_libs <<<"$(pkg-config --libs fmt 2>/dev/null || echo -lfmt)"

# Open MPI's flags for pool_settings.cpp, which includes <mpi.h> and calls MPI_Info_get.
mpi_cflags=()
mpi_libs=()
find_mpi() {
  local incdirs libdirs libs word
  if incdirs=$(mpicc --showme:incdirs 2>/dev/null) && libdirs=$(mpicc --showme:libdirs 2>/dev/null) &&
     libs=$(mpicc --showme:libs 2>/dev/null); then
    for word in $incdirs; do mpi_cflags+=("-I$word"); done
    for word in $libdirs; do mpi_libs+=("-L$word"); done
    for word in $libs; do mpi_libs+=("-l$word"); done
  elif pkg-config --exists ompi-c 2>/dev/null; then
    read -r -a mpi_cflags <<<"$(pkg-config --cflags ompi-c)"
    read -r -a mpi_libs <<<"$(pkg-config --libs ompi-c)"
  else
    die "pool_settings needs <mpi.h>: neither 'mpicc --showme' nor 'pkg-config ompi-c' works (install libopenmpi-dev)"
  fi
}

# True when `object` was built with the flags in `object.flags` and is newer than every file its
# dependency list (clang -MMD) names. Rebuilding protocol.cpp alone takes half a minute.
up_to_date() {
  local object=$1 flags=$2 dep
  [[ -f $object && -f $object.d && -f $object.flags && $(<"$object.flags") == "$flags" ]] || return 1
  # shellcheck disable=SC2013  # the dependency list is words, not lines
  for dep in $(sed -e 's/\\$//' -e '1s/^[^:]*://' "$object.d"); do
    [[ -e $dep && ! $dep -nt $object ]] || return 1
  done
}

# compile SOURCE OBJECT FLAGS...: compiles when anything it depends on changed.
compile() {
  local source=$1 object=$2
  shift 2
  local flags="$* $source"
  up_to_date "$object" "$flags" && return 0
  "$cxx" "$@" -MMD -MF "$object.d" -c "$source" -o "$object" || return 1
  printf '%s' "$flags" >"$object.flags"
}

# build TARGET WORK: builds WORK/fuzz_TARGET from the harness and the sources it needs.
build_target() {
  local target=$1 work=$2 cflags=("${cxxflags[@]}") libs=("${fmt_libs[@]}") objects=() pids=() source object pid
  if [[ $target == pool_settings ]]; then
    find_mpi
    # As offload/CMakeLists.txt does: the C API only, without Open MPI's C++ bindings to link.
    cflags+=("${mpi_cflags[@]}" -DOMPI_SKIP_MPICXX=1 -DMPICH_SKIP_MPICXX=1)
    libs+=("${mpi_libs[@]}")
  fi
  if [[ $target == spank_options ]]; then
    # options.cpp of the plugin's core (sidecore_spank_core), which includes no Slurm header.
    cflags+=(-I"$root/spank-plugin/src")
  fi
  mkdir -p "$work/obj"
  for source in "$here/fuzz_$target.cpp" $(sources_of "$target"); do
    object="$work/obj/$(basename "$source" .cpp).o"
    objects+=("$object")
    compile "$source" "$object" "${cflags[@]}" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || return 1; done
  local binary="$work/fuzz_$target" newer=0
  for object in "${objects[@]}"; do [[ $object -nt $binary ]] && newer=1; done
  [[ -f $binary && $newer == 0 ]] && return 0
  "$cxx" "${sanitizers[@]}" "${objects[@]}" "${libs[@]}" -o "$binary"
}

failed=()
for target in "${targets[@]}"; do
  work="$build/$target"
  mkdir -p "$work/corpus" "$work/artifacts"
  binary="$work/fuzz_$target"

  # One probe per target folder so that targets run by parallel ctest never share files.
  printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' \
    >"$work/probe.cpp"
  "$cxx" "${sanitizers[@]}" "$work/probe.cpp" -o "$work/probe" 2>"$work/probe.log" ||
    die "'$cxx' cannot link -fsanitize=fuzzer ($(head -n 3 "$work/probe.log" | tr '\n' ' ')). On Debian 12 the" \
        "libFuzzer runtime (libclang_rt.fuzzer) comes in the package libclang-rt-14-dev."

  echo "run-fuzzers: building fuzz_$target with $cxx (only what changed)"
  build_target "$target" "$work" || die "building fuzz_$target failed"

  export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

  # Known crashes first: each must pass once its decoder is fixed.
  crashes=()
  if [[ -d $here/crashes/$target ]]; then
    mapfile -t crashes < <(find "$here/crashes/$target" -type f ! -name '*.md' | sort)
  fi
  if ((${#crashes[@]})); then
    echo "run-fuzzers: replaying ${#crashes[@]} known crash input(s) of $target"
    if ! "$binary" -timeout=10 -rss_limit_mb=2048 "${crashes[@]}" >"$work/replay.log" 2>&1; then
      tail -n 40 "$work/replay.log" >&2
      echo "run-fuzzers: $target still crashes on an input in tests/fuzz/crashes/$target/ (log: $work/replay.log)" >&2
      failed+=("$target")
      continue
    fi
  fi

  echo "run-fuzzers: fuzzing $target for ${seconds}s (seeds: tests/fuzz/corpus/$target, corpus: $work/corpus)"
  log="$work/fuzz.log"
  # The first corpus folder receives new inputs, so the committed seeds stay read-only.
  # shellcheck disable=SC2086  # SIDECORE_FUZZ_FLAGS is a list of flags
  if "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len_of "$target")" \
       -print_final_stats=1 -artifact_prefix="$work/artifacts/" ${SIDECORE_FUZZ_FLAGS:-} \
       "$work/corpus" "$here/corpus/$target" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    corpus=$(find "$work/corpus" -type f | wc -l)
    echo "run-fuzzers: $target: ${runs:-?} executions in ${seconds}s, no crash; corpus now $corpus inputs"
  else
    tail -n 60 "$log" >&2
    echo "run-fuzzers: $target FOUND A CRASH (full log: $log). The input is in $work/artifacts/;" \
         "reproduce with '$binary <input>' and keep it under tests/fuzz/crashes/$target/." >&2
    failed+=("$target")
  fi
done

((${#failed[@]} == 0)) || die "failed: ${failed[*]}"
echo "run-fuzzers: ${targets[*]}: all passed"
