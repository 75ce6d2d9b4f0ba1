/* The multinode tier's MPI program: one rank per simulated node, each node with its own executor.
 *
 *   multinode_checks SCENARIO FUNCTION_LIBRARY
 *
 * SCENARIO  spread  the pool reaches every node's executor; the first tasks run on the rank's own
 *                   node, and once its workers are busy, tasks spill to other nodes
 *           node    sidecore_scope=node: only the node's own executor, every task runs there
 *           lost    the last rank kills its node's executor while every rank has tasks on it: the
 *                   other ranks get EXECUTOR_LOST for those tasks (within 2 s), the rest complete,
 *                   later tasks run on the executors left, and the job finishes
 *           restart as lost, but the last rank kills only its node's worker process (a crash): its
 *                   supervisor starts a new one, and every rank's tasks reach that node again
 *                   through the same pool (callers on the node and on the other nodes alike)
 *           lease   under srun --offload-lease: the pool grows once the lease's executors start
 *                   (pool_create does not wait), and tasks run on the lease's nodes, none of which
 *                   is a node of this job; prints when the first one came back (lease_first_task=)
 *           lease_preempt  as lease, then tasks stream (a window of 8) until the file
 *                   `preempted` appears in the working folder and 2 s more: the test preempts the
 *                   lease meanwhile (it waits for the file `lease-serving`, made here). Every task
 *                   must succeed with a correct result: the lease's executors drain, and what they
 *                   decline runs elsewhere, and the pool no longer counts their workers
 *           lease_stream  as lease_preempt, for a lease that nobody preempts (another job's
 *                   test needs it serving): no check of the pool's size at the end
 *           lease_none  a step whose lease was refused: every task runs on this node's executor
 *           lease_foreign  SIDECORE_LEASE_JOB names another job's lease, whose executors have
 *                   another token: they refuse this rank, and every task runs on this node
 *
 * Tasks call `where` (tests/functions), which reports the host that ran it. Every rank checks its
 * own results; rank 0 prints one summary line per rank and the total, and the exit status is
 * non-zero if any check failed on any rank. */
#include <mpi.h>
#include <mpix_offload.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mpi_check.h" /* tests/mpi */

enum { kHostBytes = 64, kOutBytes = 320 };

static const char *library = NULL;
static char own_host[kHostBytes];
static char *all_hosts = NULL; /* size * kHostBytes: every rank's host */
static char summary[512];

static MPIX_Offload_pool make_pool(const char *scope) {
  MPI_Info info;
  MPI_Info_create(&info);
  MPI_Info_set(info, "sidecore_scope", scope);
  MPIX_Offload_pool pool = MPIX_OFFLOAD_POOL_NULL;
  int rc = MPIX_Offload_pool_create(MPI_COMM_WORLD, info, &pool);
  CHECK(rc == MPI_SUCCESS && pool != MPIX_OFFLOAD_POOL_NULL, "pool_create(scope=%s): rc %d", scope, rc);
  MPI_Info_free(&info);
  return pool;
}

static MPIX_Offload_function lookup_where(MPIX_Offload_pool pool) {
  MPIX_Offload_function fn = MPIX_OFFLOAD_FUNCTION_NULL;
  int rc = MPIX_Offload_function_lookup(pool, library, "where", &fn);
  CHECK(rc == MPI_SUCCESS && fn != MPIX_OFFLOAD_FUNCTION_NULL, "lookup of where in %s: rc %d", library, rc);
  return fn;
}

/* The host part of a `where` result ("host:pid"), or "" when there is none. */
static void host_of(const char *out, int bytes, char host[kHostBytes]) {
  int n = 0;
  while (n < bytes && n < kHostBytes - 1 && out[n] != ':') ++n;
  memcpy(host, out, (size_t)n);
  host[n] = '\0';
}

static int is_job_host(const char *host) {
  for (int r = 0; r < size; ++r) {
    if (strcmp(host, all_hosts + (size_t)r * kHostBytes) == 0) return 1;
  }
  return 0;
}

struct task {
  uint32_t sleep_us;
  char out[kOutBytes];
  MPI_Request request;
  MPI_Status status;
  char host[kHostBytes];
  double done;  /* when MPI_Waitany returned it */
  /* status.MPI_ERROR: the request's error (what MPI_Waitany returned for it) */
};

