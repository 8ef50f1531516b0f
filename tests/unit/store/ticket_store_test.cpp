// Tickets beyond "open and resolve": the lifecycle (new, acknowledged, resolved, closed, reopened),
// deduplication keys, the reopen window, notes, assignment and history, storm control, maintenance
// windows, escalation steps, notifications of every kind and the listings the admin API reads. Every
// test runs on SQLite and on a real PostgreSQL server this binary starts, with times given by hand
// (the store takes its clock from the caller).
#include "store/sql_home_store.h"

#include "store/home_schema.h"
#include "store/postgres/session.h"
#include "store/sql/migrate.h"
#include "store/sqlite/sql_session.h"
#include "support/postgres_server.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <thread>

namespace lifeline::store {
namespace {

using protocol::Message;
using protocol::MessageType;
using protocol::Severity;

constexpr std::int64_t kNow = 1'800'000'000'000;
constexpr std::int64_t kMinute = 60'000;

protocol::DeviceIdentity Device(std::string serial = "SN1", std::string site = "site-1") {
  return {"ACME", std::move(site), std::move(serial), "X-200"};
}

Message Alert(std::string id, std::string code, Severity severity = Severity::kCritical,
              std::string text = "disk failing") {
  Message m;
  m.id = std::move(id);
  m.type = MessageType::kAlert;
  m.timestamp_ms = kNow;
  m.alert.code = std::move(code);
  m.alert.severity = severity;
  m.alert.text = std::move(text);
  return m;
}

Message Clear(std::string id, std::string code) {
  Message m = Alert(std::move(id), std::move(code), Severity::kInfo, "recovered");
  m.type = MessageType::kClear;
  return m;
}

Message Inventory(std::string id, std::string payload) {
  Message m;
  m.id = std::move(id);
  m.type = MessageType::kInventory;
  m.timestamp_ms = kNow;
  m.payload_json = std::move(payload);
  return m;
}

/// One planned event, as the planner saw it.
struct PlannedEvent {
  std::string number;
  TicketEventKind kind;
  int level;
  friend bool operator==(const PlannedEvent&, const PlannedEvent&) = default;
};

const auto* const postgres_environment =
    ::testing::AddGlobalTestEnvironment(new testing::PostgresEnvironment);

class TicketStoreTest : public ::testing::TestWithParam<sql::Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == sql::Backend::kPostgres) {
      auto* server = testing::SharedPostgres();
      ASSERT_NE(server, nullptr) << "the test PostgreSQL server did not start";
      conninfo_ = server->CreateDatabase();
    }
    store_ = OpenStore();
    ASSERT_TRUE(store_);
    // The planner records what it was asked and returns one row per channel, so the test sees
    // both the events and the outbox rows they became.
    planner_ = [this](const store::Ticket& t, TicketEventKind kind, int level, std::int64_t) {
      std::lock_guard lock(planned_mutex_);
      planned_.push_back({t.number, kind, level});
      return std::vector<OutboxRow>{
          {"email", "oncall@vendor.example", "about " + t.number, "body"},
          {"webhook", "ops-chat", "", "{\"ticket\":\"" + t.number + "\"}"},
          {"email", "oncall@vendor.example", "duplicate", "dropped: same kind and recipient"}};
    };
  }

  std::unique_ptr<SqlHomeStore> OpenStore() {
    auto opened = SqlHomeStore::Open(HomeStoreOptions{.backend = GetParam(),
                                                      .sqlite_path = dir_ / "home.db",
                                                      .postgres_conninfo = conninfo_,
                                                      .postgres_pool_size = 4});
    EXPECT_TRUE(opened) << opened.error().message() << ": " << sql::LastErrorDetail();
    return opened ? std::move(*opened) : nullptr;
  }

  void Enroll(const protocol::DeviceIdentity& id) {
    const std::string hash = "hash-" + id.Key();
    ASSERT_TRUE(store_->CreateEnrollmentToken(hash, id, kNow + 60'000, kNow));
    ASSERT_TRUE(store_->Enroll({.token_hash = hash,
                                .identity = id,
                                .now_ms = kNow,
                                .device_signing_public_b64 = "a2V5",
                                .cert_fingerprint = "ab",
                                .cert_pem = "pem",
                                .cert_not_after_ms = kNow + 86'400'000}));
  }

  IngestRequest Request(std::vector<Message> messages, std::int64_t now_ms = kNow,
                        const protocol::DeviceIdentity& device = Device()) {
    IngestRequest r;
    r.batch.batch_id = "batch-" + std::to_string(++batches_);
    r.batch.device = device;
    r.batch.sent_at_ms = now_ms;
    r.batch.messages = std::move(messages);
    r.now_ms = now_ms;
    r.planner = planner_;
    r.reopen_window_ms = 60 * kMinute;
    return r;
  }

  protocol::BatchReply Ingest(IngestRequest request, SqlHomeStore* store = nullptr) {
    auto reply = (store ? store : store_.get())->IngestBatch(request);
    EXPECT_TRUE(reply) << reply.error().message() << " " << sql::LastErrorDetail();
    return reply ? *reply : protocol::BatchReply{};
  }

  TicketDetail Detail(const std::string& number) {
    auto detail = store_->GetTicket(number);
    EXPECT_TRUE(detail && detail->has_value()) << number;
    return detail && detail->has_value() ? **detail : TicketDetail{};
  }

  Result<store::Ticket> Change(const std::string& number, TicketAction action, std::string text = "",
                               std::int64_t now_ms = kNow + kMinute, std::string actor = "alice") {
    return store_->ChangeTicket({.number = number,
                                 .action = action,
                                 .actor = std::move(actor),
                                 .text = std::move(text),
                                 .now_ms = now_ms,
                                 .planner = planner_});
  }

  std::vector<PlannedEvent> TakePlanned() {
    std::lock_guard lock(planned_mutex_);
    return std::exchange(planned_, {});
  }

  std::int64_t CountNotifications(const std::string& number) {
    auto rows = store_->ListNotifications({.ticket_number = number, .limit = 1000});
    EXPECT_TRUE(rows);
    return rows ? static_cast<std::int64_t>(rows->size()) : -1;
  }

  testing::TempDir dir_;
  std::string conninfo_;
  std::unique_ptr<SqlHomeStore> store_;
  NotifyPlanner planner_;
  std::mutex planned_mutex_;
  std::vector<PlannedEvent> planned_;
  int batches_ = 0;
};

// ---- Lifecycle ---------------------------------------------------------------------------------

TEST_P(TicketStoreTest, LifecycleNewAcknowledgedResolvedClosedWithHistory) {
  Enroll(Device());
  auto reply = Ingest(Request({Alert("m1", "SIM-1")}));
  ASSERT_EQ(reply.results[0].ticket, "LL-000001");
  EXPECT_EQ(reply.results[0].reason, "ticket opened");
  EXPECT_EQ(TakePlanned(), (std::vector<PlannedEvent>{{"LL-000001", TicketEventKind::kOpened, 0}}));
  // One row per (kind, recipient): the planner's duplicate email is dropped.
  EXPECT_EQ(CountNotifications("LL-000001"), 2);

  TicketDetail d = Detail("LL-000001");
  EXPECT_EQ(d.ticket.status, TicketStatus::kNew);
  EXPECT_EQ(d.ticket.state, TicketState::kOpen);
  EXPECT_EQ(d.ticket.dedup_key, "ACME/site-1/SN1/SIM-1");
  EXPECT_EQ(d.ticket.episode_started_ms, kNow);
  EXPECT_EQ(d.ticket.device.model, "X-200");
  EXPECT_EQ(d.escalation_sent_ms, (std::map<int, std::int64_t>{{0, kNow}}));

  auto acked = Change("LL-000001", TicketAction::kAcknowledge, "looking at it", kNow + kMinute);
  ASSERT_TRUE(acked) << acked.error().message();
  EXPECT_EQ(acked->status, TicketStatus::kAcknowledged);
  EXPECT_EQ(acked->acknowledged_by, "alice");
  EXPECT_EQ(acked->acknowledged_at_ms, kNow + kMinute);
  auto again = Change("LL-000001", TicketAction::kAcknowledge);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), Errc::kConflict);

  ASSERT_TRUE(Change("LL-000001", TicketAction::kAssign, "bob", kNow + 2 * kMinute));
  ASSERT_TRUE(Change("LL-000001", TicketAction::kNote, "replaced the drive", kNow + 3 * kMinute, "bob"));
  auto empty_note = Change("LL-000001", TicketAction::kNote, "");
  ASSERT_FALSE(empty_note);
  EXPECT_EQ(empty_note.error(), Errc::kInvalidArgument);

  // A repeat while acknowledged is an occurrence; it notifies nobody and keeps the status.
  reply = Ingest(Request({Alert("m2", "SIM-1")}, kNow + 4 * kMinute));
  EXPECT_EQ(reply.results[0].reason, "occurrence added");
  EXPECT_TRUE(TakePlanned().empty());
  EXPECT_EQ(Detail("LL-000001").ticket.status, TicketStatus::kAcknowledged);
  EXPECT_EQ(Detail("LL-000001").ticket.occurrences, 2);

  auto resolved = Change("LL-000001", TicketAction::kResolve, "", kNow + 5 * kMinute);
  ASSERT_TRUE(resolved);
  EXPECT_EQ(resolved->status, TicketStatus::kResolved);
  EXPECT_EQ(resolved->state, TicketState::kResolved);
  EXPECT_EQ(resolved->resolved_by, "alice");
  EXPECT_EQ(TakePlanned(), (std::vector<PlannedEvent>{{"LL-000001", TicketEventKind::kResolved, 0}}));

  auto closed = Change("LL-000001", TicketAction::kClose, "done", kNow + 6 * kMinute);
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->status, TicketStatus::kClosed);
  EXPECT_EQ(closed->closed_at_ms, kNow + 6 * kMinute);
  EXPECT_EQ(Change("LL-000001", TicketAction::kClose).error(), Errc::kConflict);
  EXPECT_EQ(Change("LL-000001", TicketAction::kResolve).error(), Errc::kConflict);
  EXPECT_EQ(Change("LL-000099", TicketAction::kResolve).error(), Errc::kNotFound);

  // Once closed, the alert coming back (even within the reopen window) is a new ticket.
  reply = Ingest(Request({Alert("m3", "SIM-1")}, kNow + 7 * kMinute));
  EXPECT_EQ(reply.results[0].ticket, "LL-000002");

  d = Detail("LL-000001");
  EXPECT_EQ(d.ticket.assignee, "bob");
  ASSERT_EQ(d.notes.size(), 3u);  // with the acknowledgement, the note, with the closing
  EXPECT_EQ(d.notes[0].text, "looking at it");
  EXPECT_EQ(d.notes[1].author, "bob");
  EXPECT_EQ(d.notes[1].text, "replaced the drive");
  EXPECT_EQ(d.notes[1].at_ms, kNow + 3 * kMinute);
  std::vector<std::string> actions;
  for (const auto& h : d.history) {
    actions.push_back(h.action + ":" + h.from_status + ">" + h.to_status);
  }
  EXPECT_EQ(actions, (std::vector<std::string>{"opened:>new", "acknowledged:new>acknowledged",
                                               "assigned:acknowledged>acknowledged",
                                               "resolved:acknowledged>resolved", "closed:resolved>closed"}));
  EXPECT_EQ(d.history[0].actor, "device ACME/site-1/SN1");
  EXPECT_EQ(d.history[1].actor, "alice");
  EXPECT_EQ(d.history[2].detail, "to bob");
}

