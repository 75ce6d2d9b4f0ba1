// What differs between the libfabric releases Sidecore runs on (1.17 in Debian 12, 2.1 in Debian 13).
//
// The library loaded at run time decides, not the headers the build saw: libfabric keeps the soname
// libfabric.so.1 from 1.x to 2.x, so a binary built against 1.17 can run on 2.1.
// Everything else Sidecore uses (RDM endpoints, FI_MSG|FI_RMA, the FI_MR_* mode bits, FI_WAIT_FD
// completion queues, fi_trywait, FI_AV_TABLE) means the same in both; the deprecated flags 2.x
// removed or warns about (FI_MR_BASIC, FI_MR_SCALABLE, FI_LOCAL_MR, FI_ORDER_NONE/STRICT/DATA,
// wait sets, poll sets) are not used.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sidecore::fabric {

// The loaded library's version, as FI_VERSION(major, minor) (fi_version()).
uint32_t loaded_library_version() noexcept;

// The name the loaded libfabric knows `provider` by, for fi_getinfo hints. Sidecore's "net" is the
// native reliable-datagram TCP engine: libfabric 1.17 calls it "net"; from 1.18 on it is the "tcp"
// provider's own RDM endpoint and "net" is gone. Every other name passes through unchanged.
std::string libfabric_provider_name(std::string_view provider, uint32_t library_version);
std::string libfabric_provider_name(std::string_view provider);

}  // namespace sidecore::fabric
