#include "gateway/gateway_config.h"

#include "common/ports.h"
#include "crypto/pki.h"

#include <fmt/format.h>

#include <algorithm>

namespace lifeline::gateway {

config::Schema GatewayConfig::MakeSchema() {
  using std::chrono::seconds;
  if (home_url.empty()) {
    home_url = fmt::format("https://localhost:{}", ports::kHomeIngest);
  }
  if (devices_listen.empty()) {
    devices_listen = fmt::format("0.0.0.0:{}", ports::kGatewayDevices);
  }
  if (admin_listen.empty()) {
    admin_listen = fmt::format("127.0.0.1:{}", ports::kGatewayAdmin);
  }
  if (identity.model.empty()) {
    identity.model = "lifeline-gateway";
  }
  config::Schema schema;
  schema.RequiredString("gateway.customer", &identity.customer, "customer this gateway belongs to")
      .RequiredString("gateway.site", &identity.site, "site the gateway serves")
      .RequiredString("gateway.name", &identity.serial, "the gateway's name, unique within the site")
      .String("gateway.data_dir", &data_dir, "gateway.db (managed devices, sessions), relay queue, admin token")
      .String("gateway.pki_dir", &pki_dir,
              "the gateway's keys and certificates (default: data_dir/pki); made by `lifeline gateway enroll`")
      .String("home.url", &home_url, "https://host:port of the home's ingest port (relay and enrollment)")
      .StringList("home.tunnel_urls", &tunnel_urls,
                  "the home's tunnel endpoints in order: tls://host:9458, or wss://host:9458/tunnel when a "
                  "proxy passes only WebSocket (default: the home.url host on port 9458)")
      .Int("home.tunnel_connections", &tunnel_connections, 0, 4,
           "tunnels kept open at once, each to its own endpoint (home node) when there are enough; 0 (the "
           "default): one per endpoint, at most two")
      .Duration("home.tunnel_ping", &tunnel_ping_seconds_, seconds(1), seconds(300),
                "keepalive PING interval on the tunnel; the home is declared dead after three without an answer")
      .Duration("home.timeout", &request_timeout, seconds(1), seconds(600), "deadline of one request to the home")
      .String("listen.devices", &devices_listen, "host:port where the site's agents send batches (mutual TLS)")
      .StringList("listen.devices_names", &devices_names,
                  "host names and IP addresses the site's agents use to reach listen.devices; they go into the "
                  "gateway's certificate at `lifeline gateway enroll` (enroll again after changing them)")
      .String("listen.admin", &admin_listen, "host:port of the local admin interface; must be a loopback address")
      .Duration("probe.interval", &probe_interval, seconds(5), std::chrono::hours(24),
                "how often each managed device's registered ports are probed")
      .Duration("probe.timeout", &probe_timeout, seconds(1), seconds(60), "connect timeout of one probe")
      .Int("probe.concurrency", &probe_concurrency, 1, 4096, "probes in flight at once")
      .Duration("relay.wait", &relay_wait, seconds(1), seconds(120),
                "how long a device's request waits for the home's reply before the gateway answers for it")
      .Int("relay.max_queue_mib", &relay_max_queue_mib, 16, 1024 * 1024, "disk the relay queue may use")
      .Bool("remote_access.enabled", &remote_access_enabled,
            "false refuses every remote session at this gateway (the customer's off switch)")
      .Duration("remote_access.session_max", &session_max, seconds(60), std::chrono::hours(72),
                "a session ends this long after it started")
      .Duration("remote_access.idle_timeout", &session_idle, seconds(10), std::chrono::hours(24),
                "a session ends after this long without bytes in either direction")
      .Int("remote_access.max_streams", &max_streams, 1, 100000, "concurrent session streams at this gateway")
      .String("policy.url", &policy_url,
              "https://host:port of the site's policy manager, which decides every remote session (the gateway's "
              "certificate is its client certificate there); without it (and without policy.disabled) every "
              "session is refused")
      .String("policy.ca_file", &policy_ca_file,
              "the CA of the policy manager's server certificate (default: the system's CA bundle)")
      .Bool("policy.disabled", &policy_disabled,
            "true: no policy manager; EVERY session to a registered device and application is allowed (warned "
            "about at every start and recorded in the audit outbox)");
  agent::DeclarePathOptions(schema, paths);
  return schema;
}

namespace {

void Validate(GatewayConfig& config, const std::string& origin) {
  std::string why;
  if (!protocol::IsValidIdentity(config.identity, &why)) {
    throw config::ConfigError(fmt::format("{}: key 'gateway': {}", origin, why));
  }
  if (!config.home_url.starts_with("https://")) {
    throw config::ConfigError(fmt::format("{}: key 'home.url': must start with https://", origin));
  }
  for (const auto& url : config.tunnel_urls) {
    if (!url.starts_with("tls://") && !url.starts_with("wss://")) {
      throw config::ConfigError(
          fmt::format("{}: key 'home.tunnel_urls': '{}' must start with tls:// or wss://", origin, url));
    }
  }
  if (config.tunnel_urls.empty()) {
    // The home.url host on the tunnel port.
    std::string host = config.home_url.substr(std::string("https://").size());
    host = host.substr(0, host.find('/'));
    const auto colon = host.rfind(':');
    if (colon != std::string::npos && host.find(']', colon) == std::string::npos) {
      host.resize(colon);
    }
    config.tunnel_urls.push_back(fmt::format("tls://{}:{}", host, ports::kHomeTunnel));
  }
  if (config.tunnel_connections == 0) {
    config.tunnel_connections = std::min<std::int64_t>(2, static_cast<std::int64_t>(config.tunnel_urls.size()));
  }
  const auto& admin = config.admin_listen;
  if (!admin.starts_with("127.") && !admin.starts_with("[::1]:") && !admin.starts_with("localhost:")) {
    throw config::ConfigError(
        fmt::format("{}: key 'listen.admin': '{}' is not a loopback address; the admin interface never "
                    "faces the network",
                    origin, admin));
  }
  if (config.devices_names.empty() || config.devices_names.size() > crypto::kMaxGatewayServerNames) {
    throw config::ConfigError(fmt::format("{}: key 'listen.devices_names': give 1 to {} names", origin,
                                          crypto::kMaxGatewayServerNames));
  }
  for (const auto& name : config.devices_names) {
    if (!crypto::IsValidServerName(name)) {
      throw config::ConfigError(fmt::format(
          "{}: key 'listen.devices_names': '{}' is not a host name or IP address", origin, name));
    }
  }
  if (!config.policy_url.empty() && !config.policy_url.starts_with("https://")) {
    throw config::ConfigError(fmt::format("{}: key 'policy.url': must start with https://", origin));
  }
  agent::ValidatePathOptions(config.paths, config.home_url, origin);
}

}  // namespace

GatewayConfig GatewayConfig::Load(const std::filesystem::path& file) {
  GatewayConfig config;
  auto schema = config.MakeSchema();
  schema.Load(file);
  config.tunnel_ping_interval = config.tunnel_ping_seconds_;
  Validate(config, file.string());
  return config;
}

GatewayConfig GatewayConfig::Parse(std::string_view toml, const std::string& origin) {
  GatewayConfig config;
  auto schema = config.MakeSchema();
  schema.LoadString(toml, origin);
  config.tunnel_ping_interval = config.tunnel_ping_seconds_;
  Validate(config, origin);
  return config;
}

}  // namespace lifeline::gateway
