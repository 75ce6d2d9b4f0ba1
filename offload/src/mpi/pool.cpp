#include "mpi/pool.hpp"

#include <dlfcn.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <thread>

#include "card.hpp"
#include "card_reference.hpp"
#include "log.hpp"
#include "mpi/error_codes.hpp"
#include "mpi/progress_engine.hpp"

namespace sidecore::mpi {
namespace {

// Every rank's SIDECORE_EXECUTOR, gathered over `comm` (empty strings where unset).
std::vector<std::string> gather_cards(MPI_Comm comm) {
  const char* own = std::getenv("SIDECORE_EXECUTOR");
  std::string card;
  if (own != nullptr && *own != '\0') {
    try {
      card = resolve_card(own);  // a reference from the Slurm plugin: waits for the executor
    } catch (const CardError& e) {
      // This rank brings no executor; the others' cards (and the fallback) still apply.
      logger("sidecore.mpi")->warn("no executor on this node: {}", e.what());
    }
  }
  int size = 0;
  MPI_Comm_size(comm, &size);
  int length = static_cast<int>(card.size());
  std::vector<int> lengths(static_cast<size_t>(size)), offsets(static_cast<size_t>(size));
  MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, comm);
  int total = 0;
  for (int r = 0; r < size; ++r) {
    offsets[static_cast<size_t>(r)] = total;
    total += lengths[static_cast<size_t>(r)];
  }
  std::string all(static_cast<size_t>(total), '\0');
  MPI_Allgatherv(card.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, comm);
  std::vector<std::string> cards;
  for (int r = 0; r < size; ++r) {
    cards.push_back(all.substr(static_cast<size_t>(offsets[static_cast<size_t>(r)]),
                               static_cast<size_t>(lengths[static_cast<size_t>(r)])));
  }
  return cards;
}

// Completion callback of every task (called with the engine's lock held): fills the request's
// status, then has the engine complete it.
void complete_request(void* user, TaskId, const Completion& completion) {
  auto* state = static_cast<OffloadRequest*>(user);
  state->completion = completion;
  state->error = error_code(completion.error);
  ProgressEngine::instance().complete(state->request, &state->pool->in_flight());
}

int query_request(void* extra, MPI_Status* status) {
  auto* state = static_cast<OffloadRequest*>(extra);
  MPI_Status_set_elements_x(status, MPI_BYTE, static_cast<MPI_Count>(state->completion.out_bytes));
  MPI_Status_set_cancelled(status, state->completion.cancelled ? 1 : 0);
  status->MPI_SOURCE = MPI_UNDEFINED;
  status->MPI_TAG = state->completion.function_return;
  status->MPI_ERROR = state->error;
  return state->error;
}

int free_request(void* extra) {
  delete static_cast<OffloadRequest*>(extra);
  return MPI_SUCCESS;
}

int cancel_request(void* extra, int complete) {
  auto* state = static_cast<OffloadRequest*>(extra);
  if (complete || state->client == nullptr) return MPI_SUCCESS;
  ProgressEngine& engine = ProgressEngine::instance();
  std::lock_guard lock(engine.mutex());
  // Succeeds only for a task still waiting in the client; it then completes (cancelled) at once,
  // on this (the application's) thread.
  engine.progress_on_application_thread_locked();
  state->client->cancel(state->task);
  engine.progress_on_application_thread_locked();
  return MPI_SUCCESS;
}

}  // namespace

Pool::Pool(MPI_Comm comm, const PoolSettings& settings) : user_comm_(comm), settings_(settings) {
  if (MPI_Comm_dup(comm, &comm_) != MPI_SUCCESS) throw PoolError(ErrorKind::bad_arg, "MPI_Comm_dup failed");
  const std::string host = local_host_name();
  const char* token_env = std::getenv("SIDECORE_TOKEN");
  const std::string token = token_env ? token_env : "";

  // MPI itself is the discovery service: every rank learns every executor of the job.
  std::map<std::string, std::pair<ExecutorCard, std::string>> unique;  // executor id -> card, text
  for (const auto& text : gather_cards(comm_)) {
    if (text.empty()) continue;
    try {
      ExecutorCard card = parse_card(text);
      unique.emplace(card.executor_id, std::make_pair(card, text));
    } catch (const CardError& e) {
      logger("sidecore.mpi")->warn("ignoring a malformed executor card: {}", e.what());
    }
  }
  ClientOptions options;
  options.task_timeout = settings_.timeout;
  int refused = 0;  // an executor refused this rank's token
  std::string refusal;
  // This rank's own executor through its reference, when it has one (Slurm): the client then
  // follows the executor to a new server after a crash.
  const char* own = std::getenv("SIDECORE_EXECUTOR");
  const std::string own_reference = own != nullptr && *own == '@' ? own : "";
  const std::optional<std::string> own_card = current_card(own_reference);
  for (const auto& [id, entry] : unique) {
    const auto& [card, text] = entry;
    const bool local = card.host == host;
    if (settings_.scope == Scope::node && !local) continue;
    const bool mine = own_card && *own_card == text;
    try {
      executors_.push_back({std::make_unique<Client>(Client::connect(mine ? own_reference : text, token, options)), local});
      const int workers = static_cast<int>(executors_.back().client->workers());
      logger("sidecore.mpi")->debug("pool: executor {} on {} ({}), {} worker(s) over {}", id, card.host,
                                    local ? "this node" : "another node", workers,
                                    executors_.back().client->provider());
      total_workers_ += workers;
      if (local) local_workers_ += workers;
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::auth) {
        refused = 1;
        refusal = e.what();
      }
      // Otherwise degrade, never fail: the pool uses the executors it can reach.
      logger("sidecore.mpi")->warn("cannot use executor {} on {}: {}", id, card.host, e.what());
    } catch (const std::exception& e) {
      // Never leave this rank out of the collective below.
      logger("sidecore.mpi")->warn("cannot use executor {} on {}: {}", id, card.host, e.what());
    }
  }
  // A refused token is a broken job setup, not a missing executor: every rank fails alike.
  MPI_Allreduce(MPI_IN_PLACE, &refused, 1, MPI_INT, MPI_MAX, comm_);
  if (refused) {
    executors_.clear();
    MPI_Comm_free(&comm_);
    throw PoolError(ErrorKind::auth, refusal.empty() ? "an executor refused another rank's token" : refusal);
  }
  // Node-local executors first: they are tried first when picking one.
  std::stable_partition(executors_.begin(), executors_.end(), [](const Executor& e) { return e.local; });
}

