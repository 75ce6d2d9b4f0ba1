#!/usr/bin/env bash
# The Debian package, the way an admin meets it: built with CPack, installed with apt into a clean
# Debian 12 root (a fresh overlay over the cached one, so the cache stays clean), then a real Slurm
# job with --offload from the installed files only, and an upgrade while a step runs.
#
#   tests/package/deb_test.sh SOURCE_DIR PACKAGE_BUILD_DIR
#
# PACKAGE_BUILD_DIR is this test's own build folder (prefix /usr, no tests, examples or bench); it
# builds a package of the project's version, then one of a higher version (SIDECORE_VERSION) for the
# upgrade. The Debian root is $SIDECORE_BOOKWORM_ROOT (default /var/cache/sidecore/roots/bookworm),
# created with Debian's munge and Slurm if missing (about 2 minutes, needs the registry). Inside it,
# tests/package/inside_root.sh does the steps: `install` (apt, with the registry) and `cluster`
# (in a network namespace of its own: munge, slurmctld and slurmd on their default ports).
# Needs root. Leaves nothing behind: the overlay lives in a private mount namespace, and whatever
# runs inside the root is killed on the way out.
set -euo pipefail

source_dir=$(cd "${1:?usage: $0 SOURCE_DIR PACKAGE_BUILD_DIR}" && pwd)
build=${2:?usage: $0 SOURCE_DIR PACKAGE_BUILD_DIR}
cache=${SIDECORE_BOOKWORM_ROOT:-/var/cache/sidecore/roots/bookworm}
here=$source_dir/tests/package
debian_root=$source_dir/scripts/debian-root.sh

fail() { echo "FAIL: $*" >&2; exit 1; }
check() { echo "ok: $*"; }
set -E
trap '[[ $BASH_SUBSHELL -gt 0 ]] || echo "FAIL: deb_test.sh line $LINENO: $BASH_COMMAND" >&2' ERR
phase_start=$SECONDS
phase() { echo "=== $* (at $((SECONDS - phase_start)) s)"; }

[[ $(id -u) -eq 0 ]] || fail "the package test runs as root (dpkg, chroot, mounts)"
# A deadline of our own below ctest's TIMEOUT (900 s): timeout's SIGTERM runs the clean-up below,
# where a kill from outside might not.
if [[ -z ${SIDECORE_DEB_TEST_DEADLINE-} ]]; then
  export SIDECORE_DEB_TEST_DEADLINE=870
  exec timeout "$SIDECORE_DEB_TEST_DEADLINE" "$0" "$@"
fi
for tool in cpack dpkg-deb dpkg-shlibdeps unshare pkg-config g++ gcc; do
  command -v "$tool" >/dev/null || fail "$tool is missing (scripts/install-deps.sh)"
done

