// HeartbeatTracker with a fake clock: when a missing heartbeat opens (not a second early, exactly
// once), when it resolves, intervals taken from each report, site grouping, restart, revocation,
// and observers racing a sweeper.
#include "home/heartbeat_tracker.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "support/fake_clock.h"

namespace lifeline::home {
namespace {

using namespace std::chrono_literals;
using Kind = HeartbeatEventKind;
using Events = std::vector<HeartbeatEvent>;

constexpr std::uint32_t kNoSite = HeartbeatTracker::kNoSite;

std::size_t Count(const Events& events, Kind kind) {
  return static_cast<std::size_t>(
      std::count_if(events.begin(), events.end(), [&](const auto& e) { return e.kind == kind; }));
}

std::set<std::uint32_t> Devices(const Events& events, Kind kind) {
  std::set<std::uint32_t> devices;
  for (const auto& e : events) {
    if (e.kind == kind) {
      devices.insert(e.device);
    }
  }
  return devices;
}

std::set<std::uint32_t> Range(std::uint32_t first, std::uint32_t end) {
  std::set<std::uint32_t> devices;
  for (std::uint32_t d = first; d < end; ++d) {
    devices.insert(d);
  }
  return devices;
}

class HeartbeatTrackerTest : public ::testing::Test {
 protected:
  // A whole second, so heartbeat times need no rounding in the expectations.
  lifeline::testing::FakeClock clock_{std::chrono::system_clock::time_point(1'780'000'000s)};
  HeartbeatTracker tracker_;

  std::int64_t Now() const { return clock_.NowUnixMillis(); }
  Events Sweep() { return tracker_.Sweep(Now()); }
  void Beat(std::uint32_t device, std::uint32_t site, std::int64_t interval = 60) {
    ASSERT_TRUE(tracker_.Observe(device, site, interval, Now()));
  }
  /// Moves the clock `seconds` on one second at a time, sweeping each second and beating `alive`
  /// (of `site`, interval 60) every 60 s; returns every event.
  Events Run(std::int64_t seconds, const std::set<std::uint32_t>& alive = {},
             std::uint32_t site = kNoSite) {
    Events all;
    for (std::int64_t i = 0; i < seconds; ++i) {
      clock_.Advance(1s);
      if (NowSeconds() % 60 == 0) {
        for (const auto device : alive) {
          Beat(device, site);
        }
      }
      const auto events = Sweep();
      all.insert(all.end(), events.begin(), events.end());
    }
    return all;
  }
  std::int64_t NowSeconds() const { return Now() / 1000; }
};

TEST_F(HeartbeatTrackerTest, OpensOnceAfterIntervalPlusGraceAndNotBefore) {
  const std::int64_t beat_ms = Now();
  Beat(1, kNoSite);  // interval 60 s, grace 300 s (grace_min)
  EXPECT_TRUE(Sweep().empty());

  EXPECT_TRUE(Run(359).empty());  // 359 s after the heartbeat: still inside interval + grace
  auto events = Run(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::kDeviceMissing);
  EXPECT_EQ(events[0].device, 1u);
  EXPECT_EQ(events[0].site, kNoSite);
  EXPECT_EQ(events[0].last_heartbeat_ms, beat_ms);
  EXPECT_EQ(events[0].deadline_ms, beat_ms + 360'000);
  EXPECT_EQ(events[0].interval_seconds, 60u);
  EXPECT_EQ(tracker_.Stats().missing_devices, 1u);

  EXPECT_TRUE(Run(3600).empty());  // reported once while the condition stands
}

TEST_F(HeartbeatTrackerTest, AHeartbeatBetweenSecondsIsGivenTheWholeInterval) {
  clock_.Advance(500ms);
  Beat(1, kNoSite);  // at x.5 s: the deadline is counted from x+1 s
  clock_.Advance(500ms);
  EXPECT_TRUE(Run(359).empty());
  clock_.Advance(500ms);  // 359.5 s after it: nothing yet
  EXPECT_TRUE(Sweep().empty());
  clock_.Advance(500ms);  // 360.0 s after x+1 s
  EXPECT_EQ(Devices(Sweep(), Kind::kDeviceMissing), std::set<std::uint32_t>{1});
}

TEST_F(HeartbeatTrackerTest, RegularHeartbeatsStayQuietAndAResumptionClosesIt) {
  EXPECT_TRUE(Run(3600, {1, 2}).empty());  // an hour of heartbeats every 60 s: nothing

  auto events = Run(400, {2});  // device 1 stops
  EXPECT_EQ(Devices(events, Kind::kDeviceMissing), std::set<std::uint32_t>{1});
  EXPECT_EQ(events.size(), 1u);

  Beat(1, kNoSite);
  events = Sweep();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::kDeviceResumed);
  EXPECT_EQ(events[0].device, 1u);
  EXPECT_EQ(events[0].last_heartbeat_ms, Now());
  EXPECT_EQ(tracker_.Stats().missing_devices, 0u);
  EXPECT_TRUE(Run(600, {1, 2}).empty());

  // A new silence is a new condition, reported again.
  events = Run(400, {2});
  EXPECT_EQ(Devices(events, Kind::kDeviceMissing), std::set<std::uint32_t>{1});
}

TEST_F(HeartbeatTrackerTest, EachReportSetsTheInterval) {
  // Device 1: 600 s (deadline +900), then at +100 s it announces 60 s: deadline +100 + 360.
  Beat(1, kNoSite, 600);
  // Device 2: 60 s (deadline +360), then at +50 s it announces 3600 s: deadline +50 + 3600 + 360.
  Beat(2, kNoSite, 60);
  EXPECT_TRUE(Sweep().empty());
  EXPECT_TRUE(Run(50).empty());
  Beat(2, kNoSite, 3600);
  EXPECT_TRUE(Run(50).empty());
  Beat(1, kNoSite, 60);
  EXPECT_TRUE(Run(359).empty());
  auto events = Run(1);  // +460
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].device, 1u);
  EXPECT_EQ(events[0].interval_seconds, 60u);

