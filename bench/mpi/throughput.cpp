// sidecore-bench-mpi mpi-throughput and throughput: echo tasks per second with a window in flight.
//
// `mpi-throughput` (2 ranks, plain mpirun, no executor) is the MPI-only pattern alone, the peer that
// bench/compare.sh has always measured: rank 0 keeps the window in flight to worker rank 1, which
// MPI_Recv's each task, runs the bench library's `echo` and MPI_Send's the result.
//
// `throughput` (3 ranks, under sidecore-run; what `sidecore-bench mpi-throughput` starts) measures that
// same pattern and MPIX next to each other in one job, in alternating rounds, with the layout of
// mpi-latency: rank 0 (CPU 0) drives the MPI-only rounds against worker rank 1 (CPU 1, next to the
// executor's worker); rank 2 (CPU 0) holds the only pool of the job, over MPI_COMM_SELF, and keeps the
// window of MPIX_Offload_submit tasks in flight to the executor. Whichever ranks are not measuring
// sleep in sem_wait, and after an MPIX round rank 2 waits for the worker's spin window to run out
// before the worker rank runs next to it.
#include <fmt/format.h>
#include <mpi.h>
#include <mpix_offload.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "mpi/commands.hpp"
#include "mpi/common.hpp"

namespace sidecore::bench::mpi {
namespace {

// Rates are sampled every 1/kSamplesPerRound of a round's tasks; the first sample of each round
// (window filling, the worker waking) is left out.
constexpr uint64_t kSamplesPerRound = 20;

// Counts completed tasks and turns them into rates.
class RateSampler {
 public:
  explicit RateSampler(uint64_t tasks) : every_(std::max<uint64_t>(1, tasks / kSamplesPerRound)) {}
  void completed(uint64_t done) {
    if (done % every_ != 0) return;
    const auto now = Clock::now();
    rates_.push_back(static_cast<double>(every_) / (ns_between(last_, now) * 1e-9));
    last_ = now;
  }
  Samples rates() {
    if (!rates_.empty()) rates_.erase(rates_.begin());
    return std::move(rates_);
  }

