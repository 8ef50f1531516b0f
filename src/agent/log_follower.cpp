#include "agent/log_follower.h"

#include "common/log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace lifeline::agent {
namespace {

const char* Describe(Errc e) {
  switch (e) {
    case Errc::kBadRule:
      return "a log rule is invalid";
    case Errc::kQueueCorrupt:
      return "the agent queue holds a record this agent cannot read";
    case Errc::kQueueMissing:
      return "the agent queue does not exist (has the agent run here?)";
    case Errc::kQueueTooNew:
      return "the agent queue was written by a newer agent version";
    case Errc::kReservedStateKey:
      return "this state key is managed by the queue itself";
    case Errc::kNoRandomness:
      return "the system random source failed";
  }
  return "unknown agent error";
}

std::error_code LastError() { return {errno, std::system_category()}; }

bool SameFile(const struct stat& st, const FilePosition& position) {
  return static_cast<std::uint64_t>(st.st_dev) == position.device &&
         static_cast<std::uint64_t>(st.st_ino) == position.inode;
}

constexpr std::size_t kChunkBytes = 64 * 1024;
// How far back kFromEnd looks for the start of a half-written last line before giving up on it.
constexpr std::uint64_t kMaxBackScanBytes = 1024 * 1024;
// Bounds one Poll's work when a file holds megabytes without a newline (each poll continues the line).
constexpr std::uint64_t kMaxBytesPerPoll = 16 * 1024 * 1024;

}  // namespace

const std::error_category& ErrorCategory() {
  static const EnumErrorCategory<Errc> category("lifeline.agent", &Describe);
  return category;
}

LogFollower::LogFollower(std::filesystem::path path, std::optional<FilePosition> saved,
                         StartPolicy when_no_saved_position, std::chrono::milliseconds rotation_grace)
    : path_(std::move(path)), rotation_grace_(rotation_grace), saved_(saved), chunk_(kChunkBytes) {
  if (saved_) {
    position_ = *saved_;
  } else if (when_no_saved_position == StartPolicy::kFromEnd) {
    // Remember what "now" is: lines appended between construction and the first Poll are new too.
    struct stat st {};
    if (::stat(path_.c_str(), &st) == 0) {
      start_at_end_ = FilePosition{static_cast<std::uint64_t>(st.st_dev),
                                   static_cast<std::uint64_t>(st.st_ino),
                                   static_cast<std::uint64_t>(st.st_size)};
    }
  }
}

LogFollower::~LogFollower() { Close(); }

void LogFollower::Close() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  rotation_pending_ = false;
}

void LogFollower::ResetLine() {
  partial_.clear();
  partial_overflow_ = false;
  drop_line_ = false;
  read_offset_ = position_.offset;
}

Result<bool> LogFollower::OpenAt(const std::filesystem::path& file, std::uint64_t offset) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    if (errno == ENOENT) {
      return false;
    }
    return Fail(LastError());
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const auto error = LastError();
    ::close(fd);
    return Fail(error);
  }
  Close();
  fd_ = fd;
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (offset > size) {
    log::Get("agent")->warn("{}: {} is shorter than the saved position ({} < {} bytes); it was "
                            "truncated, reading it from the start",
                            path_.string(), file.string(), size, offset);
    offset = 0;
  }
  position_ = {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino), offset};
  ResetLine();
  return true;
}

std::optional<std::filesystem::path> LogFollower::FindByInode(const FilePosition& saved) const {
  const auto dir = path_.has_parent_path() ? path_.parent_path() : std::filesystem::path(".");
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    struct stat st {};
    if (::stat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode) && SameFile(st, saved)) {
      return it->path();
    }
  }
  return std::nullopt;
}