/* Submits `count` where tasks at once. */
static void submit_tasks(MPIX_Offload_function fn, struct task *tasks, int count) {
  for (int t = 0; t < count; ++t) {
    tasks[t].host[0] = '\0';
    tasks[t].status.MPI_ERROR = MPI_ERR_PENDING; /* until wait_tasks sees it complete */
    int rc = MPIX_Offload_submit(fn, &tasks[t].sleep_us, sizeof tasks[t].sleep_us, tasks[t].out, kOutBytes,
                                 &tasks[t].request);
    CHECK(rc == MPI_SUCCESS, "submit of task %d: rc %d", t, rc);
  }
}

/* Waits for every submitted task, recording where and when each finished. */
static void wait_tasks(struct task *tasks, int count) {
  MPI_Request requests[64];
  for (int t = 0; t < count; ++t) requests[t] = tasks[t].request;
  for (int finished = 0; finished < count; ++finished) {
    int index = MPI_UNDEFINED;
    MPI_Status status;
    /* MPI_Waitany reports the request's error as its return value, not in the status. */
    const int rc = MPI_Waitany(count, requests, &index, &status);
    if (index == MPI_UNDEFINED) break;
    struct task *task = &tasks[index];
    task->done = now_s();
    task->status = status;
    task->status.MPI_ERROR = rc;
    if (rc == MPI_SUCCESS) {
      int bytes = 0;
      MPI_Get_count(&status, MPI_BYTE, &bytes);
      host_of(task->out, bytes, task->host);
    }
  }
}

static void run_tasks(MPIX_Offload_function fn, struct task *tasks, int count) {
  submit_tasks(fn, tasks, count);
  wait_tasks(tasks, count);
}

static void check_spread(void) {
  MPIX_Offload_pool pool = make_pool("job");
  int local = -1, total = -1;
  MPIX_Offload_pool_size(pool, &local, &total);
  CHECK(local >= 1 && total >= local + size - 1, "pool_size: local %d total %d on %d nodes", local, total, size);
  MPIX_Offload_function fn = lookup_where(pool);
  MPI_Barrier(MPI_COMM_WORLD);
  /* More tasks than the node's workers can hold: local first, then the other nodes. */
  enum { kTasks = 8 };
  struct task tasks[kTasks];
  for (int t = 0; t < kTasks; ++t) tasks[t].sleep_us = 100000;
  run_tasks(fn, tasks, kTasks);
  int here = 0, elsewhere = 0;
  for (int t = 0; t < kTasks; ++t) {
    CHECK(tasks[t].status.MPI_ERROR == MPI_SUCCESS, "task %d: error %d", t, tasks[t].status.MPI_ERROR);
    CHECK(is_job_host(tasks[t].host), "task %d ran on '%s', which is no node of this job", t, tasks[t].host);
    if (strcmp(tasks[t].host, own_host) == 0) ++here; else ++elsewhere;
  }
  /* The pool prefers the node's own workers while they have room (two tasks per worker). */
  for (int t = 0; t < 2 * local && t < kTasks; ++t) {
    CHECK(strcmp(tasks[t].host, own_host) == 0, "task %d ran on %s while %s's own worker had room", t,
          tasks[t].host, own_host);
  }
  CHECK(elsewhere >= 1, "no task spilled to another node (%d ran here)", here);
  snprintf(summary, sizeof summary, "spread: rank %d on %s: %d tasks here, %d on other nodes; pool %d local of %d workers",
           rank, own_host, here, elsewhere, local, total);
  MPIX_Offload_function_free(&fn);
  int rc = MPIX_Offload_pool_free(&pool);
  CHECK(rc == MPI_SUCCESS, "pool_free: rc %d", rc);
}

/* sidecore_remote_executors bounds the other nodes' executors a rank uses, the next node in the
 * job's order first (one rank per node here: the node of rank + 1); more than exist gives all. */
