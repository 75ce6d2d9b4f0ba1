#!/usr/bin/env bash
# The guards that keep a tier from vanishing in silence, checked as a user of scripts/test.sh would
# meet them: a GoogleTest filter that selects nothing fails, ctest --no-tests=error fails on an empty
# selection, and SIDECORE_BUILD_SPANK=ON without slurm/spank.h fails at configure time.
# Usage: check_no_silent_tiers.sh SOURCE_DIR BUILD_DIR GTEST_BINARY
set -euo pipefail
source_dir=$1 build=$2 gtest_binary=$3
fail() { echo "FAIL: $*" >&2; exit 1; }
work=$(mktemp -d /tmp/sidecore-tier-guards.XXXXXX)
trap 'rm -rf "$work"' EXIT

set +e
"$gtest_binary" --gtest_filter='NoSuchSuite.*' >"$work/out" 2>&1
rc=$?
set -e
[[ $rc != 0 ]] || fail "a GoogleTest filter that selects no test passed: $(cat "$work/out")"
grep -q "no test matches the filter 'NoSuchSuite.\*'" "$work/out" || fail "no message naming the filter: $(cat "$work/out")"
echo "ok: a filter that selects no test fails (exit $rc) and names the filter"

if ctest --test-dir "$build" --no-tests=error -L 'no-such-label' >"$work/out" 2>&1; then
  fail "ctest --no-tests=error passed an empty selection"
fi
echo "ok: ctest --no-tests=error fails an empty selection"

# A configure that cannot see /usr/include's slurm/spank.h, as on a machine without libslurm-dev.
if cmake -S "$source_dir" -B "$work/build" -DSIDECORE_BUILD_SPANK=ON -DCMAKE_IGNORE_PATH=/usr/include \
     -DSIDECORE_BUILD_TESTS=OFF -DSIDECORE_BUILD_BENCH=OFF -DSIDECORE_BUILD_EXAMPLES=OFF >"$work/out" 2>&1; then
  fail "SIDECORE_BUILD_SPANK=ON configured without slurm/spank.h"
fi
grep -q "Could NOT find Slurm" "$work/out" || fail "the configure error does not name Slurm: $(tail -5 "$work/out")"
echo "ok: SIDECORE_BUILD_SPANK=ON without slurm/spank.h fails at configure time"
