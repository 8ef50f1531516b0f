#include "gateway/loopback_peer.h"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

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

// One SOCK_DIAG_BY_FAMILY request for exactly the client's socket (src = the client, dst = us): the
// kernel answers with that socket's inet_diag_msg, or an error when there is none.
std::optional<uid_t> AskNetlink(const Endpoint& client, const Endpoint& server) {
  if (client.v6 != server.v6) {
    return std::nullopt;  // a v4-mapped peer on a dual-stack socket: /proc has it
  }
  const int fd = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) {
    return std::nullopt;
  }
  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message{};
  message.header.nlmsg_len = sizeof(message);
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST;
  message.request.sdiag_family = client.v6 ? AF_INET6 : AF_INET;
  message.request.sdiag_protocol = IPPROTO_TCP;
  message.request.idiag_states = ~0u;
  message.request.id.idiag_sport = htons(client.port);
  message.request.id.idiag_dport = htons(server.port);
  std::memcpy(message.request.id.idiag_src, client.address, client.v6 ? 16 : 4);
  std::memcpy(message.request.id.idiag_dst, server.address, server.v6 ? 16 : 4);
  message.request.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  message.request.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  std::optional<uid_t> uid;
  if (::sendto(fd, &message, sizeof(message), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) ==
      static_cast<ssize_t>(sizeof(message))) {
    alignas(nlmsghdr) char answer[8192];
    // The kernel has answered by the time sendto returns; MSG_DONTWAIT keeps a surprise from blocking.
    const ssize_t n = ::recv(fd, answer, sizeof(answer), MSG_DONTWAIT);
    const auto* reply = reinterpret_cast<const nlmsghdr*>(answer);
    if (n >= static_cast<ssize_t>(NLMSG_LENGTH(sizeof(inet_diag_msg))) && NLMSG_OK(reply, static_cast<unsigned>(n)) &&
        reply->nlmsg_type == SOCK_DIAG_BY_FAMILY) {
      const auto* socket_info = static_cast<const inet_diag_msg*>(NLMSG_DATA(reply));
      uid = socket_info->idiag_uid;
    }
  }
  ::close(fd);
  return uid;
}

}  // namespace

std::optional<uid_t> LoopbackPeerUid(std::string_view client, std::string_view server) {
  const auto wanted = ParseClient(client);
  const auto us = ParseClient(server);
  if (!wanted || !us) {
    return std::nullopt;
  }
  if (auto uid = AskNetlink(*wanted, *us)) {
    return uid;
  }
  return LoopbackPeerUidFromProc(client, server);
}

std::optional<uid_t> LoopbackPeerUidFromProc(std::string_view client, std::string_view server) {
  const auto wanted = ParseClient(client);
  const auto us = ParseClient(server);
  if (!wanted || !us) {
    return std::nullopt;
  }
  const std::uint16_t server_port = us->port;
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
