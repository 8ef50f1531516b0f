#include "agent/inventory.h"

#include "agent/proc_text.h"

#include "common/clock.h"
#include "common/log.h"

#include <fmt/format.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <set>

namespace lifeline::agent {
namespace json = boost::json;
namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("agent"); }

std::string_view Trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) {
    return {};
  }
  const auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

// Calls `f(line)` for each line of `text`.


std::optional<std::int64_t> ToInt(std::string_view s) {
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size()) {
    return std::nullopt;
  }
  return value;
}

// Mount points in /proc/mounts escape space, tab, newline and backslash as \ooo.
std::string DecodeOctalEscapes(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const std::string_view digits = s.substr(i + 1, 3);
      if (std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '7'; })) {
        out += static_cast<char>((digits[0] - '0') * 64 + (digits[1] - '0') * 8 + (digits[2] - '0'));
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

std::string ReadSmall(const std::string& path) {
  auto text = ReadFileBounded(path, 64 * 1024);
  return text ? std::string(Trim(*text)) : std::string();
}

// The text JSON carries: valid UTF-8, bounded.
json::string Text(std::string_view s, std::size_t max = 1024) { return json::string(CleanUtf8(s, max)); }

void Canonical(const json::value& value, std::string& out) {
  if (value.is_object()) {
    const auto& object = value.get_object();
    std::vector<std::string_view> keys;
    keys.reserve(object.size());
    for (const auto& entry : object) {
      keys.push_back(entry.key());
    }
    std::sort(keys.begin(), keys.end());
    out += '{';
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (i > 0) {
        out += ',';
      }
      out += json::serialize(json::string(keys[i]));
      out += ':';
      Canonical(object.at(keys[i]), out);
    }
    out += '}';
  } else if (value.is_array()) {
    out += '[';
    bool first = true;
    for (const auto& element : value.get_array()) {
      if (!first) {
        out += ',';
      }
      first = false;
      Canonical(element, out);
    }
    out += ']';
  } else {
    out += json::serialize(value);
  }
}

std::string CanonicalText(const json::object& object) {
  std::string out;
  Canonical(object, out);
  return out;
}

json::object OsSection() {
  json::object os;
  struct utsname names {};
  if (::uname(&names) == 0) {
    os["sysname"] = Text(names.sysname);
    os["hostname"] = Text(names.nodename);
    os["kernel_release"] = Text(names.release);
    os["kernel_version"] = Text(names.version);
    os["machine"] = Text(names.machine);
  }
  auto release = ReadFileBounded("/etc/os-release", 64 * 1024);
  if (!release) {
    release = ReadFileBounded("/usr/lib/os-release", 64 * 1024);
  }
  if (release) {
    const auto fields = ParseOsRelease(*release);
    for (const auto& [key, name] : {std::pair{"PRETTY_NAME", "name"}, {"ID", "id"}, {"VERSION_ID", "version_id"}}) {
      if (auto it = fields.find(key); it != fields.end()) {
        os[name] = Text(it->second);
      }
    }
  }
  return os;
}

json::object BlockDevicesSection() {
  json::object devices;
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/sys/block", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    // Loop and RAM disks come and go with snaps and images; they are not the device's disks.
    if (name.starts_with("loop") || name.starts_with("ram") || name.starts_with("zram")) {
      continue;
    }
    json::object device;
    if (auto sectors = ToInt(ReadSmall(it->path().string() + "/size"))) {
      device["size_bytes"] = *sectors * 512;  // the kernel counts 512-byte sectors whatever the disk's
    }
    if (auto model = ReadSmall(it->path().string() + "/device/model"); !model.empty()) {
      device["model"] = Text(model);
    }
    if (auto rotational = ReadSmall(it->path().string() + "/queue/rotational"); !rotational.empty()) {
      device["rotational"] = rotational == "1";
    }
    devices[name] = std::move(device);
    if (devices.size() >= 256) {
      break;
    }
  }
  return devices;
}

