#!/usr/bin/env bash
# The cross-node round trip: sidecore-bench latency with its client in one simulated node and its
# server child (executor worker and raw libfabric echo) in another, over a cross-node provider.
#
#   bench/cross-node.sh [--build DIR] [--providers 'tcp;ofi_rxm,net'] [--bytes 64,4K,64K] [--rounds N] [--runs K]
#
# Uses the namespaces sidecore-node1 and sidecore-node2 of `slurm/local-cluster.sh up --nodes 2..8`
# when they exist; otherwise makes two of its own with the same topology (a veth into a bridge per
# node) and removes them at the end. Needs root. One JSON line per provider, size and run on
# stdout, as sidecore-bench prints them; the ratio is Sidecore's round trip over the raw one, both
# measured in the same run between the same two processes.
#
# Both namespaces share this machine's CPUs: the client is pinned to CPU 0, the server to CPU 1
# (sidecore-bench's defaults), so neither waits for the other's core; the kernel's network stack
# runs wherever the sending thread runs.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SIDECORE_BUILD_DIR:-$root/build}
providers="tcp;ofi_rxm,net"
bytes="64,4K,64K"
rounds=20
runs=3

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case $1 in
    --build) build=${2:?}; shift ;;
    --providers) providers=${2:?}; shift ;;
    --bytes) bytes=${2:?}; shift ;;
    --rounds) rounds=${2:?}; shift ;;
    --runs) runs=${2:?}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "cross-node.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $(id -u) -eq 0 ]] || { echo "cross-node.sh: needs root (network namespaces)" >&2; exit 1; }
bench=$build/bench/sidecore-bench
[[ -x $bench ]] || { echo "cross-node.sh: no $bench; build the project first" >&2; exit 1; }

client_ns=sidecore-node1 server_ns=sidecore-node2
if [[ ! -e /run/netns/$client_ns || ! -e /run/netns/$server_ns ]]; then
  # Two namespaces of our own, wired as local-cluster.sh wires its nodes.
  client_ns=sidecore-bench-a server_ns=sidecore-bench-b
  bridge=sidecore-bbr0
  cleanup() {
    ip link del sc-bench-a 2>/dev/null || true
    ip link del sc-bench-b 2>/dev/null || true
    ip netns del sidecore-bench-a 2>/dev/null || true
    ip netns del sidecore-bench-b 2>/dev/null || true
    ip link del "$bridge" 2>/dev/null || true
  }
  trap cleanup EXIT
  cleanup
  ip link add "$bridge" type bridge
  ip link set "$bridge" up
  address=10
  for side in a b; do
    ip netns add "sidecore-bench-$side"
    ip link add "sc-bench-$side" type veth peer name eth0 netns "sidecore-bench-$side"
    ip link set "sc-bench-$side" master "$bridge" up
    ip -n "sidecore-bench-$side" addr add "10.203.78.$address/24" dev eth0
    ip -n "sidecore-bench-$side" link set lo up
    ip -n "sidecore-bench-$side" link set eth0 up
    address=$((address + 1))
  done
fi
echo "cross-node.sh: client in $client_ns, server in $server_ns" >&2

IFS=, read -r -a provider_list <<<"$providers"
for provider in "${provider_list[@]}"; do
  for ((run = 1; run <= runs; run++)); do
    # The providers must use each node's own interface, never the loopback one.
    nsenter --net="/run/netns/$client_ns" env FI_TCP_IFACE=eth0 FI_NET_IFACE=eth0 \
      "$bench" latency --provider "$provider" --server-netns "$server_ns" --bytes "$bytes" --rounds "$rounds"
  done
done
