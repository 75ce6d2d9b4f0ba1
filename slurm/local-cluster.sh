#!/usr/bin/env bash
# A real Slurm on this machine, for tests and demos: its own munged, slurmctld and slurmd, every
# key, socket, state, spool, log and pid file in one private folder, and spank_sidecore.so loaded as
# `required` (a plugin that fails to load makes every step fail loudly, not silently lose executors).
#
#   slurm/local-cluster.sh up [--nodes N] [--cgroup] [--prefix DIR] [--build DIR] [--executor PATH]
#                             [--plugin-args 'k=v ...']
#   slurm/local-cluster.sh down | status | env
#
# up           starts what is not running; run again with other options, it rewrites the
#              configuration and restarts the daemons that need it; with the same ones it does nothing.
# --prefix DIR the plugin and executor installed under DIR (lib*/slurm*/spank_sidecore.so, bin/)
# --build DIR  the project's build folder (default: $SIDECORE_BUILD_DIR, else <repo>/build)
# --executor PATH  another sidecore-executor than the one next to the plugin
# --plugin-args admin arguments for the plugstack.conf line (see slurm/plugstack.conf.d/sidecore.conf)
# --cgroup     the configuration most production sites run: TaskPlugin=task/cgroup,task/affinity,
#              ProctrackType=proctrack/cgroup, JobAcctGatherType=jobacct_gather/cgroup and a cgroup.conf
#              with ConstrainCores=yes (cgroup/v1 where the node mounts cgroup v1 controllers, else
#              cgroup/v2). Without it: task/affinity and proctrack/linuxproc. `up` without --cgroup
#              switches back.
# --nodes N    1 (default): one node, "localhost"; 2 to 8: nodes node1..nodeN, each its own host:
#              a network namespace (sidecore-nodeI, address 10.203.77.(10+I) on the bridge
#              sidecore-br0, 10.203.77.1 in this namespace, where slurmctld listens), its own
#              hostname, /etc/hosts and /dev/shm. All nodes share this machine's CPUs. With 2 or
#              more nodes a third partition, spare, over all of them, which debug and other preempt
#              (PreemptType=preempt/partition_prio, PreemptMode=CANCEL, GraceTime=5; docs/admin.md §8).
# env          prints `export SLURM_CONF=...` lines: eval "$(slurm/local-cluster.sh env)"
#
# Needs root (slurmd does) and Debian's munge slurmctld slurmd slurm-client (scripts/install-deps.sh).
# The folder is $SIDECORE_SLURM_DIR (default /tmp/sidecore-slurm); ports 16817 and 16818.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${SIDECORE_SLURM_DIR:-/tmp/sidecore-slurm}
ctld_port=${SIDECORE_SLURMCTLD_PORT:-16817}
slurmd_port=${SIDECORE_SLURMD_PORT:-16818}
conf=$dir/slurm.conf
# Simulated nodes (--nodes 2..8): a bridge here and one network namespace per node.
bridge=sidecore-br0
subnet=10.203.77
controller_address=$subnet.1

