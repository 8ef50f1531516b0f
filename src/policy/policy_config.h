#pragma once
// policy.toml: everything `lifeline policy run` reads at start-up (`lifeline policy run --help-config`
// lists it). The policy manager answers the customer's gateways and browsers over HTTPS (8443); plain
// HTTP (8090, as ESRS offered it) is allowed only on a loopback address and only when configured.
#include "common/config.h"
#include "transport/mailer.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace lifeline::policy {

struct PolicyConfig {
  // [policy]
  std::string data_dir = "/var/lib/lifeline/policy";  // SQLite files, audit-sign.key, by default the TLS files

  // [listen]
  std::string https_listen;  // default 0.0.0.0:8443
  std::string http_listen;   // empty (default): no plain HTTP; else a loopback address, e.g. 127.0.0.1:8090
  std::int64_t worker_threads = 16;  // HTTPS handlers; each watching gateway holds one for up to wait_s

  // [tls]
  std::string cert_file;       // default data_dir/policy.crt
  std::string key_file;        // default data_dir/policy.key
  std::string client_ca_file;  // CA of the gateways' certificates; empty: no client certificates asked

  // [gateways]
  std::vector<std::string> gateway_sites;  // "customer/site" allowed on /v1/gateway/; empty: any the CA certifies

  // [store] (policy_database.h): "sqlite" (data_dir/policy.db and data_dir/audit.db) or
  // "postgresql" (one database for everything, which several policy managers may share).
  std::string store_backend = "sqlite";
  std::string store_path;  // SQLite: default data_dir/policy.db
  std::string store_postgresql_url;  // libpq connection string or URI; a secret (inline, _file or _env)
  std::int64_t store_postgresql_pool_size = 4;

  // [login]
  std::int64_t min_password_length = 12;
  std::int64_t max_failures_per_user = 5;      // wrong passwords within failure_window before lockout
  std::int64_t max_failures_per_address = 20;  // the same from one remote address, over all names
  std::chrono::seconds failure_window = std::chrono::minutes(15);
  std::chrono::seconds lockout = std::chrono::minutes(15);

  // [sessions]
  std::chrono::seconds session_lifetime = std::chrono::hours(8);  // a login's token
  std::chrono::seconds max_token_lifetime = std::chrono::days(366);  // API tokens: longest --ttl

  // [approvals]
  std::vector<std::string> approvals_notify;  // who gets an email for each approval request
  std::string approvals_url;                  // the API's URL as approvers reach it, named in the emails

  // [smtp] as the home's: where approval emails go out
  std::string smtp_url = "smtp://localhost:25";
  std::string smtp_from = "lifeline-policy@localhost";
  std::string smtp_username;
  std::string smtp_password;  // inline, smtp.password_file or smtp.password_env
  std::string smtp_starttls = "opportunistic";
  std::string smtp_ca_file;
  std::chrono::seconds smtp_timeout{30};

  std::filesystem::path StorePath() const;
  std::filesystem::path CertFile() const;
  std::filesystem::path KeyFile() const;
  /// The [smtp] keys as the mailer takes them.
  transport::SmtpSettings Smtp() const;

  config::Schema MakeSchema();
  /// Loads `file`; throws config::ConfigError naming the file and key.
  static PolicyConfig Load(const std::filesystem::path& file);
  /// Parses TOML text; `origin` names it in errors. Throws config::ConfigError.
  static PolicyConfig Parse(std::string_view toml, const std::string& origin);
};

/// True for "127.x.y.z:port", "[::1]:port" and "localhost:port".
bool IsLoopbackListen(std::string_view listen);

}  // namespace lifeline::policy
