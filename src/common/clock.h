#pragma once
// Clock seam: production code asks a Clock for the time so tests can move it (FakeClock in tests/support).
#include <chrono>
#include <cstdint>
#include <string>

namespace lifeline {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::system_clock::time_point Now() const = 0;
  std::int64_t NowUnixSeconds() const {
    return std::chrono::duration_cast<std::chrono::seconds>(Now().time_since_epoch()).count();
  }
  std::int64_t NowUnixMillis() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Now().time_since_epoch()).count();
  }
};

class SystemClock final : public Clock {
 public:
  std::chrono::system_clock::time_point Now() const override {
    return std::chrono::system_clock::now();
  }
  /// The process-wide real clock.
  static const Clock& Instance() {
    static const SystemClock clock;
    return clock;
  }
};

/// RFC 3339 UTC timestamp with milliseconds, e.g. 2026-11-21T19:16:23.123Z.
std::string FormatRfc3339(std::chrono::system_clock::time_point t);

}  // namespace lifeline
