// lifeline-agent: the device agent's resident process, on its own. It runs the same code as
// `lifeline agent run` but links only what watching and queueing need (no TLS, HTTP client, home or CLI
// tree), so an idle agent stays within a few MiB; it starts `lifeline agent send` (the full binary, found
// beside this one) only while there is something to send. See docs/architecture.md, "Agent processes".
// The command line is parsed by hand: it has three options, and CLI11 would add to every start.
#include "cli/agent_run.h"
#include "cli/commands.h"
#include "cli/subprocess.h"
#include "common/log.h"

#include <malloc.h>

#include <iostream>
#include <string>
#include <string_view>

namespace {

constexpr std::string_view kUsage =
    "lifeline-agent: the Lifeline device agent (watch logs and checks, queue durably, send home)\n"
    "usage: lifeline-agent run --config agent.toml [--sender PATH] [--log-format text|json] [--log-level LEVEL]\n"
    "       lifeline-agent --help | --version\n"
    "  --config      the agent's configuration (`lifeline agent run --help-config` lists every key)\n"
    "  --sender      the lifeline binary that sends the queue home (default: `lifeline` beside this program)\n"
    "  --log-format  text (default) or json (one object per line)\n"
    "  --log-level   trace, debug, info (default), warn, error\n"
    "Enroll, status, review and check are `lifeline agent ...` commands of the full binary.\n";

}  // namespace

int main(int argc, char** argv) {
  using namespace lifeline;
  // glibc gives each thread that allocates its own arena (each touching at least a few hundred KiB);
  // the agent's threads allocate little and rarely at once, so one shared arena costs nothing in speed.
  ::mallopt(M_ARENA_MAX, 1);
  std::vector<std::string_view> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << kUsage;
    return args.empty() ? cli::kExitUsage : cli::kExitOk;
  }
  if (args[0] == "--version") {
    std::cout << "lifeline-agent " << LIFELINE_VERSION << "\n";
    return cli::kExitOk;
  }
  if (args[0] != "run") {
    std::cerr << "lifeline-agent: unknown command '" << args[0] << "'\n" << kUsage;
    return cli::kExitUsage;
  }
  std::string config;
  cli::SenderCommand sender{.lifeline = cli::SelfExecutable().parent_path() / "lifeline"};
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string_view option = args[i];
    if (option == "--help" || option == "-h") {
      std::cout << kUsage;
      return cli::kExitOk;
    }
    if (i + 1 >= args.size()) {
      std::cerr << "lifeline-agent: " << option << (option.starts_with("--") ? " needs a value\n" : ": unknown option\n")
                << kUsage;
      return cli::kExitUsage;
    }
    const std::string value(args[++i]);
    if (option == "--config") {
      config = value;
    } else if (option == "--sender") {
      sender.lifeline = std::filesystem::absolute(value);
    } else if (option == "--log-format" && (value == "text" || value == "json")) {
      sender.log_format = value;
    } else if (option == "--log-level" &&
               (value == "trace" || value == "debug" || value == "info" || value == "warn" || value == "error")) {
      sender.log_level = value;
    } else {
      std::cerr << "lifeline-agent: bad option " << option << " " << value << "\n" << kUsage;
      return cli::kExitUsage;
    }
  }
  if (config.empty()) {
    std::cerr << "lifeline-agent run: --config is required\n";
    return cli::kExitUsage;
  }
  log::Format format = log::Format::kText;
  log::ParseFormat(sender.log_format, &format);
  log::Init(format, spdlog::level::from_str(sender.log_level));
  return cli::RunAgentProcess(config, sender, "lifeline-agent");
}
