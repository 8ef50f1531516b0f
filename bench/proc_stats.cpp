#include "bench/proc_stats.h"

#include <unistd.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

namespace lifeline::bench {
namespace {

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::int64_t ToInt(std::string_view text) {
  std::int64_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

// The value of "Name:   1234 kB" in a status-like file; -1 when absent.
std::int64_t KibField(const std::string& text, std::string_view name) {
  const auto at = text.find(std::string(name) + ":");
  if (at == std::string::npos) {
    return -1;
  }
  auto begin = text.find_first_of("0123456789", at + name.size() + 1);
  if (begin == std::string::npos) {
    return -1;
  }
  auto end = text.find_first_not_of("0123456789", begin);
  return ToInt(std::string_view(text).substr(begin, end - begin));
}

// Fields of /proc/PID/stat after the command name, which may itself hold spaces and parentheses.
std::vector<std::string_view> StatFields(const std::string& stat) {
  std::vector<std::string_view> fields;
  const auto close = stat.rfind(')');
  if (close == std::string::npos) {
    return fields;
  }
  std::string_view rest = std::string_view(stat).substr(close + 1);
  while (!rest.empty()) {
    const auto start = rest.find_first_not_of(" \n");
    if (start == std::string_view::npos) {
      break;
    }
    rest.remove_prefix(start);
    const auto end = rest.find_first_of(" \n");
    fields.push_back(rest.substr(0, end));
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
  }
  return fields;  // fields[0] is state (field 3 of the man page), fields[1] ppid, fields[11] utime
}

}  // namespace

std::vector<pid_t> ProcessTree(pid_t root) {
  std::multimap<pid_t, pid_t> children;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const auto name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    const auto fields = StatFields(ReadAll(entry.path() / "stat"));
    if (fields.size() > 1) {
      children.emplace(static_cast<pid_t>(ToInt(fields[1])), static_cast<pid_t>(ToInt(name)));
    }
  }
  std::vector<pid_t> tree = {root};
  for (std::size_t i = 0; i < tree.size() && tree.size() < 4096; ++i) {
    auto [begin, end] = children.equal_range(tree[i]);
    for (auto it = begin; it != end; ++it) {
      tree.push_back(it->second);
    }
  }
  return tree;
}

ProcSample Sample(const std::vector<pid_t>& pids) {
  ProcSample sample;
  for (pid_t pid : pids) {
    const std::filesystem::path dir = "/proc/" + std::to_string(pid);
    const auto fields = StatFields(ReadAll(dir / "stat"));
    if (fields.size() < 13 || fields[0] == "Z") {
      continue;
    }
    ++sample.processes;
    // utime + stime, plus cutime + cstime: the CPU of children that ended (the agent's sender processes).
    sample.cpu_ticks += ToInt(fields[11]) + ToInt(fields[12]);
    if (fields.size() >= 15) {
      sample.cpu_ticks += ToInt(fields[13]) + ToInt(fields[14]);
    }
    const auto status = ReadAll(dir / "status");
    sample.rss_kib += std::max<std::int64_t>(0, KibField(status, "VmRSS"));
    sample.rss_anon_kib += std::max<std::int64_t>(0, KibField(status, "RssAnon"));
    sample.pss_kib += std::max<std::int64_t>(0, KibField(ReadAll(dir / "smaps_rollup"), "Pss"));
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator(dir / "task", ec)) {
      const auto schedstat = ReadAll(task.path() / "schedstat");
      sample.cpu_ns += ToInt(std::string_view(schedstat).substr(0, schedstat.find(' ')));
    }
  }
  return sample;
}

std::int64_t TicksPerSecond() { return sysconf(_SC_CLK_TCK); }

}  // namespace lifeline::bench
