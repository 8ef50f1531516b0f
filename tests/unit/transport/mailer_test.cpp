// SmtpMailer against a real SMTP server: scripts/mail-sink (aiosmtpd) on a loopback port, with and
// without STARTTLS and AUTH. The received .eml is read back with Python's own email parser, so the
// test checks that a real MIME reader sees the subject, recipients and body we meant.
#include "transport/mailer.h"

#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace lifeline::transport {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr const char* kPython = "/usr/bin/python3";  // the one with python3-aiosmtpd

/// Runs a shell command, returning its exit status and stdout.
std::pair<int, std::string> Shell(const std::string& command) {
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    return {-1, ""};
  }
  char buffer[4096];
  std::size_t n = 0;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) {
    output.append(buffer, n);
  }
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

std::string Quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  }
  return out + "'";
}

/// A self-signed certificate for CN=localhost with SANs localhost and 127.0.0.1, made by the
/// openssl CLI (EC keys: quick to generate).
struct TestCert {
  fs::path cert;
  fs::path key;
};
TestCert MakeCert(const fs::path& dir) {
  TestCert out{dir / "cert.pem", dir / "key.pem"};
  const auto [status, output] = Shell(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
      "-subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' -keyout " +
      Quote(out.key.string()) + " -out " + Quote(out.cert.string()) + " 2>&1");
  EXPECT_EQ(status, 0) << output;
  return out;
}

/// scripts/mail-sink as a child process on an ephemeral loopback port.
class MailSink {
 public:
  MailSink(const fs::path& dir, std::vector<std::string> extra_args) : dir_(dir) {
    const fs::path port_file = dir / "sink.port";
    std::vector<std::string> args = {
        kPython,       std::string(LIFELINE_SOURCE_DIR) + "/scripts/mail-sink",
        "--listen",    "127.0.0.1:0",
        "--port-file", port_file.string(),
        "--dir",       (dir / "mail").string()};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    std::vector<char*> argv;
    for (auto& arg : args) {
      argv.push_back(arg.data());
    }
    argv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    const std::string log = (dir / "sink.log").string();
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    const int rc = posix_spawn(&pid_, kPython, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      ADD_FAILURE() << "cannot start mail-sink: " << rc;
      pid_ = -1;
      return;
    }
    // Bounded wait for the port file (written atomically once the socket listens).
    const auto deadline = std::chrono::steady_clock::now() + 8s;
    while (std::chrono::steady_clock::now() < deadline) {
      const std::string text = testing::ReadFile(port_file);
      if (!text.empty() && text.back() == '\n') {
        port_ = std::stoi(text);
        return;
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        ADD_FAILURE() << "mail-sink exited early:\n" << testing::ReadFile(log);
        return;
      }
      std::this_thread::sleep_for(20ms);
    }
    ADD_FAILURE() << "mail-sink did not report its port:\n" << testing::ReadFile(log);
  }

  ~MailSink() {
    if (pid_ <= 0) {
      return;
    }
    kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + 3s;
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        ADD_FAILURE() << "mail-sink ignored SIGTERM";
        return;
      }
      std::this_thread::sleep_for(10ms);
    }
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "mail-sink exit status " << status << "\n"
        << testing::ReadFile(dir_ / "sink.log");
  }

  int port() const { return port_; }
  std::string url() const { return "smtp://127.0.0.1:" + std::to_string(port_); }

  /// The received messages (.eml files), waiting a bounded time for at least `count`.
  std::vector<fs::path> WaitForMessages(std::size_t count) const {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    std::vector<fs::path> found;
    while (std::chrono::steady_clock::now() < deadline) {
      found.clear();
      std::error_code ec;
      for (const auto& entry : fs::directory_iterator(dir_ / "mail", ec)) {
        const std::string name = entry.path().filename().string();
        if (entry.path().extension() == ".eml" && !name.starts_with(".")) {
          found.push_back(entry.path());
        }
      }
      if (found.size() >= count) {
        std::sort(found.begin(), found.end());
        return found;
      }
      std::this_thread::sleep_for(20ms);
    }
    return found;
  }

 private:
  fs::path dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

