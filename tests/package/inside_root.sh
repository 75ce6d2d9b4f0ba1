#!/usr/bin/env bash
# Runs inside the clean Debian 12 root of tests/package/deb_test.sh, as root, with the test's files
# at /sidecore-test (the packages, a user's program `consumer` and its function library).
#   inside_root.sh install DEB            apt-get install ./DEB (the registry resolves Depends:)
#   inside_root.sh cluster V1 V2 DEB2     what dpkg installed where; munge, slurmctld and slurmd
#                                         with Debian's own plugstack.conf; an --offload step as a
#                                         user; an upgrade to DEB2 while a step runs; a new step
set -euo pipefail
files=/sidecore-test
user=sidecore-test
export DEBIAN_FRONTEND=noninteractive

fail() { echo "FAIL: $*" >&2; exit 1; }
check() { echo "ok: $*"; }
# A command that fails outside a check still says where.
set -E
trap '[[ $BASH_SUBSHELL -gt 0 ]] || echo "FAIL: inside_root.sh line $LINENO: $BASH_COMMAND" >&2' ERR

case_install() {
  local deb=$files/${1:?install needs the package}
  # Lists from the root's creation may be stale (a package updated since): refresh them once.
  if ! apt-get install -y -q --no-install-recommends "$deb" >/tmp/apt.log 2>&1; then
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "$deb" >/tmp/apt.log 2>&1 || { cat /tmp/apt.log >&2; fail "apt-get install $deb"; }
  fi
  sed -n '/NEW packages will be installed/,/upgraded/p' /tmp/apt.log
  [[ $(dpkg-query -W -f='${Status}' sidecore) == "install ok installed" ]] || fail "sidecore is not installed"
  check "apt-get install $(basename "$deb") resolved its Depends from the registry"
}

# --- the cluster phase ----------------------------------------------------------------------------
conf_dir=/etc/slurm
state=/var/lib/sidecore-test
work=/tmp/sidecore-test-work

stop_pidfile() {
  local pid
  [[ -s $1 ]] || return 0
  pid=$(cat "$1")
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
# Processes of the test user whose program is sidecore-executor (zombies left out).
live_executors() {
  local entry uid program
  uid=$(id -u "$user" 2>/dev/null) || return 0
  for entry in /proc/[0-9]*; do
    [[ $(stat -c %u "$entry" 2>/dev/null) == "$uid" ]] || continue
    program=$( (tr '\0' '\n' <"$entry/cmdline" | sed -n 1p) 2>/dev/null) || continue
    [[ $program == */sidecore-executor ]] || continue
    grep -q '^State:.*Z' "$entry/status" 2>/dev/null || echo "${entry#/proc/}"
  done
}
expect_no_executor_left() {
  for _ in $(seq 50); do
    [[ -z $(live_executors) ]] && return 0
    sleep 0.1
  done
  fail "executor(s) still running after the job step: $(live_executors)"
}
stop_cluster() {
  local pid
  for pid in $(live_executors); do kill -KILL "$pid" 2>/dev/null || true; done
  stop_pidfile "$state/slurmd.pid"
  stop_pidfile "$state/slurmctld.pid"
  stop_pidfile /run/munge/munged.pid
}

as_user() {
  (cd "$work" && runuser -u "$user" -- env PATH=/usr/bin:/bin "$@")
}
field() { sed -n "/^$1=/{s/^$1=//p;q}" "$2"; }

# Inside a task: resolve_card (as the client library waits for the card) and executor_pid (the
# executor of this step, found through /proc: the root has no procps).
task_helpers='
resolve_card() {
  case $SIDECORE_EXECUTOR in
    @*) p=${SIDECORE_EXECUTOR#@}; p=${p% timeout_ms=*}; p=${p% pid=*}
        for _ in $(seq 200); do [ -s "$p" ] && break; sleep 0.05; done
        cat "$p" 2>/dev/null ;;
    *) printf "%s\n" "${SIDECORE_EXECUTOR:-none}" ;;
  esac
}
executor_pid() {
  for d in /proc/[0-9]*; do
    [ -O "$d" ] || continue
    tr "\0" " " <"$d/cmdline" 2>/dev/null | grep -q "sidecore\.$SLURM_JOB_ID\.$SLURM_STEP_ID\." && { echo "${d#/proc/}"; return; }
  done
}'
# Prints what the task sees, and what its executor is: pid, uid, CPUs, the version of the binary the
# process runs, and whether the user's program gets a function served by it.
probe="$task_helpers"'
echo "cores=$SIDECORE_CORES"
echo "card=$(resolve_card | cut -d" " -f1)"
echo "task_cpus=$(grep Cpus_allowed_list /proc/self/status | cut -f2)"
pid=$(executor_pid)
echo "exec_pid=$pid"
echo "exec_uid=$(grep ^Uid /proc/$pid/status | cut -f2)"
echo "exec_cpus=$(grep Cpus_allowed_list /proc/$pid/status | cut -f2)"
echo "exec_version=$(/proc/$pid/exe --version)"
echo "consumer=$(/sidecore-test/consumer /sidecore-test/libfunctions.so 2>&1)"
'

