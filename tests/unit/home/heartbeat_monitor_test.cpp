// HeartbeatMonitor over the real store, on SQLite and on PostgreSQL, with a fake clock: a missing
// heartbeat opens one ticket (and its email) and resolves itself; a dead site opens one site
// ticket; a restart neither opens a ticket twice nor leaves one open; revoked devices; two homes.
#include "home/heartbeat_monitor.h"

#include "home_store_fixture.h"

#include <gtest/gtest.h>

namespace lifeline::home {
namespace {

using store::HeartbeatOutcome;
using store::TicketState;
using namespace std::chrono_literals;

const auto* const postgres_environment =
    ::testing::AddGlobalTestEnvironment(new lifeline::testing::PostgresEnvironment);

class HeartbeatMonitorTest : public testing::HomeStoreFixture {
 protected:
  std::unique_ptr<HeartbeatMonitor> MakeMonitor(store::SqlHomeStore* store = nullptr) {
    HeartbeatSettings settings;
    settings.grace = 300s;
    settings.start_delay = 0s;
    store::HeartbeatTicketOptions tickets;
    tickets.contacts = {"oncall@vendor.example"};
    auto monitor = std::make_unique<HeartbeatMonitor>(store ? *store : *store_, clock_, settings, tickets);
    EXPECT_TRUE(monitor->Restore());
    return monitor;
  }

  /// A heartbeat from `device` ingested and observed, as the ingest handler does it.
  void Beat(HeartbeatMonitor& monitor, const protocol::DeviceIdentity& device, std::int64_t interval_s = 60,
            store::SqlHomeStore* store = nullptr) {
    const auto request = Request(device, {Heartbeat(interval_s)});
    const auto reply = Ingest(request, store);
    monitor.OnBatchCommitted(request.batch, reply, request.now_ms);
  }

  std::vector<store::HeartbeatApplied> Sweep(HeartbeatMonitor& monitor) {
    auto applied = monitor.SweepOnce();
    EXPECT_TRUE(applied) << applied.error().message();
    return applied ? *applied : std::vector<store::HeartbeatApplied>{};
  }

  static std::size_t Count(const std::vector<store::HeartbeatApplied>& applied, HeartbeatOutcome outcome) {
    return static_cast<std::size_t>(
        std::count_if(applied.begin(), applied.end(), [&](const auto& a) { return a.outcome == outcome; }));
  }

  std::int64_t EmailsFor(const std::string& number) {
    auto detail = store_->GetTicket(number);
    EXPECT_TRUE(detail && detail->has_value());
    return detail && detail->has_value() ? static_cast<std::int64_t>((*detail)->notifications.size()) : -1;
  }
};

TEST_P(HeartbeatMonitorTest, AMissingHeartbeatOpensOneTicketAndResolvesItself) {
  const auto device = Device("SN1");
  Enroll(device);
  auto monitor = MakeMonitor();
  Beat(*monitor, device, 60);

  // Interval 60 s + grace 300 s: nothing before, one ticket at the deadline, with one email.
  clock_.Advance(359s);
  EXPECT_TRUE(Sweep(*monitor).empty());
  clock_.Advance(2s);
  auto applied = Sweep(*monitor);
  ASSERT_EQ(applied.size(), 1u);
  EXPECT_EQ(applied[0].outcome, HeartbeatOutcome::kOpened);
  auto open = Tickets(store::kHeartbeatMissingCode, TicketState::kOpen);
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].number, applied[0].ticket_number);
  EXPECT_EQ(open[0].device.serial, "SN1");
  EXPECT_EQ(open[0].kind, "heartbeat");
  EXPECT_NE(open[0].text.find("No heartbeat since"), std::string::npos) << open[0].text;
  EXPECT_EQ(EmailsFor(open[0].number), 1);

  // Still missing an hour later: no second ticket, no second email.
  for (int i = 0; i < 60; ++i) {
    clock_.Advance(60s);
    EXPECT_TRUE(Sweep(*monitor).empty());
  }
  EXPECT_EQ(Tickets(store::kHeartbeatMissingCode).size(), 1u);

