#include "agent/syslog_parser.h"
#include "agent/syslog_source.h"


#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <mutex>
#include <thread>

namespace lifeline::agent {
namespace {

// Polls `condition` every 20 ms until it holds or `timeout` passes.
bool Eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

using protocol::MessageType;
using protocol::Severity;

TEST(SyslogParser, Rfc5424) {
  auto msg = ParseSyslog(
      "<165>1 2026-11-21T10:00:00.003Z array-7 svp 1234 ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"App\\]\"] "
      "\xEF\xBB\xBFSIM=3A21F4 Drive failure\n");
  ASSERT_TRUE(msg);
  EXPECT_TRUE(msg->rfc5424);
  EXPECT_EQ(msg->facility, 20);
  EXPECT_EQ(msg->severity, 5);
  EXPECT_EQ(msg->timestamp, "2026-11-21T10:00:00.003Z");
  EXPECT_EQ(msg->host, "array-7");
  EXPECT_EQ(msg->app, "svp");
  EXPECT_EQ(msg->procid, "1234");
  EXPECT_EQ(msg->msgid, "ID47");
  EXPECT_EQ(msg->text, "SIM=3A21F4 Drive failure");
  auto nil = ParseSyslog("<14>1 - - - - - -");
  ASSERT_TRUE(nil);
  EXPECT_EQ(nil->host, "");
  EXPECT_EQ(nil->text, "");
}

TEST(SyslogParser, Rfc3164) {
  auto msg = ParseSyslog("<34>Oct 11 22:14:15 mymachine su[77]: 'su root' failed for lonvick on /dev/pts/8");
  ASSERT_TRUE(msg);
  EXPECT_FALSE(msg->rfc5424);
  EXPECT_EQ(msg->facility, 4);
  EXPECT_EQ(msg->severity, 2);
  EXPECT_EQ(msg->timestamp, "Oct 11 22:14:15");
  EXPECT_EQ(msg->host, "mymachine");
  EXPECT_EQ(msg->app, "su");
  EXPECT_EQ(msg->procid, "77");
  EXPECT_EQ(msg->text, "'su root' failed for lonvick on /dev/pts/8");
  auto no_host = ParseSyslog("<13>Feb  5 17:32:18 kernel: link down");
  ASSERT_TRUE(no_host);
  EXPECT_EQ(no_host->host, "");
  EXPECT_EQ(no_host->app, "kernel");
  EXPECT_EQ(no_host->text, "link down");
  auto bare = ParseSyslog("<13>just some text");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->text, "just some text");
}

TEST(SyslogParser, MalformedIsAnErrorNotACrash) {
  for (std::string_view bad : {"", "<", "<>", "<999>x", "no pri", "<1a>x", "<013>x", "<12", "<1>1 h a p m [unterminated"}) {
    EXPECT_FALSE(ParseSyslog(bad)) << bad;
  }
  // Every prefix of a valid message, and random bytes, are handled without crashing.
  const std::string good = "<165>1 2026-11-21T10:00:00Z h a p m [x a=\"b\"] text";
  for (std::size_t i = 0; i <= good.size(); ++i) {
    (void)ParseSyslog(good.substr(0, i));
  }
  std::string noise;
  for (int i = 0; i < 5000; ++i) {
    noise.push_back(static_cast<char>((i * 7919) % 256));
    (void)ParseSyslog(noise);
  }
}

TEST(SyslogFramer, OctetCountingAndNewlines) {
  SyslogFramer framer(100);
  framer.Feed("11 <13>hello a");
  EXPECT_EQ(framer.Next(), "<13>hello a");
  framer.Feed("<13>line one\n<13>li");
  EXPECT_EQ(framer.Next(), "<13>line one");
  EXPECT_EQ(framer.Next(), std::nullopt);
  framer.Feed("ne two\r\n\n5 <1>ab");
  EXPECT_EQ(framer.Next(), "<13>line two\r");
  EXPECT_EQ(framer.Next(), "<1>ab");
  EXPECT_FALSE(framer.broken());
}

TEST(SyslogFramer, BoundsMessages) {
  SyslogFramer lines(10);
  lines.Feed(std::string(25, 'x') + "\n<1>ok\n");
  EXPECT_EQ(lines.Next(), std::string(10, 'x'));
  EXPECT_EQ(lines.Next(), "<1>ok");
  EXPECT_EQ(lines.cut(), 1u);
  SyslogFramer counted(10);
  counted.Feed("99999 <1>x");
  EXPECT_EQ(counted.Next(), std::nullopt);
  EXPECT_TRUE(counted.broken());
}

class RecordingSink final : public DetectionSink {
 public:
  bool Emit(std::vector<protocol::Message> drafts, std::optional<std::pair<std::string, FilePosition>>) override {
    std::lock_guard lock(mutex_);
    for (auto& d : drafts) {
      messages_.push_back(std::move(d));
    }
    return true;
  }
  std::vector<protocol::Message> Messages() {
    std::lock_guard lock(mutex_);
    return messages_;
  }

 private:
  std::mutex mutex_;
  std::vector<protocol::Message> messages_;
};