# The checks on one step's probe output ($1): an executor card, the executor as the user on the idle
# CPU 1 (the task on CPU 0), running version $2, and the user's program served.
check_step() {
  local out=$1 version=$2
  [[ $(field cores "$out") == 1 ]] || fail "SIDECORE_CORES is not 1: $(cat "$out")"
  [[ $(field card "$out") == sidecore/1 ]] || fail "SIDECORE_EXECUTOR does not lead to a card: $(cat "$out")"
  [[ $(field task_cpus "$out") == 0 ]] || fail "the task is not on CPU 0"
  [[ -n $(field exec_pid "$out") ]] || fail "no executor process found from the task"
  [[ $(field exec_uid "$out") == "$(id -u "$user")" ]] || fail "the executor does not run as $user"
  [[ $(field exec_cpus "$out") == 1 ]] || fail "the executor is not pinned to the idle CPU 1"
  [[ $(field exec_version "$out") == "sidecore-executor $version" ]] ||
    fail "the step's executor is '$(field exec_version "$out")', not version $version"
  [[ $(field consumer "$out") == "consumer: ok" ]] || fail "the task's program was not served: $(field consumer "$out")"
}

case_cluster() {
  local v1=${1:?} v2=${2:?} deb2=$files/${3:?}
  trap stop_cluster EXIT

  # What dpkg installed, and where (Slurm's plugin folder as the installed Slurm reports it).
  local plugin_dir
  plugin_dir=$(dpkg -L slurm-wlm-basic-plugins)
  plugin_dir=$(sed -n '/\/slurm-wlm$/{p;q}' <<<"$plugin_dir")
  [[ -n $plugin_dir ]] || fail "dpkg -L slurm-wlm-basic-plugins lists no slurm-wlm folder"
  local listed
  listed=$(dpkg -L sidecore)
  for path in "$plugin_dir/spank_sidecore.so" /etc/slurm/plugstack.conf.d/sidecore.conf \
              /usr/bin/sidecore-executor /usr/bin/sidecore-run \
              /usr/share/man/man1/sidecore-executor.1 /usr/share/man/man1/sidecore-run.1 /usr/share/man/man8/spank_sidecore.8 \
              /usr/include/mpix_offload.h /usr/include/sidecore/function.h /usr/include/sidecore/sidecore.hpp \
              /usr/include/sidecore/error_kind.hpp \
              /usr/lib/x86_64-linux-gnu/libsidecore.so.0 /usr/lib/x86_64-linux-gnu/libsidecore_mpix.so.0 \
              /usr/lib/x86_64-linux-gnu/pkgconfig/sidecore.pc /usr/lib/x86_64-linux-gnu/cmake/sidecore/sidecoreConfig.cmake; do
    grep -qx "$path" <<<"$listed" || fail "dpkg -L sidecore does not list $path"
    [[ -e $path ]] || fail "$path is listed but missing"
  done
  dpkg-query -W -f='${Conffiles}\n' sidecore | grep -q '/etc/slurm/plugstack.conf.d/sidecore.conf' ||
    fail "the drop-in is not registered as a conffile"
  local unresolved
  unresolved=$(ldd "$plugin_dir/spank_sidecore.so" /usr/bin/sidecore-executor /usr/bin/sidecore-run \
                   /usr/lib/x86_64-linux-gnu/libsidecore_mpix.so.0 | grep 'not found' || true)
  [[ -z $unresolved ]] || fail "libraries the package's Depends do not bring: $unresolved"
  [[ $(sidecore-executor --version) == "sidecore-executor $v1" ]] || fail "sidecore-executor --version: $(sidecore-executor --version)"
  grep -q '^include /etc/slurm/plugstack.conf.d/\*.conf' /etc/slurm/plugstack.conf ||
    fail "Debian's plugstack.conf does not include plugstack.conf.d"
  [[ -z $(grep -v '^[[:space:]]*\(#\|$\)' /etc/slurm/plugstack.conf.d/sidecore.conf) ]] ||
    fail "the installed drop-in enables something: $(grep -v '^[[:space:]]*\(#\|$\)' /etc/slurm/plugstack.conf.d/sidecore.conf)"
  check "dpkg -L: plugin in $plugin_dir, drop-in (a conffile, all comments), programs, man pages, headers, libraries, pkg-config and CMake files; every library resolves"

  # A single-node Slurm with Debian's own paths: /etc/slurm/slurm.conf, and no PlugStackConfig, so
  # slurmd reads /etc/slurm/plugstack.conf, which includes the package's drop-in.
  install -d -m 0755 "$state" "$state/spool" "$state/log"
  local layout
  layout=$(slurmd -C | sed -n -e '1{s/^NodeName=[^ ]* //' -e 's/ RealMemory=[0-9]*//' -e 'p}')
  cat >"$conf_dir/slurm.conf" <<CONF
ClusterName=sidecore-deb
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$state
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=5
MinJobAge=10
NodeName=localhost NodeAddr=127.0.0.1 $layout State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  install -d -m 0755 -o munge -g munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge >/dev/null || fail "munged does not answer"
  slurmctld -c || fail "slurmctld did not start: $(cat "$state/log/slurmctld.log")"
  id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
  install -d -m 0755 -o "$user" "$work"
  if srun --help 2>&1 | grep -q -- '--offload'; then fail "srun --help lists --offload before the admin enabled the plugin"; fi
  [[ $(scontrol show config 2>/dev/null | sed -n 's/^PluginDir *= *//p') == "$plugin_dir" ]] ||
    fail "Slurm's PluginDir is not $plugin_dir: $(scontrol show config | grep PluginDir)"
  check "installed, nothing enabled: srun has no --offload; Slurm's PluginDir is the plugin's folder"

  # The admin's step: enable the line of the drop-in, then (re)start slurmd.
  sed -i 's/^#required /required /' /etc/slurm/plugstack.conf.d/sidecore.conf
  grep -q '^required /usr/lib/x86_64-linux-gnu/slurm-wlm/spank_sidecore.so ' /etc/slurm/plugstack.conf.d/sidecore.conf ||
    fail "the drop-in has no line to enable"
  slurmd -N localhost || fail "slurmd did not start: $(cat "$state/log/slurmd.log")"
  local node_state=""
  for _ in $(seq 300); do
    node_state=$(sinfo -h -n localhost -o %T 2>/dev/null | sed -n 1p || true)
    [[ $node_state == idle ]] && break
    sleep 0.1
  done
  [[ $node_state == idle ]] || fail "the node is '$node_state' after 30 s: $(tail -20 "$state/log/slurmd.log")"
  srun --help 2>&1 | grep -q -- '--offload=N|idle' || fail "srun --help does not list --offload after enabling"
  check "enabled in /etc/slurm/plugstack.conf.d/sidecore.conf: slurmd up, srun lists --offload"

  # A step with an idle core, from the installed files only.
  as_user salloc -Q -n1 -c2 srun --exact -n1 -c1 --offload bash -c "$probe" >"$work/out1" 2>"$work/err1" ||
    fail "the --offload step failed: $(cat "$work/out1" "$work/err1")"
  cat "$work/out1"
  check_step "$work/out1" "$v1"
  expect_no_executor_left
  check "the step's task got a card; its executor ran as $user on the idle CPU and served the task; gone after the step"

  # Upgrade while a step runs: the running executor stays and serves, the new step gets the new one.
  local flags=$work/upgrade
  install -d -m 0755 -o "$user" "$flags"
  local running="$probe"'
echo "$pid" >'"$flags"'/pid
touch '"$flags"'/ready
for _ in $(seq 1200); do [ -e '"$flags"'/go ] && break; sleep 0.1; done
echo "after_alive=$(kill -0 "$pid" && echo yes)"
echo "after_consumer=$(/sidecore-test/consumer /sidecore-test/libfunctions.so 2>&1)"'
  as_user salloc -Q -n1 -c2 srun --exact -n1 -c1 --offload bash -c "$running" >"$work/out2" 2>"$work/err2" &
  local step=$!
  for _ in $(seq 300); do [[ -e $flags/ready ]] && break; sleep 0.1; done
  [[ -e $flags/ready ]] || fail "the long step did not start: $(cat "$work/out2" "$work/err2")"
  local old_pid
  old_pid=$(cat "$flags/pid")
  [[ -n $old_pid ]] || fail "the long step found no executor: $(cat "$work/out2" "$work/err2")"
  apt-get install -y -q --no-install-recommends "$deb2" >/tmp/apt2.log 2>&1 || { cat /tmp/apt2.log >&2; fail "apt-get install $deb2"; }
  [[ $(dpkg-query -W -f='${Version}' sidecore) == "$v2" ]] || fail "sidecore is not at $v2 after the upgrade"
  [[ $(sidecore-executor --version) == "sidecore-executor $v2" ]] || fail "/usr/bin/sidecore-executor is not $v2"
  grep -q '^required ' /etc/slurm/plugstack.conf.d/sidecore.conf || fail "the upgrade undid the admin's edit of the drop-in"
  kill -0 "$old_pid" 2>/dev/null || fail "the running step's executor ($old_pid) died in the upgrade"
  [[ $(readlink "/proc/$old_pid/exe") == *"(deleted)" ]] || fail "the running executor is not the replaced binary: $(readlink "/proc/$old_pid/exe")"
  [[ $("/proc/$old_pid/exe" --version) == "sidecore-executor $v1" ]] || fail "the running executor is not version $v1"
  touch "$flags/go"
  wait "$step" || fail "the step that ran through the upgrade failed: $(cat "$work/out2" "$work/err2")"
  cat "$work/out2"
  check_step "$work/out2" "$v1"
  [[ $(field after_alive "$work/out2") == yes ]] || fail "the executor was gone after the upgrade, seen from the task"
  [[ $(field after_consumer "$work/out2") == "consumer: ok" ]] ||
    fail "after the upgrade the running task's executor did not serve: $(field after_consumer "$work/out2")"
  expect_no_executor_left
  check "upgraded to $v2 while a step ran: its executor ($v1, pid $old_pid) stayed, served the task after the upgrade, and stopped with the step"

  as_user salloc -Q -n1 -c2 srun --exact -n1 -c1 --offload bash -c "$probe" >"$work/out3" 2>"$work/err3" ||
    fail "the step after the upgrade failed: $(cat "$work/out3" "$work/err3")"
  cat "$work/out3"
  check_step "$work/out3" "$v2"
  expect_no_executor_left
  [[ $(sinfo -h -n localhost -o %T | sed -n 1p) == idle ]] || fail "the node is not idle at the end"
  check "a new step after the upgrade runs the $v2 executor; node idle, no executor left"
}

cmd=${1:?usage: $0 install DEB | cluster V1 V2 DEB2}
shift
"case_$cmd" "$@"
