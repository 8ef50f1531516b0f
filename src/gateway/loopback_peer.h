#pragma once
// Who is on the other end of a loopback TCP connection: the user the kernel says owns the client's
// socket. The gateway's admin interface listens on loopback only and takes one token (admin.token,
// 0600), so the token says that someone with access to that file asked, not who; the kernel knows.
// It is asked for that one socket over netlink (sock_diag(7), what `ss` uses; microseconds, no
// privileges needed); where the kernel has no inet sock_diag, its socket table in /proc/net/tcp and
// /proc/net/tcp6 (proc(5)) is read instead, which costs a scan of every TCP socket on the host. No
// library does either, so both are here; both formats have been stable for a decade and more.
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lifeline::gateway {

/// The uid owning the socket at `client` ("127.0.0.1:54321" or "[::1]:54321") that is connected to
/// `server` (our listening address, "127.0.0.1:9460") on this host; nullopt if the kernel has no
/// such socket (not a local peer, or it closed) or cannot be asked.
std::optional<uid_t> LoopbackPeerUid(std::string_view client, std::string_view server);

/// The same from /proc/net/tcp{,6} alone (the fallback; public for its test).
std::optional<uid_t> LoopbackPeerUidFromProc(std::string_view client, std::string_view server);

/// "alice" for a uid with a passwd entry, else "uid 1234".
std::string UserName(uid_t uid);

}  // namespace lifeline::gateway
