// The policy manager's decisions at the gateway (docs/policy.md, "At the gateway"): no policy
// manager, disabled, no cached set, a device deployed after the last contact, Always / Never, and
// Ask for Approval approved, denied, expired at the policy manager and timed out at the gateway.
// Real SessionManager and PolicyCache (SQLite), a fake clock; approval requests are collected as the
// policy client would receive them.
#include "gateway/policy_cache.h"
#include "gateway/session_manager.h"

#include "support/fake_clock.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>

namespace lifeline::gateway {
namespace {

using namespace std::chrono_literals;

class SessionPolicyTest : public ::testing::Test {
 protected:
  // One device, SN41000 (model VNX5400) with ssh and https, deployed at `deployed_ms_`.
  std::unique_ptr<SessionManager> Open(PolicyMode mode) {
    SessionSettings settings;
    settings.max_duration = 1h;
    settings.idle_timeout = 30min;
    settings.policy.mode = mode;
    settings.policy.cache = cache_.get();
    settings.policy.request_approval = [this](const ApprovalRequest& request) { requests_.push_back(request); };
    auto lookup = [this](const std::string& serial, const std::string& app,
                         std::string* why) -> std::optional<SessionTarget> {
      if (serial != "SN41000" || (app != "ssh" && app != "https")) {
        *why = "not registered";
        return std::nullopt;
      }
      return SessionTarget{"10.0.0.5", static_cast<std::uint16_t>(app == "ssh" ? 22 : 443), "VNX5400", deployed_ms_};
    };
    auto manager = SessionManager::Open(dir_ / "sessions.db", settings, lookup, clock_);
    EXPECT_TRUE(manager) << manager.error().message();
    return manager ? std::move(*manager) : nullptr;
  }

  // Rules: ssh on the device asks (60 s); https on the model is allowed; the site default is Never.
  static policy::PolicySet Policy(std::uint64_t version) {
    policy::PolicySet set;
    set.version = version;
    policy::Rule ask;
    ask.id = 7;
    ask.application = "ssh";
    ask.scope = {policy::ScopeKind::kDevice, "SN41000"};
    ask.action = policy::Action::kAskForApproval;
    ask.ask_timeout = 60s;
    policy::Rule allow;
    allow.id = 8;
    allow.application = "https";
    allow.scope = {policy::ScopeKind::kModel, "VNX5400"};
    allow.action = policy::Action::kAlwaysAllow;
    policy::Rule never;
    never.id = 9;
    never.scope = {policy::ScopeKind::kSite, ""};
    never.action = policy::Action::kNeverAllow;
    set.rules = {ask, allow, never};
    return set;
  }

  // A cached policy, and the policy manager answered after the device was deployed.
  void Synced() {
    std::string why;
    ASSERT_TRUE(cache_->Offer(Policy(3), &why).value()) << why;
    ASSERT_TRUE(cache_->SetSyncedMs(clock_.NowUnixMillis()));
  }

  SessionRequest Request(std::string app = "ssh", std::string engineer = "alice") {
    return SessionRequest{std::move(engineer), "disk 3 replacement", "SN41000", std::move(app), "home-a", "SR-1234"};
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

  static bool Contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
  }

