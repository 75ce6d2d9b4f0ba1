#include "fabric/completion_queue.hpp"

#include <rdma/fi_errno.h>

#include "fabric/error.hpp"
#include "log.hpp"

namespace sidecore::fabric {

CompletionQueue::CompletionQueue(std::shared_ptr<Domain> domain, size_t size, bool want_wait_fd)
    : domain_(std::move(domain)) {
  fi_cq_attr attr{};
  attr.size = size;
  attr.format = FI_CQ_FORMAT_DATA;
  attr.wait_obj = want_wait_fd ? FI_WAIT_FD : FI_WAIT_NONE;
  int rc = fi_cq_open(domain_->fid(), &attr, &cq_, nullptr);
  if (rc != 0 && want_wait_fd) {
    // shm has no wait object in libfabric 1.17: poll it and sleep on a Doorbell instead.
    attr.wait_obj = FI_WAIT_NONE;
    rc = fi_cq_open(domain_->fid(), &attr, &cq_, nullptr);
  }
  check(rc, "fi_cq_open");
  if (attr.wait_obj == FI_WAIT_FD) {
    int fd = -1;
    if (fi_control(&cq_->fid, FI_GETWAIT, &fd) == 0) wait_fd_ = fd;
  }
}

CompletionQueue::~CompletionQueue() {
  if (int rc = fi_close(&cq_->fid); rc != 0) {
    logger("sidecore.fabric")->warn("closing completion queue: {}", fi_strerror(-rc));
  }
}

std::string CompletionQueue::read_error(fi_cq_err_entry& entry) noexcept {
  entry = fi_cq_err_entry{};
  if (fi_cq_readerr(cq_, &entry, 0) < 0) return "unreadable completion error";
  char buffer[256];
  const char* detail = fi_cq_strerror(cq_, entry.prov_errno, entry.err_data, buffer, sizeof buffer);
  return std::string(fi_strerror(entry.err)) + (detail ? std::string(" (") + detail + ")" : "");
}

bool CompletionQueue::trywait() noexcept {
  if (wait_fd_ < 0) return false;
  struct fid* fids[] = {&cq_->fid};
  return fi_trywait(domain_->fabric()->fid(), fids, 1) == 0;
}

}  // namespace sidecore::fabric
