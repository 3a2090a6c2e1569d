// The upstream error table, row by row: each HTTP status / upstream code maps
// to the gRPC code, reason, run last_error code and RetryInfo that
// ENGINEERING.md §4 prescribes.
#include "upstream/error_mapping.h"

#include <chrono>
#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "service/common/errors.h"

namespace assistants::upstream {
namespace {

struct HttpCase {
  std::string name;
  int status;
  std::string body;
  std::string retry_after;  // Retry-After header, empty: none
  absl::StatusCode code;
  std::string reason;
  std::string run_error_code;
  std::optional<int64_t> retry_ms;  // expected RetryInfo delay, none: absent
};

class HttpErrorTest : public ::testing::TestWithParam<HttpCase> {};

TEST_P(HttpErrorTest, MapsStatusToBlameAwareError) {
  const HttpCase& c = GetParam();
  HttpResponseHead head;
  head.status = c.status;
  if (!c.retry_after.empty()) head.headers["retry-after"] = c.retry_after;
  TurnError error = MapHttpError("openai", head, c.body);
  EXPECT_EQ(error.status.code(), c.code);
  EXPECT_EQ(ErrorReason(error.status), c.reason);
  EXPECT_EQ(error.run_error_code, c.run_error_code);
  auto retry = GetRetryInfo(error.status);
  ASSERT_EQ(retry.has_value(), c.retry_ms.has_value());
  if (retry.has_value()) {
    EXPECT_EQ(retry->retry_delay().seconds() * 1000 +
                  retry->retry_delay().nanos() / 1000000,
              *c.retry_ms);
  }
  EXPECT_EQ(GetErrorInfo(error.status)->metadata().at("http_status"),
            std::to_string(c.status));
}

std::string Body(const std::string& type, const std::string& code,
                 const std::string& message) {
  return R"({"error":{"message":")" + message + R"(","type":")" + type +
         R"(","param":null,"code":")" + code + R"("}})";
}

INSTANTIATE_TEST_SUITE_P(
    Table, HttpErrorTest,
    ::testing::Values(
        HttpCase{"bad_request", 400,
                 Body("invalid_request_error", "context_length_exceeded",
                      "too long"),
                 "", absl::StatusCode::kInvalidArgument,
                 "UPSTREAM_INVALID_REQUEST", "invalid_prompt", std::nullopt},
        HttpCase{"unauthorized", 401,
                 Body("invalid_request_error", "invalid_api_key",
                      "Incorrect API key provided: sk-abc***xyz"),
                 "", absl::StatusCode::kInternal, "UPSTREAM_AUTH_FAILED",
                 "server_error", std::nullopt},
        HttpCase{"forbidden", 403, "", "", absl::StatusCode::kInternal,
                 "UPSTREAM_AUTH_FAILED", "server_error", std::nullopt},
        HttpCase{"model_not_found", 404,
                 Body("invalid_request_error", "model_not_found", "no model"),
                 "", absl::StatusCode::kInvalidArgument, "UPSTREAM_NOT_FOUND",
                 "invalid_prompt", std::nullopt},
        HttpCase{"rate_limited_with_retry_after", 429,
                 Body("requests", "rate_limit_exceeded", "slow down"), "7",
                 absl::StatusCode::kResourceExhausted, "UPSTREAM_RATE_LIMITED",
                 "rate_limit_exceeded", 7000},
        HttpCase{"rate_limited_default_delay", 429, "", "",
                 absl::StatusCode::kResourceExhausted, "UPSTREAM_RATE_LIMITED",
                 "rate_limit_exceeded", 1000},
        HttpCase{"insufficient_quota_code", 429,
                 Body("insufficient_quota", "insufficient_quota", "pay up"),
                 "3", absl::StatusCode::kResourceExhausted,
                 "UPSTREAM_QUOTA_EXCEEDED", "rate_limit_exceeded",
                 std::nullopt},
        HttpCase{"server_error", 500, Body("server_error", "", "oops"), "",
                 absl::StatusCode::kUnavailable, "UPSTREAM_SERVER_ERROR",
                 "server_error", 1000},
        HttpCase{"bad_gateway_html", 502, "<html>bad gateway</html>", "",
                 absl::StatusCode::kUnavailable, "UPSTREAM_SERVER_ERROR",
                 "server_error", 1000},
        HttpCase{"overloaded", 503, "", "2", absl::StatusCode::kUnavailable,
                 "UPSTREAM_SERVER_ERROR", "server_error", 2000},
        HttpCase{"conflict", 409, "", "", absl::StatusCode::kUnavailable,
                 "UPSTREAM_SERVER_ERROR", "server_error", 1000},
        HttpCase{"unprocessable", 422, "", "",
                 absl::StatusCode::kInvalidArgument, "UPSTREAM_INVALID_REQUEST",
                 "invalid_prompt", std::nullopt},
        HttpCase{"redirect", 302, "", "", absl::StatusCode::kInternal,
                 "UPSTREAM_UNEXPECTED_STATUS", "server_error", std::nullopt}),
    [](const auto& info) { return info.param.name; });