  EXPECT_TRUE(Run(4010 - 460 - 1).empty());
  events = Run(1);  // +4010
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].device, 2u);
  EXPECT_EQ(events[0].interval_seconds, 3600u);
  EXPECT_EQ(events[0].deadline_ms - events[0].last_heartbeat_ms, (3600 + 360) * 1000);
}

TEST_F(HeartbeatTrackerTest, DefaultAndClampedIntervalsAndGrace) {
  EXPECT_EQ(tracker_.GraceFor(60s), 300s);        // grace_min
  EXPECT_EQ(tracker_.GraceFor(6h), 2160s);        // 10%
  EXPECT_EQ(tracker_.GraceFor(14 * 24h), 3600s);  // grace_max

  Beat(1, kNoSite, 0);  // no interval announced: 6 h
  Beat(2, kNoSite, -5);
  Beat(3, kNoSite, 1'000'000'000'000);  // absurd: 14 days
  const std::int64_t start = Now();
  EXPECT_TRUE(Sweep().empty());
  // Sweep once a minute until an hour before the six-hour deadline, then every second.
  for (int i = 0; i < 6 * 60 - 60; ++i) {
    clock_.Advance(60s);
    ASSERT_TRUE(Sweep().empty());
  }
  auto events = Run((6 * 3600 + 2160) - (Now() - start) / 1000 - 1);
  EXPECT_TRUE(events.empty());
  events = Run(1);
  EXPECT_EQ(Devices(events, Kind::kDeviceMissing), (std::set<std::uint32_t>{1, 2}));
  EXPECT_EQ(events[0].interval_seconds, 6u * 3600);

  // 14 days plus an hour: many turns of the 4.5 h wheel.
  const std::int64_t deadline = start + (14 * 24 * 3600 + 3600) * 1000LL;
  while (Now() < deadline - 61'000) {
    clock_.Advance(60s);
    ASSERT_TRUE(Sweep().empty());
  }
  events = Run((deadline - Now()) / 1000 - 1);
  EXPECT_TRUE(events.empty());
  events = Run(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].device, 3u);
  EXPECT_EQ(events[0].interval_seconds, 14u * 24 * 3600);
}