work=$(mktemp -d /tmp/sidecore-deb-test.XXXXXX)
# Processes whose root is our overlay: the daemons and executors started inside. They would keep
# the private namespaces (and the overlay) alive if the test stopped half-way.
kill_inside() {
  local entry pid
  for entry in /proc/[0-9]*; do
    pid=${entry#/proc/}
    if [[ $(readlink "$entry/root" 2>/dev/null) == "$work/root" ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
}
cleanup() {
  kill_inside
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
mkdir -p "$work/files" "$work/root" "$work/upper" "$work/overlay-work"
chmod 0755 "$work" "$work/files"

phase "building the packages in $build"
# The main build's flags (RelWithDebInfo, -Werror), so that a compiler cache (scripts/test.sh) can
# give back its objects.
cmake_args=(-S "$source_dir" -B "$build" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=RelWithDebInfo
            -DSIDECORE_WERROR=ON -DSIDECORE_BUILD_TESTS=OFF -DSIDECORE_BUILD_BENCH=OFF -DSIDECORE_BUILD_EXAMPLES=OFF)
package() {  # package OUTPUT_DIR [cmake args...]: configures, builds and packs; prints the .deb
  local out=$1
  shift
  cmake "${cmake_args[@]}" "$@" >"$work/cmake.log" 2>&1 || { cat "$work/cmake.log" >&2; fail "configure failed"; }
  cmake --build "$build" -j "$(nproc)" >"$work/build.log" 2>&1 || { tail -50 "$work/build.log" >&2; fail "build failed"; }
  (cd "$build" && cpack -G DEB -B "$out") >"$work/cpack.log" 2>&1 || { cat "$work/cpack.log" >&2; fail "cpack failed"; }
  local deb
  deb=$(ls "$out"/sidecore_*.deb)
  [[ -f $deb ]] || fail "cpack wrote no sidecore_*.deb into $out"
  echo "$deb"
}
deb1=$(package "$work/v1" -USIDECORE_VERSION)
v1=$(dpkg-deb -f "$deb1" Version)
v2="$v1+upgrade1"
deb2=$(package "$work/v2" -DSIDECORE_VERSION="$v2")
[[ $(dpkg-deb -f "$deb2" Version) == "$v2" ]] || fail "the second package is not version $v2"
cp "$deb1" "$deb2" "$work/files/"
echo "Depends: $(dpkg-deb -f "$deb1" Depends)"
echo "Breaks: $(dpkg-deb -f "$deb1" Breaks)"
dpkg-deb -f "$deb1" Depends | grep -q 'libopenmpi3' || fail "no Open MPI in Depends (libsidecore_mpix needs it)"
dpkg-deb -f "$deb1" Breaks | grep -q 'slurmd (>= ' || fail "no Breaks on other Slurm releases"
dpkg-deb -I "$deb1" conffiles | grep -qx '/etc/slurm/plugstack.conf.d/sidecore.conf' ||
  fail "the drop-in is not a conffile"
check "built $(basename "$deb1") and $(basename "$deb2")"

# A program and a function library of a user, built against the package's own headers, libraries
# and pkg-config module (unpacked here; the root has no compiler), run inside the root.
sdk=$work/sdk
dpkg-deb -x "$deb1" "$sdk"
gcc -shared -fPIC -I"$sdk/usr/include" -o "$work/files/libfunctions.so" "$source_dir/tests/functions/test_functions.c"
# shellcheck disable=SC2046
g++ -std=c++20 -o "$work/files/consumer" "$source_dir/tests/install/consumer/consumer.cpp" \
  $(PKG_CONFIG_SYSROOT_DIR=$sdk PKG_CONFIG_LIBDIR=$sdk/usr/lib/x86_64-linux-gnu/pkgconfig pkg-config --cflags --libs sidecore)
cp "$here/inside_root.sh" "$work/files/"
chmod -R a+rX "$work/files"

phase "preparing the Debian 12 root $cache"
"$debian_root" create bookworm "$cache" munge slurmd slurmctld slurm-client

phase "installing and running inside a fresh overlay of it"
# One private mount namespace holds the overlay; debian-root.sh's own namespaces nest inside it.
unshare --mount --propagation private bash -c '
  set -e
  cache=$1 work=$2 debian_root=$3 deb1=$4 deb2=$5 v1=$6 v2=$7
  mount -t overlay overlay -o "lowerdir=$cache,upperdir=$work/upper,workdir=$work/overlay-work" "$work/root"
  "$debian_root" run --bind "$work/files:/sidecore-test" "$work/root" -- \
    bash /sidecore-test/inside_root.sh install "$deb1"
  "$debian_root" run --net --bind "$work/files:/sidecore-test" "$work/root" -- \
    timeout 300 bash /sidecore-test/inside_root.sh cluster "$v1" "$v2" "$deb2"
' bash "$cache" "$work" "$debian_root" "$(basename "$deb1")" "$(basename "$deb2")" "$v1" "$v2" ||
  fail "inside the root (above)"
phase "done"
check "package test passed in $((SECONDS - phase_start)) s"
