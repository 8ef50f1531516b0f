// The gateway's policy cache (policy.db): the newest policy set only (never an older version), invalid
// sets refused, synced_ms and the decision cursor, and the audit outbox, all across reopening; the
// file is the owner's only.
#include "gateway/policy_cache.h"

#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <thread>
#include <vector>

namespace lifeline::gateway {
namespace {

using namespace std::chrono_literals;

policy::PolicySet SiteDefault(std::uint64_t version, policy::Action action) {
  policy::PolicySet set;
  set.version = version;
  policy::Rule rule;
  rule.id = 1;
  rule.scope = {policy::ScopeKind::kSite, ""};
  rule.action = action;
  set.rules.push_back(rule);
  return set;
}

policy::Verdict DecideSsh(const PolicyCache& cache) {
  auto compiled = cache.Current();
  EXPECT_TRUE(compiled);
  return compiled->Decide(policy::DecisionRequest{policy::Activity::kRemoteSession, "ssh", "SN1", "VNX", "alice",
                                                  std::chrono::system_clock::now()})
      .verdict;
}

TEST(PolicyCacheTest, KeepsOnlyTheNewestVersionAcrossReopening) {
  testing::TempDir dir;
  {
    auto cache = PolicyCache::Open(dir / "policy.db").value();
    EXPECT_FALSE(cache->Current());
    EXPECT_EQ(cache->Version(), 0u);
    std::string why;
    EXPECT_TRUE(cache->Offer(SiteDefault(5, policy::Action::kAlwaysAllow), &why).value());
    EXPECT_EQ(cache->Version(), 5u);
    EXPECT_FALSE(cache->Offer(SiteDefault(4, policy::Action::kNeverAllow), &why).value());
    EXPECT_FALSE(cache->Offer(SiteDefault(5, policy::Action::kNeverAllow), &why).value());
    EXPECT_EQ(DecideSsh(*cache), policy::Verdict::kAllow);
  }
  auto reopened = PolicyCache::Open(dir / "policy.db").value();
  EXPECT_EQ(reopened->Version(), 5u);
  EXPECT_EQ(DecideSsh(*reopened), policy::Verdict::kAllow);
  std::string why;
  EXPECT_FALSE(reopened->Offer(SiteDefault(2, policy::Action::kNeverAllow), &why).value());
  EXPECT_TRUE(reopened->Offer(SiteDefault(6, policy::Action::kNeverAllow), &why).value());
  EXPECT_EQ(DecideSsh(*reopened), policy::Verdict::kDeny);
}

// Decide() keeps a per-thread reference to the compiled set: it must follow every new version, never
// answer from another cache's set, and decide on several threads at once.
TEST(PolicyCacheTest, DecideFollowsNewVersionsPerCacheAndThread) {
  testing::TempDir dir;
  auto first = PolicyCache::Open(dir / "first.db").value();
  auto second = PolicyCache::Open(dir / "second.db").value();
  const policy::DecisionRequest ssh{policy::Activity::kRemoteSession, "ssh", "SN1", "VNX", "alice",
                                    std::chrono::system_clock::now()};
  EXPECT_FALSE(first->Decide(ssh));  // no set yet
  std::string why;
  ASSERT_TRUE(first->Offer(SiteDefault(1, policy::Action::kAlwaysAllow), &why).value());
  ASSERT_TRUE(second->Offer(SiteDefault(7, policy::Action::kNeverAllow), &why).value());
  std::uint64_t version = 0;
  EXPECT_EQ(first->Decide(ssh, &version)->verdict, policy::Verdict::kAllow);
  EXPECT_EQ(version, 1u);
  EXPECT_EQ(second->Decide(ssh, &version)->verdict, policy::Verdict::kDeny);
  EXPECT_EQ(version, 7u);
  EXPECT_EQ(first->Decide(ssh)->verdict, policy::Verdict::kAllow);
  ASSERT_TRUE(first->Offer(SiteDefault(2, policy::Action::kNeverAllow), &why).value());
  EXPECT_EQ(first->Decide(ssh, &version)->verdict, policy::Verdict::kDeny);
  EXPECT_EQ(version, 2u);

  // Another thread sees the same, and the next version, too.
  std::vector<std::uint64_t> seen;
  std::thread other([&] {
    seen.push_back(*first->Decide(ssh, &version) == first->Current()->Decide(ssh) ? version : 0);
  });
  other.join();
  ASSERT_TRUE(first->Offer(SiteDefault(3, policy::Action::kAlwaysAllow), &why).value());
  std::thread later([&] { seen.push_back(first->Decide(ssh)->verdict == policy::Verdict::kAllow ? 3 : 0); });
  later.join();
  EXPECT_EQ(seen, (std::vector<std::uint64_t>{2, 3}));
}

TEST(PolicyCacheTest, AnInvalidSetIsRefusedAndTheCachedOneStays) {
  testing::TempDir dir;
  auto cache = PolicyCache::Open(dir / "policy.db").value();
  std::string why;
  ASSERT_TRUE(cache->Offer(SiteDefault(1, policy::Action::kAlwaysAllow), &why).value());
  auto bad = SiteDefault(2, policy::Action::kAlwaysAllow);
  bad.rules.push_back(bad.rules[0]);  // duplicate id
  bad.rules.back().scope = {policy::ScopeKind::kGroup, "no-such-group"};
  why.clear();
  auto offered = cache->Offer(bad, &why);
  ASSERT_FALSE(offered);
  EXPECT_NE(why.find("no-such-group"), std::string::npos) << why;
  EXPECT_EQ(cache->Version(), 1u);
}

TEST(PolicyCacheTest, SyncedTimeAndCursorSurviveReopening) {
  testing::TempDir dir;
  {
    auto cache = PolicyCache::Open(dir / "policy.db").value();
    EXPECT_EQ(cache->SyncedMs(), 0);
    EXPECT_EQ(cache->Cursor(), 0);
    ASSERT_TRUE(cache->SetSyncedMs(1'795'000'000'123));
    ASSERT_TRUE(cache->SetCursor(42));
  }
  auto reopened = PolicyCache::Open(dir / "policy.db").value();
  EXPECT_EQ(reopened->SyncedMs(), 1'795'000'000'123);
  EXPECT_EQ(reopened->Cursor(), 42);
}

TEST(PolicyCacheTest, OutboxKeepsRecordsInOrderUntilDeliveredAcrossReopening) {
  testing::TempDir dir;
  int appended = 0;
  {
    auto cache = PolicyCache::Open(dir / "policy.db").value();
    cache->SetAppendListener([&] { ++appended; });
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(cache->Append(AuditRecord{"id-" + std::to_string(i), 1000 + i, "decision", "alice", "SN1",
                                            R"({"n":)" + std::to_string(i) + "}"}));
    }
    // The same record id again (a retried append) is not a second record.
    ASSERT_TRUE(cache->Append(AuditRecord{"id-2", 9999, "decision", "mallory", "SN1", "{}"}));
    EXPECT_EQ(cache->OutboxSize().value(), 5u);
    EXPECT_EQ(appended, 6);
    auto first = cache->OldestRecords(2).value();
    ASSERT_EQ(first.size(), 2u);
    EXPECT_EQ(first[0].record_id, "id-0");
    EXPECT_EQ(first[1].record_id, "id-1");
    ASSERT_TRUE(cache->MarkDelivered({first[0].record_id, first[1].record_id}));
  }
  auto reopened = PolicyCache::Open(dir / "policy.db").value();
  auto rest = reopened->OldestRecords(1000).value();
  ASSERT_EQ(rest.size(), 3u);
  EXPECT_EQ(rest[0].record_id, "id-2");
  EXPECT_EQ(rest[0].time_ms, 1002);  // the original time, not the retry's
  EXPECT_EQ(rest[0].actor, "alice");
  EXPECT_EQ(rest[0].details_json, R"({"n":2})");
  EXPECT_EQ(rest[2].record_id, "id-4");
}

TEST(PolicyCacheTest, TheFileIsTheOwnersOnly) {
  testing::TempDir dir;
  auto cache = PolicyCache::Open(dir / "policy.db").value();
  ASSERT_TRUE(cache->Append(AuditRecord{NewAuditRecordId(), 1, "decision", "alice", "SN1", "{}"}));
  struct stat info {};
  ASSERT_EQ(::stat((dir / "policy.db").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600);
}

}  // namespace
}  // namespace lifeline::gateway
