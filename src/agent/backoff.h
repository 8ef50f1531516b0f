#pragma once
// Retry delays shared by the sender (a home that does not answer) and the agent (a sender process that
// failed): exponential backoff with full jitter, so a fleet that lost its home does not come back in step.
#include <chrono>
#include <random>

namespace lifeline::agent {

/// Delay before retry number `attempt` (0-based): uniformly random in [0, min(max, min * 2^attempt)]
/// ("full jitter"), never below 100 ms so a dead home is not hammered.
std::chrono::milliseconds RetryDelay(int attempt, std::chrono::milliseconds min, std::chrono::milliseconds max,
                                     std::mt19937_64& random);

}  // namespace lifeline::agent
