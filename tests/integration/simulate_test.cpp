// `lifeline simulate` against a real home: 50 devices enroll (tokens from the home's store), then
// heartbeat, alert, storm and fall silent over mutual TLS for a few seconds. The home's admin API
// must show every device enrolled with a heartbeat recorded, every alert the simulator counted, and
// tickets (with emails) for the alerts at ticket severity. A second run reuses the enrolled devices.
#include "support/harness.h"

#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>

namespace lifeline::testing {
namespace {

/// The number before `label` in the summary line that starts with `line_label`, e.g.
/// SummaryNumber(out, "generated", "alerts") for "generated  97 messages: 40 heartbeats, 50 alerts".
std::int64_t SummaryNumber(const std::string& output, const std::string& line_label, const std::string& label,
                           int occurrence = 0) {
  std::smatch match;
  const std::regex pattern("\\s" + line_label + "\\s+[^\\n]*");
  auto begin = output.cbegin();
  for (int i = 0; std::regex_search(begin, output.cend(), match, pattern); ++i) {
    if (i == occurrence) {
      const std::string line = match.str();
      std::smatch number;
      if (std::regex_search(line, number, std::regex("(\\d+) " + label))) {
        return std::stoll(number[1].str());
      }
      return -1;
    }
    begin = match.suffix().first;
  }
  return -1;
}

std::vector<std::string> SimulateArgs(const TestHome& home, const fs::path& state, std::vector<std::string> extra) {
  std::vector<std::string> args = {"--log-level", "warn",  "simulate",    "--home-config",
                                   home.config().string(), "--state",     state.string(),
                                   "--progress",  "0",     "--threads",   "3"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

TEST(Simulate, FiftyDevicesEnrollHeartbeatAndRaiseTickets) {
  TempDir dir;
  MailSink mail(dir / "mail");
  TestHome home(dir / "home", mail.port());
  home.Start();

  const auto run = RunLifeline(SimulateArgs(home, dir / "sim-state",
                                            {"--devices", "50", "--sites", "5", "--customers", "2",
                                             "--heartbeat-interval", "1s", "--alert-rate", "20", "--storm-every",
                                             "2s", "--storm-size", "50", "--silence-every", "1s", "--silence-for",
                                             "2s", "--duration", "5s", "--seed", "7"}),
                               std::chrono::seconds(90));
  ASSERT_EQ(run.exit_code, 0) << run.output << ReadFile(home.log_file());
  EXPECT_NE(run.output.find("50 (50 enrolled now, 0 from the state directory)"), std::string::npos) << run.output;
  const std::int64_t alerts = SummaryNumber(run.output, "generated", "alerts");
  const std::int64_t heartbeats = SummaryNumber(run.output, "generated", "heartbeats");
  const std::int64_t clears = SummaryNumber(run.output, "generated", "clears");
  const std::int64_t messages = SummaryNumber(run.output, "generated", "messages");
  ASSERT_GT(alerts, 50) << run.output;  // the rate alone gives about 100, storms 50 each
  ASSERT_GE(heartbeats, 150) << run.output;  // 50 devices, 1 s apart, for 5 s; some silent
  EXPECT_EQ(SummaryNumber(run.output, "messages", "accepted"), messages) << run.output;
  EXPECT_EQ(SummaryNumber(run.output, "messages", "rejected"), 0) << run.output;
  EXPECT_GE(SummaryNumber(run.output, "generated", "silences"), 1) << run.output;
  EXPECT_NE(run.output.find("latency per request   p50 "), std::string::npos) << run.output;

  // Every device is enrolled and has its heartbeat recorded.
  EXPECT_EQ(home.Stat("devices"), 50);
  auto devices = home.Admin("/v1/devices").at("devices").as_array();
  ASSERT_EQ(devices.size(), 50u);
  std::set<std::string> sites;
  std::set<std::string> customers;
  for (const auto& d : devices) {
    const auto& o = d.as_object();
    EXPECT_FALSE(o.at("last_heartbeat").as_string().empty()) << boost::json::serialize(o);
    EXPECT_GE(o.at("heartbeat_interval_s").to_number<int>(), 1);
    sites.insert(std::string(o.at("site").as_string()));
    customers.insert(std::string(o.at("customer").as_string()));
    EXPECT_TRUE(o.at("serial").as_string().starts_with("SIM-")) << boost::json::serialize(o);
  }
  EXPECT_EQ(sites.size(), 5u);
  EXPECT_EQ(customers.size(), 2u);

  // Every alert the simulator counted was ingested once.
  EXPECT_EQ(home.Stat("alerts"), alerts);

  // Tickets for the alerts at ticket severity, one unresolved per device and code; repeats and storms
  // add occurrences; warnings (SIM-FAN-SPEED, SIM-REPL-LAG) open none.
  auto tickets = home.Admin("/v1/tickets?limit=10000").at("tickets").as_array();
  ASSERT_FALSE(tickets.empty());
  std::int64_t occurrences = 0;
  std::map<std::string, int> per_key_not_resolved;
  int resolved = 0;
  for (const auto& t : tickets) {
    const auto& o = t.as_object();
    const std::string code(o.at("code").as_string());
    if (!code.starts_with("SIM-")) {
      continue;  // the home's own tickets (a storm's summary, say) are not the simulator's codes
    }
    EXPECT_NE(code, "SIM-FAN-SPEED");
    EXPECT_NE(code, "SIM-REPL-LAG");
    occurrences += o.at("occurrences").to_number<std::int64_t>();
    const std::string state(o.at("state").as_string());
    if (state == "resolved" || state == "closed") {
      ++resolved;
    } else {
      const auto& d = o.at("device").as_object();
      ++per_key_not_resolved[std::string(d.at("serial").as_string()) + "/" + code];
    }
  }
  for (const auto& [key, n] : per_key_not_resolved) {
    EXPECT_EQ(n, 1) << "two unresolved tickets for " << key;
  }
  EXPECT_GT(occurrences, static_cast<std::int64_t>(tickets.size())) << "storms repeat codes: occurrences expected";
  EXPECT_LE(occurrences, alerts);
  // SIM-LINK-FLAP clears 2 s after its third repeat: within 5 s, some tickets are resolved.
  ASSERT_GT(clears, 0) << run.output;
  EXPECT_GT(resolved, 0) << run.output;

  // The emails the home sent about them reach the mail sink (storm control may hold some back).
  ASSERT_TRUE(Eventually([&] { return home.Stat("emails_pending") == 0; }, std::chrono::seconds(60)))
      << ReadFile(home.log_file());
  EXPECT_GE(home.Stat("emails_sent"), 1);
  EXPECT_EQ(static_cast<std::int64_t>(mail.Messages().size()), home.Stat("emails_sent"));

  // A second run with the same state reuses every device: nothing enrolls again.
  const auto again = RunLifeline(SimulateArgs(home, dir / "sim-state",
                                              {"--devices", "50", "--sites", "5", "--customers", "2",
                                               "--heartbeat-interval", "1s", "--alert-rate", "0", "--count", "60"}),
                                 std::chrono::seconds(60));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("50 (0 enrolled now, 50 from the state directory)"), std::string::npos)
      << again.output;
  EXPECT_EQ(SummaryNumber(again.output, "messages", "accepted"), 60) << again.output;
  EXPECT_EQ(home.Stat("devices"), 50);
}

TEST(Simulate, SameBatchToTwoHomeUrlsIsDeduplicatedOrRefusedAsReplay) {
  TempDir dir;
  MailSink mail(dir / "mail");
  TestHome home(dir / "home", mail.port());
  home.Start();
  // The same home twice stands in for two homes on one store: the second copy of every message is a
  // duplicate (new batch id) or, with --same-batch-id, a replayed batch.
  const auto run = RunLifeline(SimulateArgs(home, dir / "sim-state",
                                            {"--home", home.ingest_url(), "--home", home.ingest_url(), "--devices",
                                             "5", "--heartbeat-interval", "1s", "--alert-rate", "10", "--count",
                                             "40", "--seed", "3"}),
                               std::chrono::seconds(60));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(SummaryNumber(run.output, "messages", "accepted", 0), 40) << run.output;
  EXPECT_EQ(SummaryNumber(run.output, "messages", "duplicates", 1), 40) << run.output;
  EXPECT_EQ(SummaryNumber(run.output, "messages", "accepted", 1), 0) << run.output;

  const auto replay = RunLifeline(SimulateArgs(home, dir / "sim-state",
                                               {"--home", home.ingest_url(), "--home", home.ingest_url(),
                                                "--same-batch-id", "--devices", "5", "--heartbeat-interval", "1s",
                                                "--alert-rate", "10", "--count", "40"}),
                                  std::chrono::seconds(60));
  ASSERT_EQ(replay.exit_code, 0) << replay.output;
  EXPECT_EQ(SummaryNumber(replay.output, "messages", "accepted", 0), 40) << replay.output;
  EXPECT_NE(replay.output.find("replayed_batch x"), std::string::npos) << replay.output;
  EXPECT_EQ(SummaryNumber(replay.output, "batches", "answered", 1), 0) << replay.output;
}

TEST(Simulate, DeviceEnrolledElsewhereIsEnrolledAgainWithATokenSource) {
  TempDir dir;
  MailSink mail(dir / "mail");
  TestHome home(dir / "home", mail.port());
  home.Start();
  const std::vector<std::string> small = {"--devices", "5", "--heartbeat-interval", "1s", "--alert-rate", "0",
                                          "--count", "10"};
  ASSERT_EQ(RunLifeline(SimulateArgs(home, dir / "state-a", small)).exit_code, 0);
  // Another state directory with the same names enrolls the same devices with other keys...
  ASSERT_EQ(RunLifeline(SimulateArgs(home, dir / "state-b", small)).exit_code, 0);
  // ...so the first one's batches no longer verify. Without a token source they are dropped, with a
  // hint; with the home's config the devices enroll again and everything arrives.
  auto without = RunLifeline({"--log-level", "warn", "simulate", "--home", home.ingest_url(), "--pki",
                              home.pki_dir().string(), "--state", (dir / "state-a").string(), "--progress", "0",
                              "--devices", "5", "--heartbeat-interval", "1s", "--alert-rate", "0", "--count", "10"});
  EXPECT_EQ(without.exit_code, 1) << without.output;
  EXPECT_NE(without.output.find("bad_signature"), std::string::npos) << without.output;
  EXPECT_NE(without.output.find("hint"), std::string::npos) << without.output;
  auto with = RunLifeline(SimulateArgs(home, dir / "state-a", small));
  EXPECT_EQ(with.exit_code, 0) << with.output;
  EXPECT_NE(with.output.find("enrolled again        5"), std::string::npos) << with.output;
  EXPECT_EQ(SummaryNumber(with.output, "messages", "accepted"), 10) << with.output;
  EXPECT_EQ(home.Stat("devices"), 5);
}

TEST(Simulate, HelpExplainsTokensTrafficAndEnding) {
  const auto help = RunLifeline({"simulate", "--help"});
  EXPECT_EQ(help.exit_code, 0) << help.output;
  for (const char* topic : {"--home-config", "--state", "--storm-every", "--silence-every", "--duration", "--count",
                            "Where tokens come from", "Several homes", "Exit status"}) {
    EXPECT_NE(help.output.find(topic), std::string::npos) << topic;
  }
  // Without a URL or a home config there is nothing to simulate against: a usage error.
  TempDir dir;
  const auto usage = RunLifeline({"simulate", "--state", (dir / "s").string()});
  EXPECT_EQ(usage.exit_code, 2) << usage.output;
}

}  // namespace
}  // namespace lifeline::testing
