#!/usr/bin/env bash
# A Debian root made with debootstrap from the registry apt uses here, cached between runs, and a
# way to run commands inside it. Used by `scripts/test.sh --distro trixie` (Debian 13's Slurm, Open
# MPI and libfabric) and by the package test (a clean Debian 12 root that gets only the .deb).
#
#   scripts/debian-root.sh create SUITE DIR [PACKAGE...]
#       debootstraps SUITE (bookworm, trixie, ...) into DIR unless DIR already holds a finished root,
#       then installs the packages that are missing inside it. Safe to run any number of times.
#   scripts/debian-root.sh run [--net] [--bind SRC[:DST]]... DIR -- COMMAND...
#       runs COMMAND inside DIR as root, with /proc, /sys (and its cgroup mounts), /dev, /dev/shm and
#       /dev/pts of this machine, in a private mount namespace: the mounts vanish when COMMAND ends,
#       whatever way it ends. --net also gives it a network namespace of its own with only loopback
#       up, so daemons inside can take the same ports as daemons outside. Loopback gets a second
#       address, 127.0.0.2: getaddrinfo with AI_ADDRCONFIG (Slurm uses it) returns no IPv4 address,
#       not even for "127.0.0.1", when 127.0.0.1 is the only one. --bind makes a folder of
#       this machine visible inside (at the same path unless DST is given).
#
# Needs root and debootstrap (scripts/install-deps.sh installs it). The mirror is the first
# deb.debian.org-style URI of apt's own sources; override it with SIDECORE_DEBIAN_MIRROR.
set -euo pipefail

say() { echo "debian-root: $*" >&2; }
die() { say "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, chroot and mounts need it)"

# The Debian mirror apt uses on this machine (deb822 sources first, then the one-line format).
debian_mirror() {
  if [[ -n ${SIDECORE_DEBIAN_MIRROR-} ]]; then echo "$SIDECORE_DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -v security | head -1 || true)
  [[ -n $uri ]] || uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' \
                         /etc/apt/sources.list 2>/dev/null || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# Binds this machine's kernel file systems into $1 (inside a private mount namespace). The root
# itself becomes a mount point first, so "/" inside is one, as on a booted system: `ip netns add`
# (`mount --make-rslave /`) and other tools that change the propagation of / fail on a plain folder.
mount_kernel_filesystems() {
  local dir=$1
  mount --bind "$dir" "$dir"
  mount --rbind /proc "$dir/proc"
  mount --rbind /sys "$dir/sys"
  mount --rbind /dev "$dir/dev"
  mkdir -p "$dir/dev/shm" "$dir/dev/pts"
}

cmd_create() {
  local suite=${1:?create needs a suite} dir=${2:?create needs a folder}
  shift 2
  command -v debootstrap >/dev/null || die "debootstrap is missing (scripts/install-deps.sh)"
  if [[ ! -e $dir/.sidecore-root-ready ]]; then
    [[ ! -e $dir ]] || { say "removing the unfinished root in $dir"; rm -rf --one-file-system "$dir"; }
    mkdir -p "$dir"
    local mirror
    mirror=$(debian_mirror)
    say "debootstrap $suite into $dir from $mirror (about a minute)"
    debootstrap --variant=minbase "$suite" "$dir" "$mirror" >"$dir.debootstrap.log" 2>&1 ||
      die "debootstrap failed; see $dir.debootstrap.log"
    # Security updates too, from the same registry, when this machine's apt has them.
    local security
    security=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*security[^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 || true)
    {
      echo "deb $mirror $suite main"
      echo "deb $mirror $suite-updates main"
      [[ -z $security ]] || echo "deb $security $suite-security main"
    } >"$dir/etc/apt/sources.list"
    # Services must not start inside the root while packages install.
    printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
    chmod 0755 "$dir/usr/sbin/policy-rc.d"
    touch "$dir/.sidecore-root-ready"
  fi
  cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
  (($# == 0)) && return 0
  local missing=() pkg status
  for pkg in "$@"; do
    status=$(chroot "$dir" dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && { say "$suite root in $dir has all ${#} packages"; return 0; }
  say "installing into the $suite root: ${missing[*]}"
  cmd_run "$dir" -- sh -c 'export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "$@"' sh "${missing[@]}"
}

cmd_run() {
  local net=0 binds=()
  while (($#)); do
    case $1 in
      --net) net=1 ;;
      --bind) binds+=("${2:?--bind needs a folder}"); shift ;;
      --) die "run needs the root folder before --" ;;
      *) break ;;
    esac
    shift
  done
  local dir=${1:?run needs the root folder}
  shift
  [[ ${1-} == -- ]] || die "run: expected -- before the command"
  shift
  (($#)) || die "run: no command"
  [[ -e $dir/.sidecore-root-ready ]] || die "$dir is not a finished root (run create first)"
  local bind_lines="" entry src dst
  for entry in "${binds[@]}"; do
    src=${entry%%:*}
    dst=${entry#*:}
    [[ $entry == *:* ]] || dst=$src
    bind_lines+="mkdir -p '$dir$dst' && mount --rbind '$src' '$dir$dst' && "
  done
  local unshare_args=(--mount --propagation private)
  ((net)) && unshare_args+=(--net)
  # The inner shell mounts, then becomes the command inside the root: when it exits the namespace
  # and all its mounts go away, so nothing is left mounted on this machine even after a kill.
  unshare "${unshare_args[@]}" bash -c "set -e
    $(declare -f mount_kernel_filesystems)
    mount_kernel_filesystems '$dir'
    mount -t tmpfs -o mode=1777 tmpfs '$dir/dev/shm'
    ${bind_lines}true
    $( ((net)) && echo 'ip link set lo up && ip addr add 127.0.0.2/32 dev lo' )
    exec chroot '$dir' /usr/bin/env -i HOME=/root TERM=\${TERM:-dumb} PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \"\$@\"" \
    bash "$@"
}

case ${1-} in
  create) shift; cmd_create "$@" ;;
  run) shift; cmd_run "$@" ;;
  *) echo "usage: $0 create SUITE DIR [PACKAGE...] | run [--net] [--bind SRC[:DST]]... DIR -- COMMAND..." >&2; exit 2 ;;
esac
