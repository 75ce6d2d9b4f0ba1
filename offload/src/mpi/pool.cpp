#include "mpi/pool.hpp"

#include <dlfcn.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <thread>
#include <tuple>
#include <utility>

#include "card.hpp"
#include "card_reference.hpp"
#include "fault_injection.hpp"
#include "log.hpp"
#include "mpi/error_codes.hpp"
#include "mpi/progress_engine.hpp"

namespace sidecore::mpi {
namespace {

// This rank's executor card (SIDECORE_EXECUTOR; a reference from the Slurm plugin waits for the
// executor), or an empty string.
std::string own_card() {
  const char* own = std::getenv("SIDECORE_EXECUTOR");
  if (own == nullptr || *own == '\0') return {};
  try {
    return resolve_card(own);
  } catch (const CardError& e) {
    // This rank brings no executor; the others' cards (and the fallback) still apply.
    logger("sidecore.mpi")->warn("no executor on this node: {}", e.what());
    return {};
  }
}

// Gathers everyone's `text` at every rank of `comm`, in rank order.
std::vector<std::string> allgather_texts(MPI_Comm comm, const std::string& text) {
  int size = 0;
  MPI_Comm_size(comm, &size);
  int length = static_cast<int>(text.size());
  std::vector<int> lengths(static_cast<size_t>(size)), offsets(static_cast<size_t>(size));
  MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, comm);
  int total = 0;
  for (int r = 0; r < size; ++r) {
    offsets[static_cast<size_t>(r)] = total;
    total += lengths[static_cast<size_t>(r)];
  }
  std::string all(static_cast<size_t>(total), '\0');
  MPI_Allgatherv(text.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, comm);
  std::vector<std::string> texts;
  for (int r = 0; r < size; ++r) {
    texts.push_back(all.substr(static_cast<size_t>(offsets[static_cast<size_t>(r)]),
                               static_cast<size_t>(lengths[static_cast<size_t>(r)])));
  }
  return texts;
}

// The distinct lines of `bundle` (cards, one per line), appended to `cards` unless there already.
void add_lines(const std::string& bundle, std::vector<std::string>& cards) {
  size_t from = 0;
  while (from < bundle.size()) {
    size_t to = bundle.find('\n', from);
    if (to == std::string::npos) to = bundle.size();
    std::string line = bundle.substr(from, to - from);
    if (!line.empty() && std::find(cards.begin(), cards.end(), line) == cards.end()) cards.push_back(std::move(line));
    from = to + 1;
  }
}

// The executor cards a rank may use: its own node's, and those of the nearest `remote_nodes`
// other nodes that have one, nearest first in the order of the nodes' lowest ranks in `comm`
// (the next node, then the one after, wrapping). One card per node travels, not one per rank: the
// ranks of a node (MPI_COMM_TYPE_SHARED) hand their cards to their leader, which keeps the
// distinct ones; the leaders exchange those (N·C bytes each); each leader hands its node's ranks
// only the nodes they may use, so a rank receives and parses at most (remote_nodes + 1) nodes'
// cards, whatever the size of the job.
struct NodeCards {
  std::vector<std::vector<std::string>> nodes;  // nearest first: this rank's node is the first
};

NodeCards gather_node_cards(MPI_Comm comm, size_t remote_nodes) {
  std::string card = own_card();
  if (card.find('\n') != std::string::npos) {
    logger("sidecore.mpi")->warn("ignoring this rank's executor card: it spans several lines");
    card.clear();
  }
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm node = MPI_COMM_NULL, leaders = MPI_COMM_NULL;
  MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
  int node_rank = 0;
  MPI_Comm_rank(node, &node_rank);
  MPI_Comm_split(comm, node_rank == 0 ? 0 : MPI_UNDEFINED, rank, &leaders);

  // The node's distinct cards, at its leader (ranks of one node normally carry the same one).
  std::vector<std::string> mine;
  for (const std::string& text : allgather_texts(node, card)) add_lines(text, mine);
  std::string bundle;
  if (node_rank == 0) {
    std::string own_bundle;
    for (const auto& text : mine) own_bundle += text + '\n';
    int leader_rank = 0;
    MPI_Comm_rank(leaders, &leader_rank);
    const std::vector<std::string> all = allgather_texts(leaders, own_bundle);
    // What the node receives: its own node's cards, then those of the nearest nodes that have
    // any, each set after its length.
    const size_t count = all.size(), own = static_cast<size_t>(leader_rank);
    bundle = std::to_string(all[own].size()) + '\n' + all[own];
    size_t sent = 0;
    for (size_t distance = 1; distance < count && sent < remote_nodes; ++distance) {
      const std::string& text = all[(own + distance) % count];
      if (text.empty()) continue;  // a node without an executor
      bundle += std::to_string(text.size()) + '\n' + text;
      ++sent;
    }
    MPI_Comm_free(&leaders);
  }
  unsigned long long length = bundle.size();
  MPI_Bcast(&length, 1, MPI_UNSIGNED_LONG_LONG, 0, node);
  bundle.resize(static_cast<size_t>(length));
  MPI_Bcast(bundle.data(), static_cast<int>(length), MPI_CHAR, 0, node);
  MPI_Comm_free(&node);

  NodeCards result;
  size_t at = 0;
  while (at < bundle.size()) {
    const size_t line_end = bundle.find('\n', at);
    const size_t bytes = std::stoul(bundle.substr(at, line_end - at));
    std::vector<std::string>& cards = result.nodes.emplace_back();
    add_lines(bundle.substr(line_end + 1, bytes), cards);
    at = line_end + 1 + bytes;
  }
  return result;
}

// Fills a request's status and has the engine complete it.
void finish(OffloadRequest* state, const Completion& completion) noexcept {
  state->completion = completion;
  state->error = error_code(completion.error);
  ProgressEngine::instance().complete(state);
}

void unlink(OffloadRequest*& list, OffloadRequest* state) noexcept {
  if (state->prev != nullptr) state->prev->next = state->next;
  if (state->next != nullptr) state->next->prev = state->prev;
  if (list == state) list = state->next;
  state->prev = state->next = nullptr;
}

void link(OffloadRequest*& list, OffloadRequest* state) noexcept {
  state->prev = nullptr;
  state->next = list;
  if (list != nullptr) list->prev = state;
  list = state;
}

// Runs a request's task in this process (the inline fallback).
Completion run_here(const OffloadRequest& state) noexcept {
  size_t out_bytes = 0;
  const int value = state.local(state.in_bytes ? state.in : nullptr, state.in_bytes,
                                state.out_capacity ? state.out : nullptr, state.out_capacity, &out_bytes);
  const bool ok = value == 0 && out_bytes <= state.out_capacity;
  return Completion{ok ? ErrorKind::none : ErrorKind::function, value, ok ? out_bytes : 0, false};
}

// A request's task is done with its connection (whose lock is held): off the pending list, then
// completed. `tasks` counts it out first, since the request may be reused once it completes.
void finish_pending(Connection& connection, OffloadRequest* state, const Completion& completion) noexcept {
  unlink(connection.pending, state);
  state->connection.store(nullptr, std::memory_order_relaxed);
  connection.tasks.fetch_sub(1, std::memory_order_relaxed);
  finish(state, completion);
}

void log_callback_failure(const char* callback, const char* what) noexcept {
  try {
    logger("sidecore.mpi")->error("generalized request {} callback failed: {}; it returns EXECUTOR_LOST to MPI",
                                  callback, what);
  } catch (...) {
  }
}

// MPI calls the generalized-request callbacks from inside its own C code: whatever `body` throws
// becomes the EXECUTOR_LOST code, which MPI hands to the caller of MPI_Wait, MPI_Test or MPI_Cancel.
template <class Body>
int guarded_callback(const char* callback, fault::Point point, Body&& body) noexcept {
  try {
    fault::inject(point);
    return body();
  } catch (const std::exception& e) {
    log_callback_failure(callback, e.what());
  } catch (...) {
    log_callback_failure(callback, "unknown exception");
  }
  return error_code(ErrorKind::executor_lost);
}

void fill_status(MPI_Status* status, MPI_Count bytes, bool cancelled, int tag, int error) noexcept {
  MPI_Status_set_elements_x(status, MPI_BYTE, bytes);
  MPI_Status_set_cancelled(status, cancelled ? 1 : 0);
  status->MPI_SOURCE = MPI_UNDEFINED;
  status->MPI_TAG = tag;
  status->MPI_ERROR = error;
}

int query_request(void* extra, MPI_Status* status) noexcept {
  auto* state = static_cast<OffloadRequest*>(extra);
  (void)state->done.load(std::memory_order_acquire);  // pairs with complete(): see OffloadRequest::done
  const int rc = guarded_callback("query", fault::Point::grequest_query, [&] {
    fill_status(status, static_cast<MPI_Count>(state->completion.out_bytes), state->completion.cancelled,
                state->completion.function_return, state->error);
    return state->error;
  });
  if (rc != state->error) fill_status(status, 0, false, 0, rc);  // the callback failed
  // Open MPI may run free_request on another thread (the one that called MPI_Grequest_complete
  // drops the last reference), ordered after this one by its own atomics: release the reads above
  // to free_request's acquire, where TSan can see it, before the state is recycled.
  state->done.store(true, std::memory_order_release);
  return rc;
}

int free_request(void* extra) noexcept {
  auto* state = static_cast<OffloadRequest*>(extra);
  (void)state->done.load(std::memory_order_acquire);  // a request freed unqueried: see OffloadRequest::done
  const int rc = guarded_callback("free", fault::Point::grequest_free, [] { return MPI_SUCCESS; });
  RequestCache::instance().give_back(state);  // recycled whatever happens
  return rc;
}

int cancel_request(void* extra, int complete) noexcept {
  return guarded_callback("cancel", fault::Point::grequest_cancel, [&] {
    auto* state = static_cast<OffloadRequest*>(extra);
    if (complete) return MPI_SUCCESS;
    // The request is not complete, so it is not recycled either: its connection, when it has
    // one, stays valid while this (the application's) thread waits for its lock.
    Connection* connection = state->connection.load(std::memory_order_relaxed);
    if (connection == nullptr) return MPI_SUCCESS;
    ProgressEngine& engine = ProgressEngine::instance();
    {
      // Under MPICH the completion waits for the next poll, in the MPI_Wait or MPI_Test that
      // follows the MPI_Cancel (ProgressEngine::complete): MPICH does not let a request complete
      // inside its own cancel callback (an assertion in MPI_Grequest_complete). Waiting for this
      // lock inside MPICH's critical section is safe because under MPICH nobody calls MPI while
      // holding it.
      std::lock_guard lock(connection->mutex);
      if (state->connection.load(std::memory_order_relaxed) != connection) return MPI_SUCCESS;  // completed meanwhile
      // Succeeds only for a task still waiting in the client; it then completes (cancelled).
      connection->use([&](Client& client) { client.cancel(state->task); });
    }
    if (!kMpichGrequests) engine.progress_on_application_thread(false);  // the application's thread: now
    return MPI_SUCCESS;
  });
}

#ifdef MPICH_VERSION
// MPICH (and the MPIs built on it) calls the poll or the wait function of its extended
// generalized requests from every MPI_Test* and MPI_Wait* on the request, on the calling
// (application's) thread, until the request is complete: progress and completion at polling
// latency, at every thread level, without the opal_progress hook Open MPI offers. (Not from
// MPI_Request_get_status: docs/mpi.md.) Both return MPI_SUCCESS always: a failed task reports its
// error through query_request.
int poll_request(void* /*extra*/, MPI_Status* /*status*/) noexcept {
  ProgressEngine::instance().progress_on_application_thread();
  return MPI_SUCCESS;
}

int wait_requests(int count, void** states, double /*timeout*/, MPI_Status* /*status*/) noexcept {
  ProgressEngine& engine = ProgressEngine::instance();
  const auto all_done = [&] {
    for (int i = 0; i < count; ++i) {
      if (!static_cast<OffloadRequest*>(states[i])->done.load(std::memory_order_acquire)) return false;
    }
    return true;
  };
  // Like MPI_Wait on a message, it polls; it yields the core between empty polls, as ranks often
  // share cores with the executor's workers.
  while (!all_done()) {
    if (engine.progress_on_application_thread() == 0) std::this_thread::yield();
  }
  engine.progress_on_application_thread(false);  // those the progress thread queued meanwhile
  return MPI_SUCCESS;
}

int start_request(OffloadRequest* state) {
  return MPIX_Grequest_start(query_request, free_request, cancel_request, poll_request, wait_requests, state,
                             &state->request);
}
#else
int start_request(OffloadRequest* state) {
  return MPI_Grequest_start(query_request, free_request, cancel_request, state, &state->request);
}
#endif

}  // namespace

