// Sessions at the gateway: decisions, limits, the customer's controls and the audit record, with a
// fake clock and the real SQLite session log. The policy is switched off here ([policy] disabled =
// true: every session allowed); session_policy_test covers the policy manager's decisions.
#include "gateway/session_manager.h"

#include "support/fake_clock.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <atomic>

namespace lifeline::gateway {
namespace {

using namespace std::chrono_literals;

// One managed device, "array-1", with ssh on 10.0.0.5:22 and https on :443.
std::optional<SessionTarget> Lookup(const std::string& serial, const std::string& app, std::string* why) {
  if (serial != "array-1") {
    *why = "device '" + serial + "' is not managed by this gateway";
    return std::nullopt;
  }
  if (app == "ssh") {
    return SessionTarget{"10.0.0.5", 22};
  }
  if (app == "https") {
    return SessionTarget{"10.0.0.5", 443};
  }
  *why = "application '" + app + "' is not registered for device 'array-1'";
  return std::nullopt;
}

class SessionManagerTest : public ::testing::Test {
 protected:
  std::unique_ptr<SessionManager> Open(SessionSettings settings = {}) {
    settings.max_duration = 1h;
    settings.idle_timeout = 10min;
    settings.policy.mode = PolicyMode::kDisabled;
    settings.policy.cache = cache_.get();
    auto manager = SessionManager::Open(dir_ / "sessions.db", settings, Lookup, clock_);
    EXPECT_TRUE(manager) << manager.error().message();
    return manager ? std::move(*manager) : nullptr;
  }
  SessionRequest Request(std::string app = "ssh", std::string device = "array-1") {
    return SessionRequest{"alice", "SR-1234", std::move(device), std::move(app), "home-a"};
  }

  std::vector<AuditRecord> Outbox(const std::string& kind) {
    std::vector<AuditRecord> out;
    for (auto& record : cache_->OldestRecords(1000).value()) {
      if (record.kind == kind) {
        out.push_back(std::move(record));
      }
    }
    return out;
  }

