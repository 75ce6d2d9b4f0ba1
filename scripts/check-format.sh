#!/usr/bin/env bash
# Checks that every C and C++ file changed since the commit in .ci/format-base (committed changes,
# uncommitted ones and new untracked files alike) is formatted as .clang-format says, with Debian 12's
# clang-format 14 (`--dry-run -Werror`). Files nobody touched since then are not checked.
#
#   scripts/check-format.sh                 check; exit status 1 and the files' names when one is not formatted
#   scripts/check-format.sh --fix           format those files in place instead
#   scripts/check-format.sh --base COMMIT   compare with COMMIT instead of .ci/format-base
#   CLANG_FORMAT=/path/to/clang-format      another binary (it must be version 14: others format differently)
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
git rev-parse --verify --quiet "$base^{commit}" >/dev/null ||
  die "the format base $base is not in this clone's history (a shallow clone? fetch more: git fetch --unshallow)"

# Changed since the base (committed or not, renames followed), and untracked files git does not ignore.
mapfile -t files < <({
  git diff --name-only --diff-filter=ACMR "$base" -- '*.c' '*.h' '*.cc' '*.cpp' '*.hpp'
  git ls-files --others --exclude-standard -- '*.c' '*.h' '*.cc' '*.cpp' '*.hpp'
} | sort -u)

unformatted=()
for file in "${files[@]}"; do
  [[ -f $file ]] || continue
  if ! "$clang_format" --style=file --dry-run -Werror "$file" >/dev/null 2>&1; then
    unformatted+=("$file")
  fi
done

if ((${#unformatted[@]} == 0)); then
  echo "check-format: the ${#files[@]} C/C++ files changed since ${base:0:12} are formatted"
  exit 0
fi
if ((fix)); then
  "$clang_format" --style=file -i "${unformatted[@]}"
  printf 'check-format: formatted %s\n' "${unformatted[@]}"
  exit 0
fi
{
  echo "check-format: ${#unformatted[@]} of the ${#files[@]} C/C++ files changed since ${base:0:12} are not formatted"
  echo "as .clang-format says ($version):"
  printf '  %s\n' "${unformatted[@]}"
  echo "Format them with: scripts/check-format.sh --fix   (or: $clang_format -i FILE...)"
  echo "What would change: $clang_format --style=file FILE | diff FILE -"
} >&2
exit 1
