#include "home/home_config.h"

#include "common/ports.h"

#include <fmt/format.h>

namespace lifeline::home {

protocol::Severity HomeConfig::TicketMinSeverity() const {
  return protocol::ParseSeverity(ticket_min_severity).value_or(protocol::Severity::kError);
}

config::Schema HomeConfig::MakeSchema() {
  using std::chrono::seconds;
  if (ingest_listen.empty()) {
    ingest_listen = fmt::format("0.0.0.0:{}", ports::kHomeIngest);
  }
  if (admin_listen.empty()) {
    admin_listen = fmt::format("127.0.0.1:{}", ports::kHomeAdmin);
  }
  if (tunnel_listen.empty()) {
    tunnel_listen = fmt::format("0.0.0.0:{}", ports::kHomeTunnel);
  }
  if (sessions_listen.empty()) {
    sessions_listen = fmt::format("127.0.0.1:{}", ports::kHomeSessions);
  }
  if (smtp.url.empty()) {
    smtp.url = fmt::format("smtp://localhost:{}", ports::kSmtp);
    smtp.from = "lifeline@localhost";
  }
  config::Schema schema;
  schema.String("listen.ingest", &ingest_listen, "host:port for agents (HTTPS, mutual TLS); port 0 picks one")
      .String("listen.admin", &admin_listen, "host:port for the admin API; keep it on loopback or an internal network")
      .String("listen.tunnel", &tunnel_listen, "host:port for gateways' tunnels (TLS, mutual certificates)")
      .String("listen.sessions", &sessions_listen,
              "host:port for engineers' remote-session connections (`lifeline connect`); like the admin API, "
              "keep it on loopback or an internal network")
      .Bool("remote_access.enabled", &remote_access,
            "false: no tunnel or sessions listener (the home only ingests)")
      .String("listen.address_file", &address_file,
              "write the addresses actually bound to this file as JSON (useful with port 0)")
      .String("pki.dir", &pki_dir,
              "directory made by `lifeline pki init` (ca.crt, ca.key, home.crt, home.key, home-seal.key, home-sign.key)")
      .Choice("store.backend", &store_backend, {"sqlite", "postgresql"},
              "where the home keeps its data: an embedded SQLite file, or a PostgreSQL database that several "
              "home processes can share")
      .String("store.path", &store_path, "SQLite database file (store.backend = \"sqlite\")")
      .Secret("store.postgresql.url", &store_postgresql_url,
              "libpq connection string or URI (store.backend = \"postgresql\"), e.g. "
              "\"postgresql://lifeline@db.example/lifeline?sslmode=verify-full\" or "
              "\"host=/run/postgresql dbname=lifeline\"; holds the password, so prefer _file or _env")
      .Int("store.postgresql.pool_size", &store_postgresql_pool_size, 1, 64,
           "most PostgreSQL connections this home opens (requests, notifier and maintenance share them)")
      .Int("ingest.max_body_bytes", &max_body_bytes, 1024, 64 * 1024 * 1024, "largest accepted request body")
      .Duration("ingest.max_clock_skew", &max_clock_skew, seconds(5), std::chrono::hours(24),
                "largest accepted difference between a batch's send time and the home's clock")
      .Choice("ingest.ticket_min_severity", &ticket_min_severity, {"info", "warning", "error", "critical"},
              "alerts at or above this severity open tickets")
      .Int("ingest.worker_threads", &worker_threads, 1, 64, "threads running store work for requests")
      .Bool("ingest.require_client_certificate", &require_client_certificate,
            "refuse batches without the device's TLS client certificate; set false only for agents behind "
            "TLS-inspecting proxies (the device is then identified by its batch signature alone)")
      .Int("enrollment.certificate_days", &certificate_days, 1, 3650, "validity of device certificates")
      .String("smtp.url", &smtp.url, "smtp://host:port (STARTTLS when offered) or smtps://host:port")
      .String("smtp.from", &smtp.from, "sender address of notification emails")
      .String("smtp.username", &smtp.username, "SMTP AUTH user name (empty: no authentication)")
      .Secret("smtp.password", &smtp.password, "SMTP AUTH password")
      .Choice("smtp.starttls", &smtp_starttls, {"opportunistic", "required", "off"},
              "STARTTLS on smtp:// URLs")
      .String("smtp.ca_file", &smtp.ca_file, "CA bundle to verify the mail server (empty: system store)")
      .StringList("notify.email", &email_contacts, "addresses that get an email for every new ticket")
      .Duration("notify.retry_max", &notify_retry_max, seconds(10), std::chrono::hours(24),
                "longest wait between attempts to deliver a notification");
  notify::AddNotifySchema(schema, notify);
  schema
      .Duration("tickets.reopen_window", &reopen_window, seconds(0), std::chrono::hours(24 * 90),
                "a resolved ticket whose alert comes back within this long is reopened instead of a new one "
                "opening (0: always a new one); a closed ticket never reopens")
      .TableArray<DedupRule>(
          "tickets.dedup", &dedup,
          [](config::Schema& s, DedupRule& rule) {
            s.String("code", &rule.code, "glob on the alert code (* and ?, any case); the first matching rule wins")
                .String("key", &rule.key,
                        "deduplication key template: alerts with one key share one open ticket; placeholders "
                        "{device} (customer/site/serial), {site} (customer/site), {customer}, {serial}, {model}, "
                        "{code}; must name {device}, {site} or {customer}");
          },
          "deduplication rules by alert code (default for every code: \"{device}/{code}\")")
      .Int("tickets.storm.max_alerts", &storm_max_alerts, 0, 1'000'000,
           "storm control: more than this many ticket-worthy alerts from one device within tickets.storm.window "
           "put it into automatic maintenance with one summary ticket (0: off)")
      .Duration("tickets.storm.window", &storm_window, seconds(1), std::chrono::hours(24 * 7),
                "storm control: the span alerts are counted over")
      .Duration("tickets.storm.maintenance", &storm_maintenance, seconds(1), std::chrono::hours(24 * 7),
                "storm control: how long the automatic maintenance lasts (it starts again while the device stays loud)")
      .Duration("tickets.escalation_check", &escalation_check, seconds(1), std::chrono::hours(1),
                "how often the escalation job looks for unacknowledged tickets due for the next level or a reminder");
  DeclareHeartbeatConfig(schema, heartbeats);
  DeclareRetentionConfig(schema, retention);
  return schema;
}

HomeConfig HomeConfig::Load(const std::filesystem::path& file) {
  HomeConfig config;
  auto schema = config.MakeSchema();
  schema.Load(file);
  if (config.store_backend == "postgresql" && config.store_postgresql_url.empty()) {
    throw config::ConfigError(fmt::format(
        "{}: key 'store.postgresql.url': required when store.backend = \"postgresql\" (or set "
        "store.postgresql.url_file / store.postgresql.url_env)",
        file.string()));
  }
  config.compiled_notify = notify::CompileNotifyConfig(config.notify, file.string());
  CheckDedupRules(config.dedup, file.string());
  config.smtp.starttls =
      config.smtp_starttls == "required" ? transport::SmtpSettings::Tls::kRequired
      : config.smtp_starttls == "off"    ? transport::SmtpSettings::Tls::kOff
                                         : transport::SmtpSettings::Tls::kOpportunistic;
  return config;
}

}  // namespace lifeline::home
