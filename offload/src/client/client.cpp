// The public Client: connecting (a card or a card reference), and thin forwarding to the session
// (client/session.hpp), where the calls a progress loop makes turn exceptions into failed tasks.
#include "sidecore/sidecore.hpp"

#include <fmt/format.h>

#include <cstdlib>

#include "card.hpp"
#include "card_reference.hpp"
#include "client/session.hpp"
#include "fabric/error.hpp"
#include "log.hpp"
#include "token.hpp"

namespace sidecore {

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;
Client::~Client() = default;

Client Client::connect(std::string_view card_text, std::string_view token, const ClientOptions& options) {
  std::string resolved;
  try {
    resolved = resolve_card(card_text);  // a reference waits for the card
  } catch (const CardError& e) {
    throw Error(ErrorKind::no_executor, e.what());
  }
  ExecutorCard card;
  try {
    // On another host, an executor with a remote provider is reached through that one.
    card = route_for_caller(parse_card(resolved), local_host_name());
  } catch (const CardError& e) {
    throw Error(ErrorKind::bad_arg, e.what());
  }
  std::unique_ptr<Impl> impl;
  try {
    impl = std::make_unique<Impl>(options, card.provider);
  } catch (const fabric::FabricError& e) {
    throw Error(ErrorKind::no_executor, fmt::format("cannot open the executor's provider: {}", e.what()));
  }
  if (!card_text.empty() && card_text.front() == '@') impl->card_source = card_text;
  impl->token = token;
  impl->add_executor(card, token);
  return Client(std::move(impl));
}

void Client::add_executor(std::string_view card_text) {
  ExecutorCard card;
  try {
    card = route_for_caller(parse_card(card_text), local_host_name());
  } catch (const CardError& e) {
    throw Error(ErrorKind::bad_arg, e.what());
  }
  if (impl_->has_executor(card.executor_id)) {
    throw Error(ErrorKind::bad_arg, fmt::format("executor {} is already one of this client's", card.executor_id));
  }
  impl_->add_executor(card, impl_->token);
  impl_->lookup_known_functions(static_cast<uint32_t>(impl_->executors.size() - 1));
}

Client Client::standby(const std::vector<std::string>& cards, std::string_view token, const ClientOptions& options) {
  std::string provider;
  const std::string host = local_host_name();
  for (const auto& text : cards) {
    try {
      provider = route_for_caller(parse_card(text), host).provider;
      break;
    } catch (const CardError& e) {
      logger("sidecore.client")->warn("skipping a standby executor: {}", e.what());
    }
  }
  if (provider.empty()) throw Error(ErrorKind::bad_arg, "no usable standby executor card");
  std::unique_ptr<Impl> impl;
  try {
    impl = std::make_unique<Impl>(options, provider);
  } catch (const fabric::FabricError& e) {
    throw Error(ErrorKind::no_executor, fmt::format("cannot open provider {}: {}", provider, e.what()));
  }
  impl->token = token;
  impl->standby.assign(cards.begin(), cards.end());
  return Client(std::move(impl));
}

void Client::add_standby(const std::vector<std::string>& cards) {
  impl_->standby.insert(impl_->standby.end(), cards.begin(), cards.end());
}
size_t Client::standby_left() const noexcept { return impl_->standby.size(); }
size_t Client::executors() const noexcept { return impl_->executors.size(); }

Client Client::from_environment(const ClientOptions& options) {
  const char* card = std::getenv("SIDECORE_EXECUTOR");
  const char* token = std::getenv("SIDECORE_TOKEN");
  if (card == nullptr || *card == '\0') {
    throw Error(ErrorKind::no_executor, "SIDECORE_EXECUTOR is not set: run under sidecore-run or srun --offload");
  }
  return connect(card, token ? token : "", options);  // a reference (Slurm) waits for the card
}

Function Client::lookup(std::string_view library, std::string_view symbol) { return impl_->lookup(library, symbol); }

TaskId Client::submit(const Function& function, const void* in, size_t in_bytes, void* out, size_t out_capacity) {
  return impl_->submit(function, in, in_bytes, out, out_capacity, nullptr, nullptr);
}

TaskId Client::submit(const Function& function, const void* in, size_t in_bytes, void* out, size_t out_capacity,
                      CompletionCallback callback, void* user) {
  return impl_->submit(function, in, in_bytes, out, out_capacity, callback, user);
}

TaskId Client::submit_handed_back(const Function& function, const void* in, size_t in_bytes, void* out,
                                  size_t out_capacity, void* user) {
  return impl_->submit(function, in, in_bytes, out, out_capacity, nullptr, user, true);
}

// The calls a progress loop makes never throw: an internal failure fails the client's tasks instead.
std::optional<Completion> Client::test(TaskId id) {
  try {
    return impl_->test(id);
  } catch (const std::exception& e) {
    impl_->fail_everything(e.what());
  } catch (...) {
    impl_->fail_everything("unknown exception");
  }
  return impl_->collect_after_failure(id);
}

bool Client::cancel(TaskId id) { return impl_->cancel(id); }

bool Client::prepare_sleep() {
  try {
    return impl_->prepare_sleep();
  } catch (const std::exception& e) {
    impl_->fail_everything(e.what());
  } catch (...) {
    impl_->fail_everything("unknown exception");
  }
  return false;
}

void Client::sleep(std::chrono::microseconds timeout) {
  try {
    impl_->sleep(timeout);
  } catch (...) {
    // a failed wait is a short sleep
  }
}
void Client::interrupt_sleep() noexcept { impl_->interrupt_sleep(); }
const std::string& Client::executor_host() const noexcept {
  static const std::string none;
  return impl_->executors.empty() ? none : impl_->executors.front().card.host;
}
bool Client::executor_lost() const noexcept { return impl_->all_executors_lost(); }
bool Client::accepts_tasks() const noexcept { return impl_->accepts_tasks(); }
bool Client::reconnect() {
  progress();  // notices a lost executor, and greets replaced workers
  return !impl_->all_executors_lost();
}

Completion Client::wait(TaskId id) {
  while (true) {
    if (auto done = impl_->test(id)) return *done;
  }
}

size_t Client::progress() {
  try {
    return impl_->progress();
  } catch (const std::exception& e) {
    return impl_->fail_everything(e.what());
  } catch (...) {
    return impl_->fail_everything("unknown exception");
  }
}
size_t Client::progress(std::vector<TaskCompletion>& completed) {
  const size_t events = progress();
  impl_->tasks.take_completions(completed);
  return events;
}
void Client::take_completions(std::vector<TaskCompletion>& completed) { impl_->tasks.take_completions(completed); }
size_t Client::in_flight() const noexcept { return impl_->tasks.in_flight(); }
size_t Client::workers() const noexcept { return impl_->total_workers; }
size_t Client::workers_gone() const noexcept {
  size_t gone = 0;
  for (const auto& executor : impl_->executors) {
    if (executor.lost || executor.draining) gone += executor.workers.size();
  }
  return gone;
}
const std::string& Client::provider() const noexcept { return impl_->provider; }
bool Client::on_rings() const noexcept {
  if (impl_->executors.empty()) return false;
  for (const auto& worker : impl_->executors.front().workers) {
    if (worker.on_rings) return true;
  }
  return false;
}

}  // namespace sidecore
