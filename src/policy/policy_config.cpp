#include "policy/policy_config.h"

#include "common/ports.h"

#include <fmt/format.h>

#include <charconv>

namespace lifeline::policy {
namespace {

/// "host:port" or "[v6]:port" with a numeric port 0..65535 and a non-empty host.
bool IsHostPort(std::string_view listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == listen.size()) {
    return false;
  }
  const std::string_view host = listen.substr(0, colon);
  if (host.front() == '[' && host.back() != ']') {
    return false;
  }
  if (host.front() != '[' && host.find(':') != std::string_view::npos) {
    return false;  // a bare IPv6 literal: ambiguous without brackets
  }
  unsigned port = 0;
  const std::string_view digits = listen.substr(colon + 1);
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  return ec == std::errc() && end == digits.data() + digits.size() && port <= 65535;
}

void Validate(const PolicyConfig& config, const std::string& origin) {
  auto fail = [&origin](std::string_view key, const std::string& why) {
    throw config::ConfigError(fmt::format("{}: key '{}': {}", origin, key, why));
  };
  if (!IsHostPort(config.https_listen)) {
    fail("listen.https", fmt::format("'{}' is not host:port", config.https_listen));
  }
  if (!config.http_listen.empty()) {
    if (!IsHostPort(config.http_listen)) {
      fail("listen.http", fmt::format("'{}' is not host:port", config.http_listen));
    }
    // Passwords and tokens cross this port in clear: it must never face the network.
    if (!IsLoopbackListen(config.http_listen)) {
      fail("listen.http",
           fmt::format("'{}' is not a loopback address; plain HTTP is only allowed on 127.0.0.1, [::1] "
                       "or localhost (use listen.https for everything else)",
                       config.http_listen));
    }
  }
  for (const auto& site : config.gateway_sites) {
    const auto slash = site.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == site.size() ||
        site.find('/', slash + 1) != std::string::npos) {
      fail("gateways.sites", fmt::format("'{}' is not customer/site", site));
    }
  }
  if (config.store_backend == "postgresql" && config.store_postgresql_url.empty()) {
    fail("store.postgresql.url",
         "required when store.backend = \"postgresql\" (or set store.postgresql.url_file / "
         "store.postgresql.url_env)");
  }
  if (config.data_dir.empty()) {
    fail("policy.data_dir", "must not be empty");
  }
  for (const auto& address : config.approvals_notify) {
    if (address.find('@') == std::string::npos || address.find_first_of(" \t\r\n<>,;") != std::string::npos) {
      fail("approvals.notify", fmt::format("'{}' is not a plain email address (name@domain)", address));
    }
  }
  if (!config.approvals_notify.empty() && (config.smtp_url.empty() || config.smtp_from.empty())) {
    fail("smtp.url", "approvals.notify needs smtp.url and smtp.from");
  }
}

}  // namespace

bool IsLoopbackListen(std::string_view listen) {
  return listen.starts_with("127.") || listen.starts_with("[::1]:") || listen.starts_with("localhost:");
}

std::filesystem::path PolicyConfig::StorePath() const {
  return store_path.empty() ? std::filesystem::path(data_dir) / "policy.db" : std::filesystem::path(store_path);
}
std::filesystem::path PolicyConfig::CertFile() const {
  return cert_file.empty() ? std::filesystem::path(data_dir) / "policy.crt" : std::filesystem::path(cert_file);
}
std::filesystem::path PolicyConfig::KeyFile() const {
  return key_file.empty() ? std::filesystem::path(data_dir) / "policy.key" : std::filesystem::path(key_file);
}

transport::SmtpSettings PolicyConfig::Smtp() const {
  transport::SmtpSettings smtp;
  smtp.url = smtp_url;
  smtp.from = smtp_from;
  smtp.username = smtp_username;
  smtp.password = smtp_password;
  smtp.starttls = smtp_starttls == "required" ? transport::SmtpSettings::Tls::kRequired
                  : smtp_starttls == "off"    ? transport::SmtpSettings::Tls::kOff
                                              : transport::SmtpSettings::Tls::kOpportunistic;
  smtp.ca_file = smtp_ca_file;
  smtp.timeout = smtp_timeout;
  return smtp;
}

