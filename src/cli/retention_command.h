#pragma once
// `lifeline home retention --config home.toml [--dry-run]`: what the retention job deletes next, or
// the job run now (home/retention_job.h).
#include <CLI/CLI.hpp>

#include <string>

namespace lifeline::cli {

struct RetentionOptions {
  std::string config;
  bool dry_run = false;
};

CLI::App* AddRetentionCommand(CLI::App& home_cmd, RetentionOptions& options);
int RunRetentionCommand(const RetentionOptions& options);

}  // namespace lifeline::cli
