// The admin API through its handler (no sockets) over the real store on both backends: what each
// role may do (403 with the roles that may), the ticket actions, maintenance windows, devices,
// heartbeats, inventory, notifications, escalation state and on-call.
#include "home/admin_api.h"

#include "crypto/token.h"
#include "unit/home/ticket_fixture.h"

#include <boost/json.hpp>

namespace lifeline::home::testing {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

const auto* const postgres_environment =
    ::testing::AddGlobalTestEnvironment(new lifeline::testing::PostgresEnvironment);

constexpr std::string_view kNotify = R"(
[[notify.contact]]
name = "alice"
email = "alice@vendor.example"
[[notify.contact]]
name = "boss"
email = "boss@vendor.example"
[[notify.group]]
name = "oncall"
members = ["alice"]
management = ["boss"]
[[notify.group]]
name = "support"
rotation = "week"
[[notify.rotation]]
name = "week"
engineers = ["alice", "boss"]
[notify]
default_groups = ["oncall"]
[[notify.escalation.level]]
after = "15m"
)";

class AdminApiTest : public TicketHomeTest {
 protected:
  void SetUp() override {
    TicketHomeTest::SetUp();
    notify_ = CompileNotify(std::string(kNotify));
    planner_ = std::make_unique<TicketEventPlanner>(notify_.plan);
    api_ = std::make_unique<AdminApi>(*store_, clock_,
                                      AdminOptions{.planner = planner_->AsPlanner(),
                                                   .plan = &planner_->plan(),
                                                   .groups = {"oncall", "support"},
                                                   .on_notified = [this] { ++wakes_; }});
    for (const char* role : {"admin", "engineer", "manager", "read-only", "viewer"}) {
      ASSERT_TRUE(store_->CreateAdminToken(std::string("tok-") + role, crypto::HashToken(std::string("secret-") + role),
                                           role, Now()));
    }
    Enroll(Device("SN1"));
    Enroll(Device("SN2"));
  }

  struct Answer {
    int status = 0;
    json::value body;
    std::string message() const {
      return body.is_object() && body.as_object().contains("message") ? std::string(body.at("message").as_string())
                                                                       : "";
    }
  };

  Answer Call(const std::string& role, const std::string& method, const std::string& target,
              const std::string& body = "") {
    transport::HttpRequest request{.method = method, .target = target, .body = body, .remote = "test"};
    if (!role.empty()) {
      request.headers["authorization"] = "Bearer secret-" + role;
    }
    auto response = api_->Handle(request);
    Answer answer{response.status, {}};
    boost::system::error_code ec;
    answer.body = json::parse(response.body, ec);
    EXPECT_FALSE(ec) << response.body;
    return answer;
  }

  std::string OpenTicket(const std::string& code, const std::string& serial = "SN1") {
    auto reply = Ingest(Device(serial), {Alert(code)}, planner_->AsPlanner());
    return reply.results.empty() ? "" : reply.results[0].ticket;
  }

  notify::CompiledNotify notify_;
  std::unique_ptr<TicketEventPlanner> planner_;
  std::unique_ptr<AdminApi> api_;
  int wakes_ = 0;
};

