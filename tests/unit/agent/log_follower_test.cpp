#include "agent/log_follower.h"

#include "support/temp_dir.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace lifeline::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using lifeline::testing::AppendFile;
using lifeline::testing::TempDir;
using lifeline::testing::WriteFile;

constexpr std::chrono::milliseconds kNoGrace{0};

std::vector<LogLine> PollLines(LogFollower& follower, std::size_t max = 1000) {
  auto lines = follower.Poll(max);
  EXPECT_TRUE(lines) << lines.error().message();
  return lines ? std::move(*lines) : std::vector<LogLine>();
}

std::vector<std::string> Texts(const std::vector<LogLine>& lines) {
  std::vector<std::string> texts;
  for (const auto& line : lines) {
    texts.push_back(line.text);
  }
  return texts;
}

std::vector<std::string> PollTexts(LogFollower& follower, std::size_t max = 1000) {
  return Texts(PollLines(follower, max));
}

struct stat StatOf(const std::filesystem::path& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st;
}

TEST(LogFollower, FromEndDeliversOnlyNewLines) {
  TempDir dir;
  const auto log = dir / "app.log";
  WriteFile(log, "old 1\nold 2\n");
  LogFollower follower(log, std::nullopt, StartPolicy::kFromEnd, kNoGrace);
  EXPECT_THAT(PollTexts(follower), IsEmpty());
  AppendFile(log, "new 1\nnew 2\n");
  EXPECT_THAT(PollTexts(follower), ElementsAre("new 1", "new 2"));
  EXPECT_THAT(PollTexts(follower), IsEmpty());
}

TEST(LogFollower, FromEndCountsLinesAppendedBeforeTheFirstPoll) {
  TempDir dir;
  const auto log = dir / "app.log";
  WriteFile(log, "old\n");
  LogFollower follower(log, std::nullopt, StartPolicy::kFromEnd, kNoGrace);
  AppendFile(log, "appended after start\n");
  EXPECT_THAT(PollTexts(follower), ElementsAre("appended after start"));
}

TEST(LogFollower, FromEndDeliversTheLineBeingWrittenAtStartOnceComplete) {
  TempDir dir;
  const auto log = dir / "app.log";
  WriteFile(log, "old\nhalf ");
  LogFollower follower(log, std::nullopt, StartPolicy::kFromEnd, kNoGrace);
  EXPECT_THAT(PollTexts(follower), IsEmpty());
  AppendFile(log, "done\n");
  EXPECT_THAT(PollTexts(follower), ElementsAre("half done"));
}

TEST(LogFollower, FromEndSkipsAHugeHalfWrittenLineInsteadOfReadingItAll) {
  TempDir dir;
  const auto log = dir / "app.log";
  WriteFile(log, "old\n" + std::string(1536 * 1024, 'x'));
  LogFollower follower(log, std::nullopt, StartPolicy::kFromEnd, kNoGrace);
  EXPECT_THAT(PollTexts(follower), IsEmpty());
  AppendFile(log, "tail\nnew\n");
  EXPECT_THAT(PollTexts(follower), ElementsAre("new"));
}

TEST(LogFollower, FromBeginningDeliversWhatIsThere) {
  TempDir dir;
  const auto log = dir / "app.log";
  WriteFile(log, "one\ntwo\n");
  LogFollower follower(log, std::nullopt, StartPolicy::kFromBeginning, kNoGrace);
  EXPECT_THAT(PollTexts(follower), ElementsAre("one", "two"));
}

TEST(LogFollower, PositionsAreLineBoundariesOfTheFile) {
  TempDir dir;
  const auto log = dir / "app.log";
  WriteFile(log, "ab\ncde\n");
  LogFollower follower(log, std::nullopt, StartPolicy::kFromBeginning, kNoGrace);
  const auto lines = PollLines(follower);
  ASSERT_EQ(lines.size(), 2u);
  const auto st = StatOf(log);
  EXPECT_EQ(lines[0].after, (FilePosition{static_cast<std::uint64_t>(st.st_dev),
                                          static_cast<std::uint64_t>(st.st_ino), 3}));
  EXPECT_EQ(lines[1].after.offset, 7u);
  EXPECT_EQ(follower.position(), lines[1].after);
}

