#include "gateway/admin_access.h"
#include "gateway/admin_devices.h"
#include "gateway/admin_server.h"
#include "gateway/gateway_config.h"
#include "gateway/loopback_peer.h"

#include "support/temp_dir.h"
#include "../transport/test_pki.h"

#include <boost/json.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

namespace lifeline::gateway {
namespace {
namespace json = boost::json;

int Mode(const std::filesystem::path& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return static_cast<int>(st.st_mode & 0777);
}

class AdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.data_dir = (dir_ / "gateway").string();
    config_.admin_listen = "127.0.0.1:0";
    auto registry = DeviceRegistry::Open(config_.StorePath());
    ASSERT_TRUE(registry);
    registry_ = std::move(*registry);
    auto server = AdminServer::Start(config_);
    ASSERT_TRUE(server) << server.error().message();
    server_ = std::move(*server);
    AddDeviceRoutes(*server_, *registry_);
    config_.admin_listen = server_->LocalAddress();  // what the client dials
  }

  /// Calls the admin interface; returns status and parsed body.
  std::pair<int, json::value> Call(std::string_view method, std::string_view target,
                                   std::string_view body = "") {
    std::string detail;
    auto response = CallGatewayAdmin(config_, method, target, body, &detail);
    EXPECT_TRUE(response) << detail;
    if (!response) {
      return {0, nullptr};
    }
    boost::system::error_code ec;
    auto value = json::parse(response->body, ec);
    EXPECT_FALSE(ec) << response->body;
    return {response->status, value};
  }

  testing::TempDir dir_;
  GatewayConfig config_;
  std::unique_ptr<DeviceRegistry> registry_;
  std::unique_ptr<AdminServer> server_;
};

TEST_F(AdminTest, FirstStartMakesPrivateTokenAndPinnedCertificate) {
  const std::filesystem::path data = config_.data_dir;
  EXPECT_EQ(Mode(data), 0700);
  EXPECT_EQ(Mode(config_.AdminTokenPath()), 0600);
  EXPECT_EQ(Mode(AdminKeyPath(data)), 0600);
  // A second start keeps the token and certificate (clients keep working across restarts).
  const auto token = testing::ReadFile(config_.AdminTokenPath());
  const auto cert = testing::ReadFile(AdminCertificatePath(data));
  server_->Stop();
  auto again = AdminServer::Start(AdminServerOptions::FromConfig(config_));
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(testing::ReadFile(config_.AdminTokenPath()), token);
  EXPECT_EQ(testing::ReadFile(AdminCertificatePath(data)), cert);
}

TEST_F(AdminTest, TokenIsRequired) {
  transport::HttpClient client(
      transport::ClientTls{.ca_file = AdminCertificatePath(config_.data_dir).string()});
  const auto url = fmt::format("https://{}/v1/devices", config_.admin_listen);
  auto none = client.Send({.method = "GET", .url = url});
  ASSERT_TRUE(none) << client.LastErrorDetail();
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(json::parse(none->body).at("error"), "unauthorized");
  auto wrong = client.Send({.method = "GET", .url = url, .headers = {{"Authorization", "Bearer llgw_wrong"}}});
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  // Unknown paths are refused before routing too, so they say nothing to a caller without a token.
  auto unknown = client.Send({.method = "GET", .url = fmt::format("https://{}/nope", config_.admin_listen)});
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 401);

  auto [status, body] = Call("GET", "/nope");
  EXPECT_EQ(status, 404);
  EXPECT_EQ(body.at("error"), "not_found");
  std::tie(status, body) = Call("PATCH", "/v1/devices/A");
  EXPECT_EQ(status, 405);
}

TEST_F(AdminTest, DevicesCrudThroughCallGatewayAdmin) {
  auto [status, body] = Call("POST", "/v1/devices",
                             R"({"serial":"APM 001","model":"VNX","address":"10.0.0.5","apps":{"ssh":22,"https":443}})");
  ASSERT_EQ(status, 201) << body;
  EXPECT_EQ(body.at("apps").at("ssh"), 22);
  EXPECT_EQ(body.at("reachability").as_array().size(), 2u);
  EXPECT_EQ(registry_->Lookup("APM 001", "https")->HostPort(), "10.0.0.5:443");

  std::tie(status, body) = Call("POST", "/v1/devices", R"({"serial":"APM 001","address":"10.0.0.5","apps":{"ssh":22}})");
  EXPECT_EQ(status, 409);

  std::tie(status, body) = Call("GET", "/v1/devices");
  ASSERT_EQ(status, 200);
  EXPECT_EQ(body.at("devices").as_array().size(), 1u);
  EXPECT_GT(body.at("generation").as_int64(), 1);

  std::tie(status, body) = Call("GET", "/v1/devices/APM%20001");
  ASSERT_EQ(status, 200) << body;
  EXPECT_EQ(body.at("model"), "VNX");

  std::tie(status, body) = Call("PUT", "/v1/devices/APM%20001", R"({"apps":{"ssh":2222},"enabled":false})");
  ASSERT_EQ(status, 200) << body;
  EXPECT_EQ(body.at("address"), "10.0.0.5");  // unchanged
  EXPECT_EQ(body.at("enabled"), false);
  EXPECT_EQ(registry_->Lookup("APM 001", "ssh").error(), RegistryErrc::kDisabled);

  std::tie(status, body) = Call("GET", "/v1/devices/APM%20001/history");
  ASSERT_EQ(status, 200);
  ASSERT_EQ(body.at("history").as_array().size(), 2u);
  EXPECT_EQ(body.at("history").at(0).at("action"), "edit");
  // The user whose process called (this test's), as the kernel's socket table says.
  EXPECT_EQ(body.at("history").at(0).at("actor").as_string(), "local:" + UserName(::getuid()));
  EXPECT_EQ(body.at("history").at(0).at("before").at("apps").at("https"), 443);
  EXPECT_EQ(body.at("history").at(0).at("after").at("apps").at("ssh"), 2222);

  std::tie(status, body) = Call("DELETE", "/v1/devices/APM%20001");
  ASSERT_EQ(status, 200);
  std::tie(status, body) = Call("GET", "/v1/devices/APM%20001");
  EXPECT_EQ(status, 404);
  EXPECT_NE(json::value_to<std::string>(body.at("message")).find("undeployed"), std::string::npos);
  std::tie(status, body) = Call("DELETE", "/v1/devices/NOPE");
  EXPECT_EQ(status, 404);

  std::tie(status, body) = Call("GET", "/v1/history?limit=2");
  ASSERT_EQ(status, 200);
  ASSERT_EQ(body.at("history").as_array().size(), 2u);
  EXPECT_EQ(body.at("history").at(0).at("action"), "undeploy");
}

