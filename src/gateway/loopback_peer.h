#pragma once
// Who is on the other end of a loopback TCP connection: the user the kernel says owns the client's
// socket. The gateway's admin interface listens on loopback only and takes one token (admin.token,
// 0600), so the token says that someone with access to that file asked, not who; the kernel's socket
// table does (proc(5): /proc/net/tcp and /proc/net/tcp6 list every socket with its owner's uid). No
// library reads that table, so it is parsed here; its format has been stable for decades.
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lifeline::gateway {

/// The uid owning the socket at `client` ("127.0.0.1:54321" or "[::1]:54321") that is connected to
/// our port `server_port` on this host; nullopt if the kernel's table has no such socket (not a
/// local peer, or it closed) or cannot be read.
std::optional<uid_t> LoopbackPeerUid(std::string_view client, std::uint16_t server_port);

/// "alice" for a uid with a passwd entry, else "uid 1234".
std::string UserName(uid_t uid);

}  // namespace lifeline::gateway
