#pragma once
// A real home store on SQLite or on PostgreSQL (a private server the test binary starts), with a fake
// clock and helpers to enroll devices and ingest their messages: for the home's parts that work
// through the store (heartbeat monitor, retention job). TEST_P over both backends.
#include "store/postgres/session.h"
#include "store/sql_home_store.h"
#include "store/sqlite/sql_session.h"
#include "support/fake_clock.h"
#include "support/postgres_server.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace lifeline::home::testing {

using namespace std::chrono_literals;

class HomeStoreFixture : public ::testing::TestWithParam<store::sql::Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == store::sql::Backend::kPostgres) {
      auto* server = lifeline::testing::SharedPostgres();
      ASSERT_NE(server, nullptr) << "the test PostgreSQL server did not start (see above)";
      conninfo_ = server->CreateDatabase();
    }
    store_ = OpenStore();
    ASSERT_TRUE(store_);
  }

  /// Another store on the same database (another home process, on PostgreSQL).
  std::unique_ptr<store::SqlHomeStore> OpenStore() {
    auto opened = store::SqlHomeStore::Open(store::HomeStoreOptions{.backend = GetParam(),
                                                                   .sqlite_path = dir_.path() / "home.db",
                                                                   .postgres_conninfo = conninfo_,
                                                                   .postgres_pool_size = 4});
    EXPECT_TRUE(opened) << opened.error().message() << ": " << store::sql::LastErrorDetail();
    return opened ? std::move(*opened) : nullptr;
  }

  std::int64_t Now() const { return clock_.NowUnixMillis(); }

  static protocol::DeviceIdentity Device(const std::string& serial, const std::string& site = "site-1") {
    return {"ACME", site, serial, "X-200"};
  }

  void Enroll(const protocol::DeviceIdentity& id) {
    const std::string hash = "hash-" + id.Key();
    ASSERT_TRUE(store_->CreateEnrollmentToken(hash, id, Now() + 60'000, Now()));
    auto enrolled = store_->Enroll({.token_hash = hash,
                                    .identity = id,
                                    .now_ms = Now(),
                                    .device_signing_public_b64 = "c2lnbmluZy1rZXk=",
                                    .cert_fingerprint = "ab12cd34",
                                    .cert_pem = "-----BEGIN CERTIFICATE-----\n",
                                    .cert_not_after_ms = Now() + 86'400'000});
    ASSERT_TRUE(enrolled) << enrolled.error().message();
  }

  protocol::Message Message(protocol::MessageType type, std::string payload_json = "") {
    protocol::Message m;
    m.id = "m-" + std::to_string(++message_counter_);
    m.type = type;
    m.sequence = message_counter_;
    m.timestamp_ms = Now();
    m.payload_json = std::move(payload_json);
    return m;
  }

  protocol::Message Heartbeat(std::int64_t interval_s) {
    auto m = Message(protocol::MessageType::kHeartbeat);
    m.heartbeat.interval_seconds = interval_s;
    m.heartbeat.status = "ok";
    return m;
  }

  protocol::Message Alert(const std::string& code, protocol::Severity severity,
                          protocol::MessageType type = protocol::MessageType::kAlert) {
    auto m = Message(type);
    m.alert.code = code;
    m.alert.severity = severity;
    m.alert.text = "disk failing";
    return m;
  }

  /// Ingests `messages` from `device` at the clock's time, as the ingest handler does.
  store::IngestRequest Request(const protocol::DeviceIdentity& device, std::vector<protocol::Message> messages) {
    store::IngestRequest request;
    request.batch.batch_id = "b-" + std::to_string(++batch_counter_);
    request.batch.device = device;
    request.batch.sent_at_ms = Now();
    request.batch.messages = std::move(messages);
    request.now_ms = Now();
    request.contacts = {"oncall@vendor.example"};
    return request;
  }
  protocol::BatchReply Ingest(const store::IngestRequest& request, store::SqlHomeStore* store = nullptr) {
    auto reply = (store ? store : store_.get())->IngestBatch(request);
    EXPECT_TRUE(reply) << reply.error().message();
    return reply ? *reply : protocol::BatchReply{};
  }

  std::vector<store::Ticket> Tickets(std::string_view code, std::optional<store::TicketState> state = {}) {
    auto tickets = store_->ListTickets({.state = state, .code = std::string(code), .limit = 10000});
    EXPECT_TRUE(tickets) << tickets.error().message();
    return tickets ? *tickets : std::vector<store::Ticket>{};
  }

  lifeline::testing::TempDir dir_;
  lifeline::testing::FakeClock clock_{std::chrono::system_clock::time_point(1'800'000'000s)};
  std::string conninfo_;
  std::unique_ptr<store::SqlHomeStore> store_;
  int message_counter_ = 0;
  int batch_counter_ = 0;
};

inline std::string BackendName(const ::testing::TestParamInfo<store::sql::Backend>& info) {
  return info.param == store::sql::Backend::kSqlite ? "SQLite" : "PostgreSQL";
}

}  // namespace lifeline::home::testing
