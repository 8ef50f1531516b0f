// Inventory: parsers against fixture text and this machine, trimming to the payload budget, deltas that
// rebuild the new inventory exactly, and the source's full/delta schedule surviving a restart.
#include "agent/inventory.h"

#include "support/temp_dir.h"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <unistd.h>

namespace lifeline::agent {
namespace {

using lifeline::testing::TempDir;
namespace json = boost::json;
using namespace std::chrono_literals;

TEST(InventoryParsers, Cpuinfo) {
  const auto info = ParseCpuinfo(
      "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz\n"
      "flags\t\t: fpu vme\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz\n"
      "garbage line without colon\n");
  EXPECT_EQ(info.count, 2);
  EXPECT_EQ(info.model, "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz");
  EXPECT_EQ(ParseCpuinfo("").count, 0);
}

TEST(InventoryParsers, OsRelease) {
  const auto fields = ParseOsRelease(
      "# comment\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME='Debian'\nVERSION_ID=\"12\"\nID=debian\n"
      "BROKEN\n=novalue\nESCAPED=\"a \\\"b\\\"\"\n");
  EXPECT_EQ(fields.at("PRETTY_NAME"), "Debian GNU/Linux 12 (bookworm)");
  EXPECT_EQ(fields.at("NAME"), "Debian");
  EXPECT_EQ(fields.at("VERSION_ID"), "12");
  EXPECT_EQ(fields.at("ID"), "debian");
  EXPECT_EQ(fields.at("ESCAPED"), "a \"b\"");
  EXPECT_EQ(fields.count("BROKEN"), 0u);
}

TEST(InventoryParsers, Meminfo) {
  const auto values = ParseMeminfo(
      "MemTotal:       16318412 kB\nMemAvailable:    8000000 kB\nHugePages_Total:       4\nBad: x kB\nNegative: -5 kB\n");
  EXPECT_EQ(values.at("MemTotal"), 16318412LL * 1024);
  EXPECT_EQ(values.at("MemAvailable"), 8000000LL * 1024);
  EXPECT_EQ(values.at("HugePages_Total"), 4);
  EXPECT_EQ(values.count("Bad"), 0u);
  EXPECT_EQ(values.count("Negative"), 0u);
}

TEST(InventoryParsers, MountsAndPseudoFilesystems) {
  const auto mounts = ParseMounts(
      "/dev/sda1 / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n/dev/sdb1 /mnt/my\\040disk xfs rw 0 0\nshort line\n");
  ASSERT_EQ(mounts.size(), 3u);
  EXPECT_EQ(mounts[0].device, "/dev/sda1");
  EXPECT_EQ(mounts[0].mount_point, "/");
  EXPECT_EQ(mounts[0].type, "ext4");
  EXPECT_EQ(mounts[2].mount_point, "/mnt/my disk");
  EXPECT_TRUE(IsPseudoFilesystem("proc"));
  EXPECT_TRUE(IsPseudoFilesystem("cgroup2"));
  EXPECT_TRUE(IsPseudoFilesystem("tmpfs"));
  EXPECT_FALSE(IsPseudoFilesystem("ext4"));
  EXPECT_FALSE(IsPseudoFilesystem("nfs4"));
}

TEST(InventoryParsers, PackageList) {
  const auto packages = ParsePackageList("libc6:amd64\t2.36-9\nopenssl\t3.0.11-1\n\nnotab\n\tnoname\n");
  EXPECT_EQ(packages.size(), 2u);
  EXPECT_EQ(packages.at("libc6:amd64"), "2.36-9");
  EXPECT_EQ(packages.at("openssl"), "3.0.11-1");
}

TEST(Inventory, ThisMachine) {
  const auto inventory = CollectInventory({.packages = true});
  EXPECT_EQ(inventory.at("agent").at("version").as_string(), LIFELINE_VERSION);
  EXPECT_EQ(inventory.at("os").at("sysname").as_string(), "Linux");
  EXPECT_FALSE(inventory.at("os").at("kernel_release").as_string().empty());
  EXPECT_GT(inventory.at("cpu").at("count").as_int64(), 0);
  EXPECT_GT(inventory.at("memory").at("total_bytes").as_int64(), 0);
  EXPECT_TRUE(inventory.at("network").as_object().contains("lo"));
  const auto& lo = inventory.at("network").at("lo").as_object();
  bool has_loopback = false;
  for (const auto& address : lo.at("addresses").as_array()) {
    has_loopback = has_loopback || address.as_string() == "127.0.0.1/8";
  }
  EXPECT_TRUE(has_loopback) << json::serialize(lo);
  EXPECT_FALSE(inventory.at("filesystems").as_object().empty());
  if (::access("/usr/bin/dpkg-query", X_OK) == 0) {
    EXPECT_EQ(inventory.at("package_manager").as_string(), "dpkg");
    EXPECT_GT(inventory.at("packages").as_object().size(), 10u);
  }
  EXPECT_LE(json::serialize(inventory).size(), kReportPayloadBudget);
  // Only slowly changing facts: two readings in a row are the same.
  EXPECT_TRUE(ComputeDelta(inventory, CollectInventory({.packages = true})).empty());
}

TEST(Inventory, FitTrimsPackagesDeterministically) {
  json::object packages;
  for (int i = 0; i < 5000; ++i) {
    packages["package-with-a-long-name-" + std::to_string(i)] = "1.2.3-4+deb12u" + std::to_string(i);
  }
  json::object inventory{{"os", json::object{{"id", "debian"}}}, {"packages", packages}};
  auto a = inventory;
  auto b = inventory;
  FitInventory(a, 20 * 1024);
  FitInventory(b, 20 * 1024);
  EXPECT_LE(json::serialize(a).size(), 20u * 1024);
  EXPECT_EQ(a, b);
  const auto kept = a.at("packages").as_object().size();
  EXPECT_GT(kept, 100u);
  EXPECT_EQ(a.at("packages_omitted").as_int64(), static_cast<std::int64_t>(5000 - kept));
  // Fitting again changes nothing (the state the delta compares against is stable).
  auto c = a;
  FitInventory(c, 20 * 1024);
  EXPECT_EQ(c.at("packages").as_object().size(), kept);
}

TEST(InventoryDelta, RebuildsTheNewInventory) {
  const json::object before = json::parse(R"({
    "os": {"kernel_release": "6.1.0-17", "id": "debian"},
    "memory": {"total_bytes": 100},
    "packages": {"openssl": "3.0.11", "libfoo": "1.0", "bash": "5.2"},
    "package_manager": "dpkg",
    "old_section": {"x": 1}
  })").as_object();
  const json::object after = json::parse(R"({
    "os": {"id": "debian", "kernel_release": "6.1.0-18"},
    "memory": {"total_bytes": 100},
    "packages": {"openssl": "3.0.13", "bash": "5.2", "curl": "7.88"},
    "package_manager": "dpkg",
    "network": {"eth0": {"addresses": ["10.0.0.2/24"]}}
  })").as_object();
  const auto delta = ComputeDelta(before, after);
  EXPECT_EQ(json::serialize(delta.changed),
            json::serialize(json::parse(R"({"os":{"kernel_release":"6.1.0-18"},)"
                                        R"("packages":{"openssl":"3.0.13","curl":"7.88"},)"
                                        R"("network":{"eth0":{"addresses":["10.0.0.2/24"]}}})")));
  EXPECT_EQ(json::serialize(delta.removed), R"([["packages","libfoo"],["old_section"]])");
  EXPECT_EQ(ApplyDelta(before, delta), after);
  EXPECT_EQ(InventoryHash(ApplyDelta(before, delta)), InventoryHash(after));

