#pragma once
// The gateway's local admin interface (docs/gateway.md, "Local admin interface"): HTTPS on a
// loopback address (listen.admin, default 127.0.0.1:9460), for `lifeline gateway devices|sessions`
// on the same host. Nothing here faces the network.
//
// On first start the gateway makes, in data_dir:
//   admin.key, admin.crt  a self-signed certificate for 127.0.0.1, ::1 and localhost (key 0600);
//                         clients pin it (it is their only trust anchor), so no CA is involved
//   admin.token           a random bearer token (0600); whoever can read it administers the gateway
// Every request needs `Authorization: Bearer <token>` (else 401). Parts of the gateway add their
// routes with Route(); unknown paths get a JSON 404, known paths with another method a 405.
#include "common/result.h"
#include "transport/https_server.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace lifeline::gateway {

struct GatewayConfig;

/// A request as a route's handler sees it: authenticated, its path split from its query.
struct AdminRequest {
  const transport::HttpRequest& http;
  std::string path;   // "/v1/devices/SN1" (as sent, not decoded)
  std::string query;  // "limit=10" (after '?', not decoded); "" when none
  /// The path segments after the route's prefix, percent-decoded: {"SN1", "history"} for
  /// "/v1/devices/SN1/history" under "/v1/devices".
  std::vector<std::string> rest;
  std::string actor;  // who is asking: "local:<user>", the user whose process connected (AdminServer)
};

/// Runs on one of the server's worker threads; may block; must be thread-safe.
using AdminHandler = std::function<transport::HttpResponse(const AdminRequest&)>;

struct AdminServerOptions {
  std::string listen = "127.0.0.1:9460";  // must be loopback (GatewayConfig checks)
  std::filesystem::path data_dir;         // admin.key, admin.crt
  std::filesystem::path token_path;       // admin.token
  int worker_threads = 2;
  /// listen.admin, data_dir and AdminTokenPath() of gateway.toml.
  static AdminServerOptions FromConfig(const GatewayConfig& config);
};

/// The certificate clients pin: data_dir/admin.crt.
std::filesystem::path AdminCertificatePath(const std::filesystem::path& data_dir);
std::filesystem::path AdminKeyPath(const std::filesystem::path& data_dir);

/// Makes the admin certificate and key when either is missing (both anew), and the token file when
/// it is missing. Returns the token. Start() calls it; exposed for tests and `gateway run` checks.
[[nodiscard]] Result<std::string> PrepareAdminFiles(const AdminServerOptions& options);

/// {"error": error, "message": message} with `status`.
transport::HttpResponse AdminError(int status, std::string_view error, std::string_view message);
/// A JSON body (already serialised) with `status`.
transport::HttpResponse AdminJson(std::string body, int status = 200);

class AdminServer {
 public:
  /// Prepares the files (PrepareAdminFiles), binds and serves. Errors: those of PrepareAdminFiles
  /// (file system, OpenSSL) and of transport::HttpsServer::Start (kListenFailed when the port is
  /// taken: another gateway runs with this listen.admin).
  [[nodiscard]] static Result<std::unique_ptr<AdminServer>> Start(AdminServerOptions options);
  [[nodiscard]] static Result<std::unique_ptr<AdminServer>> Start(const GatewayConfig& config);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  /// Sends `method` requests whose path is `path_prefix` or under it ("/v1/devices" takes
  /// "/v1/devices" and "/v1/devices/SN1/history", not "/v1/devicesx") to `handler`. The longest
  /// matching prefix wins. May be called at any time, from any thread.
  void Route(std::string method, std::string path_prefix, AdminHandler handler);

  /// "127.0.0.1:41234": the bound address with the real port (listen may say port 0).
  std::string LocalAddress() const;
  std::uint16_t LocalPort() const;
  /// Stops accepting, lets requests in progress finish within `grace`. Idempotent.
  void Stop(std::chrono::milliseconds grace = std::chrono::seconds(2));

 private:
  AdminServer(std::string token_hash);
  transport::HttpResponse Handle(const transport::HttpRequest& request) const;
  /// "local:alice": the user whose process connected from `remote`; "local" if the kernel does not say.
  std::string LocalActor(const std::string& remote) const;

  struct RouteEntry {
    std::string method;
    std::string prefix;
    AdminHandler handler;
  };
  const std::string token_hash_;  // SHA-256 hex of admin.token's content
  mutable std::shared_mutex routes_mutex_;
  std::vector<RouteEntry> routes_;
  std::unique_ptr<transport::HttpsServer> server_;
};

}  // namespace lifeline::gateway
