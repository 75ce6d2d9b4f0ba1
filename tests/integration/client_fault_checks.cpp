// client_fault_checks SCENARIO LIBRARY: faults cost only their own worker, asserted through the C++
// client connected the way a rank connects (Client::from_environment), under sidecore-run (two
// workers) or srun --offload (the step's idle cores). The C++ twin of tests/mpi/mpi_fault_checks.c:
//
//   crash  a segfault, an abort and an exit(), each while `where` tasks are in flight on the other
//          worker: the crash and the tasks queued behind it on its worker complete with
//          EXECUTOR_LOST, the other worker's complete, and within 2 s every worker runs a task at
//          once again, through the same Client and Function objects
//   hang   a function that never returns with task_timeout 500 ms: TIMEOUT, then full capacity
//          again within 2 s
//   bound  the same without a timeout, under an executor with a site bound of 1 s: TIMEOUT after 1 s
//   limit  crashes past the executor's restart limit (5 a minute): the executor stops, and every
//          later task completes with EXECUTOR_LOST at once (no hang, the program goes on)
//
// Prints one line per check group and "SCENARIO with N worker(s): C checks, F failures"; exit status
// 1 when any check failed. Bounds scale with SIDECORE_TEST_TIME_SCALE.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../support/time_scale.h"
#include "sidecore/sidecore.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using sidecore::ErrorKind;

int checks = 0, failures = 0;
size_t workers = 0;

#define CHECK(cond, ...)                                \
  do {                                                  \
    ++checks;                                           \
    if (!(cond)) {                                      \
      ++failures;                                       \
      std::fprintf(stderr, "FAIL line %d: ", __LINE__); \
      std::fprintf(stderr, __VA_ARGS__);                \
      std::fprintf(stderr, "\n");                       \
    }                                                   \
  } while (0)

double scaled_s(double seconds) { return seconds * sidecore_test_time_scale(); }

