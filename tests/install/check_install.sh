#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then builds and runs a program against it twice:
# with `pkg-config --cflags --libs sidecore` and with CMake's find_package(sidecore).
# With `fortran` after them (a build with the Fortran binding), also a Fortran program, with
# `pkg-config sidecore-fortran` and with sidecore::mpif08; with `python` (Debian's python3 has
# mpi4py), a Python program with the installed package.
# Usage: check_install.sh BUILD_DIR SOURCE_DIR FUNCTION_LIBRARY [fortran] [python]
set -euo pipefail
build=$1 source=$2 functions=$3
shift 3
fortran= python=
for extra in "$@"; do
  case $extra in
    fortran) fortran=fortran ;;
    python) python=python ;;
    "") ;;  # a part this build leaves out
    *) echo "check_install.sh: unknown part '$extra'" >&2; exit 2 ;;
  esac
done
work=$(mktemp -d /tmp/sidecore-install-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

cmake --install "$build" --prefix "$prefix" >/dev/null
for path in bin/sidecore-executor bin/sidecore-run include/sidecore/function.h include/sidecore/sidecore.hpp \
            lib/pkgconfig/sidecore.pc lib/cmake/sidecore/sidecoreConfig.cmake; do
  [[ -e $prefix/$path ]] || { echo "install lacks $path" >&2; exit 1; }
done

# pkg-config module (the .pc file names the prefix it was configured for; point it at ours).
export PKG_CONFIG_PATH=$work/pc
mkdir -p "$PKG_CONFIG_PATH"
sed "s|^prefix=.*|prefix=$prefix|" "$prefix/lib/pkgconfig/sidecore.pc" >"$PKG_CONFIG_PATH/sidecore.pc"
# shellcheck disable=SC2046
g++ -std=c++20 -o "$work/consumer-pc" "$source/tests/install/consumer/consumer.cpp" $(pkg-config --cflags --libs sidecore)
"$prefix/bin/sidecore-run" --cores 1 --quiet -- "$work/consumer-pc" "$functions"

# The MPI extension through the same module, with mpicc as the documentation shows.
for path in include/mpix_offload.h lib/libsidecore_mpix.so; do
  [[ -e $prefix/$path ]] || { echo "install lacks $path" >&2; exit 1; }
done
# shellcheck disable=SC2046
mpicc -o "$work/mpi-consumer" "$source/tests/install/consumer/mpi_consumer.c" $(pkg-config --cflags --libs sidecore)
"$prefix/bin/sidecore-run" --cores 1 --quiet -- mpirun --oversubscribe -n 2 "$work/mpi-consumer" "$functions"

# CMake package.
cmake -S "$source/tests/install/consumer" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cmake-build" >/dev/null
"$prefix/bin/sidecore-run" --cores 1 --quiet -- "$work/cmake-build/consumer" "$functions"
"$prefix/bin/sidecore-run" --cores 1 --quiet -- mpirun --oversubscribe -n 2 "$work/cmake-build/mpi_consumer" "$functions"

if [[ $fortran == fortran ]]; then
  mod=$(find "$prefix" -name mpix_offload.mod)
  [[ -n $mod && -e $prefix/lib/pkgconfig/sidecore-fortran.pc ]] || { echo "install lacks mpix_offload.mod or sidecore-fortran.pc" >&2; exit 1; }
  sed "s|^prefix=.*|prefix=$prefix|" "$prefix/lib/pkgconfig/sidecore-fortran.pc" >"$PKG_CONFIG_PATH/sidecore-fortran.pc"
  # shellcheck disable=SC2046
  mpifort -o "$work/fortran-consumer" "$source/tests/install/fortran_consumer/fortran_consumer.f90" \
    $(pkg-config --cflags --libs sidecore-fortran)
  "$prefix/bin/sidecore-run" --cores 1 --quiet -- mpirun --oversubscribe -n 2 "$work/fortran-consumer" "$functions"
  cmake -S "$source/tests/install/fortran_consumer" -B "$work/cmake-fortran" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
  cmake --build "$work/cmake-fortran" >/dev/null
  "$prefix/bin/sidecore-run" --cores 1 --quiet -- mpirun --oversubscribe -n 2 "$work/cmake-fortran/fortran_consumer" "$functions"
fi

# The Python package, found by Debian's python3 under the prefix's dist-packages folder.
package=$(find "$prefix" -path '*dist-packages/sidecore/__init__.py' | head -1)
[[ -n $package ]] || { echo "install lacks the Python package sidecore" >&2; exit 1; }
if [[ $python == python ]]; then
  PYTHONPATH=$(dirname "$(dirname "$package")") "$prefix/bin/sidecore-run" --cores 1 --quiet -- \
    mpirun --oversubscribe -n 2 /usr/bin/python3 "$source/tests/install/python_consumer.py" "$functions"
fi

# A C function library built against the installed ABI header alone.
gcc -shared -fPIC -I"$prefix/include" -o "$work/libc_functions.so" "$source/tests/functions/test_functions.c"
echo "install: ok"