static void check_bounded(void) {
  MPIX_Offload_pool pool = make_pool("job");
  int local = -1, total = -1, rc = MPI_SUCCESS;
  MPIX_Offload_pool_size(pool, &local, &total);
  MPIX_Offload_pool_free(&pool);
  enum { kTasks = 8 };
  struct task tasks[kTasks];
  for (int t = 0; t < kTasks; ++t) tasks[t].sleep_us = 100000;
  const char *bounds[2] = {"1", "100"};
  int reached[2] = {0, 0};
  for (int b = 0; b < 2; ++b) {
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "sidecore_remote_executors", bounds[b]);
    MPIX_Offload_pool bounded = MPIX_OFFLOAD_POOL_NULL;
    rc = MPIX_Offload_pool_create(MPI_COMM_WORLD, info, &bounded);
    MPI_Info_free(&info);
    CHECK(rc == MPI_SUCCESS, "pool_create(sidecore_remote_executors=%s): rc %d", bounds[b], rc);
    if (rc != MPI_SUCCESS) continue;
    int bounded_local = -1, bounded_total = -1;
    MPIX_Offload_pool_size(bounded, &bounded_local, &bounded_total);
    const int expected_total = b == 0 ? local + 1 : total;
    CHECK(bounded_total == expected_total, "sidecore_remote_executors=%s: pool_size total %d, expected %d", bounds[b],
          bounded_total, expected_total);
    MPIX_Offload_function bounded_fn = lookup_where(bounded);
    run_tasks(bounded_fn, tasks, kTasks);
    const char *next_host = all_hosts + (size_t)((rank + 1) % size) * kHostBytes;
    int next = 0;
    for (int t = 0; t < kTasks; ++t) {
      CHECK(tasks[t].status.MPI_ERROR == MPI_SUCCESS, "bounded task %d: error %d", t, tasks[t].status.MPI_ERROR);
      if (b == 0) {
        CHECK(strcmp(tasks[t].host, own_host) == 0 || strcmp(tasks[t].host, next_host) == 0,
              "sidecore_remote_executors=1: task %d ran on %s, neither %s nor the next node %s", t, tasks[t].host,
              own_host, next_host);
      }
      next += strcmp(tasks[t].host, next_host) == 0;
    }
    CHECK(next >= 1, "sidecore_remote_executors=%s: no task ran on the next node %s", bounds[b], next_host);
    reached[b] = bounded_total;
    MPIX_Offload_function_free(&bounded_fn);
    rc = MPIX_Offload_pool_free(&bounded);
    CHECK(rc == MPI_SUCCESS, "pool_free: rc %d", rc);
  }
  snprintf(summary, sizeof summary, "bounded: rank %d on %s: pool of %d workers with 1 remote executor, %d with 100",
           rank, own_host, reached[0], reached[1]);
}

static void check_node_scope(void) {
  MPIX_Offload_pool pool = make_pool("node");
  int local = -1, total = -1;
  MPIX_Offload_pool_size(pool, &local, &total);
  CHECK(local >= 1 && total == local, "scope=node pool_size: local %d total %d", local, total);
  MPIX_Offload_function fn = lookup_where(pool);
  enum { kTasks = 8 };
  struct task tasks[kTasks];
  for (int t = 0; t < kTasks; ++t) tasks[t].sleep_us = 20000;
  run_tasks(fn, tasks, kTasks);
  int here = 0;
  for (int t = 0; t < kTasks; ++t) {
    CHECK(tasks[t].status.MPI_ERROR == MPI_SUCCESS, "task %d: error %d", t, tasks[t].status.MPI_ERROR);
    CHECK(strcmp(tasks[t].host, own_host) == 0, "scope=node: task %d ran on '%s', not on %s", t, tasks[t].host,
          own_host);
    here += strcmp(tasks[t].host, own_host) == 0;
  }
  snprintf(summary, sizeof summary, "node: rank %d on %s: %d of %d tasks here; pool %d local of %d workers", rank,
           own_host, here, kTasks, local, total);
  MPIX_Offload_function_free(&fn);
  MPIX_Offload_pool_free(&pool);
}

/* The pid of the process that serves this node's executor's first worker: the card's wpids= (the
 * card's pid= is its supervisor's, as in the reference SIDECORE_EXECUTOR="@PATH pid=N timeout_ms=N").
 * 0 when unknown. */
