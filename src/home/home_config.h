#pragma once
// home.toml: everything `lifeline home` reads at start-up. Each option is declared once, with its default,
// bounds and help, in home_config.cpp (`lifeline home --help-config` prints them).
#include "common/config.h"
#include "home/heartbeat_monitor.h"
#include "home/notify/notify_config.h"
#include "home/retention_job.h"
#include "home/ticket_policy.h"
#include "protocol/message.h"
#include "transport/mailer.h"

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace lifeline::home {

struct HomeConfig {
  std::string ingest_listen;                  // agents: sealed batches and enrollment (mutual TLS)
  std::string admin_listen;                   // engineers: admin API (bearer token)
  std::string address_file;                   // if set, the bound addresses are written here as JSON
  std::string tunnel_listen;                  // gateways' tunnels (mutual TLS, gateway certificates)
  std::string sessions_listen;                // engineers' session connections (WebSocket in TLS, token)
  bool remote_access = true;                  // false: no tunnel or sessions listener
  std::string pki_dir = "/etc/lifeline/pki";
  std::string store_backend = "sqlite";  // or "postgresql"
  std::string store_path = "/var/lib/lifeline/home.db";
  std::string store_postgresql_url;  // libpq connection string or URI; a secret (inline, _file or _env)
  std::int64_t store_postgresql_pool_size = 4;
  std::int64_t max_body_bytes = 1024 * 1024;
  std::chrono::seconds max_clock_skew{300};
  std::string ticket_min_severity = "error";
  std::int64_t certificate_days = 365;
  std::int64_t worker_threads = 2;
  bool require_client_certificate = true;
  transport::SmtpSettings smtp;
  std::string smtp_starttls = "opportunistic";
  std::vector<std::string> email_contacts;
  std::chrono::seconds notify_retry_max{3600};
  notify::NotifyConfig notify;  // [notify.*]: webhooks, SMS, contacts, groups, routes, rotations, escalation
  // [tickets]
  std::chrono::seconds reopen_window = std::chrono::hours(24);
  std::vector<DedupRule> dedup;
  std::int64_t storm_max_alerts = 10;  // the seeds' default: 10 alerts in 60 minutes -> 30 minutes
  std::chrono::seconds storm_window = std::chrono::minutes(60);
  std::chrono::seconds storm_maintenance = std::chrono::minutes(30);
  std::chrono::seconds escalation_check{30};

  /// What Load made of `notify` (checked references, built plan and channels).
  notify::CompiledNotify compiled_notify;

  HeartbeatSettings heartbeats;  // [heartbeats] (home/heartbeat_monitor.h)
  RetentionSettings retention;   // [retention] (home/retention_job.h)

  protocol::Severity TicketMinSeverity() const;
  config::Schema MakeSchema();
  /// Loads `file`; throws config::ConfigError naming the file and key.
  static HomeConfig Load(const std::filesystem::path& file);
};

}  // namespace lifeline::home
