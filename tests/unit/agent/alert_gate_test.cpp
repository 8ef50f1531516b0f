#include "agent/alert_gate.h"

#include "support/fake_clock.h"

#include <gtest/gtest.h>

namespace lifeline::agent {
namespace {

using std::chrono::seconds;

TEST(AlertGate, DefaultsSendEveryOccurrence) {
  testing::FakeClock clock;
  AlertGate gate(clock);
  const GateOptions options;
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(gate.Admit("A", options));
  }
  EXPECT_EQ(gate.below_count(), 0u);
  EXPECT_EQ(gate.over_cap(), 0u);
}

TEST(AlertGate, MinCountWithinTheWindow) {
  testing::FakeClock clock;
  AlertGate gate(clock);
  const GateOptions options{.min_count = 3, .window = seconds(60)};
  EXPECT_FALSE(gate.Admit("A", options));
  clock.Advance(seconds(10));
  EXPECT_FALSE(gate.Admit("A", options));
  clock.Advance(seconds(55));  // the first occurrence left the window: two remain
  EXPECT_FALSE(gate.Admit("A", options));
  clock.Advance(seconds(1));
  EXPECT_TRUE(gate.Admit("A", options));  // three within 60 s
  EXPECT_FALSE(gate.Admit("B", options));  // keys count apart
  EXPECT_EQ(gate.below_count(), 4u);
}

TEST(AlertGate, MaxPerWindowCapsRepeats) {
  testing::FakeClock clock;
  AlertGate gate(clock);
  const GateOptions options{.min_count = 1, .window = seconds(60), .max_per_window = 2};
  EXPECT_TRUE(gate.Admit("A", options));
  EXPECT_TRUE(gate.Admit("A", options));
  EXPECT_FALSE(gate.Admit("A", options));
  EXPECT_FALSE(gate.Admit("A", options));
  EXPECT_EQ(gate.over_cap(), 2u);
  clock.Advance(seconds(61));
  EXPECT_TRUE(gate.Admit("A", options));
}

TEST(AlertGate, ClearsAreDueOnceAfterAnAlertOrWhenNothingIsKnown) {
  testing::FakeClock clock;
  AlertGate gate(clock);
  EXPECT_TRUE(gate.ShouldClear("A"));  // fresh start: an alert may predate it
  gate.MarkCleared("A");
  EXPECT_FALSE(gate.ShouldClear("A"));  // no second clear in a row
  ASSERT_TRUE(gate.Admit("A", {}));
  gate.MarkAlerted("A");
  EXPECT_TRUE(gate.IsAlerted("A"));
  EXPECT_TRUE(gate.ShouldClear("A"));
  gate.MarkCleared("A");
  EXPECT_FALSE(gate.IsAlerted("A"));
}

TEST(AlertGate, ClearRestartsTheCount) {
  testing::FakeClock clock;
  AlertGate gate(clock);
  const GateOptions options{.min_count = 2, .window = seconds(60)};
  EXPECT_FALSE(gate.Admit("A", options));
  gate.MarkCleared("A");
  EXPECT_FALSE(gate.Admit("A", options));
  EXPECT_TRUE(gate.Admit("A", options));
  gate.ResetCount("A");
  EXPECT_FALSE(gate.Admit("A", options));
}

TEST(AlertGate, TracksABoundedNumberOfKeys) {
  testing::FakeClock clock;
  AlertGate gate(clock, 100);
  ASSERT_TRUE(gate.Admit("kept", {}));
  gate.MarkAlerted("kept");
  for (int i = 0; i < 10000; ++i) {
    clock.Advance(std::chrono::milliseconds(1));
    EXPECT_TRUE(gate.Admit("code-" + std::to_string(i), {}));
  }
  EXPECT_TRUE(gate.IsAlerted("kept"));  // alerted conditions are forgotten last
}

}  // namespace
}  // namespace lifeline::agent