int Connect(int type, int port) {
  const int fd = ::socket(AF_INET, type, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  return fd;
}

void Send(int fd, std::string_view bytes) {
  ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
}

std::unique_ptr<SyslogSource> OpenSource(SyslogOptions options, std::vector<GateOptions> gates = {}) {
  std::string error;
  LogRule rule{"sim", R"(SIM=([0-9A-F]+) (.*))", "SIM-{1}", Severity::kCritical, "{host}/{app} ({severity}): {2}"};
  rule.clear_pattern = R"(SIM=([0-9A-F]+) resolved)";
  auto rules = RuleSet::Compile({rule}, &error);
  EXPECT_TRUE(rules) << error;
  auto source = SyslogSource::Open(std::move(options), std::move(*rules), std::move(gates), &error);
  EXPECT_TRUE(source) << error;
  return source ? std::move(*source) : nullptr;
}

TEST(SyslogSource, UdpAndTcpMessagesBecomeAlertsAndClears) {
  auto source = OpenSource({.udp = "127.0.0.1:0", .tcp = "127.0.0.1:0"});
  ASSERT_TRUE(source);
  ASSERT_NE(source->udp_port(), 0);
  ASSERT_NE(source->tcp_port(), 0);
  RecordingSink sink;
  source->Start(sink);

  const int udp = Connect(SOCK_DGRAM, source->udp_port());
  Send(udp, "<10>1 2026-11-21T10:00:00Z array-7 svp - - - SIM=AAA111 Drive failure");
  Send(udp, "garbage without a header");
  const int tcp = Connect(SOCK_STREAM, source->tcp_port());
  Send(tcp, "<11>Nov 21 10:00:01 array-8 ctl[5]: SIM=BBB222 Fan failure\n");
  const std::string counted = "<13>1 - array-9 svp - - - SIM=CCC333 PSU failure";
  Send(tcp, std::to_string(counted.size()) + " " + counted);
  Send(tcp, "<13>1 - array-8 ctl - - - SIM=BBB222 resolved\n");

  ASSERT_TRUE(Eventually([&] { return sink.Messages().size() == 4; }, std::chrono::seconds(4)));
  const auto messages = sink.Messages();
  EXPECT_EQ(messages[0].type, MessageType::kAlert);
  EXPECT_EQ(messages[0].alert.code, "SIM-AAA111");
  EXPECT_EQ(messages[0].alert.severity, Severity::kCritical);
  EXPECT_EQ(messages[0].alert.text, "array-7/svp (crit): Drive failure");
  EXPECT_EQ(messages[0].alert.source, "syslog array-7");
  EXPECT_EQ(messages[1].alert.code, "SIM-BBB222");
  EXPECT_EQ(messages[1].alert.text, "array-8/ctl (err): Fan failure");
  EXPECT_EQ(messages[2].alert.code, "SIM-CCC333");
  EXPECT_EQ(messages[3].type, MessageType::kClear);
  EXPECT_EQ(messages[3].alert.code, "SIM-BBB222");
  EXPECT_EQ(source->malformed(), 1u);
  ::close(udp);
  ::close(tcp);
  source->Stop();
}

TEST(SyslogSource, BadOctetCountClosesOnlyThatConnection) {
  auto source = OpenSource({.tcp = "127.0.0.1:0"});
  ASSERT_TRUE(source);
  RecordingSink sink;
  source->Start(sink);
  const int bad = Connect(SOCK_STREAM, source->tcp_port());
  Send(bad, "999999999 <1>x");
  char byte;
  EXPECT_EQ(::recv(bad, &byte, 1, 0), 0);  // closed by the agent
  const int good = Connect(SOCK_STREAM, source->tcp_port());
  Send(good, "<1>1 - h a - - - SIM=DDD444 ok\n");
  ASSERT_TRUE(Eventually([&] { return sink.Messages().size() == 1; }, std::chrono::seconds(4)));
  EXPECT_EQ(source->malformed(), 1u);
  ::close(bad);
  ::close(good);
}

TEST(SyslogSource, ConnectionsAreBounded) {
  auto source = OpenSource({.tcp = "127.0.0.1:0", .max_connections = 2});
  ASSERT_TRUE(source);
  RecordingSink sink;
  source->Start(sink);
  const int a = Connect(SOCK_STREAM, source->tcp_port());
  const int b = Connect(SOCK_STREAM, source->tcp_port());
  Send(a, "<1>x\n");
  Send(b, "<1>x\n");
  ASSERT_TRUE(Eventually([&] { return source->received() == 2; }, std::chrono::seconds(4)));
  const int c = Connect(SOCK_STREAM, source->tcp_port());
  char byte;
  EXPECT_EQ(::recv(c, &byte, 1, 0), 0);  // refused: closed at once
  for (int fd : {a, b, c}) {
    ::close(fd);
  }
}

TEST(SyslogSource, AddressesAreCheckedAtStart) {
  std::string error;
  EXPECT_FALSE(SyslogSource::Open({.udp = "localhost:514"}, RuleSet(), {}, &error));
  EXPECT_NE(error.find("localhost:514"), std::string::npos) << error;
  EXPECT_FALSE(SyslogSource::Open({}, RuleSet(), {}, &error));
  auto first = OpenSource({.tcp = "127.0.0.1:0"});
  ASSERT_TRUE(first);
  EXPECT_FALSE(SyslogSource::Open({.tcp = "127.0.0.1:" + std::to_string(first->tcp_port())}, RuleSet(), {}, &error));
  EXPECT_NE(error.find("cannot listen"), std::string::npos) << error;
}

}  // namespace
}  // namespace lifeline::agent