  // Same content in another key order: no delta, same hash.
  const json::object reordered = json::parse(R"({"package_manager":"dpkg","memory":{"total_bytes":100},)"
                                             R"("os":{"kernel_release":"6.1.0-17","id":"debian"},)"
                                             R"("old_section":{"x":1},)"
                                             R"("packages":{"bash":"5.2","libfoo":"1.0","openssl":"3.0.11"}})")
                                      .as_object();
  EXPECT_TRUE(ComputeDelta(before, reordered).empty());
  EXPECT_EQ(InventoryHash(before), InventoryHash(reordered));

  // A section that changes kind is replaced whole.
  const json::object scalar{{"os", "unknown"}};
  const auto kind_change = ComputeDelta(before, scalar);
  EXPECT_EQ(ApplyDelta(before, kind_change), scalar);
}

class CollectingSink final : public DetectionSink {
 public:
  bool Emit(std::vector<protocol::Message> drafts, std::optional<std::pair<std::string, FilePosition>>) override {
    if (refuse) {
      return false;
    }
    for (auto& draft : drafts) {
      messages.push_back(std::move(draft));
    }
    return true;
  }
  json::object Last() const { return json::parse(messages.back().payload_json).as_object(); }
  bool refuse = false;
  std::vector<protocol::Message> messages;
};

