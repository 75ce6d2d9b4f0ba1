// Owner of a completion queue; keeps its domain alive. Where the provider allows it the queue has a
// file descriptor to sleep on (tcp, net); where it does not (shm) callers sleep on a Doorbell instead.
#pragma once

#include <rdma/fi_eq.h>

#include <memory>
#include <string>

#include "fabric/domain.hpp"

namespace sidecore::fabric {

class CompletionQueue {
 public:
  // `want_wait_fd`: ask for a pollable descriptor; falls back to no wait object when refused.
  CompletionQueue(std::shared_ptr<Domain> domain, size_t size, bool want_wait_fd);
  ~CompletionQueue();
  CompletionQueue(const CompletionQueue&) = delete;
  CompletionQueue& operator=(const CompletionQueue&) = delete;

  fid_cq* fid() const noexcept { return cq_; }
  const std::shared_ptr<Domain>& domain() const noexcept { return domain_; }

  // Reads up to `count` entries; returns the number read, -FI_EAGAIN when empty, -FI_EAVAIL when
  // an error entry waits (read it with read_error).
  ssize_t read(fi_cq_data_entry* entries, size_t count) noexcept { return fi_cq_read(cq_, entries, count); }
  // Reads one error entry and returns a description of it; fills `entry`.
  std::string read_error(fi_cq_err_entry& entry) noexcept;

  // Blocks up to `timeout_ms` for completions (queues with a wait object only); same returns as
  // read(), -FI_EAGAIN on timeout or after signal().
  ssize_t sread(fi_cq_data_entry* entries, size_t count, int timeout_ms) noexcept {
    return fi_cq_sread(cq_, entries, count, nullptr, timeout_ms);
  }
  // Wakes a thread blocked in sread(); safe from any thread.
  void signal() noexcept { fi_cq_signal(cq_); }

  // -1 when the queue has no descriptor to sleep on.
  int wait_fd() const noexcept { return wait_fd_; }
  // True when it is safe to sleep on wait_fd() now (libfabric's fi_trywait protocol).
  bool trywait() noexcept;

 private:
  std::shared_ptr<Domain> domain_;
  fid_cq* cq_ = nullptr;
  int wait_fd_ = -1;
};

}  // namespace sidecore::fabric