  testing::TempDir dir_;
  testing::FakeClock clock_;
  std::unique_ptr<PolicyCache> cache_ = PolicyCache::Open(dir_ / "policy.db").value();
};

TEST_F(SessionManagerTest, RegisteredApplicationIsAllowedAndMappedToItsAddress) {
  auto sessions = Open();
  auto decision = sessions->Create(Request());
  ASSERT_TRUE(decision.allowed) << decision.reason;
  EXPECT_EQ(decision.status, 201);
  EXPECT_NE(decision.session.policy_reason.find("disabled"), std::string::npos) << decision.session.policy_reason;
  EXPECT_EQ(decision.target.host, "10.0.0.5");
  EXPECT_EQ(decision.target.port, 22);
  EXPECT_EQ(decision.session.target, "10.0.0.5:22");
  auto stream = sessions->AuthorizeStream(decision.session.id);
  EXPECT_TRUE(stream.allowed);
  EXPECT_EQ(stream.target.port, 22);
  ASSERT_EQ(sessions->List(false).size(), 1u);
}

TEST_F(SessionManagerTest, UnknownDeviceOrApplicationIsRefusedAndAudited) {
  auto sessions = Open();
  auto device = sessions->Create(Request("ssh", "array-9"));
  EXPECT_FALSE(device.allowed);
  EXPECT_EQ(device.status, 404);
  EXPECT_NE(device.reason.find("not managed"), std::string::npos);
  auto app = sessions->Create(Request("telnet"));
  EXPECT_FALSE(app.allowed);
  EXPECT_NE(app.reason.find("'telnet' is not registered"), std::string::npos);
  EXPECT_TRUE(sessions->List(false).empty());
  auto all = sessions->List(true);
  ASSERT_EQ(all.size(), 2u);
  for (const auto& record : all) {
    EXPECT_TRUE(record.outcome.starts_with("refused: ")) << record.outcome;
    EXPECT_EQ(record.engineer, "alice");
  }
  EXPECT_FALSE(sessions->AuthorizeStream("0123456789abcdef0123456789abcdef").allowed);
}

TEST_F(SessionManagerTest, KillEndsTheSessionItsStreamsAndRecordsBytes) {
  auto sessions = Open();
  auto decision = sessions->Create(Request());
  const std::string id = decision.session.id;
  std::atomic<int> ended{0};
  const auto token = sessions->StreamStarted(id, StreamControl{[] { return std::pair<std::uint64_t, std::uint64_t>(10, 20); },
                                                               [&] { ++ended; }});
  ASSERT_NE(token, 0u);
  auto killed = sessions->Kill(id, "operator");
  ASSERT_TRUE(killed);
  EXPECT_EQ(ended.load(), 1);
  EXPECT_EQ(killed->outcome, "ended at the gateway by operator");
  // The reset stream reports its end afterwards; its bytes go into the stored record.
  sessions->StreamEnded(id, token, 100, 2000);
  auto record = sessions->Find(id);
  ASSERT_TRUE(record);
  EXPECT_FALSE(record->Open());
  EXPECT_EQ(record->bytes_to_device, 100u);
  EXPECT_EQ(record->bytes_from_device, 2000u);
  EXPECT_EQ(record->streams, 1);
  EXPECT_FALSE(sessions->AuthorizeStream(id).allowed);
  EXPECT_FALSE(sessions->Kill(id, "operator"));
  // The audit outbox: the kill, and the session's end with the bytes its stream reported.
  ASSERT_EQ(Outbox("session_kill").size(), 1u);
  EXPECT_EQ(Outbox("session_kill")[0].actor, "operator");
  auto ends = Outbox("session_end");
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_NE(ends[0].details_json.find("\"bytes_to_device\":100"), std::string::npos) << ends[0].details_json;
  EXPECT_NE(ends[0].details_json.find("\"bytes_from_device\":2000"), std::string::npos) << ends[0].details_json;
}

TEST_F(SessionManagerTest, TimeLimitAndIdleTimeoutEndSessions) {
  auto sessions = Open();
  const std::string busy = sessions->Create(Request()).session.id;
  const std::string idle = sessions->Create(Request("https")).session.id;
  std::uint64_t moved = 0;
  sessions->StreamStarted(busy, StreamControl{[&] { return std::pair<std::uint64_t, std::uint64_t>(moved, 0); }, [] {}});
  for (int minute = 1; minute <= 9; ++minute) {
    clock_.Advance(1min);
    moved += 1000;
    sessions->Sweep();
  }
  EXPECT_EQ(sessions->List(false).size(), 2u);
  clock_.Advance(1min);
  moved += 1000;
  sessions->Sweep();
  auto open = sessions->List(false);
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].id, busy);
  EXPECT_EQ(sessions->Find(idle)->outcome, "idle timeout");
  for (int minute = 0; minute < 50; ++minute) {
    clock_.Advance(1min);
    moved += 1000;
    sessions->Sweep();
  }
  EXPECT_TRUE(sessions->List(false).empty());
  EXPECT_EQ(sessions->Find(busy)->outcome, "time limit");
}

TEST_F(SessionManagerTest, RemoteAccessOffEndsSessionsRefusesNewOnesAndIsRemembered) {
  {
    auto sessions = Open();
    const std::string id = sessions->Create(Request()).session.id;
    sessions->SetRemoteAccess(false, "customer-admin");
    EXPECT_EQ(sessions->Find(id)->outcome, "remote access switched off by customer-admin");
    ASSERT_EQ(Outbox("remote_access_switch").size(), 1u);
    EXPECT_EQ(Outbox("remote_access_switch")[0].actor, "customer-admin");
    auto refused = sessions->Create(Request());
    EXPECT_FALSE(refused.allowed);
    EXPECT_EQ(refused.status, 403);
  }
  auto reopened = Open();
  EXPECT_FALSE(reopened->RemoteAccessEnabled());
  EXPECT_FALSE(reopened->Create(Request()).allowed);
  reopened->SetRemoteAccess(true, "customer-admin");
  EXPECT_TRUE(reopened->Create(Request()).allowed);
}

TEST_F(SessionManagerTest, SessionsOpenAtAStopAreClosedInTheLogAtTheNextStart) {
  std::string id;
  {
    auto sessions = Open();
    id = sessions->Create(Request()).session.id;
  }
  auto reopened = Open();
  EXPECT_TRUE(reopened->List(false).empty());
  EXPECT_EQ(reopened->Find(id)->outcome, "gateway stopped");
  auto ends = Outbox("session_end");
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_NE(ends[0].details_json.find("gateway stopped"), std::string::npos);
}

}  // namespace
}  // namespace lifeline::gateway
