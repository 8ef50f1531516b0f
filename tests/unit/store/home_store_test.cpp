// The home store's suite. Every test runs on both backends (TEST_P over SQLite and PostgreSQL): the
// same behaviour is the contract of SqlHomeStore. PostgreSQL is a real server this binary starts
// (tests/support/postgres_server.h), with a fresh database per test.
#include "store/sql_home_store.h"

#include "common/clock.h"
#include "store/home_schema.h"
#include "store/postgres/session.h"
#include "store/sql/migrate.h"
#include "store/sqlite/database.h"
#include "store/sqlite/home_store.h"
#include "store/sqlite/sql_session.h"
#include "support/postgres_server.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <map>
#include <regex>
#include <set>
#include <thread>

namespace lifeline::store {
namespace {

using protocol::Message;
using protocol::MessageStatus;
using protocol::MessageType;
using protocol::Severity;

constexpr std::int64_t kNow = 1'800'000'000'000;  // 2027-01-15, any fixed time will do

protocol::DeviceIdentity Device(std::string serial = "SN123") {
  return {"ACME", "site-1", std::move(serial), "X-200"};
}

Message Alert(std::string id, std::string code, Severity severity,
              std::string text = "disk failing") {
  Message m;
  m.id = std::move(id);
  m.type = MessageType::kAlert;
  m.timestamp_ms = kNow - 5000;
  m.alert.code = std::move(code);
  m.alert.severity = severity;
  m.alert.text = std::move(text);
  m.alert.source = "/var/log/app.log";
  return m;
}

Message Clear(std::string id, std::string code) {
  Message m = Alert(std::move(id), std::move(code), Severity::kInfo, "recovered");
  m.type = MessageType::kClear;
  return m;
}

Message Heartbeat(std::string id, std::int64_t interval_s) {
  Message m;
  m.id = std::move(id);
  m.type = MessageType::kHeartbeat;
  m.timestamp_ms = kNow - 1000;
  m.heartbeat.interval_seconds = interval_s;
  m.heartbeat.status = "ok; queue 0";
  return m;
}

const auto* const postgres_environment =
    ::testing::AddGlobalTestEnvironment(new testing::PostgresEnvironment);

class HomeStoreTest : public ::testing::TestWithParam<sql::Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == sql::Backend::kPostgres) {
      auto* server = testing::SharedPostgres();
      ASSERT_NE(server, nullptr) << "the test PostgreSQL server did not start (see above)";
      conninfo_ = server->CreateDatabase();
    }
    store_ = OpenStore();
    ASSERT_TRUE(store_);
  }

  HomeStoreOptions Options() const {
    return {.backend = GetParam(),
            .sqlite_path = dir_ / "home.db",
            .postgres_conninfo = conninfo_,
            .postgres_pool_size = 4};
  }

  /// Another store on the same database, with its own connections: on PostgreSQL it stands for a
  /// second home process.
  std::unique_ptr<SqlHomeStore> OpenStore() {
    auto opened = SqlHomeStore::Open(Options());
    EXPECT_TRUE(opened) << opened.error().message() << ": " << sql::LastErrorDetail();
    return opened ? std::move(*opened) : nullptr;
  }

  /// A connection of the test's own to the same database, outside any store.
  std::shared_ptr<sql::Database> OpenRaw() {
    auto db = GetParam() == sql::Backend::kSqlite
                  ? sqlite::OpenSqlDatabase(dir_ / "home.db")
                  : postgres::Open({.conninfo = conninfo_, .pool_size = 1});
    EXPECT_TRUE(db) << sql::LastErrorDetail();
    return db ? *db : nullptr;
  }

  /// Row counts of every table, read through a connection of their own: the store's view could hide
  /// uncommitted or rolled-back work, this one only sees what is committed.
  std::map<std::string, std::int64_t> CountRows() {
    auto db = OpenRaw();
    std::map<std::string, std::int64_t> counts;
    if (!db) {
      return counts;
    }
    for (const char* table : {"enrollment_tokens", "devices", "batches", "tickets", "events",
                              "notifications", "admin_tokens"}) {
      auto row = db->WithSession([&](sql::Session& s) {
        return s.QueryRow(std::string("SELECT COUNT(*) FROM ") + table);
      });
      EXPECT_TRUE(row && *row) << table;
      counts[table] = row && *row ? (*row)->Int(0) : -1;
    }
    return counts;
  }

  EnrollmentRequest Enrollment(const std::string& token_hash, const protocol::DeviceIdentity& id,
                               std::int64_t now_ms = kNow) {
    return {.token_hash = token_hash,
            .identity = id,
            .now_ms = now_ms,
            .device_signing_public_b64 = "c2lnbmluZy1rZXk=",
            .cert_fingerprint = "ab12cd34",
            .cert_pem = "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n",
            .cert_not_after_ms = kNow + 86'400'000};
  }

  void EnrollDevice(const protocol::DeviceIdentity& id) {
    const std::string hash = "hash-" + id.Key();
    ASSERT_TRUE(store_->CreateEnrollmentToken(hash, id, kNow + 60'000, kNow));
    auto enrolled = store_->Enroll(Enrollment(hash, id));
    ASSERT_TRUE(enrolled) << enrolled.error().message();
  }

  static IngestRequest Request(std::string batch_id, std::vector<Message> messages,
                               std::int64_t now_ms = kNow,
                               const protocol::DeviceIdentity& device = Device()) {
    IngestRequest request;
    request.batch.batch_id = std::move(batch_id);
    request.batch.device = device;
    request.batch.sent_at_ms = now_ms;
    request.batch.messages = std::move(messages);
    request.now_ms = now_ms;
    request.ticket_min_severity = Severity::kError;
    request.contacts = {"oncall@vendor.example", "lead@vendor.example"};
    return request;
  }

  protocol::BatchReply Ingest(IngestRequest request) {
    auto reply = store_->IngestBatch(request);
    EXPECT_TRUE(reply) << reply.error().message();
    return reply ? *reply : protocol::BatchReply{};
  }

  TicketDetail Ticket(const std::string& number) {
    auto detail = store_->GetTicket(number);
    EXPECT_TRUE(detail && detail->has_value()) << number;
    return detail && detail->has_value() ? **detail : TicketDetail{};
  }

  testing::TempDir dir_;
  std::string conninfo_;
  std::unique_ptr<SqlHomeStore> store_;
};

// ---- Enrollment --------------------------------------------------------------------------------

TEST_P(HomeStoreTest, EnrollConsumesTokenAndRecordsDevice) {
  ASSERT_TRUE(store_->CreateEnrollmentToken("h1", Device(), kNow + 60'000, kNow));
  ASSERT_TRUE(store_->Enroll(Enrollment("h1", Device())));

  auto found = store_->FindDevice("ACME", "site-1", "SN123");
  ASSERT_TRUE(found);
  ASSERT_TRUE(found->has_value());
  const DeviceRecord& device = **found;
  EXPECT_EQ(device.identity, Device());
  EXPECT_EQ(device.identity.model, "X-200");
  EXPECT_EQ(device.status, DeviceStatus::kActive);
  EXPECT_EQ(device.signing_public_b64, "c2lnbmluZy1rZXk=");
  EXPECT_EQ(device.cert_fingerprint, "ab12cd34");
  EXPECT_EQ(device.cert_not_after_ms, kNow + 86'400'000);
  EXPECT_EQ(device.enrolled_at_ms, kNow);
  EXPECT_FALSE(device.last_seen_ms.has_value());

  auto missing = store_->FindDevice("ACME", "site-1", "other");
  ASSERT_TRUE(missing);
  EXPECT_FALSE(missing->has_value());
  auto all = store_->ListDevices();
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 1u);
}

TEST_P(HomeStoreTest, EnrollRejectsUnknownToken) {
  auto enrolled = store_->Enroll(Enrollment("never-issued", Device()));
  EXPECT_EQ(enrolled.error(), Errc::kTokenUnknown);
  EXPECT_EQ(CountRows()["devices"], 0);
}

TEST_P(HomeStoreTest, EnrollRejectsUsedToken) {
  ASSERT_TRUE(store_->CreateEnrollmentToken("h1", Device(), kNow + 60'000, kNow));
  ASSERT_TRUE(store_->Enroll(Enrollment("h1", Device())));
  auto again = store_->Enroll(Enrollment("h1", Device(), kNow + 1));
  EXPECT_EQ(again.error(), Errc::kTokenUsed);
  auto device = store_->FindDevice("ACME", "site-1", "SN123");
  EXPECT_EQ((*device)->enrolled_at_ms, kNow);  // the refused attempt changed nothing
}

TEST_P(HomeStoreTest, EnrollRejectsExpiredToken) {
  ASSERT_TRUE(store_->CreateEnrollmentToken("h1", Device(), kNow + 60'000, kNow));
  EXPECT_EQ(store_->Enroll(Enrollment("h1", Device(), kNow + 60'000)).error(), Errc::kTokenExpired);
  EXPECT_EQ(store_->Enroll(Enrollment("h1", Device(), kNow + 3'600'000)).error(),
            Errc::kTokenExpired);
  EXPECT_EQ(CountRows()["devices"], 0);
  // One millisecond before expiry it is still good.
  EXPECT_TRUE(store_->Enroll(Enrollment("h1", Device(), kNow + 59'999)));
}

TEST_P(HomeStoreTest, EnrollRejectsTokenIssuedForAnotherDevice) {
  ASSERT_TRUE(store_->CreateEnrollmentToken("h1", Device(), kNow + 60'000, kNow));
  for (auto other : {protocol::DeviceIdentity{"OTHER", "site-1", "SN123", "X-200"},
                     protocol::DeviceIdentity{"ACME", "site-2", "SN123", "X-200"},
                     protocol::DeviceIdentity{"ACME", "site-1", "SN999", "X-200"}}) {
    EXPECT_EQ(store_->Enroll(Enrollment("h1", other)).error(), Errc::kTokenIdentityMismatch)
        << other.Key();
  }
  EXPECT_EQ(CountRows()["devices"], 0);
  // The mismatches did not burn the token; the model is descriptive and may differ.
  auto right = Device();
  right.model = "X-300";
  ASSERT_TRUE(store_->Enroll(Enrollment("h1", right)));
  EXPECT_EQ((*store_->FindDevice("ACME", "site-1", "SN123"))->identity.model, "X-300");
}

TEST_P(HomeStoreTest, GatewayTokensEnrollOnlyGatewaysAndDeviceTokensOnlyDevices) {
  const protocol::DeviceIdentity gateway{"ACME", "site-1", "gw-1", "lifeline-gateway"};
  ASSERT_TRUE(store_->CreateEnrollmentToken("g1", gateway, kNow + 60'000, kNow, EnrollmentKind::kGateway));
  ASSERT_TRUE(store_->CreateEnrollmentToken("d1", Device(), kNow + 60'000, kNow));
  // A gateway token presented by a device, and a device token by a gateway: refused, not burnt.
  EXPECT_EQ(store_->Enroll(Enrollment("g1", gateway)).error(), Errc::kTokenIdentityMismatch);
  auto as_gateway = Enrollment("d1", Device());
  as_gateway.kind = EnrollmentKind::kGateway;
  EXPECT_EQ(store_->Enroll(as_gateway).error(), Errc::kTokenIdentityMismatch);
  EXPECT_EQ(CountRows()["devices"], 0);

  auto right = Enrollment("g1", gateway);
  right.kind = EnrollmentKind::kGateway;
  ASSERT_TRUE(store_->Enroll(right));
  ASSERT_TRUE(store_->Enroll(Enrollment("d1", Device())));
  auto found = store_->FindDevice("ACME", "site-1", "gw-1");
  ASSERT_TRUE(found && found->has_value());
  EXPECT_EQ((*found)->kind, EnrollmentKind::kGateway);
  EXPECT_EQ((*store_->FindDevice("ACME", "site-1", "SN123"))->kind, EnrollmentKind::kDevice);
  auto all = store_->ListDevices();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
}

TEST_P(HomeStoreTest, DuplicateTokenHashIsRefused) {
  ASSERT_TRUE(store_->CreateEnrollmentToken("h1", Device(), kNow + 60'000, kNow));
  EXPECT_EQ(store_->CreateEnrollmentToken("h1", Device("SN2"), kNow + 60'000, kNow).error(),
            Errc::kAlreadyExists);
}

TEST_P(HomeStoreTest, TokenIsSingleUseUnderRacingThreads) {
  // Half the rounds share one store (the mutex serialises), half race two connections on one file
  // (SQLite's write lock and the transaction serialise): either way exactly one enrollment wins.
  auto second = OpenStore();
  for (int round = 0; round < 20; ++round) {
    const std::string hash = "race-" + std::to_string(round);
    const auto id = Device("SN-" + std::to_string(round));
    ASSERT_TRUE(store_->CreateEnrollmentToken(hash, id, kNow + 60'000, kNow));
    HomeStore* stores[2] = {store_.get(), round % 2 == 0 ? store_.get() : second.get()};
    std::latch start(2);
    std::atomic<int> wins{0};
    std::atomic<int> used{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&, t] {
        start.arrive_and_wait();
        auto result = stores[t]->Enroll(Enrollment(hash, id, kNow + t));
        if (result) {
          ++wins;
        } else if (result.error() == Errc::kTokenUsed) {
          ++used;
        }
      });
    }
    for (auto& thread : threads) {
      thread.join();
    }
    EXPECT_EQ(wins.load(), 1) << "round " << round;
    EXPECT_EQ(used.load(), 1) << "round " << round;
  }
  EXPECT_EQ(CountRows()["devices"], 20);
}

TEST_P(HomeStoreTest, RevokedDeviceIsRefusedAndReenrollmentReactivates) {
  EnrollDevice(Device());
  EXPECT_EQ(store_->RevokeDevice("ACME", "site-1", "nope").error(), Errc::kDeviceUnknown);
  ASSERT_TRUE(store_->RevokeDevice("ACME", "site-1", "SN123"));
  EXPECT_EQ((*store_->FindDevice("ACME", "site-1", "SN123"))->status, DeviceStatus::kRevoked);
  auto refused = store_->IngestBatch(Request("b1", {Heartbeat("m1", 60)}));
  EXPECT_EQ(refused.error(), Errc::kDeviceRevoked);
  EXPECT_EQ(CountRows()["batches"], 0);

  ASSERT_TRUE(store_->CreateEnrollmentToken("h2", Device(), kNow + 60'000, kNow));
  ASSERT_TRUE(store_->Enroll(Enrollment("h2", Device(), kNow + 10)));
  EXPECT_EQ((*store_->FindDevice("ACME", "site-1", "SN123"))->status, DeviceStatus::kActive);
  EXPECT_TRUE(store_->IngestBatch(Request("b1", {Heartbeat("m1", 60)})));
}

TEST_P(HomeStoreTest, UnknownDeviceIsRefused) {
  auto refused = store_->IngestBatch(Request("b1", {Heartbeat("m1", 60)}));
  EXPECT_EQ(refused.error(), Errc::kDeviceUnknown);
  EXPECT_EQ(CountRows()["batches"], 0);
}

// ---- Ingest ------------------------------------------------------------------------------------

TEST_P(HomeStoreTest, AlertOpensTicketAndQueuesOneEmailPerContact) {
  EnrollDevice(Device());
  auto reply = Ingest(Request("b1", {Alert("m1", "SIM-3A21", Severity::kCritical)}));
  EXPECT_EQ(reply.batch_id, "b1");
  EXPECT_EQ(reply.received_at_ms, kNow);
  ASSERT_EQ(reply.results.size(), 1u);
  EXPECT_EQ(reply.results[0].message_id, "m1");
  EXPECT_EQ(reply.results[0].status, MessageStatus::kAccepted);
  EXPECT_EQ(reply.results[0].ticket, "LL-000001");
  EXPECT_FALSE(reply.results[0].duplicate);

  TicketDetail detail = Ticket("LL-000001");
  EXPECT_EQ(detail.ticket.state, TicketState::kOpen);
  EXPECT_EQ(detail.ticket.device.customer, "ACME");
  EXPECT_EQ(detail.ticket.device.site, "site-1");
  EXPECT_EQ(detail.ticket.device.serial, "SN123");
  EXPECT_EQ(detail.ticket.code, "SIM-3A21");
  EXPECT_EQ(detail.ticket.severity, Severity::kCritical);
  EXPECT_EQ(detail.ticket.text, "disk failing");
  EXPECT_EQ(detail.ticket.occurrences, 1);
  EXPECT_EQ(detail.ticket.first_seen_ms, kNow);
  EXPECT_EQ(detail.ticket.last_seen_ms, kNow);
  ASSERT_EQ(detail.events.size(), 1u);
  EXPECT_EQ(detail.events[0].message_id, "m1");
  EXPECT_EQ(detail.events[0].device_time_ms, kNow - 5000);

  ASSERT_EQ(detail.notifications.size(), 2u);
  EXPECT_EQ(detail.notifications[0].recipient, "oncall@vendor.example");
  EXPECT_EQ(detail.notifications[1].recipient, "lead@vendor.example");
  for (const auto& n : detail.notifications) {
    EXPECT_EQ(n.kind, "email");
    EXPECT_EQ(n.status, NotificationStatus::kPending);
    EXPECT_EQ(n.ticket_number, "LL-000001");
    EXPECT_EQ(n.subject, "[Lifeline LL-000001] critical SIM-3A21 on ACME/site-1/SN123");
    for (const char* expected :
         {"Customer:      ACME", "Site:          site-1", "Serial:        SN123",
          "Model:         X-200", "Alert code:    SIM-3A21", "Severity:      critical",
          "Message:       disk failing", "Ticket:        LL-000001"}) {
      EXPECT_NE(n.body.find(expected), std::string::npos) << expected << "\n" << n.body;
    }
    EXPECT_NE(n.body.find(FormatRfc3339(
                  std::chrono::system_clock::time_point(std::chrono::milliseconds(kNow - 5000)))),
              std::string::npos);
    EXPECT_NE(n.body.find(FormatRfc3339(
                  std::chrono::system_clock::time_point(std::chrono::milliseconds(kNow)))),
              std::string::npos);
  }
  auto stats = store_->Stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->devices, 1);
  EXPECT_EQ(stats->alerts, 1);
  EXPECT_EQ(stats->tickets, 1);
  EXPECT_EQ(stats->emails_pending, 2);
  EXPECT_EQ(stats->emails_sent, 0);
}

TEST_P(HomeStoreTest, RepeatedAlertAddsOccurrenceWithoutNewEmail) {
  EnrollDevice(Device());
  Ingest(Request("b1", {Alert("m1", "SIM-3A21", Severity::kError, "first")}));
  auto reply =
      Ingest(Request("b2", {Alert("m2", "SIM-3A21", Severity::kCritical, "second")}, kNow + 1000));
  ASSERT_EQ(reply.results.size(), 1u);
  EXPECT_EQ(reply.results[0].status, MessageStatus::kAccepted);
  EXPECT_EQ(reply.results[0].reason, "occurrence added");
  EXPECT_EQ(reply.results[0].ticket, "LL-000001");

  TicketDetail detail = Ticket("LL-000001");
  EXPECT_EQ(detail.ticket.occurrences, 2);
  EXPECT_EQ(detail.ticket.first_seen_ms, kNow);
  EXPECT_EQ(detail.ticket.last_seen_ms, kNow + 1000);
  EXPECT_EQ(detail.ticket.text, "second");
  EXPECT_EQ(detail.ticket.severity, Severity::kCritical);  // escalated while open
  EXPECT_EQ(detail.events.size(), 2u);
  EXPECT_EQ(detail.notifications.size(), 2u);
  EXPECT_EQ(CountRows()["notifications"], 2);
  EXPECT_EQ(CountRows()["tickets"], 1);
}

TEST_P(HomeStoreTest, RepeatedMessageIdGetsTheSameAnswerAndChangesNothing) {
  EnrollDevice(Device());
  auto first =
      Ingest(Request("b1", {Alert("m1", "SIM-3A21", Severity::kCritical), Heartbeat("m2", 60)}));
  const auto before = CountRows();
  auto again = Ingest(Request(
      "b2", {Alert("m1", "SIM-3A21", Severity::kCritical), Heartbeat("m2", 60)}, kNow + 1000));
  ASSERT_EQ(again.results.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_TRUE(again.results[i].duplicate);
    EXPECT_FALSE(first.results[i].duplicate);
    EXPECT_EQ(again.results[i].message_id, first.results[i].message_id);
    EXPECT_EQ(again.results[i].status, first.results[i].status);
    EXPECT_EQ(again.results[i].reason, first.results[i].reason);
    EXPECT_EQ(again.results[i].ticket, first.results[i].ticket);
  }
  auto after = CountRows();
  EXPECT_EQ(after["batches"], before.at("batches") + 1);  // the new batch id itself is recorded
  after["batches"] = before.at("batches");
  EXPECT_EQ(after, before);
  EXPECT_EQ(Ticket("LL-000001").ticket.occurrences, 1);
}

TEST_P(HomeStoreTest, DuplicateIdWithinOneBatchIsAnsweredOnce) {
  EnrollDevice(Device());
  auto reply = Ingest(Request("b1", {Alert("m1", "SIM-3A21", Severity::kCritical),
                                     Alert("m1", "SIM-3A21", Severity::kCritical)}));
  ASSERT_EQ(reply.results.size(), 2u);
  EXPECT_FALSE(reply.results[0].duplicate);
  EXPECT_TRUE(reply.results[1].duplicate);
  EXPECT_EQ(reply.results[1].ticket, "LL-000001");
  EXPECT_EQ(Ticket("LL-000001").ticket.occurrences, 1);
}

TEST_P(HomeStoreTest, ReplayedBatchIsRefusedAndStoresNothing) {
  EnrollDevice(Device());
  Ingest(Request("b1", {Alert("m1", "SIM-3A21", Severity::kCritical)}));
  const auto before = CountRows();
  const auto device_before = **store_->FindDevice("ACME", "site-1", "SN123");

  // Same batch id, fresh content: a replay must not smuggle anything in.
  auto replay = store_->IngestBatch(Request(
      "b1", {Alert("m9", "NEW-CODE", Severity::kCritical), Heartbeat("m10", 30)}, kNow + 5000));
  ASSERT_FALSE(replay);
  EXPECT_EQ(replay.error(), Errc::kReplayedBatch);
  EXPECT_EQ(CountRows(), before);
  const auto device_after = **store_->FindDevice("ACME", "site-1", "SN123");
  EXPECT_EQ(device_after.last_seen_ms, device_before.last_seen_ms);
  EXPECT_EQ(device_after.last_heartbeat_ms, device_before.last_heartbeat_ms);
}

TEST_P(HomeStoreTest, ClearResolvesAndTheNextAlertOpensANewTicket) {
  EnrollDevice(Device());
  Ingest(Request("b1", {Alert("m1", "SIM-3A21", Severity::kCritical)}));
  auto cleared = Ingest(Request("b2", {Clear("m2", "SIM-3A21")}, kNow + 2000));
  ASSERT_EQ(cleared.results.size(), 1u);
  EXPECT_EQ(cleared.results[0].status, MessageStatus::kAccepted);
  EXPECT_EQ(cleared.results[0].ticket, "LL-000001");
  TicketDetail resolved = Ticket("LL-000001");
  EXPECT_EQ(resolved.ticket.state, TicketState::kResolved);
  EXPECT_EQ(resolved.ticket.resolved_at_ms, kNow + 2000);
  EXPECT_EQ(resolved.events.size(), 2u);

  // A clear with nothing open is accepted and touches no ticket.
  auto idle = Ingest(Request("b3", {Clear("m3", "SIM-3A21")}, kNow + 3000));
  EXPECT_EQ(idle.results[0].status, MessageStatus::kAccepted);
  EXPECT_EQ(idle.results[0].ticket, "");

  auto reopened = Ingest(Request("b4", {Alert("m4", "SIM-3A21", Severity::kError)}, kNow + 4000));
  EXPECT_EQ(reopened.results[0].ticket, "LL-000002");
  EXPECT_EQ(Ticket("LL-000002").ticket.state, TicketState::kOpen);
  EXPECT_EQ(Ticket("LL-000002").notifications.size(), 2u);
  EXPECT_EQ(Ticket("LL-000001").ticket.state, TicketState::kResolved);
  EXPECT_EQ(CountRows()["notifications"], 4);
}

TEST_P(HomeStoreTest, AlertBelowThresholdIsRecordedWithoutTicket) {
  EnrollDevice(Device());
  auto reply = Ingest(Request("b1", {Alert("m1", "TMP-01", Severity::kWarning)}));
  ASSERT_EQ(reply.results.size(), 1u);
  EXPECT_EQ(reply.results[0].status, MessageStatus::kAccepted);
  EXPECT_EQ(reply.results[0].reason, "recorded; below ticket severity");
  EXPECT_EQ(reply.results[0].ticket, "");
  const auto counts = CountRows();
  EXPECT_EQ(counts.at("tickets"), 0);
  EXPECT_EQ(counts.at("notifications"), 0);
  EXPECT_EQ(counts.at("events"), 1);
  EXPECT_EQ(store_->Stats()->alerts, 1);
}

TEST_P(HomeStoreTest, HeartbeatAndSequenceUpdateTheDevice) {
  EnrollDevice(Device());
  Message hb = Heartbeat("m1", 300);
  hb.sequence = 41;
  Message other = Alert("m2", "TMP-01", Severity::kInfo);
  other.sequence = 42;
  Ingest(Request("b1", {hb, other}, kNow + 7000));
  const auto device = **store_->FindDevice("ACME", "site-1", "SN123");
  EXPECT_EQ(device.last_seen_ms, kNow + 7000);
  EXPECT_EQ(device.last_heartbeat_ms, kNow + 7000);
  EXPECT_EQ(device.last_heartbeat_interval_s, 300);
  EXPECT_EQ(device.last_sequence, 42u);

  // A batch without a heartbeat moves last_seen but not the heartbeat time.
  Message later = Alert("m3", "TMP-01", Severity::kInfo);
  later.sequence = 43;
  Ingest(Request("b2", {later}, kNow + 9000));
  const auto after = **store_->FindDevice("ACME", "site-1", "SN123");
  EXPECT_EQ(after.last_seen_ms, kNow + 9000);
  EXPECT_EQ(after.last_heartbeat_ms, kNow + 7000);
  EXPECT_EQ(after.last_sequence, 43u);
}

TEST_P(HomeStoreTest, InstructionsRideOnRepliesUntilTheDeviceReportsOnThem) {
  EnrollDevice(Device());
  auto id = store_->QueueInstruction(Device(), "send_inventory", "", kNow);
  ASSERT_TRUE(id) << id.error().message();
  auto config_id = store_->QueueInstruction(Device(), "apply_config", "[heartbeat]\ninterval = \"1h\"\n", kNow + 1);
  ASSERT_TRUE(config_id);

  // Every reply carries the pending instructions, oldest first...
  auto first = Ingest(Request("b1", {Heartbeat("m1", 300)}));
  ASSERT_EQ(first.instructions.size(), 2u);
  EXPECT_EQ(first.instructions[0].id, *id);
  EXPECT_EQ(first.instructions[0].kind, "send_inventory");
  EXPECT_EQ(first.instructions[1].config_toml, "[heartbeat]\ninterval = \"1h\"\n");
  auto again = Ingest(Request("b2", {Heartbeat("m2", 300)}));
  EXPECT_EQ(again.instructions.size(), 2u);

  // ...until the device reports on them in a batch.
  auto report = Request("b3", {Heartbeat("m3", 300)});
  report.batch.instruction_results = {{*id, "done", ""}, {*config_id, "refused", "invalid: key 'x'"}};
  auto after = Ingest(report);
  EXPECT_TRUE(after.instructions.empty());
  auto listed = store_->ListInstructions(Device());
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].status, "done");
  EXPECT_EQ((*listed)[1].status, "refused");
  EXPECT_EQ((*listed)[1].detail, "invalid: key 'x'");
  EXPECT_TRUE((*listed)[1].completed_at_ms.has_value());
}

TEST_P(HomeStoreTest, ADeviceCannotAnswerAnotherDevicesInstructions) {
  EnrollDevice(Device());
  const protocol::DeviceIdentity other{"ACME", "site-1", "SN999", "M"};
  EnrollDevice(other);
  auto id = store_->QueueInstruction(other, "send_test_alert", "", kNow);
  ASSERT_TRUE(id);
  auto report = Request("b1", {Heartbeat("m1", 300)});
  report.batch.instruction_results = {{*id, "done", ""}};
  Ingest(report);
  EXPECT_EQ((*store_->ListInstructions(other))[0].status, "pending");
}

TEST_P(HomeStoreTest, InstructionForAnUnknownDeviceIsRefused) {
  auto id = store_->QueueInstruction({"ACME", "site-1", "NOPE", ""}, "send_inventory", "", kNow);
  ASSERT_FALSE(id);
  EXPECT_EQ(id.error(), Errc::kDeviceUnknown);
}

TEST_P(HomeStoreTest, OtherMessageKindsAreStoredAsRawJson) {
  EnrollDevice(Device());
  Message inventory;
  inventory.id = "m1";
  inventory.type = MessageType::kInventory;
  inventory.payload_json = R"({"disks":[{"id":"sda","size":1000}]})";
  Message perf = inventory;
  perf.id = "m2";
  perf.type = MessageType::kPerformance;
  perf.payload_json = R"({"cpu":0.5})";
  auto reply = Ingest(Request("b1", {inventory, perf}));
  ASSERT_EQ(reply.results.size(), 2u);
  EXPECT_EQ(reply.results[0].status, MessageStatus::kAccepted);
  EXPECT_EQ(reply.results[1].status, MessageStatus::kAccepted);

  auto db = OpenRaw();
  ASSERT_TRUE(db);
  auto rows = db->WithSession(
      [](sql::Session& s) { return s.Query("SELECT type, payload_json FROM events ORDER BY id"); });
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].Text(0), "inventory");
  EXPECT_EQ((*rows)[0].Text(1), inventory.payload_json);
  EXPECT_EQ((*rows)[1].Text(0), "performance");
  EXPECT_EQ((*rows)[1].Text(1), perf.payload_json);
}

TEST_P(HomeStoreTest, AlertWithoutCodeIsRejected) {
  EnrollDevice(Device());
  auto reply = Ingest(Request("b1", {Alert("m1", "", Severity::kCritical), Message{}}));
  ASSERT_EQ(reply.results.size(), 2u);
  EXPECT_EQ(reply.results[0].status, MessageStatus::kRejected);
  EXPECT_EQ(reply.results[1].status, MessageStatus::kRejected);  // no message id
  EXPECT_EQ(CountRows()["tickets"], 0);
}

TEST_P(HomeStoreTest, SubjectCannotCarryHeaderBreaks) {
  EnrollDevice(Device());
  Ingest(Request("b1", {Alert("m1", "X\r\nBcc: evil@example.com", Severity::kCritical)}));
  const auto detail = Ticket("LL-000001");
  ASSERT_FALSE(detail.notifications.empty());
  const std::string& subject = detail.notifications[0].subject;
  EXPECT_EQ(subject.find('\r'), std::string::npos);
  EXPECT_EQ(subject.find('\n'), std::string::npos);
}

TEST_P(HomeStoreTest, TicketNumbersAndListing) {
  EnrollDevice(Device());
  for (int i = 1; i <= 3; ++i) {
    Ingest(Request("b" + std::to_string(i),
                   {Alert("m" + std::to_string(i), "CODE-" + std::to_string(i), Severity::kError)},
                   kNow + i));
  }
  Ingest(Request("b9", {Clear("m9", "CODE-2")}, kNow + 9));
  auto all = store_->ListTickets({});
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 3u);
  const std::regex format("LL-[0-9]{6}");
  for (const auto& t : *all) {
    EXPECT_TRUE(std::regex_match(t.number, format)) << t.number;
  }
  EXPECT_EQ((*all)[0].number, "LL-000003");  // newest first
  EXPECT_EQ((*all)[2].number, "LL-000001");

  auto open = store_->ListTickets({.state = TicketState::kOpen});
  ASSERT_TRUE(open);
  EXPECT_EQ(open->size(), 2u);
  auto resolved = store_->ListTickets({.state = TicketState::kResolved});
  ASSERT_TRUE(resolved);
  ASSERT_EQ(resolved->size(), 1u);
  EXPECT_EQ((*resolved)[0].number, "LL-000002");
  auto limited = store_->ListTickets({.limit = 1});
  ASSERT_TRUE(limited);
  EXPECT_EQ(limited->size(), 1u);

  auto none = store_->GetTicket("LL-999999");
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->has_value());
}

TEST_P(HomeStoreTest, PrunedBatchIdsAreForgotten) {
  EnrollDevice(Device());
  Ingest(Request("old", {Heartbeat("m1", 60)}, kNow));
  Ingest(Request("new", {Heartbeat("m2", 60)}, kNow + 100'000));
  auto pruned = store_->PruneBatchIds(kNow + 50'000);
  ASSERT_TRUE(pruned);
  EXPECT_EQ(*pruned, 1);
  EXPECT_EQ(store_->IngestBatch(Request("new", {}, kNow + 200'000)).error(), Errc::kReplayedBatch);
  EXPECT_TRUE(store_->IngestBatch(Request("old", {}, kNow + 200'000)));
}

TEST_P(HomeStoreTest, ConcurrentIngestFromManyThreads) {
  constexpr int kThreads = 4;
  constexpr int kBatches = 10;
  for (int t = 0; t < kThreads; ++t) {
    EnrollDevice(Device("SN-" + std::to_string(t)));
  }
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const auto device = Device("SN-" + std::to_string(t));
      for (int b = 0; b < kBatches; ++b) {
        const std::string id = std::to_string(t) + "-" + std::to_string(b);
        auto reply = store_->IngestBatch(Request(
            "batch-" + id, {Alert("msg-" + id, "SAME", Severity::kCritical)}, kNow + b, device));
        if (!reply) {
          ++failures;
        }
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(failures.load(), 0);
  auto tickets = store_->ListTickets({});
  ASSERT_TRUE(tickets);
  ASSERT_EQ(tickets->size(), static_cast<std::size_t>(kThreads));  // one open ticket per device
  for (const auto& t : *tickets) {
    EXPECT_EQ(t.occurrences, kBatches);
  }
}

// ---- Outbox ------------------------------------------------------------------------------------

TEST_P(HomeStoreTest, OutboxClaimSentAndFailed) {
  EnrollDevice(Device());
  Ingest(Request("b1", {Alert("m1", "SIM-3A21", Severity::kCritical)}));

  auto early = store_->ClaimNotifications(10, kNow - 1);
  ASSERT_TRUE(early);
  EXPECT_TRUE(early->empty());  // not due yet

  auto claimed = store_->ClaimNotifications(10, kNow);
  ASSERT_TRUE(claimed);
  ASSERT_EQ(claimed->size(), 2u);
  EXPECT_EQ((*claimed)[0].subject, "[Lifeline LL-000001] critical SIM-3A21 on ACME/site-1/SN123");
  EXPECT_FALSE((*claimed)[0].body.empty());
  auto leased = store_->ClaimNotifications(10, kNow + 1000);
  ASSERT_TRUE(leased);
  EXPECT_TRUE(leased->empty());  // claimed rows stay invisible while leased

  const std::int64_t sent_id = (*claimed)[0].id;
  const std::int64_t failed_id = (*claimed)[1].id;
  ASSERT_TRUE(store_->MarkNotificationSent(sent_id, kNow + 2000));
  ASSERT_TRUE(store_->MarkNotificationFailed(failed_id, "connection refused", kNow + 10'000));
  EXPECT_EQ(store_->MarkNotificationSent(987654, kNow).error(), Errc::kNotFound);

  auto stats = store_->Stats();
  EXPECT_EQ(stats->emails_sent, 1);
  EXPECT_EQ(stats->emails_pending, 1);

  auto before_retry = store_->ClaimNotifications(10, kNow + 9999);
  ASSERT_TRUE(before_retry);
  EXPECT_TRUE(before_retry->empty());
  auto retry = store_->ClaimNotifications(10, kNow + 10'000);
  ASSERT_TRUE(retry);
  ASSERT_EQ(retry->size(), 1u);
  EXPECT_EQ((*retry)[0].id, failed_id);
  EXPECT_EQ((*retry)[0].attempts, 1);
  EXPECT_EQ((*retry)[0].last_error, "connection refused");

  // Giving up: the row becomes failed and is never claimed again.
  ASSERT_TRUE(store_->MarkNotificationFailed(failed_id, "mailbox unavailable", std::nullopt));
  auto never = store_->ClaimNotifications(10, kNow + 100'000'000);
  ASSERT_TRUE(never);
  EXPECT_TRUE(never->empty());

  const auto detail = Ticket("LL-000001");
  ASSERT_EQ(detail.notifications.size(), 2u);
  EXPECT_EQ(detail.notifications[0].status, NotificationStatus::kSent);
  EXPECT_EQ(detail.notifications[0].sent_at_ms, kNow + 2000);
  EXPECT_EQ(detail.notifications[1].status, NotificationStatus::kFailed);
  EXPECT_EQ(detail.notifications[1].attempts, 2);
  EXPECT_EQ(detail.notifications[1].last_error, "mailbox unavailable");
}

TEST_P(HomeStoreTest, AbandonedClaimComesBackAfterTheLease) {
  EnrollDevice(Device());
  Ingest(Request("b1", {Alert("m1", "SIM-3A21", Severity::kCritical)}));
  ASSERT_EQ(store_->ClaimNotifications(1, kNow)->size(), 1u);   // limit honoured
  ASSERT_EQ(store_->ClaimNotifications(10, kNow)->size(), 1u);  // the other one
  EXPECT_TRUE(store_->ClaimNotifications(10, kNow + kNotificationClaimLeaseMs - 1)->empty());
  EXPECT_EQ(store_->ClaimNotifications(10, kNow + kNotificationClaimLeaseMs)->size(), 2u);
}

// ---- Admin tokens ------------------------------------------------------------------------------

TEST_P(HomeStoreTest, AdminTokenLookup) {
  ASSERT_TRUE(store_->CreateAdminToken("ops", "admin-hash", "admin", kNow));
  auto found = store_->FindAdminToken("admin-hash");
  ASSERT_TRUE(found);
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->name, "ops");
  EXPECT_EQ((*found)->role, "admin");
  EXPECT_EQ((*found)->created_at_ms, kNow);

  auto unknown = store_->FindAdminToken("other-hash");
  ASSERT_TRUE(unknown);
  EXPECT_FALSE(unknown->has_value());
  EXPECT_EQ(store_->CreateAdminToken("ops", "hash-2", "viewer", kNow).error(),
            Errc::kAlreadyExists);
  EXPECT_EQ(store_->CreateAdminToken("ops2", "admin-hash", "viewer", kNow).error(),
            Errc::kAlreadyExists);
}

// ---- Durability and schema ---------------------------------------------------------------------

TEST_P(HomeStoreTest, ReopeningTheFileKeepsEverything) {
  EnrollDevice(Device());
  Ingest(Request("b1", {Alert("m1", "SIM-3A21", Severity::kCritical), Heartbeat("m2", 60)}));
  ASSERT_TRUE(store_->CreateAdminToken("ops", "admin-hash", "admin", kNow));
  const auto before = CountRows();
  store_.reset();

  store_ = OpenStore();
  ASSERT_TRUE(store_);
  EXPECT_EQ(CountRows(), before);
  auto device = store_->FindDevice("ACME", "site-1", "SN123");
  ASSERT_TRUE(device && device->has_value());
  EXPECT_EQ((*device)->last_heartbeat_interval_s, 60);
  EXPECT_EQ(Ticket("LL-000001").notifications.size(), 2u);
  EXPECT_TRUE(store_->FindAdminToken("admin-hash")->has_value());
  // Replay protection and message ids survive the restart too.
  EXPECT_EQ(store_->IngestBatch(Request("b1", {})).error(), Errc::kReplayedBatch);
  auto repeat = Ingest(Request("b2", {Alert("m1", "SIM-3A21", Severity::kCritical)}));
  EXPECT_TRUE(repeat.results[0].duplicate);
  // The ticket counter continues rather than restarting.
  auto next = Ingest(Request("b3", {Alert("m3", "OTHER", Severity::kCritical)}));
  EXPECT_EQ(next.results[0].ticket, "LL-000002");
}

TEST_P(HomeStoreTest, MigrationsAreIdempotent) {
  EnrollDevice(Device());
  store_.reset();
  for (int i = 0; i < 2; ++i) {
    store_ = OpenStore();
    ASSERT_TRUE(store_);
    store_.reset();
  }
  auto db = OpenRaw();
  ASSERT_TRUE(db);
  // Nothing left to do: no error, no change.
  ASSERT_TRUE(sql::Migrate(*db, SqlHomeStore::Migrations(), kHomeMigrationLock));
  auto version = sql::SchemaVersion(*db);
  ASSERT_TRUE(version);
  EXPECT_EQ(*version, static_cast<std::int64_t>(SqlHomeStore::Migrations().size()));
  EXPECT_EQ(CountRows()["devices"], 1);
}

TEST_P(HomeStoreTest, HomesStartingAtOnceMigrateOnce) {
  // A fresh database (SQLite: a fresh file), four homes opening it at the same moment: the schema is
  // made once and every home starts.
  if (GetParam() == sql::Backend::kPostgres) {
    conninfo_ = testing::SharedPostgres()->CreateDatabase();
  } else {
    store_.reset();
    std::filesystem::remove(dir_ / "home.db");
  }
  std::latch start(4);
  std::atomic<int> opened{0};
  std::vector<std::thread> homes;
  for (int i = 0; i < 4; ++i) {
    homes.emplace_back([&] {
      start.arrive_and_wait();
      if (auto store = SqlHomeStore::Open(Options())) {
        ++opened;
      }
    });
  }
  for (auto& home : homes) {
    home.join();
  }
  EXPECT_EQ(opened.load(), 4);
  auto db = OpenRaw();
  ASSERT_TRUE(db);
  EXPECT_EQ(*sql::SchemaVersion(*db), static_cast<std::int64_t>(SqlHomeStore::Migrations().size()));
}

TEST_P(HomeStoreTest, TextWithANulCharacterIsStored) {
  // JSON lets a device send "\u0000"; PostgreSQL text cannot hold it. The batch must still go in
  // (SQLite keeps the character, PostgreSQL stores U+FFFD), or the agent would retry it forever.
  EnrollDevice(Device());
  auto reply = Ingest(Request("b1", {Alert("m1", "NUL-1", Severity::kCritical, std::string("bad\0byte", 8))}));
  ASSERT_EQ(reply.results.size(), 1u);
  EXPECT_EQ(reply.results[0].status, MessageStatus::kAccepted);
  const std::string text = Ticket("LL-000001").ticket.text;
  EXPECT_EQ(text.substr(0, 3), "bad");
  EXPECT_EQ(text.substr(text.size() - 4), "byte");
}

// ---- Several homes on one database -------------------------------------------------------------

TEST_P(HomeStoreTest, TwoHomesIngestingTheSameAlertsMakeOneTicketPerKeyAndOneEmailEach) {
  // Two stores with their own connections stand for two home processes behind one load balancer.
  // Four threads each send every device's alerts for two codes, in opposite code order on alternate
  // threads, so on PostgreSQL the transactions truly overlap. Each batch carries a message id that
  // every thread shares (an agent's retry landing on the other home) and one of its own.
  constexpr int kDevices = 3;
  constexpr int kRounds = 4;
  constexpr int kThreadsPerHome = 4;
  const std::vector<std::string> codes = {"DISK-1", "FAN-2"};
  for (int d = 0; d < kDevices; ++d) {
    EnrollDevice(Device("SN-" + std::to_string(d)));
  }
  auto other_home = OpenStore();
  ASSERT_TRUE(other_home);
  HomeStore* homes[2] = {store_.get(), other_home.get()};

  std::atomic<int> failures{0};
  std::atomic<int> first_answers{0};  // non-duplicate answers to the shared message ids
  std::latch start(2 * kThreadsPerHome);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2 * kThreadsPerHome; ++t) {
    threads.emplace_back([&, t] {
      HomeStore* home = homes[t % 2];
      start.arrive_and_wait();
      for (int r = 0; r < kRounds; ++r) {
        for (int d = 0; d < kDevices; ++d) {
          std::vector<Message> messages;
          for (int i = 0; i < 2; ++i) {
            const std::string& code = codes[(i + t / 2) % 2];
            const std::string key = std::to_string(d) + "-" + std::to_string(r) + "-" + code;
            messages.push_back(Alert("shared-" + key, code, Severity::kCritical));
            messages.push_back(Alert("own-" + std::to_string(t) + "-" + key, code, Severity::kError));
          }
          const std::string batch = "batch-" + std::to_string(t) + "-" + std::to_string(r) + "-" + std::to_string(d);
          auto reply = home->IngestBatch(Request(batch, messages, kNow + r, Device("SN-" + std::to_string(d))));
          if (!reply) {
            ++failures;
            ADD_FAILURE() << batch << ": " << reply.error().message() << " (" << sql::LastErrorDetail() << ")";
            continue;
          }
          for (const auto& result : reply->results) {
            if (result.status != MessageStatus::kAccepted) {
              ++failures;
            }
            if (result.message_id.starts_with("shared-") && !result.duplicate) {
              ++first_answers;
            }
          }
        }
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(failures.load(), 0);
  // Each shared message id was applied once, whichever home got it first.
  EXPECT_EQ(first_answers.load(), kDevices * kRounds * 2);

  auto tickets = store_->ListTickets({.limit = 1000});
  ASSERT_TRUE(tickets);
  ASSERT_EQ(tickets->size(), static_cast<std::size_t>(kDevices * 2));  // one per device and code
  std::set<std::pair<std::string, std::string>> keys;
  std::set<std::string> numbers;
  const std::regex format("LL-[0-9]{6}");
  for (const auto& t : *tickets) {
    keys.insert({t.device.serial, t.code});
    numbers.insert(t.number);
    EXPECT_TRUE(std::regex_match(t.number, format)) << t.number;
    EXPECT_EQ(t.state, TicketState::kOpen);
    // Every distinct message counted once: the shared one per round plus each thread's own.
    EXPECT_EQ(t.occurrences, kRounds * (1 + 2 * kThreadsPerHome)) << t.number;
    const auto detail = Ticket(t.number);
    EXPECT_EQ(detail.notifications.size(), 2u) << t.number;  // one email per contact, once
  }
  EXPECT_EQ(keys.size(), static_cast<std::size_t>(kDevices * 2));
  EXPECT_EQ(numbers.size(), tickets->size());
  const auto counts = CountRows();
  EXPECT_EQ(counts.at("tickets"), kDevices * 2);
  EXPECT_EQ(counts.at("notifications"), kDevices * 2 * 2);
  EXPECT_EQ(counts.at("events"), kDevices * kRounds * 2 * (1 + 2 * kThreadsPerHome));
  EXPECT_EQ(counts.at("batches"), 2 * kThreadsPerHome * kRounds * kDevices);
}

TEST_P(HomeStoreTest, TwoHomesReplayingOneBatchApplyItOnce) {
  // The same batch (same id) reaches both homes at once, many times over: exactly one applies it.
  EnrollDevice(Device());
  auto other_home = OpenStore();
  ASSERT_TRUE(other_home);
  HomeStore* homes[2] = {store_.get(), other_home.get()};
  for (int round = 0; round < 10; ++round) {
    const auto request = Request("b-" + std::to_string(round),
                                 {Alert("m-" + std::to_string(round), "CODE-" + std::to_string(round),
                                        Severity::kCritical)});
    std::latch start(4);
    std::atomic<int> applied{0};
    std::atomic<int> refused{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        start.arrive_and_wait();
        auto reply = homes[t % 2]->IngestBatch(request);
        if (reply) {
          ++applied;
        } else if (reply.error() == Errc::kReplayedBatch) {
          ++refused;
        }
      });
    }
    for (auto& thread : threads) {
      thread.join();
    }
    EXPECT_EQ(applied.load(), 1) << "round " << round;
    EXPECT_EQ(refused.load(), 3) << "round " << round;
  }
  const auto counts = CountRows();
  EXPECT_EQ(counts.at("tickets"), 10);
  EXPECT_EQ(counts.at("notifications"), 20);
}

TEST_P(HomeStoreTest, TwoHomesClaimEachNotificationOnce) {
  // Both homes' notifiers poll the one outbox: within the lease, a row goes to one of them only.
  EnrollDevice(Device());
  for (int i = 0; i < 15; ++i) {
    Ingest(Request("b" + std::to_string(i),
                   {Alert("m" + std::to_string(i), "CODE-" + std::to_string(i), Severity::kCritical)}));
  }
  auto other_home = OpenStore();
  ASSERT_TRUE(other_home);
  HomeStore* homes[2] = {store_.get(), other_home.get()};
  std::mutex mutex;
  std::vector<std::int64_t> claimed;
  std::latch start(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int attempt = 0; attempt < 50; ++attempt) {
        auto batch = homes[t % 2]->ClaimNotifications(3, kNow);
        ASSERT_TRUE(batch) << batch.error().message();
        if (batch->empty()) {
          return;
        }
        std::lock_guard lock(mutex);
        for (const auto& n : *batch) {
          claimed.push_back(n.id);
        }
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(claimed.size(), 30u);
  EXPECT_EQ(std::set<std::int64_t>(claimed.begin(), claimed.end()).size(), 30u);
}

INSTANTIATE_TEST_SUITE_P(Backends, HomeStoreTest,
                         ::testing::Values(sql::Backend::kSqlite, sql::Backend::kPostgres),
                         [](const ::testing::TestParamInfo<sql::Backend>& info) {
                           return info.param == sql::Backend::kSqlite ? "SQLite" : "PostgreSQL";
                         });

TEST(SqliteHomeStore, AdoptsAFileFromBeforeSchemaVersion) {
  // Files written before the SQL seam kept their schema version in PRAGMA user_version only.
  testing::TempDir dir;
  {
    auto db = sqlite::Database::Open(dir / "home.db");
    ASSERT_TRUE(db);
    // Such files stopped at version 2 (instructions); later steps came with the seam.
    std::vector<std::string_view> steps;
    for (const auto& m : SqlHomeStore::Migrations().first(2)) {
      steps.push_back(m.sqlite);
    }
    ASSERT_TRUE((*db)->Migrate(steps));
    ASSERT_TRUE((*db)->Exec(
        "INSERT INTO admin_tokens (name, token_hash, role, created_at_ms) VALUES ('ops', 'h', 'admin', 1)"));
  }
  auto store = SqliteHomeStore::Open(dir / "home.db");
  ASSERT_TRUE(store) << store.error().message();
  EXPECT_TRUE((*store)->FindAdminToken("h")->has_value());
  EXPECT_EQ(*sql::SchemaVersion((*store)->database()),
            static_cast<std::int64_t>(SqlHomeStore::Migrations().size()));
}

TEST(SqlSeam, ParametersBindByNumberOnBothDrivers) {
  // SQLite numbers $N parameters in order of first use; the driver must bind them by N.
  testing::TempDir dir;
  auto* server = testing::SharedPostgres();
  ASSERT_NE(server, nullptr);
  auto lite = sqlite::OpenSqlDatabase(dir / "x.db");
  auto pg = postgres::Open({.conninfo = server->CreateDatabase(), .pool_size = 1});
  ASSERT_TRUE(lite && pg);
  for (auto& db : {*lite, *pg}) {
    auto row = db->WithSession([](sql::Session& s) {
      return s.QueryRow("SELECT $2 || '-' || $1, $3 IS NULL, $1", "a", "b", std::optional<std::int64_t>());
    });
    ASSERT_TRUE(row && *row) << sql::LastErrorDetail();
    EXPECT_EQ((*row)->Text(0), "b-a") << ToString(db->backend());
    EXPECT_EQ((*row)->Text(1).substr(0, 1), db->backend() == sql::Backend::kSqlite ? "1" : "t");
    auto missing = db->WithSession([](sql::Session& s) { return s.Exec("SELECT $2", 1); });
    EXPECT_FALSE(missing) << ToString(db->backend());
  }
}

TEST(SqlSeam, ErrorsAreSortedTheSameWayOnBothDrivers) {
  testing::TempDir dir;
  auto* server = testing::SharedPostgres();
  ASSERT_NE(server, nullptr);
  auto lite = sqlite::OpenSqlDatabase(dir / "x.db");
  auto pg = postgres::Open({.conninfo = server->CreateDatabase(), .pool_size = 1});
  ASSERT_TRUE(lite && pg);
  for (auto& db : {*lite, *pg}) {
    const auto backend = ToString(db->backend());
    ASSERT_TRUE(db->WithSession([](sql::Session& s) {
      return s.ExecScript("CREATE TABLE u (k TEXT PRIMARY KEY, n INTEGER NOT NULL CHECK (n > 0))");
    }));
    ASSERT_TRUE(db->WithSession([](sql::Session& s) { return s.Exec("INSERT INTO u VALUES ($1, $2)", "x", 1); }));
    auto dup = db->WithSession([](sql::Session& s) { return s.Exec("INSERT INTO u VALUES ($1, $2)", "x", 2); });
    EXPECT_EQ(dup.error(), sql::Errc::kUniqueViolation) << backend;
    EXPECT_FALSE(sql::LastErrorDetail().empty());
    auto check = db->WithSession([](sql::Session& s) { return s.Exec("INSERT INTO u VALUES ($1, $2)", "y", 0); });
    EXPECT_EQ(check.error(), sql::Errc::kConstraintViolation) << backend;
    auto syntax = db->WithSession([](sql::Session& s) { return s.Exec("SELEC 1"); });
    EXPECT_EQ(syntax.error(), sql::Errc::kStatementFailed) << backend;
    // A failed body rolls back everything it did.
    auto rolled = db->Transaction(sql::TxMode::kWrite, [](sql::Session& s) -> VoidResult {
      if (auto ok = s.Exec("INSERT INTO u VALUES ($1, $2)", "z", 3); !ok) {
        return ok.error();
      }
      return make_error_code(Errc::kNotFound);
    });
    EXPECT_EQ(rolled.error(), Errc::kNotFound) << backend;
    auto count = db->WithSession([](sql::Session& s) { return s.QueryRow("SELECT COUNT(*) FROM u"); });
    EXPECT_EQ((*count)->Int(0), 1) << backend;
  }
}

TEST(PostgresStore, ConnectionsTheServerClosedAreReplaced) {
  // A PostgreSQL restart or failover closes every pooled connection; the next transaction must not
  // fail for it.
  auto* server = testing::SharedPostgres();
  ASSERT_NE(server, nullptr);
  const std::string conninfo = server->CreateDatabase();
  auto store = SqlHomeStore::Open(HomeStoreOptions{
      .backend = sql::Backend::kPostgres, .postgres_conninfo = conninfo, .postgres_pool_size = 2});
  ASSERT_TRUE(store);
  ASSERT_TRUE((*store)->CreateAdminToken("ops", "h1", "admin", kNow));
  auto admin = postgres::Open({.conninfo = conninfo, .pool_size = 1});
  ASSERT_TRUE(admin);
  auto terminated = (*admin)->WithSession([](sql::Session& s) {
    return s.Query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()");
  });
  ASSERT_TRUE(terminated) << sql::LastErrorDetail();
  ASSERT_FALSE(terminated->empty());
  auto claimed = (*store)->ClaimNotifications(10, kNow);  // a transaction: retried on a new connection
  EXPECT_TRUE(claimed) << claimed.error().message() << " " << sql::LastErrorDetail();
  EXPECT_TRUE((*store)->FindAdminToken("h1")->has_value());
}

TEST(PostgresStore, UnreachableServerFailsClearly) {
  testing::TempDir dir;
  auto opened = SqlHomeStore::Open(HomeStoreOptions{
      .backend = sql::Backend::kPostgres,
      .postgres_conninfo = "host=" + dir.path().string() + " port=1 dbname=none connect_timeout=2"});
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error(), sql::Errc::kConnectionFailed);
  EXPECT_NE(sql::LastErrorDetail().find("connection to server"), std::string::npos) << sql::LastErrorDetail();
}

TEST(HomeStoreErrors, ErrorsReadWell) {
  const std::error_code ec = Errc::kTokenExpired;
  EXPECT_EQ(ec.category().name(), std::string("store"));
  EXPECT_EQ(ec.message(), "enrollment token expired");
  EXPECT_EQ(ec, Errc::kTokenExpired);
  EXPECT_NE(ec, Errc::kTokenUsed);
}

}  // namespace
}  // namespace lifeline::store