Pool::Pool(MPI_Comm comm, const PoolSettings& settings) : user_comm_(comm), settings_(settings) {
  if (MPI_Comm_dup(comm, &comm_) != MPI_SUCCESS) throw PoolError(ErrorKind::bad_arg, "MPI_Comm_dup failed");
  const std::string host = local_host_name();
  const char* token_env = std::getenv("SIDECORE_TOKEN");
  token_ = token_env ? token_env : "";

  // MPI itself is the discovery service: every rank learns every node's executor.
  const auto exchange_start = std::chrono::steady_clock::now();
  const size_t remote_nodes = settings_.scope == Scope::job ? settings_.remote_executors : 0;
  const NodeCards exchanged = gather_node_cards(comm_, remote_nodes);
  logger("sidecore.mpi")
      ->debug("pool: cards of {} node(s) exchanged in {:.1f} ms", exchanged.nodes.size(),
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - exchange_start).count());
  struct Known {
    ExecutorCard card;
    std::string text;
    size_t distance;  // its node among those exchanged: 0 for this rank's, then nearest first
  };
  std::vector<Known> known;
  const size_t nodes = exchanged.nodes.size();
  for (size_t n = 0; n < nodes; ++n) {
    for (const auto& text : exchanged.nodes[n]) {
      try {
        ExecutorCard card = parse_card(text);
        const bool seen = std::any_of(known.begin(), known.end(),
                                      [&](const Known& k) { return k.card.executor_id == card.executor_id; });
        if (!seen) known.push_back({std::move(card), text, n});
      } catch (const CardError& e) {
        logger("sidecore.mpi")->warn("ignoring a malformed executor card: {}", e.what());
      }
    }
  }
  // Nearest first: this node's, then the next nodes of the job's order (so the ranks of different
  // nodes spill to different executors), the executor id breaking ties.
  std::sort(known.begin(), known.end(), [](const Known& a, const Known& b) {
    return std::tie(a.distance, a.card.executor_id) < std::tie(b.distance, b.card.executor_id);
  });
  options_.task_timeout = settings_.timeout;
  options_.transport = settings_.transport;
  options_.retry_lost = settings_.retry_lost;
  int refused = 0;  // an executor refused this rank's token
  std::string refusal;
  // This rank's own executor through its reference, when it has one (Slurm, sidecore-run): the
  // client then finds a replaced worker's new card in its file.
  const char* own = std::getenv("SIDECORE_EXECUTOR");
  const std::string own_reference = own != nullptr && *own == '@' ? own : "";
  const std::optional<std::string> own_current = current_card(own_reference);
  // Executors on this node are connected now; those on other nodes (scope job) when the node's
  // own are busy, up to remote_executors of them (pick_connection).
  std::vector<const Known*> remote;
  uint16_t relay_port = 0;
  for (const Known& k : known) {
    const bool local = k.card.host == host;
    if (!local) {
      if (settings_.scope == Scope::job && remote.size() < settings_.remote_executors) remote.push_back(&k);
      continue;
    }
    const bool mine = own_current && *own_current == k.text;
    try {
      auto connection = std::make_unique<Connection>();
      connection->client = std::make_unique<Client>(Client::connect(mine ? own_reference : k.text, token_, options_));
      connection->local = true;
      connection->host = k.card.host;
      connection->workers.store(connection->client->workers(), std::memory_order_relaxed);
      logger("sidecore.mpi")
          ->debug("pool: executor {} on {} (this node), {} worker(s) over {}", k.card.executor_id, k.card.host,
                  connection->client->workers(), connection->client->provider());
      local_workers_ += static_cast<int>(connection->client->workers());
      owned_.push_back(std::move(connection));
      // It follows other nodes' executors for this rank: one liveness connection in all.
      if (relay_port == 0 && k.card.watch > 0) relay_port = static_cast<uint16_t>(k.card.watch);
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::auth) {
        refused = 1;
        refusal = e.what();
      }
      // Otherwise degrade, never fail: the pool uses the executors it can reach.
      logger("sidecore.mpi")->warn("cannot use executor {} on {}: {}", k.card.executor_id, k.card.host, e.what());
    } catch (const std::exception& e) {
      // Never leave this rank out of the collective below.
      logger("sidecore.mpi")->warn("cannot use executor {} on {}: {}", k.card.executor_id, k.card.host, e.what());
    }
  }
  total_workers_ = local_workers_;
  options_.liveness_relay = relay_port;  // for the client of other nodes' executors, made later
  if (!remote.empty()) {
    // One client, one endpoint, for every executor on another node, made when a task first
    // spills there (Pool::submit); each executor joins it when a task finds no idle worker.
    auto connection = std::make_unique<Connection>();
    connection->host = "other nodes";
    for (const Known* k : remote) {
      connection->standby.push_back(k->text);
      total_workers_ += static_cast<int>(k->card.worker_addresses.size());
    }
    connection->may_grow.store(true, std::memory_order_relaxed);
    owned_.push_back(std::move(connection));
  }
  if (std::optional<std::string> job = LeaseWatch::job_from_environment()) {
    // The step's lease (srun --offload-lease), whatever the scope: the user asked for those cores.
    // Its executors join as the lease starts (add_lease_executors); until then the connection has
    // neither a client nor standby executors, so nothing picks it.
    auto connection = std::make_unique<Connection>();
    connection->host = "lease job " + *job;
    lease_ = connection.get();
    lease_job_ = std::move(*job);
    owned_.push_back(std::move(connection));
  }
  // A refused token is a broken job setup, not a missing executor: every rank fails alike.
  MPI_Allreduce(MPI_IN_PLACE, &refused, 1, MPI_INT, MPI_MAX, comm_);
  if (refused) {
    lease_ = nullptr;
    owned_.clear();
    MPI_Comm_free(&comm_);
    throw PoolError(ErrorKind::auth, refusal.empty() ? "an executor refused another rank's token" : refusal);
  }
  for (size_t i = 0; i < owned_.size(); ++i) {
    owned_[i]->index = i;
    connections_.push_back(owned_[i].get());
  }
}

