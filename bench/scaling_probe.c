/* What a pool costs as the job grows: run by bench/scaling.sh, R ranks per simulated node, each
 * node with its own executor (srun --offload=idle).
 *
 *   scaling_probe FUNCTION_LIBRARY [RUN]
 *
 * Every rank:
 *   - resolves SIDECORE_EXECUTOR (under Slurm a reference "@PATH pid=N timeout_ms=N": the card is
 *     in PATH once the executor serves) and takes the card's length and the serving process's pid
 *     (the card's pid= field; the reference's pid= is the supervisor);
 *   - times MPIX_Offload_pool_create (scope=job, the default) and MPIX_Offload_pool_free, each
 *     started together after MPI_Barrier; pool_create also in CPU time of the process;
 *   - reads its own VmRSS, threads and descriptors (all, and sockets) before and after pool_create
 *     and after the task round (the `rank_*_tasks_growth` figures: pool_create connects only the
 *     node's own executor, the others join as the round needs them), after an MPI_Alltoall that
 *     has MPI open its own connections first.
 * The lowest rank of each node (MPI_Comm_split_type SHARED) also reads its node's executor's VmRSS,
 * threads, descriptors and sockets from /proc/PID, its server's and its worker processes' (the
 * card's wpids=) summed, at four points, each after a barrier:
 *   before    before pool_create
 *   after     once pool_create returned everywhere
 *   tasks     after a round of tasks that reached every executor
 *   freed     after pool_free (and 200 ms for the goodbyes and connection closes)
 * The task round: function `where` (tests/functions: sleeps for its uint32 input in microseconds,
 * answers "host:pid"), 2 tasks per worker of the pool, 10 ms each, all submitted at once. The pool
 * fills the node's own workers to 2 tasks each; past that, while no connected worker is idle,
 * the next node's executor joins, so every executor of the job gets tasks; `task_hosts_min`
 * (distinct hosts that answered, the smallest over ranks) checks that.
 * Then `test_mpi_us`: rank 0's mean time of one MPI_Test (2000 in a row) on an MPI_Irecv nobody
 * matches, with no task in flight (Open MPI's own progress in this job), and `test_us`: the same
 * while one 300 ms task is in flight on its node's own worker and the other ranks sleep.
 *
 * Each rank says on stderr when MPI_Init has returned. Rank 0 prints one JSON line on stdout,
 * prefixed `scaling-result `: every figure is the largest over ranks (executor figures: over the
 * nodes' executors), `_mean` the mean; -1 where nothing could be read. The exit status is non-zero
 * when anything failed. */
#include <mpi.h>
#include <mpix_offload.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { kMaxCard = 65536, kOutBytes = 320, kTaskUs = 10000 };

/* One process's figures from /proc. */
struct proc_figures {
  double rss_kib, threads, fds, sockets;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of the whole process (all its threads): unlike the wall time, it does not grow when
 * the simulated nodes' ranks and executors share this machine's two CPUs. */
static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* VmRSS and Threads of /proc/PID/status, descriptors and socket descriptors of /proc/PID/fd;
 * -1 for what cannot be read. */
static struct proc_figures read_proc(long pid) {
  struct proc_figures f = {-1, -1, -1, -1};
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%ld/status", pid);
  FILE *status = fopen(path, "r");
  if (status != NULL) {
    while (fgets(line, sizeof line, status) != NULL) {
      long value = 0;
      if (sscanf(line, "VmRSS: %ld", &value) == 1) f.rss_kib = (double)value;
      if (sscanf(line, "Threads: %ld", &value) == 1) f.threads = (double)value;
    }
    fclose(status);
  }
  snprintf(path, sizeof path, "/proc/%ld/fd", pid);
  DIR *dir = opendir(path);
  if (dir != NULL) {
    f.fds = 0;
    f.sockets = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
      if (entry->d_name[0] == '.') continue;
      char link_path[384], target[128];
      snprintf(link_path, sizeof link_path, "%s/%s", path, entry->d_name);
      const ssize_t n = readlink(link_path, target, sizeof target - 1);
      if (n < 0) continue;
      target[n] = '\0';
      f.fds += 1;
      if (strncmp(target, "socket:", 7) == 0) f.sockets += 1;
    }
    closedir(dir);
  }
  return f;
}

