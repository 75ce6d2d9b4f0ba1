/* sidecore-bench-omp: the in-process peer of bench/compare.sh. What a user whose code can take threads
 * would pick instead of offloading to another process: OpenMP tasks (libgomp), a producer thread on
 * --producer-cpu and a second thread on --worker-cpu that runs the tasks the producer creates.
 *
 *   sidecore-bench-omp --library L [--task-us 10,50,1000,10000] [--seconds 2] [--rounds 3]
 *                      [--window-per-worker 4] [--producer-cpu 0] [--worker-cpu 1] [--echo-bytes 64] [-v]
 *
 * The task farm is sidecore-bench harvest's (bench/mpi/task_farm.hpp), with an OpenMP task where the
 * farm has MPIX_Offload_submit: the same `spin_us` from the same library (dlopen), the same window
 * of 4 tasks in flight per worker, one task computed by the producer between refills, completions
 * collected without blocking, the offloaded share balanced near the end. Runs alone (the producer
 * computes every task) and with the second thread alternate for --rounds rounds, the order swapped
 * every round; the speedup is the median of the per-round ones, efficiency = speedup / 2.
 *
 * Before the harvest figures, one `echo` task of --echo-bytes (the bench library's, in and out) is
 * run as an OpenMP task 1000 times and waited for with taskwait, as a check that the library's
 * functions run as tasks and return the right bytes; with -v its median round trip goes to stderr
 * (either thread may run such a task: taskwait is a scheduling point, so it is no latency figure).
 * In the harvest runs the producer reaches no scheduling point with tasks queued (it creates at most
 * the window and waits for the last ones by polling a counter), so the second thread runs them all.
 *
 * libgomp runs with its defaults, as a user's program would: OMP_WAIT_POLICY unset, so the second
 * thread spins a while for tasks, then sleeps. OMP_WAIT_POLICY=active in the environment keeps it
 * spinning (a little higher efficiency at 10 us tasks in trials here).
 *
 * One JSON line per task length on stdout, harvest's fields:
 *   {"bench":"omp-harvest","task_us":T,"ranks":1,"workers":1,"speedup":s,"efficiency":e}
 * Warnings (a thread that did not get its CPU) go to stderr. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int (*function_t)(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes);

struct options {
  const char *library;
  uint64_t task_us[32];
  int task_lengths;
  double seconds;
  int rounds;
  int window_per_worker;
  int producer_cpu, worker_cpu;
  size_t echo_bytes;
  int verbose;
};

static function_t spin_us, echo;

static void die(const char *message) {
  fprintf(stderr, "sidecore-bench-omp: error: %s\n", message);
  exit(1);
}

static double now_seconds(clockid_t clock) {
  struct timespec t;
  clock_gettime(clock, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void pin(int cpu) {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  CPU_SET(cpu, &mask);
  int rc = pthread_setaffinity_np(pthread_self(), sizeof mask, &mask);
  if (rc != 0) {
    fprintf(stderr, "sidecore-bench-omp: error: cannot pin to CPU %d: %s\n", cpu, strerror(rc));
    exit(1);
  }
}

static void run_spin(uint64_t us) {
  size_t out_bytes = 0;
  if (spin_us(&us, sizeof us, NULL, 0, &out_bytes) != 0) die("spin_us failed");
}

/* One run: the producer's time and its thread's CPU share (below 1: something else ran on its CPU). */
struct run {
  double seconds, cpu_share;
  uint64_t offloaded, local;
};

/* Near the end, hand over only as many tasks as the worker finishes by the time the producer has
 * computed the rest (TaskFarm::offload_pays with one rank and one worker: share 1). */
static int offload_pays(uint64_t in_flight, uint64_t unassigned) {
  return (double)in_flight * 2.0 < (double)(unassigned + in_flight);
}

