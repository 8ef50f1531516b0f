#include "store/sqlite/home_store.h"

#include "common/clock.h"
#include "store/sqlite/database.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <map>
#include <regex>
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

/// Row counts of every table, read through a second connection: the store's own view could hide
/// uncommitted or rolled-back work, this one only sees what is on disk.
std::map<std::string, std::int64_t> CountRows(const std::filesystem::path& path) {
  auto db = sqlite::Database::Open(path);
  EXPECT_TRUE(db) << db.error().message();
  std::map<std::string, std::int64_t> counts;
  for (const char* table : {"enrollment_tokens", "devices", "batches", "tickets", "events",
                            "notifications", "admin_tokens"}) {
    auto stmt = (*db)->Prepare(std::string("SELECT COUNT(*) FROM ") + table);
    EXPECT_TRUE(stmt);
    auto row = stmt->Step();
    EXPECT_TRUE(row && *row);
    counts[table] = stmt->Int(0);
  }
  return counts;
}

class HomeStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = OpenStore(); }

  std::filesystem::path db_path() const { return dir_ / "home.db"; }

  std::unique_ptr<SqliteHomeStore> OpenStore() {
    auto opened = SqliteHomeStore::Open(db_path());
    EXPECT_TRUE(opened) << opened.error().message();
    return opened ? std::move(*opened) : nullptr;
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

  IngestRequest Request(std::string batch_id, std::vector<Message> messages,
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
  std::unique_ptr<SqliteHomeStore> store_;
};

// ---- Enrollment --------------------------------------------------------------------------------

TEST_F(HomeStoreTest, EnrollConsumesTokenAndRecordsDevice) {
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

TEST_F(HomeStoreTest, EnrollRejectsUnknownToken) {
  auto enrolled = store_->Enroll(Enrollment("never-issued", Device()));
  EXPECT_EQ(enrolled.error(), Errc::kTokenUnknown);
  EXPECT_EQ(CountRows(db_path())["devices"], 0);
}

TEST_F(HomeStoreTest, EnrollRejectsUsedToken) {
  ASSERT_TRUE(store_->CreateEnrollmentToken("h1", Device(), kNow + 60'000, kNow));
  ASSERT_TRUE(store_->Enroll(Enrollment("h1", Device())));
  auto again = store_->Enroll(Enrollment("h1", Device(), kNow + 1));
  EXPECT_EQ(again.error(), Errc::kTokenUsed);
  auto device = store_->FindDevice("ACME", "site-1", "SN123");
  EXPECT_EQ((*device)->enrolled_at_ms, kNow);  // the refused attempt changed nothing
}

TEST_F(HomeStoreTest, EnrollRejectsExpiredToken) {
  ASSERT_TRUE(store_->CreateEnrollmentToken("h1", Device(), kNow + 60'000, kNow));
  EXPECT_EQ(store_->Enroll(Enrollment("h1", Device(), kNow + 60'000)).error(), Errc::kTokenExpired);
  EXPECT_EQ(store_->Enroll(Enrollment("h1", Device(), kNow + 3'600'000)).error(),
            Errc::kTokenExpired);
  EXPECT_EQ(CountRows(db_path())["devices"], 0);
  // One millisecond before expiry it is still good.
  EXPECT_TRUE(store_->Enroll(Enrollment("h1", Device(), kNow + 59'999)));
}

TEST_F(HomeStoreTest, EnrollRejectsTokenIssuedForAnotherDevice) {
  ASSERT_TRUE(store_->CreateEnrollmentToken("h1", Device(), kNow + 60'000, kNow));
  for (auto other : {protocol::DeviceIdentity{"OTHER", "site-1", "SN123", "X-200"},
                     protocol::DeviceIdentity{"ACME", "site-2", "SN123", "X-200"},
                     protocol::DeviceIdentity{"ACME", "site-1", "SN999", "X-200"}}) {
    EXPECT_EQ(store_->Enroll(Enrollment("h1", other)).error(), Errc::kTokenIdentityMismatch)
        << other.Key();
  }
  EXPECT_EQ(CountRows(db_path())["devices"], 0);
  // The mismatches did not burn the token; the model is descriptive and may differ.
  auto right = Device();
  right.model = "X-300";
  ASSERT_TRUE(store_->Enroll(Enrollment("h1", right)));
  EXPECT_EQ((*store_->FindDevice("ACME", "site-1", "SN123"))->identity.model, "X-300");
}

TEST_F(HomeStoreTest, DuplicateTokenHashIsRefused) {
  ASSERT_TRUE(store_->CreateEnrollmentToken("h1", Device(), kNow + 60'000, kNow));
  EXPECT_EQ(store_->CreateEnrollmentToken("h1", Device("SN2"), kNow + 60'000, kNow).error(),
            Errc::kAlreadyExists);
}

TEST_F(HomeStoreTest, TokenIsSingleUseUnderRacingThreads) {
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
  EXPECT_EQ(CountRows(db_path())["devices"], 20);
}

TEST_F(HomeStoreTest, RevokedDeviceIsRefusedAndReenrollmentReactivates) {
  EnrollDevice(Device());
  EXPECT_EQ(store_->RevokeDevice("ACME", "site-1", "nope").error(), Errc::kDeviceUnknown);
  ASSERT_TRUE(store_->RevokeDevice("ACME", "site-1", "SN123"));
  EXPECT_EQ((*store_->FindDevice("ACME", "site-1", "SN123"))->status, DeviceStatus::kRevoked);
  auto refused = store_->IngestBatch(Request("b1", {Heartbeat("m1", 60)}));
  EXPECT_EQ(refused.error(), Errc::kDeviceRevoked);
  EXPECT_EQ(CountRows(db_path())["batches"], 0);

  ASSERT_TRUE(store_->CreateEnrollmentToken("h2", Device(), kNow + 60'000, kNow));
  ASSERT_TRUE(store_->Enroll(Enrollment("h2", Device(), kNow + 10)));
  EXPECT_EQ((*store_->FindDevice("ACME", "site-1", "SN123"))->status, DeviceStatus::kActive);
  EXPECT_TRUE(store_->IngestBatch(Request("b1", {Heartbeat("m1", 60)})));
}

TEST_F(HomeStoreTest, UnknownDeviceIsRefused) {
  auto refused = store_->IngestBatch(Request("b1", {Heartbeat("m1", 60)}));
  EXPECT_EQ(refused.error(), Errc::kDeviceUnknown);
  EXPECT_EQ(CountRows(db_path())["batches"], 0);
}

// ---- Ingest ------------------------------------------------------------------------------------

TEST_F(HomeStoreTest, AlertOpensTicketAndQueuesOneEmailPerContact) {
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

TEST_F(HomeStoreTest, RepeatedAlertAddsOccurrenceWithoutNewEmail) {
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
  EXPECT_EQ(CountRows(db_path())["notifications"], 2);
  EXPECT_EQ(CountRows(db_path())["tickets"], 1);
}

TEST_F(HomeStoreTest, RepeatedMessageIdGetsTheSameAnswerAndChangesNothing) {
  EnrollDevice(Device());
  auto first =
      Ingest(Request("b1", {Alert("m1", "SIM-3A21", Severity::kCritical), Heartbeat("m2", 60)}));
  const auto before = CountRows(db_path());
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
  auto after = CountRows(db_path());
  EXPECT_EQ(after["batches"], before.at("batches") + 1);  // the new batch id itself is recorded
  after["batches"] = before.at("batches");
  EXPECT_EQ(after, before);
  EXPECT_EQ(Ticket("LL-000001").ticket.occurrences, 1);
}

TEST_F(HomeStoreTest, DuplicateIdWithinOneBatchIsAnsweredOnce) {
  EnrollDevice(Device());
  auto reply = Ingest(Request("b1", {Alert("m1", "SIM-3A21", Severity::kCritical),
                                     Alert("m1", "SIM-3A21", Severity::kCritical)}));
  ASSERT_EQ(reply.results.size(), 2u);
  EXPECT_FALSE(reply.results[0].duplicate);
  EXPECT_TRUE(reply.results[1].duplicate);
  EXPECT_EQ(reply.results[1].ticket, "LL-000001");
  EXPECT_EQ(Ticket("LL-000001").ticket.occurrences, 1);
}

TEST_F(HomeStoreTest, ReplayedBatchIsRefusedAndStoresNothing) {
  EnrollDevice(Device());
  Ingest(Request("b1", {Alert("m1", "SIM-3A21", Severity::kCritical)}));
  const auto before = CountRows(db_path());
  const auto device_before = **store_->FindDevice("ACME", "site-1", "SN123");

  // Same batch id, fresh content: a replay must not smuggle anything in.
  auto replay = store_->IngestBatch(Request(
      "b1", {Alert("m9", "NEW-CODE", Severity::kCritical), Heartbeat("m10", 30)}, kNow + 5000));
  ASSERT_FALSE(replay);
  EXPECT_EQ(replay.error(), Errc::kReplayedBatch);
  EXPECT_EQ(CountRows(db_path()), before);
  const auto device_after = **store_->FindDevice("ACME", "site-1", "SN123");
  EXPECT_EQ(device_after.last_seen_ms, device_before.last_seen_ms);
  EXPECT_EQ(device_after.last_heartbeat_ms, device_before.last_heartbeat_ms);
}

TEST_F(HomeStoreTest, ClearResolvesAndTheNextAlertOpensANewTicket) {
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
  EXPECT_EQ(CountRows(db_path())["notifications"], 4);
}

TEST_F(HomeStoreTest, AlertBelowThresholdIsRecordedWithoutTicket) {
  EnrollDevice(Device());
  auto reply = Ingest(Request("b1", {Alert("m1", "TMP-01", Severity::kWarning)}));
  ASSERT_EQ(reply.results.size(), 1u);
  EXPECT_EQ(reply.results[0].status, MessageStatus::kAccepted);
  EXPECT_EQ(reply.results[0].reason, "recorded; below ticket severity");
  EXPECT_EQ(reply.results[0].ticket, "");
  const auto counts = CountRows(db_path());
  EXPECT_EQ(counts.at("tickets"), 0);
  EXPECT_EQ(counts.at("notifications"), 0);
  EXPECT_EQ(counts.at("events"), 1);
  EXPECT_EQ(store_->Stats()->alerts, 1);
}

TEST_F(HomeStoreTest, HeartbeatAndSequenceUpdateTheDevice) {
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

TEST_F(HomeStoreTest, InstructionsRideOnRepliesUntilTheDeviceReportsOnThem) {
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

TEST_F(HomeStoreTest, ADeviceCannotAnswerAnotherDevicesInstructions) {
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

TEST_F(HomeStoreTest, InstructionForAnUnknownDeviceIsRefused) {
  auto id = store_->QueueInstruction({"ACME", "site-1", "NOPE", ""}, "send_inventory", "", kNow);
  ASSERT_FALSE(id);
  EXPECT_EQ(id.error(), Errc::kDeviceUnknown);
}

TEST_F(HomeStoreTest, OtherMessageKindsAreStoredAsRawJson) {
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

  auto db = sqlite::Database::Open(db_path());
  ASSERT_TRUE(db);
  auto stmt = (*db)->Prepare("SELECT type, payload_json FROM events ORDER BY id");
  ASSERT_TRUE(stmt);
  ASSERT_TRUE(*stmt->Step());
  EXPECT_EQ(stmt->Text(0), "inventory");
  EXPECT_EQ(stmt->Text(1), inventory.payload_json);
  ASSERT_TRUE(*stmt->Step());
  EXPECT_EQ(stmt->Text(0), "performance");
  EXPECT_EQ(stmt->Text(1), perf.payload_json);
}

TEST_F(HomeStoreTest, AlertWithoutCodeIsRejected) {
  EnrollDevice(Device());
  auto reply = Ingest(Request("b1", {Alert("m1", "", Severity::kCritical), Message{}}));
  ASSERT_EQ(reply.results.size(), 2u);
  EXPECT_EQ(reply.results[0].status, MessageStatus::kRejected);
  EXPECT_EQ(reply.results[1].status, MessageStatus::kRejected);  // no message id
  EXPECT_EQ(CountRows(db_path())["tickets"], 0);
}

TEST_F(HomeStoreTest, SubjectCannotCarryHeaderBreaks) {
  EnrollDevice(Device());
  Ingest(Request("b1", {Alert("m1", "X\r\nBcc: evil@example.com", Severity::kCritical)}));
  const auto detail = Ticket("LL-000001");
  ASSERT_FALSE(detail.notifications.empty());
  const std::string& subject = detail.notifications[0].subject;
  EXPECT_EQ(subject.find('\r'), std::string::npos);
  EXPECT_EQ(subject.find('\n'), std::string::npos);
}

TEST_F(HomeStoreTest, TicketNumbersAndListing) {
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

TEST_F(HomeStoreTest, PrunedBatchIdsAreForgotten) {
  EnrollDevice(Device());
  Ingest(Request("old", {Heartbeat("m1", 60)}, kNow));
  Ingest(Request("new", {Heartbeat("m2", 60)}, kNow + 100'000));
  auto pruned = store_->PruneBatchIds(kNow + 50'000);
  ASSERT_TRUE(pruned);
  EXPECT_EQ(*pruned, 1);
  EXPECT_EQ(store_->IngestBatch(Request("new", {}, kNow + 200'000)).error(), Errc::kReplayedBatch);
  EXPECT_TRUE(store_->IngestBatch(Request("old", {}, kNow + 200'000)));
}

TEST_F(HomeStoreTest, ConcurrentIngestFromManyThreads) {
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

TEST_F(HomeStoreTest, OutboxClaimSentAndFailed) {
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

TEST_F(HomeStoreTest, AbandonedClaimComesBackAfterTheLease) {
  EnrollDevice(Device());
  Ingest(Request("b1", {Alert("m1", "SIM-3A21", Severity::kCritical)}));
  ASSERT_EQ(store_->ClaimNotifications(1, kNow)->size(), 1u);   // limit honoured
  ASSERT_EQ(store_->ClaimNotifications(10, kNow)->size(), 1u);  // the other one
  EXPECT_TRUE(store_->ClaimNotifications(10, kNow + kNotificationClaimLeaseMs - 1)->empty());
  EXPECT_EQ(store_->ClaimNotifications(10, kNow + kNotificationClaimLeaseMs)->size(), 2u);
}

// ---- Admin tokens ------------------------------------------------------------------------------

TEST_F(HomeStoreTest, AdminTokenLookup) {
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

TEST_F(HomeStoreTest, ReopeningTheFileKeepsEverything) {
  EnrollDevice(Device());
  Ingest(Request("b1", {Alert("m1", "SIM-3A21", Severity::kCritical), Heartbeat("m2", 60)}));
  ASSERT_TRUE(store_->CreateAdminToken("ops", "admin-hash", "admin", kNow));
  const auto before = CountRows(db_path());
  store_.reset();

  store_ = OpenStore();
  ASSERT_TRUE(store_);
  EXPECT_EQ(CountRows(db_path()), before);
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

TEST_F(HomeStoreTest, MigrationsAreIdempotent) {
  EnrollDevice(Device());
  store_.reset();
  for (int i = 0; i < 2; ++i) {
    store_ = OpenStore();
    ASSERT_TRUE(store_);
    store_.reset();
  }
  auto db = sqlite::Database::Open(db_path());
  ASSERT_TRUE(db);
  ASSERT_TRUE((*db)->Migrate(SqliteHomeStore::Migrations()));  // nothing left to do: no error
  auto version = (*db)->Prepare("PRAGMA user_version");
  ASSERT_TRUE(version);
  ASSERT_TRUE(*version->Step());
  EXPECT_EQ(static_cast<std::size_t>(version->Int(0)), SqliteHomeStore::Migrations().size());
  EXPECT_EQ(CountRows(db_path())["devices"], 1);
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
