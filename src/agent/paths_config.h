#pragma once
// Config of how the agent reaches home: endpoints and connection paths (direct, HTTP or SOCKS proxies).
#include "common/config.h"
#include "transport/http_client.h"

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace lifeline::agent {

/// One `[[paths]]` table: a way out of the customer's network.
struct PathConfig {
  std::string kind = "direct";  // direct | http | socks4 | socks5
  std::string proxy;            // host:port of the proxy ("[::1]:1080" for IPv6)
  std::string username;         // optional: CONNECT basic authentication, SOCKS5 user/password
  std::string password;         // a secret: password, password_file or password_env
  std::string proxy_ca_file;    // optional: CA of a TLS-inspecting proxy, trusted for the transport
};

struct PathsConfig {
  std::vector<std::string> fallback_urls;  // disaster-recovery homes, tried after home.url
  std::vector<PathConfig> paths;           // in order of preference; none means direct
  std::chrono::seconds retry_preferred_after{300};

  static constexpr std::size_t kMaxPaths = 3;
  static constexpr std::size_t kMaxEndpoints = 4;
};

void DeclarePathOptions(config::Schema& schema, PathsConfig& paths);

/// Checks what the schema cannot: at most three paths, a proxy address for proxy kinds and none for
/// direct, no password without a username, readable proxy CA files, https fallback URLs.
/// Throws config::ConfigError "FILE: key 'paths[1].proxy': reason".
void ValidatePathOptions(const PathsConfig& paths, const std::string& home_url,
                         const std::filesystem::path& file);

/// The configured paths as transport settings, in order; a single direct path when none is set.
std::vector<transport::ProxySettings> ProxyPaths(const PathsConfig& paths);

/// home.url, then home.fallback_urls.
std::vector<std::string> HomeEndpoints(const PathsConfig& paths, const std::string& home_url);

}  // namespace lifeline::agent
