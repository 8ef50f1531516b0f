#include "gateway/device_registry.h"

#include "store/sqlite/database.h"

#include "support/fake_clock.h"
#include "support/temp_dir.h"

#include <boost/json.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <malloc.h>
#include <thread>

namespace lifeline::gateway {
namespace {

DeviceSpec Spec(std::string serial, std::string address = "10.0.0.5",
                std::vector<AppPort> apps = {{"ssh", 22}, {"https", 443}}) {
  return DeviceSpec{.serial = std::move(serial), .model = "VNX5400", .address = std::move(address),
                    .apps = std::move(apps)};
}

// Heap bytes in use (glibc): resident size would hide the registry in memory the test freed before.
std::int64_t HeapInUse() { return static_cast<std::int64_t>(mallinfo2().uordblks); }

class DeviceRegistryTest : public ::testing::Test {
 protected:
  std::unique_ptr<DeviceRegistry> Open() {
    auto registry = DeviceRegistry::Open(dir_ / "gateway.db", clock_);
    EXPECT_TRUE(registry) << registry.error().message();
    return registry ? std::move(*registry) : nullptr;
  }
  testing::TempDir dir_;
  testing::FakeClock clock_;
};

TEST_F(DeviceRegistryTest, DeployLookupEditUndeploy) {
  auto registry = Open();
  ASSERT_TRUE(registry);
  const auto generation = registry->generation();
  auto deployed = registry->Deploy(Spec("APM001"), "local");
  ASSERT_TRUE(deployed) << deployed.error().message();
  EXPECT_EQ(deployed->spec.apps.front().name, "https");  // sorted by name
  EXPECT_GT(registry->generation(), generation);

  auto ssh = registry->Lookup("APM001", "ssh");
  ASSERT_TRUE(ssh);
  EXPECT_EQ(ssh->HostPort(), "10.0.0.5:22");
  EXPECT_EQ(registry->Lookup("APM001", "telnet").error(), RegistryErrc::kUnknownApplication);
  EXPECT_EQ(registry->Lookup("NOPE", "ssh").error(), RegistryErrc::kUnknownDevice);
  EXPECT_EQ(registry->Deploy(Spec("APM001"), "local").error(), RegistryErrc::kAlreadyDeployed);

  // Only the fields given change.
  auto edited = registry->Edit("APM001", DeviceEdit{.address = "fd00::5"}, "alice");
  ASSERT_TRUE(edited);
  EXPECT_EQ(edited->spec.model, "VNX5400");
  EXPECT_EQ(registry->Lookup("APM001", "https")->HostPort(), "[fd00::5]:443");
  ASSERT_TRUE(registry->Edit("APM001", DeviceEdit{.apps = std::vector<AppPort>{{"ssh", 2222}}}, "alice"));
  EXPECT_EQ(registry->Lookup("APM001", "ssh")->port, 2222);
  EXPECT_EQ(registry->Lookup("APM001", "https").error(), RegistryErrc::kUnknownApplication);
  ASSERT_TRUE(registry->Edit("APM001", DeviceEdit{.enabled = false}, "alice"));
  EXPECT_EQ(registry->Lookup("APM001", "ssh").error(), RegistryErrc::kDisabled);
  ASSERT_TRUE(registry->Edit("APM001", DeviceEdit{.enabled = true}, "alice"));

  ASSERT_TRUE(registry->Undeploy("APM001", "bob"));
  EXPECT_EQ(registry->Lookup("APM001", "ssh").error(), RegistryErrc::kUndeployed);
  EXPECT_EQ(registry->Undeploy("APM001", "bob").error(), RegistryErrc::kUndeployed);
  EXPECT_EQ(registry->Undeploy("NOPE", "bob").error(), RegistryErrc::kUnknownDevice);
  EXPECT_TRUE(registry->List().empty());
  // The refusal reasons are sentences an operator can act on.
  EXPECT_NE(std::error_code(RegistryErrc::kUnknownApplication).message().find("not registered"),
            std::string::npos);

  // Deploying an undeployed serial again starts afresh.
  ASSERT_TRUE(registry->Deploy(Spec("APM001", "apm001.site.example"), "local"));
  EXPECT_EQ(registry->Lookup("APM001", "ssh")->HostPort(), "apm001.site.example:22");
}

TEST_F(DeviceRegistryTest, HistoryRecordsEveryChangeWithActorAndBeforeAfter) {
  auto registry = Open();
  ASSERT_TRUE(registry);
  ASSERT_TRUE(registry->Deploy(Spec("A"), "local"));
  clock_.Advance(std::chrono::seconds(1));
  ASSERT_TRUE(registry->Edit("A", DeviceEdit{.model = "PowerMax"}, "alice"));
  ASSERT_TRUE(registry->Edit("A", DeviceEdit{.model = "PowerMax"}, "alice"));  // no change, no row
  ASSERT_TRUE(registry->Deploy(Spec("B"), "local"));
  ASSERT_TRUE(registry->Undeploy("A", "bob"));

  auto history = registry->History("A");
  ASSERT_TRUE(history);
  ASSERT_EQ(history->size(), 3u);
  EXPECT_EQ((*history)[0].action, "undeploy");
  EXPECT_EQ((*history)[0].actor, "bob");
  EXPECT_EQ((*history)[0].after_json, "null");
  EXPECT_EQ((*history)[1].action, "edit");
  EXPECT_EQ((*history)[1].actor, "alice");
  EXPECT_EQ(boost::json::parse((*history)[1].before_json).at("model"), "VNX5400");
  EXPECT_EQ(boost::json::parse((*history)[1].after_json).at("model"), "PowerMax");
  EXPECT_EQ((*history)[2].action, "deploy");
  EXPECT_EQ((*history)[2].before_json, "null");
  EXPECT_EQ(boost::json::parse((*history)[2].after_json).at("apps").at("ssh"), 22);
  EXPECT_LT((*history)[2].time_ms, (*history)[1].time_ms);

  auto all = registry->History("");
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 4u);
  EXPECT_EQ(registry->History("", 2)->size(), 2u);
}

TEST_F(DeviceRegistryTest, ValidationSaysWhatToFix) {
  auto registry = Open();
  ASSERT_TRUE(registry);
  const std::vector<std::pair<DeviceSpec, std::string>> bad = {
      {Spec(""), "serial"},
      {Spec("a/b"), "serial"},
      {Spec("A", ""), "address is required"},
      {Spec("A", "10.0.0.5:22"), "neither an IP address nor a host name"},
      {Spec("A", "[::1]"), "neither"},
      {Spec("A", "host_name"), "neither"},
      {Spec("A", "10.0.0.5", {}), "at least one application"},
      {Spec("A", "10.0.0.5", {{"SSH", 22}}), "a-z"},
      {Spec("A", "10.0.0.5", {{"ssh", 0}}), "1 to 65535"},
      {Spec("A", "10.0.0.5", {{"ssh", 22}, {"ssh", 2222}}), "twice"},
  };
  for (const auto& [spec, words] : bad) {
    const auto why = ValidateDeviceSpec(spec);
    EXPECT_NE(why.find(words), std::string::npos) << spec.serial << "/" << spec.address << ": " << why;
    EXPECT_EQ(registry->Deploy(spec, "local").error(), RegistryErrc::kInvalidDevice);
  }
  EXPECT_EQ(ValidateDeviceSpec(Spec("A", "::1")), "");
  EXPECT_EQ(ValidateDeviceSpec(Spec("A", "storage-1.site.example")), "");
  ASSERT_TRUE(registry->Deploy(Spec("A"), "local"));
  EXPECT_EQ(registry->Edit("A", DeviceEdit{.apps = std::vector<AppPort>{}}, "x").error(),
            RegistryErrc::kInvalidDevice);
  EXPECT_EQ(registry->Lookup("A", "ssh")->port, 22);  // unchanged after the refusal
  EXPECT_EQ(registry->History("A")->size(), 1u);

  AppPort app;
  EXPECT_EQ(ParseAppPort("https:443", &app), "");
  EXPECT_EQ(app.port, 443);
  EXPECT_NE(ParseAppPort("ssh", &app), "");
  EXPECT_NE(ParseAppPort("ssh:65536", &app), "");
  EXPECT_NE(ParseAppPort("ssh:22x", &app), "");
  EXPECT_NE(ParseAppPort("Ssh:22", &app), "");
}

TEST_F(DeviceRegistryTest, PersistsAcrossReopenWithPrivateFile) {
  {
    auto registry = Open();
    ASSERT_TRUE(registry);
    ASSERT_TRUE(registry->Deploy(Spec("A"), "local"));
    ASSERT_TRUE(registry->Deploy(Spec("B", "b.example"), "local"));
    ASSERT_TRUE(registry->Edit("B", DeviceEdit{.enabled = false}, "local"));
    ASSERT_TRUE(registry->Deploy(Spec("C"), "local"));
    ASSERT_TRUE(registry->Undeploy("C", "local"));
    const ProbeObservation seen{.serial = "A", .app = "ssh", .port = 22, .reachable = true,
                                .checked_ms = 1000, .latency_ms = 3};
    EXPECT_EQ(registry->RecordProbes(std::span(&seen, 1)).size(), 1u);
    ASSERT_TRUE(registry->PersistProbes());
  }
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "gateway.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);

  auto registry = Open();
  ASSERT_TRUE(registry);
  EXPECT_EQ(registry->size(), 2u);
  EXPECT_EQ(registry->Lookup("A", "ssh")->HostPort(), "10.0.0.5:22");
  EXPECT_EQ(registry->Lookup("B", "ssh").error(), RegistryErrc::kDisabled);
  EXPECT_EQ(registry->Lookup("C", "ssh").error(), RegistryErrc::kUndeployed);
  auto a = registry->Get("A");
  ASSERT_TRUE(a);
  ASSERT_EQ(a->probes.size(), 2u);
  EXPECT_EQ(a->probes[1].app, "ssh");
  EXPECT_EQ(a->probes[1].state, Reachability::kReachable);
  EXPECT_EQ(a->probes[0].state, Reachability::kUnknown);
  EXPECT_EQ(registry->History("")->size(), 5u);
}

TEST_F(DeviceRegistryTest, RefusesAFileFromANewerVersion) {
  {
    auto registry = Open();
    ASSERT_TRUE(registry);
  }
  {
    auto db = store::sqlite::Database::Open(dir_ / "gateway.db");
    ASSERT_TRUE(db);
    ASSERT_TRUE((*db)->Exec("PRAGMA user_version = 99"));
  }
  auto registry = DeviceRegistry::Open(dir_ / "gateway.db", clock_);
  EXPECT_FALSE(registry);
}

TEST_F(DeviceRegistryTest, ListenersHearEveryCommittedChange) {
  auto registry = Open();
  ASSERT_TRUE(registry);
  std::vector<RegistryChange> changes;
  const auto id = registry->AddListener([&](const RegistryChange& c) {
    // Listeners run without the registry's locks: looking up from one is fine.
    (void)registry->Lookup(c.serial, "ssh");
    changes.push_back(c);
  });
  ASSERT_TRUE(registry->Deploy(Spec("A"), "local"));
  ASSERT_TRUE(registry->Edit("A", DeviceEdit{.model = "x"}, "local"));
  EXPECT_FALSE(registry->Edit("A", DeviceEdit{.address = "not an address"}, "local"));
  ASSERT_TRUE(registry->Undeploy("A", "local"));
  registry->RemoveListener(id);
  ASSERT_TRUE(registry->Deploy(Spec("B"), "local"));
  ASSERT_EQ(changes.size(), 3u);
  EXPECT_EQ(changes[0].action, "deploy");
  EXPECT_EQ(changes[1].action, "edit");
  EXPECT_EQ(changes[2].action, "undeploy");
  EXPECT_LT(changes[0].generation, changes[2].generation);
  EXPECT_EQ(registry->generation(), changes[2].generation + 1);
}

TEST_F(DeviceRegistryTest, RecordProbesReportsTransitionsAndIgnoresStaleResults) {
  auto registry = Open();
  ASSERT_TRUE(registry);
  ASSERT_TRUE(registry->Deploy(Spec("A"), "local"));
  EXPECT_EQ(registry->ProbeTargets().size(), 2u);
  std::vector<ProbeObservation> sweep = {
      {.serial = "A", .app = "ssh", .port = 22, .reachable = true, .checked_ms = 1},
      {.serial = "A", .app = "https", .port = 443, .reachable = false, .checked_ms = 1, .error = "refused"},
      {.serial = "A", .app = "telnet", .port = 23, .reachable = true, .checked_ms = 1},  // not registered
      {.serial = "Z", .app = "ssh", .port = 22, .reachable = true, .checked_ms = 1}};    // not deployed
  EXPECT_EQ(registry->RecordProbes(sweep).size(), 2u);
  EXPECT_EQ(registry->RecordProbes(sweep).size(), 0u);  // same states: no transitions
  sweep[0].reachable = false;
  sweep[0].checked_ms = 2;
  auto transitions = registry->RecordProbes(sweep);
  ASSERT_EQ(transitions.size(), 1u);
  EXPECT_EQ(transitions[0].before, Reachability::kReachable);
  auto report = boost::json::parse(registry->ReachabilityJson());
  const auto& apps = report.at("devices").at(0).at("apps").as_array();
  EXPECT_EQ(apps.size(), 2u);
  EXPECT_EQ(apps[0].at("app"), "https");
  EXPECT_EQ(apps[0].at("state"), "unreachable");
  EXPECT_EQ(apps[0].at("error"), "refused");

  ASSERT_TRUE(registry->Edit("A", DeviceEdit{.enabled = false}, "local"));
  EXPECT_TRUE(registry->ProbeTargets().empty());
}

TEST_F(DeviceRegistryTest, ConcurrentLookupsDuringChanges) {
  auto registry = Open();
  ASSERT_TRUE(registry);
  ASSERT_TRUE(registry->Deploy(Spec("A"), "local"));
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      for (int i = 0; i < 200000 && !stop; ++i) {
        if (!registry->Lookup("A", "ssh")) {
          ++failures;
        }
      }
    });
  }
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(registry->Edit("A", DeviceEdit{.model = std::to_string(i)}, "local"));
    ASSERT_TRUE(registry->Deploy(Spec("X" + std::to_string(i)), "local"));
  }
  stop = true;
  for (auto& t : readers) {
    t.join();
  }
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(registry->size(), 51u);
}

