#include "gateway/loopback_peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>

#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

namespace lifeline::gateway {
namespace {

struct Endpoint {
  bool v6 = false;
  unsigned char address[16] = {};
  std::uint16_t port = 0;
};

std::optional<Endpoint> ParseClient(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return std::nullopt;
  }
  std::string host(text.substr(0, colon));
  const std::string_view port_text = text.substr(colon + 1);
  Endpoint endpoint;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), endpoint.port);
  if (ec != std::errc() || end != port_text.data() + port_text.size()) {
    return std::nullopt;
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (::inet_pton(AF_INET, host.c_str(), endpoint.address) == 1) {
    return endpoint;
  }
  endpoint.v6 = true;
  if (::inet_pton(AF_INET6, host.c_str(), endpoint.address) == 1) {
    return endpoint;
  }
  return std::nullopt;
}

// "0100007F:D431" (IPv4) or 32 hex digits then ":PORT" (IPv6). The kernel prints each 32-bit word of
// the address as the integer it holds in memory, so reading a word back into memory restores its
// bytes on any host; the port is printed as a number.
std::optional<Endpoint> ParseProcEndpoint(std::string_view text, bool v6) {
  const auto colon = text.find(':');
  const std::size_t digits = v6 ? 32 : 8;
  if (colon != digits) {
    return std::nullopt;
  }
  Endpoint endpoint;
  endpoint.v6 = v6;
  for (std::size_t word = 0; word < digits / 8; ++word) {
    std::uint32_t value = 0;
    const char* begin = text.data() + word * 8;
    if (std::from_chars(begin, begin + 8, value, 16).ec != std::errc()) {
      return std::nullopt;
    }
    std::memcpy(endpoint.address + word * 4, &value, 4);
  }
  const std::string_view port = text.substr(colon + 1);
  if (std::from_chars(port.data(), port.data() + port.size(), endpoint.port, 16).ec != std::errc()) {
    return std::nullopt;
  }
  return endpoint;
}

bool SameAddress(const Endpoint& a, const Endpoint& b) {
  if (a.v6 == b.v6) {
    return std::memcmp(a.address, b.address, a.v6 ? 16 : 4) == 0;
  }
  // An IPv4 client seen by a dual-stack socket appears as ::ffff:a.b.c.d.
  const Endpoint& four = a.v6 ? b : a;
  const Endpoint& six = a.v6 ? a : b;
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(six.address, kMapped, 12) == 0 && std::memcmp(six.address + 12, four.address, 4) == 0;
}

}  // namespace

std::optional<uid_t> LoopbackPeerUid(std::string_view client, std::uint16_t server_port) {
  const auto wanted = ParseClient(client);
  if (!wanted) {
    return std::nullopt;
  }
  for (const auto& [path, v6] : {std::pair{"/proc/net/tcp", false}, std::pair{"/proc/net/tcp6", true}}) {
    std::ifstream table(path);
    std::string line;
    std::getline(table, line);  // the header
    while (std::getline(table, line)) {
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues, timer, retransmits;
      uid_t uid = 0;
      if (!(fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid)) {
        continue;
      }
      const auto mine = ParseProcEndpoint(local, v6);
      const auto theirs = ParseProcEndpoint(remote, v6);
      if (mine && theirs && mine->port == wanted->port && theirs->port == server_port &&
          SameAddress(*mine, *wanted)) {
        return uid;
      }
    }
  }
  return std::nullopt;
}

std::string UserName(uid_t uid) {
  std::vector<char> buffer(16384);
  passwd entry{};
  passwd* found = nullptr;
  if (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) == 0 && found != nullptr) {
    return found->pw_name;
  }
  return "uid " + std::to_string(uid);
}

}  // namespace lifeline::gateway
