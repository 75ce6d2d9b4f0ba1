#include "measure.hpp"

#include <fmt/format.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <thread>

#include "core_set.hpp"
#include "fabric/error.hpp"
#include "fabric/info.hpp"
#include "raw_fabric.hpp"
#include "server_process.hpp"
#include "quantile.hpp"
#include "setup.hpp"
#include "sidecore/sidecore.hpp"

namespace sidecore::bench {
namespace {

// A round that makes no progress for this long is reported as a failure instead of hanging.
constexpr auto kStallTimeout = std::chrono::seconds(120);
// Throughput: each round's rate is sampled this many times (the first sample, the ramp-up, is dropped).
constexpr uint64_t kRateSamplesPerRound = 20;

double nanoseconds(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::nano>(to - from).count();
}

std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    } else {
      out.push_back(c);
    }
  }
  return out + "\"";
}

// Finite numbers only: JSON has no NaN or infinity.
std::string json_number(double value, int decimals) {
  if (!std::isfinite(value)) return "null";
  return fmt::format("{:.{}f}", value, decimals);
}

// Makes a stalled round fail instead of hang. Looks at the clock only every few thousand empty
// polls, so it costs the measured loops nothing.
class Watchdog {
 public:
  void progressed() noexcept { progressed_ = true; }
  void idle() {
    if (++empty_ % 4096 != 0) return;
    const auto now = Clock::now();
    if (progressed_) {
      progressed_ = false;
      deadline_ = now + kStallTimeout;
    } else if (now > deadline_) {
      throw std::runtime_error("a round made no progress for 120 s");
    }
  }

 private:
  Clock::time_point deadline_ = Clock::now() + kStallTimeout;
  unsigned empty_ = 0;
  bool progressed_ = false;
};

// Samples rates over chunks of completions while a window of operations is in flight. The first
// chunk of a round (the window filling, the worker waking) is not recorded.
class RateMeter {
 public:
  RateMeter(uint64_t total, Samples* samples)
      : chunk_(std::max<uint64_t>(1, total / kRateSamplesPerRound)), next_(chunk_), samples_(samples) {}
  void update(uint64_t completed) {
    if (completed < next_) return;
    const auto now = Clock::now();
    if (recording_ && samples_ != nullptr) {
      samples_->push_back(static_cast<double>(completed - last_count_) * 1e9 / nanoseconds(last_time_, now));
    }
    recording_ = true;
    last_time_ = now;
    last_count_ = completed;
    next_ = completed + chunk_;
  }

 private:
  uint64_t chunk_, next_;
  Samples* samples_;
  bool recording_ = false;
  Clock::time_point last_time_ = Clock::now();
  uint64_t last_count_ = 0;
};

void pin_this_thread(int cpu) {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  CPU_SET(cpu, &mask);
  if (sched_setaffinity(0, sizeof mask, &mask) != 0) {
    throw std::runtime_error(fmt::format("cannot pin the bench to CPU {}: {}", cpu, std::strerror(errno)));
  }
}

std::vector<std::string> server_arguments(const BenchOptions& options, const std::string& library) {
  std::vector<std::string> arguments{"serve", "--provider", options.provider, "--cpu", std::to_string(options.server_cpu),
                                     "--library", library, "--poll", std::string(to_string(options.poll)),
                                     "--spin-us", std::to_string(options.spin_us), "--credits",
                                     std::to_string(std::max(64u, options.window))};
  if (!options.server_netns.empty()) arguments.insert(arguments.end(), {"--netns", options.server_netns});
  return arguments;
}

