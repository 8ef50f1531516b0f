#include "cli/connect_command.h"

#include "cli/commands.h"
#include "cli/signals.h"
#include "common/clock.h"
#include "common/log.h"
#include "transport/http_client.h"
#include "tunnel/carrier.h"
#include "tunnel/splice.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>

#include <atomic>
#include <csignal>
#include <iostream>
#include <memory>
#include <thread>

namespace lifeline::cli {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using asio::ip::tcp;

constexpr std::string_view kProgram = "lifeline connect";

// "https://host:9456/..." → "host" (brackets kept for IPv6).
std::string HostOf(const std::string& url) {
  std::string rest = url.substr(url.find("://") == std::string::npos ? 0 : url.find("://") + 3);
  rest = rest.substr(0, rest.find('/'));
  if (rest.starts_with('[')) {
    return rest.substr(0, rest.find(']') + 1);
  }
  return rest.substr(0, rest.find(':'));
}

bool ParseListen(const std::string& listen, tcp::endpoint* out) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return false;
  }
  std::string host = listen.substr(0, colon);
  if (host.starts_with('[') && host.ends_with(']')) {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "localhost") {
    host = "127.0.0.1";
  }
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  int port = 0;
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (...) {
    return false;
  }
  if (ec || port < 0 || port > 65535) {
    return false;
  }
  *out = tcp::endpoint(address, static_cast<std::uint16_t>(port));
  return true;
}

// One session: accepts local connections and carries each to the home over its own WebSocket.
class LocalForwarder : public std::enable_shared_from_this<LocalForwarder> {
 public:
  LocalForwarder(asio::io_context& io, tcp::acceptor acceptor, tunnel::DialOptions dial)
      : io_(io), acceptor_(std::move(acceptor)), dial_(std::move(dial)) {}

  void Start() { Accept(); }
  void Stop() {
    boost::system::error_code ec;
    acceptor_.close(ec);
  }
  std::uint64_t connections() const { return connections_; }

 private:
  void Accept() {
    acceptor_.async_accept([self = shared_from_this()](boost::system::error_code ec, tcp::socket socket) {
      if (ec) {
        return;  // closed
      }
      self->Forward(std::move(socket));
      self->Accept();
    });
  }

  void Forward(tcp::socket socket) {
    const std::uint64_t n = ++connections_;
    auto local = std::shared_ptr<tunnel::ByteStream>(tunnel::MakeTcpByteStream(std::move(socket)));
    tunnel::AsyncDial(io_.get_executor(), dial_,
                      [self = shared_from_this(), local, n](Result<std::unique_ptr<tunnel::ByteStream>> remote) {
                        if (!remote) {
                          std::cerr << fmt::format("{}: connection {}: {}\n", kProgram, n,
                                                   tunnel::DescribeDialError(self->dial_, remote.error()));
                          local->Close();
                          return;
                        }
                        std::cerr << fmt::format("{}: connection {} open\n", kProgram, n);
                        tunnel::Splice(local, std::shared_ptr<tunnel::ByteStream>(std::move(*remote)),
                                       [n](const tunnel::SpliceResult& result) {
                                         std::cerr << fmt::format(
                                             "{}: connection {} closed: {} bytes sent, {} received{}\n", kProgram, n,
                                             result.a_to_b, result.b_to_a,
                                             result.error ? " (" + result.error.message() + ")" : "");
                                       });
                      });
  }

  asio::io_context& io_;
  tcp::acceptor acceptor_;
  tunnel::DialOptions dial_;
  std::atomic<std::uint64_t> connections_{0};
};

// The home's current record of a session (GET /v1/sessions/{id}), quietly: the caller decides what a
// failure means. Status 0 when the home could not be reached.
struct SessionState {
  int status = 0;
  json::object record;
};
SessionState FetchSession(const AdminConnection& connection, const transport::ProxySettings& proxy,
                          const std::string& token, const std::string& id) {
  transport::HttpClient client(transport::ClientTls{.ca_file = connection.ca_file});
  client.SetProxy(proxy);
  auto response = client.Send({.method = "GET",
                               .url = connection.home_url + "/v1/sessions/" + id,
                               .headers = {{"Authorization", "Bearer " + token}}});
  SessionState state;
  if (!response) {
    return state;
  }
  state.status = response->status;
  boost::system::error_code ec;
  auto body = json::parse(response->body, ec);
  if (!ec && body.is_object()) {
    state.record = body.get_object();
  }
  return state;
}