TEST_P(TicketStoreTest, ResolvedTicketReopensWithinTheWindowAndNotAfter) {
  Enroll(Device());
  Ingest(Request({Alert("m1", "SIM-1", Severity::kCritical)}));
  auto cleared = Ingest(Request({Clear("m2", "SIM-1")}, kNow + kMinute));
  EXPECT_EQ(cleared.results[0].ticket, "LL-000001");
  EXPECT_EQ(Detail("LL-000001").ticket.status, TicketStatus::kResolved);
  EXPECT_EQ(Detail("LL-000001").ticket.resolved_by, "device ACME/site-1/SN1");
  TakePlanned();

  // Back within the hour: the same ticket, a new episode.
  auto back = Ingest(Request({Alert("m3", "SIM-1", Severity::kError, "again")}, kNow + 30 * kMinute));
  EXPECT_EQ(back.results[0].ticket, "LL-000001");
  EXPECT_EQ(back.results[0].reason, "ticket reopened");
  EXPECT_EQ(TakePlanned(), (std::vector<PlannedEvent>{{"LL-000001", TicketEventKind::kReopened, 0}}));
  TicketDetail d = Detail("LL-000001");
  EXPECT_EQ(d.ticket.status, TicketStatus::kReopened);
  EXPECT_EQ(d.ticket.state, TicketState::kOpen);
  EXPECT_EQ(d.ticket.episode_started_ms, kNow + 30 * kMinute);
  EXPECT_EQ(d.ticket.occurrences, 2);
  EXPECT_EQ(d.ticket.severity, Severity::kError);  // the new episode's worst so far
  EXPECT_FALSE(d.ticket.resolved_at_ms.has_value());
  EXPECT_EQ(d.history.back().action, "reopened");

  // A reopened ticket can be acknowledged like a new one.
  ASSERT_TRUE(Change("LL-000001", TicketAction::kAcknowledge, "", kNow + 31 * kMinute));

  // Resolved again, and back only after the window: a new ticket.
  Ingest(Request({Clear("m4", "SIM-1")}, kNow + 32 * kMinute));
  auto late = Ingest(Request({Alert("m5", "SIM-1")}, kNow + 32 * kMinute + 61 * kMinute));
  EXPECT_EQ(late.results[0].ticket, "LL-000002");
  EXPECT_EQ(late.results[0].reason, "ticket opened");
}