json::object FilesystemsSection() {
  json::object filesystems;
  auto mounts = ReadFileBounded("/proc/mounts", 1024 * 1024);
  if (!mounts) {
    return filesystems;
  }
  for (const auto& mount : ParseMounts(*mounts)) {
    if (IsPseudoFilesystem(mount.type) || filesystems.size() >= 256) {
      continue;
    }
    json::object fs{{"device", Text(mount.device)}, {"type", Text(mount.type)}};
    struct statvfs stats {};
    if (::statvfs(mount.mount_point.c_str(), &stats) == 0) {
      fs["size_bytes"] = static_cast<std::int64_t>(stats.f_blocks) * static_cast<std::int64_t>(stats.f_frsize);
    }
    filesystems[CleanUtf8(mount.mount_point, 1024)] = std::move(fs);
  }
  return filesystems;
}

int PrefixLength(const sockaddr* netmask) {
  if (netmask == nullptr) {
    return -1;
  }
  int bits = 0;
  if (netmask->sa_family == AF_INET) {
    bits = std::popcount(reinterpret_cast<const sockaddr_in*>(netmask)->sin_addr.s_addr);
  } else if (netmask->sa_family == AF_INET6) {
    for (unsigned char byte : reinterpret_cast<const sockaddr_in6*>(netmask)->sin6_addr.s6_addr) {
      bits += std::popcount(byte);
    }
  } else {
    return -1;
  }
  return bits;
}

json::object NetworkSection() {
  json::object interfaces;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) {
    Log()->warn("inventory: getifaddrs failed: {}", std::strerror(errno));
    return interfaces;
  }
  std::map<std::string, std::set<std::string>> addresses;
  std::map<std::string, std::string> macs;
  std::map<std::string, bool> up;
  for (ifaddrs* entry = list; entry != nullptr; entry = entry->ifa_next) {
    if (entry->ifa_name == nullptr) {
      continue;
    }
    const std::string name = entry->ifa_name;
    up[name] = up[name] || (entry->ifa_flags & IFF_UP) != 0;
    if (entry->ifa_addr == nullptr) {
      continue;
    }
    const int family = entry->ifa_addr->sa_family;
    if (family == AF_INET || family == AF_INET6) {
      char text[INET6_ADDRSTRLEN] = {};
      const void* raw = family == AF_INET
                            ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(entry->ifa_addr)->sin_addr)
                            : static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(entry->ifa_addr)->sin6_addr);
      if (::inet_ntop(family, raw, text, sizeof text) != nullptr) {
        const int prefix = PrefixLength(entry->ifa_netmask);
        addresses[name].insert(prefix >= 0 ? fmt::format("{}/{}", text, prefix) : std::string(text));
      }
    } else if (family == AF_PACKET) {
      const auto* link = reinterpret_cast<const sockaddr_ll*>(entry->ifa_addr);
      std::string mac;
      for (int i = 0; i < link->sll_halen && i < 8; ++i) {
        mac += fmt::format("{}{:02x}", i == 0 ? "" : ":", link->sll_addr[i]);
      }
      macs[name] = mac;
    }
  }
  ::freeifaddrs(list);
  for (const auto& [name, is_up] : up) {
    if (interfaces.size() >= 256) {
      break;
    }
    json::object interface{{"up", is_up}};
    if (auto it = macs.find(name); it != macs.end() && !it->second.empty()) {
      interface["mac"] = it->second;
    }
    json::array list_of_addresses;
    for (const auto& address : addresses[name]) {
      list_of_addresses.emplace_back(json::string(address));
    }
    interface["addresses"] = std::move(list_of_addresses);
    interfaces[CleanUtf8(name, 64)] = std::move(interface);
  }
  return interfaces;
}

