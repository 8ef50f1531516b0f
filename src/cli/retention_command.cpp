#include "cli/retention_command.h"

#include "common/clock.h"
#include "home/home_config.h"
#include "home/home_service.h"
#include "home/retention_job.h"

#include <fmt/format.h>

#include <iostream>

namespace lifeline::cli {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

std::string Time(std::int64_t ms) {
  return ms <= 0 ? std::string("-")
                 : FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(ms)));
}

}  // namespace

CLI::App* AddRetentionCommand(CLI::App& home_cmd, RetentionOptions& options) {
  auto* cmd = home_cmd.add_subcommand(
      "retention", "Show what the retention job deletes next ([retention] in home.toml), or run it now");
  cmd->add_option("--config", options.config, "home.toml")->required();
  cmd->add_flag("--dry-run", options.dry_run, "Only show, per kind of data, the cutoff and the rows that would go");
  return cmd;
}

int RunRetentionCommand(const RetentionOptions& options) {
  home::HomeConfig config;
  try {
    config = home::HomeConfig::Load(options.config);
  } catch (const config::ConfigError& e) {
    std::cerr << "lifeline: " << e.what() << "\n";
    return kExitUsage;
  }
  auto store = home::OpenHomeStore(config);
  if (!store) {
    return kExitFailure;
  }
  home::RetentionJob job(**store, SystemClock::Instance(), config.retention, config.max_clock_skew);
  if (options.dry_run) {
    auto preview = job.Preview();
    if (!preview) {
      std::cerr << "lifeline: cannot read the store: " << preview.error().message() << "\n";
      return kExitFailure;
    }
    std::cout << home::FormatRetentionItems(preview->items, /*preview=*/true);
    std::cout << fmt::format("\nlast run: {} ({}){}\nnext run: {}\n", Time(preview->job.last_finished_ms),
                             preview->job.last_result.empty() ? "never" : preview->job.last_result,
                             preview->job.holder.empty() ? "" : " by " + preview->job.holder,
                             config.retention.enabled ? Time(preview->next_run_ms) : "never (retention.enabled = false)");
    return kExitOk;
  }
  auto ran = job.RunNow();
  if (!ran) {
    if (ran.error() == store::Errc::kConflict) {
      std::cerr << "lifeline: a home is running the retention job right now; try again later\n";
    } else {
      std::cerr << "lifeline: the retention run failed: " << ran.error().message() << "\n";
    }
    return kExitFailure;
  }
  std::cout << home::FormatRetentionItems(*ran, /*preview=*/false);
  return kExitOk;
}

}  // namespace lifeline::cli