// The bench process's side of one run: its server child, the Sidecore client and the raw endpoint.
class Session {
 public:
  Session(const BenchOptions& options, const std::string& library, const char* function)
      : options_(options),
        server_(server_arguments(options, library)) {
    const std::string card = server_.expect("card");
    const std::string token = server_.expect("token");
    std::string server_raw;
    if (!from_hex(server_.expect("raw"), server_raw)) throw std::runtime_error("bench server sent a malformed address");
    server_.expect("ready");

    raw_ = std::make_unique<RawEndpoint>(options.provider);
    raw_->set_peer(server_raw);
    server_.send("peer " + to_hex(raw_->address()));
    server_.expect("ok");

    try {
      ClientOptions client_options;
      client_options.transport = options.transport == "fabric" ? Transport::fabric : Transport::automatic;
      client_ = std::make_unique<Client>(Client::connect(card, token, client_options));
      transport_ = client_->on_rings() ? "rings" : "fabric";
      if (options.transport == "rings" && !client_->on_rings()) {
        throw std::runtime_error(fmt::format("--transport rings: the client took {} instead of the executor's "
                                             "rings (they need provider shm on the executor's host)",
                                             options.provider));
      }
      function_ = client_->lookup(library, function);
    } catch (const Error& e) {
      throw std::runtime_error(std::string("sidecore client: ") + e.what());
    }
  }

  const std::string& transport() const noexcept { return transport_; }

  ~Session() {
    client_.reset();  // says goodbye to the worker before it stops
    raw_out_.reset();
    raw_in_.reset();
    source_.reset();
    raw_.reset();
    server_.quit();
  }

  // --- raw baseline ------------------------------------------------------------------------------

  // One exchange at a time: `send_bytes` from `out`, then a reply of up to `reply_bytes` into `in`.
  // Both rounds that use it (latency, bandwidth) wait for each reply before the next send.
  void raw_round_trips(const RegisteredBuffer& out, size_t send_bytes, const RegisteredBuffer& in, size_t reply_bytes,
                       uint64_t total, uint64_t warmup, Samples* samples) {
    RawEndpoint& ep = *raw_;
    fi_cq_data_entry entries[RawEndpoint::kBatch];
    Watchdog watchdog;
    if (total > 0) ep.post_receive(in.slot(0), reply_bytes, in.descriptor(), raw_context(RawOp::receive, 0));
    for (uint64_t i = 0; i < total; ++i) {
      const auto start = Clock::now();
      bool send_pending = ep.send(out.slot(0), send_bytes, out.descriptor(), raw_context(RawOp::send, 0));
      bool replied = false;
      while (!replied || send_pending) {
        const size_t n = ep.poll(entries, RawEndpoint::kBatch);
        if (n == 0) {
          watchdog.idle();
          continue;
        }
        watchdog.progressed();
        for (size_t k = 0; k < n; ++k) {
          if (raw_op(entries[k].op_context) == RawOp::receive) {
            if (entries[k].len != reply_bytes) throw std::runtime_error("raw baseline: reply of the wrong size");
            replied = true;
            // Re-posted before the clock stops, as the Sidecore client re-posts inside progress().
            if (i + 1 < total) {
              ep.post_receive(in.slot(0), reply_bytes, in.descriptor(), raw_context(RawOp::receive, 0));
            }
          } else {
            send_pending = false;
          }
        }
      }
      if (samples != nullptr && i >= warmup) samples->push_back(nanoseconds(start, Clock::now()));
    }
  }

  void raw_latency(size_t bytes, uint64_t total, uint64_t warmup, Samples* samples) {
    ensure(raw_out_, 1, bytes, raw_->message_access(), 0x5a);
    ensure(raw_in_, 1, bytes, raw_->message_access(), 0);
    server_.send(fmt::format("echo {} {} 1", total, bytes));
    server_.expect("go");
    raw_round_trips(*raw_out_, bytes, *raw_in_, bytes, total, warmup, samples);
    server_.expect("done");
  }