/// What Python's email package reads out of a stored message.
struct Parsed {
  std::string subject;
  std::string to;
  std::string from;
  std::string content_type;
  std::string body;
};
Parsed ParseWithPython(const fs::path& eml) {
  static const char* kScript =
      "import sys, email, email.policy\n"
      "m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=email.policy.default)\n"
      "out = sys.stdout.buffer\n"
      "for h in ('Subject', 'To', 'From', 'Content-Type'):\n"
      "    out.write(str(m[h]).encode() + b'\\n')\n"
      "out.write(m.get_content().encode())\n";
  const auto [status, output] =
      Shell(std::string(kPython) + " -c " + Quote(kScript) + " " + Quote(eml.string()));
  EXPECT_EQ(status, 0) << output;
  Parsed parsed;
  std::size_t pos = 0;
  for (std::string* field : {&parsed.subject, &parsed.to, &parsed.from, &parsed.content_type}) {
    const std::size_t end = output.find('\n', pos);
    if (end == std::string::npos) {
      return parsed;
    }
    *field = output.substr(pos, end - pos);
    pos = end + 1;
  }
  parsed.body = output.substr(pos);
  return parsed;
}

/// A loopback port with nothing listening: bound and released, so connecting is refused.
int UnusedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

SmtpSettings Settings(const std::string& url) {
  SmtpSettings settings;
  settings.url = url;
  settings.from = "Lifeline <lifeline@home.example>";
  settings.timeout = 5s;
  return settings;
}

Email TicketEmail() {
  return Email{.to = {"oncall@vendor.example", "lead@vendor.example"},
               .subject = "[Lifeline LL-000001] critical SIM-3A21 on ACME/site-1/SN123",
               .body =
                   "Lifeline opened ticket LL-000001.\n"
                   "Customer:      ACME\n"
                   ".\n"  // a lone dot: SMTP would end the message here without dot-stuffing
                   "Message:       disk failing\n"};
}

TEST(Mailer, SendsPlainSmtp) {
  testing::TempDir dir;
  MailSink sink(dir.path(), {});
  ASSERT_GT(sink.port(), 0);
  SmtpSettings settings = Settings(sink.url());
  settings.starttls = SmtpSettings::Tls::kOff;
  std::string detail;
  auto sent = SmtpMailer(settings).Send(TicketEmail(), &detail);
  ASSERT_TRUE(sent) << sent.error().message() << ": " << detail;

  auto messages = sink.WaitForMessages(1);
  ASSERT_EQ(messages.size(), 1u);
  const std::string raw = testing::ReadFile(messages[0]);
  EXPECT_NE(raw.find("\r\nMIME-Version: 1.0\r\n"), std::string::npos) << raw;
  EXPECT_NE(raw.find("\r\nContent-Transfer-Encoding: 8bit\r\n"), std::string::npos);
  EXPECT_NE(raw.find("Message-ID: <"), std::string::npos);
  EXPECT_NE(raw.find("@home.example>\r\n"), std::string::npos);
  EXPECT_EQ(raw.rfind("Date: ", 0), 0u);

  const Parsed parsed = ParseWithPython(messages[0]);
  EXPECT_EQ(parsed.subject, TicketEmail().subject);
  EXPECT_EQ(parsed.to, "oncall@vendor.example, lead@vendor.example");
  EXPECT_EQ(parsed.from, "Lifeline <lifeline@home.example>");
  EXPECT_EQ(parsed.content_type, "text/plain; charset=\"utf-8\"");
  EXPECT_EQ(parsed.body, TicketEmail().body);  // dot line intact, CRLF read back as LF
  // The sink saw both envelope recipients.
  const std::string log = testing::ReadFile(dir / "sink.log");
  EXPECT_NE(log.find("to <oncall@vendor.example>, <lead@vendor.example>"), std::string::npos)
      << log;
}

TEST(Mailer, EncodesNonAsciiSubjectAndKeepsUtf8Body) {
  testing::TempDir dir;
  MailSink sink(dir.path(), {});
  ASSERT_GT(sink.port(), 0);
  Email email{.to = {"ops@vendor.example"},
              .subject =
                  "Störung: Lüfter ausgefallen im Rechenzentrum Zürich — "
                  "Temperatur steigt über den Grenzwert, bitte sofort prüfen",
              .body = "Grüße aus dem Rechenzentrum\r\nzweite Zeile\n"};
  auto sent = SmtpMailer(Settings(sink.url())).Send(email);
  ASSERT_TRUE(sent);
  auto messages = sink.WaitForMessages(1);
  ASSERT_EQ(messages.size(), 1u);
  const std::string raw = testing::ReadFile(messages[0]);
  EXPECT_NE(raw.find("Subject: =?UTF-8?B?"), std::string::npos) << raw;
  const Parsed parsed = ParseWithPython(messages[0]);
  EXPECT_EQ(parsed.subject, email.subject);
  EXPECT_EQ(parsed.body, "Grüße aus dem Rechenzentrum\nzweite Zeile\n");
}