std::string TimeOfMs(const std::string& ms_text) {
  try {
    return FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(std::stoll(ms_text))));
  } catch (...) {
    return "an unknown time";
  }
}

constexpr std::string_view kPendingApproval = "pending approval";

enum class Waited { kOpen, kEnded, kInterrupted };

// The customer's policy asks an approver first: polls the session every 500 ms until it opens or
// ends. Ctrl-C (SIGINT/SIGTERM, blocked here and taken synchronously) stops waiting. The signals stay
// blocked on return; the caller unblocks them once its own handler is in place, so a signal that came
// meanwhile is not lost.
Waited WaitForApproval(const ConnectOptions& options, const transport::ProxySettings& proxy, const std::string& token,
                       const std::string& id, json::object* session, std::string* outcome) {
  std::cout << fmt::format("waiting for approval of session {} (expires at {})\n", id,
                           TimeOfMs(JsonText(*session, "approval_expires_ms")))
            << std::flush;
  // The gateway ends the session at its deadline itself; past that (plus a margin for a slow home),
  // an unreachable home cannot make us wait for ever.
  std::int64_t expires_ms = 0;
  try {
    expires_ms = std::stoll(JsonText(*session, "approval_expires_ms"));
  } catch (...) {
  }
  const std::int64_t give_up_ms = std::max(expires_ms, SystemClock::Instance().NowUnixMillis()) + 60'000;
  std::string last_problem;
  while (SystemClock::Instance().NowUnixMillis() < give_up_ms) {
    if (WaitForStopSignal(std::chrono::milliseconds(500))) {
      return Waited::kInterrupted;
    }
    auto state = FetchSession(options.connection, proxy, token, id);
    if (state.status == 200) {
      const std::string now = JsonText(state.record, "outcome");
      if (now == "open") {
        for (const auto& [key, value] : state.record) {
          (*session)[key] = value;  // the record as opened (expires_at ...), keeping the home's additions
        }
        return Waited::kOpen;
      }
      if (now != kPendingApproval) {
        *outcome = now;
        return Waited::kEnded;
      }
      continue;
    }
    if (state.status == 404) {
      *outcome = "the home no longer knows the session";
      return Waited::kEnded;
    }
    const std::string problem = state.status == 0 ? std::string("the home does not answer")
                                                  : fmt::format("the home answered {}: {}", state.status,
                                                                JsonText(state.record, "message"));
    if (problem != last_problem) {
      std::cerr << fmt::format("{}: still waiting; {}\n", kProgram, problem);
      last_problem = problem;
    }
  }
  *outcome = "no answer from the home about the approval";
  return Waited::kEnded;
}

}  // namespace

CLI::App* AddConnectCommand(CLI::App& app, ConnectOptions& options) {
  auto* command = app.add_subcommand(
      "connect",
      "Open a remote session to a device's application through its gateway: a local port where each "
      "connection becomes a stream home -> gateway -> device. The gateway decides (only applications "
      "registered for the device are reachable), enforces the session's time limit and idle timeout, and "
      "keeps the audit record. Ends with Ctrl-C, or when the customer ends the session at the gateway.");
  AddAdminOptions(command, options.connection);
  command->add_option("--device", options.device, "Device serial (or customer/site/serial when ambiguous)")
      ->required();
  command->add_option("--app", options.app, "Application registered for the device at its gateway: ssh, https, ...")
      ->required();
  command->add_option("--reason", options.reason, "Why: service request number and purpose (audited)")->required();
  command->add_option("--service-request", options.service_request,
                      "Service request number (e.g. SR-1234), shown to the customer's approvers when their policy "
                      "asks for approval, and audited");
  command->add_option("--listen", options.listen,
                      "Local address for the session, host:port (port 0 picks one; it is printed)")
      ->capture_default_str();
  command->add_option("--sessions-url", options.sessions_url,
                      "wss://host:port of the home's sessions port (default: the --home host on the port the "
                      "home names)");
  return command;
}

