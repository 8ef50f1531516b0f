// lifeline: one binary, a subcommand per role. This file only wires subcommands together.
#include "cli/commands.h"

int main(int argc, char** argv) { return lifeline::cli::Run(argc, argv); }