static long serving_pid(void) {
  const char *reference = getenv("SIDECORE_EXECUTOR");
  if (reference == NULL || reference[0] != '@') return 0;
  char path[512];
  size_t n = strcspn(reference + 1, " ");
  if (n >= sizeof path) return 0;
  memcpy(path, reference + 1, n);
  path[n] = '\0';
  FILE *file = fopen(path, "r");
  if (file == NULL) return 0;
  char card[4096] = "";
  if (fgets(card, sizeof card, file) == NULL) card[0] = '\0';
  fclose(file);
  const char *field = strstr(card, " wpids=");
  return field != NULL ? strtol(field + 7, NULL, 10) : 0;
}

static void check_lost(int restart) {
  const int victim = size - 1;
  const char *victim_host = all_hosts + (size_t)victim * kHostBytes;
  MPIX_Offload_pool pool = make_pool("job");
  int local = -1, total = -1;
  MPIX_Offload_pool_size(pool, &local, &total);
  CHECK(local == 1 && total == size, "the lost scenario wants one worker per node: local %d total %d", local, total);
  MPIX_Offload_function fn = lookup_where(pool);
  /* Rounds that reach every executor first: a pool connects to another node's executor when a
   * task first finds no idle worker, and this scenario is about tasks on connected executors. One
   * round may not be enough: the first task to spill creates the client for other nodes, and where
   * that takes longer than a task (libfabric 2.1 in the Debian 13 root), the node's worker is idle
   * again before the round's last task, which then stays on the node. */
  enum { kWarmRounds = 5 };
  const int count = 2 * local + (size - 1);
  struct task tasks[64];
  char warm_hosts[64][kHostBytes];
  int warm_distinct = 0;
  for (int round = 0; round < kWarmRounds && warm_distinct < size; ++round) {
    for (int t = 0; t < count; ++t) tasks[t].sleep_us = 200000;
    run_tasks(fn, tasks, count);
    for (int t = 0; t < count; ++t) {
      CHECK(tasks[t].status.MPI_ERROR == MPI_SUCCESS, "warm-up task %d failed: kind %d", t,
            kind_of(tasks[t].status.MPI_ERROR));
      if (tasks[t].status.MPI_ERROR != MPI_SUCCESS) continue;
      int seen = 0;
      for (int h = 0; h < warm_distinct; ++h) seen |= strcmp(warm_hosts[h], tasks[t].host) == 0;
      if (!seen) snprintf(warm_hosts[warm_distinct++], kHostBytes, "%s", tasks[t].host);
    }
  }
  CHECK(warm_distinct == size, "%d warm-up rounds reached %d of %d nodes' executors", kWarmRounds, warm_distinct, size);
  MPI_Barrier(MPI_COMM_WORLD); /* every executor joined before the workers are busy for seconds */
  /* Two tasks on the node's worker, then one on each of the other nodes (the least loaded). */
  for (int t = 0; t < count; ++t) tasks[t].sleep_us = 2500000;
  submit_tasks(fn, tasks, count);
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == victim) {
    /* lost: the executor the plugin started (its supervisor too); restart: its worker process. */
    const char *card = getenv("SIDECORE_EXECUTOR");
    const char *pid_field = card != NULL ? strstr(card, " pid=") : NULL;
    const long pid = restart ? serving_pid() : pid_field != NULL ? strtol(pid_field + 5, NULL, 10) : 0;
    CHECK(pid > 0, "no executor pid from SIDECORE_EXECUTOR '%s'", card ? card : "(unset)");
    if (pid > 0) kill((pid_t)pid, SIGKILL);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const double killed = now_s();
  wait_tasks(tasks, count);
  int lost = 0, completed = 0;
  double slowest_loss = 0;
  for (int t = 0; t < count; ++t) {
    const int rc = tasks[t].status.MPI_ERROR;
    if (rc == MPI_SUCCESS) {
      CHECK(strcmp(tasks[t].host, victim_host) != 0, "task %d completed on %s after its executor was killed", t,
            tasks[t].host);
      ++completed;
    } else {
      CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_EXECUTOR_LOST, "task %d: error kind %d", t, kind_of(rc));
      if (tasks[t].done - killed > slowest_loss) slowest_loss = tasks[t].done - killed;
      ++lost;
    }
  }
  /* Every rank had tasks on the victim's executor: two if it is its own, one otherwise. */
  const int expected_lost = rank == victim ? 2 * local : 1;
  CHECK(lost == expected_lost, "%d tasks lost with %s's executor, expected %d", lost, victim_host, expected_lost);
  CHECK(completed == count - expected_lost, "%d of %d tasks completed", completed, count);
  CHECK(slowest_loss < scaled_s(2.0), "EXECUTOR_LOST came %.2f s after the kill (bound: 2 s, scaled %.2f)",
        slowest_loss, scaled_s(2.0));

  /* The job goes on with the executors left. */
  enum { kLater = 4 };
  struct task later[kLater];
  for (int t = 0; t < kLater; ++t) later[t].sleep_us = 0;
  run_tasks(fn, later, kLater);
  int later_ok = 0;
  for (int t = 0; t < kLater; ++t) {
    CHECK(later[t].status.MPI_ERROR == MPI_SUCCESS, "a task after the loss failed: kind %d",
          kind_of(later[t].status.MPI_ERROR));
    /* (restart: the node's new worker may serve already) */
    CHECK(restart || strcmp(later[t].host, victim_host) != 0, "a task after the loss ran on %s", later[t].host);
    later_ok += later[t].status.MPI_ERROR == MPI_SUCCESS;
  }
  /* restart: the victim node's executor serves every rank again once its supervisor has started the
   * new worker, through the same pool: its own rank follows the card file, the others the card the
   * supervisor sends on its liveness port. Enough tasks at once spill from a rank's own node. */
  int back_home = 0;
  if (restart) {
    const double deadline = now_s() + scaled_s(10.0);
    while (!back_home && now_s() < deadline) {
      struct task probes[16];
      const int probe_count = rank == victim ? 1 : (2 * size < 16 ? 2 * size : 16);
      for (int t = 0; t < probe_count; ++t) probes[t].sleep_us = 50000;
      run_tasks(fn, probes, probe_count);
      for (int t = 0; t < probe_count; ++t) {
        back_home |= probes[t].status.MPI_ERROR == MPI_SUCCESS && strcmp(probes[t].host, victim_host) == 0;
      }
      if (!back_home) usleep(50000);
    }
    CHECK(back_home, "no task of rank %d ran on %s's new worker within %.0f s", rank, victim_host, scaled_s(10.0));
  }
  snprintf(summary, sizeof summary,
           "%s: rank %d on %s: %d tasks lost with %s's executor (last %.2f s after the kill), %d completed, "
           "%d of %d later tasks ran on the executors left%s",
           restart ? "restart" : "lost", rank, own_host, lost, victim_host, slowest_loss, completed, later_ok, kLater,
           back_home ? "; served by its new worker again" : "");
  MPIX_Offload_function_free(&fn);
  int rc = MPIX_Offload_pool_free(&pool);
  CHECK(rc == MPI_SUCCESS, "pool_free after the loss: rc %d", rc);
}

