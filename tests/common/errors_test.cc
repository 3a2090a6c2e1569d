// Tests of the typed error builders in service/common/errors.h.
#include "service/common/errors.h"

#include "gtest/gtest.h"

namespace assistants {
namespace {

TEST(ErrorsTest, MakeErrorCarriesReasonDomainAndMetadata) {
  absl::Status status =
      MakeError(absl::StatusCode::kFailedPrecondition, "THREAD_HAS_ACTIVE_RUN",
                "busy", {{"thread_id", "thread_1"}});
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(), "busy");
  auto info = GetErrorInfo(status);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "THREAD_HAS_ACTIVE_RUN");
  EXPECT_EQ(info->domain(), kErrorDomain);
  EXPECT_EQ(info->metadata().at("thread_id"), "thread_1");
  EXPECT_FALSE(GetBadRequest(status).has_value());
}

TEST(ErrorsTest, FieldErrorNamesTheFieldTwice) {
  absl::Status status = FieldError("tools[3].function.name", "INVALID_FORMAT",
                                   "must match ^[a-zA-Z0-9_-]{1,64}$");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(status), "INVALID_FORMAT");
  EXPECT_EQ(GetErrorInfo(status)->metadata().at("field"),
            "tools[3].function.name");
  auto bad_request = GetBadRequest(status);
  ASSERT_TRUE(bad_request.has_value());
  ASSERT_EQ(bad_request->field_violations_size(), 1);
  EXPECT_EQ(bad_request->field_violations(0).field(), "tools[3].function.name");
  EXPECT_NE(status.message().find("tools[3].function.name"),
            absl::string_view::npos);
}

TEST(ErrorsTest, NotFoundDerivesReasonAndIdKey) {
  absl::Status status = NotFound("thread", "thread_abc");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrorReason(status), "THREAD_NOT_FOUND");
  EXPECT_EQ(GetErrorInfo(status)->metadata().at("thread_id"), "thread_abc");
}

TEST(ErrorsTest, StoreUnavailableIsRetryable) {
  absl::Status status = StoreUnavailable("disk I/O error");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorReason(status), "STORE_UNAVAILABLE");
  EXPECT_TRUE(GetRetryInfo(status).has_value());
}

TEST(ErrorsTest, RetryDelaySplitsSecondsAndNanos) {
  absl::Status status = MakeError(absl::StatusCode::kResourceExhausted,
                                  "RATE_LIMITED", "slow down");
  SetRetryDelay(status, std::chrono::milliseconds(2500));
  auto retry = GetRetryInfo(status);
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->retry_delay().seconds(), 2);
  EXPECT_EQ(retry->retry_delay().nanos(), 500000000);
}

TEST(ErrorsTest, PlainStatusHasNoReason) {
  EXPECT_EQ(ErrorReason(absl::InternalError("boom")), "");
  EXPECT_FALSE(GetErrorInfo(absl::OkStatus()).has_value());
}

}  // namespace
}  // namespace assistants
