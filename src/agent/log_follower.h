#pragma once
// Follows one log file and delivers each new complete line exactly once across restarts and rotation.
//
// The follower only reads; the caller persists the position it reached (`LogLine::after` of the last line
// it handled) in the same transaction as whatever it made of the lines, so a crash neither repeats nor
// loses a line. Handled: a file that does not exist yet; rotation by rename (the rest of the old file is
// drained through the open descriptor, then the new file is read from its start); copy-truncate (same
// inode, now smaller than our offset: start again at 0); rotation while the agent was down (the saved
// inode is looked for among the files of the same directory, e.g. app.log.1); a partial last line (held
// back until its newline arrives, or delivered when its file is rotated away); CRLF; lines over
// kMaxLineBytes (cut, the rest skipped up to the newline). Plain POSIX reads, no inotify: the caller polls.
//
// This header also holds the agent module's error enum, because it is the module's lowest header.
#include "common/result.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

namespace lifeline::agent {

/// Errors of the agent module. File and system errors keep their errno (std::system_category).
enum class Errc {
  kBadRule = 1,        // a log rule is invalid (the message names the rule)
  kQueueCorrupt,       // the queue file holds a row this agent cannot read
  kQueueMissing,       // the queue file does not exist (agent never started here)
  kQueueTooNew,        // the queue file was written by a newer agent version
  kReservedStateKey,   // SetState on a key the queue manages itself
  kNoRandomness,       // the system random source failed
};
const std::error_category& ErrorCategory();
inline std::error_code make_error_code(Errc e) { return {static_cast<int>(e), ErrorCategory()}; }

/// A place in one particular file (device + inode), not in a path: a path is reused by rotation.
struct FilePosition {
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  std::uint64_t offset = 0;  // bytes of that file consumed; always at a line boundary
  friend bool operator==(const FilePosition&, const FilePosition&) = default;
};

struct LogLine {
  std::string text;    // without the line ending ("\n" or "\r\n"); bytes as found, UTF-8 or not
  FilePosition after;  // position just after this line
};

/// Where to start when there is no saved position and the file already exists.
enum class StartPolicy {
  kFromEnd,        // only lines completed from now on count (a line half-written at start counts)
  kFromBeginning,  // every line already in the file counts
};

class LogFollower {
 public:
  /// Longer lines are delivered cut to this many bytes; the rest of the line is skipped.
  static constexpr std::size_t kMaxLineBytes = 64 * 1024;
  /// After a rotation, how long the old file must stay unchanged before the follower moves to the new
  /// one. A writer reopens its log only after the rename (logrotate's postrotate HUP), so for a moment
  /// it still appends to the old file; switching at once would lose those lines.
  static constexpr std::chrono::milliseconds kDefaultRotationGrace{1000};

  /// `saved`: where a previous run stopped (from LogLine::after). Without it, `when_no_saved_position`
  /// decides whether what the file holds at construction counts. A file that does not exist at start is
  /// read from its beginning once it appears: all of it is new.
  LogFollower(std::filesystem::path path, std::optional<FilePosition> saved,
              StartPolicy when_no_saved_position = StartPolicy::kFromEnd,
              std::chrono::milliseconds rotation_grace = kDefaultRotationGrace);
  ~LogFollower();
  LogFollower(const LogFollower&) = delete;
  LogFollower& operator=(const LogFollower&) = delete;

  /// New complete lines in file order, at most `max_lines`. Never blocks (no waiting for data). A file
  /// that is not there (yet) is not an error; other I/O errors are, and the next Poll tries again from
  /// the same place. Not thread-safe: one owner polls.
  [[nodiscard]] Result<std::vector<LogLine>> Poll(std::size_t max_lines = 1000);

  const std::filesystem::path& path() const { return path_; }
  /// Everything before this has been delivered (the saved position until a file is opened).
  FilePosition position() const { return position_; }
  /// How many lines were cut at kMaxLineBytes so far.
  std::uint64_t lines_cut() const { return lines_cut_; }

 private:
  /// Opens the first file: the saved one (at the path or rotated beside it), or the path per policy.
  [[nodiscard]] VoidResult OpenFirst();
  /// Opens `file` and starts consuming it at `offset` (clamped to 0 when the file is now shorter).
  /// Returns false when the file does not exist.
  [[nodiscard]] Result<bool> OpenAt(const std::filesystem::path& file, std::uint64_t offset);
  void Close();
  /// Reads complete lines from the open file. Returns true when it reached the end of the file.
  [[nodiscard]] Result<bool> ReadLines(std::size_t max_lines, std::vector<LogLine>* out);
  void AppendToPartial(const char* data, std::size_t size);
  /// Ends the current line at `position_.offset` and delivers it (unless it is being dropped).
  void FinishLine(std::vector<LogLine>* out);
  void ResetLine();
  /// The file with `saved`'s device and inode in the log's directory (a rotated copy), if any.
  std::optional<std::filesystem::path> FindByInode(const FilePosition& saved) const;
  /// The start of the line that holds byte `end - 1` of the open file, or nullopt when it is too far back.
  [[nodiscard]] Result<std::optional<std::uint64_t>> LineStartBefore(std::uint64_t end);

  std::filesystem::path path_;
  std::chrono::milliseconds rotation_grace_;
  std::optional<FilePosition> saved_;         // a restart position not yet acted on
  std::optional<FilePosition> start_at_end_;  // kFromEnd: the file and size seen at construction

  int fd_ = -1;
  FilePosition position_;       // file of fd_ and bytes consumed (at a line boundary)
  std::uint64_t read_offset_ = 0;  // bytes read: position_.offset + the partial line's length
  std::string partial_;         // the current incomplete line, at most kMaxLineBytes + 1 bytes
  bool partial_overflow_ = false;  // the current line had more bytes than partial_ holds
  bool drop_line_ = false;      // the current line began before our start: skip it, do not deliver

  // Rotation seen (the path names another file): the old file is drained until quiet for the grace.
  bool rotation_pending_ = false;
  std::chrono::steady_clock::time_point old_file_changed_at_;
  std::uint64_t old_file_size_ = 0;

  std::vector<char> chunk_;
  std::uint64_t lines_cut_ = 0;
};

}  // namespace lifeline::agent

template <>
struct std::is_error_code_enum<lifeline::agent::Errc> : std::true_type {};
