# Shared by the slurm and multinode tiers (sourced, not run): how a case fails or passes, the test
# user, the installed build, the check that no executor outlives its job, a job's card folders, and
# a bounded wait for a background job.
# The sourcing script sets $user (the test user) and $work (the case's folder) beforehand.

fail() { echo "FAIL: $*" >&2; exit 1; }
check() { echo "ok: $*"; }

# Creates the test user if it is missing.
ensure_test_user() {
  if ! id "$user" >/dev/null 2>&1; then
    useradd --system --create-home --shell /bin/bash "$user"
    check "created test user $user"
  fi
}

# Installs build $1 under prefix $2, world-readable: srun, salloc and sbatch load the plugin as the
# test user, and the executor runs as that user, while the checkout may sit in a private folder
# such as /root. It is also how sites run it: installed, not from a build tree.
install_build() {
  rm -rf "$2"
  cmake --install "$1" --prefix "$2" >/dev/null || fail "cannot install $1 into $2"
  chmod -R a+rX "$2"
}

# Executors of the test user that are still running (zombies excluded).
live_executors() {
  ps -u "$user" -o pid=,stat=,args= 2>/dev/null | awk '$2 !~ /^Z/ && /sidecore-executor/ {print $1}' || true
}
expect_no_executor_left() {
  for _ in $(seq 50); do
    [[ -z $(live_executors) ]] && return 0
    sleep 0.1
  done
  fail "executor(s) still running after the job step: $(live_executors)"
}

# The card folders of job $1 (handed to the test user, which tells them from other clusters' ones).
card_folders() { find /tmp -maxdepth 1 -name "sidecore.$1.*" -user "$user" 2>/dev/null; }
# No card folder of job $1 left, once its executors have had up to 10 s to remove theirs.
expect_no_card_folder() {
  local folders=""
  for _ in $(seq 100); do
    folders=$(card_folders "$1")
    [[ -z $folders ]] && return 0
    sleep 0.1
  done
  fail "card folder(s) left: $folders"
}

# Waits up to $2 seconds for process $1 (a background job of this shell) to exit; its status in $ended.
wait_ended() {
  local pid=$1 limit=$2
  for _ in $(seq $((limit * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && fail "still running after $limit s: $(cat "$work/err")"
  ended=0
  wait "$pid" || ended=$?
}

# Creates a folder of the test user's own for one case under /tmp, named after $1, and prints it.
new_work_dir() {
  local dir
  dir=$(mktemp -d "/tmp/$1.XXXXXX")
  chmod 0755 "$dir"
  chown "$user": "$dir" 2>/dev/null || true
  echo "$dir"
}

# Executor cgroups (cgroup_placement.hpp) of the test user's jobs, on any node of this machine.
# A CI host can share its cgroup v1 hierarchy with other containers, whose Slurm steps (another
# uid, or a run that was killed) are visible here too: only the test user's count, and only those
# that were not there when the tier began (cgroup_baseline, written by the tier's setup).
cgroup_baseline=/tmp/sidecore-cgroups-before-tier
executor_cgroups() {
  local uid
  uid=$(id -u "$user" 2>/dev/null) || return 0
  find /sys/fs/cgroup -maxdepth 8 -type d -path "*/uid_$uid/job_*/sidecore_step_*" 2>/dev/null | sort || true
}
record_cgroup_baseline() { executor_cgroups >"$cgroup_baseline"; }
expect_no_cgroup_left() {
  local left
  for _ in $(seq 30); do
    left=$(executor_cgroups | comm -23 - <(sort "$cgroup_baseline" 2>/dev/null || true))
    [[ -z $left ]] && return 0
    sleep 0.1
  done
  fail "executor cgroup(s) left after the step: $left"
}

# The node idle with no reason (not drained); a job that just ended may still be completing
# (KillWait=5 s), so this waits up to a minute for it.
expect_node_idle() {
  local state=""
  for _ in $(seq 600); do
    state=$(sinfo -h -n localhost -o '%T|%E' | head -1)
    [[ $state == 'idle|none' ]] && return 0
    sleep 0.1
  done
  fail "the node is '$state' (state|reason), not idle"
}
