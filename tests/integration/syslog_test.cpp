// A device that can only send syslog: a real agent listens on loopback (UDP and TCP), and messages in
// both formats (RFC 5424 and RFC 3164) over both transports become alerts through [[syslog_rules]],
// each a ticket at a real home; a clear line resolves its ticket.
#include "support/harness.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <regex>

namespace lifeline::testing {
namespace {

// The port the agent logged for `transport` ("udp"/"tcp"), or 0 when not logged yet.
int LoggedPort(const std::string& log, const std::string& transport) {
  std::smatch match;
  const std::regex line("syslog listening on " + transport + " 127\\.0\\.0\\.1:([0-9]+)");
  return std::regex_search(log, match, line) ? std::stoi(match[1]) : 0;
}

void SendTo(int type, int port, const std::string& bytes) {
  const int fd = ::socket(AF_INET, type, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

bool HasTicketFor(TestHome& home, const std::string& code, const std::string& state) {
  const boost::json::value tickets = home.Admin("/v1/tickets");
  for (const auto& t : tickets.at("tickets").as_array()) {
    const std::string text = boost::json::serialize(t);
    if (text.find(code) != std::string::npos && t.at("state").as_string() == state) {
      return true;
    }
  }
  return false;
}

TEST(Syslog, BothFormatsOverUdpAndTcpBecomeTickets) {
  TempDir dir;
  MailSink mail(dir / "mail");
  TestHome home(dir / "home", mail.port());
  home.Start();
  TestAgent agent(dir / "agent", home, "SN-SYSLOG", R"(
[syslog]
udp = "127.0.0.1:0"
tcp = "127.0.0.1:0"

[[syslog_rules]]
name = "array SIM"
pattern = 'SIM=([0-9A-F]+) (.*)'
clear_pattern = 'SIM=([0-9A-F]+) resolved'
code = "SYS-{1}"
severity = "critical"
message = "{host} {app}: {2}"
)");
  ASSERT_EQ(agent.Enroll(home.EnrollToken(agent.identity())).exit_code, 0);
  agent.Start();
  int udp = 0;
  int tcp = 0;
  ASSERT_TRUE(Eventually(
      [&] {
        const std::string log = agent.AgentLogText();
        udp = LoggedPort(log, "udp");
        tcp = LoggedPort(log, "tcp");
        return udp != 0 && tcp != 0;
      },
      std::chrono::seconds(20)))
      << agent.AgentLogText();

  SendTo(SOCK_DGRAM, udp, "<10>1 2026-11-21T10:00:00Z array-7 svp 12 - - SIM=A00001 Drive failure HDD 00-12");
  SendTo(SOCK_DGRAM, udp, "<10>Nov 21 10:00:01 array-7 svp[12]: SIM=A00002 Fan failure");
  const std::string counted = "<10>1 2026-11-21T10:00:02Z array-8 ctl - - - SIM=A00003 PSU failure";
  SendTo(SOCK_STREAM, tcp, std::to_string(counted.size()) + " " + counted);
  SendTo(SOCK_STREAM, tcp, "<10>Nov 21 10:00:03 array-8 ctl: SIM=A00004 Cache battery low\n");
  SendTo(SOCK_DGRAM, udp, "not syslog at all");  // counted and logged, nothing else

  for (const std::string code : {"SYS-A00001", "SYS-A00002", "SYS-A00003", "SYS-A00004"}) {
    ASSERT_TRUE(Eventually([&] { return HasTicketFor(home, code, "open"); }, std::chrono::seconds(30)))
        << code << "\n" << agent.AgentLogText();
  }
  EXPECT_EQ(home.Stat("tickets"), 4);
  const std::string log = agent.AgentLogText();
  EXPECT_NE(log.find("array-7 svp: Drive failure HDD 00-12"), std::string::npos) << log;
  EXPECT_NE(log.find("malformed input"), std::string::npos) << log;
  ASSERT_TRUE(Eventually([&] { return mail.Messages().size() == 4; }, std::chrono::seconds(30)));

  // The device reports one condition gone: its ticket is resolved.
  SendTo(SOCK_STREAM, tcp, "<13>1 - array-8 ctl - - - SIM=A00003 resolved\n");
  ASSERT_TRUE(Eventually([&] { return HasTicketFor(home, "SYS-A00003", "resolved"); }, std::chrono::seconds(30)))
      << boost::json::serialize(home.Admin("/v1/tickets"));
  EXPECT_TRUE(HasTicketFor(home, "SYS-A00001", "open"));

  agent.Stop();
  home.Stop();
}

}  // namespace
}  // namespace lifeline::testing