TEST(Mailer, RequiredStartTlsWithAuth) {
  testing::TempDir dir;
  const TestCert cert = MakeCert(dir.path());
  MailSink sink(dir.path(), {"--tls-cert", cert.cert.string(), "--tls-key", cert.key.string(),
                             "--require-starttls", "--auth", "lifeline:s3cret"});
  ASSERT_GT(sink.port(), 0);
  SmtpSettings settings = Settings(sink.url());
  settings.starttls = SmtpSettings::Tls::kRequired;
  settings.ca_file = cert.cert.string();
  settings.username = "lifeline";
  settings.password = "s3cret";
  std::string detail;
  auto sent = SmtpMailer(settings).Send(TicketEmail(), &detail);
  ASSERT_TRUE(sent) << detail;
  auto messages = sink.WaitForMessages(1);
  ASSERT_EQ(messages.size(), 1u);
  const Parsed parsed = ParseWithPython(messages[0]);
  EXPECT_EQ(parsed.subject, TicketEmail().subject);
  EXPECT_EQ(parsed.to, "oncall@vendor.example, lead@vendor.example");
  EXPECT_EQ(parsed.body, TicketEmail().body);

  // Wrong password: refused by the server, and the reply code reaches the caller.
  settings.password = "wrong";
  detail.clear();
  auto refused = SmtpMailer(settings).Send(TicketEmail(), &detail);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), MailErrc::kSmtpFailed);
  EXPECT_NE(detail.find("535"), std::string::npos) << detail;

  // A server certificate the client does not trust (system store only) is refused.
  settings.password = "s3cret";
  settings.ca_file.clear();
  detail.clear();
  auto untrusted = SmtpMailer(settings).Send(TicketEmail(), &detail);
  ASSERT_FALSE(untrusted);
  EXPECT_FALSE(detail.empty());
  EXPECT_EQ(sink.WaitForMessages(1).size(), 1u);  // still only the first message
}

TEST(Mailer, RequiredStartTlsFailsWhenServerOffersNone) {
  testing::TempDir dir;
  MailSink sink(dir.path(), {});
  ASSERT_GT(sink.port(), 0);
  SmtpSettings settings = Settings(sink.url());
  settings.starttls = SmtpSettings::Tls::kRequired;
  std::string detail;
  auto sent = SmtpMailer(settings).Send(TicketEmail(), &detail);
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error(), MailErrc::kSmtpFailed);
  EXPECT_FALSE(detail.empty());
  std::error_code ec;
  EXPECT_TRUE(fs::is_empty(dir / "mail", ec));  // nothing went out in clear
}

TEST(Mailer, NothingListeningFailsClearlyAndQuickly) {
  SmtpSettings settings = Settings("smtp://127.0.0.1:" + std::to_string(UnusedPort()));
  settings.timeout = 4s;
  std::string detail;
  const auto start = std::chrono::steady_clock::now();
  auto sent = SmtpMailer(settings).Send(TicketEmail(), &detail);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error(), MailErrc::kSmtpFailed);
  EXPECT_EQ(sent.error().category().name(), std::string("mail"));
  EXPECT_NE(detail.find("curl error 7"), std::string::npos) << detail;  // CURLE_COULDNT_CONNECT
  EXPECT_LT(elapsed, 4500ms);
}

TEST(Mailer, SilentServerTimesOutWithinTheSetting) {
  // A socket that listens but never greets: the kernel completes the handshake, then nothing.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  SmtpSettings settings = Settings("smtp://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)));
  settings.timeout = 1s;
  std::string detail;
  const auto start = std::chrono::steady_clock::now();
  auto sent = SmtpMailer(settings).Send(TicketEmail(), &detail);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  close(fd);
  ASSERT_FALSE(sent);
  EXPECT_NE(detail.find("curl error 28"), std::string::npos) << detail;  // CURLE_OPERATION_TIMEDOUT
  EXPECT_GE(elapsed, 900ms);
  EXPECT_LT(elapsed, 2500ms);
}

