#pragma once
// A directory under the system temp dir, removed with everything in it when the object goes away
// (kept when LIFELINE_KEEP_TEST_DIRS is set, for looking at a failed run).
#include <filesystem>
#include <string>

namespace lifeline::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

/// Writes `text` to `path`, replacing it.
void WriteFile(const std::filesystem::path& path, const std::string& text);
/// Appends `text` to `path`.
void AppendFile(const std::filesystem::path& path, const std::string& text);
/// The whole file, or "" when it does not exist.
std::string ReadFile(const std::filesystem::path& path);

}  // namespace lifeline::testing
