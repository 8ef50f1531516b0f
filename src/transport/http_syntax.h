#pragma once
// HTTP grammar shared by the server and the client (RFC 9110 section 5.6.2).
#include <string_view>

namespace lifeline::transport {

/// True for a non-empty RFC 9110 token: what header names and methods are made of.
inline bool IsHttpToken(std::string_view text) {
  if (text.empty()) {
    return false;
  }
  for (char c : text) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) {
      return false;
    }
  }
  return true;
}

}  // namespace lifeline::transport