TEST(Mailer, AuthOnPlainConnectionWhenTheServerAllowsIt) {
  testing::TempDir dir;
  MailSink sink(dir.path(), {"--auth", "user:pw", "--auth-plaintext"});
  ASSERT_GT(sink.port(), 0);
  SmtpSettings settings = Settings(sink.url());
  settings.starttls = SmtpSettings::Tls::kOff;
  std::string detail;
  // Without credentials the server refuses the mail.
  auto anonymous = SmtpMailer(settings).Send(TicketEmail(), &detail);
  ASSERT_FALSE(anonymous);
  EXPECT_NE(detail.find("530"), std::string::npos) << detail;
  settings.username = "user";
  settings.password = "pw";
  auto sent = SmtpMailer(settings).Send(TicketEmail(), &detail);
  ASSERT_TRUE(sent) << detail;
  EXPECT_EQ(sink.WaitForMessages(1).size(), 1u);
}

TEST(Mailer, RefusesNonSmtpUrls) {
  testing::TempDir dir;
  testing::WriteFile(dir / "secret", "do not read me");
  std::string detail;
  auto sent =
      SmtpMailer(Settings("file://" + (dir / "secret").string())).Send(TicketEmail(), &detail);
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error(), MailErrc::kSmtpFailed);
}

// ---- Message composition -----------------------------------------------------------------------

const auto kDate = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));

TEST(ComposeMessage, HeadersAndCrlf) {
  auto message = ComposeMessage(Settings("smtp://x"), TicketEmail(), kDate, "abc@home.example");
  ASSERT_TRUE(message);
  EXPECT_EQ(message->rfind("Date: Fri, 15 Jan 2027 08:00:00 +0000\r\n", 0), 0u) << *message;
  EXPECT_NE(message->find("\r\nMessage-ID: <abc@home.example>\r\n"), std::string::npos);
  EXPECT_NE(message->find("\r\nTo: oncall@vendor.example,\r\n lead@vendor.example\r\n"),
            std::string::npos);
  EXPECT_NE(message->find("\r\nContent-Type: text/plain; charset=utf-8\r\n"), std::string::npos);
  for (std::size_t i = 0; i < message->size(); ++i) {
    if ((*message)[i] == '\n') {
      ASSERT_GT(i, 0u);
      EXPECT_EQ((*message)[i - 1], '\r') << "bare LF at " << i;
    }
  }
  EXPECT_TRUE(message->ends_with("disk failing\r\n"));
}

TEST(ComposeMessage, RejectsAddressesThatCouldInjectHeadersOrCommands) {
  const SmtpSettings settings = Settings("smtp://x");
  for (const std::string bad : {"", "no-at-sign", "a@b\r\nBcc: x@y", "a@b>", "<a@b", "a b@c",
                                "a@b,c@d", "@host", "user@"}) {
    Email email = TicketEmail();
    email.to = {bad};
    EXPECT_FALSE(ComposeMessage(settings, email, kDate, "id@x")) << bad;
  }
  Email none = TicketEmail();
  none.to.clear();
  EXPECT_EQ(ComposeMessage(settings, none, kDate, "id@x").error(), MailErrc::kInvalidMessage);
  SmtpSettings bad_from = settings;
  bad_from.from = "x@y\r\nBcc: z@w";
  EXPECT_EQ(ComposeMessage(bad_from, TicketEmail(), kDate, "id@x").error(),
            MailErrc::kInvalidMessage);
}

TEST(ComposeMessage, SubjectNewlinesBecomeSpaces) {
  Email email = TicketEmail();
  email.subject = "alert\r\nBcc: evil@example.com";
  auto message = ComposeMessage(Settings("smtp://x"), email, kDate, "id@x");
  ASSERT_TRUE(message);
  EXPECT_NE(message->find("\r\nSubject: alert  Bcc: evil@example.com\r\n"), std::string::npos)
      << *message;
  EXPECT_EQ(message->find("\r\nBcc:"), std::string::npos);
}

TEST(ComposeMessage, LongLinesAreWrappedWithinTheLimit) {
  Email email = TicketEmail();
  email.body = std::string(2500, 'x') + "\n" + std::string(1200, 'y');
  email.subject = std::string(300, 's');
  auto message = ComposeMessage(Settings("smtp://x"), email, kDate, "id@x");
  ASSERT_TRUE(message);
  std::size_t start = 0;
  std::size_t x_count = 0;
  while (start < message->size()) {
    const std::size_t end = message->find("\r\n", start);
    ASSERT_NE(end, std::string::npos);
    EXPECT_LE(end - start, 998u);
    const std::string line = message->substr(start, end - start);
    if (!line.empty() && line.find_first_not_of('x') == std::string::npos) {
      x_count += line.size();
    }
    start = end + 2;
  }
  EXPECT_EQ(x_count, 2500u);  // wrapped, not truncated
}

}  // namespace
}  // namespace lifeline::transport
