#include "gateway/gateway_service.h"

#include "agent/paths_config.h"
#include "common/log.h"
#include "gateway/admin_devices.h"
#include "gateway/admin_policy.h"
#include "gateway/admin_server.h"
#include "gateway/admin_sessions.h"
#include "gateway/device_registry.h"
#include "gateway/gateway_pki.h"
#include "gateway/policy_cache.h"
#include "gateway/policy_client.h"
#include "gateway/prober.h"
#include "gateway/relay_service.h"
#include "gateway/session_manager.h"
#include "gateway/tunnel_client.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

namespace lifeline::gateway {
namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("gateway"); }

}  // namespace

struct GatewayService::Parts {
  std::unique_ptr<PolicyCache> policy_cache;  // first: the session manager and policy client use it
  std::unique_ptr<DeviceRegistry> registry;
  std::unique_ptr<SessionManager> sessions;
  std::unique_ptr<Prober> prober;
  std::unique_ptr<TunnelClient> tunnel;
  std::unique_ptr<AdminServer> admin;
  std::unique_ptr<RelayService> relay;
  std::unique_ptr<PolicyClient> policy_client;

  // Session limits are checked once a second.
  std::thread sweeper;
  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;

  void StopAll() {
    {
      std::lock_guard lock(mutex);
      stopping = true;
    }
    wake.notify_all();
    if (sweeper.joinable()) {
      sweeper.join();
    }
    if (relay) {
      relay->Stop();
    }
    if (admin) {
      admin->Stop();
    }
    if (tunnel) {
      tunnel->Stop();
    }
    if (policy_client) {
      policy_client->Stop();  // what it has not delivered stays in the outbox for the next start
    }
    if (prober) {
      prober->Stop();
    }
  }
};

