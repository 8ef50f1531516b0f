// The gateway API on a real PolicyService over loopback HTTPS with real client certificates: who gets
// in (gateway certificates of allowed sites only; never a bearer token), the watch's long poll
// (at once on a newer policy or a decision, waiting otherwise, woken by a PUT, released by Stop), and
// the audit ingest (original times, idempotent by record_id).
#include "policy/gateway_api.h"

#include "policy_service_fixture.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

namespace lifeline::policy {
namespace {

using namespace std::chrono_literals;
using testing::ClientIdentity;
using testing::PolicyServiceTest;
using testing::SamplePolicy;
namespace json = boost::json;
using Steady = std::chrono::steady_clock;

class GatewayApiTest : public PolicyServiceTest {
 protected:
  void SetUp() override {
    PolicyServiceTest::SetUp();
    gateway_ = Issue({"acme", "dc1", "gw-1", ""}, crypto::PeerKind::kGateway);
  }
  void PutPolicy() {
    auto put = Call("PUT", "/v1/policies", admin_token_, json::serialize(SamplePolicy()));
    ASSERT_EQ(put.status, 200) << json::serialize(put.body);
  }
  ClientIdentity gateway_;
};

class GatewayApiWithSitesTest : public GatewayApiTest {
 protected:
  void Configure(PolicyConfig& config) override { config.gateway_sites = {"acme/dc1", "acme/dc3"}; }
};

json::object AuditItem(const std::string& id, std::int64_t time_ms, const std::string& kind = "session_start") {
  return json::object{{"record_id", id},
                      {"time_ms", time_ms},
                      {"kind", kind},
                      {"actor", "alice"},
                      {"subject", "SN41000"},
                      {"details", json::object{{"application", "ssh"}, {"bytes_in", 42}}}};
}

TEST_F(GatewayApiTest, WatchAnswersAtOnceWithANewerPolicy) {
  ASSERT_NO_FATAL_FAILURE(PutPolicy());
  const auto start = Steady::now();
  auto watch = Gateway("GET", "/v1/gateway/watch?policy_version=0&cursor=0&wait_s=20", gateway_);
  EXPECT_LT(Steady::now() - start, 5s);
  ASSERT_EQ(watch.status, 200) << json::serialize(watch.body);
  EXPECT_EQ(watch.body.at("policy_version").as_int64(), 1);
  EXPECT_EQ(watch.body.at("policy").at("version").as_int64(), 1);
  EXPECT_EQ(watch.body.at("policy").at("rules").as_array().size(), 2u);
  EXPECT_TRUE(watch.body.at("decisions").as_array().empty());
  EXPECT_EQ(watch.body.at("cursor").as_int64(), 0);
}

TEST_F(GatewayApiTest, WatchWaitsWhenNothingIsNewAndSendsNoPolicy) {
  ASSERT_NO_FATAL_FAILURE(PutPolicy());
  const auto start = Steady::now();
  auto watch = Gateway("GET", "/v1/gateway/watch?policy_version=1&cursor=0&wait_s=1", gateway_);
  const auto took = Steady::now() - start;
  ASSERT_EQ(watch.status, 200) << json::serialize(watch.body);
  EXPECT_GE(took, 900ms);
  EXPECT_LT(took, 6s);
  EXPECT_EQ(watch.body.at("policy_version").as_int64(), 1);
  EXPECT_FALSE(watch.body.as_object().contains("policy"));
  EXPECT_TRUE(watch.body.at("decisions").as_array().empty());

  // wait_s=0 answers at once; bad parameters are refused.
  const auto again = Steady::now();
  EXPECT_EQ(Gateway("GET", "/v1/gateway/watch?policy_version=1&wait_s=0", gateway_).status, 200);
  EXPECT_LT(Steady::now() - again, 900ms);
  EXPECT_EQ(Gateway("GET", "/v1/gateway/watch?wait_s=26", gateway_).status, 400);
  EXPECT_EQ(Gateway("GET", "/v1/gateway/watch?policy_version=x", gateway_).status, 400);
  EXPECT_EQ(Gateway("GET", "/v1/gateway/watch?cursor=-1", gateway_).status, 400);
}

TEST_F(GatewayApiTest, APutWakesAWaitingWatch) {
  ASSERT_NO_FATAL_FAILURE(PutPolicy());
  auto watch = std::async(std::launch::async, [this] {
    auto answer = Gateway("GET", "/v1/gateway/watch?policy_version=1&wait_s=20", gateway_);
    return std::make_pair(answer, Steady::now());
  });
  // The watch is waiting (nothing newer than 1) when the PUT lands.
  ASSERT_EQ(watch.wait_for(500ms), std::future_status::timeout);
  auto put = Call("PUT", "/v1/policies", admin_token_, json::serialize(SamplePolicy()));
  ASSERT_EQ(put.status, 200);
  const auto put_done = Steady::now();
  ASSERT_EQ(watch.wait_for(10s), std::future_status::ready);
  auto [answer, returned] = watch.get();
  ASSERT_EQ(answer.status, 200) << json::serialize(answer.body);
  EXPECT_EQ(answer.body.at("policy_version").as_int64(), 2);
  EXPECT_EQ(answer.body.at("policy").at("version").as_int64(), 2);
  EXPECT_LT(returned - put_done, 1s);
}

TEST_F(GatewayApiTest, StopReleasesWaitingWatches) {
  auto watch = std::async(std::launch::async, [this] {
    return Gateway("GET", "/v1/gateway/watch?policy_version=0&wait_s=20", gateway_);
  });
  ASSERT_EQ(watch.wait_for(500ms), std::future_status::timeout);
  const auto start = Steady::now();
  service_->Stop();
  EXPECT_LT(Steady::now() - start, 3s) << "Stop waited for the long poll";
  ASSERT_EQ(watch.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(watch.get().status, 200);
}

TEST_F(GatewayApiTest, DecisionsOfThisGatewayComeFromTheSourceAfterTheCursor) {
  std::mutex mutex;
  std::vector<DecisionEvent> decided;  // of gw-1's requests, as the approvals part would keep them
  std::vector<std::string> asked_for;
  service_->SetDecisionSource([&](const std::string& gateway, std::int64_t cursor, std::size_t limit) {
    std::lock_guard lock(mutex);
    asked_for.push_back(gateway);
    std::vector<DecisionEvent> out;
    for (const auto& d : decided) {
      if (gateway == "acme/dc1/gw-1" && d.seq > cursor && out.size() < limit) {
        out.push_back(d);
      }
    }
    return out;
  });
  auto watch = std::async(std::launch::async, [this] {
    return Gateway("GET", "/v1/gateway/watch?policy_version=0&cursor=0&wait_s=20", gateway_);
  });
  ASSERT_EQ(watch.wait_for(500ms), std::future_status::timeout);
  {
    std::lock_guard lock(mutex);
    decided.push_back({"0123456789abcdef0123456789abcdef", "approved", "bob", "go ahead", 1795000000123, 4});
    decided.push_back({"fedcba9876543210fedcba9876543210", "denied", "carol", "", 1795000000456, 5});
  }
  service_->feed().Notify();  // what the approvals part does after committing a decision
  ASSERT_EQ(watch.wait_for(10s), std::future_status::ready);
  auto answer = watch.get();
  ASSERT_EQ(answer.status, 200) << json::serialize(answer.body);
  const auto& decisions = answer.body.at("decisions").as_array();
  ASSERT_EQ(decisions.size(), 2u);
  EXPECT_EQ(decisions[0].at("request_id").as_string(), "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(decisions[0].at("state").as_string(), "approved");
  EXPECT_EQ(decisions[0].at("decided_by").as_string(), "bob");
  EXPECT_EQ(decisions[0].at("comment").as_string(), "go ahead");
  EXPECT_EQ(decisions[0].at("decided_ms").as_int64(), 1795000000123);
  EXPECT_EQ(decisions[1].at("state").as_string(), "denied");
  EXPECT_EQ(answer.body.at("cursor").as_int64(), 5);
  EXPECT_FALSE(answer.body.as_object().contains("policy")) << "version 0 is not newer than 0";
  {
    std::lock_guard lock(mutex);
    ASSERT_FALSE(asked_for.empty());
    EXPECT_EQ(asked_for.front(), "acme/dc1/gw-1");
  }
  // With the new cursor there is nothing more.
  auto next = Gateway("GET", "/v1/gateway/watch?policy_version=0&cursor=5&wait_s=0", gateway_);
  EXPECT_TRUE(next.body.at("decisions").as_array().empty());
  EXPECT_EQ(next.body.at("cursor").as_int64(), 5);
  // Another gateway of the site sees none of gw-1's decisions.
  const auto other = Issue({"acme", "dc1", "gw-2", ""}, crypto::PeerKind::kGateway);
  auto theirs = Gateway("GET", "/v1/gateway/watch?policy_version=0&cursor=0&wait_s=0", other);
  EXPECT_TRUE(theirs.body.at("decisions").as_array().empty());
}

TEST_F(GatewayApiTest, OnlyGatewayCertificatesGetIn) {
  const auto device = Issue({"acme", "dc1", "SN41000", "X1"}, crypto::PeerKind::kDevice);
  // No certificate: 401, also with a valid bearer token (an admin's).
  for (const std::string path : {"/v1/gateway/watch?wait_s=0", "/v1/gateway/audit"}) {
    const std::string method = path.starts_with("/v1/gateway/watch") ? "GET" : "POST";
    const std::string body = method == "POST" ? R"({"records": []})" : "";
    EXPECT_EQ(Call(method, path, "", body).status, 401) << path;
    auto with_token = Call(method, path, admin_token_, body);
    EXPECT_EQ(with_token.status, 401) << path;
    // A device's certificate from the same CA: 403 and nothing more.
    auto as_device = Call(method, path, "", body, device);
    EXPECT_EQ(as_device.status, 403) << path;
    EXPECT_EQ(json::serialize(as_device.body), R"({"error":"forbidden"})");
  }
  EXPECT_EQ(Gateway("GET", "/v1/gateway/watch?wait_s=0", gateway_).status, 200);
}

TEST_F(GatewayApiWithSitesTest, GatewaysOfOtherSitesAreRefused) {
  EXPECT_EQ(Gateway("GET", "/v1/gateway/watch?wait_s=0", gateway_).status, 200);
  const auto dc3 = Issue({"acme", "dc3", "gw-9", ""}, crypto::PeerKind::kGateway);
  EXPECT_EQ(Gateway("GET", "/v1/gateway/watch?wait_s=0", dc3).status, 200);
  const auto dc2 = Issue({"acme", "dc2", "gw-1", ""}, crypto::PeerKind::kGateway);
  auto refused = Gateway("GET", "/v1/gateway/watch?wait_s=0", dc2);
  EXPECT_EQ(refused.status, 403);
  EXPECT_EQ(json::serialize(refused.body), R"({"error":"forbidden"})");
  const auto other_customer = Issue({"globex", "dc1", "gw-1", ""}, crypto::PeerKind::kGateway);
  EXPECT_EQ(Gateway("POST", "/v1/gateway/audit", other_customer, R"({"records": []})").status, 403);
}

TEST_F(GatewayApiTest, AuthenticateGatewayNamesTheGateway) {
  GatewayAccess access;
  transport::HttpRequest request;
  request.method = "POST";
  request.target = "/v1/gateway/requests";
  auto none = AuthenticateGateway(request, access);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.refusal->status, 401);
  request.peer = transport::PeerCertificate{*crypto::ReadSmallFile(gateway_.cert, 1 << 20)};
  auto accepted = AuthenticateGateway(request, access);
  ASSERT_TRUE(accepted);
  EXPECT_EQ(accepted.gateway, "acme/dc1/gw-1");
  access.sites = {"acme/dc2"};
  auto refused = AuthenticateGateway(request, access);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.refusal->status, 403);
}

TEST_F(GatewayApiTest, AuditIngestKeepsOriginalTimesAndIsIdempotent) {
  const std::int64_t then = std::chrono::duration_cast<std::chrono::milliseconds>(
                                (std::chrono::system_clock::now() - 1h).time_since_epoch())
                                .count();
  json::array batch{AuditItem("gw1-r1", then), AuditItem("gw1-r2", then + 10, "session_end"),
                    AuditItem("gw1-r3", then + 20, "decision")};
  auto first = Gateway("POST", "/v1/gateway/audit", gateway_, json::serialize(json::object{{"records", batch}}));
  ASSERT_EQ(first.status, 200) << json::serialize(first.body);
  EXPECT_EQ(first.body.at("appended").as_int64(), 3);
  EXPECT_EQ(first.body.at("duplicates").as_int64(), 0);

  // The reply was lost; the gateway sends the batch again with one more record.
  batch.push_back(AuditItem("gw1-r4", then + 30));
  auto again = Gateway("POST", "/v1/gateway/audit", gateway_, json::serialize(json::object{{"records", batch}}));
  ASSERT_EQ(again.status, 200) << json::serialize(again.body);
  EXPECT_EQ(again.body.at("appended").as_int64(), 1);
  EXPECT_EQ(again.body.at("duplicates").as_int64(), 3);

  auto records = service_->audit().Read(1);
  ASSERT_TRUE(records);
  std::vector<AuditRecord> mine;
  for (const auto& r : *records) {
    if (r.source == "acme/dc1/gw-1") {
      mine.push_back(r);
    }
  }
  ASSERT_EQ(mine.size(), 4u);
  EXPECT_EQ(mine[0].record_id, "gw1-r1");
  EXPECT_EQ(mine[0].time_ms, then) << "the original time is kept";
  EXPECT_GT(mine[0].received_ms, then + 3'000'000);
  EXPECT_EQ(mine[1].kind, "session_end");
  EXPECT_EQ(mine[3].record_id, "gw1-r4");
  EXPECT_EQ(mine[0].actor, "alice");
  EXPECT_EQ(mine[0].subject, "SN41000");
  EXPECT_EQ(json::parse(mine[0].details).at("bytes_in").as_int64(), 42);
}

TEST_F(GatewayApiTest, AuditIngestRefusesMalformedBatchesWhole) {
  const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  auto post = [&](const json::value& body) {
    return Gateway("POST", "/v1/gateway/audit", gateway_, json::serialize(body));
  };
  json::object no_id = AuditItem("", now_ms);
  auto refused = post(json::object{{"records", json::array{AuditItem("ok-1", now_ms), no_id}}});
  EXPECT_EQ(refused.status, 400);
  EXPECT_NE(json::serialize(refused.body).find("records[1]"), std::string::npos) << json::serialize(refused.body);
  json::object no_time = AuditItem("x-2", now_ms);
  no_time.erase("time_ms");
  EXPECT_EQ(post(json::object{{"records", json::array{no_time}}}).status, 400);
  EXPECT_EQ(post(json::object{{"records", json::array{AuditItem("x-3", now_ms, "Not A Kind")}}}).status, 400);
  EXPECT_EQ(post(json::object{{"nothing", 1}}).status, 400);
  json::array too_many;
  for (int i = 0; i < 1001; ++i) {
    too_many.push_back(AuditItem("many-" + std::to_string(i), now_ms));
  }
  EXPECT_EQ(post(json::object{{"records", too_many}}).status, 400);
  // Nothing of the refused batches was appended.
  auto records = service_->audit().Read(1);
  ASSERT_TRUE(records);
  for (const auto& r : *records) {
    EXPECT_NE(r.source, "acme/dc1/gw-1") << r.record_id;
  }
  // 1,000 is the limit, and it is accepted.
  too_many.pop_back();
  auto thousand = post(json::object{{"records", too_many}});
  EXPECT_EQ(thousand.status, 200) << json::serialize(thousand.body);
  EXPECT_EQ(thousand.body.at("appended").as_int64(), 1000);
}

}  // namespace
}  // namespace lifeline::policy