say() { echo "local-cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }

pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Stops the daemon whose pid file is $1 (SIGTERM, then SIGKILL after 10 s) and waits for it.
stop_daemon() {
  local pidfile=$1 name=$2 pid
  pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name ($pid) ignored SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
}

need_tools() {
  local missing=()
  for tool in munged mungekey slurmctld slurmd sinfo scontrol srun; do
    command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] || missing+=("$tool")
  done
  ((${#missing[@]} == 0)) || die "missing ${missing[*]}; install them with scripts/install-deps.sh"
  [[ $(id -u) -eq 0 ]] || die "must run as root (slurmd and munged need it)"
}

# The plugin and executor to use: from --prefix, else from the build folder.
locate_sidecore() {
  if [[ -n $prefix ]]; then
    plugin=""
    for candidate in "$prefix"/lib*/slurm*/spank_sidecore.so "$prefix"/lib/*/slurm*/spank_sidecore.so; do
      [[ -f $candidate ]] && { plugin=$candidate; break; }
    done
    [[ -n $plugin ]] || die "no spank_sidecore.so under $prefix/lib*/slurm* (was the project installed there?)"
    executor=$prefix/bin/sidecore-executor
  else
    plugin=$build/spank-plugin/spank_sidecore.so
    executor=$build/runtime/sidecore-executor
    [[ -f $plugin ]] || die "no plugin at $plugin: build the project (or pass --build DIR / --prefix DIR)"
  fi
  [[ -z $executor_override ]] || executor=$executor_override
  [[ -x $executor ]] || die "no executor at $executor"
}

start_munge() {
  if [[ -S $dir/munge/munge.socket ]] && munge -n -S "$dir/munge/munge.socket" 2>/dev/null |
       unmunge -S "$dir/munge/munge.socket" >/dev/null 2>&1; then
    return 0
  fi
  stop_daemon "$dir/munge/munged.pid" munged
  install -d -m 0700 -o munge -g munge "$dir/munge"
  if [[ ! -s $dir/munge/munge.key ]]; then
    mungekey --create --keyfile="$dir/munge/munge.key" >/dev/null
    chown munge:munge "$dir/munge/munge.key"
    chmod 0600 "$dir/munge/munge.key"
  fi
  # The socket's folder must be reachable by every user who runs srun; the key stays private.
  chmod 0711 "$dir/munge"
  runuser -u munge -- munged --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"
  for _ in $(seq 50); do
    munge -n -S "$dir/munge/munge.socket" 2>/dev/null | unmunge -S "$dir/munge/munge.socket" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "munged did not start; see $dir/munge/munged.log"
}

# The node names of the cluster as configured (localhost, or node1..nodeN).
node_names() {
  local count=1
  [[ -s $dir/nodes ]] && count=$(cat "$dir/nodes")
  if ((count == 1)); then echo localhost; else seq -f 'node%g' 1 "$count"; fi
}

# Bridge, namespaces, addresses and /etc/hosts of the simulated nodes (idempotent).
setup_network() {
  local count=$1 i
  command -v ip >/dev/null || die "ip (iproute2) is needed for --nodes $count"
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
    ip addr add "$controller_address/24" dev "$bridge"
  fi
  ip link set "$bridge" up
  {
    echo "127.0.0.1 localhost"
    echo "$controller_address $(hostname)"
    for ((i = 1; i <= count; i++)); do echo "$subnet.$((10 + i)) node$i"; done
  } > "$dir/hosts"
  chmod 0644 "$dir/hosts"
  for ((i = 1; i <= count; i++)); do
    local ns=sidecore-node$i
    [[ -e /run/netns/$ns ]] || ip netns add "$ns"
    if ! ip link show "sc-node$i" >/dev/null 2>&1; then
      ip link add "sc-node$i" type veth peer name eth0 netns "$ns"
      ip link set "sc-node$i" master "$bridge" up
      ip -n "$ns" addr add "$subnet.$((10 + i))/24" dev eth0
    fi
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route replace default via "$controller_address"
  done
}

teardown_network() {
  local i
  for ((i = 1; i <= 8; i++)); do
    ip link del "sc-node$i" 2>/dev/null || true
    [[ -e /run/netns/sidecore-node$i ]] && ip netns del "sidecore-node$i" 2>/dev/null || true
  done
  ip link del "$bridge" 2>/dev/null || true
}

# slurmd for node $1, in its namespace with its own hostname, /etc/hosts and /dev/shm (nsenter,
# not `ip netns exec`, which remounts /sys and takes the cgroup mounts away from slurmd).
start_node_slurmd() {
  local node=$1
  if [[ $node == localhost ]]; then
    slurmd -N localhost -f "$conf"
    return
  fi
  nsenter --net="/run/netns/sidecore-$node" unshare --uts --mount --propagation private \
    sh -c "hostname $node && mount -t tmpfs -o mode=1777 tmpfs /dev/shm && mount --bind '$dir/hosts' /etc/hosts && exec slurmd -N $node -f '$conf'"
}

# With simulated nodes, the lease partition `spare` over all of them (docs/admin.md, "Leases"):
# the default partitions preempt it (PriorityTier 2 over 1) and cancel its jobs after a grace time.
preemption_lines() {
  (($1 > 1)) || return 0
  echo "PreemptType=preempt/partition_prio"
  echo "PreemptMode=CANCEL"
  echo "SchedulerParameters=${SIDECORE_SLURM_SCHED_PARAMS-sched_interval=2}"
}
partition_tier() { (($1 > 1)) && echo " PriorityTier=$2 PreemptMode=OFF" || true; }
spare_partition() {
  (($1 > 1)) || return 0
  echo "PartitionName=spare Nodes=$2 MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=CANCEL GraceTime=${SIDECORE_SLURM_GRACE_TIME:-5}"
}

write_config() {
  local layout count=$1 cgroup=$2
  # The node's real layout, so that slurmd agrees with slurm.conf (memory left at the default).
  layout=$(slurmd -C | head -1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ RealMemory=[0-9]*//')
  local control="localhost(127.0.0.1)" nodes_lines partition_nodes
  if ((count == 1)); then
    nodes_lines="NodeName=localhost NodeAddr=127.0.0.1 $layout State=UNKNOWN"
    partition_nodes=localhost
  else
    control="$(hostname)($controller_address)"
    nodes_lines=$(for ((i = 1; i <= count; i++)); do
      echo "NodeName=node$i NodeAddr=$subnet.$((10 + i)) NodeHostname=node$i $layout State=UNKNOWN"
    done)
    partition_nodes="node[1-$count]"
  fi
  install -d -m 0755 "$dir" "$dir/log" "$dir/state" "$dir/spool" "$dir/run"
  install -d -m 1777 "$dir/tmp"
  cat > "$dir/slurm.conf.new" <<CONF
# Written by slurm/local-cluster.sh; rewritten on every \`up\` whose options changed.
ClusterName=sidecore
SlurmctldHost=$control
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
SlurmdDebug=info
SlurmctldDebug=info
TmpFS=$dir/tmp/%n
PlugStackConfig=$dir/plugstack.conf
$(task_lines "$cgroup")
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
MailProg=/bin/true
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobAcctGatherType=$( ((cgroup)) && echo jobacct_gather/cgroup || echo jobacct_gather/none)
# Finished jobs in a text file, which sacct --completion reads (leases included): a record of
# what ran without a slurmdbd.
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
ReturnToService=2
KillWait=5
MinJobAge=10
$(preemption_lines "$count")
$nodes_lines
PartitionName=debug Nodes=$partition_nodes Default=YES MaxTime=INFINITE State=UP$(partition_tier "$count" 2)
PartitionName=other Nodes=$partition_nodes MaxTime=INFINITE State=UP$(partition_tier "$count" 2)
$(spare_partition "$count" "$partition_nodes")
CONF
  write_cgroup_conf "$cgroup"
  cat > "$dir/plugstack.conf.new" <<CONF
# Written by slurm/local-cluster.sh. Admin arguments: slurm/plugstack.conf.d/sidecore.conf.
required $plugin executor=$executor $plugin_args
CONF
}

# The task and process-tracking plugins: cgroups (as production sites run) or affinity and /proc.
task_lines() {
  if (($1)); then
    echo "TaskPlugin=task/cgroup,task/affinity"
    echo "ProctrackType=proctrack/cgroup"
  else
    echo "TaskPlugin=task/affinity"
    echo "ProctrackType=proctrack/linuxproc"
  fi
}

# The cgroup version this node's Slurm should use: v1 where the cpuset controller is mounted as a v1
# hierarchy (as on Debian 12's hybrid layout), else v2.
cgroup_version() {
  if awk '$3 == "cgroup" && $4 ~ /(^|,)cpuset(,|$)/ {found = 1} END {exit !found}' /proc/mounts; then
    echo v1
  else
    echo v2
  fi
}

# cgroup.conf beside slurm.conf (read by slurmd and slurmstepd; only with --cgroup).
write_cgroup_conf() {
  if ! (($1)); then
    rm -f "$dir/cgroup.conf.new"
    return
  fi
  local version
  version=$(cgroup_version)
  {
    echo "# Written by slurm/local-cluster.sh --cgroup (see docs/admin.md, \"cgroups\")."
    echo "CgroupPlugin=cgroup/$version"
    echo "ConstrainCores=yes"
    echo "ConstrainDevices=no"
    echo "ConstrainRAMSpace=no"
    echo "ConstrainSwapSpace=no"
    # No systemd on these machines: slurmd makes its own scope (cgroup v2 only).
    [[ $version == v1 ]] || echo "IgnoreSystemd=yes"
  } > "$dir/cgroup.conf.new"
}

# Starts slurmctld and slurmd if they are not running, then waits until the node takes jobs.
start_slurm() {
  if ! pid_alive "$dir/run/slurmctld.pid"; then
    # -c: a test cluster starts with no jobs left over from an earlier run.
    slurmctld -c -f "$conf" || die "slurmctld did not start; see $dir/log/slurmctld.log"
  fi
  local node started=()
  for node in $(node_names); do
    install -d -m 1777 "$dir/tmp/$node"
    if ! pid_alive "$dir/run/slurmd-$node.pid"; then
      start_node_slurmd "$node" || die "slurmd did not start on $node; see $dir/log/slurmd-$node.log"
      started+=("$node")
    fi
  done
  # A slurmd writes its pid file once it has finished starting: Slurm 24.11's, restarted under a
  # running step, takes about 10 s for that, while the node already counts as allocated.
  for node in "${started[@]}"; do
    for _ in $(seq 300); do
      pid_alive "$dir/run/slurmd-$node.pid" && break
      sleep 0.1
    done
    pid_alive "$dir/run/slurmd-$node.pid" || die "slurmd on $node did not finish starting in 30 s; see $dir/log/slurmd-$node.log"
  done
  local state="" ready
  for _ in $(seq 300); do
    ready=1
    for node in $(node_names); do
      state=$(SLURM_CONF=$conf sinfo -h -n "$node" -o %T 2>/dev/null | head -1 || true)
      case $state in
        idle | mixed | allocated) ;;
        drain* | down*)
          ready=0
          SLURM_CONF=$conf scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true ;;
        *) ready=0 ;;
      esac
    done
    ((ready)) && return 0
    sleep 0.1
  done
  die "node $node is '${state:-unknown}' after 30 s; see $dir/log/"
}

cmd_up() {
  local nodes=1 cgroup=0
  prefix="" build=${SIDECORE_BUILD_DIR:-$root/build} plugin_args="" executor_override=""
  while (($#)); do
    case $1 in
      --nodes) nodes=${2:?--nodes needs a number}; shift ;;
      --nodes=*) nodes=${1#*=} ;;
      --cgroup) cgroup=1 ;;
      --prefix) prefix=${2:?--prefix needs a folder}; shift ;;
      --prefix=*) prefix=${1#*=} ;;
      --build) build=${2:?--build needs a folder}; shift ;;
      --build=*) build=${1#*=} ;;
      --executor) executor_override=${2:?--executor needs a path}; shift ;;
      --executor=*) executor_override=${1#*=} ;;
      --plugin-args) plugin_args=${2-}; shift ;;
      --plugin-args=*) plugin_args=${1#*=} ;;
      *) die "up: unknown option '$1'" ;;
    esac
    shift
  done
  [[ $nodes =~ ^[0-9]+$ ]] && ((nodes >= 1 && nodes <= 8)) || die "--nodes wants a number from 1 to 8, not '$nodes'"
  need_tools
  locate_sidecore
  install -d -m 0755 "$dir"
  # A change of node count stops every slurmd of the old layout first.
  local old_count=1
  [[ -s $dir/nodes ]] && old_count=$(cat "$dir/nodes")
  if ((old_count != nodes)); then
    local node
    for node in $(node_names); do stop_daemon "$dir/run/slurmd-$node.pid" slurmd; done
    ((nodes > 1 || old_count == 1)) || teardown_network
  fi
  echo "$nodes" > "$dir/nodes"
  ((nodes == 1)) || setup_network "$nodes"
  start_munge
  write_config "$nodes" "$cgroup"
  local restart_ctld=0 restart_slurmd=0
  cmp -s "$dir/slurm.conf.new" "$conf" || restart_ctld=1
  if [[ -e $dir/cgroup.conf.new ]]; then
    cmp -s "$dir/cgroup.conf.new" "$dir/cgroup.conf" || restart_ctld=1
    mv "$dir/cgroup.conf.new" "$dir/cgroup.conf"
    chmod 0644 "$dir/cgroup.conf"
  elif [[ -e $dir/cgroup.conf ]]; then
    rm -f "$dir/cgroup.conf"
    restart_ctld=1
  fi
  cmp -s "$dir/plugstack.conf.new" "$dir/plugstack.conf" || restart_slurmd=1
  ((restart_ctld)) && restart_slurmd=1
  mv "$dir/slurm.conf.new" "$conf"
  mv "$dir/plugstack.conf.new" "$dir/plugstack.conf"
  chmod 0644 "$conf" "$dir/plugstack.conf"
  if ((restart_ctld)) && pid_alive "$dir/run/slurmctld.pid"; then
    say "slurm.conf changed: restarting slurmctld"
    stop_daemon "$dir/run/slurmctld.pid" slurmctld
  fi
  # plugstack.conf is read when slurmd starts.
  if ((restart_slurmd)); then
    local node
    for node in $(node_names); do
      if pid_alive "$dir/run/slurmd-$node.pid"; then
        say "plugstack.conf changed: restarting slurmd on $node"
        stop_daemon "$dir/run/slurmd-$node.pid" slurmd
      fi
    done
  fi
  start_slurm
  say "up: $(SLURM_CONF=$conf sinfo -h -o '%P %D %T %C' | tr '\n' ' ')(plugin $plugin)"
}