 private:
  uint64_t every_;
  Clock::time_point last_ = Clock::now();
  Samples rates_;
};

// One MPI-only round: `tasks` echo tasks of `bytes` to worker rank `worker` with `window` of them in
// flight, each slot an MPI_Irecv of the result and an MPI_Isend of the task. The worker answers in
// order, so the oldest slot completes first: wait for it, reuse it.
Samples mpi_round(int worker, uint64_t bytes, unsigned window, uint64_t tasks) {
  const size_t stride = std::max<uint64_t>(bytes, 1);
  std::vector<std::byte> out(stride * window, std::byte{0x5a}), in(stride * window);
  std::vector<MPI_Request> sends(window, MPI_REQUEST_NULL), receives(window, MPI_REQUEST_NULL);
  const int n = static_cast<int>(bytes);
  uint64_t issued = 0, done = 0;
  auto issue = [&](size_t slot) {
    check(MPI_Irecv(in.data() + slot * stride, n, MPI_BYTE, worker, MPI_ANY_TAG, MPI_COMM_WORLD, &receives[slot]),
          "MPI_Irecv");
    check(MPI_Isend(out.data() + slot * stride, n, MPI_BYTE, worker, kTagTask, MPI_COMM_WORLD, &sends[slot]),
          "MPI_Isend");
    ++issued;
  };
  RateSampler sampler(tasks);
  for (size_t slot = 0; slot < window && issued < tasks; ++slot) issue(slot);
  while (done < tasks) {
    const size_t slot = done % window;
    MPI_Status status;
    check(MPI_Wait(&receives[slot], &status), "MPI_Wait");
    check(MPI_Wait(&sends[slot], MPI_STATUS_IGNORE), "MPI_Wait");
    int received = 0;
    MPI_Get_count(&status, MPI_BYTE, &received);
    if (status.MPI_TAG != kTagResult || received != n) die("an echo task failed on the worker rank");
    ++done;
    if (issued < tasks) issue(slot);
    sampler.completed(done);
  }
  if (std::memcmp(out.data(), in.data(), bytes) != 0) die("the worker rank sent back different bytes");
  return sampler.rates();
}

// One MPIX round: the same window of `echo` tasks through MPIX_Offload_submit, N bytes in and N
// bytes of output each; the oldest slot is waited for and reused, as in mpi_round.
Samples mpix_round(const Offload& offload, uint64_t bytes, unsigned window, uint64_t tasks) {
  const size_t stride = std::max<uint64_t>(bytes, 1);
  std::vector<std::byte> out(stride * window, std::byte{0x5a}), in(stride * window);
  std::vector<MPI_Request> requests(window, MPI_REQUEST_NULL);
  const auto n = static_cast<MPI_Count>(bytes);
  uint64_t issued = 0, done = 0;
  auto issue = [&](size_t slot) {
    check(MPIX_Offload_submit(offload.remote(), out.data() + slot * stride, n, in.data() + slot * stride, n,
                              &requests[slot]),
          "MPIX_Offload_submit");
    ++issued;
  };
  RateSampler sampler(tasks);
  for (size_t slot = 0; slot < window && issued < tasks; ++slot) issue(slot);
  while (done < tasks) {
    const size_t slot = done % window;
    MPI_Status status;
    check(MPI_Wait(&requests[slot], &status), "an echo task");
    int received = 0;
    MPI_Get_count(&status, MPI_BYTE, &received);
    if (static_cast<uint64_t>(received) != bytes) die(fmt::format("echo returned {} of {} bytes", received, bytes));
    ++done;
    if (issued < tasks) issue(slot);
    sampler.completed(done);
  }
  if (std::memcmp(out.data(), in.data(), bytes) != 0) die("the echo task returned different bytes");
  return sampler.rates();
}

void describe(const char* side, uint64_t bytes, const Samples& rates) {
  std::fprintf(stderr, "sidecore-bench: mpi-throughput %llu B %s: %zu samples, p10 %.0f p50 %.0f p90 %.0f tasks/s\n",
               static_cast<unsigned long long>(bytes), side, rates.size(), quantile(rates, 0.1), quantile(rates, 0.5),
               quantile(rates, 0.9));
}

// --- throughput: both in one job ---------------------------------------------------------------------

enum Rank : int { kDriver = 0, kWorker = 1, kOffloader = 2 };
enum Tag : int { kTagSamples = 5 };  // kTagCommand (1): common.hpp; kTagTask...kTagStop (10-13): the tasks
enum Op : uint64_t { kQuit = 0, kServe = 1, kMpixRound = 2 };

struct Command {
  uint64_t op = kQuit;
  uint64_t tasks = 0;  // kServe: tasks to serve; kMpixRound: tasks of the round
  uint64_t bytes = 0;
  uint64_t window = 0;
};

// Rank 1: serves exactly the tasks of each MPI-only round, sleeping in between.
void serve_rounds(Wakeups& wakeups, const std::string& library, uint64_t capacity) {
  LocalFunction echo(library, "echo");
  while (true) {
    wakeups.sleep(kWorker);
    const Command command = receive_command<Command>(kDriver);
    if (command.op == kQuit) return;
    serve_tasks(echo.get(), capacity, command.tasks);
  }
}

// Rank 2: MPIX rounds; after each, waits out the worker's spin window, wakes the driver and sends
// the rates.
void serve_mpix_rounds(Wakeups& wakeups, const std::string& library, long quiesce_us) {
  Offload offload(MPI_COMM_SELF, library, "echo");
  while (true) {
    wakeups.sleep(kOffloader);
    const Command command = receive_command<Command>(kDriver);
    if (command.op == kQuit) return;
    const Samples rates = mpix_round(offload, command.bytes, static_cast<unsigned>(command.window), command.tasks);
    std::this_thread::sleep_for(std::chrono::microseconds(quiesce_us));
    wakeups.wake(kDriver);
    send_samples(kDriver, kTagSamples, rates);
  }
}

class ThroughputDriver {
 public:
  ThroughputDriver(Wakeups& wakeups, const ThroughputOptions& options) : wakeups_(wakeups), options_(options) {}

  Samples mpi(uint64_t bytes, uint64_t tasks) {
    send_command(kWorker, Command{kServe, tasks, bytes, options_.window});
    wakeups_.wake(kWorker);
    Samples rates = mpi_round(kWorker, bytes, options_.window, tasks);
    settle();
    return rates;
  }