TEST_P(TicketStoreTest, ReopenWindowZeroMeansANewTicketAndEngineersCanReopen) {
  Enroll(Device());
  auto request = Request({Alert("m1", "SIM-1")});
  request.reopen_window_ms = 0;
  Ingest(request);
  auto clear = Request({Clear("m2", "SIM-1")}, kNow + kMinute);
  Ingest(clear);
  auto again = Request({Alert("m3", "SIM-1")}, kNow + 2 * kMinute);
  again.reopen_window_ms = 0;
  EXPECT_EQ(Ingest(again).results[0].ticket, "LL-000002");

  // An engineer may reopen LL-000001 only while no other ticket is open for its key.
  auto refused = Change("LL-000001", TicketAction::kReopen);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), Errc::kConflict);
  ASSERT_TRUE(Change("LL-000002", TicketAction::kClose, "duplicate", kNow + 3 * kMinute));
  TakePlanned();
  auto reopened = Change("LL-000001", TicketAction::kReopen, "not fixed", kNow + 4 * kMinute);
  ASSERT_TRUE(reopened) << reopened.error().message();
  EXPECT_EQ(reopened->status, TicketStatus::kReopened);
  EXPECT_EQ(reopened->episode_started_ms, kNow + 4 * kMinute);
  EXPECT_EQ(TakePlanned(), (std::vector<PlannedEvent>{{"LL-000001", TicketEventKind::kReopened, 0}}));
  // The next alert joins the reopened ticket.
  EXPECT_EQ(Ingest(Request({Alert("m4", "SIM-1")}, kNow + 5 * kMinute)).results[0].ticket, "LL-000001");
}