cmd_down() {
  [[ $(id -u) -eq 0 ]] || die "must run as root"
  # In parallel: each waits for its own daemon.
  local node
  for node in $(node_names); do stop_daemon "$dir/run/slurmd-$node.pid" slurmd & done
  stop_daemon "$dir/run/slurmctld.pid" slurmctld &
  wait
  stop_daemon "$dir/munge/munged.pid" munged
  if [[ -s $dir/nodes ]] && (($(cat "$dir/nodes") > 1)); then teardown_network; fi
  say "down (state and logs stay in $dir)"
}

cmd_status() {
  local up=0
  local entries=(munged:$dir/munge/munged.pid slurmctld:$dir/run/slurmctld.pid) node
  for node in $(node_names); do entries+=("slurmd-$node:$dir/run/slurmd-$node.pid"); done
  for entry in "${entries[@]}"; do
    local name=${entry%%:*} pidfile=${entry#*:}
    if pid_alive "$pidfile"; then echo "$name: running (pid $(cat "$pidfile"))"; else echo "$name: stopped"; up=1; fi
  done
  if ((up == 0)); then
    SLURM_CONF=$conf sinfo -N -o '%N %P %T %C' || up=1
  fi
  return $up
}

cmd_env() {
  echo "export SLURM_CONF=$conf"
  echo "export SIDECORE_SLURM_DIR=$dir"
}

case ${1-} in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 up [--nodes N] [--cgroup] [--prefix DIR] [--build DIR] [--executor PATH] [--plugin-args 'k=v ...'] | down | status | env" >&2; exit 2 ;;
esac