// Installed packages from dpkg or rpm, whichever this system has. nullopt when neither is there.
std::optional<std::pair<std::string, std::map<std::string, std::string>>> Packages() {
  constexpr std::size_t kMaxOutput = 8 * 1024 * 1024;
  constexpr auto kTimeout = std::chrono::seconds(60);
  for (const char* dpkg : {"/usr/bin/dpkg-query", "/bin/dpkg-query"}) {
    if (::access(dpkg, X_OK) == 0) {
      // Only installed packages: the status abbreviation "ii" (others are removed or half-configured).
      auto out = RunBounded({dpkg, "-W", "-f", "${db:Status-Abbrev}\t${binary:Package}\t${Version}\n"}, kMaxOutput,
                            kTimeout);
      if (!out) {
        Log()->warn("inventory: {} failed: {}", dpkg, out.error().message());
        return std::nullopt;
      }
      std::string installed;
      ForEachLine(*out, [&](std::string_view line) {
        if (line.starts_with("ii")) {
          const auto tab = line.find('\t');
          if (tab != std::string_view::npos) {
            installed.append(line.substr(tab + 1));
            installed += '\n';
          }
        }
      });
      return std::pair{std::string("dpkg"), ParsePackageList(installed)};
    }
  }
  for (const char* rpm : {"/usr/bin/rpm", "/bin/rpm"}) {
    if (::access(rpm, X_OK) == 0) {
      auto out = RunBounded({rpm, "-qa", "--qf", "%{NAME}\t%{VERSION}-%{RELEASE}.%{ARCH}\n"}, kMaxOutput, kTimeout);
      if (!out) {
        Log()->warn("inventory: {} failed: {}", rpm, out.error().message());
        return std::nullopt;
      }
      return std::pair{std::string("rpm"), ParsePackageList(*out)};
    }
  }
  return std::nullopt;
}

}  // namespace

CpuInfo ParseCpuinfo(std::string_view text) {
  CpuInfo info;
  ForEachLine(text, [&](std::string_view line) {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      return;
    }
    const auto key = Trim(line.substr(0, colon));
    const auto value = Trim(line.substr(colon + 1));
    if (key == "processor") {
      ++info.count;
    } else if (info.model.empty() && (key == "model name" || key == "Model" || key == "Hardware" || key == "cpu")) {
      info.model = std::string(value);
    }
  });
  return info;
}

std::map<std::string, std::string> ParseOsRelease(std::string_view text) {
  std::map<std::string, std::string> fields;
  ForEachLine(text, [&](std::string_view line) {
    line = Trim(line);
    if (line.empty() || line.front() == '#') {
      return;
    }
    const auto equals = line.find('=');
    if (equals == std::string_view::npos || equals == 0) {
      return;
    }
    std::string_view value = line.substr(equals + 1);
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') && value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    std::string unescaped;
    for (std::size_t i = 0; i < value.size(); ++i) {
      if (value[i] == '\\' && i + 1 < value.size()) {
        ++i;
      }
      unescaped += value[i];
    }
    fields[std::string(line.substr(0, equals))] = std::move(unescaped);
  });
  return fields;
}

std::map<std::string, std::int64_t> ParseMeminfo(std::string_view text) {
  std::map<std::string, std::int64_t> values;
  ForEachLine(text, [&](std::string_view line) {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      return;
    }
    const auto fields = Fields(line.substr(colon + 1));
    if (fields.empty()) {
      return;
    }
    auto number = ToInt(fields[0]);
    if (!number || *number < 0) {
      return;
    }
    const bool kilobytes = fields.size() > 1 && fields[1] == "kB";
    values[std::string(Trim(line.substr(0, colon)))] = kilobytes ? *number * 1024 : *number;
  });
  return values;
}

std::vector<MountEntry> ParseMounts(std::string_view text) {
  std::vector<MountEntry> mounts;
  ForEachLine(text, [&](std::string_view line) {
    const auto fields = Fields(line);
    if (fields.size() < 3) {
      return;
    }
    mounts.push_back({DecodeOctalEscapes(fields[0]), DecodeOctalEscapes(fields[1]), std::string(fields[2])});
  });
  return mounts;
}

