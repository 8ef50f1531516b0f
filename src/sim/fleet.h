#pragma once
// What a simulated fleet looks like: the identities of its devices (generated from an index, so a
// second run names the same devices) and the alerts they raise (a small catalogue of array-vendor
// codes; some repeat, some clear themselves). Pure values, no I/O.
#include "protocol/message.h"

#include <chrono>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>

namespace lifeline::sim {

/// How devices are named. Device i is at site i % sites; sites belong to customers round robin.
struct FleetShape {
  std::string prefix = "SIM";  // starts every customer name and serial: separates simulator runs
  std::uint32_t devices = 100;
  std::uint32_t customers = 1;
  std::uint32_t sites = 10;
};

/// Device `index` (0-based) of `shape`: customer "<prefix>-CUST-01", site "<prefix>-site-0001",
/// serial "<prefix>-000001", model from a short list. Precondition: index < shape.devices.
protocol::DeviceIdentity DeviceAt(const FleetShape& shape, std::uint32_t index);

/// One kind of alert a simulated device raises.
struct CatalogueEntry {
  std::string_view code;
  protocol::Severity severity;
  std::string_view text;
  /// How many times it is sent in a row (1 s apart): above 1 it adds occurrences to one ticket.
  int repeats = 1;
  /// When above zero, the device sends a clear for the code this long after the last repeat.
  std::chrono::seconds clears_after{0};
  int weight = 1;  // relative frequency among random picks
};

/// The fixed catalogue (8 entries: critical, error and warning; two clear, two repeat; warnings are
/// recorded without a ticket at the home's default ticket_min_severity).
std::span<const CatalogueEntry> Catalogue();
/// A weighted random pick from Catalogue().
const CatalogueEntry& PickAlert(std::mt19937_64& random);

/// A message id as agents make them: 48 bits of Unix milliseconds, then 80 random bits (32 hex).
std::string MessageId(std::int64_t now_ms, std::mt19937_64& random);

/// Message builders; `sequence` increases per device.
protocol::Message MakeHeartbeat(std::int64_t now_ms, std::uint64_t sequence, std::int64_t interval_seconds,
                                std::mt19937_64& random);
protocol::Message MakeAlert(std::int64_t now_ms, std::uint64_t sequence, const CatalogueEntry& entry,
                            std::mt19937_64& random);
protocol::Message MakeClear(std::int64_t now_ms, std::uint64_t sequence, std::string_view code,
                            std::mt19937_64& random);

}  // namespace lifeline::sim