Result<std::optional<std::uint64_t>> LogFollower::LineStartBefore(std::uint64_t end) {
  std::uint64_t scan_end = end;
  while (scan_end > 0) {
    if (end - scan_end >= kMaxBackScanBytes) {
      return std::optional<std::uint64_t>();
    }
    const std::uint64_t size = std::min<std::uint64_t>(kChunkBytes, scan_end);
    const std::uint64_t begin = scan_end - size;
    const ssize_t n = ::pread(fd_, chunk_.data(), size, static_cast<off_t>(begin));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Fail(LastError());
    }
    if (static_cast<std::uint64_t>(n) < size) {
      // Shrank under us (truncated): the caller's truncation check sorts it out from the start.
      return std::optional<std::uint64_t>(0);
    }
    for (std::uint64_t i = size; i > 0; --i) {
      if (chunk_[i - 1] == '\n') {
        return std::optional<std::uint64_t>(begin + i);
      }
    }
    scan_end = begin;
  }
  return std::optional<std::uint64_t>(0);
}

VoidResult LogFollower::OpenFirst() {
  auto logger = log::Get("agent");
  if (saved_) {
    const FilePosition saved = *saved_;
    struct stat st {};
    if (::stat(path_.c_str(), &st) == 0 && SameFile(st, saved)) {
      auto opened = OpenAt(path_, saved.offset);
      if (!opened) {
        return opened.error();
      }
      if (*opened) {
        saved_.reset();
        return {};
      }
    }
    // Rotated while we were down: finish the old file first; the rotation check then moves on to the
    // new file at the path, from its start.
    if (auto rotated = FindByInode(saved)) {
      auto opened = OpenAt(*rotated, saved.offset);
      if (!opened) {
        return opened.error();
      }
      if (*opened) {
        logger->info("{}: rotated while the agent was stopped; reading the rest of {} first",
                     path_.string(), rotated->string());
        saved_.reset();
        return {};
      }
    }
    logger->warn("{}: the file read before the restart (device {}, inode {}) is gone; lines written to "
                 "it after byte {} may have been missed. Reading the current file from its start",
                 path_.string(), saved.device, saved.inode, saved.offset);
    auto opened = OpenAt(path_, 0);
    if (!opened) {
      return opened.error();
    }
    saved_.reset();  // opened, or not there yet: either way the next file is read from 0
    return {};
  }

  if (start_at_end_) {
    const FilePosition start = *start_at_end_;
    struct stat st {};
    if (::stat(path_.c_str(), &st) == 0 && SameFile(st, start)) {
      auto opened = OpenAt(path_, 0);
      if (!opened) {
        return opened.error();
      }
      if (*opened) {
        if (start.offset <= static_cast<std::uint64_t>(st.st_size)) {
          auto line_start = LineStartBefore(start.offset);
          if (!line_start) {
            Close();  // start_at_end_ stays: the next poll tries again
            return line_start.error();
          }
          if (*line_start) {
            // A line half-written at start is delivered once complete: its end is new.
            position_.offset = **line_start;
            ResetLine();
          } else {
            // No line start within reach: skip the rest of this huge line instead of reading it all.
            position_.offset = start.offset;
            ResetLine();
            drop_line_ = true;
          }
        }
        start_at_end_.reset();
        return {};
      }
    }
    start_at_end_.reset();  // another file than at construction (or none yet): all of it is new
  }
  auto opened = OpenAt(path_, 0);
  if (!opened) {
    return opened.error();
  }
  return {};
}

void LogFollower::AppendToPartial(const char* data, std::size_t size) {
  if (drop_line_) {
    return;
  }
  // One byte beyond the cap, so a line of exactly kMaxLineBytes followed by "\r\n" is not called cut.
  const std::size_t room = kMaxLineBytes + 1 - partial_.size();
  if (size > room) {
    partial_overflow_ = true;
    size = room;
  }
  partial_.append(data, size);
}

