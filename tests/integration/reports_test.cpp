// Reports end to end: a real agent with short intervals sends inventory, a configuration file (whose
// secrets must arrive redacted, and must not even be stored in the agent's queue) and performance to a
// real home; the home's stored events are read from its SQLite file. A restart resends nothing.
#include "store/sqlite/database.h"
#include "support/harness.h"

#include <boost/json.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace lifeline::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

struct Event {
  std::string type;
  std::string payload;
};

std::vector<Event> Events(const fs::path& db_path, const std::string& type) {
  std::vector<Event> events;
  auto db = store::sqlite::Database::Open(db_path, {.busy_timeout_ms = 5000, .read_only = true});
  if (!db) {
    return events;
  }
  auto stmt = (*db)->Prepare("SELECT type, payload_json FROM events WHERE type = ? ORDER BY id");
  if (!stmt) {
    return events;
  }
  stmt->BindAll(type);
  while (true) {
    auto row = stmt->Step();
    if (!row || !*row) {
      break;
    }
    events.push_back({stmt->Text(0), stmt->Text(1)});
  }
  return events;
}

// Every byte of the files whose name starts with `prefix` (a SQLite file and its WAL).
std::string FilesBytes(const fs::path& dir, const std::string& prefix) {
  std::string bytes;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().starts_with(prefix)) {
      bytes += ReadFile(entry.path());
    }
  }
  return bytes;
}

constexpr std::string_view kKeyBody = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunSecretBody";
const std::vector<std::string> kSecrets = {"TopSecret-9f8e7d", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI-K7MDENG",
                                           std::string(kKeyBody), "LIC-4242-4242", "urlpass-77"};

std::string AppConf(int port) {
  return fmt::format(
      "# storage array controller\n"
      "port = {}\n"
      "admin_password = TopSecret-9f8e7d\n"
      "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
      "aws_secret_access_key = wJalrXUtnFEMI-K7MDENG\n"
      "license = LIC-4242-4242\n"
      "upstream = https://svc:urlpass-77@backup.example.com/\n"
      "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
      port, kKeyBody);
}

TEST(Reports, InventoryConfigurationAndPerformanceReachTheHomeRedacted) {
  TempDir dir;
  MailSink mail(dir / "mail");
  TestHome home(dir / "home", mail.port());
  home.Start();
  TestAgent agent(dir / "agent", home, "SN-7001");
  const auto app_conf = dir / "agent" / "app.conf";
  WriteFile(app_conf, AppConf(8080));
  std::string config = agent.ConfigText();
  config += fmt::format(R"(
[inventory]
interval = "1h"
check_interval = "2s"
[configuration]
interval = "1s"
[[config_files]]
path = "{}"
redact = ['license\s*=\s*(\S+)']
[performance]
sample_interval = "1s"
report_interval = "3s"
)",
                        app_conf.string());
  agent.SetConfig(config);
  auto enrolled = agent.Enroll(home.EnrollToken(agent.identity()));
  ASSERT_EQ(enrolled.exit_code, 0) << enrolled.output;
  agent.Start();
  const auto home_db = home.dir() / "home.db";

  ASSERT_TRUE(Eventually(
      [&] {
        return !Events(home_db, "inventory").empty() && !Events(home_db, "configuration").empty() &&
               !Events(home_db, "performance").empty();
      },
      45s))
      << agent.AgentLogText() << ReadFile(home.log_file());

  // Inventory: a full report describing this machine.
  const auto inventory = json::parse(Events(home_db, "inventory").front().payload).as_object();
  EXPECT_EQ(inventory.at("kind").as_string(), "full");
  const auto& machine = inventory.at("inventory").as_object();
  EXPECT_FALSE(machine.at("os").at("kernel_release").as_string().empty());
  EXPECT_GT(machine.at("cpu").at("count").as_int64(), 0);
  EXPECT_GT(machine.at("memory").at("total_bytes").as_int64(), 0);
  EXPECT_TRUE(machine.at("network").as_object().contains("lo"));
  EXPECT_EQ(machine.at("agent").at("version").as_string(), LIFELINE_VERSION);

  // Configuration: redacted before it left the machine; non-secrets intact.
  const auto configuration = json::parse(Events(home_db, "configuration").front().payload).as_object();
  EXPECT_EQ(configuration.at("path").as_string(), app_conf.string());
  const std::string content(configuration.at("content").as_string());
  EXPECT_NE(content.find("port = 8080\n"), std::string::npos) << content;
  EXPECT_NE(content.find("admin_password = [REDACTED]"), std::string::npos) << content;
  EXPECT_NE(content.find("license = [REDACTED]"), std::string::npos) << content;
  EXPECT_NE(content.find("-----BEGIN RSA PRIVATE KEY-----\n[REDACTED]\n"), std::string::npos) << content;
  const std::string home_bytes = FilesBytes(home.dir(), "home.db");
  const std::string queue_bytes = FilesBytes(dir / "agent" / "state", "queue.db");
  for (const auto& secret : kSecrets) {
    EXPECT_EQ(content.find(secret), std::string::npos) << secret;
    EXPECT_EQ(home_bytes.find(secret), std::string::npos) << secret << " is in the home's database";
    EXPECT_EQ(queue_bytes.find(secret), std::string::npos) << secret << " is in the agent's queue";
  }

  // Performance: min/avg/max of CPU and memory over a few samples.
  const auto performance = json::parse(Events(home_db, "performance").front().payload).as_object();
  EXPECT_GE(performance.at("samples").as_int64(), 2);
  const auto& cpu = performance.at("metrics").at("cpu.busy_percent").as_object();
  EXPECT_LE(cpu.at("min").to_number<double>(), cpu.at("avg").to_number<double>());
  EXPECT_LE(cpu.at("avg").to_number<double>(), cpu.at("max").to_number<double>());
  EXPECT_GT(performance.at("metrics").at("memory.available_bytes").at("avg").to_number<double>(), 0.0);

  // A changed file is sent again; an unchanged one is not.
  WriteFile(app_conf, AppConf(9090));
  ASSERT_TRUE(Eventually([&] { return Events(home_db, "configuration").size() >= 2; }, 20s));
  const auto changed = json::parse(Events(home_db, "configuration")[1].payload).as_object();
  EXPECT_NE(std::string(changed.at("content").as_string()).find("port = 9090\n"), std::string::npos);

  // After a restart nothing is resent: not the inventory, not the unchanged file.
  agent.Stop();
  const auto configurations = Events(home_db, "configuration").size();
  const auto inventories = Events(home_db, "inventory").size();
  const auto heartbeats = Events(home_db, "heartbeat").size();
  agent.Start();
  // The heartbeat at start shows the restarted agent got through; reports due at start would be queued
  // before it was sent. Then give a few check intervals for a wrong resend.
  ASSERT_TRUE(Eventually([&] { return Events(home_db, "heartbeat").size() > heartbeats; }, 30s));
  std::this_thread::sleep_for(4s);
  EXPECT_EQ(Events(home_db, "configuration").size(), configurations);
  EXPECT_EQ(Events(home_db, "inventory").size(), inventories);
  for (const auto& event : Events(home_db, "inventory")) {
    EXPECT_TRUE(json::parse(event.payload).is_object());
  }
  agent.Stop();
  home.Stop();
}

}  // namespace
}  // namespace lifeline::testing