TEST_P(TicketStoreTest, DedupKeyFunctionSharesOneTicketAcrossDevices) {
  Enroll(Device("SN1"));
  Enroll(Device("SN2"));
  auto site_key = [](const protocol::DeviceIdentity& d, std::string_view code) {
    return d.customer + "/" + d.site + "/" + std::string(code);
  };
  auto first = Request({Alert("m1", "LINK-DOWN")}, kNow, Device("SN1"));
  first.dedup_key = site_key;
  auto second = Request({Alert("m1", "LINK-DOWN")}, kNow + 1000, Device("SN2"));
  second.dedup_key = site_key;
  EXPECT_EQ(Ingest(first).results[0].ticket, "LL-000001");
  EXPECT_EQ(Ingest(second).results[0].ticket, "LL-000001");
  TicketDetail d = Detail("LL-000001");
  EXPECT_EQ(d.ticket.occurrences, 2);
  EXPECT_EQ(d.ticket.dedup_key, "ACME/site-1/LINK-DOWN");
  EXPECT_EQ(d.ticket.device.serial, "SN1");  // the device that opened it
  EXPECT_EQ(d.events.size(), 2u);
  // A clear from either device resolves it (the key is what a clear is matched by).
  auto clear = Request({Clear("m2", "LINK-DOWN")}, kNow + 2000, Device("SN2"));
  clear.dedup_key = site_key;
  EXPECT_EQ(Ingest(clear).results[0].reason, "ticket resolved");
}

