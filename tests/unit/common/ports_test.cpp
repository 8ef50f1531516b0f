#include "common/ports.h"

#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <set>

namespace lifeline::ports {
namespace {

// docs/ports.md is generated from the registry; this fails when someone edits one and not the other.
TEST(PortGuide, DocsMatchTheRegistry) {
  const std::string docs = testing::ReadFile(std::string(LIFELINE_SOURCE_DIR) + "/docs/ports.md");
  EXPECT_EQ(docs, RenderPortGuideMarkdown())
      << "docs/ports.md is stale: run `build/lifeline ports --markdown > docs/ports.md`";
}

TEST(PortGuide, EveryPortHasPurposeAndConfigKey) {
  for (const auto& use : All()) {
    EXPECT_FALSE(use.purpose.empty()) << use.port;
    EXPECT_FALSE(use.config_key.empty()) << use.port;
    EXPECT_GT(use.port, 0);
  }
}

TEST(PortGuide, TextGuideListsEveryPort) {
  const std::string text = RenderPortGuideText();
  for (const auto& use : All()) {
    EXPECT_NE(text.find(std::to_string(use.port) + " (TCP)"), std::string::npos) << use.port;
  }
}

}  // namespace
}  // namespace lifeline::ports