TEST(LogFollower, RestartContinuesExactlyWhereTheCallerStopped) {
  TempDir dir;
  const auto log = dir / "app.log";
  WriteFile(log, "1\n2\n3\n4\n5\n");
  FilePosition saved;
  {
    LogFollower follower(log, std::nullopt, StartPolicy::kFromBeginning, kNoGrace);
    const auto lines = PollLines(follower, 3);
    EXPECT_THAT(Texts(lines), ElementsAre("1", "2", "3"));
    saved = lines.back().after;  // what the caller committed; 4 and 5 were never handled
  }
  AppendFile(log, "6\n");
  // kFromEnd must not matter: a saved position always wins.
  LogFollower restarted(log, saved, StartPolicy::kFromEnd, kNoGrace);
  EXPECT_EQ(restarted.position(), saved);
  EXPECT_THAT(PollTexts(restarted), ElementsAre("4", "5", "6"));
  EXPECT_THAT(PollTexts(restarted), IsEmpty());
}

TEST(LogFollower, MaxLinesLeavesTheRestForTheNextPoll) {
  TempDir dir;
  const auto log = dir / "app.log";
  std::string text;
  for (int i = 0; i < 10; ++i) {
    text += "line " + std::to_string(i) + "\n";
  }
  WriteFile(log, text);
  LogFollower follower(log, std::nullopt, StartPolicy::kFromBeginning, kNoGrace);
  std::vector<std::string> all;
  for (int poll = 0; poll < 5; ++poll) {
    const auto got = PollTexts(follower, 3);
    EXPECT_LE(got.size(), 3u);
    all.insert(all.end(), got.begin(), got.end());
  }
  ASSERT_EQ(all.size(), 10u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(all[i], "line " + std::to_string(i));
  }
}

TEST(LogFollower, RenameRotationWhileRunningDrainsTheOldFileThenReadsTheNewOne) {
  TempDir dir;
  const auto log = dir / "app.log";
  const auto rotated = dir / "app.log.1";
  WriteFile(log, "a\nb\n");
  LogFollower follower(log, std::nullopt, StartPolicy::kFromBeginning, kNoGrace);
  EXPECT_THAT(PollTexts(follower), ElementsAre("a", "b"));
  const auto old_st = StatOf(log);

  std::filesystem::rename(log, rotated);
  AppendFile(rotated, "c\n");  // the writer still had the old file open
  WriteFile(log, "d\n");
  const auto lines = PollLines(follower);
  EXPECT_THAT(Texts(lines), ElementsAre("c", "d"));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].after.inode, static_cast<std::uint64_t>(old_st.st_ino));
  EXPECT_EQ(lines[0].after.offset, 6u);
  const auto new_st = StatOf(log);
  EXPECT_EQ(lines[1].after, (FilePosition{static_cast<std::uint64_t>(new_st.st_dev),
                                          static_cast<std::uint64_t>(new_st.st_ino), 2}));
  AppendFile(log, "e\n");
  EXPECT_THAT(PollTexts(follower), ElementsAre("e"));
}

TEST(LogFollower, PartialLastLineOfARotatedAwayFileIsDeliveredWhole) {
  TempDir dir;
  const auto log = dir / "app.log";
  WriteFile(log, "a\nunfinished");
  LogFollower follower(log, std::nullopt, StartPolicy::kFromBeginning, kNoGrace);
  EXPECT_THAT(PollTexts(follower), ElementsAre("a"));
  std::filesystem::rename(log, dir / "app.log.1");
  WriteFile(log, "next\n");
  const auto lines = PollLines(follower);
  EXPECT_THAT(Texts(lines), ElementsAre("unfinished", "next"));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].after.offset, 12u);  // the end of the old file
}

TEST(LogFollower, RotationWaitsUntilTheOldFileIsQuietForTheGrace) {
  TempDir dir;
  const auto log = dir / "app.log";
  const auto rotated = dir / "app.log.1";
  WriteFile(log, "a\n");
  LogFollower follower(log, std::nullopt, StartPolicy::kFromBeginning, std::chrono::milliseconds(300));
  EXPECT_THAT(PollTexts(follower), ElementsAre("a"));
  std::filesystem::rename(log, rotated);
  WriteFile(log, "new\n");
  EXPECT_THAT(PollTexts(follower), IsEmpty());  // rotation seen; the old file may still grow
  AppendFile(rotated, "late\n");                // the writer has not reopened yet
  EXPECT_THAT(PollTexts(follower), ElementsAre("late"));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_THAT(PollTexts(follower), ElementsAre("new"));
}