TEST_P(TicketStoreTest, TwoHomesOpenOneTicketForASharedKey) {
  // Two devices of one site, their batches on two "homes" at once: their rows do not share a lock,
  // so the unique index and ON CONFLICT must make it one ticket.
  constexpr int kDevices = 6;
  for (int i = 0; i < kDevices; ++i) {
    Enroll(Device("SN" + std::to_string(i)));
  }
  auto other = OpenStore();
  ASSERT_TRUE(other);
  std::latch start(kDevices);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < kDevices; ++i) {
    threads.emplace_back([&, i] {
      IngestRequest r;
      r.batch.batch_id = "b" + std::to_string(i);
      r.batch.device = Device("SN" + std::to_string(i));
      r.batch.messages = {Alert("m" + std::to_string(i), "LINK-DOWN")};
      r.now_ms = kNow;
      r.planner = planner_;
      r.dedup_key = [](const protocol::DeviceIdentity& d, std::string_view code) {
        return d.customer + "/" + d.site + "/" + std::string(code);
      };
      start.arrive_and_wait();
      if (!(i % 2 == 0 ? store_ : other)->IngestBatch(r)) {
        ++failures;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(failures, 0);
  auto tickets = store_->ListTickets({});
  ASSERT_TRUE(tickets);
  ASSERT_EQ(tickets->size(), 1u);
  EXPECT_EQ(tickets->front().occurrences, kDevices);
  EXPECT_EQ(TakePlanned().size(), 1u);
  EXPECT_EQ(CountNotifications(tickets->front().number), 2);
}

// ---- Storm control -------------------------------------------------------------------------------

TEST_P(TicketStoreTest, StormControlOpensOneSummaryTicketAndKeepsQuiet) {
  Enroll(Device());
  const StormSettings storm{.max_alerts = 10, .window_ms = 60 * kMinute, .maintenance_ms = 30 * kMinute};
  auto send = [&](int first, int count, std::int64_t now_ms) {
    std::vector<Message> alerts;
    for (int i = first; i < first + count; ++i) {
      alerts.push_back(Alert("a" + std::to_string(i), "CODE-" + std::to_string(i)));
    }
    auto request = Request(std::move(alerts), now_ms);
    request.storm = storm;
    return Ingest(request);
  };
  // Ten alerts within the hour are ten tickets; the eleventh tips the device into a storm.
  send(0, 6, kNow);
  auto reply = send(6, 9, kNow + 10 * kMinute);
  ASSERT_EQ(reply.results.size(), 9u);
  EXPECT_EQ(reply.results[3].ticket, "LL-000010");  // alert 10
  const std::string summary = reply.results[4].ticket;
  EXPECT_EQ(summary, "LL-000011");
  EXPECT_EQ(reply.results[4].reason, "storm control: device in automatic maintenance; added to the summary ticket");
  for (std::size_t i = 5; i < 9; ++i) {
    EXPECT_EQ(reply.results[i].ticket, summary);
    EXPECT_EQ(reply.results[i].reason, "storm control: added to the summary ticket");
  }
  TicketDetail d = Detail(summary);
  EXPECT_EQ(d.ticket.kind, "storm");
  EXPECT_EQ(d.ticket.code, kStormTicketCode);
  EXPECT_EQ(d.ticket.occurrences, 5);
  EXPECT_NE(d.ticket.text.find("automatic maintenance"), std::string::npos) << d.ticket.text;
  EXPECT_EQ(d.history.back().action, "storm");
  // Ten tickets notified, the summary once; the alerts after it nobody.
  auto planned = TakePlanned();
  ASSERT_EQ(planned.size(), 11u);
  EXPECT_EQ(planned.back(), (PlannedEvent{summary, TicketEventKind::kOpened, 0}));
  EXPECT_EQ(CountNotifications(summary), 2);

  auto windows = store_->ListMaintenanceWindows({.current_at_ms = kNow + 10 * kMinute});
  ASSERT_TRUE(windows);
  ASSERT_EQ(windows->size(), 1u);
  EXPECT_TRUE(windows->front().automatic);
  EXPECT_EQ(windows->front().serial, "SN1");
  EXPECT_EQ(windows->front().ends_at_ms, kNow + 40 * kMinute);
  EXPECT_EQ(windows->front().created_by, "storm control");

  // During the storm: a clear resolves its ticket quietly; alerts keep joining the summary.
  auto clear = Request({Clear("c1", "CODE-0")}, kNow + 20 * kMinute);
  clear.storm = storm;
  EXPECT_EQ(Ingest(clear).results[0].reason, "ticket resolved");
  EXPECT_EQ(send(100, 3, kNow + 25 * kMinute).results[2].ticket, summary);
  EXPECT_TRUE(TakePlanned().empty());

  // The window ends but the device is still loud (more than ten in the last hour): a new window,
  // the summary joined again, still nobody notified.
  EXPECT_EQ(send(200, 1, kNow + 45 * kMinute).results[0].ticket, summary);
  EXPECT_TRUE(TakePlanned().empty());
  windows = store_->ListMaintenanceWindows({});
  ASSERT_TRUE(windows);
  EXPECT_EQ(windows->size(), 2u);

  // Quiet for more than an hour: alerts are tickets again.
  reply = send(300, 1, kNow + 45 * kMinute + 61 * kMinute);
  EXPECT_EQ(reply.results[0].reason, "ticket opened");
  EXPECT_NE(reply.results[0].ticket, summary);
  EXPECT_EQ(TakePlanned().size(), 1u);
}

TEST_P(TicketStoreTest, StormControlCountsOnlyTicketWorthyAlertsOfOneDevice) {
  Enroll(Device("SN1"));
  Enroll(Device("SN2"));
  const StormSettings storm{.max_alerts = 3, .window_ms = 60 * kMinute, .maintenance_ms = 30 * kMinute};
  std::vector<Message> quiet;
  for (int i = 0; i < 10; ++i) {
    quiet.push_back(Alert("w" + std::to_string(i), "W-" + std::to_string(i), Severity::kWarning));
  }
  auto warnings = Request(quiet);
  warnings.storm = storm;
  Ingest(warnings);  // below the ticket severity: recorded, not counted
  for (const char* serial : {"SN1", "SN2"}) {
    auto r = Request({Alert("a1", "A"), Alert("a2", "B"), Alert("a3", "C")}, kNow + kMinute, Device(serial));
    r.storm = storm;
    for (const auto& result : Ingest(r).results) {
      EXPECT_EQ(result.reason, "ticket opened") << serial;
    }
  }
  auto windows = store_->ListMaintenanceWindows({});
  ASSERT_TRUE(windows);
  EXPECT_TRUE(windows->empty());
}

// ---- Maintenance windows ------------------------------------------------------------------------

TEST_P(TicketStoreTest, MaintenanceWindowKeepsTicketsButNotifiesNobody) {
  Enroll(Device("SN1"));
  Enroll(Device("SN2", "site-2"));
  auto added = store_->AddMaintenanceWindow({.customer = "ACME",
                                             .site = "site-1",
                                             .starts_at_ms = kNow,
                                             .ends_at_ms = kNow + 60 * kMinute,
                                             .reason = "firmware upgrade",
                                             .created_by = "carol"},
                                            kNow - kMinute);
  ASSERT_TRUE(added) << added.error().message();
  EXPECT_GT(added->id, 0);
  EXPECT_EQ(added->created_at_ms, kNow - kMinute);

  // Site 1 is in maintenance: the ticket opens, quietly; site 2 notifies as usual.
  auto reply = Ingest(Request({Alert("m1", "SIM-1")}, kNow + kMinute, Device("SN1")));
  EXPECT_EQ(reply.results[0].reason, "ticket opened; in maintenance, nobody notified");
  const std::string quiet = reply.results[0].ticket;
  EXPECT_EQ(Detail(quiet).ticket.suppressed, "maintenance");
  EXPECT_EQ(CountNotifications(quiet), 0);
  EXPECT_TRUE(Detail(quiet).escalation_sent_ms.empty());
  auto loud = Ingest(Request({Alert("m1", "SIM-1")}, kNow + kMinute, Device("SN2", "site-2"))).results[0].ticket;
  EXPECT_EQ(CountNotifications(loud), 2);
  EXPECT_EQ(TakePlanned().size(), 1u);

  // Repeats are recorded; its resolution is quiet too.
  Ingest(Request({Alert("m2", "SIM-1")}, kNow + 2 * kMinute, Device("SN1")));
  EXPECT_EQ(Detail(quiet).ticket.occurrences, 2);
  Ingest(Request({Clear("m3", "SIM-1")}, kNow + 3 * kMinute, Device("SN1")));
  EXPECT_EQ(Detail(quiet).ticket.status, TicketStatus::kResolved);
  EXPECT_TRUE(TakePlanned().empty());

  auto listed = store_->ListMaintenanceWindows({.current_at_ms = kNow + 3 * kMinute, .customer = "ACME"});
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(listed->front().reason, "firmware upgrade");
  EXPECT_FALSE(listed->front().automatic);

  // Ended early: the next alert notifies again; ending it twice is a conflict.
  auto ended = store_->EndMaintenanceWindow(added->id, "carol", kNow + 4 * kMinute);
  ASSERT_TRUE(ended);
  EXPECT_EQ(ended->ends_at_ms, kNow + 4 * kMinute);
  EXPECT_EQ(ended->ended_by, "carol");
  EXPECT_EQ(store_->EndMaintenanceWindow(added->id, "carol", kNow + 5 * kMinute).error(), Errc::kConflict);
  EXPECT_EQ(store_->EndMaintenanceWindow(999, "carol", kNow).error(), Errc::kNotFound);
  reply = Ingest(Request({Alert("m4", "SIM-2")}, kNow + 5 * kMinute, Device("SN1")));
  EXPECT_EQ(reply.results[0].reason, "ticket opened");
  EXPECT_EQ(TakePlanned().size(), 1u);
  listed = store_->ListMaintenanceWindows({.current_at_ms = kNow + 5 * kMinute});
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->empty());
}

TEST_P(TicketStoreTest, MaintenanceWindowForOneDeviceAndRefusals) {
  Enroll(Device("SN1"));
  Enroll(Device("SN2"));
  ASSERT_TRUE(store_->AddMaintenanceWindow(
      {.customer = "ACME", .site = "site-1", .serial = "SN1", .starts_at_ms = kNow, .ends_at_ms = kNow + kMinute},
      kNow));
  EXPECT_EQ(Ingest(Request({Alert("m1", "X")}, kNow + 1000, Device("SN1"))).results[0].reason,
            "ticket opened; in maintenance, nobody notified");
  EXPECT_EQ(Ingest(Request({Alert("m1", "X")}, kNow + 1000, Device("SN2"))).results[0].reason, "ticket opened");

  auto bad = store_->AddMaintenanceWindow(
      {.customer = "ACME", .site = "site-1", .starts_at_ms = kNow, .ends_at_ms = kNow}, kNow);
  EXPECT_EQ(bad.error(), Errc::kInvalidArgument);
  auto unknown = store_->AddMaintenanceWindow(
      {.customer = "ACME", .site = "site-1", .serial = "nope", .starts_at_ms = kNow, .ends_at_ms = kNow + 1}, kNow);
  EXPECT_EQ(unknown.error(), Errc::kDeviceUnknown);

  // A planned window ended before it begins is cancelled: it never covers anything.
  auto planned = store_->AddMaintenanceWindow(
      {.customer = "ACME", .site = "site-1", .starts_at_ms = kNow + 60 * kMinute, .ends_at_ms = kNow + 90 * kMinute},
      kNow);
  ASSERT_TRUE(planned);
  auto cancelled = store_->EndMaintenanceWindow(planned->id, "dave", kNow + kMinute);
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->ends_at_ms, cancelled->starts_at_ms);
  EXPECT_EQ(Ingest(Request({Alert("m2", "Y")}, kNow + 70 * kMinute, Device("SN2"))).results[0].reason,
            "ticket opened");
}

// ---- Escalation ----------------------------------------------------------------------------------

TEST_P(TicketStoreTest, EscalationCandidatesAndStepsApplyOnce) {
  Enroll(Device());
  Ingest(Request({Alert("m1", "SIM-1"), Alert("m2", "SIM-2")}));
  TakePlanned();
  auto candidates = store_->ListEscalationCandidates(kNow + 15 * kMinute, 0, 100);
  ASSERT_TRUE(candidates);
  ASSERT_EQ(candidates->size(), 2u);
  const auto& c = candidates->front();
  EXPECT_EQ(c.ticket.number, "LL-000001");
  EXPECT_EQ(c.last_sent_ms, (std::map<int, std::int64_t>{{0, kNow}}));
  // Paging by id.
  auto page = store_->ListEscalationCandidates(kNow + 15 * kMinute, c.ticket.id, 100);
  ASSERT_TRUE(page);
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ(page->front().ticket.number, "LL-000002");

  const EscalationStep step{.ticket_id = c.ticket.id, .episode_started_ms = kNow, .level = 1};
  // Two homes take the same step at once: exactly one applies it.
  auto other = OpenStore();
  std::atomic<int> applied{0};
  {
    std::latch start(2);
    std::vector<std::thread> threads;
    for (SqlHomeStore* s : {store_.get(), other.get()}) {
      threads.emplace_back([&, s] {
        start.arrive_and_wait();
        auto done = s->Escalate(step, kNow + 15 * kMinute, planner_);
        EXPECT_TRUE(done) << done.error().message();
        applied += done && *done ? 1 : 0;
      });
    }
    for (auto& t : threads) {
      t.join();
    }
  }
  EXPECT_EQ(applied, 1);
  EXPECT_EQ(TakePlanned(), (std::vector<PlannedEvent>{{"LL-000001", TicketEventKind::kEscalated, 1}}));
  EXPECT_EQ(CountNotifications("LL-000001"), 4);
  TicketDetail d = Detail("LL-000001");
  EXPECT_EQ(d.escalation_sent_ms.at(1), kNow + 15 * kMinute);
  EXPECT_EQ(d.history.back().action, "escalated");
  EXPECT_EQ(d.history.back().detail, "level 1");

  // A reminder is conditional on the time the job saw.
  EXPECT_FALSE(*store_->Escalate({.ticket_id = c.ticket.id, .episode_started_ms = kNow, .level = 1,
                                  .reminder = true, .previous_sent_ms = kNow},
                                 kNow + 45 * kMinute, planner_));
  EXPECT_TRUE(*store_->Escalate({.ticket_id = c.ticket.id, .episode_started_ms = kNow, .level = 1,
                                 .reminder = true, .previous_sent_ms = kNow + 15 * kMinute},
                                kNow + 45 * kMinute, planner_));
  EXPECT_EQ(TakePlanned(), (std::vector<PlannedEvent>{{"LL-000001", TicketEventKind::kReminder, 1}}));

  // Resolving tells everyone up to the highest level of the episode.
  ASSERT_TRUE(Change("LL-000001", TicketAction::kResolve, "", kNow + 50 * kMinute));
  EXPECT_EQ(TakePlanned(), (std::vector<PlannedEvent>{{"LL-000001", TicketEventKind::kResolved, 1}}));

  // Acknowledged, in maintenance or from another episode: not a candidate, and a step does nothing.
  ASSERT_TRUE(Change("LL-000002", TicketAction::kAcknowledge));
  candidates = store_->ListEscalationCandidates(kNow + 60 * kMinute, 0, 100);
  ASSERT_TRUE(candidates);
  EXPECT_TRUE(candidates->empty());
  EXPECT_FALSE(*store_->Escalate({.ticket_id = page->front().ticket.id, .episode_started_ms = kNow, .level = 1},
                                 kNow + 60 * kMinute, planner_));
  Ingest(Request({Alert("m3", "SIM-3")}, kNow + 61 * kMinute));
  ASSERT_TRUE(store_->AddMaintenanceWindow(
      {.customer = "ACME", .site = "site-1", .starts_at_ms = kNow + 62 * kMinute, .ends_at_ms = kNow + 90 * kMinute},
      kNow));
  candidates = store_->ListEscalationCandidates(kNow + 62 * kMinute, 0, 100);
  ASSERT_TRUE(candidates);
  EXPECT_TRUE(candidates->empty());
  candidates = store_->ListEscalationCandidates(kNow + 91 * kMinute, 0, 100);
  ASSERT_TRUE(candidates);
  ASSERT_EQ(candidates->size(), 1u);
  EXPECT_FALSE(*store_->Escalate({.ticket_id = candidates->front().ticket.id, .episode_started_ms = kNow, .level = 1},
                                 kNow + 91 * kMinute, planner_));
}

// ---- Listings ------------------------------------------------------------------------------------

TEST_P(TicketStoreTest, ListingsFilterTicketsNotificationsAndInventory) {
  Enroll(Device("SN1"));
  Enroll(Device("SN2"));
  Ingest(Request({Alert("m1", "A"), Alert("m2", "B"), Inventory("i1", R"({"disks":1})")}, kNow, Device("SN1")));
  Ingest(Request({Inventory("i2", R"({"disks":2})")}, kNow + 1000, Device("SN1")));
  Ingest(Request({Alert("m1", "A")}, kNow, Device("SN2")));
  ASSERT_TRUE(Change("LL-000002", TicketAction::kAssign, "bob"));
  ASSERT_TRUE(Change("LL-000001", TicketAction::kResolve, "", kNow + 5 * kMinute));

  auto numbers = [&](TicketFilter filter) {
    std::vector<std::string> out;
    auto tickets = store_->ListTickets(filter);
    EXPECT_TRUE(tickets);
    if (tickets) {
      for (const auto& t : *tickets) {
        out.push_back(t.number);
      }
    }
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(numbers({}), (V{"LL-000003", "LL-000002", "LL-000001"}));
  EXPECT_EQ(numbers({.state = TicketState::kOpen}), (V{"LL-000003", "LL-000002"}));
  EXPECT_EQ(numbers({.statuses = {TicketStatus::kResolved}}), (V{"LL-000001"}));
  EXPECT_EQ(numbers({.customer = "ACME", .site = "site-1", .serial = "SN1"}), (V{"LL-000002", "LL-000001"}));
  EXPECT_EQ(numbers({.code = "A"}), (V{"LL-000003", "LL-000001"}));
  EXPECT_EQ(numbers({.assignee = "bob"}), (V{"LL-000002"}));
  EXPECT_EQ(numbers({.limit = 1}), (V{"LL-000003"}));
  // What a device asking for its tickets sees: open ones, and the ones that changed lately.
  EXPECT_EQ(numbers({.serial = "SN1", .open_or_changed_since_ms = kNow + 4 * kMinute}),
            (V{}));  // serial alone names no device
  EXPECT_EQ(numbers({.customer = "ACME", .site = "site-1", .serial = "SN1",
                     .open_or_changed_since_ms = kNow + 6 * kMinute}),
            (V{"LL-000002"}));

  auto hooks = store_->ListNotifications({.kind = "webhook"});
  ASSERT_TRUE(hooks);
  EXPECT_EQ(hooks->size(), 4u);  // three tickets opened, one resolved
  auto claimed = store_->ClaimNotifications(100, kNow);
  ASSERT_TRUE(claimed);
  ASSERT_TRUE(store_->MarkNotificationSent(claimed->at(0).id, kNow));
  ASSERT_TRUE(store_->MarkNotificationFailed(claimed->at(1).id, "HTTP 404", std::nullopt));
  auto failed = store_->ListNotifications({.status = NotificationStatus::kFailed});
  ASSERT_TRUE(failed);
  ASSERT_EQ(failed->size(), 1u);
  EXPECT_EQ(failed->front().last_error, "HTTP 404");
  auto for_ticket = store_->ListNotifications({.ticket_number = "LL-000003"});
  ASSERT_TRUE(for_ticket);
  EXPECT_EQ(for_ticket->size(), 2u);

  auto stats = store_->Stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->tickets, 3);
  EXPECT_EQ(stats->open_tickets, 2);
  EXPECT_EQ(stats->notifications_sent, 1);
  EXPECT_EQ(stats->notifications_failed, 1);
  EXPECT_EQ(stats->notifications_pending, 6);  // 4 events x 2 rows, less the two above
  EXPECT_EQ(stats->sent_by_kind.begin()->second, 1);
  EXPECT_EQ(stats->emails_sent + stats->emails_pending + (claimed->at(1).kind == "email" ? 1 : 0), 4);

  auto inventory = store_->LatestInventory(std::nullopt);
  ASSERT_TRUE(inventory);
  ASSERT_EQ(inventory->size(), 1u);
  EXPECT_EQ(inventory->front().device.serial, "SN1");
  EXPECT_EQ(inventory->front().payload_json, R"({"disks":2})");
  EXPECT_EQ(inventory->front().received_at_ms, kNow + 1000);
  auto none = store_->LatestInventory(Device("SN2"));
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
}

TEST_P(TicketStoreTest, MigrationFromVersion2KeepsTicketsAndFillsTheLifecycle) {
  // A database at version 2 with an open and a resolved ticket, then the store opens it.
  store_.reset();
  testing::TempDir other_dir;
  std::string conninfo;
  std::shared_ptr<sql::Database> db;
  if (GetParam() == sql::Backend::kSqlite) {
    db = *sqlite::OpenSqlDatabase(other_dir / "home.db");
  } else {
    conninfo = testing::SharedPostgres()->CreateDatabase();
    db = *postgres::Open({.conninfo = conninfo, .pool_size = 1});
  }
  ASSERT_TRUE(sql::Migrate(*db, HomeMigrations().first(2), kHomeMigrationLock));
  auto seeded = db->WithSession([](sql::Session& s) -> VoidResult {
    for (const char* statement :
         {"INSERT INTO devices (customer, site, serial, model, signing_public_b64, cert_fingerprint, cert_pem, "
          "cert_not_after_ms, status, enrolled_at_ms) VALUES ('ACME', 's', 'SN', 'M', 'k', 'f', 'p', 1, 'active', 1)",
          "INSERT INTO tickets (number, state, device_id, customer, site, serial, code, severity, text, "
          "first_seen_ms, last_seen_ms, occurrences) VALUES ('LL-000001', 'open', 1, 'ACME', 's', 'SN', 'A', "
          "'error', 't', 10, 20, 2)",
          "INSERT INTO tickets (number, state, device_id, customer, site, serial, code, severity, text, "
          "first_seen_ms, last_seen_ms, occurrences, resolved_at_ms) VALUES ('LL-000002', 'resolved', 1, 'ACME', "
          "'s', 'SN', 'B', 'error', 't', 10, 30, 1, 30)"}) {
      if (auto done = s.Exec(statement); !done) {
        return done.error();
      }
    }
    return {};
  });
  ASSERT_TRUE(seeded) << sql::LastErrorDetail();
  db.reset();
  auto opened = GetParam() == sql::Backend::kSqlite
                    ? SqlHomeStore::Open(other_dir / "home.db")
                    : SqlHomeStore::Open(HomeStoreOptions{.backend = GetParam(), .postgres_conninfo = conninfo});
  ASSERT_TRUE(opened) << sql::LastErrorDetail();
  auto first = (*opened)->GetTicket("LL-000001");
  ASSERT_TRUE(first && *first);
  EXPECT_EQ((*first)->ticket.status, TicketStatus::kNew);
  EXPECT_EQ((*first)->ticket.dedup_key, "ACME/s/SN/A");
  EXPECT_EQ((*first)->ticket.episode_started_ms, 10);
  ASSERT_EQ((*first)->history.size(), 1u);
  EXPECT_EQ((*first)->history[0].action, "opened");
  auto second = (*opened)->GetTicket("LL-000002");
  ASSERT_TRUE(second && *second);
  EXPECT_EQ((*second)->ticket.status, TicketStatus::kResolved);
  EXPECT_EQ((*second)->history.size(), 2u);
}

INSTANTIATE_TEST_SUITE_P(Backends, TicketStoreTest,
                         ::testing::Values(sql::Backend::kSqlite, sql::Backend::kPostgres),
                         [](const ::testing::TestParamInfo<sql::Backend>& info) {
                           return info.param == sql::Backend::kSqlite ? "SQLite" : "PostgreSQL";
                         });

}  // namespace
}  // namespace lifeline::store