TEST_P(AdminApiTest, EachRoleMayDoWhatItsRoleAllows) {
  const std::string ticket = OpenTicket("SIM-1");
  struct Case {
    std::string method;
    std::string target;
    std::string body;
    std::set<std::string> allowed;
  };
  const std::vector<Case> cases = {
      {"GET", "/v1/tickets", "", {"admin", "engineer", "manager", "read-only"}},
      {"GET", "/v1/tickets/" + ticket, "", {"admin", "engineer", "manager", "read-only"}},
      {"GET", "/v1/devices", "", {"admin", "engineer", "manager", "read-only"}},
      {"GET", "/v1/devices/ACME/site-1/SN1", "", {"admin", "engineer", "manager", "read-only"}},
      {"GET", "/v1/heartbeats", "", {"admin", "engineer", "manager", "read-only"}},
      {"GET", "/v1/inventory", "", {"admin", "engineer", "manager", "read-only"}},
      {"GET", "/v1/notifications", "", {"admin", "engineer", "manager", "read-only"}},
      {"GET", "/v1/maintenance", "", {"admin", "engineer", "manager", "read-only"}},
      {"GET", "/v1/stats", "", {"admin", "engineer", "manager", "read-only"}},
      {"POST", "/v1/tickets/" + ticket + "/notes", R"({"text":"seen"})", {"admin", "engineer"}},
      {"POST", "/v1/tickets/" + ticket + "/assign", R"({"engineer":"bob"})", {"admin", "engineer"}},
      {"POST", "/v1/maintenance", R"({"customer":"ACME","site":"site-2","duration":"1h","reason":"x"})",
       {"admin", "engineer", "manager"}},
      {"GET", "/v1/escalations", "", {"admin", "manager"}},
      {"GET", "/v1/oncall", "", {"admin", "manager"}},
      {"POST", "/v1/devices/ACME/site-1/SN2/revoke", "", {"admin"}},
  };
  for (const auto& c : cases) {
    for (const char* role : {"engineer", "manager", "read-only", "viewer", "admin"}) {
      const Answer a = Call(role, c.method, c.target, c.body);
      if (c.allowed.contains(role)) {
        EXPECT_LT(a.status, 300) << role << " " << c.method << " " << c.target << ": " << a.message();
      } else {
        EXPECT_EQ(a.status, 403) << role << " " << c.method << " " << c.target;
        EXPECT_EQ(a.body.at("error").as_string(), "forbidden");
        EXPECT_NE(a.message().find(std::string("role '") + role + "' may not"), std::string::npos) << a.message();
      }
    }
  }
  const Answer denied = Call("read-only", "POST", "/v1/tickets/" + ticket + "/acknowledge");
  EXPECT_EQ(denied.message(), "role 'read-only' may not change tickets (roles that may: admin, engineer)");
  EXPECT_EQ(Call("", "GET", "/v1/tickets").status, 401);
  transport::HttpRequest wrong{.method = "GET", .target = "/v1/tickets", .remote = "test"};
  wrong.headers["authorization"] = "Bearer nope";
  EXPECT_EQ(api_->Handle(wrong).status, 401);
  const Answer me = Call("manager", "GET", "/v1/whoami");
  EXPECT_EQ(me.body.at("name").as_string(), "tok-manager");
  EXPECT_EQ(me.body.at("role").as_string(), "manager");
}