TEST(LogFollower, RotationWhileDownDrainsTheRotatedFileFromTheSavedOffset) {
  TempDir dir;
  const auto log = dir / "app.log";
  WriteFile(log, "a\nb\n");
  FilePosition saved;
  {
    LogFollower follower(log, std::nullopt, StartPolicy::kFromBeginning, kNoGrace);
    saved = PollLines(follower).back().after;
  }
  // While the agent is down: more lines, then logrotate, then the app writes the new file.
  AppendFile(log, "c\nd-without-newline");
  std::filesystem::rename(log, dir / "app.log.1");
  WriteFile(dir / "other.log", "unrelated\n");
  WriteFile(log, "e\n");
  LogFollower restarted(log, saved, StartPolicy::kFromEnd, kNoGrace);
  EXPECT_THAT(PollTexts(restarted), ElementsAre("c", "d-without-newline", "e"));
  EXPECT_THAT(PollTexts(restarted), IsEmpty());
}

TEST(LogFollower, RotatedFileGoneWhileDownStartsTheNewFileFromItsBeginning) {
  TempDir dir;
  const auto log = dir / "app.log";
  WriteFile(log, "a\n");
  FilePosition saved;
  {
    LogFollower follower(log, std::nullopt, StartPolicy::kFromBeginning, kNoGrace);
    saved = PollLines(follower).back().after;
  }
  std::filesystem::rename(log, dir / "app.log.1");
  WriteFile(log, "b\nc\n");
  // Keep the old inode alive (so it cannot be reused by the new file) but out of the directory.
  std::filesystem::create_directory(dir / "archive");
  std::filesystem::rename(dir / "app.log.1", dir / "archive" / "app.log.1");
  LogFollower restarted(log, saved, StartPolicy::kFromEnd, kNoGrace);
  EXPECT_THAT(PollTexts(restarted), ElementsAre("b", "c"));
}

TEST(LogFollower, CopyTruncateStartsAgainAtZero) {
  TempDir dir;
  const auto log = dir / "app.log";
  WriteFile(log, "first line\nsecond line\n");
  LogFollower follower(log, std::nullopt, StartPolicy::kFromBeginning, kNoGrace);
  EXPECT_THAT(PollTexts(follower), ElementsAre("first line", "second line"));
  const auto inode = StatOf(log).st_ino;
  std::filesystem::resize_file(log, 0);  // logrotate copytruncate: same inode, emptied
  AppendFile(log, "x\n");
  EXPECT_EQ(StatOf(log).st_ino, inode);
  EXPECT_THAT(PollTexts(follower), ElementsAre("x"));
  AppendFile(log, "y\n");
  EXPECT_THAT(PollTexts(follower), ElementsAre("y"));
}

TEST(LogFollower, CopyTruncateWhileDownStartsAgainAtZero) {
  TempDir dir;
  const auto log = dir / "app.log";
  WriteFile(log, "first line\nsecond line\n");
  FilePosition saved;
  {
    LogFollower follower(log, std::nullopt, StartPolicy::kFromBeginning, kNoGrace);
    saved = PollLines(follower).back().after;
  }
  std::filesystem::resize_file(log, 0);
  AppendFile(log, "z\n");
  LogFollower restarted(log, saved, StartPolicy::kFromEnd, kNoGrace);
  EXPECT_THAT(PollTexts(restarted), ElementsAre("z"));
}

TEST(LogFollower, PartialLastLineWaitsForItsNewline) {
  TempDir dir;
  const auto log = dir / "app.log";
  WriteFile(log, "done\npart");
  LogFollower follower(log, std::nullopt, StartPolicy::kFromBeginning, kNoGrace);
  const auto first = PollLines(follower);
  EXPECT_THAT(Texts(first), ElementsAre("done"));
  EXPECT_EQ(follower.position().offset, 5u);  // not past the partial line
  AppendFile(log, "ial");
  EXPECT_THAT(PollTexts(follower), IsEmpty());
  AppendFile(log, " line\n");
  EXPECT_THAT(PollTexts(follower), ElementsAre("partial line"));
}

TEST(LogFollower, PartialLineAcrossARestartIsDeliveredWhole) {
  TempDir dir;
  const auto log = dir / "app.log";
  WriteFile(log, "done\npart");
  FilePosition saved;
  {
    LogFollower follower(log, std::nullopt, StartPolicy::kFromBeginning, kNoGrace);
    saved = PollLines(follower).back().after;
  }
  AppendFile(log, "ial\n");
  LogFollower restarted(log, saved, StartPolicy::kFromEnd, kNoGrace);
  EXPECT_THAT(PollTexts(restarted), ElementsAre("partial"));
}

TEST(LogFollower, CrlfLineEndingsAreStripped) {
  TempDir dir;
  const auto log = dir / "app.log";
  WriteFile(log, "windows\r\nmixed\nbare\rcarriage\r\n\r\n");
  LogFollower follower(log, std::nullopt, StartPolicy::kFromBeginning, kNoGrace);
  EXPECT_THAT(PollTexts(follower), ElementsAre("windows", "mixed", "bare\rcarriage", ""));
}