  Samples mpix(uint64_t bytes, uint64_t tasks) {
    send_command(kOffloader, Command{kMpixRound, tasks, bytes, options_.window});
    wakeups_.wake(kOffloader);
    wakeups_.sleep(kDriver);
    Samples rates = receive_samples(kOffloader, kTagSamples);
    settle();
    return rates;
  }

  void quit() {
    for (int rank : {kWorker, kOffloader}) {
      send_command(rank, Command{});
      wakeups_.wake(rank);
    }
  }

 private:
  // The rank that just finished goes back to sem_wait within microseconds; give it that.
  static void settle() { std::this_thread::sleep_for(std::chrono::microseconds(200)); }

  Wakeups& wakeups_;
  const ThroughputOptions& options_;
};

}  // namespace

int run_throughput(const ThroughputOptions& options) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size != 3) die(fmt::format("throughput needs exactly 3 ranks (has {})", size));
  Wakeups wakeups(size);
  if (rank == kWorker) {
    serve_rounds(wakeups, options.library, *std::max_element(options.bytes.begin(), options.bytes.end()));
  } else if (rank == kOffloader) {
    serve_mpix_rounds(wakeups, options.library, options.quiesce_us);
  } else {
    ThroughputDriver driver(wakeups, options);
    for (const uint64_t bytes : options.bytes) {
      // One unrecorded round of each side: connections, first touches, the worker's first call.
      const uint64_t warmup = std::max<uint64_t>(options.iterations / 10, options.window);
      driver.mpi(bytes, warmup);
      driver.mpix(bytes, warmup);
      Samples mpi, mpix;
      for (unsigned round = 0; round < options.rounds; ++round) {
        // Alternated, the order swapped every round, as the VM's placements come and go.
        auto add = [](Samples& all, const Samples& some) { all.insert(all.end(), some.begin(), some.end()); };
        if (round % 2 == 0) {
          add(mpi, driver.mpi(bytes, options.iterations));
          add(mpix, driver.mpix(bytes, options.iterations));
        } else {
          add(mpix, driver.mpix(bytes, options.iterations));
          add(mpi, driver.mpi(bytes, options.iterations));
        }
      }
      if (options.verbose) {
        describe("mpix", bytes, mpix);
        describe("mpi ", bytes, mpi);
      }
      const double a = median(mpix), b = median(mpi);
      print_result(fmt::format("{{\"bench\":\"mpi-throughput\",\"bytes\":{},\"window\":{},\"mpix_tasks_per_s\":{},"
                               "\"mpi_tasks_per_s\":{},\"ratio\":{},\"transport\":\"{}\"}}",
                               bytes, options.window, json_number(a, 0), json_number(b, 0), json_number(a / b, 3),
                               offload_transport()));
    }
    driver.quit();
  }
  check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  return 0;
}

// --- mpi-throughput: the MPI-only pattern alone ----------------------------------------------------------

int run_peer_throughput(const ThroughputOptions& options) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size != 2) die(fmt::format("mpi-throughput needs exactly 2 ranks (has {})", size));
  if (rank == 1) {
    LocalFunction echo(options.library, "echo");
    serve_tasks(echo.get(), *std::max_element(options.bytes.begin(), options.bytes.end()));
    return 0;
  }
  for (const uint64_t bytes : options.bytes) {
    mpi_round(1, bytes, options.window, std::max<uint64_t>(options.iterations / 10, options.window));
    Samples rates;
    for (unsigned round = 0; round < options.rounds; ++round) {
      const Samples samples = mpi_round(1, bytes, options.window, options.iterations);
      rates.insert(rates.end(), samples.begin(), samples.end());
    }
    if (options.verbose) describe("mpi-only", bytes, rates);
    print_result(fmt::format("{{\"bench\":\"mpi-throughput\",\"bytes\":{},\"window\":{},\"tasks_per_s\":{}}}", bytes,
                             options.window, json_number(median(rates), 0)));
  }
  check(MPI_Send(nullptr, 0, MPI_BYTE, 1, kTagStop, MPI_COMM_WORLD), "MPI_Send");
  return 0;
}

}  // namespace sidecore::bench::mpi
