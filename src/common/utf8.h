#pragma once
// Text that crosses into the protocol must be valid UTF-8 of bounded size: the home's JSON decoder refuses
// invalid UTF-8 and over-long fields, and would refuse the whole batch over one strange log line.
#include <cstddef>
#include <string>
#include <string_view>

namespace lifeline {

/// The length of the valid UTF-8 sequence starting `s` (1 to 4), or 0 when it is not valid UTF-8.
std::size_t Utf8SequenceLength(std::string_view s);

/// Valid UTF-8 of at most `max_bytes`: invalid bytes become U+FFFD, a cut falls between characters.
std::string CleanUtf8(std::string_view in, std::size_t max_bytes);

}  // namespace lifeline