config::Schema PolicyConfig::MakeSchema() {
  using std::chrono::hours;
  using std::chrono::seconds;
  if (https_listen.empty()) {
    https_listen = fmt::format("0.0.0.0:{}", ports::kPolicyHttps);
  }
  config::Schema schema;
  schema.String("policy.data_dir", &data_dir, "policy.db and, unless tls.* says otherwise, policy.crt/policy.key")
      .String("listen.https", &https_listen, "host:port of the HTTPS API (gateways, browsers, `lifeline policy`)")
      .String("listen.http", &http_listen,
              fmt::format("host:port of an optional plain HTTP API, e.g. 127.0.0.1:{}; loopback addresses only; "
                          "empty (the default): none",
                          ports::kPolicyHttp))
      .Int("listen.worker_threads", &worker_threads, 2, 1024,
           "HTTPS request handlers; each gateway's watch (long poll) holds one for up to 25 s, so allow "
           "the number of gateways plus a few for users")
      .String("tls.cert_file", &cert_file, "the server certificate chain, PEM (default data_dir/policy.crt)")
      .String("tls.key_file", &key_file, "its private key, PEM (default data_dir/policy.key)")
      .String("tls.client_ca_file", &client_ca_file,
              "CA that signs the gateways' certificates; empty: no client certificates are asked for")
      .StringList("gateways.sites", &gateway_sites,
                  "\"customer/site\" pairs whose gateways may use the gateway API (e.g. [\"acme/dc1\"]); empty: "
                  "every gateway whose certificate verifies against tls.client_ca_file")
      .Choice("store.backend", &store_backend, {"sqlite", "postgresql"},
              "where users, tokens, policies, approval requests and the audit log live: SQLite files in "
              "data_dir, or a PostgreSQL database that several policy managers can share")
      .String("store.path", &store_path,
              "the SQLite file (store.backend = \"sqlite\"; default data_dir/policy.db; the audit log stays "
              "in data_dir/audit.db)")
      .Secret("store.postgresql.url", &store_postgresql_url,
              "libpq connection string or URI (store.backend = \"postgresql\"), e.g. "
              "\"postgresql://lifeline@db.example/lifeline_policy?sslmode=verify-full\" or "
              "\"host=/run/postgresql dbname=lifeline_policy\"; a database of its own (not the home's); holds "
              "the password, so prefer _file or _env")
      .Int("store.postgresql.pool_size", &store_postgresql_pool_size, 1, 64,
           "most PostgreSQL connections this policy manager opens (request handlers, the expiry and "
           "checkpoint threads share them)")
      .Int("login.min_password_length", &min_password_length, 8, 1024, "shortest password accepted")
      .Int("login.max_failures_per_user", &max_failures_per_user, 1, 1000,
           "wrong passwords for one user name within login.failure_window before it is locked")
      .Int("login.max_failures_per_address", &max_failures_per_address, 1, 100000,
           "wrong passwords from one remote address (any user names) within login.failure_window before "
           "that address is locked")
      .Duration("login.failure_window", &failure_window, seconds(1), hours(24 * 7),
                "how far back wrong passwords count")
      .Duration("login.lockout", &lockout, seconds(1), hours(24 * 7),
                "how long a locked user name or address is refused (even with the right password)")
      .Duration("sessions.lifetime", &session_lifetime, seconds(60), hours(24 * 30),
                "a login's session token expires this long after the login")
      .Duration("sessions.max_token_lifetime", &max_token_lifetime, seconds(60), hours(24 * 3660),
                "the longest expiry an API token may be given")
      .StringList("approvals.notify", &approvals_notify,
                  "addresses that get an email for every approval request (empty: nobody is emailed)")
      .String("approvals.url", &approvals_url,
              "the API's URL as approvers reach it (e.g. https://policy.acme.example:8443), named in the "
              "emails' approve and deny commands; empty: the emails leave --url to the reader")
      .String("smtp.url", &smtp_url, "smtp://host:port (STARTTLS when offered) or smtps://host:port")
      .String("smtp.from", &smtp_from, "sender address of approval emails")
      .String("smtp.username", &smtp_username, "SMTP AUTH user name (empty: no authentication)")
      .Secret("smtp.password", &smtp_password, "SMTP AUTH password")
      .Choice("smtp.starttls", &smtp_starttls, {"opportunistic", "required", "off"}, "STARTTLS on smtp:// URLs")
      .String("smtp.ca_file", &smtp_ca_file, "CA bundle to verify the mail server (empty: system store)")
      .Duration("smtp.timeout", &smtp_timeout, seconds(1), seconds(300), "longest time one email may take to send");
  return schema;
}

PolicyConfig PolicyConfig::Load(const std::filesystem::path& file) {
  PolicyConfig config;
  auto schema = config.MakeSchema();
  schema.Load(file);
  Validate(config, file.string());
  return config;
}

PolicyConfig PolicyConfig::Parse(std::string_view toml, const std::string& origin) {
  PolicyConfig config;
  auto schema = config.MakeSchema();
  schema.LoadString(toml, origin);
  Validate(config, origin);
  return config;
}

}  // namespace lifeline::policy
