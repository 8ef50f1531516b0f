// The gateway's policy client against a policy manager on loopback that serves the documented gateway
// API (docs/policy.md, "Gateway API"): long-poll watch, approval requests, audit delivery, with the
// gateway's client certificate required (mutual TLS). The policy manager's own implementation
// (src/policy/gateway_api, approvals) was not complete when this was written, so the server here is a
// small in-test one that follows the contract; the real PolicyCache, PolicyClient and libcurl run.
#include "gateway/policy_client.h"

#include "policy/policy_json.h"
#include "support/temp_dir.h"
#include "transport/https_server.h"
#include "../transport/test_pki.h"

#include <boost/json.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace lifeline::gateway {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

std::map<std::string, std::string> Query(const std::string& target) {
  std::map<std::string, std::string> out;
  const auto q = target.find('?');
  if (q == std::string::npos) {
    return out;
  }
  std::string rest = target.substr(q + 1);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    const std::string pair = rest.substr(0, amp);
    const auto eq = pair.find('=');
    out[pair.substr(0, eq)] = eq == std::string::npos ? "" : pair.substr(eq + 1);
    rest = amp == std::string::npos ? "" : rest.substr(amp + 1);
  }
  return out;
}

// The policy manager's side of the contract, in memory.
class FakePolicyManager {
 public:
  FakePolicyManager() {
    const auto& pki = transport::testpki::SharedPki();
    transport::ServerOptions options;
    options.tls = {pki.server_cert.string(), pki.server_key.string(), pki.ca_cert.string()};
    options.client_certs = transport::ClientCertPolicy::kRequired;
    options.worker_threads = 4;
    options.name = "fake-policy";
    server_ = transport::HttpsServer::Start(options, [this](const transport::HttpRequest& r) { return Handle(r); })
                  .value();
  }
  ~FakePolicyManager() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_all();
    server_->Stop(1000ms);
  }

  std::string url() const { return "https://" + server_->LocalAddress(); }

  void SetPolicy(std::uint64_t version, json::value policy) {
    {
      std::lock_guard lock(mutex_);
      version_ = version;
      policy_ = std::move(policy);
    }
    changed_.notify_all();
  }
  void Decide(const std::string& request_id, const std::string& state, const std::string& by,
              const std::string& comment) {
    {
      std::lock_guard lock(mutex_);
      decisions_.push_back(json::object{{"request_id", request_id}, {"state", state}, {"decided_by", by},
                                        {"comment", comment}, {"decided_ms", 1795000000000},
                                        {"seq", static_cast<std::int64_t>(decisions_.size() + 1)}});
    }
    changed_.notify_all();
  }
  // The next `n` calls to the route answer 503.
  void FailNext(const std::string& route, int n) {
    std::lock_guard lock(mutex_);
    fail_[route] = n;
  }

  template <class Predicate>
  bool WaitFor(Predicate done, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return done(*this); });
  }

  // Read under WaitFor's lock, or after the client stopped.
  std::vector<json::object> requests;
  std::vector<json::object> audit;            // records in the order received
  std::vector<std::size_t> audit_batches;     // sizes
  std::vector<std::string> watch_targets;
  int watches_open = 0;

 private:
  transport::HttpResponse Handle(const transport::HttpRequest& r) {
    if (!r.peer) {
      return {401, "application/json", R"({"error":"unauthorized"})", {}};
    }
    const std::string path = r.target.substr(0, r.target.find('?'));
    std::unique_lock lock(mutex_);
    if (auto it = fail_.find(path); it != fail_.end() && it->second > 0) {
      --it->second;
      return {503, "application/json", R"({"error":"unavailable"})", {}};
    }
    if (r.method == "GET" && path == "/v1/gateway/watch") {
      auto query = Query(r.target);
      const auto known = std::stoull(query["policy_version"]);
      const auto cursor = std::stoll(query["cursor"]);
      const auto wait = std::chrono::seconds(std::stoi(query["wait_s"]));
      watch_targets.push_back(r.target);
      ++watches_open;
      changed_.notify_all();
      auto news = [&] {
        return stopping_ || version_ > known ||
               (!decisions_.empty() && decisions_.back().at("seq").as_int64() > cursor);
      };
      changed_.wait_for(lock, wait, news);
      --watches_open;
      json::object answer{{"policy_version", version_}};
      if (version_ > known) {
        answer["policy"] = policy_;
      }
      json::array decided;
      std::int64_t next = cursor;
      for (const auto& d : decisions_) {
        if (d.at("seq").as_int64() > cursor) {
          decided.push_back(d);
          next = d.at("seq").as_int64();
        }
      }
      answer["decisions"] = std::move(decided);
      answer["cursor"] = next;
      return {200, "application/json", json::serialize(answer), {}};
    }
    boost::system::error_code ec;
    json::value body = json::parse(r.body, ec);
    if (ec || !body.is_object()) {
      return {400, "application/json", R"({"error":"bad_request"})", {}};
    }
    if (r.method == "POST" && path == "/v1/gateway/requests") {
      const auto id = body.at("request_id").as_string();
      for (const auto& existing : requests) {
        if (existing.at("request_id").as_string() == id) {
          return {200, "application/json", json::serialize(existing), {}};
        }
      }
      requests.push_back(body.as_object());
      changed_.notify_all();
      return {201, "application/json", json::serialize(body), {}};
    }
    if (r.method == "POST" && path == "/v1/gateway/audit") {
      const auto& records = body.at("records").as_array();
      if (records.size() > 1000) {
        return {400, "application/json", R"({"error":"too_many_records"})", {}};
      }
      std::size_t appended = 0, duplicates = 0;
      for (const auto& record : records) {
        const auto id = record.at("record_id").as_string();
        if (seen_.insert(std::string(id)).second) {
          audit.push_back(record.as_object());
          ++appended;
        } else {
          ++duplicates;
        }
      }
      audit_batches.push_back(records.size());
      changed_.notify_all();
      return {200, "application/json",
              json::serialize(json::object{{"appended", appended}, {"duplicates", duplicates}}), {}};
    }
    return {404, "application/json", R"({"error":"not_found"})", {}};
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  bool stopping_ = false;
  std::uint64_t version_ = 0;
  json::value policy_;
  std::vector<json::object> decisions_;
  std::map<std::string, int> fail_;
  std::set<std::string> seen_;
  std::unique_ptr<transport::HttpsServer> server_;
};

