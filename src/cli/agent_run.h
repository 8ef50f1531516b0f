#pragma once
// The agent's resident process, shared by `lifeline agent run` and the small `lifeline-agent run`: starts
// the AgentService, applies configurations from home when the sender staged one, stops on SIGINT/SIGTERM.
#include <filesystem>
#include <string>
#include <string_view>

namespace lifeline::cli {

/// The executable that sends (`<lifeline> agent send`), with the log options this process runs with.
struct SenderCommand {
  std::filesystem::path lifeline;  // absolute
  std::string log_format = "text";
  std::string log_level = "info";
};

/// Runs the agent until a stop signal; returns the process exit code.
int RunAgentProcess(const std::string& config_path, const SenderCommand& sender, std::string_view program);

}  // namespace lifeline::cli
