#include "mpi/pool.hpp"

#include <dlfcn.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <thread>
#include <utility>

#include "card.hpp"
#include "card_reference.hpp"
#include "fault_injection.hpp"
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

// Fills a request's status and has the engine complete it. The engine's lock must be held.
void finish(OffloadRequest* state, const Completion& completion) noexcept {
  state->completion = completion;
  state->error = error_code(completion.error);
  ProgressEngine::instance().complete(state->request, &state->pool->in_flight());
}

// Completion callback of every task (called from inside its client, with the engine's lock held).
void complete_request(void* user, TaskId, const Completion& completion) noexcept {
  auto* ticket = static_cast<Ticket*>(user);
  OffloadRequest* state = ticket->request;
  if (state == nullptr) return;  // completed already, when its client failed
  state->client = nullptr;
  state->pool->executors()[ticket->executor].tickets.erase(state->ticket);  // `ticket` is gone now
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
  const int rc = guarded_callback("query", fault::Point::grequest_query, [&] {
    fill_status(status, static_cast<MPI_Count>(state->completion.out_bytes), state->completion.cancelled,
                state->completion.function_return, state->error);
    return state->error;
  });
  if (rc != state->error) fill_status(status, 0, false, 0, rc);  // the callback failed
  return rc;
}

int free_request(void* extra) noexcept {
  const std::unique_ptr<OffloadRequest> state(static_cast<OffloadRequest*>(extra));  // freed whatever happens
  return guarded_callback("free", fault::Point::grequest_free, [] { return MPI_SUCCESS; });
}

