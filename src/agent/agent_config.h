#pragma once
// agent.toml: everything `lifeline agent` reads at start-up (`lifeline agent --help-config` lists it).
#include "agent/paths_config.h"
#include "agent/queue_config.h"
#include "agent/reports_config.h"
#include "agent/sources_config.h"
#include "common/config.h"
#include "protocol/message.h"

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace lifeline::agent {

struct AgentConfig {
  protocol::DeviceIdentity device;
  std::string home_url;
  std::chrono::seconds request_timeout{30};
  std::string pki_dir = "/var/lib/lifeline/agent/pki";
  std::string state_dir = "/var/lib/lifeline/agent";
  std::int64_t batch_size = 100;
  std::chrono::seconds retry_min{1};
  std::chrono::seconds retry_max{300};
  // Each area declares its own keys (sources_config.cpp, reports_config.cpp, paths_config.cpp,
  // queue_config.cpp); the TOML file is still one.
  SourcesConfig sources;
  ReportsConfig reports;
  PathsConfig paths;
  QueueConfig queue;

  std::filesystem::path QueuePath() const { return std::filesystem::path(state_dir) / "queue.db"; }
  config::Schema MakeSchema();
  /// The file this config was loaded from (where a configuration from home is written).
  std::string config_path;

  /// Loads `file`; throws config::ConfigError naming the file and key.
  static AgentConfig Load(const std::filesystem::path& file);
  /// Parses and validates TOML text; `origin` names it in errors. Throws config::ConfigError.
  static AgentConfig Parse(std::string_view toml, const std::string& origin);
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
