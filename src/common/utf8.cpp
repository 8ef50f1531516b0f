#include "common/utf8.h"

#include <algorithm>

namespace lifeline {

std::size_t Utf8SequenceLength(std::string_view s) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(0);
  if (b0 < 0x80) {
    return 1;
  }
  std::size_t length = 0;
  unsigned char min1 = 0x80;
  unsigned char max1 = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    length = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    length = 3;
    min1 = b0 == 0xE0 ? 0xA0 : 0x80;
    max1 = b0 == 0xED ? 0x9F : 0xBF;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    length = 4;
    min1 = b0 == 0xF0 ? 0x90 : 0x80;
    max1 = b0 == 0xF4 ? 0x8F : 0xBF;
  } else {
    return 0;
  }
  if (s.size() < length || byte(1) < min1 || byte(1) > max1) {
    return 0;
  }
  for (std::size_t i = 2; i < length; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xBF) {
      return 0;
    }
  }
  return length;
}

std::string CleanUtf8(std::string_view in, std::size_t max_bytes) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(std::min(in.size(), max_bytes));
  std::size_t i = 0;
  while (i < in.size()) {
    const std::size_t length = Utf8SequenceLength(in.substr(i));
    const std::string_view piece = length == 0 ? kReplacement : in.substr(i, length);
    if (out.size() + piece.size() > max_bytes) {
      break;
    }
    out.append(piece);
    i += length == 0 ? 1 : length;
  }
  return out;
}

}  // namespace lifeline
