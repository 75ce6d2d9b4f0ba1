// sidecore-bench-mpi mpi-latency: the MPIX round trip next to the MPI-only one, in one job.
#include <fmt/format.h>
#include <mpi.h>
#include <mpix_offload.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mpi/commands.hpp"
#include "mpi/common.hpp"
#include "sidecore/sidecore.hpp"

namespace sidecore::bench::mpi {
namespace {

// --- mpi-latency ----------------------------------------------------------------------------------------
//
// Three ranks: 0 (CPU 0) measures the MPI-only round trip with 1 (CPU 1), the echo rank; 2 (CPU 0)
// is the only rank with an offload pool and measures the MPIX round trip to the executor worker
// (CPU 1). So the MPI-only pair runs without Sidecore in the process (no progress thread, no
// opal_progress hook), as the peer pattern would. Whichever ranks are not measuring wait in
// sem_wait on a named semaphore, in the kernel, so that each measured pair has its two CPUs to
// itself; rank 0 commands the others with an MPI message followed by a post of their semaphore.

enum Rank : int { kDriver = 0, kEcho = 1, kOffloader = 2 };
enum Tag : int { kTagEcho = 2, kTagShare = 3, kTagSamples = 4 };  // kTagCommand (1): common.hpp
enum Op : uint64_t { kQuit = 0, kEchoFor = 1, kMpixRound = 2, kPooledMpiRound = 3, kClientRound = 4 };

struct Command {
  uint64_t op = kQuit;
  uint64_t count = 0;  // round trips, warm-up included
  uint64_t warmup = 0;
  uint64_t bytes = 0;
  uint64_t peer = 0;     // kEchoFor: the rank to echo for
  uint64_t verbose = 0;  // kMpixRound: print the process's threads' CPU use and switches on stderr
};

// The MPI-only round trip: MPI_Send `bytes` to the echo rank, MPI_Recv its copy.
Samples mpi_round_trips(uint64_t count, uint64_t warmup, uint64_t bytes) {
  std::vector<std::byte> out(std::max<uint64_t>(bytes, 1), std::byte{0x5a}), in(out.size());
  Samples samples;
  samples.reserve(count - std::min(count, warmup));
  const int n = static_cast<int>(bytes);
  for (uint64_t i = 0; i < count; ++i) {
    const auto start = Clock::now();
    check(MPI_Send(out.data(), n, MPI_BYTE, kEcho, kTagEcho, MPI_COMM_WORLD), "MPI_Send");
    check(MPI_Recv(in.data(), n, MPI_BYTE, kEcho, kTagEcho, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
    const auto end = Clock::now();
    if (i >= warmup) samples.push_back(ns_between(start, end));
  }
  if (std::memcmp(out.data(), in.data(), bytes) != 0) die("the echo rank sent back different bytes");
  return samples;
}

// The MPIX round trip: submit `echo` of `bytes` (as many back), MPI_Wait.
Samples mpix_round_trips(Offload& offload, uint64_t count, uint64_t warmup, uint64_t bytes) {
  std::vector<std::byte> out(std::max<uint64_t>(bytes, 1), std::byte{0x5a}), in(out.size());
  Samples samples;
  samples.reserve(count - std::min(count, warmup));
  const auto n = static_cast<MPI_Count>(bytes);
  for (uint64_t i = 0; i < count; ++i) {
    MPI_Request request;
    MPI_Status status;
    const auto start = Clock::now();
    check(MPIX_Offload_submit(offload.remote(), out.data(), n, in.data(), n, &request), "MPIX_Offload_submit");
    check(MPI_Wait(&request, &status), "the echo task");
    const auto end = Clock::now();
    if (i >= warmup) samples.push_back(ns_between(start, end));
    int received = 0;
    MPI_Get_count(&status, MPI_BYTE, &received);
    if (static_cast<uint64_t>(received) != bytes) die(fmt::format("echo returned {} of {} bytes", received, bytes));
  }
  if (std::memcmp(out.data(), in.data(), bytes) != 0) die("the echo task returned different bytes");
  return samples;
}

// -v: the same echo task through the C++ client directly (submit, then test() until done), on a
// connection of its own: the transport and executor part of the MPIX round trip, without the MPI
// layer (generalized request, engine lock, opal_progress hook).
Samples client_round_trips(sidecore::Client& client, const sidecore::Function& echo, uint64_t count, uint64_t warmup,
                           uint64_t bytes) {
  std::vector<std::byte> out(std::max<uint64_t>(bytes, 1), std::byte{0x5a}), in(out.size());
  Samples samples;
  samples.reserve(count - std::min(count, warmup));
  for (uint64_t i = 0; i < count; ++i) {
    const auto start = Clock::now();
    const sidecore::TaskId id = client.submit(echo, out.data(), bytes, in.data(), bytes);
    std::optional<sidecore::Completion> done;
    while (!(done = client.test(id))) {
    }
    const auto end = Clock::now();
    if (done->error != sidecore::ErrorKind::none || done->out_bytes != bytes) die("a client echo task failed");
    if (i >= warmup) samples.push_back(ns_between(start, end));
  }
  return samples;
}

// Rank 1: echoes for whoever rank 0 names, and reports its share of CPU 1 during the round (a
// worker that failed to sleep would take half of it).
void serve_echo(Wakeups& wakeups) {
  std::vector<std::byte> buffer;
  while (true) {
    wakeups.sleep(kEcho);
    const Command command = receive_command<Command>(kDriver);
    if (command.op == kQuit) return;
    buffer.resize(std::max<uint64_t>(command.bytes, 1));
    const int peer = static_cast<int>(command.peer);
    const int n = static_cast<int>(command.bytes);
    const double cpu_start = thread_cpu_seconds();
    const auto wall_start = Clock::now();
    for (uint64_t i = 0; i < command.count; ++i) {
      check(MPI_Recv(buffer.data(), n, MPI_BYTE, peer, kTagEcho, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
      check(MPI_Send(buffer.data(), n, MPI_BYTE, peer, kTagEcho, MPI_COMM_WORLD), "MPI_Send");
    }
    double share = (thread_cpu_seconds() - cpu_start) / (ns_between(wall_start, Clock::now()) * 1e-9);
    check(MPI_Send(&share, 1, MPI_DOUBLE, peer, kTagShare, MPI_COMM_WORLD), "MPI_Send");
  }
}

void send_round(const Samples& samples, double share) {
  check(MPI_Send(samples.data(), static_cast<int>(samples.size()), MPI_DOUBLE, kDriver, kTagSamples, MPI_COMM_WORLD),
        "MPI_Send");
  check(MPI_Send(&share, 1, MPI_DOUBLE, kDriver, kTagShare, MPI_COMM_WORLD), "MPI_Send");
}

// Rank 2: MPIX rounds, and with --verbose MPI-only rounds from a process that holds an idle pool
// and rounds through the C++ client.
void serve_offload(Wakeups& wakeups, Offload& offload, const std::string& library, long quiesce_us) {
  std::optional<sidecore::Client> client;
  sidecore::Function echo;
  while (true) {
    wakeups.sleep(kOffloader);
    const Command command = receive_command<Command>(kDriver);
    if (command.op == kQuit) return;
    Samples samples;
    double share = 1.0;
    if (command.op == kMpixRound || command.op == kClientRound) {
      if (command.op == kMpixRound) {
        const auto before = command.verbose ? thread_usage() : std::map<int, ThreadUsage>{};
        samples = mpix_round_trips(offload, command.count, command.warmup, command.bytes);
        if (command.verbose) describe_threads("mpix round", before);
      } else {
        if (!client) {
          try {
            client.emplace(sidecore::Client::from_environment());
            echo = client->lookup(library, "echo");
          } catch (const sidecore::Error& e) {
            die(std::string("sidecore client: ") + e.what());
          }
        }
        samples = client_round_trips(*client, echo, command.count, command.warmup, command.bytes);
      }
      // Let the worker's spin window run out before anyone measures next to it.
      std::this_thread::sleep_for(std::chrono::microseconds(quiesce_us));
    } else {
      samples = mpi_round_trips(command.count, command.warmup, command.bytes);
      check(MPI_Recv(&share, 1, MPI_DOUBLE, kEcho, kTagShare, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
    }
    wakeups.wake(kDriver);
    send_round(samples, share);
  }
}

struct Side {
  Samples all, round_medians, echo_shares;
  void add(const Samples& samples) {
    round_medians.push_back(median(samples));
    all.insert(all.end(), samples.begin(), samples.end());
  }
};

class LatencyDriver {
 public:
  LatencyDriver(Wakeups& wakeups, const LatencyOptions& options) : wakeups_(wakeups), options_(options) {}

  // Rank 0 with rank 1.
  void mpi_round(uint64_t bytes, Side* side) {
    send_command(kEcho, Command{kEchoFor, count(), warmup(), bytes, kDriver});
    wakeups_.wake(kEcho);
    const Samples samples = mpi_round_trips(count(), warmup(), bytes);
    double share = 0;
    check(MPI_Recv(&share, 1, MPI_DOUBLE, kEcho, kTagShare, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
    settle();
    if (side) {
      side->add(samples);
      side->echo_shares.push_back(share);
    }
  }

  // Rank 2 with the executor, or (pooled) rank 2 with rank 1; rank 0 sleeps meanwhile.
  void offloader_round(uint64_t op, uint64_t bytes, Side* side) {
    if (op == kPooledMpiRound) {
      send_command(kEcho, Command{kEchoFor, count(), warmup(), bytes, kOffloader});
      wakeups_.wake(kEcho);
    }
    // Thread details of the MPIX caller in the first recorded round only: one sample is enough.
    const bool details = options_.verbose && op == kMpixRound && side != nullptr && side->all.empty();
    send_command(kOffloader, Command{op, count(), warmup(), bytes, 0, details ? 1u : 0u});
    wakeups_.wake(kOffloader);
    wakeups_.sleep(kDriver);
    Samples samples(count() - warmup());
    double share = 0;
    check(MPI_Recv(samples.data(), static_cast<int>(samples.size()), MPI_DOUBLE, kOffloader, kTagSamples,
                   MPI_COMM_WORLD, MPI_STATUS_IGNORE),
          "MPI_Recv");
    check(MPI_Recv(&share, 1, MPI_DOUBLE, kOffloader, kTagShare, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
    settle();
    if (side) {
      side->add(samples);
      if (op == kPooledMpiRound) side->echo_shares.push_back(share);
    }
  }

  void quit() {
    for (int rank : {kEcho, kOffloader}) {
      send_command(rank, Command{});
      wakeups_.wake(rank);
    }
  }

 private:
  uint64_t count() const noexcept { return options_.iterations + warmup(); }
  uint64_t warmup() const noexcept { return std::max<uint64_t>(1, options_.iterations / 10); }
  // The rank that just finished goes back to sem_wait within microseconds; give it that.
  static void settle() { std::this_thread::sleep_for(std::chrono::microseconds(200)); }

  Wakeups& wakeups_;
  const LatencyOptions& options_;
};

void describe(const char* label, uint64_t bytes, const Side& side) {
  std::fprintf(stderr,
               "sidecore-bench: mpi-latency %llu B %s: %zu samples, p10 %.3f p50 %.3f p75 %.3f p90 %.3f p99 %.3f us",
               static_cast<unsigned long long>(bytes), label, side.all.size(), quantile(side.all, 0.1) * 1e-3,
               quantile(side.all, 0.5) * 1e-3, quantile(side.all, 0.75) * 1e-3, quantile(side.all, 0.9) * 1e-3,
               quantile(side.all, 0.99) * 1e-3);
  if (!side.echo_shares.empty()) {
    std::fprintf(stderr, "; echo rank's CPU share per round: min %.2f median %.2f",
                 *std::min_element(side.echo_shares.begin(), side.echo_shares.end()), median(side.echo_shares));
  }
  std::fputc('\n', stderr);
}

}  // namespace

int run_latency(const LatencyOptions& options) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size != 3) die(fmt::format("mpi-latency needs exactly 3 ranks (has {})", size));
  Wakeups wakeups(size);
  if (rank == kEcho) {
    serve_echo(wakeups);
  } else if (rank == kOffloader) {
    Offload offload(MPI_COMM_SELF, options.library, "echo");
    serve_offload(wakeups, offload, options.library, options.quiesce_us);
  } else {
    LatencyDriver driver(wakeups, options);
    for (const uint64_t bytes : options.bytes) {
      Side mpi, mpix, pooled, client;
      // One unrecorded round of each side: connections, first touches, the worker's first call.
      driver.mpi_round(bytes, nullptr);
      driver.offloader_round(kMpixRound, bytes, nullptr);
      for (unsigned round = 0; round < options.rounds; ++round) {
        if (round % 2 == 0) {
          driver.mpi_round(bytes, &mpi);
          driver.offloader_round(kMpixRound, bytes, &mpix);
        } else {
          driver.offloader_round(kMpixRound, bytes, &mpix);
          driver.mpi_round(bytes, &mpi);
        }
        if (options.verbose) {
          driver.offloader_round(kPooledMpiRound, bytes, &pooled);
          driver.offloader_round(kClientRound, bytes, &client);
        }
      }
      const double a = median(mpix.all) * 1e-3, b = median(mpi.all) * 1e-3;
      if (options.verbose) {
        describe("mpix          ", bytes, mpix);
        describe("mpi           ", bytes, mpi);
        describe("mpi, idle pool", bytes, pooled);
        describe("client, no MPI", bytes, client);
        Samples paired;
        for (size_t i = 0; i < std::min(mpix.round_medians.size(), mpi.round_medians.size()); ++i) {
          paired.push_back(mpix.round_medians[i] / mpi.round_medians[i]);
        }
        std::fprintf(stderr,
                     "sidecore-bench: mpi-latency %llu B paired: median of %zu per-round ratios %.3f (min %.3f, max "
                     "%.3f); an idle pool in the process makes the MPI round trip %.3f times slower; the MPI "
                     "layer adds %.3f us to the client's round trip\n",
                     static_cast<unsigned long long>(bytes), paired.size(), median(paired),
                     *std::min_element(paired.begin(), paired.end()), *std::max_element(paired.begin(), paired.end()),
                     median(pooled.all) * 1e-3 / b, a - median(client.all) * 1e-3);
      }
      if (!mpi.echo_shares.empty() && median(mpi.echo_shares) < 0.9) {
        std::fprintf(stderr,
                     "sidecore-bench: warning: the echo rank had only %.0f%% of its CPU during the MPI rounds: "
                     "another program, or a worker that does not sleep, ran on it\n",
                     median(mpi.echo_shares) * 100);
      }
      print_result(fmt::format("{{\"bench\":\"mpi-latency\",\"bytes\":{},\"mpix_rtt_us\":{},\"mpi_rtt_us\":{},"
                               "\"ratio\":{},\"transport\":\"{}\"}}",
                               bytes, json_number(a, 3), json_number(b, 3), json_number(a / b, 3),
                               offload_transport()));
    }
    driver.quit();
  }
  check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  return 0;
}

}  // namespace sidecore::bench::mpi
