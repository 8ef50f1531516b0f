// GET/PUT /v1/policies and /v1/policies/history on a real PolicyService over loopback HTTPS: versions,
// the optimistic version check, every problem of an invalid set, the audit record of a change, roles,
// and versions surviving a restart.
#include "policy/policy_sets.h"

#include "policy_service_fixture.h"
#include "store/sqlite/database.h"

#include <gtest/gtest.h>

namespace lifeline::policy {
namespace {

using testing::PolicyServiceTest;
using testing::SamplePolicy;
namespace json = boost::json;

class PolicySetsTest : public PolicyServiceTest {
 protected:
  Answer Put(const json::object& policy, const std::string& token = "") {
    return Call("PUT", "/v1/policies", token.empty() ? admin_token_ : token, json::serialize(policy));
  }
  std::vector<AuditRecord> PolicyChanges() {
    auto records = service_->audit().Read(1);
    EXPECT_TRUE(records);
    std::vector<AuditRecord> out;
    for (const auto& r : records ? *records : std::vector<AuditRecord>{}) {
      if (r.kind == "policy_change") {
        out.push_back(r);
      }
    }
    return out;
  }
};

TEST_F(PolicySetsTest, VersionZeroIsTheEmptySetBeforeTheFirstChange) {
  auto got = Call("GET", "/v1/policies", auditor_token_);
  ASSERT_EQ(got.status, 200) << json::serialize(got.body);
  EXPECT_EQ(got.body.at("version").as_int64(), 0);
  const auto& policy = got.body.at("policy").as_object();
  EXPECT_EQ(policy.at("version").as_int64(), 0);
  EXPECT_TRUE(policy.at("rules").as_array().empty());
  EXPECT_TRUE(policy.at("grants").as_array().empty());
  auto history = Call("GET", "/v1/policies/history", auditor_token_);
  ASSERT_EQ(history.status, 200);
  EXPECT_TRUE(history.body.at("versions").as_array().empty());
}

TEST_F(PolicySetsTest, PutStoresTheNextVersionAndAppendsAPolicyChangeRecord) {
  auto put = Put(SamplePolicy());
  ASSERT_EQ(put.status, 200) << json::serialize(put.body);
  EXPECT_EQ(put.body.at("version").as_int64(), 1);

  auto got = Call("GET", "/v1/policies", auditor_token_);
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.body.at("version").as_int64(), 1);
  EXPECT_EQ(got.body.at("changed_by").as_string(), "admin-1");
  EXPECT_GT(got.body.at("changed_ms").as_int64(), 0);
  const auto& policy = got.body.at("policy").as_object();
  EXPECT_EQ(policy.at("version").as_int64(), 1) << "the stored set carries its version";
  EXPECT_EQ(policy.at("rules").as_array().size(), 2u);
  EXPECT_EQ(policy.at("rules").at(0).at("ask_timeout_s").as_int64(), 1200);
  EXPECT_EQ(policy.at("grants").at(0).at("reason").as_string(), "SR-1234");
  EXPECT_EQ(service_->policies().CurrentVersion(), 1);

  auto changes = PolicyChanges();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].actor, "admin-1");
  EXPECT_EQ(changes[0].source, "policy");
  EXPECT_EQ(changes[0].subject, "policy");
  const auto details = json::parse(changes[0].details).as_object();
  EXPECT_EQ(details.at("version").as_int64(), 1);
  EXPECT_EQ(details.at("groups").as_int64(), 1);
  EXPECT_EQ(details.at("rules").as_int64(), 2);
  EXPECT_EQ(details.at("grants").as_int64(), 1);
}

TEST_F(PolicySetsTest, AStaleVersionIsAConflictAndStoresNothing) {
  ASSERT_EQ(Put(SamplePolicy()).status, 200);  // version 1
  json::object edited = SamplePolicy();
  edited["version"] = 1;  // written against version 1: accepted
  auto second = Put(edited);
  ASSERT_EQ(second.status, 200) << json::serialize(second.body);
  EXPECT_EQ(second.body.at("version").as_int64(), 2);

  // Someone else's edit of version 1 arrives after version 2 was stored.
  edited["rules"].as_array().pop_back();
  auto stale = Put(edited);
  EXPECT_EQ(stale.status, 409) << json::serialize(stale.body);
  EXPECT_EQ(stale.body.at("error").as_string(), "version_conflict");
  EXPECT_EQ(stale.body.at("version").as_int64(), 2);
  EXPECT_EQ(service_->policies().CurrentVersion(), 2);
  EXPECT_EQ(service_->policies().Current()->set.rules.size(), 2u);
  EXPECT_EQ(PolicyChanges().size(), 2u);

  edited["version"] = 0;  // 0: no check, as when absent
  EXPECT_EQ(Put(edited).body.at("version").as_int64(), 3);
}