TEST_F(DeviceRegistryTest, HoldsTenThousandDevices) {
  constexpr int kDevices = 10000;
  std::vector<DeviceSpec> specs;
  specs.reserve(kDevices);
  for (int i = 0; i < kDevices; ++i) {
    specs.push_back(Spec(fmt::format("SN{:06}", i), fmt::format("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
                         {{"ssh", 22}, {"https", 443}, {"mgmt", 8443}}));
  }
  {
    auto registry = Open();
    ASSERT_TRUE(registry);
    const auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(registry->DeployMany(specs, "local"));
    const auto bulk = std::chrono::steady_clock::now() - start;
    std::printf("[ measure  ] DeployMany of %d devices in one transaction: %.0f ms\n", kDevices,
                std::chrono::duration<double, std::milli>(bulk).count());
    // One by one: one transaction (one fsync) each.
    const auto one_start = std::chrono::steady_clock::now();
    constexpr int kOneByOne = 200;
    for (int i = 0; i < kOneByOne; ++i) {
      ASSERT_TRUE(registry->Deploy(Spec(fmt::format("ONE{:04}", i)), "local"));
    }
    const auto one = std::chrono::steady_clock::now() - one_start;
    std::printf("[ measure  ] Deploy one by one: %d devices in %.0f ms (%.2f ms each)\n", kOneByOne,
                std::chrono::duration<double, std::milli>(one).count(),
                std::chrono::duration<double, std::milli>(one).count() / kOneByOne);
  }
  const auto heap_before = HeapInUse();
  const auto open_start = std::chrono::steady_clock::now();
  auto registry = Open();
  ASSERT_TRUE(registry);
  const auto load = std::chrono::steady_clock::now() - open_start;
  const auto heap_after = HeapInUse();
  EXPECT_EQ(registry->size(), static_cast<std::size_t>(kDevices + 200));
  std::printf("[ measure  ] open and load of %zu devices: %.0f ms, heap +%lld KiB (%.0f bytes/device, "
              "SQLite's page cache included)\n",
              registry->size(), std::chrono::duration<double, std::milli>(load).count(),
              static_cast<long long>((heap_after - heap_before) / 1024),
              static_cast<double>(heap_after - heap_before) / static_cast<double>(registry->size()));
  EXPECT_LT(load, std::chrono::seconds(5));

  const auto lookup_start = std::chrono::steady_clock::now();
  constexpr int kLookups = 300000;
  int found = 0;
  for (int i = 0; i < kLookups; ++i) {
    const auto serial = fmt::format("SN{:06}", i % kDevices);
    auto target = registry->Lookup(serial, (i % 3 == 0) ? "mgmt" : "ssh");
    found += target ? 1 : 0;
  }
  const auto lookups = std::chrono::steady_clock::now() - lookup_start;
  EXPECT_EQ(found, kLookups);
  std::printf("[ measure  ] %d lookups: %.0f ns each\n", kLookups,
              std::chrono::duration<double, std::nano>(lookups).count() / kLookups);
  EXPECT_EQ(registry->Lookup("SN009999", "mgmt")->HostPort(), "10.0.39.15:8443");
  EXPECT_EQ(registry->Lookup("SN009999", "telnet").error(), RegistryErrc::kUnknownApplication);
  EXPECT_EQ(registry->ProbeTargets().size(), static_cast<std::size_t>(kDevices * 3 + 200 * 2));
  const auto list_start = std::chrono::steady_clock::now();
  EXPECT_EQ(registry->List().size(), static_cast<std::size_t>(kDevices + 200));
  std::printf("[ measure  ] List() of all: %.1f ms\n",
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - list_start).count());
}

}  // namespace
}  // namespace lifeline::gateway