TEST_F(HeartbeatTrackerTest, MostOfASiteSilentIsOneSiteEvent) {
  constexpr std::uint32_t kSite = 7;
  for (std::uint32_t d = 0; d < 10; ++d) {
    Beat(d, kSite);
  }
  EXPECT_TRUE(Sweep().empty());

  // Devices 0..5 fall silent together; 6..9 go on.
  auto events = Run(400, Range(6, 10), kSite);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::kSiteSilent);
  EXPECT_EQ(events[0].site, kSite);
  EXPECT_EQ(events[0].missing, 6u);
  EXPECT_EQ(events[0].tracked, 10u);
  EXPECT_EQ(tracker_.Stats().silent_sites, 1u);
  EXPECT_EQ(tracker_.Stats().missing_devices, 6u);

  // Device 6 follows while the site event stands: no event of its own.
  EXPECT_TRUE(Run(600, Range(7, 10), kSite).empty());
  EXPECT_EQ(tracker_.Stats().missing_devices, 7u);

  // 0..2 come back: 4 of 10 missing is no longer most. The site resumes; the four still missing
  // are held for site_correlation (600 s) in case they come back with their site. The three that
  // came back were never reported, so no resumption for them.
  for (std::uint32_t d = 0; d < 3; ++d) {
    Beat(d, kSite);
  }
  events = Sweep();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::kSiteResumed);
  EXPECT_EQ(events[0].missing, 4u);
  EXPECT_EQ(tracker_.Stats().held_devices, 4u);

  // 3 and 4 come back within the wait: nothing at all. 5 and 6 do not: reported when it ends.
  const std::set<std::uint32_t> back = {0, 1, 2, 3, 4, 7, 8, 9};
  events = Run(598, back, kSite);
  EXPECT_TRUE(events.empty());
  events = Run(2, back, kSite);
  EXPECT_EQ(Devices(events, Kind::kDeviceMissing), Range(5, 7));
  EXPECT_EQ(events.size(), 2u);
  EXPECT_EQ(tracker_.Stats().held_devices, 0u);

  std::set<std::uint32_t> all = Range(0, 10);
  events = Run(60, all, kSite);
  EXPECT_EQ(Devices(events, Kind::kDeviceResumed), Range(5, 7));
  EXPECT_EQ(events.size(), 2u);
  EXPECT_TRUE(Run(3600, all, kSite).empty());
}

TEST_F(HeartbeatTrackerTest, ADeadSiteIsOneSiteEventAndNoDeviceEvents) {
  // 20 devices beating every 600 s, 30 s apart, so their deadlines are spread over 600 s. The site
  // dies: the first three to fall due find nothing heard from the site since they were due, are
  // held, and make one site event; the other 17 are covered by it.
  constexpr std::uint32_t kSite = 9;
  std::map<std::uint32_t, std::int64_t> phase;
  for (std::uint32_t d = 0; d < 20; ++d) {
    phase[d] = d * 30;
  }
  Events all;
  std::int64_t died_at = 0;
  for (int i = 0; i < 3000; ++i) {
    clock_.Advance(1s);
    const bool alive = i < 1800;
    if (!alive && died_at == 0) {
      died_at = NowSeconds();
    }
    for (const auto& [device, offset] : phase) {
      if (alive && i % 600 == offset) {
        Beat(device, kSite, 600);
      }
    }
    const auto events = Sweep();
    all.insert(all.end(), events.begin(), events.end());
  }
  ASSERT_EQ(Count(all, Kind::kSiteSilent), 1u);
  EXPECT_EQ(Count(all, Kind::kDeviceMissing), 0u);
  EXPECT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].missing, 3u);
  EXPECT_EQ(all[0].tracked, 20u);
  EXPECT_EQ(all[0].last_heartbeat_ms / 1000, died_at - 30);  // device 19's last, at offset 570
  EXPECT_EQ(tracker_.Stats().missing_devices, 20u);
  EXPECT_EQ(tracker_.Stats().held_devices, 0u);

  // It comes back: the first heartbeat shows the site alive, but 20 of 20 are still missing: most
  // of it, so it stays silent until half of them have beaten.
  for (std::uint32_t d = 0; d < 10; ++d) {
    Beat(d, kSite, 600);
    EXPECT_TRUE(Sweep().empty());
  }
  Beat(10, kSite, 600);
  auto events = Sweep();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::kSiteResumed);
  // The other nine follow within the wait: no device events at all.
  for (std::uint32_t d = 11; d < 20; ++d) {
    clock_.Advance(10s);
    Beat(d, kSite, 600);
    EXPECT_TRUE(Sweep().empty());
  }
  EXPECT_EQ(tracker_.Stats().missing_devices, 0u);
}

