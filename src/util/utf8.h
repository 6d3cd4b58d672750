// UTF-8: encoding code points, sequence lengths, and keeping text valid.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace muse {

// Length of the UTF-8 sequence that starts with byte b (1 for continuation/invalid bytes, so
// that malformed text still advances byte by byte).
int utf8_sequence_length(uint8_t b);

// Appends the valid UTF-8 of `in` to out, each invalid byte replaced by U+FFFD. Unless `final`,
// an unfinished sequence at the very end is left unconsumed; returns the bytes consumed.
size_t append_valid_utf8(std::string_view in, std::string& out, bool final);

// Appends the UTF-8 encoding of code point cp.
void append_utf8(std::string& out, uint32_t cp);

}  // namespace muse
