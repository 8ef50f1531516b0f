// Notifications through the whole home: an agent's alert becomes a ticket whose event reaches a real
// HTTP webhook receiver (scripts/webhook-sink, signed) and a real SMTP server (scripts/mail-sink)
// through [notify] routing. The SMTP server is down when the ticket opens: the email waits in the
// outbox, retried with backoff, and arrives once the server is back. Then engineers work the ticket
// with `lifeline tickets|maintenance|devices`: acknowledgement, a maintenance window that keeps a
// new ticket quiet, resolution (webhook and email again), and a read-only token refused with 403.
#include "home/notify/webhook.h"
#include "support/harness.h"

#include <boost/json.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

namespace lifeline::testing {
namespace {

namespace json = boost::json;

/// A loopback port nothing listens on (bound, then released), for a receiver that starts later.
int UnusedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

/// scripts/mail-sink or scripts/webhook-sink on a given port (0: any), keeping what it receives as
/// files in `dir`/data.
class Sink {
 public:
  Sink(const std::string& script, const fs::path& dir, int port) : dir_(dir) {
    fs::create_directories(dir_ / "data");
    fs::remove(dir_ / "port");
    auto process = cli::Subprocess::Spawn(
        {"/usr/bin/python3", std::string(LIFELINE_SOURCE_DIR) + "/scripts/" + script, "--listen",
         fmt::format("127.0.0.1:{}", port), "--port-file", (dir_ / "port").string(), "--dir",
         (dir_ / "data").string()},
        dir_ / (script + ".log"));
    EXPECT_TRUE(process) << "cannot start " << script;
    if (process) {
      process_.emplace(std::move(*process));
    }
    EXPECT_TRUE(Eventually([&] { return !ReadFile(dir_ / "port").empty(); }, std::chrono::seconds(20)))
        << ReadFile(dir_ / (script + ".log"));
    port_ = std::stoi("0" + ReadFile(dir_ / "port"));
  }
  int port() const { return port_; }
  /// The received files with `extension`, oldest first.
  std::vector<std::string> Files(const std::string& extension) const {
    std::vector<fs::path> paths;
    for (const auto& entry : fs::directory_iterator(dir_ / "data")) {
      if (entry.path().extension() == extension && entry.path().filename().string()[0] != '.') {
        paths.push_back(entry.path());
      }
    }
    std::sort(paths.begin(), paths.end());
    std::vector<std::string> out;
    for (const auto& p : paths) {
      out.push_back(ReadFile(p));
    }
    return out;
  }

 private:
  fs::path dir_;
  int port_ = 0;
  std::optional<cli::Subprocess> process_;
};

TEST(Notifications, WebhookAndEmailThroughTheHomeWithTheMailServerDownForAWhile) {
  TempDir dir;
  Sink hooks("webhook-sink", dir / "hooks", 0);
  const int smtp_port = UnusedPort();
  TestHome home(dir / "home", smtp_port, {});
  home.SetExtraConfig(fmt::format(R"(
[[notify.webhook]]
name = "ops"
url = "http://127.0.0.1:{}/hook"
secret = "hook-secret"
[[notify.contact]]
name = "alice"
email = "alice@example.com"
[[notify.group]]
name = "team"
members = ["alice"]
webhooks = ["ops"]
[[notify.route]]
groups = ["team"]
)",
                                  hooks.port()));
  home.Start();
  TestAgent agent(dir / "agent", home, "SN-7001");
  ASSERT_EQ(agent.Enroll(home.EnrollToken(agent.identity())).exit_code, 0);
  agent.Start();
  agent.AppendLine("2026-11-21T10:00:01Z SVP CRIT SIM=3A21F4 Drive failure HDD 00-12");

  // The webhook goes out at once, signed with the shared secret.
  ASSERT_TRUE(Eventually([&] { return hooks.Files(".json").size() == 1; }, std::chrono::seconds(30)))
      << ReadFile(home.log_file());
  const json::object request = json::parse(hooks.Files(".json")[0]).as_object();
  const std::string body(request.at("body").as_string());
  const json::object headers = request.at("headers").as_object();
  const auto timestamp = std::stoll(std::string(headers.at("x-lifeline-timestamp").as_string()));
  EXPECT_EQ(headers.at("x-lifeline-signature").as_string(),
            home::notify::WebhookSignature("hook-secret", timestamp, body));
  const json::value event = json::parse(body);
  EXPECT_EQ(event.at("event").as_string(), "opened");
  EXPECT_EQ(event.at("ticket").at("number").as_string(), "LL-000001");
  EXPECT_EQ(event.at("device").at("serial").as_string(), "SN-7001");

  // The mail server is down: the email stays queued and is retried.
  ASSERT_TRUE(Eventually(
      [&] {
        auto rows = home.Admin("/v1/notifications?kind=email").at("notifications").as_array();
        return rows.size() == 1 && rows[0].at("attempts").to_number<int>() >= 1 &&
               rows[0].at("status").as_string() == "pending";
      },
      std::chrono::seconds(30)))
      << json::serialize(home.Admin("/v1/notifications"));
  auto failed = home.Admin("/v1/notifications?kind=email").at("notifications").as_array();
  EXPECT_FALSE(failed[0].at("last_error").as_string().empty());