  testing::TempDir dir_;
  testing::FakeClock clock_;
  std::int64_t deployed_ms_ = clock_.NowUnixMillis() - 60'000;
  std::unique_ptr<PolicyCache> cache_ = PolicyCache::Open(dir_ / "policy.db").value();
  std::vector<ApprovalRequest> requests_;
};

TEST_F(SessionPolicyTest, NoPolicyManagerConfiguredRefusesEverySession) {
  auto sessions = Open(PolicyMode::kNone);
  auto decision = sessions->Create(Request());
  EXPECT_FALSE(decision.allowed);
  EXPECT_EQ(decision.status, 403);
  EXPECT_TRUE(Contains(decision.reason, "no policy manager configured")) << decision.reason;
  EXPECT_TRUE(Contains(sessions->Find(decision.session.id)->outcome, "refused: no policy manager configured"));
  ASSERT_EQ(Outbox("decision").size(), 1u);
  EXPECT_TRUE(Contains(Outbox("decision")[0].details_json, "\"verdict\":\"deny\""));
}

TEST_F(SessionPolicyTest, DisabledAllowsEverySessionAndSaysWhy) {
  Synced();  // a cached Never Allow plays no part when the policy manager is disabled
  auto sessions = Open(PolicyMode::kDisabled);
  auto decision = sessions->Create(Request("ssh"));
  ASSERT_TRUE(decision.allowed) << decision.reason;
  EXPECT_EQ(decision.status, 201);
  auto record = sessions->Find(decision.session.id);
  EXPECT_EQ(record->outcome, "open");
  EXPECT_TRUE(Contains(record->policy_reason, "disabled")) << record->policy_reason;
  EXPECT_TRUE(requests_.empty());
  ASSERT_EQ(Outbox("decision").size(), 1u);
  EXPECT_TRUE(Contains(Outbox("decision")[0].details_json, "\"decided_by\":\"policy_manager_disabled\""));
  EXPECT_EQ(Outbox("session_start").size(), 1u);
}

TEST_F(SessionPolicyTest, NoCachedPolicyRefuses) {
  auto sessions = Open(PolicyMode::kManaged);
  auto decision = sessions->Create(Request("https"));
  EXPECT_FALSE(decision.allowed);
  EXPECT_EQ(decision.status, 403);
  EXPECT_TRUE(Contains(decision.reason, "no policy from the policy manager yet")) << decision.reason;
}

TEST_F(SessionPolicyTest, DeviceDeployedAfterTheLastContactIsRefusedUntilThePolicyManagerAnswers) {
  Synced();
  deployed_ms_ = clock_.NowUnixMillis() + 1000;
  clock_.Advance(5s);
  auto sessions = Open(PolicyMode::kManaged);
  auto refused = sessions->Create(Request("https"));
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.status, 403);
  EXPECT_TRUE(Contains(refused.reason, "deployed after the last contact with the policy manager; waiting for a "
                                       "policy"))
      << refused.reason;
  ASSERT_TRUE(cache_->SetSyncedMs(clock_.NowUnixMillis()));
  auto allowed = sessions->Create(Request("https"));
  EXPECT_TRUE(allowed.allowed) << allowed.reason;
}

TEST_F(SessionPolicyTest, AlwaysAllowOpensAndNeverAllowRefusesWithTheRulesReason) {
  Synced();
  auto sessions = Open(PolicyMode::kManaged);
  auto allowed = sessions->Create(Request("https"));
  ASSERT_TRUE(allowed.allowed) << allowed.reason;
  EXPECT_EQ(allowed.status, 201);
  auto record = sessions->Find(allowed.session.id);
  EXPECT_EQ(record->rule_id, 8);
  EXPECT_TRUE(Contains(record->policy_reason, "rule 8")) << record->policy_reason;
  EXPECT_TRUE(sessions->AuthorizeStream(allowed.session.id).allowed);

  // A policy where the site default decides ssh too: Never Allow.
  auto set = Policy(4);
  set.rules.erase(set.rules.begin());
  std::string why;
  ASSERT_TRUE(cache_->Offer(set, &why).value()) << why;
  auto refused = sessions->Create(Request("ssh"));
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.status, 403);
  EXPECT_TRUE(Contains(refused.reason, "rule 9")) << refused.reason;
  EXPECT_TRUE(Contains(refused.reason, "Never Allow")) << refused.reason;
  auto stored = sessions->Find(refused.session.id);
  EXPECT_EQ(stored->rule_id, 9);
  EXPECT_TRUE(Contains(stored->outcome, "refused: rule 9")) << stored->outcome;
  auto decisions = Outbox("decision");
  ASSERT_EQ(decisions.size(), 2u);
  EXPECT_TRUE(Contains(decisions[0].details_json, "\"policy_version\":3")) << decisions[0].details_json;
  EXPECT_TRUE(Contains(decisions[1].details_json, "\"rule_id\":9")) << decisions[1].details_json;
  EXPECT_EQ(decisions[1].actor, "alice");
  EXPECT_EQ(decisions[1].subject, "SN41000");
}