int RunConnect(const ConnectOptions& options) {
  tcp::endpoint listen;
  if (!ParseListen(options.listen, &listen)) {
    std::cerr << kProgram << ": --listen must be host:port with an IP address, e.g. 127.0.0.1:2222\n";
    return kExitUsage;
  }
  std::string problem;
  auto token = LoadAdminToken(options.connection, &problem);
  if (!token) {
    std::cerr << kProgram << ": " << problem << "\n";
    return kExitUsage;
  }
  const auto proxy = AdminProxy(options.connection, &problem);
  if (!proxy) {
    std::cerr << kProgram << ": " << problem << "\n";
    return kExitUsage;
  }
  // 1. Ask the home for the session; the device's gateway decides.
  json::object session;
  json::object ask{{"device", options.device}, {"app", options.app}, {"reason", options.reason}};
  if (!options.service_request.empty()) {
    ask["service_request"] = options.service_request;
  }
  // Stop signals are taken synchronously while waiting for an approval (see WaitForApproval).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  const int opened = AdminCall(options.connection, kProgram, "POST", "/v1/sessions", json::serialize(ask),
                               [&session](const json::value& answer) {
                                 if (answer.is_object()) {
                                   session = answer.get_object();
                                 }
                               });
  if (opened != kExitOk) {
    return opened;
  }
  const std::string id = JsonText(session, "id");
  auto end_session = [&] {
    (void)AdminCall(options.connection, kProgram, "DELETE", "/v1/sessions/" + id, "", [](const json::value&) {});
  };
  if (JsonText(session, "outcome") == kPendingApproval) {
    std::string outcome;
    switch (WaitForApproval(options, *proxy, *token, id, &session, &outcome)) {
      case Waited::kOpen:
        std::cout << fmt::format("session {} approved\n", id) << std::flush;
        break;
      case Waited::kEnded:
        std::cout << fmt::format("session {} ended: {}\n", id, outcome);
        return kExitFailure;
      case Waited::kInterrupted:
        end_session();
        std::cout << fmt::format("session {} ended by you while it waited for approval\n", id);
        return kExitFailure;
    }
  }
  std::string sessions_url = options.sessions_url;
  if (sessions_url.empty()) {
    sessions_url = fmt::format("wss://{}:{}", HostOf(options.connection.home_url), JsonText(session, "sessions_port"));
  }
  while (sessions_url.ends_with('/')) {
    sessions_url.pop_back();
  }
  tunnel::DialOptions dial;
  dial.endpoint = sessions_url + JsonText(session, "stream_path");
  dial.ca_file = options.connection.ca_file;
  dial.proxy = *proxy;  // each local connection's WebSocket goes the same way as the API calls
  dial.headers = {{"Authorization", "Bearer " + *token}};

  // 2. The local port.
  asio::io_context io;
  tcp::acceptor acceptor(io);
  boost::system::error_code ec;
  acceptor.open(listen.protocol(), ec);
  if (!ec) {
    acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    acceptor.bind(listen, ec);
  }
  if (!ec) {
    acceptor.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    std::cerr << fmt::format("{}: cannot listen on {}: {}\n", kProgram, options.listen, ec.message());
    end_session();
    return kExitFailure;
  }
  const auto bound = acceptor.local_endpoint();
  std::cout << fmt::format("session {} open: {} on {} through gateway {}; ends at the latest at {}\n", id,
                           options.app, JsonText(session, "device"), JsonText(session, "gateway"),
                           JsonText(session, "expires_at"))
            << fmt::format("listening on {}:{}\n", bound.address().to_string(), bound.port()) << std::flush;
  auto forwarder = std::make_shared<LocalForwarder>(io, std::move(acceptor), dial);
  forwarder->Start();

  // 3. Until Ctrl-C, or the session ends elsewhere (the customer at the gateway, its time limit).
  std::string ended_outcome;
  std::atomic<bool> stop{false};
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int) {
    stop = true;
    forwarder->Stop();
    io.stop();
  });
  // The handler is in place: a Ctrl-C that came while the signals were blocked arrives now.
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
  std::thread watcher([&] {
    while (!stop) {
      for (int i = 0; i < 20 && !stop; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      if (stop) {
        break;
      }
      AdminConnection quiet = options.connection;
      std::string outcome;
      (void)AdminCall(quiet, kProgram, "GET", "/v1/sessions/" + id, "", [&outcome](const json::value& answer) {
        if (answer.is_object()) {
          outcome = JsonText(answer.get_object(), "outcome");
        }
      });
      if (!outcome.empty() && outcome != "open") {
        ended_outcome = outcome;
        stop = true;
        asio::post(io, [&] {
          forwarder->Stop();
          io.stop();
        });
      }
    }
  });
  io.run();
  stop = true;
  watcher.join();
  if (!ended_outcome.empty()) {
    std::cout << fmt::format("session {} ended: {}\n", id, ended_outcome);
    return kExitFailure;
  }
  end_session();
  std::cout << fmt::format("session {} ended by you after {} connection(s)\n", id, forwarder->connections());
  return kExitOk;
}

}  // namespace lifeline::cli