TEST_F(HeartbeatTrackerTest, ADeadSiteWithLongIntervalsIsOneSiteEvent) {
  // 100 devices beating every 6 h, spread evenly (one every 216 s): deadlines of a dead site come
  // 216 s apart, well within the 600 s wait, so one site event, long before half of it is overdue.
  constexpr std::uint32_t kSite = 2;
  constexpr std::int64_t kInterval = 6 * 3600;
  Events all;
  for (std::int64_t i = 0; i < 2 * kInterval; ++i) {
    clock_.Advance(1s);
    if (i < kInterval + 1000 && i % 216 == 0) {
      Beat(static_cast<std::uint32_t>((i / 216) % 100), kSite, kInterval);
    }
    const auto events = Sweep();
    all.insert(all.end(), events.begin(), events.end());
  }
  ASSERT_EQ(Count(all, Kind::kSiteSilent), 1u);
  EXPECT_EQ(Count(all, Kind::kDeviceMissing), 0u);
  EXPECT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].missing, 3u);
}

TEST_F(HeartbeatTrackerTest, AHeldDeviceIsReleasedByItsSitesNextHeartbeatOrTheWait) {
  // Site 3: device 0 beats every 600 s and dies; devices 1..4 beat every 1200 s, 100 s after it, so
  // at device 0's deadline (600 + 300 s) nothing has come from the site since it was due: held.
  constexpr std::uint32_t kSite = 3;
  Beat(0, kSite, 600);
  auto events = Run(100);
  for (std::uint32_t d = 1; d < 5; ++d) {
    Beat(d, kSite, 1200);
  }
  events = Run(800);
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(tracker_.Stats().held_devices, 1u);
  EXPECT_EQ(tracker_.Stats().missing_devices, 1u);
  // Device 1 beats 400 s after device 0's deadline: the site lives, device 0 is reported at once.
  events = Run(400);
  EXPECT_TRUE(events.empty());
  Beat(1, kSite, 1200);
  events = Sweep();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::kDeviceMissing);
  EXPECT_EQ(events[0].device, 0u);
  EXPECT_EQ(tracker_.Stats().held_devices, 0u);

  // Device 0 comes back, then dies again, and this time the site stays quiet: reported when the
  // 600 s wait ends.
  Beat(0, kSite, 600);
  events = Sweep();
  EXPECT_EQ(Devices(events, Kind::kDeviceResumed), std::set<std::uint32_t>{0});
  for (std::uint32_t d = 1; d < 5; ++d) {
    Beat(d, kSite, 3000);  // next due long after device 0's deadline
  }
  events = Run(900);
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(tracker_.Stats().held_devices, 1u);
  events = Run(599);
  EXPECT_TRUE(events.empty());
  events = Run(1);
  EXPECT_EQ(Devices(events, Kind::kDeviceMissing), std::set<std::uint32_t>{0});
  EXPECT_EQ(events.size(), 1u);
}

