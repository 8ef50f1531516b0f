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
    // Port 0 stands for the device's own registered ports (gateway to managed device).
    if (use.port == 0) {
      EXPECT_NE(use.to.find("device"), std::string_view::npos);
    }
  }
}

TEST(PortGuide, TextGuideListsEveryPort) {
  const std::string text = RenderPortGuideText();
  for (const auto& use : All()) {
    const std::string shown = use.port == 0 ? "registered per device" : std::to_string(use.port) + " (TCP)";
    EXPECT_NE(text.find(shown), std::string::npos) << use.port;
  }
}

}  // namespace
}  // namespace lifeline::ports
