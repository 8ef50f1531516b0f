// MakeDetectionSources from a whole agent.toml: every source kind, and errors that name what is wrong.
#include "agent/sources.h"

#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <thread>

namespace lifeline::agent {
namespace {

constexpr const char* kHeader = R"([device]
customer = "ACME"
site = "x"
serial = "S1"
[home]
url = "https://127.0.0.1:1"
)";

struct Built {
  bool ok = false;
  std::string error;
  std::vector<std::string> names;
};

Built Build(const std::string& body) {
  testing::TempDir dir;
  testing::WriteFile(dir / "agent.toml", std::string(kHeader) + body);
  const AgentConfig config = AgentConfig::Load(dir / "agent.toml");
  auto queue = AgentQueue::Open(dir / "queue.db");
  EXPECT_TRUE(queue);
  Built built;
  auto sources = MakeDetectionSources(config, **queue, &built.error);
  built.ok = static_cast<bool>(sources);
  if (sources) {
    for (const auto& s : *sources) {
      built.names.push_back(s->name());
    }
  }
  return built;
}

TEST(MakeDetectionSources, EveryKindFromConfig) {
  const Built built = Build(R"(
[[checks.command]]
name = "raid"
command = ["/bin/true"]
exit_status = "0=ok *=critical"
min_count = 2
window = "5m"
[[checks.command.patterns]]
pattern = 'degraded: (md[0-9]+)'
code = "RAID-{1}"
[[checks.command]]
name = "sh"
command = ["exit 0"]
shell = true
[[checks.health]]
name = "root"
kind = "filesystem"
path = "/"
[[checks.health]]
name = "load"
kind = "load"
max_load = "12.5"
[syslog]
udp = "127.0.0.1:0"
[[syslog_rules]]
name = "any"
pattern = "x"
code = "X"
clear_pattern = "y"
max_per_window = 3
)");
  ASSERT_TRUE(built.ok) << built.error;
  ASSERT_EQ(built.names.size(), 4u);
  EXPECT_EQ(built.names[0], "check raid");
  EXPECT_EQ(built.names[1], "check sh");
  EXPECT_EQ(built.names[2], "health checks");
  EXPECT_EQ(built.names[3].rfind("syslog udp 127.0.0.1:", 0), 0u) << built.names[3];
}

TEST(MakeDetectionSources, ErrorsNameTheCheckOrRule) {
  EXPECT_NE(Build("[[checks.command]]\nname = \"c\"\ncommand = [\"a\", \"b\"]\nshell = true\n").error.find("'c'"),
            std::string::npos);
  EXPECT_NE(Build("[[checks.command]]\nname = \"c\"\ncommand = [\"a\"]\nexit_status = \"0=fine\"\n").error.find("exit_status"),
            std::string::npos);
  EXPECT_NE(Build("[[checks.health]]\nname = \"h\"\nkind = \"load\"\nmax_load = \"lots\"\n").error.find("max_load"),
            std::string::npos);
  EXPECT_NE(Build("[[checks.health]]\nname = \"h\"\nkind = \"process\"\n").error.find("process is required"),
            std::string::npos);
  EXPECT_NE(Build("[[syslog_rules]]\nname = \"s\"\npattern = \"x\"\ncode = \"X\"\n").error.find("syslog.udp"),
            std::string::npos);
  const Built backref = Build("[syslog]\ntcp = \"127.0.0.1:0\"\n[[syslog_rules]]\nname = \"twice\"\npattern = '(a)\\1'\ncode = \"X\"\n");
  EXPECT_FALSE(backref.ok);
  EXPECT_NE(backref.error.find("twice"), std::string::npos) << backref.error;
  EXPECT_NE(Build("[syslog]\nudp = \"not-an-address\"\n").error.find("not-an-address"), std::string::npos);
}

}  // namespace
}  // namespace lifeline::agent

namespace lifeline::agent {
namespace {

// Enqueues like the agent does and counts what arrives.
struct CountingSink final : DetectionSink {
  explicit CountingSink(AgentQueue& queue) : queue(queue) {}
  bool Emit(std::vector<protocol::Message> drafts,
            std::optional<std::pair<std::string, FilePosition>> position) override {
    alerts += static_cast<int>(drafts.size());
    return static_cast<bool>(queue.Enqueue(std::move(drafts), std::move(position)));
  }
  AgentQueue& queue;
  std::atomic<int> alerts{0};
};

// A log that stays quiet while the agent runs, then gets a line while the agent is down: the next
// start must read it. (The first start reads only new lines, so without a stored starting point the
// second start would begin at the end again and skip the line.)
TEST(LogSource, QuietFileKeepsItsStartingPointAcrossRestarts) {
  testing::TempDir dir;
  const auto log_path = dir / "array.log";
  testing::WriteFile(log_path, "old line before the agent ever ran\n");
  testing::WriteFile(dir / "agent.toml", std::string(kHeader) + "[[logs]]\npath = \"" + log_path.string() +
                                             "\"\n[watch]\npoll_interval_ms = 50\n[[rules]]\nname = \"crit\"\npattern = 'CRIT (.*)'\n"
                                             "code = \"CRIT\"\nseverity = \"critical\"\nmessage = \"{1}\"\n");
  const AgentConfig config = AgentConfig::Load(dir / "agent.toml");
  auto queue = AgentQueue::Open(dir / "queue.db");
  ASSERT_TRUE(queue);
  CountingSink sink(**queue);
  auto run_for = [&](std::chrono::milliseconds how_long) {
    std::string error;
    auto sources = MakeDetectionSources(config, **queue, &error);
    ASSERT_TRUE(sources) << error;
    for (auto& s : *sources) {
      s->Start(sink);
    }
    std::this_thread::sleep_for(how_long);
    for (auto& s : *sources) {
      s->Stop();
    }
  };
  run_for(std::chrono::milliseconds(600));  // quiet: nothing to read
  EXPECT_EQ(sink.alerts, 0);
  std::ofstream(log_path, std::ios::app) << "CRIT written while the agent was down\n";
  run_for(std::chrono::milliseconds(600));
  EXPECT_EQ(sink.alerts, 1) << "the line written while the agent was down was skipped";
}

}  // namespace
}  // namespace lifeline::agent
