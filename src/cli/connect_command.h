#pragma once
// `lifeline connect`: an engineer's remote session to a device's application through its gateway.
#include "cli/admin_client.h"

#include <CLI/CLI.hpp>

#include <string>

namespace lifeline::cli {

struct ConnectOptions {
  AdminConnection connection;
  std::string device;        // serial, or customer/site/serial
  std::string app;           // "ssh", "https", ... as registered at the gateway
  std::string listen = "127.0.0.1:0";
  std::string reason;        // "SR-1234: replace disk 3"
  std::string service_request;  // "SR-1234": shown to approvers when the customer's policy asks for approval
  std::string sessions_url;  // wss://host:port; default: the --home host on the port the home names
};

CLI::App* AddConnectCommand(CLI::App& app, ConnectOptions& options);
int RunConnect(const ConnectOptions& options);

}  // namespace lifeline::cli
