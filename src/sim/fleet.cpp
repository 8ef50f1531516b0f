#include "sim/fleet.h"

#include <fmt/format.h>

#include <array>
#include <numeric>

namespace lifeline::sim {
namespace {

constexpr std::array<std::string_view, 4> kModels = {"VSP G900", "VSP E990", "FAS8700", "PowerStore 5000T"};

using std::chrono::seconds;
using protocol::Severity;

// Codes and texts of the kind a storage-array vendor's log rules produce.
constexpr std::array<CatalogueEntry, 8> kCatalogue = {{
    {"SIM-DRIVE-FAIL", Severity::kCritical, "Drive failure in enclosure 2 slot 7", 1, seconds(0), 2},
    {"SIM-PSU-DEGRADED", Severity::kError, "Power supply 1 degraded: input voltage low", 1, seconds(20), 3},
    {"SIM-LINK-FLAP", Severity::kError, "Host port 3 link down", 3, seconds(2), 3},
    {"SIM-TEMP-HIGH", Severity::kError, "Controller 0 temperature 71 C above threshold", 2, seconds(10), 2},
    {"SIM-CACHE-BATTERY", Severity::kCritical, "Cache backup battery failed self-test", 1, seconds(0), 1},
    {"SIM-CTRL-REBOOT", Severity::kCritical, "Controller 1 rebooted unexpectedly", 1, seconds(0), 1},
    {"SIM-FAN-SPEED", Severity::kWarning, "Fan 2 speed below threshold", 2, seconds(0), 3},
    {"SIM-REPL-LAG", Severity::kWarning, "Remote replication lag 45 s", 1, seconds(30), 2},
}};

std::string RandomHex(std::mt19937_64& random, int hex_digits) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(static_cast<std::size_t>(hex_digits), '0');
  std::uint64_t bits = 0;
  for (int i = 0; i < hex_digits; ++i) {
    if (i % 16 == 0) {
      bits = random();
    }
    out[static_cast<std::size_t>(i)] = kDigits[bits & 0xf];
    bits >>= 4;
  }
  return out;
}

}  // namespace

protocol::DeviceIdentity DeviceAt(const FleetShape& shape, std::uint32_t index) {
  const std::uint32_t sites = std::max<std::uint32_t>(shape.sites, 1);
  const std::uint32_t customers = std::max<std::uint32_t>(shape.customers, 1);
  const std::uint32_t site = index % sites;
  return protocol::DeviceIdentity{.customer = fmt::format("{}-CUST-{:02}", shape.prefix, site % customers + 1),
                                  .site = fmt::format("{}-site-{:04}", shape.prefix, site + 1),
                                  .serial = fmt::format("{}-{:06}", shape.prefix, index + 1),
                                  .model = std::string(kModels[index % kModels.size()])};
}

std::span<const CatalogueEntry> Catalogue() { return kCatalogue; }

const CatalogueEntry& PickAlert(std::mt19937_64& random) {
  static const int total = std::accumulate(kCatalogue.begin(), kCatalogue.end(), 0,
                                           [](int sum, const CatalogueEntry& e) { return sum + e.weight; });
  int pick = static_cast<int>(random() % static_cast<std::uint64_t>(total));
  for (const auto& entry : kCatalogue) {
    if (pick < entry.weight) {
      return entry;
    }
    pick -= entry.weight;
  }
  return kCatalogue.front();
}

std::string MessageId(std::int64_t now_ms, std::mt19937_64& random) {
  return fmt::format("{:012x}", static_cast<std::uint64_t>(now_ms) & 0xffffffffffffULL) + RandomHex(random, 20);
}

protocol::Message MakeHeartbeat(std::int64_t now_ms, std::uint64_t sequence, std::int64_t interval_seconds,
                                std::mt19937_64& random) {
  protocol::Message m;
  m.id = MessageId(now_ms, random);
  m.type = protocol::MessageType::kHeartbeat;
  m.sequence = sequence;
  m.timestamp_ms = now_ms;
  m.heartbeat.interval_seconds = std::max<std::int64_t>(interval_seconds, 1);
  m.heartbeat.status = "ok; simulated";
  return m;
}

protocol::Message MakeAlert(std::int64_t now_ms, std::uint64_t sequence, const CatalogueEntry& entry,
                            std::mt19937_64& random) {
  protocol::Message m;
  m.id = MessageId(now_ms, random);
  m.type = protocol::MessageType::kAlert;
  m.sequence = sequence;
  m.timestamp_ms = now_ms;
  m.alert.code = std::string(entry.code);
  m.alert.severity = entry.severity;
  m.alert.text = std::string(entry.text);
  m.alert.source = "lifeline simulate";
  return m;
}

protocol::Message MakeClear(std::int64_t now_ms, std::uint64_t sequence, std::string_view code,
                            std::mt19937_64& random) {
  protocol::Message m;
  m.id = MessageId(now_ms, random);
  m.type = protocol::MessageType::kClear;
  m.sequence = sequence;
  m.timestamp_ms = now_ms;
  m.alert.code = std::string(code);
  m.alert.severity = protocol::Severity::kInfo;
  m.alert.text = "condition cleared";
  m.alert.source = "lifeline simulate";
  return m;
}

}  // namespace lifeline::sim