  // Back up on the same port: the email arrives with the next retry.
  Sink mail("mail-sink", dir / "mail", smtp_port);
  ASSERT_EQ(mail.port(), smtp_port);
  ASSERT_TRUE(Eventually([&] { return mail.Files(".eml").size() == 1; }, std::chrono::seconds(60)))
      << ReadFile(home.log_file());
  const std::string email = mail.Files(".eml")[0];
  EXPECT_NE(email.find("alice@example.com"), std::string::npos) << email;
  EXPECT_NE(email.find("[Lifeline LL-000001]"), std::string::npos) << email;
  EXPECT_NE(email.find("SIM-3A21F4"), std::string::npos) << email;
  ASSERT_TRUE(Eventually([&] { return home.Stat("notifications_sent") == 2; }, std::chrono::seconds(10)));
  EXPECT_EQ(home.Admin("/v1/stats").at("sent_by_kind").at("webhook").to_number<int>(), 1);

  // An engineer works the ticket from the command line.
  WriteFile(dir / "admin.token", home.admin_token() + "\n");
  const std::vector<std::string> admin = {"--home", home.admin_url(), "--ca", (home.pki_dir() / "ca.crt").string(),
                                          "--token-file", (dir / "admin.token").string()};
  auto cli = [&](const std::string& command, std::vector<std::string> args) {
    std::vector<std::string> argv = {command};
    argv.insert(argv.end(), admin.begin(), admin.end());
    argv.insert(argv.end(), args.begin(), args.end());
    return RunLifeline(argv);
  };
  auto acked = cli("tickets", {"ack", "LL-000001", "--note", "replacing the drive"});
  ASSERT_EQ(acked.exit_code, 0) << acked.output;
  EXPECT_NE(acked.output.find("LL-000001 is acknowledged"), std::string::npos) << acked.output;
  auto shown = cli("tickets", {"show", "LL-000001"});
  EXPECT_NE(shown.output.find("replacing the drive"), std::string::npos) << shown.output;
  EXPECT_NE(shown.output.find("acknowledged"), std::string::npos) << shown.output;
  // The device can ask for its tickets too (signed by the home, checked with home-sign.pub).
  auto mine = RunLifeline({"agent", "tickets", "--config", agent.config().string()});
  ASSERT_EQ(mine.exit_code, 0) << mine.output;
  EXPECT_NE(mine.output.find("LL-000001  acknowledged"), std::string::npos) << mine.output;
  auto listed = cli("devices", {"list"});
  EXPECT_NE(listed.output.find("ACME/berlin-1/SN-7001"), std::string::npos) << listed.output;

  // A maintenance window for the site: the next alert is a ticket, and nobody hears of it.
  auto added = cli("maintenance", {"add", "--customer", "ACME", "--site", "berlin-1", "--duration", "1h", "--reason",
                                   "controller swap"});
  ASSERT_EQ(added.exit_code, 0) << added.output;
  EXPECT_NE(added.output.find("maintenance window 1 for ACME/berlin-1 (site)"), std::string::npos) << added.output;
  EXPECT_NE(cli("maintenance", {"list"}).output.find("controller swap"), std::string::npos);
  agent.AppendLine("2026-11-21T10:10:00Z SVP CRIT SIM=B00001 Fan failure");
  ASSERT_TRUE(Eventually([&] { return home.Stat("tickets") == 2; }, std::chrono::seconds(30)));
  EXPECT_EQ(home.Admin("/v1/tickets/LL-000002").at("suppressed").as_string(), "maintenance");
  auto ended = cli("maintenance", {"end", "1"});
  ASSERT_EQ(ended.exit_code, 0) << ended.output;

  // Resolved: the webhook and alice hear that it is over.
  auto resolved = cli("tickets", {"resolve", "LL-000001"});
  ASSERT_EQ(resolved.exit_code, 0) << resolved.output;
  ASSERT_TRUE(Eventually([&] { return hooks.Files(".json").size() == 2; }, std::chrono::seconds(30)));
  EXPECT_EQ(json::parse(json::parse(hooks.Files(".json")[1]).at("body").as_string()).at("event").as_string(),
            "resolved");
  ASSERT_TRUE(Eventually([&] { return mail.Files(".eml").size() == 2; }, std::chrono::seconds(30)));
  EXPECT_NE(mail.Files(".eml")[1].find("resolved"), std::string::npos);

  // A read-only token may look but not change.
  auto token = RunLifeline({"home", "admin-token", "--config", home.config().string(), "--name", "auditor",
                            "--role", "read-only"});
  ASSERT_EQ(token.exit_code, 0) << token.output;
  std::string text = token.output;
  while (!text.empty() && text.back() == '\n') {
    text.pop_back();
  }
  WriteFile(dir / "admin.token", text.substr(text.rfind('\n') + 1) + "\n");
  EXPECT_EQ(cli("tickets", {"list"}).exit_code, 0);
  auto refused = cli("tickets", {"close", "LL-000001"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("forbidden (403): role 'read-only' may not change tickets"), std::string::npos)
      << refused.output;

  // Nothing went to the webhook or the mailbox while the window stood.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(hooks.Files(".json").size(), 2u);
  EXPECT_EQ(mail.Files(".eml").size(), 2u);
  agent.Stop();
  home.Stop();
}

}  // namespace
}  // namespace lifeline::testing