  void raw_throughput(size_t bytes, uint64_t total, Samples* samples) {
    const unsigned window = options_.window;
    ensure(raw_out_, window, bytes, raw_->message_access(), 0x5a);
    ensure(raw_in_, window, bytes, raw_->message_access(), 0);
    server_.send(fmt::format("echo {} {} {}", total, bytes, window));
    server_.expect("go");
    RawEndpoint& ep = *raw_;
    fi_cq_data_entry entries[RawEndpoint::kBatch];
    Watchdog watchdog;
    // Receives are posted before the first send, so every echo finds one.
    uint64_t posted = 0;
    for (uint32_t slot = 0; slot < window && posted < total; ++slot, ++posted) {
      ep.post_receive(raw_in_->slot(slot), bytes, raw_in_->descriptor(), raw_context(RawOp::receive, slot));
    }
    std::vector<uint32_t> free_sends;
    for (uint32_t slot = window; slot-- > 0;) free_sends.push_back(slot);
    uint64_t sent = 0, completed = 0;
    RateMeter meter(total, samples);
    while (completed < total) {
      while (sent < total && sent - completed < window && !free_sends.empty()) {
        const uint32_t slot = free_sends.back();
        if (ep.send(raw_out_->slot(slot), bytes, raw_out_->descriptor(), raw_context(RawOp::send, slot))) {
          free_sends.pop_back();  // back when its completion comes
        }
        ++sent;
      }
      const size_t n = ep.poll(entries, RawEndpoint::kBatch);
      if (n == 0) {
        watchdog.idle();
        continue;
      }
      watchdog.progressed();
      for (size_t k = 0; k < n; ++k) {
        const uint32_t slot = raw_index(entries[k].op_context);
        if (raw_op(entries[k].op_context) == RawOp::receive) {
          if (entries[k].len != bytes) throw std::runtime_error("raw baseline: echo of the wrong size");
          ++completed;
          if (posted < total) {
            ep.post_receive(raw_in_->slot(slot), bytes, raw_in_->descriptor(), raw_context(RawOp::receive, slot));
            ++posted;
          }
        } else {
          free_sends.push_back(slot);
        }
      }
      meter.update(completed);
    }
    server_.expect("done");
  }

  void raw_bandwidth(size_t bytes, uint64_t total, uint64_t warmup, Samples* samples) {
    ensure_source(bytes);
    ensure(raw_out_, 1, sizeof(ReadRequest), raw_->message_access(), 0);
    ensure(raw_in_, 1, sizeof(uint64_t), raw_->message_access(), 0);
    const ReadRequest request{source_->region().remote_address(), source_->region().key(), bytes};
    std::memcpy(raw_out_->slot(0), &request, sizeof request);
    server_.send(fmt::format("read {} {}", total, bytes));
    server_.expect("go");
    raw_round_trips(*raw_out_, sizeof request, *raw_in_, sizeof(uint64_t), total, warmup, samples);
    server_.expect("done");
  }

  // Share of a CPU the executor's threads use while they have no work (after the spin window),
  // measured by the server child over `milliseconds` from their CPU time in /proc.
  double executor_idle_busy(unsigned milliseconds = 100) {
    server_.send(fmt::format("idle {}", milliseconds));
    return std::stod(server_.expect("busy", std::chrono::seconds(120 + milliseconds / 1000)));
  }

  // --- Sidecore ----------------------------------------------------------------------------------

  Completion wait(TaskId id) {
    Watchdog watchdog;
    while (true) {
      if (auto done = client_->test(id)) return *done;
      watchdog.idle();
    }
  }

  static void check(const Completion& completion, size_t out_bytes) {
    if (completion.error != ErrorKind::none) {
      throw std::runtime_error(fmt::format("a task failed: {}", to_string(completion.error)));
    }
    if (completion.out_bytes != out_bytes) {
      throw std::runtime_error(fmt::format("a task returned {} bytes where {} were expected", completion.out_bytes,
                                           out_bytes));
    }
  }

  void sidecore_latency(size_t bytes, uint64_t total, uint64_t warmup, Samples* samples) {
    for (uint64_t i = 0; i < total; ++i) {
      const double elapsed = sidecore_round_trip(bytes);
      if (samples != nullptr && i >= warmup) samples->push_back(elapsed);
    }
    quiesce();
  }

  // One task of function `echo`, N bytes in and out, from submit() to its completion; in ns.
  double sidecore_round_trip(size_t bytes) {
    ensure_plain(task_in_, bytes, 0x5a);
    ensure_plain(task_out_, bytes, 0);
    const auto start = Clock::now();
    const Completion done = wait(client_->submit(function_, task_in_.data(), bytes, task_out_.data(), bytes));
    const auto end = Clock::now();
    check(done, bytes);
    return nanoseconds(start, end);
  }

