#pragma once

namespace lifeline::cli {

/// Exit codes shared by every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // runtime failure
inline constexpr int kExitUsage = 2;    // usage or configuration error

/// Parses the command line and runs the chosen subcommand; returns the process exit code.
int Run(int argc, char** argv);

}  // namespace lifeline::cli