TEST_F(AdminTest, ValidationErrorsAre400WithAClearMessage) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "JSON object"},
      {R"({"serial":"A","address":"10.0.0.5"})", "at least one application"},
      {R"({"serial":"A","address":"10.0.0.5","apps":{"ssh":70000}})", "1 to 65535"},
      {R"({"serial":"A","address":"10.0.0.5","apps":{"SSH":22}})", "a-z"},
      {R"({"serial":"A","address":"10.0.0.5:22","apps":{"ssh":22}})", "neither an IP address"},
      {R"({"serial":"A","address":"10.0.0.5","apps":["ssh:22"]})", "'apps' must be an object"},
      {R"({"serial":"A","address":"10.0.0.5","apps":{"ssh":22},"port":22})", "unknown field 'port'"},
      {R"({"address":"10.0.0.5","apps":{"ssh":22}})", "serial"},
  };
  for (const auto& [request, words] : cases) {
    auto [status, body] = Call("POST", "/v1/devices", request);
    EXPECT_EQ(status, 400) << request;
    if (status == 400) {
      const auto message = json::value_to<std::string>(body.at("message"));
      EXPECT_NE(message.find(words), std::string::npos) << request << " -> " << message;
    }
  }
  EXPECT_EQ(registry_->size(), 0u);
  auto [status, body] = Call("POST", "/v1/devices", R"({"serial":"A","address":"10.0.0.5","apps":{"ssh":22}})");
  ASSERT_EQ(status, 201);
  std::tie(status, body) = Call("PUT", "/v1/devices/A", R"({"apps":{}})");
  EXPECT_EQ(status, 400);
  std::tie(status, body) = Call("PUT", "/v1/devices/A", R"({"serial":"B"})");
  EXPECT_EQ(status, 400);
  std::tie(status, body) = Call("PUT", "/v1/devices/NOPE", R"({"model":"x"})");
  EXPECT_EQ(status, 404);
}

TEST_F(AdminTest, RoutesFromOtherPartsAndLongestPrefix) {
  server_->Route("GET", "/v1/sessions", [](const AdminRequest& request) {
    return AdminJson(json::serialize(json::object{{"actor", request.actor}, {"rest", request.rest.size()}}));
  });
  server_->Route("POST", "/v1/sessions/kill", [](const AdminRequest& request) {
    return AdminJson(json::serialize(json::object{{"killed", request.rest.at(0)}}));
  });
  auto [status, body] = Call("GET", "/v1/sessions");
  ASSERT_EQ(status, 200);
  EXPECT_EQ(body.at("actor").as_string(), "local:" + UserName(::getuid()));
  std::tie(status, body) = Call("POST", "/v1/sessions/kill/s%2F1", "{}");
  ASSERT_EQ(status, 200);
  EXPECT_EQ(body.at("killed"), "s/1");
  std::tie(status, body) = Call("GET", "/v1/sessionsx");
  EXPECT_EQ(status, 404);
}

TEST_F(AdminTest, ClearErrorsWhenTheGatewayIsNotThere) {
  GatewayConfig absent = config_;
  absent.admin_listen = fmt::format("127.0.0.1:{}", transport::testpki::UnusedPort());
  std::string detail;
  auto response = CallGatewayAdmin(absent, "GET", "/v1/devices", "", &detail);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error(), AdminAccessErrc::kNotRunning);
  EXPECT_EQ(detail, fmt::format("gateway not running at {} (is `lifeline gateway run` started?)",
                                absent.admin_listen));

  GatewayConfig never_started;
  never_started.data_dir = (dir_ / "elsewhere").string();
  never_started.admin_listen = "127.0.0.1:9460";
  response = CallGatewayAdmin(never_started, "GET", "/v1/devices", "", &detail);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error(), AdminAccessErrc::kNoToken);
  EXPECT_TRUE(detail.starts_with("gateway not running at 127.0.0.1:9460")) << detail;

  // Another gateway (another data_dir, so another certificate) on the port is not trusted.
  GatewayConfig other;
  other.data_dir = (dir_ / "other").string();
  other.admin_listen = "127.0.0.1:0";
  auto other_server = AdminServer::Start(other);
  ASSERT_TRUE(other_server);
  GatewayConfig impostor = config_;
  impostor.admin_listen = (*other_server)->LocalAddress();
  response = CallGatewayAdmin(impostor, "GET", "/v1/devices", "", &detail);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error(), AdminAccessErrc::kWrongCertificate) << detail;
}

}  // namespace
}  // namespace lifeline::gateway