TEST_F(HeartbeatTrackerTest, NoWaitWhenCorrelationIsOff) {
  HeartbeatTracker tracker(HeartbeatTrackerOptions{.site_correlation = 0s});
  for (std::uint32_t d = 0; d < 10; ++d) {
    ASSERT_TRUE(tracker.Observe(d, 1, 60 + d * 60, Now()));
  }
  clock_.Advance(361s);
  auto events = tracker.Sweep(Now());  // device 0 only: 1 of 10, reported at its deadline
  EXPECT_EQ(Devices(events, Kind::kDeviceMissing), std::set<std::uint32_t>{0});
}

TEST_F(HeartbeatTrackerTest, ARestoredQuietSiteStaysSilent) {
  // Site 4 went silent (3 of 20 due, nothing heard) before the restart; its ticket opened then.
  const std::int64_t opened = Now() - 60'000;
  for (std::uint32_t d = 0; d < 20; ++d) {
    ASSERT_TRUE(tracker_.Restore(d, 4, 600, Now() - 1000'000 + d * 30'000));
  }
  ASSERT_TRUE(tracker_.RestoreSiteSilent(4, opened));
  auto events = Sweep();  // some missing, the site still quiet: no event at all
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(tracker_.Stats().silent_sites, 1u);
  // A heartbeat from the site after the ticket opened ends it: 1 of 20 back, the rest still missing
  // are held for the wait.
  Beat(0, 4, 600);
  events = Sweep();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::kSiteResumed);
}

TEST_F(HeartbeatTrackerTest, AFewMissingInASiteAreReportedOneByOne) {
  // Site 1: 2 of 10 missing. Site 2: 2 of 4 (half, but under site_min_devices 3). Site 3: 3 of 4.
  for (std::uint32_t d = 0; d < 10; ++d) {
    Beat(d, 1);
  }
  for (std::uint32_t d = 10; d < 14; ++d) {
    Beat(d, 2);
  }
  for (std::uint32_t d = 20; d < 24; ++d) {
    Beat(d, 3);
  }
  Events all;
  for (int i = 0; i < 400; ++i) {
    clock_.Advance(1s);
    if (NowSeconds() % 60 == 0) {
      for (std::uint32_t d = 2; d < 10; ++d) {
        Beat(d, 1);
      }
      Beat(12, 2);
      Beat(13, 2);
      Beat(23, 3);
    }
    const auto events = Sweep();
    all.insert(all.end(), events.begin(), events.end());
  }
  EXPECT_EQ(Devices(all, Kind::kDeviceMissing), (std::set<std::uint32_t>{0, 1, 10, 11}));
  ASSERT_EQ(Count(all, Kind::kSiteSilent), 1u);
  const auto site_event = std::find_if(all.begin(), all.end(),
                                       [](const auto& e) { return e.kind == Kind::kSiteSilent; });
  EXPECT_EQ(site_event->site, 3u);
  EXPECT_EQ(site_event->missing, 3u);
  EXPECT_EQ(all.size(), 5u);
}

TEST_F(HeartbeatTrackerTest, ASiteFailingInStagesKeepsTheEarlyDeviceEvents) {
  constexpr std::uint32_t kSite = 4;
  for (std::uint32_t d = 0; d < 10; ++d) {
    Beat(d, kSite, d < 2 ? 60 : 600);  // 0, 1 are due long before the others
  }
  EXPECT_TRUE(Sweep().empty());
  auto events = Run(400, Range(6, 10), kSite);  // only 0 and 1 are due yet: two device events
  EXPECT_EQ(Devices(events, Kind::kDeviceMissing), (std::set<std::uint32_t>{0, 1}));
  EXPECT_EQ(events.size(), 2u);

  events = Run(600, Range(6, 10), kSite);  // 2..5 (600 s + 300 s grace) now too: 6 of 10
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::kSiteSilent);
  EXPECT_EQ(events[0].missing, 6u);

  // All come back: the two reported ones resume on their own, the site resumes, 2..5 say nothing.
  for (std::uint32_t d = 0; d < 6; ++d) {
    Beat(d, kSite);
  }
  events = Sweep();
  EXPECT_EQ(Devices(events, Kind::kDeviceResumed), (std::set<std::uint32_t>{0, 1}));
  EXPECT_EQ(Count(events, Kind::kSiteResumed), 1u);
  EXPECT_EQ(events.size(), 3u);
}