Result<std::unique_ptr<GatewayService>> GatewayService::Start(const GatewayConfig& config) {
  auto parts = std::make_unique<Parts>();
  std::error_code ec;
  std::filesystem::create_directories(config.DataDir(), ec);
  std::filesystem::permissions(config.DataDir(), std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::replace, ec);

  auto registry = DeviceRegistry::Open(config.StorePath());
  if (!registry) {
    Log()->error("cannot open the managed devices in {}: {}", config.StorePath().string(), registry.error().message());
    return registry.error();
  }
  parts->registry = std::move(*registry);
  DeviceRegistry* devices = parts->registry.get();

  auto policy_cache = PolicyCache::Open(config.PolicyCachePath());
  if (!policy_cache) {
    return policy_cache.error();
  }
  parts->policy_cache = std::move(*policy_cache);
  PolicyCache* cache = parts->policy_cache.get();
  const GatewayPkiPaths pki(config.PkiDir());

  SessionSettings session_settings;
  session_settings.remote_access_enabled = config.remote_access_enabled;
  session_settings.max_duration = config.session_max;
  session_settings.idle_timeout = config.session_idle;
  session_settings.policy.cache = cache;
  if (config.policy_disabled) {
    session_settings.policy.mode = PolicyMode::kDisabled;
    (void)cache->Append(AuditRecord{
        NewAuditRecordId(), SystemClock::Instance().NowUnixMillis(), "policy_manager_disabled", "local",
        config.identity.Key(),
        boost::json::serialize(boost::json::object{
            {"reason", "[policy] disabled = true in the gateway's configuration: every session is allowed"},
            {"policy_url", config.policy_url}})});
  } else if (config.policy_url.empty()) {
    session_settings.policy.mode = PolicyMode::kNone;
    Log()->warn(
        "no policy manager configured ([policy] url): every remote session is refused. Set [policy] url to the "
        "site's policy manager (or, knowingly, [policy] disabled = true to allow every session).");
  } else {
    session_settings.policy.mode = PolicyMode::kManaged;
    Parts* raw_parts = parts.get();
    session_settings.policy.request_approval = [raw_parts](const ApprovalRequest& request) {
      if (raw_parts->policy_client) {
        raw_parts->policy_client->RequestApproval(request);
      }
    };
    const auto policy = cache->Current();
    Log()->info("remote sessions are decided by the policy manager at {}; cached policy: {}", config.policy_url,
                policy ? fmt::format("version {}", policy->version()) : std::string("none yet (sessions are refused "
                                                                                    "until it answers)"));
  }
  auto sessions = SessionManager::Open(
      config.DataDir() / "sessions.db", session_settings,
      [devices](const std::string& serial, const std::string& app, std::string* why) -> std::optional<SessionTarget> {
        auto target = devices->Lookup(serial, app);
        if (!target) {
          *why = fmt::format("{} (device '{}', application '{}')", target.error().message(), serial, app);
          return std::nullopt;
        }
        return SessionTarget{target->address, target->port, target->model, target->deployed_ms};
      });
  if (!sessions) {
    return sessions.error();
  }
  parts->sessions = std::move(*sessions);
  if (config.policy_disabled) {
    Log()->warn(
        "[policy] disabled = true: there is no policy manager, and EVERY session an engineer asks for to a "
        "registered device and application is allowed without asking anyone at this site. Remote access is {}; "
        "`lifeline gateway remote-access off` refuses every session.",
        parts->sessions->RemoteAccessEnabled() ? "ON" : "off");
  }

  parts->prober = std::make_unique<Prober>(*devices, ProberOptions::FromConfig(config));
  parts->prober->Start();

  if (!std::filesystem::exists(pki.gateway_cert)) {
    Log()->error("no gateway certificate in {}: enroll first with `lifeline gateway enroll --token ...`",
                 pki.dir.string());
    parts->StopAll();
    return std::make_error_code(std::errc::no_such_file_or_directory);
  }
  auto admin = AdminServer::Start(config);
  if (!admin) {
    Log()->error("cannot start the local admin interface on {}: {}", config.admin_listen, admin.error().message());
    parts->StopAll();
    return admin.error();
  }
  parts->admin = std::move(*admin);
  AddDeviceRoutes(*parts->admin, *devices);
  AddSessionRoutes(*parts->admin, *parts->sessions);

  // The site's agents' batches, stored here and forwarded to the home.
  RelayOptions relay_options = RelayService::OptionsFrom(config);
  // Every connect-home upload the gateway relays becomes an audit record (issue 6, item 5), with the
  // time the device handed it over. Audited, not decided: refusing uploads by policy would lose
  // alerts, which the relay exists to prevent.
  PolicyCache* audit_outbox = cache;
  relay_options.on_uploaded = [audit_outbox](const std::string& device, std::int64_t received_at_ms,
                                             std::size_t bytes, std::int64_t attempts) {
    (void)audit_outbox->Append(AuditRecord{
        NewAuditRecordId(), received_at_ms, "connect_home_upload", device, "home",
        boost::json::serialize(boost::json::object{{"bytes", bytes}, {"attempts", attempts}})});
  };
  auto relay = RelayService::Start(std::move(relay_options));
  if (!relay) {
    Log()->error("cannot start the relay on {}: {}", config.devices_listen, relay.error().message());
    parts->StopAll();
    return relay.error();
  }
  parts->relay = std::move(*relay);

  // The policy manager (also when disabled: the audit outbox still goes there when a url is set).
  if (!config.policy_url.empty()) {
    PolicyClientOptions policy_options;
    policy_options.url = config.policy_url;
    policy_options.tls.ca_file = config.policy_ca_file.empty() ? SystemCaBundle() : config.policy_ca_file;
    policy_options.tls.cert_file = pki.gateway_cert.string();
    policy_options.tls.key_file = pki.gateway_key.string();
    SessionManager* session_manager = parts->sessions.get();
    parts->policy_client = PolicyClient::Start(
        policy_options, *cache,
        [session_manager](const ApprovalOutcome& outcome) { session_manager->OnApprovalOutcome(outcome); });
    // A device deployed now is refused until the policy manager answers after it: ask at once rather
    // than after the current long poll (up to watch_wait).
    PolicyClient* client = parts->policy_client.get();
    parts->registry->AddListener([client](const RegistryChange& change) {
      if (change.action == "deploy") {
        client->SyncNow();
      }
    });
  }
  PolicyClient* status_source = parts->policy_client.get();
  AddPolicyRoutes(*parts->admin, session_settings.policy.mode, config.policy_url, *cache,
                  [status_source]() -> std::optional<PolicyClientStatus> {
                    if (status_source == nullptr) {
                      return std::nullopt;
                    }
                    return status_source->Status();
                  });

  // The tunnel last: once it is up, everything a session or an operator needs is running.
  TunnelClientOptions tunnel_options;
  tunnel_options.endpoints = config.tunnel_urls;
  tunnel_options.paths = agent::ProxyPaths(config.paths);
  tunnel_options.ca_file = pki.ca_cert.string();
  tunnel_options.cert_file = pki.gateway_cert.string();
  tunnel_options.key_file = pki.gateway_key.string();
  tunnel_options.connections = static_cast<int>(config.tunnel_connections);
  tunnel_options.ping_interval = config.tunnel_ping_interval;
  tunnel_options.stream_idle_timeout = config.session_idle;
  tunnel_options.max_streams = config.max_streams;
  parts->tunnel = TunnelClient::Start(tunnel_options, TunnelServices{parts->sessions.get(), [devices] {
                                                                       return devices->ReachabilityJson();
                                                                     }});

  Parts* raw = parts.get();
  parts->sweeper = std::thread([raw] {
    std::unique_lock lock(raw->mutex);
    while (!raw->wake.wait_for(lock, std::chrono::seconds(1), [raw] { return raw->stopping; })) {
      lock.unlock();
      raw->sessions->Sweep();
      lock.lock();
    }
  });
  Log()->info("gateway {} started: {} managed device(s); agents' batches on {}; tunnel to {}", config.identity.Key(),
              devices->size(), parts->relay->LocalAddress(), fmt::join(config.tunnel_urls, ", "));
  return std::unique_ptr<GatewayService>(new GatewayService(std::move(parts)));
}

GatewayService::GatewayService(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}
GatewayService::~GatewayService() { Stop(); }

void GatewayService::Stop() {
  if (!parts_) {
    return;
  }
  Log()->info("gateway stopping");
  parts_->StopAll();
  parts_.reset();
  Log()->info("gateway stopped");
}

}  // namespace lifeline::gateway
