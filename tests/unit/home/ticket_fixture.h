#pragma once
// For the home's ticket parts over the real store (admin API, escalation job): a store on SQLite or
// on PostgreSQL (a private server the test binary starts; register PostgresEnvironment once per
// binary), a fake clock, enrolment and ingest helpers, and a notification plan from TOML.
#include "common/config.h"
#include "home/notify/notify_config.h"
#include "home/ticket_policy.h"
#include "store/sql_home_store.h"
#include "support/fake_clock.h"
#include "support/postgres_server.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace lifeline::home::testing {

/// 2026-01-06 10:00:00 UTC, a Tuesday.
inline std::chrono::system_clock::time_point TestStart() {
  using namespace std::chrono;
  return sys_days(year{2026} / 1 / 6) + hours(10);
}

inline notify::CompiledNotify CompileNotify(const std::string& toml) {
  notify::NotifyConfig config;
  config::Schema schema;
  notify::AddNotifySchema(schema, config);
  schema.LoadString(toml, "home.toml");
  return notify::CompileNotifyConfig(config, "home.toml");
}

class TicketHomeTest : public ::testing::TestWithParam<store::sql::Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == store::sql::Backend::kPostgres) {
      auto* server = lifeline::testing::SharedPostgres();
      ASSERT_NE(server, nullptr) << "the test PostgreSQL server did not start";
      conninfo_ = server->CreateDatabase();
    }
    store_ = OpenStore();
    ASSERT_TRUE(store_);
  }

  std::unique_ptr<store::SqlHomeStore> OpenStore() {
    auto opened = store::SqlHomeStore::Open(store::HomeStoreOptions{.backend = GetParam(),
                                                                   .sqlite_path = dir_.path() / "home.db",
                                                                   .postgres_conninfo = conninfo_,
                                                                   .postgres_pool_size = 4});
    EXPECT_TRUE(opened) << opened.error().message() << ": " << store::sql::LastErrorDetail();
    return opened ? std::move(*opened) : nullptr;
  }

  std::int64_t Now() const { return clock_.NowUnixMillis(); }

  static protocol::DeviceIdentity Device(const std::string& serial = "SN1", const std::string& site = "site-1") {
    return {"ACME", site, serial, "X-200"};
  }

  void Enroll(const protocol::DeviceIdentity& id) {
    const std::string hash = "hash-" + id.Key();
    ASSERT_TRUE(store_->CreateEnrollmentToken(hash, id, Now() + 60'000, Now()));
    ASSERT_TRUE(store_->Enroll({.token_hash = hash,
                                .identity = id,
                                .now_ms = Now(),
                                .device_signing_public_b64 = "a2V5",
                                .cert_fingerprint = "ab",
                                .cert_pem = "pem",
                                .cert_not_after_ms = Now() + 86'400'000}));
  }

  protocol::Message Alert(const std::string& code, protocol::Severity severity = protocol::Severity::kCritical) {
    protocol::Message m;
    m.id = "m-" + std::to_string(++messages_);
    m.type = protocol::MessageType::kAlert;
    m.sequence = messages_;
    m.timestamp_ms = Now();
    m.alert = {code, severity, "disk failing", "test"};
    return m;
  }

  protocol::Message Payload(protocol::MessageType type, std::string json) {
    protocol::Message m;
    m.id = "m-" + std::to_string(++messages_);
    m.type = type;
    m.sequence = messages_;
    m.timestamp_ms = Now();
    m.payload_json = std::move(json);
    return m;
  }

  /// Ingests `messages` from `device` at the clock's now, with `planner` (may be empty).
  protocol::BatchReply Ingest(const protocol::DeviceIdentity& device, std::vector<protocol::Message> messages,
                              store::NotifyPlanner planner = {}) {
    store::IngestRequest r;
    r.batch.batch_id = "b-" + std::to_string(++batches_);
    r.batch.device = device;
    r.batch.sent_at_ms = Now();
    r.batch.messages = std::move(messages);
    r.now_ms = Now();
    r.planner = std::move(planner);
    auto reply = store_->IngestBatch(r);
    EXPECT_TRUE(reply) << reply.error().message();
    return reply ? *reply : protocol::BatchReply{};
  }

  std::vector<store::Notification> Outbox(const std::string& ticket) {
    auto rows = store_->ListNotifications({.ticket_number = ticket, .limit = 1000});
    EXPECT_TRUE(rows);
    std::vector<store::Notification> out = rows ? *rows : std::vector<store::Notification>{};
    std::reverse(out.begin(), out.end());  // oldest first
    return out;
  }

  lifeline::testing::TempDir dir_;
  std::string conninfo_;
  lifeline::testing::FakeClock clock_{TestStart()};
  std::unique_ptr<store::SqlHomeStore> store_;
  int messages_ = 0;
  int batches_ = 0;
};

inline std::string BackendName(const ::testing::TestParamInfo<store::sql::Backend>& info) {
  return info.param == store::sql::Backend::kSqlite ? "SQLite" : "PostgreSQL";
}

}  // namespace lifeline::home::testing