/* The card SIDECORE_EXECUTOR names, into `card` (without a trailing newline); its length, or 0.
 * A reference's file appears once the executor serves: wait up to 30 s for it. */
static size_t own_card(char *card, size_t capacity) {
  const char *value = getenv("SIDECORE_EXECUTOR");
  card[0] = '\0';
  if (value == NULL || *value == '\0') return 0;
  if (value[0] != '@') {
    snprintf(card, capacity, "%s", value);
  } else {
    char path[4096];
    size_t n = strcspn(value + 1, " ");
    if (n >= sizeof path) return 0;
    memcpy(path, value + 1, n);
    path[n] = '\0';
    for (int tries = 0; tries < 3000; ++tries) {
      FILE *file = fopen(path, "r");
      if (file != NULL) {
        size_t got = fread(card, 1, capacity - 1, file);
        fclose(file);
        card[got] = '\0';
        if (strncmp(card, "sidecore/", 9) == 0) break;
        if (strncmp(card, "error:", 6) == 0) return 0;
        card[0] = '\0';
      }
      sleep_ms(10);
    }
  }
  size_t length = strlen(card);
  while (length > 0 && (card[length - 1] == '\n' || card[length - 1] == '\r')) card[--length] = '\0';
  return length;
}

/* The card's pid= field (the serving process), or -1. */
static long card_pid(const char *card) {
  const char *field = strstr(card, " pid=");
  return field != NULL ? strtol(field + 5, NULL, 10) : -1;
}

/* The executor's figures: its server (pid=) and its worker processes (wpids=, comma-separated),
 * summed; each worker process holds its own endpoints, receive buffers and connections. */
static struct proc_figures read_executor(const char *card, long pid) {
  struct proc_figures sum = read_proc(pid);
  const char *field = strstr(card, " wpids=");
  if (field == NULL || sum.rss_kib < 0) return sum;
  const char *at = field + 7;
  while (*at >= '0' && *at <= '9') {
    char *end = NULL;
    const long worker = strtol(at, &end, 10);
    if (worker > 0 && worker != pid) {
      const struct proc_figures w = read_proc(worker);
      if (w.rss_kib >= 0) {
        sum.rss_kib += w.rss_kib;
        sum.threads += w.threads;
        sum.fds += w.fds;
        sum.sockets += w.sockets;
      }
    }
    at = *end == ',' ? end + 1 : end;
  }
  return sum;
}