int cancel_request(void* extra, int complete) noexcept {
  return guarded_callback("cancel", fault::Point::grequest_cancel, [&] {
    auto* state = static_cast<OffloadRequest*>(extra);
    if (complete || state->client == nullptr) return MPI_SUCCESS;
    ProgressEngine& engine = ProgressEngine::instance();
    std::lock_guard lock(engine.mutex());
    // Succeeds only for a task still waiting in the client; it then completes (cancelled) at once,
    // on this (the application's) thread.
    engine.progress_on_application_thread_locked();
    if (state->client == nullptr) return MPI_SUCCESS;  // it completed meanwhile
    state->pool->use_client(state->ticket->executor, [&](Client& client) { client.cancel(state->task); });
    engine.progress_on_application_thread_locked();
    return MPI_SUCCESS;
  });
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
  options.transport = settings_.transport;
  int refused = 0;  // an executor refused this rank's token
  std::string refusal;
  // This rank's own executor through its reference, when it has one (Slurm, sidecore-run): the
  // client then finds a replaced worker's new card in its file.
  const char* own = std::getenv("SIDECORE_EXECUTOR");
  const std::string own_reference = own != nullptr && *own == '@' ? own : "";
  const std::optional<std::string> own_card = current_card(own_reference);
  for (const auto& [id, entry] : unique) {
    const auto& [card, text] = entry;
    const bool local = card.host == host;
    if (settings_.scope == Scope::node && !local) continue;
    const bool mine = own_card && *own_card == text;
    try {
      Executor executor;
      executor.client = std::make_unique<Client>(Client::connect(mine ? own_reference : text, token, options));
      executor.local = local;
      executors_.push_back(std::move(executor));
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

Pool::~Pool() noexcept {
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
  function->remote.resize(executors_.size());  // a failed executor keeps an invalid Function: never picked
  for (size_t i = 0; i < executors_.size(); ++i) {
    if (executors_[i].failed) continue;
    try {
      function->remote[i] = executors_[i].client->lookup(library, symbol);
    } catch (const Error& e) {
      throw PoolError(e.kind(), e.what());  // the executor answered: it is fine
    } catch (const std::exception& e) {
      fail_executor(i, e.what());
      throw;
    }
  }
  return function;
}

std::optional<size_t> Pool::pick_executor() noexcept {
  // The first (node-local) executor with room on its workers; otherwise the least loaded per worker.
  // Executors that died are skipped while any other is left (their tasks fail with EXECUTOR_LOST);
  // a crashed worker does not make its executor lost (its supervisor replaces it, and the client
  // greets the new one). Executors whose client failed are never picked.
  std::optional<size_t> best, usable;
  double best_load = 1e300;
  for (size_t i = 0; i < executors_.size(); ++i) {
    bool alive = false;
    double load = 0;
    const bool ok = use_client(i, [&](Client& client) {
      alive = !client.executor_lost() || client.reconnect();
      load = static_cast<double>(client.in_flight()) / static_cast<double>(std::max<size_t>(client.workers(), 1));
    });
    if (!ok) continue;
    if (!usable) usable = i;
    if (!alive) continue;
    if (executors_[i].local && load < 2.0) return i;
    if (load < best_load) {
      best_load = load;
      best = i;
    }
  }
  return best ? best : usable;
}

int Pool::submit(OffloadFunction& function, const void* in, size_t in_bytes, void* out, size_t out_capacity,
                 MPI_Request* request) {
  if (executors_.empty() && function.local == nullptr) return error_code(ErrorKind::no_executor);
  auto state = std::make_unique<OffloadRequest>();
  state->pool = this;
  ProgressEngine& engine = ProgressEngine::instance();
  std::unique_lock lock(engine.mutex());
  // Everything that can fail happens before the request starts: a started request always completes.
  engine.reserve_completion();
  std::optional<size_t> index;
  if (function.local == nullptr) {
    index = pick_executor();
    if (!index) return error_code(ErrorKind::executor_lost);  // every executor's client has failed
    auto& tickets = executors_[*index].tickets;
    state->ticket = tickets.insert(tickets.end(), Ticket{state.get(), *index});
  }
  int rc = MPI_Grequest_start(query_request, free_request, cancel_request, state.get(), &state->request);
  if (rc != MPI_SUCCESS) {
    if (index) executors_[*index].tickets.erase(state->ticket);
    return rc;
  }
  *request = state->request;
  OffloadRequest* raw = state.release();  // owned by the request now; free_request deletes it
  engine.started(in_flight_);

  if (function.local != nullptr) {  // the inline fallback: run here, complete at once
    size_t out_bytes = 0;
    const int value = function.local(in_bytes ? in : nullptr, in_bytes, out_capacity ? out : nullptr, out_capacity,
                                     &out_bytes);
    const bool ok = value == 0 && out_bytes <= out_capacity;
    finish(raw, Completion{ok ? ErrorKind::none : ErrorKind::function, value, ok ? out_bytes : 0, false});
    engine.progress_on_application_thread_locked();  // this is the application's thread: complete now
    return MPI_SUCCESS;
  }
  raw->client = executors_[*index].client.get();
  // A client that throws here fails its executor, which completes this request with EXECUTOR_LOST.
  use_client(*index, [&](Client& client) {
    const TaskId task =
        client.submit(function.remote[*index], in, in_bytes, out, out_capacity, complete_request, &*raw->ticket);
    if (raw->client != nullptr) raw->task = task;  // else it completed inside submit
  });
  engine.progress_on_application_thread_locked(false);  // completes anything the submit finished at once
  lock.unlock();
  engine.submitted();
  return MPI_SUCCESS;
}

void Pool::fail_executor(size_t index, std::string_view why) noexcept {
  Executor& executor = executors_[index];
  if (executor.failed) return;
  executor.failed = true;
  try {
    logger("sidecore.mpi")->error("the client of executor {} on {} failed ({}): its tasks complete with "
                                  "EXECUTOR_LOST, and this pool no longer uses it",
                                  index, executor.client->executor_host(), why);
  } catch (...) {
  }
  if (ProgressEngine::instance().release_later(this, index, *executor.client)) return;  // the thread sleeps on it
  release_failed_client(index);
}

void Pool::release_failed_client(size_t index) noexcept {
  Executor& executor = executors_[index];
  // Its destructor may still complete tasks through complete_request, with their results.
  executor.client.reset();
  for (Ticket& ticket : executor.tickets) {
    if (ticket.request == nullptr) continue;
    OffloadRequest* state = std::exchange(ticket.request, nullptr);
    state->client = nullptr;
    finish(state, Completion{ErrorKind::executor_lost, 0, 0, false});
  }
  executor.tickets.clear();  // the client is gone: no callback can come for them any more
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

OffloadFunction::~OffloadFunction() noexcept {
  if (local_library != nullptr) dlclose(local_library);
}

}  // namespace sidecore::mpi
