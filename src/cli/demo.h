#pragma once
// `lifeline demo`: the whole system on one machine, in one directory, with no prior set-up.
#include <CLI/CLI.hpp>

#include <string>

namespace lifeline::cli {

struct DemoOptions {
  std::string dir;      // empty: a new directory under /tmp
  int seconds = 0;      // 0: until Ctrl-C
  int devices = 3;
};

CLI::App* AddDemoCommand(CLI::App& app, DemoOptions& options);
int RunDemo(const DemoOptions& options);

}  // namespace lifeline::cli