/* Waits (up to 60 s) for the lease's executors to join the pool; returns the pool's workers then. */
static int wait_for_lease(MPIX_Offload_pool pool, int *local) {
  int total = -1;
  const double start = now_s();
  do {
    MPIX_Offload_pool_size(pool, local, &total);
    if (total > *local) break;
    usleep(100000);
  } while (now_s() - start < 60);
  CHECK(total > *local, "the lease's executors did not join the pool within 60 s (pool %d local of %d)", *local, total);
  return total;
}

/* The pool's workers once the lease's executors are gone (drained, dead or refusing this rank):
 * waits up to 10 s for the pool to shrink to `want` and returns what it reports then. */
static int wait_for_shrink(MPIX_Offload_pool pool, int want) {
  int local = -1, total = -1;
  const double start = now_s();
  do {
    MPIX_Offload_pool_size(pool, &local, &total);
    if (total <= want) break;
    usleep(100000);
  } while (now_s() - start < 10);
  return total;
}

/* A where task's result is "host:pid" from a real host. */
static void check_where_result(const struct task *task, int t) {
  CHECK(task->status.MPI_ERROR == MPI_SUCCESS, "task %d: error %d", t, task->status.MPI_ERROR);
  CHECK(task->host[0] != '\0' && strchr(task->out, ':') != NULL, "task %d: no host:pid in its result", t);
}