TEST_P(AdminApiTest, TicketActionsFollowTheLifecycle) {
  const std::string ticket = OpenTicket("SIM-1");
  Answer a = Call("engineer", "POST", "/v1/tickets/" + ticket + "/acknowledge", R"({"note":"on it"})");
  ASSERT_EQ(a.status, 200) << a.message();
  EXPECT_EQ(a.body.at("status").as_string(), "acknowledged");
  EXPECT_EQ(a.body.at("acknowledged_by").as_string(), "tok-engineer");
  a = Call("engineer", "POST", "/v1/tickets/" + ticket + "/acknowledge");
  EXPECT_EQ(a.status, 409);
  EXPECT_EQ(a.message(), "cannot acknowledge ticket " + ticket + ": it is acknowledged");
  EXPECT_EQ(Call("engineer", "POST", "/v1/tickets/" + ticket + "/notes", "{}").status, 400);
  EXPECT_EQ(Call("engineer", "POST", "/v1/tickets/" + ticket + "/assign", "{}").status, 400);
  EXPECT_EQ(Call("engineer", "POST", "/v1/tickets/" + ticket + "/assign", R"({"engineer":"alice"})").status, 200);
  EXPECT_EQ(Call("engineer", "POST", "/v1/tickets/" + ticket + "/frobnicate").status, 404);
  EXPECT_EQ(Call("engineer", "POST", "/v1/tickets/LL-999999/resolve").status, 404);
  EXPECT_EQ(Call("engineer", "POST", "/v1/tickets/" + ticket + "/resolve", "not json").status, 400);

  const int wakes = wakes_;
  a = Call("engineer", "POST", "/v1/tickets/" + ticket + "/resolve");
  ASSERT_EQ(a.status, 200);
  EXPECT_EQ(a.body.at("status").as_string(), "resolved");
  EXPECT_EQ(a.body.at("state").as_string(), "resolved");
  EXPECT_GT(wakes_, wakes);
  a = Call("admin", "POST", "/v1/tickets/" + ticket + "/close", R"({"note":"replaced"})");
  EXPECT_EQ(a.body.at("status").as_string(), "closed");
  a = Call("engineer", "POST", "/v1/tickets/" + ticket + "/reopen");
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.body.at("status").as_string(), "reopened");

  a = Call("read-only", "GET", "/v1/tickets/" + ticket);
  ASSERT_EQ(a.status, 200);
  EXPECT_EQ(a.body.at("assignee").as_string(), "alice");
  EXPECT_EQ(a.body.at("notes").as_array().size(), 2u);
  EXPECT_EQ(a.body.at("notes").as_array()[0].at("text").as_string(), "on it");
  std::vector<std::string> actions;
  for (const auto& h : a.body.at("history").as_array()) {
    actions.push_back(std::string(h.at("action").as_string()));
  }
  EXPECT_EQ(actions, (std::vector<std::string>{"opened", "acknowledged", "assigned", "resolved", "closed",
                                                "reopened"}));
  // Opened, resolved and reopened each told alice (routing: the oncall group).
  EXPECT_EQ(a.body.at("notifications").as_array().size(), 3u);
  EXPECT_EQ(a.body.at("escalation").as_array().size(), 1u);

  // Closed again, the alert comes back as a new ticket, and the old one cannot be reopened while
  // the new one is open for the same key.
  Call("engineer", "POST", "/v1/tickets/" + ticket + "/resolve");
  Call("engineer", "POST", "/v1/tickets/" + ticket + "/close");
  const std::string second = OpenTicket("SIM-1");
  EXPECT_NE(second, ticket);
  a = Call("engineer", "POST", "/v1/tickets/" + ticket + "/reopen");
  EXPECT_EQ(a.status, 409);
  EXPECT_EQ(a.message(), "cannot reopen ticket " + ticket +
                             ": it is closed, and another ticket is open for its deduplication key");
  a = Call("read-only", "GET", "/v1/tickets?status=new,acknowledged&customer=ACME&site=site-1&serial=SN1");
  ASSERT_EQ(a.status, 200) << a.message();
  ASSERT_EQ(a.body.at("tickets").as_array().size(), 1u);
  EXPECT_EQ(a.body.at("tickets").as_array()[0].at("number").as_string(), second);
  EXPECT_EQ(Call("read-only", "GET", "/v1/tickets?status=bogus").status, 400);
  EXPECT_EQ(Call("read-only", "GET", "/v1/tickets?serial=SN1").status, 400);
  EXPECT_EQ(Call("read-only", "GET", "/v1/tickets?limit=0").status, 400);
}