TEST(HttpErrorTest, AuthFailureNeverEchoesTheUpstreamMessage) {
  HttpResponseHead head;
  head.status = 401;
  TurnError error =
      MapHttpError("openai", head,
                   Body("invalid_request_error", "invalid_api_key",
                        "Incorrect API key provided: sk-proj-SECRET"));
  EXPECT_EQ(std::string(error.status.message()).find("SECRET"),
            std::string::npos);
  EXPECT_NE(std::string(error.status.message()).find("API key"),
            std::string::npos);
}

TEST(HttpErrorTest, UpstreamMessageAndCodeAreKeptForCallerErrors) {
  HttpResponseHead head;
  head.status = 400;
  TurnError error = MapHttpError(
      "openai", head,
      Body("invalid_request_error", "context_length_exceeded", "too long"));
  EXPECT_NE(std::string(error.status.message()).find("too long"),
            std::string::npos);
  EXPECT_EQ(GetErrorInfo(error.status)->metadata().at("upstream_code"),
            "context_length_exceeded");
}

TEST(HttpErrorTest, RetryAfterMsWinsOverSeconds) {
  HttpResponseHead head;
  head.status = 429;
  head.headers["retry-after"] = "9";
  head.headers["retry-after-ms"] = "250";
  auto retry = GetRetryInfo(MapHttpError("openai", head, "").status);
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->retry_delay().nanos(), 250000000);
  EXPECT_EQ(retry->retry_delay().seconds(), 0);
}

TEST(HttpErrorTest, AbsurdRetryHintsAreClampedNotUndefined) {
  for (const char* hint : {"inf", "1e300", "nan", "-5"}) {
    HttpResponseHead head;
    head.status = 429;
    head.headers["retry-after"] = hint;
    auto retry = GetRetryInfo(MapHttpError("openai", head, "").status);
    ASSERT_TRUE(retry.has_value()) << hint;
    EXPECT_GE(retry->retry_delay().seconds(), 0) << hint;
    EXPECT_LE(retry->retry_delay().seconds(), 3600) << hint;
  }
}

struct StreamCase {
  std::string code;
  absl::StatusCode status_code;
  std::string reason;
  std::string run_error_code;
};

class StreamErrorTest : public ::testing::TestWithParam<StreamCase> {};

TEST_P(StreamErrorTest, MapsStreamErrorCodes) {
  const StreamCase& c = GetParam();
  TurnError error = MapStreamError("openai", c.code, "details");
  EXPECT_EQ(error.status.code(), c.status_code);
  EXPECT_EQ(ErrorReason(error.status), c.reason);
  EXPECT_EQ(error.run_error_code, c.run_error_code);
}