Pool::~Pool() noexcept {
  stop_lease_watch();
  owned_.clear();  // only when the engine never took them
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void Pool::start_lease_watch() {
  if (lease_ == nullptr) return;
  lease_watch_ = std::make_unique<LeaseWatch>(
      lease_job_, [this](const std::vector<std::string>& cards) { add_lease_executors(cards); });
}

void Pool::stop_lease_watch() noexcept { lease_watch_.reset(); }

int Pool::total_workers() noexcept {
  const int total = total_workers_.load(std::memory_order_relaxed);
  if (lease_ == nullptr) return total;
  {
    std::unique_lock lock(lease_->mutex, std::try_to_lock);  // the progress engine refreshes it too
    if (lock.owns_lock()) lease_->use([](Client& client) { client.progress(); });
  }
  // A lease connection whose client failed has none of them left.
  const int gone = lease_->failed.load(std::memory_order_relaxed)
                       ? lease_workers_.load(std::memory_order_relaxed)
                       : static_cast<int>(lease_->workers_gone.load(std::memory_order_relaxed));
  return std::max(0, total - gone);
}

void Pool::report_lease() noexcept {
  const char* wanted = std::getenv("SIDECORE_LEASE_STATS");
  if (lease_ == nullptr || wanted == nullptr || std::strcmp(wanted, "1") != 0) return;
  size_t served = 0, ran_inline = 0;
  {
    std::lock_guard lock(lease_->mutex);
    served = lease_->served;
    ran_inline = lease_->ran_inline;
  }
  int rank = 0;
  MPI_Comm_rank(comm_, &rank);
  std::fprintf(stderr,
               "sidecore: rank %d: lease job %s served %zu task(s) of this pool; %zu more ran in the rank after its "
               "executors drained\n",
               rank, lease_job_.c_str(), served, ran_inline);
}

void Pool::add_lease_executors(const std::vector<std::string>& cards) noexcept {
  try {
    int workers = 0;
    for (const std::string& text : cards) workers += static_cast<int>(parse_card(text).worker_addresses.size());
    Connection& connection = *lease_;
    {
      std::lock_guard lock(connection.mutex);
      if (connection.failed.load(std::memory_order_relaxed)) return;
      if (connection.client) {
        if (!connection.use([&](Client& client) { client.add_standby(cards); })) return;
      } else {
        // The pool's first task that finds the other executors busy makes the client (submit).
        connection.standby.insert(connection.standby.end(), cards.begin(), cards.end());
        connection.may_grow.store(true, std::memory_order_relaxed);
      }
    }
    lease_workers_.fetch_add(workers, std::memory_order_relaxed);
    total_workers_.fetch_add(workers, std::memory_order_relaxed);
    logger("sidecore.mpi")
        ->info("lease job {}: {} executor(s) with {} worker(s) joined the pool ({} worker(s) in all)", lease_job_,
               cards.size(), workers, total_workers_.load(std::memory_order_relaxed));
  } catch (const std::exception& e) {
    logger("sidecore.mpi")->warn("lease job {}: cannot use its executors: {}", lease_job_, e.what());
  } catch (...) {
  }
}

namespace {

// The function in this process, for the inline fallback. Throws PoolError.
void load_local(OffloadFunction& function) {
  function.local_library = dlopen(function.library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (function.local_library == nullptr) {
    const char* why = dlerror();
    throw PoolError(ErrorKind::not_found, fmt::format("cannot load '{}': {}", function.library, why ? why : "?"));
  }
  function.local = reinterpret_cast<sidecore_function_t>(dlsym(function.local_library, function.symbol.c_str()));
  if (function.local == nullptr) {
    throw PoolError(ErrorKind::not_found,
                    fmt::format("library '{}' has no symbol '{}'", function.library, function.symbol));
  }
}

}  // namespace

std::unique_ptr<OffloadFunction> Pool::lookup(const std::string& library, const std::string& symbol) {
  auto function = std::make_unique<OffloadFunction>();
  function->pool = this;
  function->library = library;
  function->symbol = symbol;
  if (connections_.empty()) {
    if (settings_.fallback == Fallback::error) return function;  // submit reports NO_EXECUTOR
    load_local(*function);
    return function;
  }
  if (lease_ != nullptr && settings_.fallback == Fallback::inline_call) {
    // A lease's executors may not have started yet, and they drain when Slurm takes the cores
    // back: the tasks that find none run here. Where the library is only on the executors' side,
    // they fail as they would without a lease.
    try {
      load_local(*function);
    } catch (const PoolError& e) {
      logger("sidecore.mpi")->debug("no inline fallback for '{}': {}", symbol, e.what());
    }
  }
  function->remote.resize(connections_.size());  // a failed connection keeps an invalid Function: never picked
  for (size_t i = 0; i < connections_.size(); ++i) {
    Connection& connection = *connections_[i];
    std::lock_guard lock(connection.mutex);
    // Not connected yet (executors on other nodes): looked up there at the function's first task.
    if (connection.failed.load(std::memory_order_relaxed) || !connection.client) continue;
    try {
      function->remote[i] = connection.client->lookup(library, symbol);
    } catch (const Error& e) {
      throw PoolError(e.kind(), e.what());  // the executor answered: it is fine
    } catch (const std::exception& e) {
      connection.fail(e.what());
      throw;
    }
  }
  return function;
}

std::optional<size_t> Pool::pick_connection() const noexcept {
  // The first node-local connection with fewer than 2 tasks per worker; otherwise the least
  // loaded per worker, unless none has an idle worker and the connection to other nodes has
  // standby executors left: one of those joins for the task (Client::add_standby). Lost executors
  // are skipped while any other is left (their tasks fail with EXECUTOR_LOST); a crashed worker
  // does not make its executor lost (its supervisor replaces it, and the client greets the new
  // one from its progress). Failed connections are never picked.
  constexpr double kBusy = 2.0;
  if (connections_.size() == 1 && connections_[0]->local) {  // the common case: one executor on the node
    if (connections_[0]->failed.load(std::memory_order_relaxed)) return std::nullopt;
    return 0;
  }
  std::optional<size_t> best, usable, growable;
  double best_load = 1e300;
  for (size_t i = 0; i < connections_.size(); ++i) {
    const Connection& connection = *connections_[i];
    if (connection.failed.load(std::memory_order_relaxed)) continue;
    if (connection.may_grow.load(std::memory_order_relaxed)) growable = i;
    const size_t workers = connection.workers.load(std::memory_order_relaxed);
    if (workers == 0) continue;  // not connected yet
    if (!usable) usable = i;
    if (connection.executor_lost.load(std::memory_order_relaxed)) continue;
    const double load =
        static_cast<double>(connection.tasks.load(std::memory_order_relaxed)) / static_cast<double>(workers);
    if (connection.local && load < kBusy) return i;
    if (load < best_load) {
      best_load = load;
      best = i;
    }
  }
  if (growable && (!best || best_load >= 1.0)) return growable;
  return best ? best : usable;
}

namespace {

// A recycled request for a submit on `connection` (whose lock is held), or a new one.
OffloadRequest* take_request(Connection& connection) {
  if (connection.spare == nullptr) connection.spare = RequestCache::instance().take_all();
  OffloadRequest* state = connection.spare;
  if (state == nullptr) return new OffloadRequest();  // recycled, never freed: see RequestCache
  connection.spare = state->next;
  state->next = nullptr;
  state->completion = Completion{};
  state->error = MPI_SUCCESS;
  state->task = kNoTask;
  state->done.store(false, std::memory_order_relaxed);
  return state;
}

// The inline fallback (no executor at all): runs the function here and completes at once.
int run_inline(OffloadFunction& function, std::atomic<size_t>& pool_in_flight, const void* in, size_t in_bytes,
               void* out, size_t out_capacity, MPI_Request* request) {
  ProgressEngine& engine = ProgressEngine::instance();
  auto state = std::make_unique<OffloadRequest>();
  state->pool_in_flight = &pool_in_flight;
  const int rc = start_request(state.get());
  if (rc != MPI_SUCCESS) return rc;
  *request = state->request;
  OffloadRequest* raw = state.release();  // owned by the request now; free_request recycles it
  engine.started(pool_in_flight);
  raw->local = function.local;
  raw->in = in;
  raw->in_bytes = in_bytes;
  raw->out = out;
  raw->out_capacity = out_capacity;
  finish(raw, run_here(*raw));
  engine.progress_on_application_thread(false);  // this is the application's thread: complete now
  return MPI_SUCCESS;
}

}  // namespace

int Pool::submit(OffloadFunction& function, const void* in, size_t in_bytes, void* out, size_t out_capacity,
                 MPI_Request* request) {
  ProgressEngine& engine = ProgressEngine::instance();
  if (connections_.empty()) {
    if (function.local == nullptr) return error_code(ErrorKind::no_executor);
    return run_inline(function, in_flight_, in, in_bytes, out, out_capacity, request);
  }
  const std::optional<size_t> picked = pick_connection();
  if (!picked) {
    // Every connection's client has failed, or only a lease is left that has not started yet.
    if (function.local != nullptr) return run_inline(function, in_flight_, in, in_bytes, out, out_capacity, request);
    const bool lease_pending = lease_ != nullptr && !lease_->failed.load(std::memory_order_relaxed);
    return error_code(lease_pending ? ErrorKind::no_executor : ErrorKind::executor_lost);
  }
  const size_t index = *picked;
  Connection& connection = *connections_[index];
  OffloadRequest* state = nullptr;
  {
    // A submit takes only this connection's lock, twice: around the checks and again around the
    // hand-over, never across the MPI call between them (start_request below). Everything that
    // can fail happens before the request starts: a started request always completes.
    std::lock_guard lock(connection.mutex);
    if (connection.failed.load(std::memory_order_relaxed)) return error_code(ErrorKind::executor_lost);
    if (!connection.client) {
      // The first task to spill to other nodes: their client, with every executor on standby.
      try {
        connection.client = std::make_unique<Client>(Client::standby(connection.standby, token_, options_));
        std::vector<std::string>().swap(connection.standby);
      } catch (const std::exception& e) {
        connection.fail(e.what());
        return error_code(ErrorKind::executor_lost);
      }
    }
    if (!function.remote[index].valid()) {
      // The first task of this function on the connection to other nodes.
      try {
        function.remote[index] = connection.client->lookup(function.library, function.symbol);
      } catch (const Error& e) {
        logger("sidecore.mpi")->warn("'{}' from '{}' on other nodes: {}", function.symbol, function.library, e.what());
        return error_code(e.kind());
      } catch (const std::exception& e) {
        connection.fail(e.what());
        return error_code(ErrorKind::executor_lost);
      }
    }
    state = take_request(connection);
  }
  state->pool_in_flight = &in_flight_;
  state->local = function.local;
  state->in = in;
  state->in_bytes = in_bytes;
  state->out = out;
  state->out_capacity = out_capacity;
  // Outside the connection's lock: MPICH's MPIX_Grequest_start enters MPICH's global critical
  // section, which a thread inside MPI_Cancel holds while its cancel callback (cancel_request)
  // waits for this lock.
  const int rc = start_request(state);
  if (rc != MPI_SUCCESS) {
    std::lock_guard lock(connection.mutex);
    state->next = connection.spare;
    connection.spare = state;
    return rc;
  }
  *request = state->request;
  engine.started(in_flight_);
  bool failed_meanwhile = false;
  {
    std::lock_guard lock(connection.mutex);
    failed_meanwhile = connection.failed.load(std::memory_order_relaxed) || !connection.client;
    if (!failed_meanwhile) {
      link(connection.pending, state);
      state->connection.store(&connection, std::memory_order_relaxed);
      connection.tasks.fetch_add(1, std::memory_order_relaxed);
      // A client that throws here fails the connection, which completes this request with
      // EXECUTOR_LOST; one that completes the task at once hands it back right away.
      connection.use([&](Client& client) {
        state->task = client.submit_handed_back(function.remote[index], in, in_bytes, out, out_capacity, state);
        if (state->task == kNoTask && state->connection.load(std::memory_order_relaxed) == &connection) {
          finish_pending(connection, state, Completion{ErrorKind::executor_lost, 0, 0, false});  // no slot left
        }
      });
    }
  }
  // Failed since the checks above: the started request completes, with the failure.
  if (failed_meanwhile) finish(state, Completion{ErrorKind::executor_lost, 0, 0, false});
  engine.progress_on_application_thread(false);  // completes anything the submit finished at once
  engine.submitted();
  return MPI_SUCCESS;
}

void Pool::drain() {
  ProgressEngine& engine = ProgressEngine::instance();
  while (in_flight_.load(std::memory_order_acquire) > 0) {
    engine.progress_on_application_thread();
    std::this_thread::yield();
  }
}

RequestCache& RequestCache::instance() {
  static RequestCache* cache = new RequestCache();  // never destroyed: requests outlive pools and main
  return *cache;
}

void RequestCache::give_back(OffloadRequest* request) noexcept {
  OffloadRequest* head = returned_.load(std::memory_order_relaxed);
  do {
    request->next = head;
  } while (!returned_.compare_exchange_weak(head, request, std::memory_order_release, std::memory_order_relaxed));
}

void Connection::deliver_completions() noexcept {
  // `completed` is empty here, so it swaps its storage with the client's: nothing to copy.
  try {
    if (client) client->take_completions(completed);
  } catch (...) {
    return;  // they stay in the client for the next time
  }
  for (const TaskCompletion& done : completed) {
    auto* state = static_cast<OffloadRequest*>(done.user);
    if (state->connection.load(std::memory_order_relaxed) != this)
      continue;  // completed already, when the client failed
    if (done.completion.not_started && state->local != nullptr) {
      // Its executors drain (a lease taken back) or died before it was sent: the inline fallback
      // runs it here, on whichever thread makes progress, so that it does not fail.
      finish_pending(*this, state, run_here(*state));
      ++ran_inline;
      continue;
    }
    if (done.completion.error == ErrorKind::none || done.completion.error == ErrorKind::function) ++served;
    finish_pending(*this, state, done.completion);
  }
  completed.clear();
}

void Connection::fail(std::string_view why) noexcept {
  if (failed.exchange(true, std::memory_order_relaxed)) return;
  try {
    logger("sidecore.mpi")
        ->error("the client of executor {} on {} failed ({}): its tasks complete with "
                "EXECUTOR_LOST, and this pool no longer uses it",
                index, host, why);
  } catch (...) {
  }
  if (thread_sleeping) {  // the progress thread sleeps in the client: it releases it once awake
    release_on_waking = true;
    client->interrupt_sleep();
    return;
  }
  release_failed_client();
}

void Connection::release_failed_client() noexcept {
  if (!client) return;
  deliver_completions();  // what it handed back before it failed keeps its result
  client.reset();         // no byte lands in a task's buffers after this
  while (pending != nullptr) finish_pending(*this, pending, Completion{ErrorKind::executor_lost, 0, 0, false});
}

void Connection::retire() noexcept {
  failed.store(true, std::memory_order_relaxed);  // quietly: nothing uses it any more
  release_failed_client();  // nothing is pending after a drain; anything left completes all the same
  while (spare != nullptr) {
    OffloadRequest* next = spare->next;
    RequestCache::instance().give_back(spare);
    spare = next;
  }
  std::vector<TaskCompletion>().swap(completed);
}

Connection::~Connection() noexcept {
  // The pool has drained: nothing is pending. Its recycled requests go back to the cache.
  while (spare != nullptr) {
    OffloadRequest* next = spare->next;
    RequestCache::instance().give_back(spare);
    spare = next;
  }
}

OffloadFunction::~OffloadFunction() noexcept {
  if (local_library != nullptr) dlclose(local_library);
}

}  // namespace sidecore::mpi