Pool::~Pool() {
  executors_.clear();
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

std::unique_ptr<OffloadFunction> Pool::lookup(const std::string& library, const std::string& symbol) {
  auto function = std::make_unique<OffloadFunction>();
  function->pool = this;
  function->library = library;
  function->symbol = symbol;
  if (executors_.empty()) {
    if (settings_.fallback == Fallback::error) return function;  // submit reports NO_EXECUTOR
    function->local_library = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (function->local_library == nullptr) {
      const char* why = dlerror();
      throw PoolError(ErrorKind::not_found, fmt::format("cannot load '{}': {}", library, why ? why : "?"));
    }
    function->local = reinterpret_cast<sidecore_function_t>(dlsym(function->local_library, symbol.c_str()));
    if (function->local == nullptr) {
      throw PoolError(ErrorKind::not_found, fmt::format("library '{}' has no symbol '{}'", library, symbol));
    }
    return function;
  }
  std::lock_guard lock(ProgressEngine::instance().mutex());
  for (auto& executor : executors_) {
    try {
      function->remote.push_back(executor.client->lookup(library, symbol));
    } catch (const Error& e) {
      throw PoolError(e.kind(), e.what());
    }
  }
  return function;
}

size_t Pool::pick_executor() {
  // The first (node-local) executor with room on its workers; otherwise the least loaded per worker.
  // Executors that died are skipped while any other is left (their tasks fail with EXECUTOR_LOST),
  // until the node's own comes back: its supervisor restarts the server and the client follows
  // the card reference (the other nodes' executors are known by their cards only).
  size_t best = 0;
  double best_load = 1e300;
  for (size_t i = 0; i < executors_.size(); ++i) {
    auto& client = *executors_[i].client;
    if (client.executor_lost() && !client.reconnect()) continue;
    const double load = static_cast<double>(client.in_flight()) / static_cast<double>(client.workers());
    if (executors_[i].local && load < 2.0) return i;
    if (load < best_load) {
      best_load = load;
      best = i;
    }
  }
  return best;
}

int Pool::submit(OffloadFunction& function, const void* in, size_t in_bytes, void* out, size_t out_capacity,
                 MPI_Request* request) {
  auto state = std::make_unique<OffloadRequest>();
  state->pool = this;
  if (executors_.empty() && function.local == nullptr) return error_code(ErrorKind::no_executor);
  int rc = MPI_Grequest_start(query_request, free_request, cancel_request, state.get(), &state->request);
  if (rc != MPI_SUCCESS) return rc;
  *request = state->request;
  OffloadRequest* raw = state.release();  // owned by the request now; free_request deletes it

  if (function.local != nullptr) {  // the inline fallback: run here, complete at once
    size_t out_bytes = 0;
    const int value = function.local(in_bytes ? in : nullptr, in_bytes, out_capacity ? out : nullptr, out_capacity,
                                     &out_bytes);
    Completion completion{value == 0 && out_bytes <= out_capacity ? ErrorKind::none : ErrorKind::function, value,
                          value == 0 && out_bytes <= out_capacity ? out_bytes : 0, false};
    ProgressEngine& engine = ProgressEngine::instance();
    engine.started(in_flight_);
    std::lock_guard lock(engine.mutex());
    complete_request(raw, kNoTask, completion);
    engine.progress_on_application_thread_locked();  // this is the application's thread: complete now
    return MPI_SUCCESS;
  }
  ProgressEngine& engine = ProgressEngine::instance();
  {
    std::lock_guard lock(engine.mutex());
    const size_t index = pick_executor();
    raw->client = executors_[index].client.get();
    engine.started(in_flight_);
    raw->task = raw->client->submit(function.remote[index], in, in_bytes, out, out_capacity, complete_request, raw);
    engine.progress_on_application_thread_locked(false);  // completes anything the submit finished at once
  }
  engine.submitted();
  return MPI_SUCCESS;
}

void Pool::drain() {
  ProgressEngine& engine = ProgressEngine::instance();
  while (in_flight_.load(std::memory_order_acquire) > 0) {
    {
      std::unique_lock lock(engine.mutex(), std::try_to_lock);
      if (lock.owns_lock()) engine.progress_on_application_thread_locked();
    }
    std::this_thread::yield();
  }
}

OffloadFunction::~OffloadFunction() {
  if (local_library != nullptr) dlclose(local_library);
}

}  // namespace sidecore::mpi