bool IsPseudoFilesystem(std::string_view type) {
  static const std::set<std::string_view> kPseudo = {
      "proc",      "sysfs",     "devtmpfs",  "devpts",     "tmpfs",     "cgroup",      "cgroup2",
      "securityfs", "pstore",   "bpf",       "debugfs",    "tracefs",   "mqueue",      "hugetlbfs",
      "fusectl",   "configfs",  "autofs",    "binfmt_misc", "rpc_pipefs", "nsfs",      "ramfs",
      "efivarfs",  "selinuxfs", "squashfs",  "fuse.lxcfs", "fuse.gvfsd-fuse", "fuse.portal", "nfsd",
      "sunrpc"};
  return kPseudo.contains(type);
}

std::map<std::string, std::string> ParsePackageList(std::string_view text) {
  std::map<std::string, std::string> packages;
  ForEachLine(text, [&](std::string_view line) {
    const auto tab = line.find('\t');
    if (tab == std::string_view::npos || tab == 0) {
      return;
    }
    const auto name = Trim(line.substr(0, tab));
    const auto version = Trim(line.substr(tab + 1));
    if (!name.empty()) {
      packages[std::string(name)] = std::string(version);
    }
  });
  return packages;
}

json::object CollectInventory(const InventoryOptions& options) {
  json::object inventory;
  inventory["agent"] = json::object{{"version", LIFELINE_VERSION}};
  inventory["os"] = OsSection();
  if (auto cpuinfo = ReadFileBounded("/proc/cpuinfo", 4 * 1024 * 1024)) {
    auto cpu = ParseCpuinfo(*cpuinfo);
    if (cpu.count == 0) {
      cpu.count = std::max<long>(1, ::sysconf(_SC_NPROCESSORS_ONLN));
    }
    inventory["cpu"] = json::object{{"model", Text(cpu.model)}, {"count", cpu.count}};
  }
  if (auto meminfo = ReadFileBounded("/proc/meminfo", 64 * 1024)) {
    const auto values = ParseMeminfo(*meminfo);
    json::object memory;
    if (auto it = values.find("MemTotal"); it != values.end()) {
      memory["total_bytes"] = it->second;
    }
    if (auto it = values.find("SwapTotal"); it != values.end()) {
      memory["swap_total_bytes"] = it->second;
    }
    inventory["memory"] = std::move(memory);
  }
  inventory["block_devices"] = BlockDevicesSection();
  inventory["filesystems"] = FilesystemsSection();
  inventory["network"] = NetworkSection();
  if (options.packages) {
    if (auto packages = Packages()) {
      inventory["package_manager"] = packages->first;
      json::object list;
      for (const auto& [name, version] : packages->second) {
        list[CleanUtf8(name, 256)] = Text(version, 256);
      }
      inventory["packages"] = std::move(list);
    }
  }
  FitInventory(inventory, options.payload_budget);
  return inventory;
}

void FitInventory(json::object& inventory, std::size_t budget) {
  inventory.erase("packages_omitted");
  auto* packages = inventory.if_contains("packages");
  if (packages == nullptr || !packages->is_object()) {
    return;
  }
  // Room for the envelope of the report ({"kind":"full","sha256":...,"inventory":...}).
  constexpr std::size_t kEnvelope = 256;
  if (json::serialize(inventory).size() + kEnvelope <= budget) {
    return;
  }
  std::vector<std::pair<std::string, json::value>> entries;
  for (auto& entry : packages->get_object()) {
    entries.emplace_back(std::string(entry.key()), entry.value());
  }
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  packages->get_object().clear();
  std::size_t size = json::serialize(inventory).size() + kEnvelope + 64;  // 64: "packages_omitted":N
  json::object kept;
  std::size_t index = 0;
  for (; index < entries.size(); ++index) {
    const std::size_t entry_size =
        json::serialize(json::string(entries[index].first)).size() + json::serialize(entries[index].second).size() + 2;
    if (size + entry_size > budget) {
      break;
    }
    size += entry_size;
    kept[entries[index].first] = std::move(entries[index].second);
  }
  (*packages) = std::move(kept);
  inventory["packages_omitted"] = static_cast<std::int64_t>(entries.size() - index);
}