TEST_F(SessionPolicyTest, AskHoldsTheSessionPendingUntilApprovedThenOpensFromThen) {
  Synced();
  auto sessions = Open(PolicyMode::kManaged);
  auto decision = sessions->Create(Request("ssh"));
  ASSERT_TRUE(decision.allowed) << decision.reason;
  EXPECT_EQ(decision.status, 202);
  const std::string id = decision.session.id;
  EXPECT_EQ(decision.session.outcome, "pending approval");
  EXPECT_EQ(decision.session.approval_expires_ms, clock_.NowUnixMillis() + 60'000);
  // The request for the policy manager: the session's id, the rule, its timeout, the SR number.
  ASSERT_EQ(requests_.size(), 1u);
  EXPECT_EQ(requests_[0].request_id, id);
  EXPECT_EQ(requests_[0].rule_id, 7);
  EXPECT_EQ(requests_[0].timeout_s, 60);
  EXPECT_EQ(requests_[0].model, "VNX5400");
  EXPECT_EQ(requests_[0].service_request, "SR-1234");
  EXPECT_EQ(requests_[0].deadline_ms, decision.session.approval_expires_ms);
  // No connection while it waits.
  auto stream = sessions->AuthorizeStream(id);
  EXPECT_FALSE(stream.allowed);
  EXPECT_EQ(stream.status, 409);
  EXPECT_EQ(sessions->Find(id)->outcome, "pending approval");
  // Waiting does not count as idle, nor toward the session's time limit.
  clock_.Advance(50s);
  sessions->Sweep();
  EXPECT_EQ(sessions->Find(id)->outcome, "pending approval");

  const std::int64_t approved_at = clock_.NowUnixMillis();
  sessions->OnApprovalOutcome(ApprovalOutcome{id, "approved", "carol", "go ahead", approved_at});
  auto open = sessions->Find(id);
  EXPECT_EQ(open->outcome, "open");
  EXPECT_EQ(open->started_ms, approved_at);
  EXPECT_EQ(open->expires_ms, approved_at + 3'600'000);
  EXPECT_TRUE(Contains(open->policy_reason, "approved by carol")) << open->policy_reason;
  EXPECT_TRUE(sessions->AuthorizeStream(id).allowed);
  // Past the approval deadline it stays open: the deadline was for the approver.
  clock_.Advance(2min);
  sessions->Sweep();
  EXPECT_EQ(sessions->Find(id)->outcome, "open");

  ASSERT_EQ(Outbox("request").size(), 1u);
  ASSERT_EQ(Outbox("approval").size(), 1u);
  EXPECT_EQ(Outbox("approval")[0].actor, "carol");
  EXPECT_TRUE(Contains(Outbox("approval")[0].details_json, "\"state\":\"approved\""));
  EXPECT_EQ(Outbox("session_start").size(), 1u);
}

TEST_F(SessionPolicyTest, DeniedApprovalEndsTheSessionWithTheApproversWords) {
  Synced();
  auto sessions = Open(PolicyMode::kManaged);
  const std::string id = sessions->Create(Request("ssh")).session.id;
  sessions->OnApprovalOutcome(ApprovalOutcome{id, "denied", "carol", "not during month-end", clock_.NowUnixMillis()});
  auto record = sessions->Find(id);
  EXPECT_FALSE(record->Open());
  EXPECT_EQ(record->outcome, "denied by carol: not during month-end");
  EXPECT_EQ(sessions->AuthorizeStream(id).status, 410);
  // A late approval of the same request changes nothing.
  sessions->OnApprovalOutcome(ApprovalOutcome{id, "approved", "dave", "", clock_.NowUnixMillis()});
  EXPECT_EQ(sessions->Find(id)->outcome, "denied by carol: not during month-end");
  EXPECT_EQ(Outbox("session_end").size(), 1u);
}

TEST_F(SessionPolicyTest, ExpiredAtThePolicyManagerEndsTheSession) {
  Synced();
  auto sessions = Open(PolicyMode::kManaged);
  const std::string id = sessions->Create(Request("ssh")).session.id;
  sessions->OnApprovalOutcome(ApprovalOutcome{id, "expired", "", "", clock_.NowUnixMillis()});
  EXPECT_EQ(sessions->Find(id)->outcome, "approval timed out");
}

TEST_F(SessionPolicyTest, TheGatewayEnforcesTheApprovalDeadlineItself) {
  Synced();
  auto sessions = Open(PolicyMode::kManaged);
  const std::string id = sessions->Create(Request("ssh")).session.id;
  clock_.Advance(59s);
  sessions->Sweep();
  EXPECT_EQ(sessions->Find(id)->outcome, "pending approval");
  clock_.Advance(1s);
  sessions->Sweep();  // the policy manager never answered
  EXPECT_EQ(sessions->Find(id)->outcome, "approval timed out");
  // An approval arriving now is too late.
  sessions->OnApprovalOutcome(ApprovalOutcome{id, "approved", "carol", "", clock_.NowUnixMillis()});
  EXPECT_EQ(sessions->Find(id)->outcome, "approval timed out");

  // One approved after the deadline but before the sweep ran is too late as well.
  const std::string late = sessions->Create(Request("ssh")).session.id;
  clock_.Advance(61s);
  sessions->OnApprovalOutcome(ApprovalOutcome{late, "approved", "carol", "", clock_.NowUnixMillis()});
  EXPECT_EQ(sessions->Find(late)->outcome, "approval timed out");
}

TEST_F(SessionPolicyTest, TheEngineerMayGiveUpWaiting) {
  Synced();
  auto sessions = Open(PolicyMode::kManaged);
  const std::string id = sessions->Create(Request("ssh")).session.id;
  auto ended = sessions->EndByEngineer(id);
  ASSERT_TRUE(ended);
  EXPECT_EQ(ended->outcome, "ended by engineer");
  sessions->OnApprovalOutcome(ApprovalOutcome{id, "approved", "carol", "", clock_.NowUnixMillis()});
  EXPECT_EQ(sessions->Find(id)->outcome, "ended by engineer");
}

TEST_F(SessionPolicyTest, APendingSessionAtAStopIsClosedAtTheNextStart) {
  Synced();
  std::string id;
  {
    auto sessions = Open(PolicyMode::kManaged);
    id = sessions->Create(Request("ssh")).session.id;
  }
  auto reopened = Open(PolicyMode::kManaged);
  EXPECT_EQ(reopened->Find(id)->outcome, "gateway stopped");
  reopened->OnApprovalOutcome(ApprovalOutcome{id, "approved", "carol", "", clock_.NowUnixMillis()});
  EXPECT_EQ(reopened->Find(id)->outcome, "gateway stopped");
}

}  // namespace
}  // namespace lifeline::gateway
