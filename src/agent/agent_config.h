#pragma once
// agent.toml: everything `lifeline agent` reads at start-up (`lifeline agent --help-config` lists it).
#include "common/config.h"
#include "protocol/message.h"

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace lifeline::agent {

struct WatchedLog {
  std::string path;
  bool from_beginning = false;  // first start only: read what the file already holds
};

struct RuleConfig {
  std::string name;
  std::string pattern;
  std::string code;
  std::string severity = "error";
  std::string message = "{line}";
};

struct AgentConfig {
  protocol::DeviceIdentity device;
  std::string home_url;
  std::chrono::seconds request_timeout{30};
  std::string pki_dir = "/var/lib/lifeline/agent/pki";
  std::string state_dir = "/var/lib/lifeline/agent";
  std::chrono::seconds heartbeat_interval{6 * 3600};
  std::int64_t batch_size = 100;
  std::chrono::seconds retry_min{1};
  std::chrono::seconds retry_max{300};
  std::int64_t poll_interval_ms = 250;
  std::vector<WatchedLog> logs;
  std::vector<RuleConfig> rules;

  std::filesystem::path QueuePath() const { return std::filesystem::path(state_dir) / "queue.db"; }
  config::Schema MakeSchema();
  /// Loads `file`; throws config::ConfigError naming the file and key.
  static AgentConfig Load(const std::filesystem::path& file);
};

/// The agent's PKI directory: public material copied from the home, and the device's own keys.
struct AgentPkiPaths {
  explicit AgentPkiPaths(const std::filesystem::path& dir)
      : ca_cert(dir / "ca.crt"),
        home_seal_public(dir / "home-seal.pub"),
        home_sign_public(dir / "home-sign.pub"),
        device_key(dir / "device.key"),
        device_cert(dir / "device.crt"),
        device_sign_key(dir / "device-sign.key") {}
  std::filesystem::path ca_cert, home_seal_public, home_sign_public, device_key, device_cert,
      device_sign_key;
};

}  // namespace lifeline::agent