  void sidecore_throughput(size_t bytes, uint64_t total, Samples* samples) {
    const unsigned window = options_.window;
    ensure_plain(task_in_, window * std::max<size_t>(bytes, 1), 0x5a);
    ensure_plain(task_out_, window * std::max<size_t>(bytes, 1), 0);
    // Each task in flight owns a slot of the input and output buffers until its callback runs.
    struct Flight {
      uint64_t completed = 0;
      uint64_t failed = 0;
      std::vector<uint32_t> free;
    };
    struct SlotRef {
      Flight* flight;
      uint32_t slot;
    };
    Flight flight;
    std::vector<SlotRef> refs(window);
    for (uint32_t slot = window; slot-- > 0;) {
      refs[slot] = {&flight, slot};
      flight.free.push_back(slot);
    }
    const CompletionCallback on_done = [](void* user, TaskId, const Completion& completion) {
      auto* ref = static_cast<SlotRef*>(user);
      ++ref->flight->completed;
      if (completion.error != ErrorKind::none) ++ref->flight->failed;
      ref->flight->free.push_back(ref->slot);
    };
    const size_t stride = std::max<size_t>(bytes, 1);
    uint64_t sent = 0;
    RateMeter meter(total, samples);
    Watchdog watchdog;
    while (flight.completed < total) {
      while (sent < total && !flight.free.empty()) {
        const uint32_t slot = flight.free.back();
        flight.free.pop_back();
        client_->submit(function_, task_in_.data() + slot * stride, bytes, task_out_.data() + slot * stride, bytes,
                        on_done, &refs[slot]);
        ++sent;
      }
      if (client_->progress() == 0) {
        watchdog.idle();
      } else {
        watchdog.progressed();
      }
      meter.update(flight.completed);
    }
    if (flight.failed > 0) throw std::runtime_error(fmt::format("{} tasks failed", flight.failed));
    quiesce();
  }

  void sidecore_bandwidth(size_t bytes, uint64_t total, uint64_t warmup, Samples* samples) {
    ensure_source(bytes);
    uint64_t answer = 0;
    for (uint64_t i = 0; i < total; ++i) {
      const auto start = Clock::now();
      const Completion done = wait(client_->submit(function_, source_->slot(0), bytes, &answer, sizeof answer));
      const auto end = Clock::now();
      check(done, sizeof answer);
      if (answer != bytes) throw std::runtime_error("the executor saw an input of the wrong size");
      if (samples != nullptr && i >= warmup) samples->push_back(nanoseconds(start, end));
    }
    quiesce();
  }

 private:
  // Lets the worker's spin window run out so it sleeps before the next raw round: two busy
  // pollers on one CPU would ruin both figures.
  void quiesce() const {
    std::this_thread::sleep_for(std::chrono::microseconds(options_.spin_us) + std::chrono::milliseconds(2));
  }

  void ensure(std::unique_ptr<RegisteredBuffer>& buffer, size_t slots, size_t bytes, uint64_t access, int fill) {
    if (buffer && buffer->fits(slots, bytes)) return;
    buffer = std::make_unique<RegisteredBuffer>(raw_->domain(), raw_->endpoint(), slots, bytes, access);
    std::memset(buffer->slot(0), fill, slots * ((std::max<size_t>(bytes, 1) + 63) & ~size_t{63}));
  }

  // The bandwidth input: registered for the raw baseline's remote reads, and handed as it is to
  // Sidecore (whose client registers it again per task, as it does for any large input).
  void ensure_source(size_t bytes) {
    if (source_ && source_->fits(1, bytes)) return;
    source_ = std::make_unique<RegisteredBuffer>(raw_->domain(), raw_->endpoint(), 1, bytes, FI_REMOTE_READ);
    std::memset(source_->slot(0), 0x5a, bytes);
  }

