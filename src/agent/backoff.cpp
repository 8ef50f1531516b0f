#include "agent/backoff.h"

#include <algorithm>
#include <cstdint>

namespace lifeline::agent {

std::chrono::milliseconds RetryDelay(int attempt, std::chrono::milliseconds min, std::chrono::milliseconds max,
                                     std::mt19937_64& random) {
  const int shift = std::min(attempt, 30);
  const auto ceiling = std::min<std::int64_t>(max.count(), min.count() << shift);
  std::uniform_int_distribution<std::int64_t> pick(0, std::max<std::int64_t>(ceiling, 100));
  return std::chrono::milliseconds(std::max<std::int64_t>(pick(random), 100));
}

}  // namespace lifeline::agent