/* Largest and mean of `value` over the ranks where `valid`, at rank 0 (-1 when none). */
static void reduce(double value, int valid, double *max, double *mean) {
  double in[2] = {valid ? value : -1e300, valid ? value : 0.0};
  double out_max = 0, sums[2] = {0, 0};
  double mine[2] = {valid ? value : 0.0, valid ? 1.0 : 0.0};
  MPI_Reduce(&in[0], &out_max, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  MPI_Reduce(mine, sums, 2, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
  *max = sums[1] > 0 ? out_max : -1;
  *mean = sums[1] > 0 ? sums[0] / sums[1] : -1;
}

static char json[8192];
static size_t json_used = 0;

static void emit(const char *key, double value, int decimals) {
  json_used += (size_t)snprintf(json + json_used, sizeof json - json_used, ",\"%s\":%.*f", key, decimals, value);
}

/* Reduces one figure and adds key (largest) and, when `with_mean`, key_mean to the line. */
static void figure(const char *key, double value, int valid, int decimals, int with_mean) {
  double max = 0, mean = 0;
  reduce(value, valid, &max, &mean);
  emit(key, max, decimals);
  if (with_mean) {
    char mean_key[96];
    snprintf(mean_key, sizeof mean_key, "%s_mean", key);
    emit(mean_key, mean, decimals);
  }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1, failures = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  /* bench/scaling.sh runs a job again only when a rank died before this line (inside MPI_Init). */
  fprintf(stderr, "scaling_probe: rank %d initialized\n", rank);
  if (argc < 2) {
    if (rank == 0) fprintf(stderr, "usage: scaling_probe FUNCTION_LIBRARY [RUN]\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  const char *library = argv[1];
  const int run = argc > 2 ? atoi(argv[2]) : 1;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);

  MPI_Comm node_comm;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node_comm);
  int node_rank = 0, ranks_here = 1;
  MPI_Comm_rank(node_comm, &node_rank);
  MPI_Comm_size(node_comm, &ranks_here);
  const int leader = node_rank == 0;
  int nodes = leader, max_ranks_here = ranks_here;
  MPI_Allreduce(MPI_IN_PLACE, &nodes, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &max_ranks_here, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);

  static char card[kMaxCard];
  const size_t card_bytes = own_card(card, sizeof card);
  const long executor_pid = card_bytes > 0 ? card_pid(card) : -1;
  if (card_bytes == 0) {
    fprintf(stderr, "rank %d: no executor card (SIDECORE_EXECUTOR %s)\n", rank,
            getenv("SIDECORE_EXECUTOR") ? getenv("SIDECORE_EXECUTOR") : "unset");
    ++failures;
  }
  const int reads_executor = leader && executor_pid > 0;
  /* Every rank receives one card per node (with a newline), the leaders the nodes' lengths
   * (MPI_Allgather among node leaders, then MPI_Bcast in the node of the nearest nodes' cards:
   * offload/src/mpi/pool.cpp); at the 1 to 8 nodes measured, within sidecore_remote_executors
   * (16), that is every node. */
  double exchange_bytes = leader ? (double)card_bytes + 1 + sizeof(int) : 0;
  MPI_Allreduce(MPI_IN_PLACE, &exchange_bytes, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  int executors = leader && card_bytes > 0;
  MPI_Allreduce(MPI_IN_PLACE, &executors, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);

  /* MPI opens its own connections lazily: an all-to-all first, so that the rank's figures below
   * count only what the pool adds. */
  int *warm = calloc((size_t)size * 2, sizeof *warm);
  MPI_Alltoall(warm, 1, MPI_INT, warm + size, 1, MPI_INT, MPI_COMM_WORLD);
  free(warm);

  struct proc_figures exec_before = {-1, -1, -1, -1}, exec_after = exec_before, exec_tasks = exec_before,
                      exec_freed = exec_before;
  MPI_Barrier(MPI_COMM_WORLD);
  if (reads_executor) exec_before = read_executor(card, executor_pid);
  const struct proc_figures self_before = read_proc((long)getpid());

  MPI_Barrier(MPI_COMM_WORLD);
  MPIX_Offload_pool pool = MPIX_OFFLOAD_POOL_NULL;
  double t0 = now_s();
  const double cpu0 = cpu_s();
  int rc = MPIX_Offload_pool_create(MPI_COMM_WORLD, MPI_INFO_NULL, &pool);
  const double create_ms = (now_s() - t0) * 1e3;
  const double create_cpu_ms = (cpu_s() - cpu0) * 1e3;
  if (rc != MPI_SUCCESS) {
    fprintf(stderr, "rank %d: pool_create failed: %d\n", rank, rc);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  const struct proc_figures self_after = read_proc((long)getpid());
  int local_workers = 0, total_workers = 0;
  MPIX_Offload_pool_size(pool, &local_workers, &total_workers);
  MPI_Barrier(MPI_COMM_WORLD);  // every rank has connected
  if (reads_executor) exec_after = read_executor(card, executor_pid);

  /* The task round. */
  MPIX_Offload_function fn = MPIX_OFFLOAD_FUNCTION_NULL;
  rc = MPIX_Offload_function_lookup(pool, library, "where", &fn);
  if (rc != MPI_SUCCESS) {
    fprintf(stderr, "rank %d: lookup of where in %s failed: %d\n", rank, library, rc);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  int tasks = 2 * total_workers;
  if (tasks < 1) tasks = 1;
  MPI_Request *requests = calloc((size_t)tasks, sizeof *requests);
  char *outs = calloc((size_t)tasks, kOutBytes);
  const uint32_t task_us = kTaskUs;
  MPI_Barrier(MPI_COMM_WORLD);
  for (int t = 0; t < tasks; ++t) {
    rc = MPIX_Offload_submit(fn, &task_us, sizeof task_us, outs + (size_t)t * kOutBytes, kOutBytes, &requests[t]);
    if (rc != MPI_SUCCESS) {
      fprintf(stderr, "rank %d: submit %d failed: %d\n", rank, t, rc);
      ++failures;
      requests[t] = MPI_REQUEST_NULL;
    }
  }
  char hosts[64][64];
  int distinct = 0;
  for (int t = 0; t < tasks; ++t) {
    MPI_Status status;
    rc = MPI_Wait(&requests[t], &status);
    if (rc != MPI_SUCCESS) {
      fprintf(stderr, "rank %d: task %d failed: %d\n", rank, t, rc);
      ++failures;
      continue;
    }
    int bytes = 0;
    MPI_Get_count(&status, MPI_BYTE, &bytes);
    char host[64];
    int n = 0;
    const char *out = outs + (size_t)t * kOutBytes;
    while (n < bytes && n < 63 && out[n] != ':') ++n;
    memcpy(host, out, (size_t)n);
    host[n] = '\0';
    int seen = 0;
    for (int h = 0; h < distinct; ++h) seen = seen || strcmp(hosts[h], host) == 0;
    if (!seen && distinct < 64) snprintf(hosts[distinct++], sizeof hosts[0], "%s", host);
  }
  free(requests);
  free(outs);
  const struct proc_figures self_tasks = read_proc((long)getpid());
  MPI_Barrier(MPI_COMM_WORLD);
  if (reads_executor) exec_tasks = read_executor(card, executor_pid);

  /* What one MPI_Test costs while a task is in flight: every progress turn polls every executor's
   * client. Rank 0 alone: one `where` task of 300 ms (its node's own worker takes it), then MPI_Test
   * in a loop, while the other ranks sleep (eight ranks spinning on two CPUs would measure the
   * scheduler). */
  double test_us = -1, test_mpi_us = -1;
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) {
    /* The same MPI_Test without Sidecore: on an MPI_Irecv nobody sends to, with no task in flight
     * (what Open MPI's own progress costs in this job, with every peer connected). */
    {
      int never = 0, done = 0;
      MPI_Request pending = MPI_REQUEST_NULL;
      MPI_Irecv(&never, 1, MPI_INT, size > 1 ? 1 : 0, 31337, MPI_COMM_WORLD, &pending);
      enum { kTests = 2000 };
      const double start = now_s();
      for (int i = 0; i < kTests; ++i) MPI_Test(&pending, &done, MPI_STATUS_IGNORE);
      test_mpi_us = (now_s() - start) * 1e6 / kTests;
      MPI_Cancel(&pending);
      MPI_Wait(&pending, MPI_STATUS_IGNORE);
    }
    const uint32_t long_us = 300000;
    char long_out[kOutBytes];
    MPI_Request long_request = MPI_REQUEST_NULL;
    if (MPIX_Offload_submit(fn, &long_us, sizeof long_us, long_out, kOutBytes, &long_request) == MPI_SUCCESS) {
      enum { kTests = 2000 };
      int done = 0, tests = 0;
      const double start = now_s();
      while (!done && tests < kTests) {
        MPI_Test(&long_request, &done, MPI_STATUS_IGNORE);
        ++tests;
      }
      test_us = (now_s() - start) * 1e6 / tests;
      if (!done) MPI_Wait(&long_request, MPI_STATUS_IGNORE);
    } else {
      ++failures;
    }
  }
  {
    MPI_Request quiet = MPI_REQUEST_NULL;
    int done = 0;
    MPI_Ibarrier(MPI_COMM_WORLD, &quiet);
    while (!done) {
      MPI_Test(&quiet, &done, MPI_STATUS_IGNORE);
      if (!done) sleep_ms(1);
    }
  }
  MPIX_Offload_function_free(&fn);

  MPI_Barrier(MPI_COMM_WORLD);
  t0 = now_s();
  rc = MPIX_Offload_pool_free(&pool);
  const double free_ms = (now_s() - t0) * 1e3;
  if (rc != MPI_SUCCESS) {
    fprintf(stderr, "rank %d: pool_free failed: %d\n", rank, rc);
    ++failures;
  }
  MPI_Barrier(MPI_COMM_WORLD);
  sleep_ms(200);
  if (reads_executor) exec_freed = read_executor(card, executor_pid);

  int hosts_min = distinct, failures_total = failures;
  MPI_Allreduce(MPI_IN_PLACE, &hosts_min, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &failures_total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  int workers_max = total_workers;
  MPI_Allreduce(MPI_IN_PLACE, &workers_max, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  /* Workers per executor as the card says (its local ones; a multi-node step has as many remote). */
  double card_workers = 0;
  if (card_bytes > 0) {
    const char *field = strstr(card, " workers=");
    if (field != NULL) card_workers = strtod(field + 9, NULL);
  }
  const int cross_node = card_bytes > 0 && strstr(card, " remote=") != NULL;

  json_used = (size_t)snprintf(json, sizeof json,
                               "{\"bench\":\"scaling\",\"run\":%d,\"nodes\":%d,\"ranks\":%d,\"ranks_per_node\":%d,"
                               "\"executors\":%d,\"workers\":%d",
                               run, nodes, size, max_ranks_here, executors, workers_max);
  const int e = reads_executor;
  figure("workers_per_executor", card_workers, card_bytes > 0, 0, 0);
  figure("card_bytes", (double)card_bytes, card_bytes > 0, 0, 0);
  emit("exchange_bytes", exchange_bytes, 0);
  figure("pool_create_ms", create_ms, 1, 3, 1);
  figure("pool_create_cpu_ms", create_cpu_ms, 1, 3, 1);
  figure("pool_free_ms", free_ms, 1, 3, 1);
  emit("test_us", test_us, 3);
  emit("test_mpi_us", test_mpi_us, 3);
  figure("rank_rss_growth_kib", self_after.rss_kib - self_before.rss_kib, 1, 0, 1);
  figure("rank_fds_growth", self_after.fds - self_before.fds, 1, 0, 0);
  figure("rank_sockets_growth", self_after.sockets - self_before.sockets, 1, 0, 0);
  figure("rank_threads_growth", self_after.threads - self_before.threads, 1, 0, 0);
  /* After the task round, which reached every executor: what the connections made on demand cost. */
  figure("rank_rss_tasks_growth_kib", self_tasks.rss_kib - self_before.rss_kib, 1, 0, 1);
  figure("rank_fds_tasks_growth", self_tasks.fds - self_before.fds, 1, 0, 0);
  figure("rank_sockets_tasks_growth", self_tasks.sockets - self_before.sockets, 1, 0, 0);
  figure("executor_rss_before_kib", exec_before.rss_kib, e && exec_before.rss_kib >= 0, 0, 1);
  figure("executor_rss_after_kib", exec_after.rss_kib, e && exec_after.rss_kib >= 0, 0, 1);
  figure("executor_rss_tasks_kib", exec_tasks.rss_kib, e && exec_tasks.rss_kib >= 0, 0, 0);
  figure("executor_rss_freed_kib", exec_freed.rss_kib, e && exec_freed.rss_kib >= 0, 0, 0);
  figure("executor_sockets_before", exec_before.sockets, e && exec_before.sockets >= 0, 0, 0);
  figure("executor_sockets_after", exec_after.sockets, e && exec_after.sockets >= 0, 0, 0);
  figure("executor_sockets_tasks", exec_tasks.sockets, e && exec_tasks.sockets >= 0, 0, 0);
  figure("executor_sockets_freed", exec_freed.sockets, e && exec_freed.sockets >= 0, 0, 0);
  figure("executor_fds_before", exec_before.fds, e && exec_before.fds >= 0, 0, 0);
  figure("executor_fds_after", exec_after.fds, e && exec_after.fds >= 0, 0, 0);
  figure("executor_threads_before", exec_before.threads, e && exec_before.threads >= 0, 0, 0);
  figure("executor_threads_after", exec_after.threads, e && exec_after.threads >= 0, 0, 0);
  if (rank == 0) {
    json_used += (size_t)snprintf(json + json_used, sizeof json - json_used,
                                  ",\"cross_node\":%s,\"task_hosts_min\":%d,\"failures\":%d}",
                                  cross_node ? "true" : "false", hosts_min, failures_total);
    printf("scaling-result %s\n", json);
    fflush(stdout);
  }
  MPI_Comm_free(&node_comm);
  MPI_Finalize();
  return failures_total == 0 ? 0 : 1;
}