INSTANTIATE_TEST_SUITE_P(
    Table, StreamErrorTest,
    ::testing::Values(
        StreamCase{"rate_limit_exceeded", absl::StatusCode::kResourceExhausted,
                   "UPSTREAM_RATE_LIMITED", "rate_limit_exceeded"},
        StreamCase{"invalid_prompt", absl::StatusCode::kInvalidArgument,
                   "UPSTREAM_INVALID_PROMPT", "invalid_prompt"},
        StreamCase{"context_length_exceeded",
                   absl::StatusCode::kInvalidArgument,
                   "UPSTREAM_INVALID_PROMPT", "invalid_prompt"},
        StreamCase{"server_error", absl::StatusCode::kUnavailable,
                   "UPSTREAM_SERVER_ERROR", "server_error"},
        StreamCase{"", absl::StatusCode::kUnavailable, "UPSTREAM_SERVER_ERROR",
                   "server_error"}));

TEST(TransportErrorTest, TimeoutsAndResetsAreUnavailable) {
  absl::Status timeout =
      MakeError(absl::StatusCode::kDeadlineExceeded, "UPSTREAM_TIMEOUT", "idle",
                {{"timeout", "idle"}});
  TurnError error = MapTransportError("openai", timeout);
  EXPECT_EQ(error.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorReason(error.status), "UPSTREAM_TIMEOUT");
  EXPECT_EQ(GetErrorInfo(error.status)->metadata().at("timeout"), "idle");
  EXPECT_EQ(error.run_error_code, "server_error");

  TurnError reset = MapTransportError(
      "openai", absl::UnavailableError("connection reset by peer"));
  EXPECT_EQ(ErrorReason(reset.status), "UPSTREAM_UNREACHABLE");
}

TEST(TransportErrorTest, CancellationStaysCancelled) {
  TurnError error =
      MapTransportError("openai", MakeError(absl::StatusCode::kCancelled,
                                            "UPSTREAM_CANCELLED", "cancelled"));
  EXPECT_EQ(error.status.code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(GetRetryInfo(error.status).has_value());
}

// An upstream that quotes the key back (in a caller-error body or a stream
// error) never gets it into a message or ErrorInfo; everything else stays.
TEST(RedactSecretsTest, KeyIsRedactedFromMessageAndMetadata) {
  const std::string key = "sk-live-0123456789abcdef";
  HttpResponseHead head;
  head.status = 400;
  TurnError error = MapHttpError(
      "openai", head,
      Body("invalid_request_error", key, "bad request for key " + key));
  SetRetryDelay(error.status, std::chrono::seconds(3));
  ASSERT_NE(error.status.message().find(key), absl::string_view::npos);

  const absl::Status redacted = RedactSecrets(error.status, {"", key});
  EXPECT_EQ(redacted.code(), error.status.code());
  EXPECT_EQ(redacted.message().find(key), absl::string_view::npos)
      << redacted.message();
  EXPECT_NE(redacted.message().find("[redacted]"), absl::string_view::npos);
  EXPECT_EQ(ErrorReason(redacted), "UPSTREAM_INVALID_REQUEST");
  EXPECT_EQ(GetErrorInfo(redacted)->metadata().at("upstream_code"),
            "[redacted]");
  EXPECT_EQ(GetErrorInfo(redacted)->metadata().at("http_status"), "400");
  ASSERT_TRUE(GetRetryInfo(redacted).has_value());
  EXPECT_EQ(GetRetryInfo(redacted)->retry_delay().seconds(), 3);

  const TurnError stream =
      MapStreamError("openai", "server_error", "key " + key + " was refused");
  EXPECT_EQ(RedactSecrets(stream.status, {key}).message(),
            "openai reported an error: key [redacted] was refused");
  EXPECT_TRUE(RedactSecrets(absl::OkStatus(), {key}).ok());
}

}  // namespace
}  // namespace assistants::upstream
