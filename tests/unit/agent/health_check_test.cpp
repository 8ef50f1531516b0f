#include "agent/health_check.h"

#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

namespace lifeline::agent {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

HealthCheckSpec Spec(HealthKind kind) {
  HealthCheckSpec spec;
  spec.name = "probe";
  spec.code = "HC-1";
  spec.kind = kind;
  return spec;
}

TEST(HealthCheck, FilesystemUsage) {
  testing::TempDir dir;
  auto spec = Spec(HealthKind::kFilesystem);
  spec.path = dir.path().string();
  spec.max_percent = 100;
  EXPECT_TRUE(HealthCheck(spec).Run({}).ok);
  spec.max_percent = -1;  // any usage is above it
  const auto outcome = HealthCheck(spec).Run({});
  ASSERT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.alert.code, "HC-1");
  EXPECT_NE(outcome.alert.text.find("% full"), std::string::npos) << outcome.alert.text;
  spec.path = (dir / "missing").string();
  EXPECT_FALSE(HealthCheck(spec).Run({}).ok);
}

TEST(HealthCheck, MemoryAndLoadFromProc) {
  testing::TempDir proc;
  testing::WriteFile(proc / "meminfo", "MemTotal:  8000000 kB\nMemFree:  100 kB\nMemAvailable:   51200 kB\n");
  testing::WriteFile(proc / "loadavg", "3.50 2.00 1.00 2/300 12345\n");
  auto memory = Spec(HealthKind::kMemory);
  memory.proc_root = proc.path().string();
  memory.min_available_mb = 50;
  EXPECT_TRUE(HealthCheck(memory).Run({}).ok);
  memory.min_available_mb = 51;
  const auto low = HealthCheck(memory).Run({});
  ASSERT_FALSE(low.ok);
  EXPECT_NE(low.alert.text.find("only 50 MiB"), std::string::npos) << low.alert.text;
  auto load = Spec(HealthKind::kLoad);
  load.proc_root = proc.path().string();
  load.max_load = 4;
  EXPECT_TRUE(HealthCheck(load).Run({}).ok);
  load.max_load = 3.25;
  EXPECT_FALSE(HealthCheck(load).Run({}).ok);
  EXPECT_EQ(ParseMemAvailableKib("MemTotal: 1 kB\n"), std::nullopt);
  EXPECT_EQ(ParseLoadAverage("garbage"), std::nullopt);
  // The real files parse too.
  memory.proc_root = "/proc";
  memory.min_available_mb = 0;
  EXPECT_TRUE(HealthCheck(memory).Run({}).ok);
}

TEST(HealthCheck, ProcessByCommOrArgv0) {
  testing::TempDir proc;
  fs::create_directories(proc / "17");
  testing::WriteFile(proc / "17" / "comm", "array-monitor-d\n");  // comm is cut at 15 characters
  testing::WriteFile(proc / "17" / "cmdline", std::string("/usr/sbin/array-monitor-daemon\0--flag\0", 38));
  fs::create_directories(proc / "self");
  auto spec = Spec(HealthKind::kProcess);
  spec.proc_root = proc.path().string();
  spec.target = "array-monitor-daemon";
  EXPECT_TRUE(HealthCheck(spec).Run({}).ok);
  spec.target = "array-monitor-d";
  EXPECT_TRUE(HealthCheck(spec).Run({}).ok);
  spec.target = "sshd";
  const auto missing = HealthCheck(spec).Run({});
  ASSERT_FALSE(missing.ok);
  EXPECT_NE(missing.alert.text.find("process sshd is not running"), std::string::npos);
  // The real /proc: this test binary is running.
  spec.proc_root = "/proc";
  spec.target = testing::ReadFile("/proc/self/comm").substr(0, testing::ReadFile("/proc/self/comm").size() - 1);
  EXPECT_TRUE(HealthCheck(spec).Run({}).ok) << spec.target;
}

TEST(HealthCheck, UnitThatIsNotActiveOrSystemctlMissingIsAFailureNotACrash) {
  auto spec = Spec(HealthKind::kUnit);
  spec.target = "lifeline-no-such-unit.service";
  const auto outcome = HealthCheck(spec).Run({});
  ASSERT_FALSE(outcome.ok);
  EXPECT_NE(outcome.alert.text.find("lifeline-no-such-unit.service"), std::string::npos) << outcome.alert.text;
}

TEST(HealthCheck, FileNotUpdatedForTooLong) {
  testing::TempDir dir;
  testing::WriteFile(dir / "beat", "x");
  auto spec = Spec(HealthKind::kFileAge);
  spec.path = (dir / "beat").string();
  spec.max_age = seconds(60);
  EXPECT_TRUE(HealthCheck(spec).Run({}).ok);
  fs::last_write_time(dir / "beat", fs::file_time_type::clock::now() - std::chrono::minutes(5));
  const auto stale = HealthCheck(spec).Run({});
  ASSERT_FALSE(stale.ok);
  EXPECT_NE(stale.alert.text.find("not updated for"), std::string::npos) << stale.alert.text;
  spec.path = (dir / "missing").string();
  EXPECT_FALSE(HealthCheck(spec).Run({}).ok);
}

}  // namespace
}  // namespace lifeline::agent
