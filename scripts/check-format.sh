#!/usr/bin/env bash
# Checks that the C and C++ lines changed since the commit in .ci/format-base (committed changes,
# uncommitted ones, and new untracked files whole) are formatted as .clang-format says, with Debian
# 12's clang-format 14 (clang-format-diff-14 on the diff). Lines nobody touched keep their hand
# formatting, so a change is never asked to reformat the code around it.
#
#   scripts/check-format.sh                 check; exit status 1, the files and what would change otherwise
#   scripts/check-format.sh --fix           format those lines in place instead
#   scripts/check-format.sh --base COMMIT   compare with COMMIT instead of .ci/format-base
#   CLANG_FORMAT=/path/to/clang-format      another binary (it must be version 14: others format differently)
#
# In a clone without the base commit (a shallow one), it checks the lines of the last commit and says so.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

fix=0
base=""
while (($#)); do
  case $1 in
    --fix) fix=1 ;;
    --base) base=${2:?--base needs a commit}; shift ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "check-format: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

die() { echo "check-format: error: $*" >&2; exit 2; }

clang_format=${CLANG_FORMAT:-}
if [[ -z $clang_format ]]; then
  for candidate in clang-format-14 clang-format; do
    if command -v "$candidate" >/dev/null; then clang_format=$candidate; break; fi
  done
fi
[[ -n $clang_format ]] || die "no clang-format-14: run scripts/install-deps.sh (Debian package clang-format-14)"
version=$("$clang_format" --version)
[[ $version =~ version\ 14\. ]] || die "$clang_format is not clang-format 14 ($version); set CLANG_FORMAT to one"

if [[ -z $base ]]; then
  [[ -f .ci/format-base ]] || die "no .ci/format-base"
  base=$(grep -v '^#' .ci/format-base | head -n 1 | tr -d '[:space:]')
fi
if ! git rev-parse --verify --quiet "$base^{commit}" >/dev/null; then
  if git rev-parse --verify --quiet "HEAD~1^{commit}" >/dev/null; then
    echo "check-format: warning: the format base ${base:0:12} is not in this clone (shallow?): checking the last commit only" >&2
    base=HEAD~1
  else
    echo "check-format: warning: neither the format base ${base:0:12} nor HEAD~1 is in this clone: nothing to compare with" >&2
    exit 0
  fi
fi
format_diff=$(command -v "clang-format-diff-${version_number:-14}" || command -v clang-format-diff || true)
[[ -n $format_diff ]] || die "no clang-format-diff-14 (Debian package clang-format-14)"

patterns=('*.c' '*.h' '*.cc' '*.cpp' '*.hpp')
mapfile -t untracked < <(git ls-files --others --exclude-standard -- "${patterns[@]}")
# The changed lines: the diff against the base of tracked files, and new files as wholly added.
changes=$({
  git diff -U0 --no-color --diff-filter=ACMR "$base" -- "${patterns[@]}"
  for file in "${untracked[@]}"; do git diff -U0 --no-color --no-index /dev/null "$file" || true; done
})
if [[ -z $changes ]]; then
  echo "check-format: no C/C++ lines changed since ${base:0:12}"
  exit 0
fi
if ((fix)); then
  "$format_diff" -p1 -style=file -binary "$clang_format" -i <<<"$changes"
  echo "check-format: formatted the lines changed since ${base:0:12}"
  exit 0
fi
wrong=$("$format_diff" -p1 -style=file -binary "$clang_format" <<<"$changes")
if [[ -z $wrong ]]; then
  echo "check-format: the C/C++ lines changed since ${base:0:12} are formatted"
  exit 0
fi
{
  echo "check-format: lines changed since ${base:0:12} are not formatted as .clang-format says ($version) in:"
  grep '^+++ ' <<<"$wrong" | sed -e 's/^+++ /  /' -e 's/\t.*//'
  echo "What would change:"
  head -n 60 <<<"$wrong"
  echo "Format them with: scripts/check-format.sh --fix"
} >&2
exit 1
