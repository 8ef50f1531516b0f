#include "agent/command_check.h"

#include "common/log.h"

#include <fmt/format.h>

#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <sstream>

extern char** environ;

namespace lifeline::agent {
namespace {

std::error_code Errno(int value) { return {value, std::generic_category()}; }

// Closes a file descriptor when it goes out of scope.
struct Fd {
  int fd = -1;
  ~Fd() { Reset(); }
  void Reset() {
    if (fd >= 0) {
      ::close(fd);
      fd = -1;
    }
  }
};

int StatusOf(int wait_status) {
  if (WIFEXITED(wait_status)) {
    return WEXITSTATUS(wait_status);
  }
  if (WIFSIGNALED(wait_status)) {
    return 128 + WTERMSIG(wait_status);
  }
  return -1;
}

std::string Trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) {
    return "";
  }
  const auto last = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(first, last - first + 1));
}

}  // namespace

Result<CommandOutput> RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                                 std::size_t max_output, const std::function<bool()>& cancelled) {
  if (argv.empty()) {
    return Fail(Errno(EINVAL));
  }
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return Fail(Errno(errno));
  }
  Fd read_end{pipe_fds[0]};
  Fd write_end{pipe_fds[1]};

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, write_end.fd, 1);
  posix_spawn_file_actions_adddup2(&actions, write_end.fd, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Its own process group, so a timeout kills the command and everything it started; default signal
  // handling and an empty mask, whatever the agent's threads block.
  sigset_t empty;
  sigemptyset(&empty);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD}) {
    sigaddset(&defaults, sig);
  }
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);

  std::vector<char*> args;
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  pid_t pid = -1;
  const int spawned = ::posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (spawned != 0) {
    return Fail(Errno(spawned));
  }
  write_end.Reset();  // EOF on the read end once the command (and its children) close theirs

  CommandOutput out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool open = true;
  bool exited = false;
  int wait_status = 0;
  char buffer[4096];
  while (true) {
    if (!exited) {
      const pid_t done = ::waitpid(pid, &wait_status, WNOHANG);
      exited = done == pid;
    }
    if (exited && !open) {
      break;
    }
    const auto now = std::chrono::steady_clock::now();
    const bool stop = cancelled && cancelled();
    if (now >= deadline || stop) {
      out.timed_out = !stop;
      out.cancelled = stop;
      ::kill(-pid, SIGKILL);
      if (!exited) {
        ::waitpid(pid, &wait_status, 0);
      }
      break;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
    if (!open) {
      // The output is closed but the command still runs: look again shortly.
      ::usleep(static_cast<useconds_t>(std::min<std::int64_t>(left, 10) * 1000));
      continue;
    }
    pollfd p{read_end.fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left, exited ? 10 : 100)));
    if (ready <= 0) {
      continue;
    }
    const ssize_t n = ::read(read_end.fd, buffer, sizeof(buffer));
    if (n > 0) {
      const std::size_t room = max_output > out.output.size() ? max_output - out.output.size() : 0;
      out.output.append(buffer, std::min(room, static_cast<std::size_t>(n)));
      out.truncated = out.truncated || static_cast<std::size_t>(n) > room;
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
      open = false;
    }
  }
  out.exit_status = StatusOf(wait_status);
  return out;
}

bool ExitStatusMap::Parse(std::string_view text, ExitStatusMap* out, std::string* why) {
  ExitStatusMap map;
  std::istringstream words{std::string(text)};
  for (std::string word; words >> word;) {
    const auto eq = word.find('=');
    if (eq == std::string::npos || eq == 0) {
      *why = fmt::format("'{}' is not STATUS=LEVEL", word);
      return false;
    }
    const std::string level = word.substr(eq + 1);
    std::optional<protocol::Severity> severity;
    if (level != "ok") {
      severity = protocol::ParseSeverity(level);
      if (!severity) {
        *why = fmt::format("'{}': level must be ok, info, warning, error or critical", word);
        return false;
      }
    }
    const std::string status = word.substr(0, eq);
    if (status == "*") {
      map.otherwise = severity;
      continue;
    }
    int value = 0;
    const auto [end, ec] = std::from_chars(status.data(), status.data() + status.size(), value);
    if (ec != std::errc() || end != status.data() + status.size() || value < 0 || value > 255) {
      *why = fmt::format("'{}': the status must be 0..255 or *", word);
      return false;
    }
    map.by_status[value] = severity;
  }
  *out = std::move(map);
  return true;
}

std::optional<protocol::Severity> ExitStatusMap::Lookup(int status) const {
  const auto found = by_status.find(status);
  return found != by_status.end() ? found->second : otherwise;
}