static struct run farm(const struct options *options, uint64_t tasks, uint64_t us, int harvest) {
  struct run result = {0, 0, 0, 0};
  atomic_uint_fast64_t completed = 0;
  const uint64_t window = (uint64_t)options->window_per_worker;
#pragma omp parallel num_threads(2) shared(result, completed)
  {
    pin(omp_get_thread_num() == 0 ? options->producer_cpu : options->worker_cpu);
#pragma omp barrier
    /* The producer; the other thread waits at the region's closing barrier, where libgomp has it run
     * the queued tasks. */
#pragma omp master
    {
      const double cpu_start = now_seconds(CLOCK_THREAD_CPUTIME_ID);
      const double start = now_seconds(CLOCK_MONOTONIC);
      uint64_t unassigned = tasks, submitted = 0, local = 0;
      if (!harvest) {
        for (; unassigned > 0; --unassigned, ++local) run_spin(us);
      } else {
        while (unassigned > 0 || submitted > atomic_load_explicit(&completed, memory_order_acquire)) {
          uint64_t in_flight = submitted - atomic_load_explicit(&completed, memory_order_acquire);
          while (unassigned > 0 && in_flight < window && offload_pays(in_flight, unassigned)) {
#pragma omp task firstprivate(us) shared(completed)
            {
              run_spin(us);
              atomic_fetch_add_explicit(&completed, 1, memory_order_release);
            }
            ++submitted;
            ++in_flight;
            --unassigned;
          }
          if (unassigned > 0) {
            run_spin(us);
            --unassigned;
            ++local;
          }
        }
      }
      result.seconds = now_seconds(CLOCK_MONOTONIC) - start;
      result.cpu_share = (now_seconds(CLOCK_THREAD_CPUTIME_ID) - cpu_start) / result.seconds;
      result.offloaded = submitted;
      result.local = local;
    }
  }
  return result;
}

static int compare_doubles(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *values, int count) {
  qsort(values, (size_t)count, sizeof *values, compare_doubles);
  return count % 2 ? values[count / 2] : (values[count / 2 - 1] + values[count / 2]) / 2;
}

/* The echo check: `echo` run as an OpenMP task, waited for with taskwait. */
static void echo_check(const struct options *options) {
  enum { kIterations = 1000 };
  const size_t bytes = options->echo_bytes;
  unsigned char *in = malloc(bytes + 1), *out = malloc(bytes + 1);
  double *samples = malloc(kIterations * sizeof *samples);
  if (!in || !out || !samples) die("out of memory");
  memset(in, 0x5a, bytes + 1);
  int failed = 0;
#pragma omp parallel num_threads(2) shared(failed)
  {
    pin(omp_get_thread_num() == 0 ? options->producer_cpu : options->worker_cpu);
#pragma omp barrier
#pragma omp master
    for (int i = 0; i < kIterations; ++i) {
      const double start = now_seconds(CLOCK_MONOTONIC);
      size_t out_bytes = 0;
      int rc = 0;
#pragma omp task shared(out_bytes, rc)
      rc = echo(in, bytes, out, bytes, &out_bytes);
#pragma omp taskwait
      samples[i] = (now_seconds(CLOCK_MONOTONIC) - start) * 1e6;
      if (rc != 0 || out_bytes != bytes || memcmp(in, out, bytes) != 0) failed = 1;
    }
  }
  if (failed) die("an echo task returned wrong bytes");
  if (options->verbose) {
    fprintf(stderr, "sidecore-bench-omp: echo %zu B as an OpenMP task and taskwait: median %.3f us\n", bytes,
            median(samples, kIterations));
  }
  free(in);
  free(out);
  free(samples);
}

static void parse_task_us(struct options *options, char *text) {
  options->task_lengths = 0;
  for (char *save = NULL, *word = strtok_r(text, ",", &save); word; word = strtok_r(NULL, ",", &save)) {
    char *end = NULL;
    errno = 0;
    unsigned long long us = strtoull(word, &end, 10);
    if (errno || *end || us == 0 || us > 10000000 || options->task_lengths == 32)
      die("--task-us: 1 to 10000000, at most 32");
    options->task_us[options->task_lengths++] = us;
  }
}

static void usage(FILE *stream) {
  fputs("usage: sidecore-bench-omp --library L [--task-us 10,50,1000,10000] [--seconds 2] [--rounds 3]\n"
        "                          [--window-per-worker 4] [--producer-cpu 0] [--worker-cpu 1] [--echo-bytes 64] [-v]\n"
        "OpenMP tasks (libgomp) of the bench library's spin_us, a producer thread and a second thread: harvest\n"
        "efficiency the way sidecore-bench harvest measures it. One JSON line per task length on stdout.\n",
        stream);
}

