// The relay queue: durable, oldest first, bounded, deferrals, and what it holds survives a reopen.
#include "gateway/relay_queue.h"

#include "support/temp_dir.h"

#include <gtest/gtest.h>

namespace lifeline::gateway {
namespace {

TEST(RelayQueueTest, OldestFirstRemoveAndDefer) {
  testing::TempDir dir;
  auto queue = RelayQueue::Open(dir / "relay.db", 1 << 20);
  ASSERT_TRUE(queue);
  auto& q = **queue;
  auto first = q.Add("A/s/1", "CERT1", std::string("sealed\0one", 10), 1000);
  auto second = q.Add("A/s/2", "CERT2", "sealed-two", 2000);
  ASSERT_TRUE(first && second);
  EXPECT_LT(*first, *second);
  EXPECT_EQ(q.Count(), 2);
  auto next = q.NextDue(5000);
  ASSERT_TRUE(next && *next);
  EXPECT_EQ((*next)->id, *first);
  EXPECT_EQ((*next)->body, std::string("sealed\0one", 10));  // bytes exactly as they came
  EXPECT_EQ((*next)->device_cert_pem, "CERT1");
  EXPECT_EQ((*next)->received_at_ms, 1000);

  // A deferred batch lets the next one go first, until it is due again.
  ASSERT_TRUE(q.Defer(*first, 9000));
  next = q.NextDue(5000);
  ASSERT_TRUE(next && *next);
  EXPECT_EQ((*next)->id, *second);
  auto earliest = q.EarliestDue();
  ASSERT_TRUE(earliest && *earliest);
  EXPECT_EQ(**earliest, 0);
  ASSERT_TRUE(q.Remove(*second));
  next = q.NextDue(5000);
  ASSERT_TRUE(next);
  EXPECT_FALSE(*next);
  next = q.NextDue(9000);
  ASSERT_TRUE(next && *next);
  EXPECT_EQ((*next)->attempts, 1);
  ASSERT_TRUE(q.Remove(*first));
  ASSERT_TRUE(q.Remove(*first));  // unknown ids are fine
  EXPECT_EQ(q.Count(), 0);
  EXPECT_EQ(q.Bytes(), 0);
}

TEST(RelayQueueTest, BoundedAndDurableAcrossReopen) {
  testing::TempDir dir;
  {
    auto queue = RelayQueue::Open(dir / "relay.db", 1000);
    ASSERT_TRUE(queue);
    ASSERT_TRUE((*queue)->Add("A/s/1", "C", std::string(600, 'x'), 1));
    auto full = (*queue)->Add("A/s/1", "C", std::string(600, 'y'), 2);
    ASSERT_FALSE(full);
    EXPECT_EQ(full.error(), std::errc::no_buffer_space);
    ASSERT_TRUE((*queue)->Add("A/s/2", "C", std::string(100, 'z'), 3));
  }
  auto reopened = RelayQueue::Open(dir / "relay.db", 1000);
  ASSERT_TRUE(reopened);
  EXPECT_EQ((*reopened)->Count(), 2);
  EXPECT_EQ((*reopened)->Bytes(), 600 + 1 + 5 + 100 + 1 + 5);
  auto next = (*reopened)->NextDue(10);
  ASSERT_TRUE(next && *next);
  EXPECT_EQ((*next)->body, std::string(600, 'x'));
  // Still bounded after the reopen.
  EXPECT_FALSE((*reopened)->Add("A/s/3", "C", std::string(400, 'w'), 4));
}

}  // namespace
}  // namespace lifeline::gateway
