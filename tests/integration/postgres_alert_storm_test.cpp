// Two `lifeline home run` processes on one real PostgreSQL database take the same alert storm:
// 10,000 alerts from 100 devices (10 alert codes each, 10 repeats per code), 100 alerts per batch,
// every batch sent to both homes at once (as an agent retrying through a second path would: the
// same message ids in a new batch). The devices enroll and send over the real protocol (mutual TLS,
// signed and sealed batches; src/sim is the client). Exactly one ticket per device and alert code,
// ten occurrences each, and exactly one email per ticket, though both homes' notifiers share the
// outbox.
#include "crypto/token.h"
#include "sim/batch_client.h"
#include "sim/credentials.h"
#include "sim/fleet.h"
#include "store/sql_home_store.h"
#include "support/harness.h"
#include "support/postgres_server.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <thread>

namespace lifeline::testing {
namespace {

const auto* const postgres_environment = ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

constexpr int kDevices = 100;
constexpr int kCodes = 10;
constexpr int kAlertsPerDevice = 100;  // one batch each: kCodes codes x 10 repeats

TEST(PostgresAlertStorm, TwoHomesMakeOneTicketPerDeviceAndCodeAndOneEmailPerTicket) {
  PostgresServer* server = SharedPostgres();
  ASSERT_NE(server, nullptr) << "the test PostgreSQL server did not start";
  TempDir dir;
  MailSink mail(dir / "mail");
  const std::string conninfo = server->CreateDatabase();
  WriteFile(dir / "store-url", conninfo + "\n");
  const std::string store_config = fmt::format(
      "backend = \"postgresql\"\npostgresql.url_file = \"{}\"\npostgresql.pool_size = 4", (dir / "store-url").string());
  TestHome home_a(dir / "home-a", mail.port(), {"oncall@example.com"}, store_config);
  TestHome home_b(dir / "home-b", mail.port(), {"oncall@example.com"}, store_config);
  // Storm control stays on, above this storm: 100 alerts per device must not tip it.
  for (TestHome* home : {&home_a, &home_b}) {
    home->SetTicketsConfig("storm.max_alerts = 1000\nstorm.window = \"1h\"");
  }
  // Both homes share one PKI (as homes behind one name do): home B gets home A's keys.
  std::filesystem::remove_all(home_b.pki_dir());
  std::filesystem::copy(home_a.pki_dir(), home_b.pki_dir(), std::filesystem::copy_options::recursive);
  home_a.Start();
  home_b.Start();

  // Enroll every device through home A with tokens written straight into the shared store.
  auto store = store::SqlHomeStore::Open(store::HomeStoreOptions{
      .backend = store::sql::Backend::kPostgres, .postgres_conninfo = conninfo, .postgres_pool_size = 2});
  ASSERT_TRUE(store) << store::sql::LastErrorDetail();
  std::string why;
  auto trust = sim::LoadHomeTrust(home_a.pki_dir(), &why);
  ASSERT_TRUE(trust) << why;
  auto credentials = sim::CredentialStore::Open(dir / "devices", *trust, &why);
  ASSERT_TRUE(credentials) << why;
  const sim::FleetShape shape{.prefix = "STORM", .devices = kDevices, .customers = 2, .sites = 10};
  std::vector<sim::DeviceCredentials> devices;
  transport::HttpClient enroll_client(transport::ClientTls{.ca_file = trust->ca_file});
  const auto now_ms = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  for (int i = 0; i < kDevices; ++i) {
    const auto identity = sim::DeviceAt(shape, static_cast<std::uint32_t>(i));
    const std::string token = crypto::GenerateToken("llt");
    ASSERT_TRUE((*store)->CreateEnrollmentToken(crypto::HashToken(token), identity, now_ms() + 3'600'000, now_ms()));
    auto enrolled =
        credentials->Enroll(identity, token, home_a.ingest_url(), enroll_client, std::chrono::seconds(30), &why);
    ASSERT_TRUE(enrolled) << identity.Key() << ": " << why;
    devices.push_back(std::move(*enrolled));
  }

  // One batch of 100 alerts per device; each is sent to both homes, concurrently, from 8 threads.
  std::mt19937_64 random(42);
  std::vector<std::vector<protocol::Message>> messages(kDevices);
  for (int d = 0; d < kDevices; ++d) {
    for (int a = 0; a < kAlertsPerDevice; ++a) {
      protocol::Message m;
      m.id = sim::MessageId(now_ms(), random);
      m.type = protocol::MessageType::kAlert;
      m.sequence = static_cast<std::uint64_t>(a + 1);
      m.timestamp_ms = now_ms();
      m.alert = {fmt::format("STORM-{:02}", a % kCodes), protocol::Severity::kCritical,
                 fmt::format("controller fault {}", a), "storm test"};
      messages[d].push_back(std::move(m));
    }
  }
  struct Task {
    int device;
    const TestHome* home;
  };
  std::vector<Task> tasks;
  for (int d = 0; d < kDevices; ++d) {
    tasks.push_back({d, &home_a});
    tasks.push_back({d, &home_b});
  }
  std::atomic<std::size_t> next{0};
  std::atomic<int> answered{0};
  std::atomic<int> accepted{0};
  std::atomic<int> duplicates{0};
  std::mutex failures_mutex;
  std::vector<std::string> failures;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      sim::BatchClient client(*trust, 4, std::chrono::seconds(60));
      for (std::size_t i = next++; i < tasks.size(); i = next++) {
        const Task& task = tasks[i];
        protocol::Batch batch{.batch_id = crypto::RandomHex(16),
                              .device = devices[task.device].identity,
                              .sent_at_ms = now_ms(),
                              .messages = messages[task.device]};
        const std::string sealed = sim::BatchClient::Seal(batch, devices[task.device], *trust);
        auto outcome = client.Send(devices[task.device], task.home->ingest_url(), sealed, batch.batch_id);
        if (outcome.kind != sim::SendOutcome::Kind::kAnswered) {
          std::lock_guard lock(failures_mutex);
          failures.push_back(fmt::format("{} to {}: {} {}", batch.device.Key(), task.home->ingest_url(),
                                         outcome.http_status, outcome.detail));
          continue;
        }
        ++answered;
        accepted += outcome.accepted;
        duplicates += outcome.duplicates;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  ASSERT_TRUE(failures.empty()) << failures.front();
  EXPECT_EQ(answered, 2 * kDevices);
  // Each alert was taken once; its second copy got the stored answer back.
  EXPECT_EQ(accepted, kDevices * kAlertsPerDevice);
  EXPECT_EQ(duplicates, kDevices * kAlertsPerDevice);

  // One ticket per device and code, with every repeat counted, seen alike from both homes.
  constexpr int kTickets = kDevices * kCodes;
  auto tickets = home_b.Admin("/v1/tickets?limit=10000").at("tickets").as_array();
  ASSERT_EQ(tickets.size(), static_cast<std::size_t>(kTickets));
  std::set<std::string> keys;
  std::set<std::string> numbers;
  for (const auto& t : tickets) {
    const auto& device = t.at("device");
    keys.insert(fmt::format("{}/{}/{}/{}", device.at("customer").as_string().c_str(),
                            device.at("site").as_string().c_str(), device.at("serial").as_string().c_str(),
                            t.at("code").as_string().c_str()));
    numbers.insert(std::string(t.at("number").as_string()));
    EXPECT_EQ(t.at("occurrences").to_number<int>(), kAlertsPerDevice / kCodes) << t.at("number").as_string();
    EXPECT_EQ(t.at("status").as_string(), "new");
  }
  EXPECT_EQ(keys.size(), static_cast<std::size_t>(kTickets));
  EXPECT_EQ(home_a.Stat("tickets"), kTickets);
  EXPECT_EQ(home_a.Stat("alerts"), kDevices * kAlertsPerDevice);

  // One email per ticket: every ticket number once in the mail sink, after both notifiers drained.
  ASSERT_TRUE(Eventually([&] { return home_a.Stat("emails_sent") == kTickets; }, std::chrono::seconds(180)))
      << "sent " << home_a.Stat("emails_sent") << ", pending " << home_a.Stat("emails_pending");
  ASSERT_TRUE(Eventually([&] { return mail.Messages().size() >= static_cast<std::size_t>(kTickets); },
                         std::chrono::seconds(30)));
  std::this_thread::sleep_for(std::chrono::seconds(2));  // time for a (wrong) second copy to arrive
  const auto emails = mail.Messages();
  EXPECT_EQ(emails.size(), static_cast<std::size_t>(kTickets));
  std::map<std::string, int> per_ticket;
  const std::regex subject(R"(Subject: \[Lifeline (LL-[0-9]+)\])");
  for (const auto& email : emails) {
    std::smatch match;
    ASSERT_TRUE(std::regex_search(email, match, subject)) << email.substr(0, 400);
    ++per_ticket[match[1].str()];
  }
  EXPECT_EQ(per_ticket.size(), static_cast<std::size_t>(kTickets));
  for (const auto& [number, count] : per_ticket) {
    EXPECT_EQ(count, 1) << number;
    EXPECT_TRUE(numbers.contains(number)) << number;
  }
  EXPECT_EQ(home_b.Stat("notifications_pending"), 0);

  home_a.Stop();
  home_b.Stop();
}

}  // namespace
}  // namespace lifeline::testing