TEST_P(AdminApiTest, MaintenanceWindowsThroughTheApi) {
  Answer a = Call("manager", "POST", "/v1/maintenance",
                  R"({"customer":"ACME","site":"site-1","serial":"SN1","duration":"2h","reason":"disk swap"})");
  ASSERT_EQ(a.status, 201) << a.message();
  const auto id = a.body.at("id").to_number<std::int64_t>();
  EXPECT_EQ(a.body.at("scope").as_string(), "device");
  EXPECT_TRUE(a.body.at("active").as_bool());
  EXPECT_EQ(a.body.at("created_by").as_string(), "tok-manager");
  EXPECT_EQ(a.body.at("end").as_string(), "2026-01-06T12:00:00.000Z");

  // An alert in the window: a ticket, no notification.
  const std::string quiet = OpenTicket("SIM-1", "SN1");
  a = Call("engineer", "GET", "/v1/tickets/" + quiet);
  EXPECT_EQ(a.body.at("suppressed").as_string(), "maintenance");
  EXPECT_TRUE(a.body.at("notifications").as_array().empty());
  const std::string loud = OpenTicket("SIM-1", "SN2");
  EXPECT_EQ(Call("engineer", "GET", "/v1/tickets/" + loud).body.at("notifications").as_array().size(), 1u);

  a = Call("engineer", "GET", "/v1/maintenance");
  ASSERT_EQ(a.body.at("windows").as_array().size(), 1u);
  a = Call("engineer", "GET", "/v1/devices/ACME/site-1/SN1");
  EXPECT_EQ(a.body.at("maintenance").as_array().size(), 1u);
  EXPECT_EQ(a.body.at("open_tickets").as_array().size(), 1u);

  a = Call("engineer", "POST", "/v1/maintenance/" + std::to_string(id) + "/end");
  ASSERT_EQ(a.status, 200) << a.message();
  EXPECT_EQ(a.body.at("ended_by").as_string(), "tok-engineer");
  EXPECT_FALSE(a.body.at("active").as_bool());
  EXPECT_EQ(Call("engineer", "POST", "/v1/maintenance/" + std::to_string(id) + "/end").status, 409);
  EXPECT_EQ(Call("engineer", "POST", "/v1/maintenance/424242/end").status, 404);
  EXPECT_TRUE(Call("engineer", "GET", "/v1/maintenance").body.at("windows").as_array().empty());
  EXPECT_EQ(Call("engineer", "GET", "/v1/maintenance?all=1").body.at("windows").as_array().size(), 1u);

  // Explicit times, and what is refused.
  a = Call("engineer", "POST", "/v1/maintenance",
           R"({"customer":"ACME","site":"site-1","start":"2026-01-07T08:00:00Z","end":"2026-01-07T10:00+01:00"})");
  ASSERT_EQ(a.status, 201) << a.message();
  EXPECT_EQ(a.body.at("end").as_string(), "2026-01-07T09:00:00.000Z");
  EXPECT_FALSE(a.body.at("active").as_bool());
  EXPECT_EQ(a.body.at("scope").as_string(), "site");
  for (const char* bad : {R"({"site":"site-1","duration":"1h"})", R"({"customer":"ACME","site":"site-1"})",
                          R"({"customer":"ACME","site":"site-1","duration":"1h","end":"2026-01-07T10:00Z"})",
                          R"({"customer":"ACME","site":"site-1","duration":"soon"})",
                          R"({"customer":"ACME","site":"site-1","end":"2020-01-01T00:00Z"})"}) {
    EXPECT_EQ(Call("engineer", "POST", "/v1/maintenance", bad).status, 400) << bad;
  }
  EXPECT_EQ(Call("engineer", "POST", "/v1/maintenance",
                 R"({"customer":"ACME","site":"site-1","serial":"nope","duration":"1h"})")
                .status,
            404);
}

