// Loads functions from shared libraries (dlopen by path, dlsym by name) into a table that all
// workers of an executor process share. Lookups that insert take a lock; calls by id read without one.
// With a SharedState (worker processes), ids come from its name table: the same on every worker
// process, and an id another process handed out is resolved here by name on first use.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "shared_state.hpp"
#include "sidecore/function.h"

namespace sidecore {

class FunctionLoader {
 public:
  static constexpr uint32_t kMaxFunctions = 4096;

  struct Lookup {
    uint32_t id = UINT32_MAX;  // valid when error is empty
    std::string error;         // why the library or symbol could not be found
  };

  FunctionLoader() = default;
  explicit FunctionLoader(SharedState* shared) : shared_(shared) {}
  ~FunctionLoader();
  FunctionLoader(const FunctionLoader&) = delete;
  FunctionLoader& operator=(const FunctionLoader&) = delete;

  // Resolves `symbol` in `library` (loading it on first use); the same pair always gets the same id.
  Lookup lookup(std::string_view library, std::string_view symbol);
  // Loads a library now so the first call is warm; returns an error message or empty.
  std::string preload(std::string_view library);
  // The function with `id`, or nullptr for an id that was never handed out (or whose library or
  // symbol is not there). Lock-free once this process has resolved the id.
  sidecore_function_t get(uint32_t id) noexcept {
    if (id >= kMaxFunctions) return nullptr;
    if (auto function = table_[id].load(std::memory_order_acquire)) return function;
    return shared_ != nullptr ? resolve(id) : nullptr;
  }
  size_t size() const noexcept { return count_.load(std::memory_order_acquire); }

 private:
  void* open_library(const std::string& library, std::string& error);
  // An id handed out by another worker process: loads it by its name.
  sidecore_function_t resolve(uint32_t id) noexcept;

  SharedState* shared_ = nullptr;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, void*> libraries_;    // path -> dlopen handle
  std::unordered_map<std::string, uint32_t> by_name_;   // "library\0symbol" -> id
  std::array<std::atomic<sidecore_function_t>, kMaxFunctions> table_{};
  std::atomic<uint32_t> count_{0};
};

}  // namespace sidecore