int main(int argc, char **argv) {
  struct options options = {NULL, {10, 50, 1000, 10000}, 4, 2.0, 3, 4, 0, 1, 64, 0};
  for (int i = 1; i < argc; ++i) {
    const char *arg = argv[i];
    const char *value = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(arg, "-v") || !strcmp(arg, "--verbose")) {
      options.verbose = 1;
      continue;
    }
    if (!value) {
      usage(stderr);
      return 2;
    }
    ++i;
    if (!strcmp(arg, "--library"))
      options.library = value;
    else if (!strcmp(arg, "--task-us"))
      parse_task_us(&options, argv[i]);
    else if (!strcmp(arg, "--seconds"))
      options.seconds = atof(value);
    else if (!strcmp(arg, "--rounds"))
      options.rounds = atoi(value);
    else if (!strcmp(arg, "--window-per-worker"))
      options.window_per_worker = atoi(value);
    else if (!strcmp(arg, "--producer-cpu"))
      options.producer_cpu = atoi(value);
    else if (!strcmp(arg, "--worker-cpu"))
      options.worker_cpu = atoi(value);
    else if (!strcmp(arg, "--echo-bytes"))
      options.echo_bytes = (size_t)strtoull(value, NULL, 10);
    else {
      fprintf(stderr, "sidecore-bench-omp: unknown option %s\n", arg);
      usage(stderr);
      return 2;
    }
  }
  if (!options.library) die("--library is required");
  if (options.seconds <= 0 || options.rounds < 1 || options.rounds > 1000 || options.window_per_worker < 1 ||
      options.window_per_worker > 64 || options.echo_bytes > (1u << 30)) {
    die("--seconds > 0, --rounds 1 to 1000, --window-per-worker 1 to 64, --echo-bytes at most 1 GiB");
  }
  void *handle = dlopen(options.library, RTLD_NOW | RTLD_LOCAL);
  if (!handle) die(dlerror());
  /* POSIX guarantees that dlsym's object pointer converts to a function pointer; ISO C does not. */
  void *spin_symbol = dlsym(handle, "spin_us"), *echo_symbol = dlsym(handle, "echo");
  memcpy(&spin_us, &spin_symbol, sizeof spin_us);
  memcpy(&echo, &echo_symbol, sizeof echo);
  if (!spin_us || !echo) die("the library has no spin_us or no echo");

  echo_check(&options);
  for (int t = 0; t < options.task_lengths; ++t) {
    const uint64_t us = options.task_us[t];
    uint64_t tasks = (uint64_t)(options.seconds * 1e6 / (double)us);
    if (tasks < 1) tasks = 1;
    /* Unrecorded, about 0.1 s: the second thread waking, the first touches (as harvest's warm-up). */
    uint64_t warmup = 100000 / us > 4 ? 100000 / us : 4;
    farm(&options, warmup < tasks ? warmup : tasks, us, 1);
    double speedups[1000];
    double lowest_share = 1.0;
    for (int round = 0; round < options.rounds; ++round) {
      struct run alone, harvested;
      if (round % 2 == 0) {
        alone = farm(&options, tasks, us, 0);
        harvested = farm(&options, tasks, us, 1);
      } else {
        harvested = farm(&options, tasks, us, 1);
        alone = farm(&options, tasks, us, 0);
      }
      speedups[round] = alone.seconds / harvested.seconds;
      if (alone.cpu_share < lowest_share) lowest_share = alone.cpu_share;
      if (harvested.cpu_share < lowest_share) lowest_share = harvested.cpu_share;
      if (options.verbose) {
        fprintf(stderr,
                "sidecore-bench-omp: %llu us round %d: %llu tasks, alone %.4f s, harvest %.4f s (%llu offloaded, "
                "%llu computed by the producer), speedup %.4f; producer's CPU share alone %.3f, harvest %.3f\n",
                (unsigned long long)us, round, (unsigned long long)tasks, alone.seconds, harvested.seconds,
                (unsigned long long)harvested.offloaded, (unsigned long long)harvested.local, speedups[round],
                alone.cpu_share, harvested.cpu_share);
      }
    }
    if (lowest_share < 0.9) {
      fprintf(stderr,
              "sidecore-bench-omp: warning: %llu us: the producer thread had only %.0f%% of its CPU in one of the "
              "runs: something else ran on its CPU\n",
              (unsigned long long)us, lowest_share * 100);
    }
    const double speedup = median(speedups, options.rounds);
    printf("{\"bench\":\"omp-harvest\",\"task_us\":%llu,\"ranks\":1,\"workers\":1,\"speedup\":%.3f,"
           "\"efficiency\":%.3f}\n",
           (unsigned long long)us, speedup, speedup / 2);
    fflush(stdout);
  }
  dlclose(handle);
  return 0;
}
