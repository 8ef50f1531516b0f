// Configuration files: every built-in redaction pattern, configured patterns, private key blocks,
// nothing secret surviving, non-secrets untouched byte for byte, and the source sending only changes.
#include "agent/config_report.h"

#include "support/temp_dir.h"

#include <boost/json.hpp>
#include <gtest/gtest.h>

namespace lifeline::agent {
namespace {

using lifeline::testing::TempDir;
using lifeline::testing::WriteFile;
namespace json = boost::json;

Redactor Make(const std::vector<std::string>& extra = {}) {
  std::string error;
  auto redactor = Redactor::Compile(extra, &error);
  EXPECT_TRUE(redactor) << error;
  return std::move(*redactor);
}

struct Case {
  std::string line;
  std::string secret;
};

TEST(Redactor, EveryBuiltInPatternHidesItsSecret) {
  const std::vector<Case> cases = {
      {"password=hunter2-very-secret", "hunter2-very-secret"},
      {"db_password = 'S3cr3t!pw'", "S3cr3t!pw"},
      {"  \"Password\": \"pa55w0rd\",", "pa55w0rd"},
      {"PASSWD: letmein123", "letmein123"},
      {"client_secret=abcdef0123456789", "abcdef0123456789"},
      {"secret_key_base => 'deadbeefcafe'", "deadbeefcafe"},
      {"auth_token: tok_9f8e7d6c5b4a", "tok_9f8e7d6c5b4a"},
      {"api_key = ak-1234567890", "ak-1234567890"},
      {"X-Api-Key: 0123456789abcdef", "0123456789abcdef"},
      {"apikey=zzzYYYxxx", "zzzYYYxxx"},
      {"aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"},
      {"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
      {"export KEY_ID=ASIAY34FZKBOKMUTVV7A # temporary", "ASIAY34FZKBOKMUTVV7A"},
      {"id AKIAIOSFODNN7EXAMPLF used here", "AKIAIOSFODNN7EXAMPLF"},
      {"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "eyJhbGciOiJIUzI1NiJ9"},
      {"curl -H 'x: bearer abcdefghijklmnop'", "abcdefghijklmnop"},
      {"url = postgres://app:Sup3rS3cret@db.example.com:5432/app", "Sup3rS3cret"},
      {"proxy http://user:pr0xyPass@10.0.0.1:3128", "pr0xyPass"},
      {"<password>xml-secret-value</password>", "xml-secret-value"},
      {"<db.Token kind=\"x\">tok-in-xml</db.Token>", "tok-in-xml"},
      {"requirepass foobared-redis", "foobared-redis"},
      {"masterauth replica-pass", "replica-pass"},
      {"wpa_psk=wifi-passphrase-1", "wifi-passphrase-1"},
      {"credentials: user:pass1234", "pass1234"},
      {"github = ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"},
      {"slack xoxb-1234567890-abcdefghij", "xoxb-1234567890-abcdefghij"},
  };
  const auto redactor = Make();
  for (const auto& c : cases) {
    std::size_t count = 0;
    const auto out = redactor.Redact(c.line, &count);
    EXPECT_EQ(out.find(c.secret), std::string::npos) << c.line << " -> " << out;
    EXPECT_NE(out.find("[REDACTED]"), std::string::npos) << c.line << " -> " << out;
    EXPECT_GE(count, 1u) << c.line;
  }
}

TEST(Redactor, KeepsTheKeySoTheReaderSeesWhatWasHidden) {
  const auto redactor = Make();
  EXPECT_EQ(redactor.Redact("password = hunter2"), "password = [REDACTED]");
  EXPECT_EQ(redactor.Redact("url = https://bob:pw@host/x"), "url = https://bob:[REDACTED]@host/x");
  EXPECT_EQ(redactor.Redact("<password>x</password>"), "<password>[REDACTED]</password>");
}

TEST(Redactor, PrivateKeyBlocksGoWhole) {
  const std::string body1 = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun";
  const std::string body2 = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2";
  const std::string text = "tls_cert = /etc/x.crt\n"
                           "-----BEGIN RSA PRIVATE KEY-----\n" + body1 + "\n" + body1 + "\n"
                           "-----END RSA PRIVATE KEY-----\n"
                           "between = 1\n"
                           "-----BEGIN OPENSSH PRIVATE KEY-----\n" + body2 + "\n"
                           "-----END OPENSSH PRIVATE KEY-----\n"
                           "-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + body1 + "\n"
                           "-----END ENCRYPTED PRIVATE KEY-----\n"
                           "-----BEGIN PGP PRIVATE KEY BLOCK-----\n" + body2 + "\n"
                           "-----END PGP PRIVATE KEY BLOCK-----\n"
                           "after = 2\n";
  std::size_t count = 0;
  const auto out = Make().Redact(text, &count);
  EXPECT_EQ(out.find(body1), std::string::npos) << out;
  EXPECT_EQ(out.find(body2), std::string::npos) << out;
  EXPECT_EQ(count, 4u);
  EXPECT_NE(out.find("-----BEGIN RSA PRIVATE KEY-----\n[REDACTED]\n-----END RSA PRIVATE KEY-----"), std::string::npos)
      << out;
  EXPECT_NE(out.find("between = 1\n"), std::string::npos);
  EXPECT_NE(out.find("after = 2\n"), std::string::npos);

  // A block cut off before its END line is hidden to the end of the text.
  const auto cut = Make().Redact("a = 1\n-----BEGIN EC PRIVATE KEY-----\n" + body1 + "\nmore = " + body2);
  EXPECT_EQ(cut.find(body1), std::string::npos) << cut;
  EXPECT_EQ(cut.find(body2), std::string::npos) << cut;
  EXPECT_TRUE(cut.starts_with("a = 1\n"));
}

TEST(Redactor, NonSecretsAreUntouchedByteForByte) {
  const std::string text =
      "# Array controller settings\n"
      "listen = 0.0.0.0:8080\n"
      "user = www-data\n"
      "max_connections = 100\n"
      "hostname = db.example.com\n"
      "log_level: debug\n"
      "url = https://vendor.example.com/path?q=1\n"
      "[section]\n"
      "\n"
      "description = \"a quoted value, with: colons = and equals\"\n"
      "-----BEGIN CERTIFICATE-----\n"
      "MIIBszCCAVmgAwIBAgIUQ0pub2xpYyBjZXJ0aWZpY2F0ZSBmb3IgdGVzdHMwCgYI\n"
      "-----END CERTIFICATE-----\n"
      "ünïcode = naïve\n"
      "no newline at the end";
  std::size_t count = 99;
  EXPECT_EQ(Make().Redact(text, &count), text);
  EXPECT_EQ(count, 0u);
}

TEST(Redactor, ConfiguredPatternsWithAndWithoutGroup) {
  const auto redactor = Make({R"(license_code\s*=\s*(\S+))", R"(SN-[0-9]{6})"});
  EXPECT_EQ(redactor.Redact("license_code = ABCD-EFGH"), "license_code = [REDACTED]");
  EXPECT_EQ(redactor.Redact("serials SN-123456 and SN-654321 here"), "serials [REDACTED] and [REDACTED] here");
  // Case-insensitive like the defaults, and the defaults still apply.
  EXPECT_EQ(redactor.Redact("LICENSE_CODE=x1\npassword=y2"), "LICENSE_CODE=[REDACTED]\npassword=[REDACTED]");
}

TEST(Redactor, RefusesBadPatterns) {
  std::string error;
  EXPECT_FALSE(Redactor::Compile({"(unclosed"}, &error));
  EXPECT_NE(error.find("(unclosed"), std::string::npos) << error;
  EXPECT_FALSE(Redactor::Compile({R"((a)\1)"}, &error));
  EXPECT_NE(error.find("back-references"), std::string::npos) << error;
  EXPECT_FALSE(Redactor::Compile({""}, &error));
}

TEST(Redactor, OverlongLinesAreHiddenNotSearched) {
  const std::string secret = "password=" + std::string(Redactor::kMaxLineBytes, 'x');
  const auto out = Make().Redact("a = 1\n" + secret + "\nb = 2");
  EXPECT_EQ(out.find("xxxx"), std::string::npos);
  EXPECT_TRUE(out.starts_with("a = 1\n[REDACTED]")) << out.substr(0, 100);
  EXPECT_TRUE(out.ends_with("\nb = 2"));
}

TEST(ConfigurationPayload, FitsTheBudgetAndHashesWhatIsSent) {
  const std::string content = "password = [REDACTED]\nport = 80\n";
  const auto payload = json::parse(ConfigurationPayload("/etc/app.conf", content, 40, false, 1)).as_object();
  EXPECT_EQ(payload.at("path").as_string(), "/etc/app.conf");
  EXPECT_EQ(payload.at("content").as_string(), content);
  EXPECT_EQ(payload.at("sha256").as_string(), Sha256Hex(content));
  EXPECT_EQ(payload.at("redactions").as_int64(), 1);
  EXPECT_FALSE(payload.at("truncated").as_bool());

  // Control characters take six bytes each in JSON: the content is cut until the payload fits.
  const std::string controls(10000, '\x01');
  const auto text = ConfigurationPayload("/etc/bin.conf", controls, 10000, false, 0, 4096);
  EXPECT_LE(text.size(), 4096u);
  const auto cut = json::parse(text).as_object();
  EXPECT_TRUE(cut.at("truncated").as_bool());
  EXPECT_EQ(cut.at("sha256").as_string(), Sha256Hex(std::string(cut.at("content").as_string())));
  // Invalid UTF-8 is replaced, so the home's strict decoder takes it.
  const auto mixed = json::parse(ConfigurationPayload("/x", "a\xff" "b", 3, false, 0)).as_object();
  EXPECT_EQ(mixed.at("content").as_string(), "a\xEF\xBF\xBD" "b");
}

class CollectingSink final : public DetectionSink {
 public:
  bool Emit(std::vector<protocol::Message> drafts, std::optional<std::pair<std::string, FilePosition>>) override {
    if (refuse) {
      return false;
    }
    for (auto& draft : drafts) {
      messages.push_back(std::move(draft));
    }
    return true;
  }
  bool refuse = false;
  std::vector<protocol::Message> messages;
};

TEST(ConfigFileSource, SendsRedactedContentOnlyWhenItChanges) {
  TempDir dir;
  auto queue = AgentQueue::Open(dir / "queue.db");
  ASSERT_TRUE(queue);
  const auto file = (dir / "app.conf").string();
  WriteFile(file, "port = 80\npassword = TopSecret42\n");
  std::vector<ReportedFile> files;
  files.push_back({file, Make()});
  files.push_back({(dir / "missing.conf").string(), Make()});
  CollectingSink sink;
  {
    ConfigFileSource source(std::move(files), std::chrono::seconds(60), 64 * 1024, **queue);
    EXPECT_EQ(source.Check(sink, 1000), 2);  // the file, and the missing one reported as such
    ASSERT_EQ(sink.messages.size(), 2u);
    EXPECT_EQ(sink.messages[0].type, protocol::MessageType::kConfiguration);
    EXPECT_EQ(sink.messages[0].payload_json.find("TopSecret42"), std::string::npos);
    const auto payload = json::parse(sink.messages[0].payload_json).as_object();
    EXPECT_EQ(payload.at("content").as_string(), "port = 80\npassword = [REDACTED]\n");
    const auto missing = json::parse(sink.messages[1].payload_json).as_object();
    EXPECT_TRUE(missing.contains("error"));

    EXPECT_EQ(source.Check(sink, 2000), 0);  // nothing changed
    WriteFile(file, "port = 81\npassword = TopSecret42\n");
    sink.refuse = true;
    EXPECT_EQ(source.Check(sink, 3000), -1);  // the queue refused: offered again next time
    sink.refuse = false;
    EXPECT_EQ(source.Check(sink, 4000), 1);
    ASSERT_EQ(sink.messages.size(), 3u);
    EXPECT_NE(sink.messages[2].payload_json.find("port = 81"), std::string::npos);
    // A change inside a secret does not show as a change: the redacted text is the same.
    WriteFile(file, "port = 81\npassword = OtherSecret\n");
    EXPECT_EQ(source.Check(sink, 5000), 0);
  }
  // After a restart, what was sent is remembered.
  std::vector<ReportedFile> again;
  again.push_back({file, Make()});
  ConfigFileSource restarted(std::move(again), std::chrono::seconds(60), 64 * 1024, **queue);
  EXPECT_EQ(restarted.Check(sink, 6000), 0);
}

TEST(ConfigFileSource, LargeFilesAreCutAndMarked) {
  TempDir dir;
  auto queue = AgentQueue::Open(dir / "queue.db");
  ASSERT_TRUE(queue);
  const auto file = (dir / "big.conf").string();
  std::string text;
  while (text.size() < 100 * 1024) {
    text += "setting_" + std::to_string(text.size()) + " = value\n";
  }
  WriteFile(file, text);
  std::vector<ReportedFile> files;
  files.push_back({file, Make()});
  ConfigFileSource source(std::move(files), std::chrono::seconds(60), 4096, **queue);
  CollectingSink sink;
  ASSERT_EQ(source.Check(sink, 1), 1);
  const auto payload = json::parse(sink.messages[0].payload_json).as_object();
  EXPECT_TRUE(payload.at("truncated").as_bool());
  EXPECT_EQ(payload.at("size_bytes").as_int64(), static_cast<std::int64_t>(text.size()));
  EXPECT_LE(payload.at("content").as_string().size(), 4096u);
}

}  // namespace
}  // namespace lifeline::agent
