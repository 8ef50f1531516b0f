#pragma once
// `lifeline agent send`: the sending half of the agent, started by the agent's resident process (see
// sender_process.h) and never by hand. It sends the queue home until the queue has stayed empty for
// kIdleExit, backing off with jitter while the home cannot be reached (it never gives up while there is
// data), and acts on the instructions in the home's replies.
#include "agent/agent_config.h"

#include <chrono>

namespace lifeline::agent {

struct SendServiceOptions {
  int wake_fd = 0;   // a byte per "work queued"; end of file: the agent has gone, stop
  int event_fd = 3;  // lines for the agent: "inventory", "reload"
  std::chrono::milliseconds idle_exit{std::chrono::seconds(10)};
};

/// Runs until the queue has been empty for `idle_exit`, the agent goes away or a reload was staged.
/// Returns the process exit status: 0 when it ended normally, 1 when it could not start (e.g. the device
/// is not enrolled).
int RunSendService(const AgentConfig& config, const SendServiceOptions& options);

}  // namespace lifeline::agent
