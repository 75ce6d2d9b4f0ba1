#include "card.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <charconv>
#include <climits>
#include <map>

#include "hex.hpp"
#include "protocol.hpp"

namespace sidecore {
namespace {

constexpr std::string_view kPrefix = "sidecore/";

// A card address: hex digits for 1 to kMaxAddressBytes bytes. Throws CardError naming the address
// ("address 2", "remote address 0").
std::string address_from_hex(std::string_view hex, std::string_view kind, size_t index) {
  if (hex.empty() || hex.size() % 2 != 0) {
    throw CardError(fmt::format("card {} {} has {} hex digits (need a non-zero even number)", kind, index, hex.size()));
  }
  if (hex.size() / 2 > protocol::kMaxAddressBytes) {
    throw CardError(fmt::format("card {} {} is longer than {} bytes", kind, index, protocol::kMaxAddressBytes));
  }
  std::string bytes;
  if (!from_hex(hex, bytes)) throw CardError(fmt::format("card {} {} is not hexadecimal", kind, index));
  return bytes;
}

bool printable_token(std::string_view value) {
  for (char c : value) {
    if (c <= ' ' || c > '~') return false;
  }
  return !value.empty();
}

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return parts;
}

}  // namespace

std::string local_host_name() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

std::string format_card(const ExecutorCard& card) {
  auto hex_list = [](const std::vector<std::string>& list) {
    std::string text;
    for (const auto& address : list) {
      if (!text.empty()) text.push_back(',');
      text += to_hex(address);
    }
    return text;
  };
  std::string pids;
  for (long pid : card.worker_pids) pids += (pids.empty() ? "" : ",") + std::to_string(pid);
  return fmt::format(
      "{}{} id={} host={}{}{} provider={} workers={} doorbell={} addrs={}{}{}{}{}", kPrefix, ExecutorCard::kVersion,
      card.executor_id, card.host, card.pid > 0 ? fmt::format(" pid={}", card.pid) : std::string(),
      card.watch > 0 ? fmt::format(" watch={}", card.watch) : std::string(), card.provider,
      card.worker_addresses.size(), card.doorbell.empty() ? "-" : card.doorbell, hex_list(card.worker_addresses),
      card.remote_provider.empty()
          ? std::string()
          : fmt::format(" remote={} raddrs={}", card.remote_provider, hex_list(card.remote_addresses)),
      pids.empty() ? std::string() : " wpids=" + pids,
      card.max_task_s > 0 ? fmt::format(" max_task_s={}", card.max_task_s) : std::string(),
      card.rings ? " paths=rings,fabric" : "");
}

ExecutorCard route_for_caller(ExecutorCard card, std::string_view caller_host) {
  if (!card.remote_provider.empty() && card.host != caller_host) {
    card.provider = std::move(card.remote_provider);
    card.worker_addresses = std::move(card.remote_addresses);
    card.doorbell.clear();
    card.rings = false;
  }
  card.remote_provider.clear();
  card.remote_addresses.clear();
  return card;
}

