#pragma once
// Splitting the text of /proc files and command output, shared by the inventory and performance reports.
#include <string_view>
#include <vector>

namespace lifeline::agent {

/// Calls `f` with each line of `text` (without the newline).
template <class F>
inline void ForEachLine(std::string_view text, F&& f) {
  while (!text.empty()) {
    const auto end = text.find('\n');
    f(text.substr(0, end));
    if (end == std::string_view::npos) {
      break;
    }
    text.remove_prefix(end + 1);
  }
}

/// The whitespace-separated fields of `line` (spaces and tabs).
inline std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> fields;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) {
      ++i;
    }
    const std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') {
      ++i;
    }
    if (i > start) {
      fields.push_back(line.substr(start, i - start));
    }
  }
  return fields;
}

}  // namespace lifeline::agent
