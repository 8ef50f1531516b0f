#pragma once
// `lifeline tickets list|show`: reads tickets through the home's admin API.
#include <CLI/CLI.hpp>

#include <string>

namespace lifeline::cli {

struct TicketsOptions {
  std::string home_url;
  std::string ca_file;
  std::string token_file;
  std::string state = "all";
  int limit = 50;
  std::string number;
  bool json = false;
};

CLI::App* AddTicketsCommand(CLI::App& app, TicketsOptions& options);
int RunTicketsCommand(CLI::App& command, const TicketsOptions& options);

}  // namespace lifeline::cli
