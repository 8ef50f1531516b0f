#include "cli/commands.h"

#include "common/ports.h"

#include <CLI/CLI.hpp>

#include <iostream>

namespace lifeline::cli {

int Run(int argc, char** argv) {
  CLI::App app{"Lifeline: secure call-home and remote support"};
  app.set_version_flag("--version", std::string("lifeline ") + LIFELINE_VERSION);
  auto* ports_cmd = app.add_subcommand("ports", "Print the port usage guide");
  bool markdown = false;
  ports_cmd->add_flag("--markdown", markdown, "Print Markdown (docs/ports.md is exactly this)");
  app.require_subcommand(1);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  if (ports_cmd->parsed()) {
    std::cout << (markdown ? ports::RenderPortGuideMarkdown() : ports::RenderPortGuideText());
  }
  return kExitOk;
}

}  // namespace lifeline::cli