TEST_F(HeartbeatTrackerTest, DevicesWithoutASiteAreNeverGrouped) {
  for (std::uint32_t d = 0; d < 5; ++d) {
    Beat(d, kNoSite);
  }
  const auto events = Run(400);
  EXPECT_EQ(Devices(events, Kind::kDeviceMissing), Range(0, 5));
  EXPECT_EQ(events.size(), 5u);
}

TEST_F(HeartbeatTrackerTest, GroupingCanBeTurnedOff) {
  HeartbeatTracker tracker(HeartbeatTrackerOptions{.site_fraction = 2.0});
  for (std::uint32_t d = 0; d < 5; ++d) {
    ASSERT_TRUE(tracker.Observe(d, 1, 60, Now()));
  }
  clock_.Advance(400s);
  const auto events = tracker.Sweep(Now());
  EXPECT_EQ(Devices(events, Kind::kDeviceMissing), Range(0, 5));
  EXPECT_EQ(Count(events, Kind::kSiteSilent), 0u);
}

TEST_F(HeartbeatTrackerTest, RestoreReportsADeadlinePassedWhileTheHomeWasDown) {
  // Stored last heartbeats: device 1 long overdue, device 2 recent; site 3's five devices overdue.
  ASSERT_TRUE(tracker_.Restore(1, kNoSite, 60, Now() - 1000'000));
  ASSERT_TRUE(tracker_.Restore(2, kNoSite, 60, Now() - 10'000));
  for (std::uint32_t d = 10; d < 15; ++d) {
    ASSERT_TRUE(tracker_.Restore(d, 3, 60, Now() - 3600'000));
  }
  ASSERT_TRUE(tracker_.Restore(15, 3, 60, Now() - 10'000));

  auto events = Sweep();  // the first sweep
  EXPECT_EQ(Devices(events, Kind::kDeviceMissing), std::set<std::uint32_t>{1});
  EXPECT_EQ(Count(events, Kind::kSiteSilent), 1u);
  EXPECT_EQ(events.size(), 2u);

  events = Run(349);
  EXPECT_TRUE(events.empty());
  events = Run(1);  // device 2: 10 s + 350 s after its stored heartbeat; 15 is covered by site 3
  EXPECT_EQ(Devices(events, Kind::kDeviceMissing), std::set<std::uint32_t>{2});
  EXPECT_EQ(events.size(), 1u);
}

TEST_F(HeartbeatTrackerTest, RestoreWithOpenTicketsDoesNotReportTwice) {
  ASSERT_TRUE(tracker_.Restore(1, kNoSite, 60, Now() - 1000'000, /*reported_missing=*/true));
  ASSERT_TRUE(tracker_.Restore(2, kNoSite, 60, Now() - 10'000, /*reported_missing=*/true));
  // Site 5 had a site ticket: still silent. Site 6 had one: all back now.
  for (std::uint32_t d = 10; d < 14; ++d) {
    ASSERT_TRUE(tracker_.Restore(d, 5, 60, Now() - 1000'000));
    ASSERT_TRUE(tracker_.Restore(d + 10, 6, 60, Now() - 10'000));
  }
  ASSERT_TRUE(tracker_.RestoreSiteSilent(5));
  ASSERT_TRUE(tracker_.RestoreSiteSilent(6));

  auto events = Sweep();
  // 1 is still missing: its ticket stands, no second event. 2 heartbeat before the restart:
  // resumed.
  EXPECT_EQ(Devices(events, Kind::kDeviceResumed), std::set<std::uint32_t>{2});
  EXPECT_EQ(Count(events, Kind::kDeviceMissing), 0u);
  EXPECT_EQ(Count(events, Kind::kSiteSilent), 0u);
  ASSERT_EQ(Count(events, Kind::kSiteResumed), 1u);
  EXPECT_EQ(events.size(), 2u);
  EXPECT_TRUE(Run(10).empty());

  Beat(1, kNoSite);
  events = Sweep();
  EXPECT_EQ(Devices(events, Kind::kDeviceResumed), std::set<std::uint32_t>{1});
  EXPECT_EQ(events.size(), 1u);
}

TEST_F(HeartbeatTrackerTest, ForgetStopsTracking) {
  Beat(1, kNoSite);
  Beat(2, kNoSite);
  EXPECT_FALSE(tracker_.Forget(1));  // no missing event stood
  auto events = Run(400);
  EXPECT_EQ(Devices(events, Kind::kDeviceMissing), std::set<std::uint32_t>{2});
  EXPECT_TRUE(tracker_.Forget(2));  // its missing event stood: the caller closes that ticket
  EXPECT_FALSE(tracker_.Forget(2));
  EXPECT_FALSE(tracker_.Forget(99));
  Beat(2, kNoSite);  // a revoked device never comes back, but the tracker would count it anew
  EXPECT_TRUE(Sweep().empty());
  EXPECT_EQ(tracker_.Stats().tracked_devices, 1u);
  EXPECT_EQ(tracker_.Stats().missing_devices, 0u);
}

TEST_F(HeartbeatTrackerTest, ForgettingDevicesChangesWhatMostOfASiteIs) {
  // 3 of 8 missing is not most; after two healthy devices are revoked, 3 of 6 is.
  for (std::uint32_t d = 0; d < 8; ++d) {
    Beat(d, 2);
  }
  auto events = Run(400, Range(3, 8), 2);
  EXPECT_EQ(Devices(events, Kind::kDeviceMissing), Range(0, 3));
  EXPECT_FALSE(tracker_.Forget(6));
  EXPECT_FALSE(tracker_.Forget(7));
  events = Sweep();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::kSiteSilent);
  EXPECT_EQ(events[0].tracked, 6u);
}

TEST_F(HeartbeatTrackerTest, OutOfRangeIdsAreRefused) {
  EXPECT_FALSE(tracker_.Observe(HeartbeatTracker::kMaxId, kNoSite, 60, Now()));
  EXPECT_FALSE(tracker_.Observe(1, HeartbeatTracker::kMaxId, 60, Now()));
  EXPECT_FALSE(tracker_.Restore(HeartbeatTracker::kMaxId, kNoSite, 60, Now()));
  EXPECT_FALSE(tracker_.RestoreSiteSilent(kNoSite));
  EXPECT_EQ(tracker_.Stats().rejected_ids, 4u);
  EXPECT_EQ(tracker_.Stats().tracked_devices, 0u);
}

TEST_F(HeartbeatTrackerTest, ALongGapBetweenSweepsChecksEveryDevice) {
  for (std::uint32_t d = 0; d < 1000; ++d) {
    Beat(d, kNoSite, 60 + d * 7);
  }
  EXPECT_TRUE(Sweep().empty());
  clock_.Advance(10h);  // more than a turn of the wheel
  EXPECT_EQ(Devices(Sweep(), Kind::kDeviceMissing), Range(0, 1000));
}

TEST_F(HeartbeatTrackerTest, ASweepExaminesOnlyWhatCameDueAndStaysWithinTheByteBudget) {
  constexpr std::uint32_t kDevices = 100'000;
  for (std::uint32_t d = 0; d < kDevices; ++d) {
    Beat(d, d / 100, 3600 + d % 1000);  // deadlines spread over 1,000 s, 100 each second
  }
  EXPECT_TRUE(Sweep().empty());
  EXPECT_EQ(tracker_.Stats().last_sweep_examined, kDevices);  // the first sweep looks at all once
  const auto stats = tracker_.Stats();
  EXPECT_LE(static_cast<double>(stats.memory_bytes) / kDevices, 64.0);

  // Until the first deadline (3600 + 360 s), each one-second sweep examines nothing.
  std::uint64_t examined = 0;
  for (int i = 0; i < 3959; ++i) {
    clock_.Advance(1s);
    ASSERT_TRUE(Sweep().empty());
    examined += tracker_.Stats().last_sweep_examined;
  }
  EXPECT_EQ(examined, 0u);
  // Then 100 a second, each found missing (held for their sites: nothing else beats).
  for (int i = 0; i < 10; ++i) {
    clock_.Advance(1s);
    (void)Sweep();
    EXPECT_EQ(tracker_.Stats().last_sweep_examined, 100u);
    EXPECT_EQ(tracker_.Stats().missing_devices, 100u * (i + 1));
  }
}

TEST_F(HeartbeatTrackerTest, EveryDeviceItsOwnSiteStaysWithinTheByteBudget) {
  constexpr std::uint32_t kDevices = 1u << 16;
  for (std::uint32_t d = 0; d < kDevices; ++d) {
    Beat(d, d);
  }
  EXPECT_TRUE(Sweep().empty());
  EXPECT_LE(static_cast<double>(tracker_.MemoryBytes()) / kDevices, 64.0);
}

TEST_F(HeartbeatTrackerTest, ObserversRacingTheSweeperLeaveConsistentState) {
  // Two ingest threads beat 20,000 devices (a quarter without a site, the rest in 200 sites) with
  // the fake time while a sweeper moves the time on in jumps, so devices go missing and come back
  // while observes land mid-sweep. At the end every device has beaten recently: nothing may be
  // missing, and every device's and site's events must alternate and balance.
  constexpr std::uint32_t kDevices = 20'000;
  constexpr int kRounds = 200;
  const auto site_of = [](std::uint32_t d) { return d % 4 == 0 ? kNoSite : d / 100; };
  std::atomic<bool> stop{false};
  std::atomic<int> finished{0};
  std::map<std::uint32_t, int> device_balance;
  std::map<std::uint32_t, int> site_balance;
  bool alternated = true;
  auto record = [&](const Events& events) {
    for (const auto& e : events) {
      int& balance = e.kind == Kind::kSiteSilent || e.kind == Kind::kSiteResumed
                         ? site_balance[e.site]
                         : device_balance[e.device];
      const bool opening = e.kind == Kind::kDeviceMissing || e.kind == Kind::kSiteSilent;
      balance += opening ? 1 : -1;
      alternated = alternated && balance >= 0 && balance <= 1;
    }
  };

  std::vector<std::thread> observers;
  for (std::uint32_t t = 0; t < 2; ++t) {
    observers.emplace_back([&, t] {
      for (int round = 0; round < kRounds && !stop.load(); ++round) {
        for (std::uint32_t d = t; d < kDevices; d += 2) {
          // Every third round some devices skip, so some deadlines pass.
          if (round % 3 == 2 && d % 7 < 3) {
            continue;
          }
          tracker_.Observe(d, site_of(d), 60 + d % 5, Now());
        }
      }
      ++finished;
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  for (int sweep = 0;
       finished.load() < 2 && sweep < 100'000 && std::chrono::steady_clock::now() < deadline;
       ++sweep) {
    clock_.Advance(std::chrono::seconds(sweep % 10 == 9 ? 200 : 1));
    record(tracker_.Sweep(Now()));
  }
  stop.store(true);
  for (auto& thread : observers) {
    thread.join();
  }
  for (std::uint32_t d = 0; d < kDevices; ++d) {
    tracker_.Observe(d, site_of(d), 60, Now());
  }
  record(tracker_.Sweep(Now()));
  clock_.Advance(1s);
  record(tracker_.Sweep(Now()));

  EXPECT_TRUE(alternated);
  EXPECT_EQ(tracker_.Stats().missing_devices, 0u);
  EXPECT_EQ(tracker_.Stats().silent_sites, 0u);
  EXPECT_EQ(tracker_.Stats().tracked_devices, kDevices);
  for (const auto& [device, balance] : device_balance) {
    ASSERT_EQ(balance, 0) << "device " << device;
  }
  for (const auto& [site, balance] : site_balance) {
    ASSERT_EQ(balance, 0) << "site " << site;
  }
  EXPECT_FALSE(device_balance.empty());  // the race did make devices and sites go missing
  EXPECT_FALSE(site_balance.empty());
}

}  // namespace
}  // namespace lifeline::home