CheckOutcome CommandCheck::Run(const std::function<bool()>& cancelled) {
  CheckOutcome outcome;
  const std::string source = "check " + spec_.name;
  auto ran = RunCommand(spec_.argv, spec_.timeout, 64 * 1024, cancelled);
  if (!ran) {
    outcome.ok = false;
    outcome.alert = {spec_.code, protocol::Severity::kError,
                     fmt::format("{}: cannot run '{}': {}", spec_.name, spec_.argv[0], ran.error().message()), source};
  } else if (ran->cancelled) {
    return outcome;  // the agent is stopping: no verdict
  } else if (ran->timed_out) {
    outcome.ok = false;
    outcome.alert = {spec_.code, protocol::Severity::kError,
                     fmt::format("{}: no result within {} ms (killed)", spec_.name, spec_.timeout.count()), source};
  } else {
    const std::string status = std::to_string(ran->exit_status);
    const std::string output = Trim(ran->output);
    const std::vector<TemplateValue> values = {{"name", spec_.name}, {"status", status}, {"output", output}};
    std::istringstream lines(ran->output);
    for (std::string line; std::getline(lines, line);) {
      if (auto match = spec_.patterns.Evaluate(line, source, values); match && !match->clear) {
        outcome.ok = false;
        outcome.alert = std::move(match->alert);
        return outcome;
      }
    }
    if (const auto severity = spec_.exit_map.Lookup(ran->exit_status)) {
      outcome.ok = false;
      outcome.alert = {spec_.code, *severity,
                       CleanText(ExpandTemplate(spec_.message, values, RuleSet::kMaxTextBytes), RuleSet::kMaxTextBytes),
                       source};
    }
  }
  outcome.alert.code = CleanText(outcome.alert.code, RuleSet::kMaxCodeBytes);
  outcome.alert.source = CleanText(outcome.alert.source, RuleSet::kMaxSourceBytes);
  outcome.alert.text = CleanText(outcome.alert.text, RuleSet::kMaxTextBytes);
  return outcome;
}

CheckSource::CheckSource(std::string name, std::vector<std::unique_ptr<Check>> checks, const Clock& clock)
    : name_(std::move(name)), checks_(std::move(checks)), states_(checks_.size()), clock_(clock), gate_(clock) {}

CheckSource::~CheckSource() { Stop(); }

void CheckSource::Start(DetectionSink& sink) {
  thread_ = std::thread([this, &sink] {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      lock.unlock();
      const auto wait = RunDue(sink);
      lock.lock();
      wake_.wait_for(lock, wait, [this] { return stopping_; });
    }
  });
}

void CheckSource::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

bool CheckSource::Stopping() {
  std::lock_guard lock(mutex_);
  return stopping_;
}

std::chrono::milliseconds CheckSource::RunDue(DetectionSink& sink) {
  std::int64_t next = std::numeric_limits<std::int64_t>::max();
  for (std::size_t i = 0; i < checks_.size(); ++i) {
    State& state = states_[i];
    if (clock_.NowUnixMillis() >= state.next_due_ms) {
      const CheckOutcome outcome = checks_[i]->Run([this] { return Stopping(); });
      if (Stopping()) {
        break;
      }
      Apply(*checks_[i], state, outcome, sink);
      state.next_due_ms = clock_.NowUnixMillis() + checks_[i]->interval().count();
    }
    next = std::min(next, state.next_due_ms);
  }
  const std::int64_t wait = next - clock_.NowUnixMillis();
  return std::chrono::milliseconds(std::clamp<std::int64_t>(wait, 10, 3600 * 1000));
}

bool CheckSource::EmitOne(DetectionSink& sink, protocol::MessageType type, const protocol::AlertBody& body) {
  protocol::Message draft;
  draft.type = type;
  draft.timestamp_ms = clock_.NowUnixMillis();
  draft.alert = body;
  return sink.Emit({std::move(draft)});
}

void CheckSource::Apply(Check& check, State& state, const CheckOutcome& outcome, DetectionSink& sink) {
  auto log = log::Get("agent");
  const std::string source = "check " + check.name();
  const auto key_of = [&](const std::string& code) { return check.name() + "\n" + code; };
  const auto clear = [&](const std::string& code, const std::string& text) {
    const protocol::AlertBody body{code, protocol::Severity::kInfo, text, source};
    if (!EmitOne(sink, protocol::MessageType::kClear, body)) {
      return false;  // tried again at the next run
    }
    gate_.MarkCleared(key_of(code));
    log->info("clear {}: {}", code, text);
    return true;
  };
  if (outcome.ok) {
    if (state.raised) {
      if (clear(*state.raised, fmt::format("{}: passes again", check.name()))) {
        state.raised.reset();
      }
    } else if (gate_.ShouldClear(key_of(check.base_code()))) {
      // Nothing known (first run since start): a ticket raised before a restart still gets its clear.
      (void)clear(check.base_code(), fmt::format("{}: passes", check.name()));
    }
    if (!state.last_key.empty()) {
      gate_.ResetCount(state.last_key);  // min_count counts failures in a row
    }
    return;
  }
  const std::string& code = outcome.alert.code;
  if (state.raised == code) {
    return;  // alerted already: once per failure, not once per run
  }
  if (state.raised) {
    if (!clear(*state.raised, fmt::format("{}: now fails differently ({})", check.name(), code))) {
      return;
    }
    state.raised.reset();
  }
  state.last_key = key_of(code);
  if (!gate_.Admit(state.last_key, check.gate())) {
    return;
  }
  if (!EmitOne(sink, protocol::MessageType::kAlert, outcome.alert)) {
    return;  // the next run tries again
  }
  gate_.MarkAlerted(state.last_key);
  state.raised = code;
  log->info("alert {} ({}) from {}: {}", code, protocol::ToString(outcome.alert.severity), source,
            outcome.alert.text);
}

}  // namespace lifeline::agent
