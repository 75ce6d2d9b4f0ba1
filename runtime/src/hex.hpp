// Bytes as lowercase hexadecimal text and back: how binary libfabric addresses travel in cards and
// on the bench's control pipe.
#pragma once

#include <string>
#include <string_view>

namespace sidecore {

std::string to_hex(std::string_view bytes);
// Decodes hexadecimal text (either case) into `bytes`; false, with `bytes` unspecified, when the
// text has an odd length or a character that is not a hex digit.
bool from_hex(std::string_view text, std::string& bytes);

}  // namespace sidecore