  static void ensure_plain(std::vector<std::byte>& buffer, size_t bytes, int fill) {
    if (buffer.size() < std::max<size_t>(bytes, 1)) buffer.assign(std::max<size_t>(bytes, 1), std::byte(fill));
  }

  const BenchOptions& options_;
  ServerProcess server_;
  std::unique_ptr<RawEndpoint> raw_;
  std::unique_ptr<Client> client_;
  std::string transport_;  // what the client uses: "rings" or "fabric"
  Function function_;
  std::unique_ptr<RegisteredBuffer> raw_out_, raw_in_, source_;
  std::vector<std::byte> task_in_, task_out_;
};

struct Measured {
  Samples sidecore, raw;
  // Each round's median of each side, for the paired cross-check in --verbose.
  Samples sidecore_rounds, raw_rounds;
};

// Runs one recorded round and keeps its median as well as its samples.
template <typename Round>
void record_round(Round& round, Samples& all, Samples& round_medians) {
  Samples samples;
  round(&samples);
  round_medians.push_back(median(samples));
  all.insert(all.end(), samples.begin(), samples.end());
}

// Rounds of the two sides, alternated and with the order swapped every round, after one unrecorded
// warm-up round of each (first touches of buffers, connection set-up inside the providers).
template <typename RawRound, typename SidecoreRound>
Measured interleave(Session& session, const BenchOptions& options, RawRound raw_round, SidecoreRound sidecore_round) {
  Measured measured;
  raw_round(nullptr);
  sidecore_round(nullptr);
  // The raw rounds hold the executor at idle priority, so a worker that does not sleep cannot
  // spoil them; but say so, since it burns a core for nothing.
  const double idle_busy = session.executor_idle_busy();
  if (idle_busy > 0.25) {
    std::fprintf(stderr,
                 "sidecore-bench: warning: the idle executor worker used %.0f%% of a CPU: it does not go to sleep "
                 "in %s poll mode with provider %s\n",
                 idle_busy * 100.0, std::string(to_string(options.poll)).c_str(), options.provider.c_str());
  } else if (options.verbose) {
    std::fprintf(stderr, "sidecore-bench: the idle executor worker used %.1f%% of a CPU\n", idle_busy * 100.0);
  }
  for (unsigned round = 0; round < options.rounds; ++round) {
    if (round % 2 == 0) {
      record_round(raw_round, measured.raw, measured.raw_rounds);
      record_round(sidecore_round, measured.sidecore, measured.sidecore_rounds);
    } else {
      record_round(sidecore_round, measured.sidecore, measured.sidecore_rounds);
      record_round(raw_round, measured.raw, measured.raw_rounds);
    }
  }
  return measured;
}

// --verbose: each side's spread, and the ratio taken round by round (a raw round and the Sidecore
// round next to it ran on the same placement of the VM's CPUs) as a cross-check of the ratio of
// medians. `times`: samples are durations, and the figure a rate (bandwidth), so the ratio inverts.
void describe(const BenchOptions& options, size_t bytes, const Measured& measured, const char* unit, double scale,
              bool times) {
  if (!options.verbose) return;
  const std::string what = fmt::format("{} {} {} B", to_string(options.kind), options.provider, bytes);
  auto line = [&](const char* side, const Samples& samples) {
    std::fprintf(stderr, "sidecore-bench: %s %s: %zu samples, p10 %.3f p50 %.3f p90 %.3f %s\n", what.c_str(), side,
                 samples.size(), quantile(samples, 0.1) * scale, quantile(samples, 0.5) * scale,
                 quantile(samples, 0.9) * scale, unit);
  };
  line("sidecore", measured.sidecore);
  line("raw     ", measured.raw);
  Samples paired;
  for (size_t i = 0; i < std::min(measured.sidecore_rounds.size(), measured.raw_rounds.size()); ++i) {
    paired.push_back(times ? measured.raw_rounds[i] / measured.sidecore_rounds[i]
                           : measured.sidecore_rounds[i] / measured.raw_rounds[i]);
  }
  if (!paired.empty()) {
    std::fprintf(stderr, "sidecore-bench: %s paired: median of %zu per-round ratios %.3f (min %.3f, max %.3f)\n",
                 what.c_str(), paired.size(), median(paired), *std::min_element(paired.begin(), paired.end()),
                 *std::max_element(paired.begin(), paired.end()));
  }
}