InventoryDelta ComputeDelta(const json::object& before, const json::object& after) {
  InventoryDelta delta;
  for (const auto& entry : after) {
    const auto* old = before.if_contains(entry.key());
    if (old != nullptr && *old == entry.value()) {
      continue;
    }
    if (old == nullptr || !old->is_object() || !entry.value().is_object()) {
      delta.changed[entry.key()] = entry.value();
      continue;
    }
    json::object changed;
    for (const auto& item : entry.value().get_object()) {
      const auto* old_item = old->get_object().if_contains(item.key());
      if (old_item == nullptr || *old_item != item.value()) {
        changed[item.key()] = item.value();
      }
    }
    for (const auto& item : old->get_object()) {
      if (!entry.value().get_object().contains(item.key())) {
        delta.removed.emplace_back(json::array{json::string(entry.key()), json::string(item.key())});
      }
    }
    if (!changed.empty()) {
      delta.changed[entry.key()] = std::move(changed);
    }
  }
  for (const auto& entry : before) {
    if (!after.contains(entry.key())) {
      delta.removed.emplace_back(json::array{json::string(entry.key())});
    }
  }
  return delta;
}

json::object ApplyDelta(json::object before, const InventoryDelta& delta) {
  for (const auto& path : delta.removed) {
    if (!path.is_array() || path.get_array().empty() || !path.get_array()[0].is_string()) {
      continue;
    }
    const auto& parts = path.get_array();
    const auto section = parts[0].get_string();
    if (parts.size() == 1) {
      before.erase(section);
    } else if (auto* object = before.if_contains(section); object != nullptr && object->is_object() &&
                                                           parts[1].is_string()) {
      object->get_object().erase(parts[1].get_string());
    }
  }
  for (const auto& entry : delta.changed) {
    auto* old = before.if_contains(entry.key());
    if (old != nullptr && old->is_object() && entry.value().is_object()) {
      for (const auto& item : entry.value().get_object()) {
        old->get_object()[item.key()] = item.value();
      }
    } else {
      before[entry.key()] = entry.value();
    }
  }
  return before;
}

std::string InventoryHash(const json::object& inventory) { return Sha256Hex(CanonicalText(inventory)); }

Result<std::string> RunBounded(const std::vector<std::string>& argv, std::size_t max_bytes,
                               std::chrono::milliseconds timeout) {
  if (argv.empty()) {
    return std::make_error_code(std::errc::invalid_argument);
  }
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return std::error_code(errno, std::generic_category());
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  std::vector<char*> args;
  for (const auto& arg : argv) {
    args.push_back(const_cast<char*>(arg.c_str()));
  }
  args.push_back(nullptr);
  char path_env[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
  char locale_env[] = "LC_ALL=C";
  char* env[] = {path_env, locale_env, nullptr};
  pid_t pid = 0;
  const int spawned = ::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), env);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  if (spawned != 0) {
    ::close(pipe_fds[0]);
    return std::error_code(spawned, std::generic_category());
  }
  std::string out;
  std::error_code failure;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buffer[64 * 1024];
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      failure = std::make_error_code(std::errc::timed_out);
      break;
    }
    pollfd poll_fd{pipe_fds[0], POLLIN, 0};
    const int ready = ::poll(&poll_fd, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 1000)));
    if (ready < 0 && errno != EINTR) {
      failure = std::error_code(errno, std::generic_category());
      break;
    }
    if (ready <= 0) {
      continue;
    }
    const ssize_t got = ::read(pipe_fds[0], buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got <= 0) {
      break;  // EOF: the child closed its output
    }
    out.append(buffer, static_cast<std::size_t>(got));
    if (out.size() > max_bytes) {
      failure = std::make_error_code(std::errc::file_too_large);
      break;
    }
  }
  ::close(pipe_fds[0]);
  if (failure) {
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (failure) {
    return failure;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return std::make_error_code(std::errc::io_error);
  }
  return out;
}

