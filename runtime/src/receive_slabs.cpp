#include "receive_slabs.hpp"

#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "fabric/error.hpp"

namespace sidecore {

bool ReceiveSlabs::supported(const fabric::Domain& domain) noexcept {
  if (const char* off = std::getenv("SIDECORE_MULTI_RECV"); off != nullptr && off[0] == '0') return false;
  const fi_info* info = domain.info();
  // Not the socket provider ("net" in libfabric 1.17, the core "tcp" from 1.18 on), although it
  // offers FI_MULTI_RECV: with several callers sending at once, a slab's message was overwritten
  // before its completion was handled (a worker "dropped a malformed message: bad magic" and a task
  // never completed; seen twice in CI, integration.data_path.net under ASan and under TSan). Most
  // likely it hands a slab back while another caller's message is still arriving in it, as it
  // reads each connection's socket in pieces. Each message gets a buffer of its own there.
  // tcp;ofi_rxm (which copies whole messages into the slab) and shm never showed it.
  if (info->fabric_attr != nullptr && info->fabric_attr->prov_name != nullptr &&
      (std::strcmp(info->fabric_attr->prov_name, "net") == 0 ||
       std::strcmp(info->fabric_attr->prov_name, "tcp") == 0)) {
    return false;
  }
  return (info->caps & FI_MULTI_RECV) != 0;
}

ReceiveSlabs::ReceiveSlabs(std::shared_ptr<fabric::Domain> domain, const fabric::Endpoint& endpoint,
                           size_t message_bytes)
    : domain_(std::move(domain)), endpoint_(endpoint) {
  fabric::check(
      fi_setopt(&endpoint_.fid()->fid, FI_OPT_ENDPOINT, FI_OPT_MIN_MULTI_RECV, &message_bytes, sizeof message_bytes),
      "fi_setopt(FI_OPT_MIN_MULTI_RECV)");
  slabs_.resize(kSlabs);
  for (Slab& slab : slabs_) {
    slab.memory.reset(static_cast<std::byte*>(std::aligned_alloc(4096, kSlabBytes)));
    if (!slab.memory) throw std::bad_alloc();
    if (fabric::MemoryRegion::needs_local(*domain_)) {
      slab.region = fabric::MemoryRegion(domain_, &endpoint_, slab.memory.get(), kSlabBytes, FI_RECV);
    }
  }
}

ssize_t ReceiveSlabs::post(uint32_t index, void* context) noexcept {
  Slab& slab = slabs_[index];
  iovec vector{slab.memory.get(), kSlabBytes};
  void* descriptor = slab.region.descriptor();
  fi_msg message{};
  message.msg_iov = &vector;
  message.desc = &descriptor;
  message.iov_count = 1;
  message.addr = FI_ADDR_UNSPEC;
  message.context = context;
  return fi_recvmsg(endpoint_.fid(), &message, FI_MULTI_RECV);
}

}  // namespace sidecore