/* preempt: 0 lease, 1 lease_preempt, 2 lease_stream. */
static void check_lease(int preempt) {
  /* Scope node: without the lease, nothing leaves this node; the lease is used whatever the scope. */
  MPIX_Offload_pool pool = make_pool("node");
  int local = -1;
  int total = -1;
  MPIX_Offload_pool_size(pool, &local, &total);
  const int before = total;
  MPIX_Offload_function fn = lookup_where(pool);
  total = wait_for_lease(pool, &local);
  /* More tasks than this node's worker holds, until some come back from the lease's nodes. */
  enum { kWindow = 8 };
  struct task tasks[kWindow];
  int here = 0, leased = 0, batches = 0, served = 0;
  char lease_host[kHostBytes] = "";
  double first_lease_task = 0;
  while (leased == 0 && batches < 20) {
    for (int t = 0; t < kWindow; ++t) tasks[t].sleep_us = 50000;
    run_tasks(fn, tasks, kWindow);
    ++batches;
    for (int t = 0; t < kWindow; ++t) {
      check_where_result(&tasks[t], t);
      if (tasks[t].status.MPI_ERROR != MPI_SUCCESS) continue;
      ++served;
      if (strcmp(tasks[t].host, own_host) == 0) {
        ++here;
      } else {
        CHECK(!is_job_host(tasks[t].host), "task %d ran on %s, a node of this job, not the lease's", t, tasks[t].host);
        if (leased++ == 0) {
          first_lease_task = tasks[t].done;
          snprintf(lease_host, sizeof lease_host, "%s", tasks[t].host);
        }
      }
    }
  }
  CHECK(leased > 0, "no task ran on the lease's nodes in %d batches of %d", batches, kWindow);
  struct timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  const double first_epoch = (double)wall.tv_sec + wall.tv_nsec / 1e9 - (now_s() - first_lease_task);
  int failed = 0, after = 0;
  if (preempt) {
    /* Tell the test the lease serves, then stream until it has been preempted, and 2 s more. */
    FILE *flag = fopen("lease-serving", "w");
    CHECK(flag != NULL, "cannot create lease-serving in the working folder");
    if (flag) fclose(flag);
    double preempted_at = 0;
    const double start = now_s();
    while (now_s() - start < 120) {
      for (int t = 0; t < kWindow; ++t) tasks[t].sleep_us = 20000;
      run_tasks(fn, tasks, kWindow);
      for (int t = 0; t < kWindow; ++t) {
        check_where_result(&tasks[t], t);
        if (tasks[t].status.MPI_ERROR != MPI_SUCCESS) {
          ++failed;
          continue;
        }
        ++served;
        if (strcmp(tasks[t].host, own_host) == 0)
          ++here;
        else
          ++leased;
        if (preempted_at > 0) ++after;
      }
      if (preempted_at == 0 && access("preempted", F_OK) == 0) preempted_at = now_s();
      if (preempted_at > 0 && now_s() - preempted_at > 2) break;
    }
    CHECK(preempted_at > 0, "the test did not preempt the lease within 120 s");
    CHECK(after > 0, "no task completed after the preemption");
    /* Slurm took the cores back: the pool no longer has the lease's workers. */
    if (preempt == 1) {
      const int shrunk = wait_for_shrink(pool, local);
      CHECK(shrunk == local, "pool_size still counts %d worker(s) 10 s after the lease was preempted (%d local)",
            shrunk, local);
    }
  }
  snprintf(summary, sizeof summary,
           "%s: rank %d on %s: pool %d local of %d workers at first, %d once the lease started; %d tasks served, "
           "%d here, %d on the lease's nodes (first on %s), %d failed; lease_first_task=%.3f",
           preempt == 2 ? "lease_stream"
           : preempt    ? "lease_preempt"
                        : "lease",
           rank, own_host, local, before, total, served, here, leased, lease_host, failed, first_epoch);
  MPIX_Offload_function_free(&fn);
  int rc = MPIX_Offload_pool_free(&pool);
  CHECK(rc == MPI_SUCCESS, "pool_free: rc %d", rc);
}

/* Without a usable lease: tasks run on this node only (scope node), all of them successfully. For
 * a foreign lease, waits until its cards have been read, so that tasks do try to go there. */
