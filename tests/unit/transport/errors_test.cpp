#include "transport/errors.h"

#include <gtest/gtest.h>

namespace lifeline::transport {
namespace {

TEST(TransportErrorsTest, TransientFailuresAreRetried) {
  EXPECT_TRUE(IsRetryable(Errc::kConnectFailed));
  EXPECT_TRUE(IsRetryable(Errc::kTimeout));
  EXPECT_TRUE(IsRetryable(Errc::kConnectionLost));
  // Usually an expired certificate or a wrong clock: keep the queue and let an operator fix it.
  EXPECT_TRUE(IsRetryable(Errc::kTlsFailed));
  EXPECT_TRUE(IsRetryable(std::make_error_code(std::errc::connection_reset)));
  EXPECT_TRUE(IsRetryable(std::make_error_code(std::errc::timed_out)));
}

TEST(TransportErrorsTest, PermanentFailuresAreNot) {
  EXPECT_FALSE(IsRetryable(Errc::kInvalidArgument));
  EXPECT_FALSE(IsRetryable(Errc::kResponseTooLarge));
  EXPECT_FALSE(IsRetryable(Errc::kOther));
  EXPECT_FALSE(IsRetryable(Errc::kTlsSetupFailed));
  EXPECT_FALSE(IsRetryable(std::make_error_code(std::errc::invalid_argument)));
  EXPECT_FALSE(IsRetryable(std::error_code()));
}

TEST(TransportErrorsTest, StatusesFollowTheFluentBitRule) {
  for (int status : {500, 502, 503, 504, 599, 408, 429}) {
    EXPECT_TRUE(IsRetryableStatus(status)) << status;
  }
  for (int status : {200, 201, 204, 301, 400, 401, 403, 404, 409, 413, 422, 600}) {
    EXPECT_FALSE(IsRetryableStatus(status)) << status;
  }
}

TEST(TransportErrorsTest, MessagesAreReadable) {
  const std::error_code code = Errc::kTlsFailed;
  EXPECT_EQ(std::string(code.category().name()), "lifeline.transport");
  EXPECT_NE(code.message().find("TLS"), std::string::npos);
}

}  // namespace
}  // namespace lifeline::transport