TEST_P(AdminApiTest, DevicesHeartbeatsInventoryNotificationsAndStats) {
  protocol::Message heartbeat;
  heartbeat.id = "hb-1";
  heartbeat.type = protocol::MessageType::kHeartbeat;
  heartbeat.heartbeat = {3600, "ok"};
  Ingest(Device("SN1"), {heartbeat, Payload(protocol::MessageType::kInventory, R"({"firmware":"1.2"})")});
  const std::string ticket = OpenTicket("SIM-1");
  Answer a = Call("manager", "GET", "/v1/escalations");
  ASSERT_EQ(a.body.at("tickets").as_array().size(), 1u);
  EXPECT_FALSE(a.body.at("tickets").as_array()[0].at("due_now").as_bool());
  EXPECT_EQ(a.body.at("tickets").as_array()[0].at("next_escalation").as_string(), "2026-01-06T10:15:00.000Z");

  a = Call("read-only", "GET", "/v1/devices");
  ASSERT_EQ(a.body.at("devices").as_array().size(), 2u);
  a = Call("read-only", "GET", "/v1/devices/ACME/site-1/SN1");
  ASSERT_EQ(a.status, 200);
  EXPECT_EQ(a.body.at("heartbeat_interval_s").to_number<int>(), 3600);
  EXPECT_EQ(a.body.at("last_heartbeat").as_string(), "2026-01-06T10:00:00.000Z");
  EXPECT_EQ(a.body.at("heartbeat_due").as_string(), "2026-01-06T11:06:00.000Z");  // + interval + 10 %
  EXPECT_EQ(Call("read-only", "GET", "/v1/devices/ACME/site-1/nope").status, 404);

  clock_.Advance(2h);
  a = Call("read-only", "GET", "/v1/heartbeats");
  for (const auto& d : a.body.at("devices").as_array()) {
    if (d.at("serial").as_string() == "SN1") {
      EXPECT_TRUE(d.at("overdue").as_bool());
      EXPECT_EQ(d.at("interval_s").to_number<int>(), 3600);
    } else {
      EXPECT_EQ(d.at("last_heartbeat").as_string(), "");
    }
  }

  a = Call("read-only", "GET", "/v1/inventory");
  ASSERT_EQ(a.body.at("inventory").as_array().size(), 1u);
  EXPECT_EQ(a.body.at("inventory").as_array()[0].at("inventory").at("firmware").as_string(), "1.2");
  a = Call("read-only", "GET", "/v1/inventory?customer=ACME&site=site-1&serial=SN2");
  EXPECT_TRUE(a.body.at("inventory").as_array().empty());

  a = Call("read-only", "GET", "/v1/notifications?ticket=" + ticket);
  ASSERT_EQ(a.body.at("notifications").as_array().size(), 1u);
  const auto& n = a.body.at("notifications").as_array()[0];
  EXPECT_EQ(n.at("status").as_string(), "pending");
  EXPECT_EQ(n.at("recipient").as_string(), "alice@vendor.example");
  EXPECT_EQ(n.at("attempts").to_number<int>(), 0);
  EXPECT_EQ(Call("read-only", "GET", "/v1/notifications?status=sent").body.at("notifications").as_array().size(), 0u);
  EXPECT_EQ(Call("read-only", "GET", "/v1/notifications?status=odd").status, 400);

  a = Call("manager", "GET", "/v1/escalations");
  ASSERT_EQ(a.body.at("tickets").as_array().size(), 1u);
  EXPECT_EQ(a.body.at("tickets").as_array()[0].at("level").to_number<int>(), 0);
  EXPECT_TRUE(a.body.at("tickets").as_array()[0].at("due_now").as_bool());  // level 1 was due at 10:15
  a = Call("manager", "GET", "/v1/oncall");
  ASSERT_EQ(a.body.at("groups").as_array().size(), 2u);
  EXPECT_EQ(a.body.at("groups").as_array()[0].at("on_call").as_string(), "");
  EXPECT_FALSE(a.body.at("groups").as_array()[1].at("on_call").as_string().empty());

  a = Call("read-only", "GET", "/v1/stats");
  EXPECT_EQ(a.body.at("tickets").to_number<int>(), 1);
  EXPECT_EQ(a.body.at("open_tickets").to_number<int>(), 1);
  EXPECT_EQ(a.body.at("notifications_pending").to_number<int>(), 1);

  a = Call("admin", "POST", "/v1/devices/ACME/site-1/SN2/revoke");
  ASSERT_EQ(a.status, 200);
  EXPECT_EQ(a.body.at("status").as_string(), "revoked");
  EXPECT_EQ(Call("admin", "GET", "/v1/nothing").status, 404);
}

INSTANTIATE_TEST_SUITE_P(Backends, AdminApiTest,
                         ::testing::Values(store::sql::Backend::kSqlite, store::sql::Backend::kPostgres),
                         BackendName);

}  // namespace
}  // namespace lifeline::home::testing
