#pragma once
// `lifeline tickets list|show|ack|resolve|close|reopen|note|assign`: tickets through the home's admin
// API (docs/api.md); what a token may change depends on its role.
#include "cli/admin_client.h"

#include <CLI/CLI.hpp>

#include <string>

namespace lifeline::cli {

struct TicketsOptions {
  AdminConnection connection;
  std::string state = "all";
  std::string status;
  std::string customer;
  std::string site;
  std::string serial;
  std::string code;
  std::string assignee;
  int limit = 50;
  std::string number;
  std::string text;  // a note, the engineer to assign, or the note with a change
};

CLI::App* AddTicketsCommand(CLI::App& app, TicketsOptions& options);
int RunTicketsCommand(CLI::App& command, const TicketsOptions& options);

}  // namespace lifeline::cli
