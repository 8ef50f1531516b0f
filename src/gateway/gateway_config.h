#pragma once
// gateway.toml: everything `lifeline gateway run` reads at start-up (`lifeline gateway --help-config`
// lists it). Each area declares its keys here once; the file is shared by the gateway's parts
// (managed devices and probes, relay, tunnel and sessions).
#include "agent/paths_config.h"
#include "common/config.h"
#include "protocol/message.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace lifeline::gateway {

struct GatewayConfig {
  // [gateway] The gateway's own identity: it enrolls with the home like a device, with a gateway token.
  protocol::DeviceIdentity identity;  // customer, site, serial (= the gateway's name), model
  std::string data_dir = "/var/lib/lifeline/gateway";  // gateway.db, relay queue, admin token, pki/
  std::string pki_dir;                                  // default: data_dir/pki

  // [home] Where the home is: its ingest URL (relay, enrollment) and its tunnel endpoints.
  std::string home_url;                  // https://home:9455
  std::vector<std::string> tunnel_urls;  // tls://home:9458 or wss://home:9458/tunnel, in order
  std::int64_t tunnel_connections = 0;   // tunnels kept at once; 0: one per endpoint, at most two
  std::chrono::milliseconds tunnel_ping_interval{20000};
  std::chrono::seconds request_timeout{30};
  agent::PathsConfig paths;  // [[paths]] and home.fallback_urls: the agent's connection paths

  // [listen]
  std::string devices_listen;  // device-facing HTTPS (mutual TLS), default 0.0.0.0:9459
  // Names the site's agents reach devices_listen by: DNS/IP SANs of gateway.crt (asked for at enrollment).
  std::vector<std::string> devices_names = {"localhost", "127.0.0.1"};
  std::string admin_listen;    // local admin interface, default 127.0.0.1:9460 (loopback only)

  // [probe] Reachability of each managed device's registered ports.
  std::chrono::seconds probe_interval{60};
  std::chrono::seconds probe_timeout{3};
  std::int64_t probe_concurrency = 64;

  // [relay] Batches from the site's agents, stored here and forwarded to the home.
  std::chrono::seconds relay_wait{10};  // how long a device's request waits for the home's reply
  std::int64_t relay_max_queue_mib = 1024;

  // [remote_access]
  bool remote_access_enabled = true;
  std::chrono::seconds session_max = std::chrono::hours(8);
  std::chrono::seconds session_idle = std::chrono::minutes(30);
  std::int64_t max_streams = 10000;

  // [policy] Who decides remote sessions: the site's policy manager. Neither url nor disabled: every
  // session is refused. The gateway's enrolled certificate is its client certificate there.
  std::string policy_url;      // https://policy.example:8443
  std::string policy_ca_file;  // the policy manager's CA; empty: the system's CA bundle
  bool policy_disabled = false;  // true: no policy manager, every session allowed (warned, audited)
  std::filesystem::path PolicyCachePath() const { return std::filesystem::path(data_dir) / "policy.db"; }

  std::filesystem::path DataDir() const { return data_dir; }
  std::filesystem::path PkiDir() const {
    return pki_dir.empty() ? std::filesystem::path(data_dir) / "pki" : std::filesystem::path(pki_dir);
  }
  std::filesystem::path StorePath() const { return std::filesystem::path(data_dir) / "gateway.db"; }
  std::filesystem::path AdminTokenPath() const { return std::filesystem::path(data_dir) / "admin.token"; }

  std::chrono::seconds tunnel_ping_seconds_{20};  // what home.tunnel_ping says (whole seconds)

  config::Schema MakeSchema();
  /// Loads `file`; throws config::ConfigError naming the file and key.
  static GatewayConfig Load(const std::filesystem::path& file);
  /// Parses TOML text; `origin` names it in errors. Throws config::ConfigError.
  static GatewayConfig Parse(std::string_view toml, const std::string& origin);
};

}  // namespace lifeline::gateway