TEST_F(PolicySetsTest, AnInvalidSetGetsEveryProblemAndStoresNothing) {
  json::object bad = SamplePolicy();
  auto& rules = bad["rules"].as_array();
  rules.push_back(json::object{{"id", 7},  // duplicate id
                              {"activity", "remote_session"},
                              {"scope", json::object{{"kind", "group"}, {"name", "no-such-group"}}},
                              {"action", "ask_for_approval"},
                              {"ask_timeout_s", 1}});  // below 5 s
  auto put = Put(bad);
  ASSERT_EQ(put.status, 400) << json::serialize(put.body);
  EXPECT_EQ(put.body.at("error").as_string(), "invalid_policy");
  const auto& problems = put.body.at("problems").as_array();
  ASSERT_GE(problems.size(), 3u) << json::serialize(put.body);
  std::string all;
  for (const auto& p : problems) {
    all += std::string(p.as_string()) + "\n";
  }
  EXPECT_NE(all.find("no-such-group"), std::string::npos) << all;
  EXPECT_NE(all.find("rule 7"), std::string::npos) << all;

  // Malformed: the decoder names the field.
  json::object malformed = SamplePolicy();
  malformed["rules"].as_array()[0].as_object().erase("scope");
  auto shape = Put(malformed);
  EXPECT_EQ(shape.status, 400);
  EXPECT_EQ(shape.body.at("error").as_string(), "invalid_policy");
  EXPECT_NE(json::serialize(shape.body).find("scope"), std::string::npos) << json::serialize(shape.body);
  EXPECT_EQ(Call("PUT", "/v1/policies", admin_token_, "[1, 2]").status, 400);

  EXPECT_EQ(service_->policies().CurrentVersion(), 0);
  EXPECT_TRUE(PolicyChanges().empty());
}

TEST_F(PolicySetsTest, HistoryListsEveryVersionNewestFirst) {
  ASSERT_EQ(Put(SamplePolicy()).status, 200);
  json::object smaller = SamplePolicy();
  smaller["grants"] = json::array{};
  ASSERT_EQ(Put(smaller).status, 200);
  auto history = Call("GET", "/v1/policies/history", auditor_token_);
  ASSERT_EQ(history.status, 200);
  const auto& versions = history.body.at("versions").as_array();
  ASSERT_EQ(versions.size(), 2u);
  EXPECT_EQ(versions[0].at("version").as_int64(), 2);
  EXPECT_EQ(versions[0].at("grants").as_int64(), 0);
  EXPECT_EQ(versions[1].at("version").as_int64(), 1);
  EXPECT_EQ(versions[1].at("grants").as_int64(), 1);
  EXPECT_EQ(versions[1].at("rules").as_int64(), 2);
  EXPECT_EQ(versions[1].at("changed_by").as_string(), "admin-1");
}

TEST_F(PolicySetsTest, RolesAndCredentials) {
  auto approver = service_->users().CreateToken("approver-1", Role::kApprover, std::nullopt, "test");
  ASSERT_TRUE(approver);
  EXPECT_EQ(Put(SamplePolicy(), auditor_token_).status, 403);
  auto refused = Put(SamplePolicy(), approver->token);
  EXPECT_EQ(refused.status, 403);
  EXPECT_EQ(refused.body.at("needed_role").as_string(), "admin");
  EXPECT_EQ(Call("GET", "/v1/policies", "").status, 401);
  // A gateway's certificate is not a user's credential.
  const auto gateway = Issue({"acme", "dc1", "gw-1", ""}, crypto::PeerKind::kGateway);
  EXPECT_EQ(Gateway("GET", "/v1/policies", gateway).status, 401);
  EXPECT_EQ(service_->policies().CurrentVersion(), 0);
}

TEST_F(PolicySetsTest, VersionsSurviveARestartInTheStoreFile) {
  ASSERT_EQ(Put(SamplePolicy()).status, 200);
  ASSERT_EQ(Put(SamplePolicy()).status, 200);
  service_->Stop();
  service_.reset();
  ASSERT_NO_FATAL_FAILURE(StartService());
  EXPECT_EQ(service_->policies().CurrentVersion(), 2);
  EXPECT_EQ(service_->policies().Current()->set.grants.size(), 1u);
  auto history = service_->policies().History();
  ASSERT_TRUE(history);
  EXPECT_EQ(history->size(), 2u);
  // The table sits beside users and tokens in policy.db.
  auto db = store::sqlite::Database::Open(dir_ / "data" / "policy.db");
  ASSERT_TRUE(db);
  auto count = (*db)->Prepare("SELECT COUNT(*) FROM policy_versions");
  ASSERT_TRUE(count);
  ASSERT_TRUE(count->Step());
  EXPECT_EQ(count->Int(0), 2);
}

}  // namespace
}  // namespace lifeline::policy