double since_s(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

struct WhereTask {
  uint32_t us = 0;
  char out[300] = {};
  sidecore::TaskId id = sidecore::kNoTask;
  ErrorKind error = ErrorKind::none;
  std::string where;  // "host:pid" of the worker process that ran it
};

void submit(sidecore::Client& client, const sidecore::Function& fn, WhereTask& task) {
  task.id = client.submit(fn, &task.us, sizeof task.us, task.out, sizeof task.out);
}

void finish(sidecore::Client& client, WhereTask& task) {
  const sidecore::Completion done = client.wait(task.id);
  task.error = done.error;
  task.where.assign(task.out, done.error == ErrorKind::none ? done.out_bytes : 0);
}

// Seconds from `since` until every worker ran one of `workers` tasks submitted together (distinct
// worker processes, all successful); -1 after `timeout` seconds.
double full_capacity(sidecore::Client& client, const sidecore::Function& where, Clock::time_point since,
                     double timeout) {
  while (since_s(since) < timeout) {
    std::vector<WhereTask> tasks(workers);
    for (auto& task : tasks) {
      task.us = 100'000;
      submit(client, where, task);
    }
    std::set<std::string> places;
    bool ok = true;
    for (auto& task : tasks) {
      finish(client, task);
      ok = ok && task.error == ErrorKind::none;
      places.insert(task.where);
    }
    if (ok && places.size() == workers) return since_s(since);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

void check_crash(sidecore::Client& client, const sidecore::Function& where, const std::string& library,
                 const char* symbol) {
  const auto crash = client.lookup(library, symbol);
  // The crash goes to an idle worker; then the least loaded worker takes each task in turn.
  const auto crashing = client.submit(crash, nullptr, 0, nullptr, 0);
  std::vector<WhereTask> others(4);
  for (auto& task : others) {
    task.us = 300'000;
    submit(client, where, task);
  }
  const auto crashed = client.wait(crashing);
  const auto crashed_at = Clock::now();
  CHECK(crashed.error == ErrorKind::executor_lost, "%s: the crashing task's kind is %s", symbol,
        std::string(to_string(crashed.error)).c_str());
  int lost = 0, completed = 0;
  std::set<std::string> survivors;
  for (auto& task : others) {
    finish(client, task);
    if (task.error == ErrorKind::none) {
      ++completed;
      survivors.insert(task.where);
    } else {
      CHECK(task.error == ErrorKind::executor_lost, "%s: a task's kind is %s", symbol,
            std::string(to_string(task.error)).c_str());
      ++lost;
    }
  }
  CHECK(survivors.size() <= 1, "%s: the completed tasks ran in %zu processes", symbol, survivors.size());
  if (workers == 1) CHECK(lost == 4, "%s: %d of 4 tasks lost on the only worker", symbol, lost);
  if (workers == 2) CHECK(lost == 2 && completed == 2, "%s: %d lost, %d completed (expected 2, 2)", symbol, lost, completed);
  const double back = full_capacity(client, where, crashed_at, scaled_s(10));
  CHECK(back >= 0 && back < scaled_s(2), "%s: full capacity again after %.2f s (bound 2 s)", symbol, back);
  CHECK(!client.executor_lost(), "%s: the client counts its executor as lost", symbol);
  std::printf("crash %s: %d lost, %d completed on other workers, full capacity again after %.2f s\n", symbol, lost,
              completed, back);
}

void check_hang(sidecore::Client& client, const sidecore::Function& where, const std::string& library, double bound) {
  const auto stuck = client.lookup(library, "never_return");
  const auto started = Clock::now();
  const auto hung = client.submit(stuck, nullptr, 0, nullptr, 0);
  WhereTask other{.us = 100'000};
  if (workers > 1) submit(client, where, other);
  const auto done = client.wait(hung);
  const double waited = since_s(started);
  CHECK(done.error == ErrorKind::timeout, "the hung task's kind is %s", std::string(to_string(done.error)).c_str());
  CHECK(waited >= bound - 0.05 && waited < bound + scaled_s(2), "TIMEOUT after %.2f s (bound %.1f s)", waited, bound);
  if (workers > 1) {
    finish(client, other);
    CHECK(other.error == ErrorKind::none, "the other worker's task: %s", std::string(to_string(other.error)).c_str());
  }
  const double back = full_capacity(client, where, Clock::now(), scaled_s(10));
  CHECK(back >= 0 && back < scaled_s(2), "full capacity again after %.2f s (bound 2 s)", back);
  std::printf("hang: TIMEOUT after %.2f s, full capacity again after %.2f s\n", waited, back);
}

void check_limit(sidecore::Client& client, const sidecore::Function& where, const std::string& library) {
  const auto crash = client.lookup(library, "crash_segv");
  bool stopped = false;
  for (int round = 0; round < 8 && !stopped; ++round) {
    const auto done = client.wait(client.submit(crash, nullptr, 0, nullptr, 0));
    CHECK(done.error == ErrorKind::executor_lost, "crash %d: %s", round, std::string(to_string(done.error)).c_str());
    stopped = full_capacity(client, where, Clock::now(), scaled_s(3)) < 0;
  }
  CHECK(stopped, "the executor still serves after 8 crashes");
  const auto started = Clock::now();
  WhereTask after{};
  submit(client, where, after);
  finish(client, after);
  CHECK(after.error == ErrorKind::executor_lost, "a task after the executor stopped: %s",
        std::string(to_string(after.error)).c_str());
  CHECK(since_s(started) < scaled_s(2), "it took %.2f s to fail", since_s(started));
  CHECK(client.executor_lost(), "the client does not count its executor as lost");
  std::printf("limit: the executor stopped; later tasks fail with EXECUTOR_LOST at once\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s crash|hang|bound|limit LIBRARY\n", argv[0]);
    return 2;
  }
  const std::string scenario = argv[1], library = argv[2];
  try {
    sidecore::ClientOptions options;
    if (scenario == "hang") options.task_timeout = std::chrono::milliseconds(500);
    auto client = sidecore::Client::from_environment(options);
    workers = client.workers();
    const auto where = client.lookup(library, "where");
    if (scenario == "crash") {
      for (const char* symbol : {"crash_segv", "crash_abort", "crash_exit"}) check_crash(client, where, library, symbol);
    } else if (scenario == "limit") {
      check_limit(client, where, library);
    } else if (scenario == "hang" || scenario == "bound") {
      check_hang(client, where, library, scenario == "hang" ? 0.5 : 1.0);
    } else {
      CHECK(false, "unknown scenario %s", scenario.c_str());
    }
  } catch (const sidecore::Error& e) {
    CHECK(false, "sidecore error %s: %s", std::string(to_string(e.kind())).c_str(), e.what());
  }
  std::printf("%s with %zu worker(s): %d checks, %d failures\n", scenario.c_str(), workers, checks, failures);
  return failures == 0 ? 0 : 1;
}
