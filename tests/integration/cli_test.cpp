// The binary's contract: --help on every level, --version, exit codes (0 ok, 1 runtime failure,
// 2 usage or configuration error), config errors that name the key and the file, JSON logs.
#include "support/harness.h"

#include <gtest/gtest.h>

namespace lifeline::testing {
namespace {

TEST(Cli, HelpOnEveryLevel) {
  const std::vector<std::vector<std::string>> commands = {
      {"--help"},
      {"ports", "--help"},
      {"pki", "--help"},
      {"pki", "init", "--help"},
      {"home", "--help"},
      {"home", "run", "--help"},
      {"home", "enroll-token", "--help"},
      {"home", "admin-token", "--help"},
      {"agent", "--help"},
      {"agent", "run", "--help"},
      {"agent", "enroll", "--help"},
      {"agent", "status", "--help"},
      {"tickets", "--help"},
      {"tickets", "list", "--help"},
      {"tickets", "show", "--help"},
      {"demo", "--help"},
  };
  for (const auto& args : commands) {
    auto result = RunLifeline(args);
    EXPECT_EQ(result.exit_code, 0) << args[0] << ": " << result.output;
    EXPECT_NE(result.output.find("Usage"), std::string::npos) << args[0] << ": " << result.output;
  }
}

TEST(Cli, Version) {
  auto result = RunLifeline({"--version"});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_NE(result.output.find("lifeline 0."), std::string::npos) << result.output;
}

TEST(Cli, UsageErrorsExitTwo) {
  EXPECT_EQ(RunLifeline({}).exit_code, 2);
  EXPECT_EQ(RunLifeline({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(RunLifeline({"ports", "--no-such-flag"}).exit_code, 2);
  EXPECT_EQ(RunLifeline({"home", "run"}).exit_code, 2);
  EXPECT_EQ(RunLifeline({"tickets", "list"}).exit_code, 2);  // no admin token given
}

TEST(Cli, ConfigErrorsNameKeyAndFileAndExitTwo) {
  TempDir dir;
  WriteFile(dir / "home.toml", "[listen]\ningest = \"127.0.0.1:0\"\nadmn = \"x\"\n");
  auto unknown = RunLifeline({"home", "run", "--config", (dir / "home.toml").string()});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.output.find("listen.admn"), std::string::npos) << unknown.output;
  EXPECT_NE(unknown.output.find((dir / "home.toml").string()), std::string::npos) << unknown.output;

  WriteFile(dir / "agent.toml",
            "[device]\ncustomer=\"a\"\nsite=\"b\"\nserial=\"c\"\n[send]\nbatch_size = 5000\n");
  auto range = RunLifeline({"agent", "status", "--config", (dir / "agent.toml").string()});
  EXPECT_EQ(range.exit_code, 2);
  EXPECT_NE(range.output.find("send.batch_size"), std::string::npos) << range.output;
  EXPECT_NE(range.output.find("out of range"), std::string::npos) << range.output;

  auto missing = RunLifeline({"home", "run", "--config", (dir / "nope.toml").string()});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("nope.toml"), std::string::npos) << missing.output;
}

TEST(Cli, SecretFromEnvironmentVariableThatIsUnsetIsAConfigError) {
  TempDir dir;
  WriteFile(dir / "home.toml", "[smtp]\npassword_env = \"LIFELINE_TEST_SURELY_UNSET\"\n");
  auto result = RunLifeline({"home", "run", "--config", (dir / "home.toml").string()});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.output.find("smtp.password_env"), std::string::npos) << result.output;
}

TEST(Cli, RuntimeFailureExitsOne) {
  TempDir dir;
  // A valid config whose PKI directory does not exist: the home cannot start.
  WriteFile(dir / "home.toml", "[listen]\ningest = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\ntunnel = \"127.0.0.1:0\"\nsessions = \"127.0.0.1:0\"\n[pki]\ndir = \"" +
                                   (dir / "missing").string() + "\"\n[store]\npath = \"" + (dir / "h.db").string() +
                                   "\"\n");
  auto result = RunLifeline({"--log-format", "json", "home", "run", "--config", (dir / "home.toml").string()});
  EXPECT_EQ(result.exit_code, 1) << result.output;
  // JSON log lines: one object per line with level and message.
  EXPECT_NE(result.output.find("{\"time\":"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("\"level\":\"error\""), std::string::npos) << result.output;
}

TEST(Cli, PkiInitWritesPrivateKeysOwnerOnlyAndRefusesToOverwrite) {
  TempDir dir;
  auto made = RunLifeline({"pki", "init", "--dir", (dir / "pki").string()});
  ASSERT_EQ(made.exit_code, 0) << made.output;
  for (const char* key : {"ca.key", "home.key", "home-seal.key", "home-sign.key"}) {
    const auto perms = std::filesystem::status(dir / "pki" / key).permissions();
    EXPECT_EQ(perms & std::filesystem::perms::all, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write)
        << key;
  }
  EXPECT_EQ(RunLifeline({"pki", "init", "--dir", (dir / "pki").string()}).exit_code, 1);
}

TEST(Cli, PortsGuideListsTheIngestPort) {
  auto result = RunLifeline({"ports"});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_NE(result.output.find("9455 (TCP)"), std::string::npos) << result.output;
  auto markdown = RunLifeline({"ports", "--markdown"});
  EXPECT_EQ(markdown.output, ReadFile(std::string(LIFELINE_SOURCE_DIR) + "/docs/ports.md"));
}

}  // namespace
}  // namespace lifeline::testing