void LogFollower::FinishLine(std::vector<LogLine>* out) {
  if (drop_line_) {
    partial_.clear();
    partial_overflow_ = false;
    drop_line_ = false;
    return;
  }
  std::string text = std::move(partial_);
  partial_.clear();
  if (!partial_overflow_ && !text.empty() && text.back() == '\r') {
    text.pop_back();
  }
  if (text.size() > kMaxLineBytes) {
    text.resize(kMaxLineBytes);
    partial_overflow_ = true;
  }
  if (partial_overflow_) {
    if (lines_cut_++ == 0) {
      log::Get("agent")->warn("{}: a line longer than {} bytes was cut (counted from now on, not logged)",
                              path_.string(), kMaxLineBytes);
    }
    partial_overflow_ = false;
  }
  out->push_back(LogLine{std::move(text), position_});
}

Result<bool> LogFollower::ReadLines(std::size_t max_lines, std::vector<LogLine>* out) {
  std::uint64_t budget = kMaxBytesPerPoll;
  while (out->size() < max_lines && budget > 0) {
    const ssize_t n = ::pread(fd_, chunk_.data(), chunk_.size(), static_cast<off_t>(read_offset_));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Fail(LastError());
    }
    if (n == 0) {
      return true;
    }
    budget -= std::min<std::uint64_t>(budget, static_cast<std::uint64_t>(n));
    const char* p = chunk_.data();
    const char* const end = p + n;
    while (p < end) {
      const auto* newline = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
      const char* segment_end = newline != nullptr ? newline : end;
      AppendToPartial(p, static_cast<std::size_t>(segment_end - p));
      read_offset_ += static_cast<std::uint64_t>(segment_end - p);
      if (newline == nullptr) {
        break;
      }
      ++read_offset_;
      position_.offset = read_offset_;
      FinishLine(out);
      p = newline + 1;
      if (out->size() >= max_lines) {
        // The rest of the chunk is read again next time; nothing past the last line is consumed.
        return false;
      }
    }
  }
  return false;
}

Result<std::vector<LogLine>> LogFollower::Poll(std::size_t max_lines) {
  std::vector<LogLine> lines;
  if (max_lines == 0) {
    return lines;
  }
  if (fd_ < 0) {
    if (auto opened = OpenFirst(); !opened) {
      return opened.error();
    }
    if (fd_ < 0) {
      return lines;  // not there yet
    }
  }
  // At most two files per poll: the rest of a rotated one, then its successor.
  for (int file = 0; file < 2 && lines.size() < max_lines; ++file) {
    struct stat own {};
    if (::fstat(fd_, &own) != 0) {
      return LastError();
    }
    const auto size = static_cast<std::uint64_t>(own.st_size);
    if (size < read_offset_) {
      // Copy-truncate: the content we read was copied elsewhere and the file emptied in place.
      log::Get("agent")->info("{}: truncated (copy-truncate rotation?); reading it again from the start",
                              path_.string());
      position_.offset = 0;
      ResetLine();
    }
    struct stat at_path {};
    const bool replaced = ::stat(path_.c_str(), &at_path) == 0 && !SameFile(at_path, position_);
    if (replaced && !rotation_pending_) {
      rotation_pending_ = true;
      old_file_changed_at_ = std::chrono::steady_clock::now();
      old_file_size_ = size;
    } else if (rotation_pending_ && size != old_file_size_) {
      old_file_changed_at_ = std::chrono::steady_clock::now();
      old_file_size_ = size;
    }

    auto at_end = ReadLines(max_lines - lines.size(), &lines);
    if (!at_end) {
      return at_end.error();
    }
    if (!replaced || !*at_end) {
      break;
    }
    if (std::chrono::steady_clock::now() - old_file_changed_at_ < rotation_grace_) {
      break;  // the writer may still append to the old file; look again next poll
    }
    // The old file is done: its last line may lack a newline (the writer will never add one now).
    if (!partial_.empty() || partial_overflow_ || drop_line_) {
      position_.offset = read_offset_;
      FinishLine(&lines);
    }
    log::Get("agent")->info("{}: rotated; continuing with the new file from its start", path_.string());
    auto opened = OpenAt(path_, 0);
    if (!opened) {
      return opened.error();
    }
    if (!*opened) {
      Close();  // vanished again between stat and open: the next poll opens it from 0
      break;
    }
  }
  return lines;
}

}  // namespace lifeline::agent