ExecutorCard parse_card(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.remove_suffix(1);
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  if (text.empty()) throw CardError("executor card is empty");
  if (text.substr(0, kPrefix.size()) != kPrefix) {
    throw CardError("executor card does not start with 'sidecore/<version>'");
  }
  auto fields = split(text, ' ');
  std::string_view version = fields[0].substr(kPrefix.size());
  if (version != std::to_string(ExecutorCard::kVersion)) {
    throw CardError(fmt::format("executor card version '{}' is not supported (this build reads version {})", version,
                                ExecutorCard::kVersion));
  }
  std::map<std::string_view, std::string_view> values;
  for (size_t i = 1; i < fields.size(); ++i) {
    auto field = fields[i];
    if (field.empty()) continue;
    auto eq = field.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      throw CardError(fmt::format("executor card field '{}' is not key=value", field));
    }
    auto key = field.substr(0, eq);
    if (key != "id" && key != "host" && key != "pid" && key != "watch" && key != "provider" && key != "workers" &&
        key != "doorbell" && key != "addrs" && key != "remote" && key != "raddrs" && key != "wpids" &&
        key != "max_task_s" && key != "paths") {
      throw CardError(fmt::format("executor card has an unknown field '{}'", key));
    }
    if (!values.emplace(key, field.substr(eq + 1)).second) {
      throw CardError(fmt::format("executor card repeats field '{}'", key));
    }
  }
  for (auto key : {"id", "host", "provider", "workers", "doorbell", "addrs"}) {
    if (!values.count(key)) throw CardError(fmt::format("executor card lacks the '{}' field", key));
  }

  ExecutorCard card;
  card.executor_id = std::string(values["id"]);
  if (card.executor_id.size() != 16 || card.executor_id.find_first_not_of("0123456789abcdef") != std::string::npos) {
    throw CardError("executor card id is not 16 lowercase hex digits");
  }
  if (!printable_token(values["host"])) throw CardError("executor card host is empty or not printable");
  card.host = std::string(values["host"]);
  if (auto pid = values.find("pid"); pid != values.end()) {
    const auto text = pid->second;
    auto [pid_end, pid_ec] = std::from_chars(text.data(), text.data() + text.size(), card.pid);
    if (pid_ec != std::errc{} || pid_end != text.data() + text.size() || card.pid <= 0 || card.pid > 0x7fffffff) {
      throw CardError(fmt::format("executor card pid '{}' is not a process id", text));
    }
  }
  if (auto watch = values.find("watch"); watch != values.end()) {
    const auto text = watch->second;
    auto [watch_end, watch_ec] = std::from_chars(text.data(), text.data() + text.size(), card.watch);
    if (watch_ec != std::errc{} || watch_end != text.data() + text.size() || card.watch == 0 || card.watch > 65535) {
      throw CardError(fmt::format("executor card watch port '{}' is not a TCP port", text));
    }
  }
  if (!printable_token(values["provider"])) throw CardError("executor card provider is empty or not printable");
  card.provider = std::string(values["provider"]);
  auto doorbell = values["doorbell"];
  if (doorbell != "-") {
    if (doorbell.size() < 2 || doorbell.front() != '/' || doorbell.find('/', 1) != std::string_view::npos ||
        !printable_token(doorbell) || doorbell.size() > 255) {
      throw CardError("executor card doorbell is not a shared-memory name such as /sidecore-<id>");
    }
    card.doorbell = std::string(doorbell);
  }

  auto workers_text = values["workers"];
  size_t workers = 0;
  auto [end, ec] = std::from_chars(workers_text.data(), workers_text.data() + workers_text.size(), workers);
  if (ec != std::errc{} || end != workers_text.data() + workers_text.size() || workers == 0 ||
      workers > ExecutorCard::kMaxWorkers) {
    throw CardError(fmt::format("executor card worker count '{}' is not a number from 1 to {}", workers_text,
                                ExecutorCard::kMaxWorkers));
  }
  auto addresses = split(values["addrs"], ',');
  if (addresses.size() != workers) {
    throw CardError(fmt::format("executor card lists {} addresses for {} workers", addresses.size(), workers));
  }
  for (size_t i = 0; i < addresses.size(); ++i) card.worker_addresses.push_back(address_from_hex(addresses[i], "address", i));

  if (values.count("remote") != values.count("raddrs")) {
    throw CardError("executor card has one of 'remote' and 'raddrs' without the other");
  }
  if (auto remote = values.find("remote"); remote != values.end()) {
    if (!printable_token(remote->second)) throw CardError("executor card remote provider is empty or not printable");
    card.remote_provider = std::string(remote->second);
    auto remote_addresses = split(values["raddrs"], ',');
    if (remote_addresses.size() != workers) {
      throw CardError(
          fmt::format("executor card lists {} remote addresses for {} workers", remote_addresses.size(), workers));
    }
    for (size_t i = 0; i < remote_addresses.size(); ++i) {
      card.remote_addresses.push_back(address_from_hex(remote_addresses[i], "remote address", i));
    }
  }
  if (auto pids = values.find("wpids"); pids != values.end()) {
    const auto list = split(pids->second, ',');
    if (list.size() != workers) {
      throw CardError(fmt::format("executor card lists {} worker pids for {} workers", list.size(), workers));
    }
    for (auto text : list) {
      long pid = 0;
      auto [pid_end, pid_ec] = std::from_chars(text.data(), text.data() + text.size(), pid);
      if (pid_ec != std::errc{} || pid_end != text.data() + text.size() || pid <= 0 || pid > 0x7fffffff) {
        throw CardError(fmt::format("executor card worker pid '{}' is not a process id", text));
      }
      card.worker_pids.push_back(pid);
    }
  }
  if (auto bound = values.find("max_task_s"); bound != values.end()) {
    const auto text = bound->second;
    auto [bound_end, bound_ec] = std::from_chars(text.data(), text.data() + text.size(), card.max_task_s);
    if (bound_ec != std::errc{} || bound_end != text.data() + text.size() || card.max_task_s == 0 ||
        card.max_task_s > 31'536'000) {
      throw CardError(fmt::format("executor card max_task_s '{}' is not a number of seconds from 1 to 31536000", text));
    }
  }
  if (auto paths = values.find("paths"); paths != values.end()) {
    bool fabric = false;
    for (auto path : split(paths->second, ',')) {
      if (path == "rings") {
        card.rings = true;
      } else if (path == "fabric") {
        fabric = true;
      } else {
        throw CardError(
            fmt::format("executor card paths '{}' names an unknown path (known: rings, fabric)", paths->second));
      }
    }
    if (!fabric) throw CardError("executor card paths must include fabric (lookups and hellos travel there)");
    if (card.rings && card.doorbell.empty()) throw CardError("executor card offers rings without a doorbell");
  }
  return card;
}

}  // namespace sidecore