TEST(InventorySource, FullThenDeltasThenFullAndNoResendAfterRestart) {
  TempDir dir;
  auto queue = AgentQueue::Open(dir / "queue.db");
  ASSERT_TRUE(queue);
  json::object current = json::parse(R"({"os":{"id":"debian"},"packages":{"a":"1","b":"2"}})").as_object();
  const auto collect = [&current] { return current; };
  const InventorySourceOptions options{.interval = 3600s, .check_interval = 60s, .packages = false};
  CollectingSink sink;
  using Sent = InventorySource::Sent;
  const std::int64_t t0 = 1'700'000'000'000;
  {
    InventorySource source(options, **queue, collect);
    ASSERT_EQ(source.Check(sink, t0), Sent::kFull);
    EXPECT_EQ(sink.messages.back().type, protocol::MessageType::kInventory);
    EXPECT_EQ(sink.Last().at("kind").as_string(), "full");
    EXPECT_EQ(sink.Last().at("inventory"), current);
    EXPECT_EQ(sink.Last().at("sha256").as_string(), InventoryHash(current));

    EXPECT_EQ(source.Check(sink, t0 + 60'000), Sent::kNothing);

    const auto before = current;
    current["packages"].as_object()["b"] = "3";
    current["packages"].as_object().erase("a");
    sink.refuse = true;
    EXPECT_EQ(source.Check(sink, t0 + 120'000), Sent::kFailed);
    sink.refuse = false;
    ASSERT_EQ(source.Check(sink, t0 + 180'000), Sent::kDelta);  // not lost by the refusal
    const auto delta = sink.Last();
    EXPECT_EQ(delta.at("kind").as_string(), "delta");
    EXPECT_EQ(json::serialize(delta.at("changed")), R"({"packages":{"b":"3"}})");
    EXPECT_EQ(json::serialize(delta.at("removed")), R"([["packages","a"]])");
    EXPECT_EQ(delta.at("base_sha256").as_string(), InventoryHash(before));
    EXPECT_EQ(delta.at("sha256").as_string(), InventoryHash(current));
    EXPECT_EQ(source.Check(sink, t0 + 240'000), Sent::kNothing);
  }
  // A restart neither resends the full report nor the delta.
  InventorySource restarted(options, **queue, collect);
  EXPECT_EQ(restarted.Check(sink, t0 + 300'000), Sent::kNothing);
  // A change made while the agent was down is found.
  current["os"].as_object()["id"] = "ubuntu";
  EXPECT_EQ(restarted.Check(sink, t0 + 360'000), Sent::kDelta);
  // The full report is due an interval after the last full one (within half a check).
  EXPECT_EQ(restarted.Check(sink, t0 + 3'600'000 - 20'000), Sent::kFull);
  EXPECT_EQ(restarted.Check(sink, t0 + 3'600'000 + 60'000), Sent::kNothing);
  // "Send inventory now".
  EXPECT_EQ(restarted.Check(sink, t0 + 3'600'000 + 120'000, /*force_full=*/true), Sent::kFull);
  EXPECT_EQ(sink.messages.size(), 5u);
}

TEST(RunBounded, OutputDeadlineAndLimits) {
  auto echo = RunBounded({"/bin/echo", "hello"}, 1024, 5s);
  ASSERT_TRUE(echo) << echo.error().message();
  EXPECT_EQ(*echo, "hello\n");
  const auto started = std::chrono::steady_clock::now();
  auto slow = RunBounded({"/bin/sleep", "10"}, 1024, 200ms);
  EXPECT_FALSE(slow);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  auto chatty = RunBounded({"/usr/bin/yes"}, 64 * 1024, 5s);
  EXPECT_FALSE(chatty);
  EXPECT_FALSE(RunBounded({"/bin/false"}, 1024, 5s));
  EXPECT_FALSE(RunBounded({"/nonexistent/program"}, 1024, 5s));
}

}  // namespace
}  // namespace lifeline::agent