void print_line(const std::string& line) {
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

// wake: the two idle targets of issue 14 (an idle adaptive executor under 1% of a core; the first
// task after a long idle period within 50 µs), one JSON line; `bytes` is 64 (wake has no --bytes).
// No raw side: nothing to compare with.
void measure_wake(Session& session, const BenchOptions& options, size_t bytes) {
  const uint64_t iterations = options.iterations ? options.iterations : default_iterations(options.kind, bytes);
  // One unrecorded task first (first touches, the providers' connection set-up); it ends, as every
  // sidecore_latency() call does, with the spin window run out, so the worker is asleep.
  session.sidecore_latency(bytes, 1, 1, nullptr);
  Samples first;
  for (unsigned round = 0; round < options.rounds; ++round) {
    // The worker has slept since the last quiesce; the caller sleeps too, as an application
    // between phases would, and then times the task that has to wake the worker.
    std::this_thread::sleep_for(std::chrono::milliseconds(options.idle_ms));
    first.push_back(session.sidecore_round_trip(bytes));
    if (options.verbose) {
      std::fprintf(stderr, "sidecore-bench: wake round %u: first task %.3f us\n", round + 1, first.back() / 1000.0);
    }
  }
  // The warm figure, for comparison: back-to-back round trips, the first of them (which wakes the
  // worker again) not recorded. Ends with the spin window run out.
  Samples warm;
  session.sidecore_latency(bytes, iterations + 1, 1, &warm);
  // The worker is past its spin window: what it costs while nothing comes.
  const double idle_busy = session.executor_idle_busy(options.idle_window_s * 1000);
  const double first_min = *std::min_element(first.begin(), first.end());
  const double first_max = *std::max_element(first.begin(), first.end());
  if (options.verbose) {
    std::fprintf(stderr, "sidecore-bench: wake: first task p10 %.3f p50 %.3f p90 %.3f us; warm p50 %.3f us\n",
                 quantile(first, 0.1) / 1000.0, median(first) / 1000.0, quantile(first, 0.9) / 1000.0,
                 median(warm) / 1000.0);
  }
  print_line(fmt::format(
      "{{\"bench\":\"wake\",\"provider\":{},\"transport\":\"{}\",\"bytes\":{},\"idle_ms\":{},\"rounds\":{},"
      "\"first_task_us\":{},\"first_task_us_min\":{},\"first_task_us_max\":{},\"warm_rtt_us\":{},"
      "\"idle_cpu_percent\":{},\"idle_window_s\":{}}}",
      json_string(options.provider), session.transport(), bytes, options.idle_ms, options.rounds,
      json_number(median(first) / 1000.0, 3), json_number(first_min / 1000.0, 3), json_number(first_max / 1000.0, 3),
      json_number(median(warm) / 1000.0, 3), json_number(idle_busy * 100.0, 3), options.idle_window_s));
}

void measure(Session& session, const BenchOptions& options, size_t bytes) {
  const uint64_t iterations = options.iterations ? options.iterations : default_iterations(options.kind, bytes);
  const uint64_t warmup = std::max<uint64_t>(1, iterations / 10);
  const std::string head =
      fmt::format("{{\"bench\":\"{}\",\"provider\":{},\"transport\":\"{}\",\"bytes\":{}", to_string(options.kind),
                  json_string(options.provider), session.transport(), bytes);
  switch (options.kind) {
    case BenchKind::latency: {
      const auto measured = interleave(
          session, options, [&](Samples* s) { session.raw_latency(bytes, warmup + iterations, warmup, s); },
          [&](Samples* s) { session.sidecore_latency(bytes, warmup + iterations, warmup, s); });
      describe(options, bytes, measured, "us", 1e-3, false);
      const double sidecore = median(measured.sidecore) / 1000.0, raw = median(measured.raw) / 1000.0;
      print_line(head + fmt::format(",\"sidecore_rtt_us\":{},\"raw_rtt_us\":{},\"ratio\":{}}}", json_number(sidecore, 3),
                                    json_number(raw, 3), json_number(sidecore / raw, 3)));
      break;
    }
    case BenchKind::throughput: {
      const auto measured = interleave(
          session, options, [&](Samples* s) { session.raw_throughput(bytes, iterations, s); },
          [&](Samples* s) { session.sidecore_throughput(bytes, iterations, s); });
      describe(options, bytes, measured, "Mops/s", 1e-6, false);
      const double sidecore = median(measured.sidecore), raw = median(measured.raw);
      print_line(head + fmt::format(",\"tasks_per_s\":{},\"raw_msgs_per_s\":{},\"ratio\":{}}}", json_number(sidecore, 0),
                                    json_number(raw, 0), json_number(sidecore / raw, 3)));
      break;
    }
    case BenchKind::bandwidth: {
      const auto measured = interleave(
          session, options, [&](Samples* s) { session.raw_bandwidth(bytes, warmup + iterations, warmup, s); },
          [&](Samples* s) { session.sidecore_bandwidth(bytes, warmup + iterations, warmup, s); });
      describe(options, bytes, measured, "ms", 1e-6, true);
      // Bytes per nanosecond are GB/s (10^9 bytes per second).
      const double sidecore = static_cast<double>(bytes) / median(measured.sidecore);
      const double raw = static_cast<double>(bytes) / median(measured.raw);
      print_line(head + fmt::format(",\"sidecore_gbps\":{},\"raw_gbps\":{},\"ratio\":{}}}", json_number(sidecore, 3),
                                    json_number(raw, 3), json_number(sidecore / raw, 3)));
      break;
    }
    case BenchKind::wake:
      measure_wake(session, options, bytes);
      break;
  }
}

const char* function_for(BenchKind kind) {
  // Latency and throughput echo the input, the same exchange as the raw baseline; bandwidth moves
  // the input and answers with its size.
  return kind == BenchKind::bandwidth ? "consume" : "echo";
}

}  // namespace

