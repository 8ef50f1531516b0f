#include "protocol/message.h"

#include <array>

namespace lifeline::protocol {
namespace {

template <class Enum, std::size_t N>
std::optional<Enum> Lookup(const std::array<std::string_view, N>& names, std::string_view text) {
  for (std::size_t i = 0; i < N; ++i) {
    if (names[i] == text) {
      return static_cast<Enum>(i);
    }
  }
  return std::nullopt;
}

constexpr std::array<std::string_view, 7> kTypeNames = {"alert",     "clear",           "heartbeat",
                                                         "inventory", "performance",     "bundle_manifest",
                                                         "configuration"};
constexpr std::array<std::string_view, 4> kSeverityNames = {"info", "warning", "error", "critical"};

bool IsValidPart(std::string_view part) {
  if (part.empty() || part.size() > 128) {
    return false;
  }
  for (char c : part) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '/') {
      return false;
    }
  }
  return true;
}

}  // namespace

bool IsValidIdentity(const DeviceIdentity& identity, std::string* why) {
  const std::pair<const char*, const std::string*> parts[] = {
      {"customer", &identity.customer}, {"site", &identity.site}, {"serial", &identity.serial}};
  for (const auto& [name, value] : parts) {
    if (!IsValidPart(*value)) {
      if (why != nullptr) {
        *why = std::string(name) + " must be 1 to 128 printable characters without '/'";
      }
      return false;
    }
  }
  if (identity.model.size() > 128) {
    if (why != nullptr) {
      *why = "model must be at most 128 characters";
    }
    return false;
  }
  return true;
}

std::string_view ToString(MessageType type) { return kTypeNames[static_cast<std::size_t>(type)]; }
std::optional<MessageType> ParseMessageType(std::string_view text) {
  return Lookup<MessageType>(kTypeNames, text);
}
std::string_view ToString(Severity severity) {
  return kSeverityNames[static_cast<std::size_t>(severity)];
}
std::optional<Severity> ParseSeverity(std::string_view text) {
  return Lookup<Severity>(kSeverityNames, text);
}
std::string_view ToString(MessageStatus status) {
  return status == MessageStatus::kAccepted ? "accepted" : "rejected";
}

}  // namespace lifeline::protocol