TEST(LogFollower, InvalidUtf8IsPassedThroughAsBytes) {
  TempDir dir;
  const auto log = dir / "app.log";
  WriteFile(log, std::string("bad \xff\xfe bytes\n", 13) + std::string("nul\0inside\n", 11));
  LogFollower follower(log, std::nullopt, StartPolicy::kFromBeginning, kNoGrace);
  EXPECT_THAT(PollTexts(follower),
              ElementsAre(std::string("bad \xff\xfe bytes", 12), std::string("nul\0inside", 10)));
}

TEST(LogFollower, OverlongLineIsCutAndTheRestSkipped) {
  TempDir dir;
  const auto log = dir / "app.log";
  const std::string huge(LogFollower::kMaxLineBytes + 40000, 'x');
  WriteFile(log, huge + "\nnext\n");
  LogFollower follower(log, std::nullopt, StartPolicy::kFromBeginning, kNoGrace);
  const auto lines = PollLines(follower);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].text, std::string(LogFollower::kMaxLineBytes, 'x'));
  EXPECT_EQ(lines[0].after.offset, huge.size() + 1);
  EXPECT_EQ(lines[1].text, "next");
  EXPECT_EQ(follower.lines_cut(), 1u);
}

TEST(LogFollower, OverlongLineArrivingInPiecesIsOneCutLine) {
  TempDir dir;
  const auto log = dir / "app.log";
  WriteFile(log, std::string(50000, 'a'));
  LogFollower follower(log, std::nullopt, StartPolicy::kFromBeginning, kNoGrace);
  EXPECT_THAT(PollTexts(follower), IsEmpty());
  AppendFile(log, std::string(50000, 'b'));
  EXPECT_THAT(PollTexts(follower), IsEmpty());
  AppendFile(log, std::string(50000, 'c') + "\n");
  const auto lines = PollLines(follower);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].text, std::string(50000, 'a') + std::string(LogFollower::kMaxLineBytes - 50000, 'b'));
  EXPECT_EQ(lines[0].after.offset, 150001u);
}

TEST(LogFollower, LineOfExactlyTheLimitWithCrlfIsNotCut) {
  TempDir dir;
  const auto log = dir / "app.log";
  const std::string full(LogFollower::kMaxLineBytes, 'q');
  WriteFile(log, full + "\r\n");
  LogFollower follower(log, std::nullopt, StartPolicy::kFromBeginning, kNoGrace);
  EXPECT_THAT(PollTexts(follower), ElementsAre(full));
  EXPECT_EQ(follower.lines_cut(), 0u);
}

TEST(LogFollower, FileCreatedLateIsReadFromItsBeginning) {
  TempDir dir;
  const auto log = dir / "app.log";
  LogFollower follower(log, std::nullopt, StartPolicy::kFromEnd, kNoGrace);
  EXPECT_THAT(PollTexts(follower), IsEmpty());
  EXPECT_THAT(PollTexts(follower), IsEmpty());
  WriteFile(log, "first\nsecond\n");
  EXPECT_THAT(PollTexts(follower), ElementsAre("first", "second"));
}

TEST(LogFollower, FileDeletedAndRecreatedIsFollowed) {
  TempDir dir;
  const auto log = dir / "app.log";
  WriteFile(log, "a\n");
  LogFollower follower(log, std::nullopt, StartPolicy::kFromBeginning, kNoGrace);
  EXPECT_THAT(PollTexts(follower), ElementsAre("a"));
  std::filesystem::rename(log, dir / "app.log.1");
  EXPECT_THAT(PollTexts(follower), IsEmpty());  // nothing at the path: keep the old file
  AppendFile(dir / "app.log.1", "b\n");
  EXPECT_THAT(PollTexts(follower), ElementsAre("b"));
  WriteFile(log, "c\n");
  EXPECT_THAT(PollTexts(follower), ElementsAre("c"));
}

TEST(LogFollower, UnreadableFileIsAnErrorNotACrash) {
  if (::geteuid() == 0) {
    GTEST_SKIP() << "root reads files whatever their mode";
  }
  TempDir dir;
  const auto log = dir / "app.log";
  WriteFile(log, "secret\n");
  std::filesystem::permissions(log, std::filesystem::perms::none);
  LogFollower follower(log, std::nullopt, StartPolicy::kFromBeginning, kNoGrace);
  EXPECT_FALSE(follower.Poll());
  std::filesystem::permissions(log, std::filesystem::perms::owner_read);
  EXPECT_THAT(PollTexts(follower), ElementsAre("secret"));
}

}  // namespace
}  // namespace lifeline::agent