  // It comes back: resolved by itself.
  Beat(*monitor, device, 60);
  applied = Sweep(*monitor);
  ASSERT_EQ(applied.size(), 1u);
  EXPECT_EQ(applied[0].outcome, HeartbeatOutcome::kResolved);
  EXPECT_TRUE(Tickets(store::kHeartbeatMissingCode, TicketState::kOpen).empty());
  const auto stats = monitor->Stats();
  EXPECT_EQ(stats.tickets_opened, 1);
  EXPECT_EQ(stats.tickets_resolved, 1);
}

TEST_P(HeartbeatMonitorTest, ADeadSiteOpensOneSiteTicketInsteadOfOnePerDevice) {
  // Site "plant": 10 devices beating every 600 s, 60 s apart. A healthy device elsewhere.
  std::vector<protocol::DeviceIdentity> plant;
  for (int i = 0; i < 10; ++i) {
    plant.push_back(Device("P" + std::to_string(i), "plant"));
    Enroll(plant.back());
  }
  const auto other = Device("OTHER", "office");
  Enroll(other);
  auto monitor = MakeMonitor();
  for (int second = 0; second < 1800; second += 60) {
    Beat(*monitor, plant[static_cast<std::size_t>(second / 60 % 10)], 600);
    Beat(*monitor, other, 600);
    clock_.Advance(60s);
    EXPECT_TRUE(Sweep(*monitor).empty());
  }
  // The site dies; the other device goes on.
  std::vector<store::HeartbeatApplied> all;
  for (int second = 0; second < 1800; second += 10) {
    if (second % 300 == 0) {
      Beat(*monitor, other, 600);
    }
    clock_.Advance(10s);
    const auto applied = Sweep(*monitor);
    all.insert(all.end(), applied.begin(), applied.end());
  }
  EXPECT_EQ(Count(all, HeartbeatOutcome::kOpened), 1u);
  const auto site = Tickets(store::kSiteSilentCode, TicketState::kOpen);
  ASSERT_EQ(site.size(), 1u);
  EXPECT_EQ(site[0].device.site, "plant");
  EXPECT_EQ(site[0].device.serial, "");
  EXPECT_EQ(site[0].kind, "site");
  EXPECT_EQ(site[0].dedup_key, "ACME/plant/LIFELINE-SITE-SILENT");
  EXPECT_EQ(EmailsFor(site[0].number), 1);
  EXPECT_TRUE(Tickets(store::kHeartbeatMissingCode).empty());

  // The site comes back: its ticket resolves, and no device ticket ever opened.
  for (const auto& device : plant) {
    Beat(*monitor, device, 600);
  }
  clock_.Advance(1s);
  all = Sweep(*monitor);
  EXPECT_EQ(Count(all, HeartbeatOutcome::kResolved), 1u);
  EXPECT_TRUE(Tickets(store::kSiteSilentCode, TicketState::kOpen).empty());
  EXPECT_TRUE(Tickets(store::kHeartbeatMissingCode).empty());
}

TEST_P(HeartbeatMonitorTest, ARestartNeitherOpensTwiceNorLeavesATicketOpen) {
  // Each its own site: this is not about sites.
  const auto a = Device("A", "site-a");
  const auto b = Device("B", "site-b");
  const auto c = Device("C", "site-c");
  for (const auto& d : {a, b, c}) {
    Enroll(d);
  }
  auto monitor = MakeMonitor();
  Beat(*monitor, a, 60);
  Beat(*monitor, b, 60);
  Beat(*monitor, c, 3600);
  clock_.Advance(400s);
  auto applied = Sweep(*monitor);
  ASSERT_EQ(Count(applied, HeartbeatOutcome::kOpened), 2u);  // a and b

  // The home stops. While it is down, b comes back (another home took its heartbeat, or it was
  // ingested just before the stop) and c's deadline passes.
  monitor.reset();
  clock_.Advance(3600s);
  Ingest(Request(b, {Heartbeat(600)}));

  monitor = MakeMonitor();
  applied = Sweep(*monitor);
  // a: still missing, its ticket stands. b: resolved. c: opened now.
  EXPECT_EQ(Count(applied, HeartbeatOutcome::kOpened), 1u);
  EXPECT_EQ(Count(applied, HeartbeatOutcome::kResolved), 1u);
  const auto open = Tickets(store::kHeartbeatMissingCode, TicketState::kOpen);
  ASSERT_EQ(open.size(), 2u);
  std::set<std::string> serials;
  for (const auto& t : open) {
    serials.insert(t.device.serial);
  }
  EXPECT_EQ(serials, (std::set<std::string>{"A", "C"}));
  EXPECT_EQ(Tickets(store::kHeartbeatMissingCode).size(), 3u);
  clock_.Advance(60s);
  EXPECT_TRUE(Sweep(*monitor).empty());
}

