#include "agent/paths_config.h"

#include <fmt/format.h>

#include <system_error>

namespace lifeline::agent {
namespace {

transport::ProxyKind ParseKind(const std::string& kind) {
  if (kind == "http") {
    return transport::ProxyKind::kHttp;
  }
  if (kind == "socks4") {
    return transport::ProxyKind::kSocks4;
  }
  if (kind == "socks5") {
    return transport::ProxyKind::kSocks5;
  }
  return transport::ProxyKind::kNone;
}

}  // namespace

void DeclarePathOptions(config::Schema& schema, PathsConfig& paths) {
  schema
      .StringList("home.fallback_urls", &paths.fallback_urls,
                  "https URLs of disaster-recovery homes, tried in order after home.url when it cannot be "
                  "reached (they must share the primary's PKI and know this device)")
      .Duration("home.retry_preferred_after", &paths.retry_preferred_after, std::chrono::seconds(1),
                std::chrono::hours(24),
                "after a failover, how long before a more preferred path/endpoint is tried again "
                "(the agent moves back as soon as it works)")
      .TableArray<PathConfig>(
          "paths", &paths.paths,
          [](config::Schema& item, PathConfig& path) {
            item.Choice("kind", &path.kind, {"direct", "http", "socks4", "socks5"},
                        "direct, http (CONNECT tunnel; HTTPS stays end to end), socks4 or socks5 "
                        "(the home's name is resolved by the proxy)")
                .String("proxy", &path.proxy, "host:port of the proxy, e.g. \"10.0.0.1:3128\" or \"[::1]:1080\"")
                .String("username", &path.username,
                        "proxy user (basic authentication on CONNECT; SOCKS5 user/password; SOCKS4 user id)")
                .Secret("password", &path.password, "proxy password")
                .String("proxy_ca_file", &path.proxy_ca_file,
                        "PEM CA of a TLS-inspecting proxy, trusted for the transport beside the home CA "
                        "(the sealed payload stays end-to-end protected; the home must then accept "
                        "batches without a client certificate: ingest.require_client_certificate = false)");
          },
          "up to three connection paths, tried in order (none: direct)");
}

void ValidatePathOptions(const PathsConfig& paths, const std::string& home_url,
                         const std::filesystem::path& file) {
  auto fail = [&file](const std::string& key, const std::string& reason) {
    throw config::ConfigError(fmt::format("{}: key '{}': {}", file.string(), key, reason));
  };
  if (paths.paths.size() > PathsConfig::kMaxPaths) {
    fail("paths", fmt::format("{} paths given; at most {} are allowed", paths.paths.size(),
                              PathsConfig::kMaxPaths));
  }
  if (paths.fallback_urls.size() + 1 > PathsConfig::kMaxEndpoints) {
    fail("home.fallback_urls",
         fmt::format("at most {} fallback URLs are allowed", PathsConfig::kMaxEndpoints - 1));
  }
  for (const auto& url : paths.fallback_urls) {
    if (!url.starts_with("https://")) {
      fail("home.fallback_urls", fmt::format("'{}' must start with https://", url));
    }
    if (url == home_url) {
      fail("home.fallback_urls", fmt::format("'{}' is home.url itself", url));
    }
  }
  for (std::size_t i = 0; i < paths.paths.size(); ++i) {
    const PathConfig& path = paths.paths[i];
    const std::string key = fmt::format("paths[{}]", i);
    if (path.kind == "direct") {
      if (!path.proxy.empty() || !path.username.empty() || !path.password.empty() ||
          !path.proxy_ca_file.empty()) {
        fail(key, "a direct path takes no proxy, username, password or proxy_ca_file");
      }
      continue;
    }
    if (path.proxy.empty()) {
      fail(key + ".proxy", fmt::format("required for kind \"{}\" (host:port)", path.kind));
    }
    if (!transport::IsValidProxyAddress(path.proxy)) {
      fail(key + ".proxy",
           fmt::format("'{}' is not host:port (no scheme, no credentials; IPv6 as [::1]:1080)",
                       path.proxy));
    }
    if (!path.password.empty() && path.username.empty()) {
      fail(key + ".password", "a password needs a username");
    }
    if (path.kind == "socks4" && !path.password.empty()) {
      fail(key + ".password", "SOCKS4 has no passwords (use socks5)");
    }
    if (!path.proxy_ca_file.empty()) {
      std::error_code ec;
      if (!std::filesystem::is_regular_file(path.proxy_ca_file, ec)) {
        fail(key + ".proxy_ca_file", fmt::format("'{}' is not a readable file", path.proxy_ca_file));
      }
    }
  }
}

std::vector<transport::ProxySettings> ProxyPaths(const PathsConfig& paths) {
  std::vector<transport::ProxySettings> result;
  for (const PathConfig& path : paths.paths) {
    transport::ProxySettings settings;
    settings.kind = ParseKind(path.kind);
    if (settings.kind != transport::ProxyKind::kNone) {
      settings.address = path.proxy;
      settings.username = path.username;
      settings.password = path.password;
      settings.ca_file = path.proxy_ca_file;
    }
    result.push_back(std::move(settings));
  }
  if (result.empty()) {
    result.emplace_back();
  }
  return result;
}

std::vector<std::string> HomeEndpoints(const PathsConfig& paths, const std::string& home_url) {
  std::vector<std::string> endpoints{home_url};
  endpoints.insert(endpoints.end(), paths.fallback_urls.begin(), paths.fallback_urls.end());
  return endpoints;
}

}  // namespace lifeline::agent
