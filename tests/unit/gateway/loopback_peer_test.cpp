// LoopbackPeerUid reads the kernel's socket table: real loopback connections in this process, over
// IPv4 and IPv6, find this process's uid; a socket that is not connected to the port, or a
// malformed address, finds nothing.
#include "gateway/loopback_peer.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <utility>

namespace lifeline::gateway {
namespace {

// A listening socket and a client connected to it; closes both.
struct Connection {
  int listener = -1, client = -1, accepted = -1;
  std::string client_address;  // "127.0.0.1:P" or "[::1]:P"
  std::string server_address;
  std::uint16_t server_port = 0;
  ~Connection() {
    for (int fd : {listener, client, accepted}) {
      if (fd >= 0) {
        ::close(fd);
      }
    }
  }
};

bool Connect(Connection& c, bool v6) {
  const int family = v6 ? AF_INET6 : AF_INET;
  c.listener = ::socket(family, SOCK_STREAM, 0);
  c.client = ::socket(family, SOCK_STREAM, 0);
  sockaddr_storage storage{};
  socklen_t length = 0;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&storage);
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    length = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&storage);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    length = sizeof(*a);
  }
  auto* address = reinterpret_cast<sockaddr*>(&storage);
  if (::bind(c.listener, address, length) != 0 || ::listen(c.listener, 1) != 0 ||
      ::getsockname(c.listener, address, &length) != 0 || ::connect(c.client, address, length) != 0) {
    return false;
  }
  c.accepted = ::accept(c.listener, nullptr, nullptr);
  c.server_port = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port
                           : reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
  sockaddr_storage mine{};
  socklen_t mine_length = sizeof(mine);
  if (::getsockname(c.client, reinterpret_cast<sockaddr*>(&mine), &mine_length) != 0) {
    return false;
  }
  c.server_address = v6 ? fmt::format("[::1]:{}", c.server_port) : fmt::format("127.0.0.1:{}", c.server_port);
  c.client_address = v6 ? fmt::format("[::1]:{}", ntohs(reinterpret_cast<sockaddr_in6*>(&mine)->sin6_port))
                        : fmt::format("127.0.0.1:{}", ntohs(reinterpret_cast<sockaddr_in*>(&mine)->sin_port));
  return c.accepted >= 0;
}

// Both ways of asking: netlink (with /proc behind it) and /proc alone.
TEST(LoopbackPeer, FindsTheUidOfAnIpv4Client) {
  Connection c;
  ASSERT_TRUE(Connect(c, false));
  for (auto* lookup : {&LoopbackPeerUid, &LoopbackPeerUidFromProc}) {
    const auto uid = lookup(c.client_address, c.server_address);
    ASSERT_TRUE(uid) << c.client_address;
    EXPECT_EQ(*uid, ::getuid());
  }
}

TEST(LoopbackPeer, FindsTheUidOfAnIpv6Client) {
  Connection c;
  if (!Connect(c, true)) {
    GTEST_SKIP() << "no IPv6 loopback here";
  }
  for (auto* lookup : {&LoopbackPeerUid, &LoopbackPeerUidFromProc}) {
    const auto uid = lookup(c.client_address, c.server_address);
    ASSERT_TRUE(uid) << c.client_address;
    EXPECT_EQ(*uid, ::getuid());
  }
}

TEST(LoopbackPeer, FindsNothingForAnotherPortOrAMalformedAddress) {
  Connection c;
  ASSERT_TRUE(Connect(c, false));
  const std::string other_port = fmt::format("127.0.0.1:{}", c.server_port + 1);
  for (auto* lookup : {&LoopbackPeerUid, &LoopbackPeerUidFromProc}) {
    EXPECT_FALSE(lookup(c.client_address, other_port));
    EXPECT_FALSE(lookup("127.0.0.1", c.server_address));
    EXPECT_FALSE(lookup("not-an-address:80", c.server_address));
    EXPECT_FALSE(lookup("127.0.0.1:99999", c.server_address));
  }
}

TEST(LoopbackPeer, NamesUsersFromThePasswdDatabase) {
  EXPECT_EQ(UserName(0), "root");
  EXPECT_EQ(UserName(4'000'000'000u), "uid 4000000000");
}

}  // namespace
}  // namespace lifeline::gateway
