#pragma once
// Checks: things the agent tests on a schedule (a command, a built-in health probe) whose failure is an
// alert and whose passing again is a clear. A CheckSource runs its checks on its own thread, so a slow
// command never holds up another source; each [[checks.command]] gets its own CheckSource, the cheap
// built-in health checks share one.
#include "agent/alert_gate.h"
#include "agent/rules.h"
#include "agent/source.h"
#include "common/clock.h"
#include "common/result.h"

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace lifeline::agent {

/// What one run of a command produced.
struct CommandOutput {
  int exit_status = -1;    // exit code, or 128 + signal number when killed by a signal
  bool timed_out = false;  // the deadline passed: the whole process group was killed
  bool cancelled = false;  // `cancelled` said stop: the whole process group was killed
  std::string output;      // stdout and stderr together, at most max_output bytes
  bool truncated = false;  // more output than max_output (the rest was read and dropped)
};

/// Runs `argv` (argv[0] searched in PATH, no shell) in its own process group with stdin from /dev/null,
/// capturing stdout and stderr. Kills the group at `timeout` or when `cancelled` returns true (polled
/// every 100 ms). Fails (errno as a generic error) only when the process cannot be started.
[[nodiscard]] Result<CommandOutput> RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                                               std::size_t max_output = 64 * 1024,
                                               const std::function<bool()>& cancelled = {});

/// One run of a check: ok, or the alert its failure raises.
struct CheckOutcome {
  bool ok = true;
  protocol::AlertBody alert;  // when !ok: code, severity, text, source
};

class Check {
 public:
  virtual ~Check() = default;
  virtual const std::string& name() const = 0;
  virtual std::chrono::milliseconds interval() const = 0;
  virtual const GateOptions& gate() const = 0;
  /// The code a passing run clears when the agent does not know what was raised before (a restart).
  virtual const std::string& base_code() const = 0;
  /// Runs the check once. Never throws; `cancelled` says the agent is stopping.
  virtual CheckOutcome Run(const std::function<bool()>& cancelled) = 0;
};

/// Runs checks on a schedule; a failing check alerts once (subject to its gate) and clears when it
/// passes again. A check failing with a different code clears the old code and raises the new one.
class CheckSource final : public Source {
 public:
  CheckSource(std::string name, std::vector<std::unique_ptr<Check>> checks,
              const Clock& clock = SystemClock::Instance());
  ~CheckSource() override;
  std::string name() const override { return name_; }
  void Start(DetectionSink& sink) override;
  void Stop() override;
  /// Runs every check due at the clock's time; returns how long until the next is due. The thread
  /// calls this; tests call it with a FakeClock.
  std::chrono::milliseconds RunDue(DetectionSink& sink);

 private:
  struct State {
    std::int64_t next_due_ms = 0;
    std::optional<std::string> raised;  // the code of the stored, not yet cleared alert
    std::string last_key;               // gate key of the last failure (to restart its count)
  };
  void Apply(Check& check, State& state, const CheckOutcome& outcome, DetectionSink& sink);
  bool EmitOne(DetectionSink& sink, protocol::MessageType type, const protocol::AlertBody& body);
  bool Stopping();

  std::string name_;
  std::vector<std::unique_ptr<Check>> checks_;
  std::vector<State> states_;
  const Clock& clock_;
  AlertGate gate_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

/// How a command's exit status maps to a result: "0=ok 1=warning 2=critical *=error".
struct ExitStatusMap {
  std::map<int, std::optional<protocol::Severity>> by_status;  // nullopt: ok
  std::optional<protocol::Severity> otherwise = protocol::Severity::kError;
  /// Parses the map; false (and `why`) when malformed.
  static bool Parse(std::string_view text, ExitStatusMap* out, std::string* why);
  std::optional<protocol::Severity> Lookup(int status) const;
};

struct CommandCheckSpec {
  std::string name;
  std::vector<std::string> argv;  // already wrapped in /bin/sh -c for shell = true
  std::chrono::milliseconds interval{60000};
  std::chrono::milliseconds timeout{10000};
  std::string code;                          // defaults to the name
  std::string message = "{name}: exit status {status}: {output}";
  ExitStatusMap exit_map;
  RuleSet patterns;  // matched against each output line; the first match wins over the exit status
  GateOptions gate;
};

class CommandCheck final : public Check {
 public:
  explicit CommandCheck(CommandCheckSpec spec) : spec_(std::move(spec)) {}
  const std::string& name() const override { return spec_.name; }
  std::chrono::milliseconds interval() const override { return spec_.interval; }
  const GateOptions& gate() const override { return spec_.gate; }
  const std::string& base_code() const override { return spec_.code; }
  CheckOutcome Run(const std::function<bool()>& cancelled) override;

 private:
  CommandCheckSpec spec_;
};

}  // namespace lifeline::agent
