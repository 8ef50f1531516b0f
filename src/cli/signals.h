#pragma once
// Daemons stop on SIGINT or SIGTERM. The signals are blocked in every thread (call BlockStopSignals
// before starting any) and the main thread waits for them synchronously: no handler, no async-signal
// safety concerns.
#include <chrono>
#include <optional>

namespace lifeline::cli {

void BlockStopSignals();
/// Waits for SIGINT or SIGTERM, at most `timeout` when given; returns the signal, or nullopt on timeout.
std::optional<int> WaitForStopSignal(std::optional<std::chrono::milliseconds> timeout = std::nullopt);

}  // namespace lifeline::cli