TEST_P(HeartbeatMonitorTest, RevokedDevicesLoseTheirTicketAndAreNotWatched) {
  const auto a = Device("A");
  const auto b = Device("B");
  Enroll(a);
  Enroll(b);
  auto monitor = MakeMonitor();
  Beat(*monitor, a, 60);
  Beat(*monitor, b, 60);
  clock_.Advance(200s);
  // b is revoked before its deadline; nothing told the monitor: the store refuses its ticket.
  ASSERT_TRUE(store_->RevokeDevice(b.customer, b.site, b.serial));
  clock_.Advance(200s);
  auto applied = Sweep(*monitor);
  EXPECT_EQ(Count(applied, HeartbeatOutcome::kOpened), 1u);
  EXPECT_EQ(Count(applied, HeartbeatOutcome::kDeviceInactive), 1u);
  EXPECT_EQ(monitor->Stats().tracker.tracked_devices, 1u);

  // a, missing with its ticket open, is revoked: the ticket resolves.
  ASSERT_TRUE(store_->RevokeDevice(a.customer, a.site, a.serial));
  ASSERT_TRUE(monitor->OnDeviceRevoked(a));
  EXPECT_TRUE(Tickets(store::kHeartbeatMissingCode, TicketState::kOpen).empty());
  EXPECT_EQ(monitor->Stats().tracker.tracked_devices, 0u);
}

TEST_P(HeartbeatMonitorTest, TwoHomesOpenOneTicketAndHeartbeatsTakenByTheOtherCount) {
  // Home 1 and home 2 share the database; the device's heartbeats reach home 1 only.
  const auto device = Device("SN1");
  Enroll(device);
  auto store2 = OpenStore();
  ASSERT_TRUE(store2);
  auto home1 = MakeMonitor();
  Beat(*home1, device, 60);
  auto home2 = MakeMonitor(store2.get());  // starts knowing that heartbeat
  for (int i = 0; i < 10; ++i) {
    Beat(*home1, device, 60);
    clock_.Advance(60s);
    EXPECT_TRUE(Sweep(*home1).empty());
    // Home 2 sees none of them: the device looks overdue to it, but the store knows better.
    for (const auto& a : Sweep(*home2)) {
      // Stale, then the resumption that refresh makes in its tracker, with nothing to resolve.
      EXPECT_TRUE(a.outcome == HeartbeatOutcome::kStale || a.outcome == HeartbeatOutcome::kNothingOpen);
    }
  }
  EXPECT_TRUE(Tickets(store::kHeartbeatMissingCode).empty());
  EXPECT_GE(home2->Stats().stale, 1);

  // The device dies: both homes find it overdue; one ticket between them.
  clock_.Advance(400s);
  std::vector<store::HeartbeatApplied> all;
  for (int i = 0; i < 3; ++i) {
    for (auto* home : {home2.get(), home1.get()}) {
      const auto applied = Sweep(*home);
      all.insert(all.end(), applied.begin(), applied.end());
    }
    clock_.Advance(1s);
  }
  EXPECT_EQ(Count(all, HeartbeatOutcome::kOpened), 1u);
  EXPECT_EQ(Count(all, HeartbeatOutcome::kAlreadyOpen), 1u);
  const auto open = Tickets(store::kHeartbeatMissingCode, TicketState::kOpen);
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(EmailsFor(open[0].number), 1);

  // It comes back through home 2: home 2 resolves the ticket.
  Beat(*home2, device, 60, store2.get());
  auto resolved = Sweep(*home2);
  EXPECT_EQ(Count(resolved, HeartbeatOutcome::kResolved), 1u);
  EXPECT_TRUE(Tickets(store::kHeartbeatMissingCode, TicketState::kOpen).empty());
}

INSTANTIATE_TEST_SUITE_P(Backends, HeartbeatMonitorTest,
                         ::testing::Values(store::sql::Backend::kSqlite, store::sql::Backend::kPostgres),
                         testing::BackendName);

}  // namespace
}  // namespace lifeline::home
