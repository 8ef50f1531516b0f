// `lifeline demo --dir D --for 30` runs the whole system, exits 0 and leaves emails under D/mail/: the
// home's ticket emails and the policy manager's approval request for the demo's remote session.
#include "support/harness.h"

#include <gtest/gtest.h>

namespace lifeline::testing {
namespace {

TEST(Demo, BoundedRunLeavesEmailsAndASummary) {
  TempDir dir;
  auto result = RunLifeline({"demo", "--dir", (dir / "demo").string(), "--for", "30"}, std::chrono::seconds(120));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("Summary: 3 devices"), std::string::npos) << result.output;
  // The agents send through the demo's gateway, and a remote session reaches the first array's console.
  EXPECT_NE(result.output.find("Remote session: fetched "), std::string::npos) << result.output;
  EXPECT_NE(ReadFile(dir / "demo" / "logs" / "gateway.log").find("delivered to the home"), std::string::npos);
  // The session waited for approval under the policy manager's Ask for Approval rule: the approvers
  // got an email, and carol approved with the CLI before the session opened.
  EXPECT_NE(result.output.find("Approval: session "), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("approved by carol"), std::string::npos) << result.output;
  int emails = 0;
  int approvals = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir / "demo" / "mail")) {
    if (entry.path().extension() == ".eml") {
      const std::string text = ReadFile(entry.path());
      if (text.find("Approval needed") != std::string::npos) {
        ++approvals;
        EXPECT_NE(text.find("SN41000"), std::string::npos) << text;
        EXPECT_NE(text.find("DEMO-1"), std::string::npos) << text;
        continue;
      }
      ++emails;
      EXPECT_NE(text.find("LL-"), std::string::npos) << text;
    }
  }
  EXPECT_GE(emails, 1);
  EXPECT_EQ(approvals, 1);
  const std::string policy_log = ReadFile(dir / "demo" / "logs" / "policy.log");
  EXPECT_FALSE(policy_log.empty());
  // The guide tells where things are.
  EXPECT_NE(result.output.find("tickets --home"), std::string::npos) << result.output;
}

TEST(Demo, RefusesANonEmptyDirectory) {
  TempDir dir;
  WriteFile(dir / "something", "x");
  auto result = RunLifeline({"demo", "--dir", dir.path().string(), "--for", "5"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.output.find("not empty"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace lifeline::testing