json::value PolicyJson(std::uint64_t version, const std::string& group_of_rule = "") {
  policy::PolicySet set;
  set.version = version;
  policy::Rule rule;
  rule.id = 1;
  rule.scope = group_of_rule.empty() ? policy::Scope{policy::ScopeKind::kSite, ""}
                                     : policy::Scope{policy::ScopeKind::kGroup, group_of_rule};
  rule.action = policy::Action::kAlwaysAllow;
  set.rules.push_back(rule);
  return policy::ToJson(set);
}

class PolicyClientTest : public ::testing::Test {
 protected:
  void Start(std::chrono::seconds wait = 2s) {
    const auto& pki = transport::testpki::SharedPki();
    PolicyClientOptions options;
    options.url = manager_.url();
    options.tls = {pki.ca_cert.string(), pki.client_cert.string(), pki.client_key.string()};
    options.watch_wait = wait;
    options.retry_min = 50ms;
    options.retry_max = 100ms;
    options.send_backoff_max = 200ms;
    client_ = PolicyClient::Start(options, *cache_, [this](const ApprovalOutcome& outcome) {
      std::lock_guard lock(mutex_);
      outcomes_.push_back(outcome);
    });
  }

  // Polls `done` every 10 ms for at most `timeout`.
  template <class Predicate>
  static bool Eventually(Predicate done, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (done()) {
        return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return done();
  }

  std::vector<AuditRecord> Outbox(const std::string& kind) {
    std::vector<AuditRecord> out;
    for (auto& record : cache_->OldestRecords(100000).value()) {
      if (record.kind == kind) {
        out.push_back(std::move(record));
      }
    }
    return out;
  }

  testing::TempDir dir_;
  FakePolicyManager manager_;
  std::unique_ptr<PolicyCache> cache_ = PolicyCache::Open(dir_ / "policy.db").value();
  std::unique_ptr<PolicyClient> client_;
  std::mutex mutex_;
  std::vector<ApprovalOutcome> outcomes_;
};

TEST_F(PolicyClientTest, WatchCachesANewerPolicyAndReportsDecisionsWithADurableCursor) {
  manager_.SetPolicy(3, PolicyJson(3));
  Start();
  ASSERT_TRUE(Eventually([&] { return cache_->Version() == 3 && cache_->SyncedMs() > 0; }));
  ASSERT_TRUE(cache_->Current());
  // The change is audited (once), the next watch asks from version 3.
  ASSERT_TRUE(Eventually([&] { return Outbox("policy_version_change").empty(); }))
      << "the version change was not delivered";
  ASSERT_TRUE(manager_.WaitFor([](auto& m) {
    return std::any_of(m.audit.begin(), m.audit.end(),
                       [](const json::object& r) { return r.at("kind").as_string() == "policy_version_change"; });
  }));
  ASSERT_TRUE(manager_.WaitFor([](auto& m) {
    return !m.watch_targets.empty() && m.watch_targets.back().find("policy_version=3&cursor=0") != std::string::npos;
  }));

  manager_.Decide("0123456789abcdef0123456789abcdef", "denied", "carol", "not now");
  ASSERT_TRUE(Eventually([&] {
    std::lock_guard lock(mutex_);
    return outcomes_.size() == 1;
  }));
  {
    std::lock_guard lock(mutex_);
    EXPECT_EQ(outcomes_[0].request_id, "0123456789abcdef0123456789abcdef");
    EXPECT_EQ(outcomes_[0].state, "denied");
    EXPECT_EQ(outcomes_[0].decided_by, "carol");
    EXPECT_EQ(outcomes_[0].comment, "not now");
  }
  ASSERT_TRUE(Eventually([&] { return cache_->Cursor() == 1; }));
  client_->Stop();
  // Durable: a restarted gateway asks from the same version and cursor.
  cache_.reset();
  cache_ = PolicyCache::Open(dir_ / "policy.db").value();
  EXPECT_EQ(cache_->Version(), 3u);
  EXPECT_EQ(cache_->Cursor(), 1);
}

TEST_F(PolicyClientTest, AnInvalidPolicyIsIgnoredWithoutAskingInATightLoop) {
  manager_.SetPolicy(3, PolicyJson(3));
  Start(1s);
  ASSERT_TRUE(Eventually([&] { return cache_->Version() == 3; }));
  manager_.SetPolicy(4, PolicyJson(4, "no-such-group"));
  ASSERT_TRUE(manager_.WaitFor([](auto& m) {
    return !m.watch_targets.empty() && m.watch_targets.back().find("policy_version=4") != std::string::npos;
  }));
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(cache_->Version(), 3u);  // the cached set still decides
  std::size_t watches = 0;
  manager_.WaitFor([&](auto& m) {
    watches = m.watch_targets.size();
    return true;
  });
  EXPECT_LT(watches, 10u) << "asked again and again for the invalid set";
  client_->Stop();
}

TEST_F(PolicyClientTest, AnApprovalRequestIsRetriedUntilThePolicyManagerHasIt) {
  manager_.FailNext("/v1/gateway/requests", 2);
  Start();
  const std::int64_t now = SystemClock::Instance().NowUnixMillis();
  client_->RequestApproval(ApprovalRequest{"0123456789abcdef0123456789abcdef", "alice", "SN41000", "VNX5400", "ssh",
                                           "disk 3", "SR-1234", 7, 600, now, now + 600'000});
  ASSERT_TRUE(manager_.WaitFor([](auto& m) { return m.requests.size() == 1; }));
  client_->Stop();
  const auto& r = manager_.requests[0];
  EXPECT_EQ(r.at("request_id").as_string(), "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(r.at("engineer").as_string(), "alice");
  EXPECT_EQ(r.at("device").as_string(), "SN41000");
  EXPECT_EQ(r.at("model").as_string(), "VNX5400");
  EXPECT_EQ(r.at("activity").as_string(), "remote_session");
  EXPECT_EQ(r.at("application").as_string(), "ssh");
  EXPECT_EQ(r.at("service_request").as_string(), "SR-1234");
  EXPECT_EQ(r.at("rule_id").as_int64(), 7);
  EXPECT_GT(r.at("timeout_s").as_int64(), 590);
  EXPECT_LE(r.at("timeout_s").as_int64(), 600);
  EXPECT_EQ(r.at("requested_ms").as_int64(), now);
}

TEST_F(PolicyClientTest, TheOutboxIsDeliveredOldestFirstInBatchesAfterAnOutage) {
  for (int i = 0; i < 2100; ++i) {  // three batches (one append, one fsync, each)
    ASSERT_TRUE(cache_->Append(AuditRecord{fmt::format("rec-{:05}", i), 1'700'000'000'000 + i, "decision", "alice",
                                           "SN41000", R"({"verdict":"allow"})"}));
  }
  manager_.FailNext("/v1/gateway/audit", 3);
  Start();
  ASSERT_TRUE(manager_.WaitFor([](auto& m) { return m.audit.size() == 2100; }, 20s));
  ASSERT_TRUE(Eventually([&] { return cache_->OutboxSize().value() == 0; }));
  client_->Stop();
  for (std::size_t i = 0; i < manager_.audit.size(); ++i) {
    ASSERT_EQ(manager_.audit[i].at("record_id").as_string(), fmt::format("rec-{:05}", i));
  }
  EXPECT_EQ(manager_.audit[7].at("time_ms").as_int64(), 1'700'000'000'007);  // original times
  EXPECT_EQ(manager_.audit[7].at("details").at("verdict").as_string(), "allow");
  for (auto size : manager_.audit_batches) {
    EXPECT_LE(size, 1000u);
  }
  // Appended while running: delivered without waiting for anything else.
  Start();
  ASSERT_TRUE(cache_->Append(AuditRecord{"late-one", 1, "session_end", "alice", "SN41000", "{}"}));
  ASSERT_TRUE(manager_.WaitFor([](auto& m) { return m.audit.size() == 2101; }));
  client_->Stop();
}

TEST_F(PolicyClientTest, StopReturnsPromptlyDuringALongPoll) {
  Start(20s);
  ASSERT_TRUE(manager_.WaitFor([](auto& m) { return m.watches_open == 1; }));
  const auto before = std::chrono::steady_clock::now();
  client_->Stop();
  const auto took = std::chrono::steady_clock::now() - before;
  EXPECT_LT(took, 3s) << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
}

TEST_F(PolicyClientTest, AnUnreachablePolicyManagerLeavesSyncedTimeAlone) {
  PolicyClientOptions options;
  const auto& pki = transport::testpki::SharedPki();
  options.url = fmt::format("https://127.0.0.1:{}", transport::testpki::UnusedPort());
  options.tls = {pki.ca_cert.string(), pki.client_cert.string(), pki.client_key.string()};
  options.retry_min = 50ms;
  options.retry_max = 100ms;
  client_ = PolicyClient::Start(options, *cache_, nullptr);
  ASSERT_TRUE(Eventually([&] { return !client_->Status().last_error.empty(); }));
  EXPECT_FALSE(client_->Status().reachable);
  EXPECT_EQ(cache_->SyncedMs(), 0);
  client_->Stop();
}

}  // namespace
}  // namespace lifeline::gateway
