#include "agent/agent_config.h"

#include "common/ports.h"

#include <fmt/format.h>

namespace lifeline::agent {

config::Schema AgentConfig::MakeSchema() {
  using std::chrono::seconds;
  if (home_url.empty()) {
    home_url = fmt::format("https://localhost:{}", ports::kHomeIngest);
  }
  config::Schema schema;
  schema.RequiredString("device.customer", &device.customer, "customer this device belongs to")
      .RequiredString("device.site", &device.site, "site (location) of the device")
      .RequiredString("device.serial", &device.serial, "serial number: unique within the site")
      .String("device.model", &device.model, "device model, e.g. \"VSP G900\"")
      .String("home.url", &home_url, "https://host:port of the home (or, later, a gateway)")
      .Duration("home.timeout", &request_timeout, seconds(1), seconds(600), "deadline of one request")
      .String("pki.dir", &pki_dir,
              "ca.crt, home-seal.pub, home-sign.pub from the home; device keys are created here by `agent enroll`")
      .String("state.dir", &state_dir, "where the durable queue (queue.db) lives")
      .Int("send.batch_size", &batch_size, 1, 1000, "messages per batch")
      .Duration("send.retry_min", &retry_min, seconds(1), std::chrono::hours(1), "first retry delay")
      .Duration("send.retry_max", &retry_max, seconds(1), std::chrono::hours(24),
                "longest retry delay; the agent never gives up");
  DeclareSourceOptions(schema, sources);
  DeclareReportOptions(schema, reports);
  DeclarePathOptions(schema, paths);
  DeclareQueueOptions(schema, queue);
  return schema;
}

namespace {

void Validate(const AgentConfig& config, const std::string& origin) {
  std::string why;
  if (!protocol::IsValidIdentity(config.device, &why)) {
    throw config::ConfigError(fmt::format("{}: key 'device': {}", origin, why));
  }
  if (!config.home_url.starts_with("https://")) {
    throw config::ConfigError(fmt::format("{}: key 'home.url': must start with https://", origin));
  }
  if (config.retry_min > config.retry_max) {
    throw config::ConfigError(fmt::format("{}: key 'send.retry_min': must not exceed send.retry_max", origin));
  }
  ValidatePathOptions(config.paths, config.home_url, origin);
  for (const auto& kind : config.queue.review_kinds) {
    if (!protocol::ParseMessageType(kind)) {
      throw config::ConfigError(fmt::format("{}: key 'review.kinds': '{}' is not a message type", origin, kind));
    }
  }
}

}  // namespace

AgentConfig AgentConfig::Load(const std::filesystem::path& file) {
  AgentConfig config;
  auto schema = config.MakeSchema();
  schema.Load(file);
  Validate(config, file.string());
  config.config_path = file.string();
  return config;
}

AgentConfig AgentConfig::Parse(std::string_view toml, const std::string& origin) {
  AgentConfig config;
  auto schema = config.MakeSchema();
  schema.LoadString(toml, origin);
  Validate(config, origin);
  return config;
}

}  // namespace lifeline::agent
