#include "common/clock.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <string>

namespace lifeline {

std::string FormatRfc3339(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::time_point_cast<std::chrono::milliseconds>(t);
  const auto secs = std::chrono::time_point_cast<std::chrono::seconds>(ms);
  const auto millis = (ms - secs).count();
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03d}Z", fmt::gmtime(std::chrono::system_clock::to_time_t(secs)),
                     static_cast<int>(millis));
}

}  // namespace lifeline