int run_bench(const BenchOptions& options, const char* program) {
  try {
    use_provider_on_loopback(options.provider);

    const CoreSet allowed = CoreSet::allowed();
    for (int cpu : {options.client_cpu, options.server_cpu}) {
      if (!allowed.contains(cpu)) {
        throw std::runtime_error(fmt::format("CPU {} is not available to this process (allowed: {})", cpu,
                                             allowed.to_string()));
      }
    }
    if (options.client_cpu == options.server_cpu) {
      std::fprintf(stderr, "sidecore-bench: warning: client and server share CPU %d; busy polling on one CPU "
                   "distorts every figure\n", options.client_cpu);
    }
    if (options.kind == BenchKind::throughput) {
      for (size_t bytes : options.bytes) {
        if (options.window * std::max<size_t>(bytes, 1) > kMaxBytes) {
          throw std::runtime_error(fmt::format("--window {} x --bytes {} needs more than 1 GiB of buffers",
                                               options.window, bytes));
        }
      }
    }
    const std::string library = find_library(options.library, program);
    if (const double others = other_runnable_threads(); others >= 0.5) {
      std::fprintf(stderr, "sidecore-bench: warning: other programs are using the CPUs (%.1f threads runnable on "
                   "average besides this one): the figures will be noisy\n", others);
    }

    // A server that dies shows up as an error on its control pipe, not as a silent SIGPIPE.
    std::signal(SIGPIPE, SIG_IGN);
    // Pinned before the child is forked and before libfabric starts any thread, so all of this
    // process stays on its CPU; the child re-pins itself to the server CPU.
    pin_this_thread(options.client_cpu);
    Session session(options, library, function_for(options.kind));
    for (size_t bytes : options.bytes) measure(session, options, bytes);
    return 0;
  } catch (const fabric::FabricError& e) {
    std::fprintf(stderr, "sidecore-bench: error: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sidecore-bench: error: %s\n", e.what());
  }
  return 1;
}

}  // namespace sidecore::bench