static void check_no_lease(int foreign) {
  MPIX_Offload_pool pool = make_pool("node");
  int local = -1, total = -1;
  MPIX_Offload_pool_size(pool, &local, &total);
  MPIX_Offload_function fn = lookup_where(pool);
  if (foreign) total = wait_for_lease(pool, &local);
  enum { kTasks = 16 };
  struct task tasks[kTasks];
  int here = 0;
  for (int round = 0; round < 4; ++round) {
    for (int t = 0; t < kTasks; ++t) tasks[t].sleep_us = 20000;
    run_tasks(fn, tasks, kTasks);
    for (int t = 0; t < kTasks; ++t) {
      check_where_result(&tasks[t], t);
      CHECK(tasks[t].status.MPI_ERROR != MPI_SUCCESS || strcmp(tasks[t].host, own_host) == 0,
            "task %d ran on %s, not on this node", t, tasks[t].host);
      if (tasks[t].status.MPI_ERROR == MPI_SUCCESS && strcmp(tasks[t].host, own_host) == 0) ++here;
    }
  }
  /* The foreign lease's executors that refused this rank's token are no longer counted. */
  const int after = foreign ? wait_for_shrink(pool, local) : total;
  if (foreign) CHECK(after < total, "pool_size still counts the executors that refused this rank (%d workers)", after);
  snprintf(summary, sizeof summary,
           "%s: rank %d on %s: %d of %d tasks here; pool %d local of %d workers, %d at the end",
           foreign ? "lease_foreign" : "lease_none", rank, own_host, here, 4 * kTasks, local, total, after);
  MPIX_Offload_function_free(&fn);
  int rc = MPIX_Offload_pool_free(&pool);
  CHECK(rc == MPI_SUCCESS, "pool_free: rc %d", rc);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr,
            "usage: %s spread|bounded|node|lost|restart|lease|lease_preempt|lease_stream|lease_none|lease_foreign "
            "FUNCTION_LIBRARY\n",
            argv[0]);
    return 2;
  }
  const char *scenario = argv[1];
  library = argv[2];
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SINGLE, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  gethostname(own_host, sizeof own_host - 1);
  snprintf(check_who, sizeof check_who, "rank %d (%s)", rank, own_host);
  all_hosts = calloc((size_t)size, kHostBytes);
  MPI_Allgather(own_host, kHostBytes, MPI_CHAR, all_hosts, kHostBytes, MPI_CHAR, MPI_COMM_WORLD);
  for (int r = 0; r < size; ++r) {
    for (int q = 0; q < r; ++q) {
      CHECK(strcmp(all_hosts + (size_t)r * kHostBytes, all_hosts + (size_t)q * kHostBytes) != 0,
            "ranks %d and %d share host %s: the test wants one rank per node", q, r, all_hosts + (size_t)r * kHostBytes);
    }
  }

  if (strcmp(scenario, "spread") == 0) {
    check_spread();
  } else if (strcmp(scenario, "bounded") == 0) {
    check_bounded();
  } else if (strcmp(scenario, "node") == 0) {
    check_node_scope();
  } else if (strcmp(scenario, "lost") == 0) {
    check_lost(0);
  } else if (strcmp(scenario, "restart") == 0) {
    check_lost(1);
  } else if (strcmp(scenario, "lease") == 0) {
    check_lease(0);
  } else if (strcmp(scenario, "lease_preempt") == 0) {
    check_lease(1);
  } else if (strcmp(scenario, "lease_stream") == 0) {
    check_lease(2);
  } else if (strcmp(scenario, "lease_none") == 0) {
    check_no_lease(0);
  } else if (strcmp(scenario, "lease_foreign") == 0) {
    check_no_lease(1);
  } else {
    CHECK(0, "unknown scenario %s", scenario);
  }

  /* Rank 0 prints every rank's summary, in rank order. */
  char *summaries = rank == 0 ? calloc((size_t)size, sizeof summary) : NULL;
  MPI_Gather(summary, sizeof summary, MPI_CHAR, summaries, sizeof summary, MPI_CHAR, 0, MPI_COMM_WORLD);
  int total_failures = 0;
  MPI_Allreduce(&failures, &total_failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) {
    for (int r = 0; r < size; ++r) printf("%s\n", summaries + (size_t)r * sizeof summary);
    printf("%s on %d nodes: %d checks per rank, %d failures\n", scenario, size, checks, total_failures);
    free(summaries);
  }
  free(all_hosts);
  MPI_Finalize();
  return total_failures == 0 ? 0 : 1;
}