InventorySource::InventorySource(InventorySourceOptions options, AgentQueue& queue, Collector collect)
    : options_(options), queue_(queue), collect_(std::move(collect)) {
  if (!collect_) {
    const bool packages = options_.packages;
    collect_ = [packages] { return CollectInventory({.packages = packages}); };
  }
}

InventorySource::~InventorySource() { Stop(); }

void InventorySource::RequestFull() {
  full_requested_ = true;
  Wake();
}

InventorySource::Sent InventorySource::Check(DetectionSink& sink, std::int64_t now_ms, bool force_full) {
  json::object current = collect_();
  const std::string current_text = CanonicalText(current);
  const std::string current_hash = Sha256Hex(current_text);

  std::optional<json::object> last;
  std::optional<std::int64_t> last_full_ms;
  if (auto stored = queue_.GetState(std::string(kStateKey)); stored && stored->has_value()) {
    boost::system::error_code ec;
    auto parsed = json::parse(**stored, ec);
    if (!ec && parsed.is_object()) {
      last = std::move(parsed.get_object());
    }
  }
  if (auto stored = queue_.GetState(std::string(kLastFullKey)); stored && stored->has_value()) {
    last_full_ms = ToInt(**stored);
  }
  const std::int64_t interval_ms = std::chrono::milliseconds(options_.interval).count();
  // Half a check of slack: a full report due a few milliseconds after this check is sent now, not a
  // whole check later.
  const std::int64_t slack_ms = std::chrono::milliseconds(options_.check_interval).count() / 2;
  bool full = force_full || !last || !last_full_ms || now_ms - *last_full_ms + slack_ms >= interval_ms;

  json::object payload;
  if (!full) {
    auto delta = ComputeDelta(*last, current);
    if (delta.empty()) {
      return Sent::kNothing;
    }
    payload = json::object{{"kind", "delta"},
                           {"base_sha256", InventoryHash(*last)},
                           {"sha256", current_hash},
                           {"changed", std::move(delta.changed)},
                           {"removed", std::move(delta.removed)}};
    if (json::serialize(payload).size() > kReportPayloadBudget) {
      full = true;  // a delta bigger than the budget: the (trimmed) full report is smaller
    }
  }
  if (full) {
    payload = json::object{{"kind", "full"}, {"sha256", current_hash}, {"inventory", current}};
  }
  protocol::Message message;
  message.type = protocol::MessageType::kInventory;
  message.timestamp_ms = now_ms;
  message.payload_json = json::serialize(payload);
  const std::size_t bytes = message.payload_json.size();
  if (!sink.Emit({std::move(message)})) {
    return Sent::kFailed;
  }
  // Stored in the queue, so it will be sent: remember it as the base of the next delta. (A crash between
  // the two writes resends this report as a delta after restart: a repeat, never a gap.)
  auto saved = queue_.SetState(std::string(kStateKey), current_text);
  if (saved && full) {
    saved = queue_.SetState(std::string(kLastFullKey), std::to_string(now_ms));
  }
  if (!saved) {
    Log()->warn("inventory: cannot save what was sent in the queue's state: {}", saved.error().message());
  }
  Log()->info("inventory: {} report queued ({} bytes)", full ? "full" : "delta", bytes);
  return full ? Sent::kFull : Sent::kDelta;
}

std::chrono::milliseconds InventorySource::Tick(DetectionSink& sink) {
  const bool forced = full_requested_.exchange(false);
  const auto sent = Check(sink, SystemClock::Instance().NowUnixMillis(), forced);
  if (sent == Sent::kFailed) {
    if (forced) {
      full_requested_ = true;
    }
    return std::chrono::seconds(30);
  }
  return options_.check_interval;
}

}  // namespace lifeline::agent
