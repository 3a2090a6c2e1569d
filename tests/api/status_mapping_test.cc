// Tests of ToGrpcStatus (service/api/status_mapping.h): one table of
// absl::Status inputs, each checked for the gRPC code and message and for the
// binary details (a google.rpc.Status with exactly one ErrorInfo first, then
// BadRequest and RetryInfo when the error carries them).
#include "service/api/status_mapping.h"

#include <chrono>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/support/status.h"
#include "gtest/gtest.h"
#include "service/common/errors.h"

namespace assistants {
namespace {

struct MappingCase {
  std::string name;
  std::function<absl::Status()> make;
  grpc::StatusCode code;
  std::string message;
  // Expected ErrorInfo.reason (ignored for OK).
  std::string reason;
  // Expected ErrorInfo.metadata entries (a subset check).
  std::vector<std::pair<std::string, std::string>> metadata;
  // Expected BadRequest field of the first violation, empty for none.
  std::string bad_request_field;
  // Expected RetryInfo delay in milliseconds, -1 for no RetryInfo.
  int64_t retry_ms = -1;
};

void PrintTo(const MappingCase& c, std::ostream* os) { *os << c.name; }

// A table row; optional expectations default to "absent".
MappingCase Row(std::string name, std::function<absl::Status()> make,
                grpc::StatusCode code, std::string message, std::string reason,
                std::vector<std::pair<std::string, std::string>> metadata = {},
                std::string bad_request_field = "", int64_t retry_ms = -1) {
  return MappingCase{std::move(name),
                     std::move(make),
                     code,
                     std::move(message),
                     std::move(reason),
                     std::move(metadata),
                     std::move(bad_request_field),
                     retry_ms};
}

// Every canonical non-OK code with the name of its default reason.
const std::vector<std::pair<absl::StatusCode, std::string>>& AllCodes() {
  static const auto* codes =
      new std::vector<std::pair<absl::StatusCode, std::string>>{
          {absl::StatusCode::kCancelled, "CANCELLED"},
          {absl::StatusCode::kUnknown, "UNKNOWN"},
          {absl::StatusCode::kInvalidArgument, "INVALID_ARGUMENT"},
          {absl::StatusCode::kDeadlineExceeded, "DEADLINE_EXCEEDED"},
          {absl::StatusCode::kNotFound, "NOT_FOUND"},
          {absl::StatusCode::kAlreadyExists, "ALREADY_EXISTS"},
          {absl::StatusCode::kPermissionDenied, "PERMISSION_DENIED"},
          {absl::StatusCode::kResourceExhausted, "RESOURCE_EXHAUSTED"},
          {absl::StatusCode::kFailedPrecondition, "FAILED_PRECONDITION"},
          {absl::StatusCode::kAborted, "ABORTED"},
          {absl::StatusCode::kOutOfRange, "OUT_OF_RANGE"},
          {absl::StatusCode::kUnimplemented, "UNIMPLEMENTED"},
          {absl::StatusCode::kInternal, "INTERNAL"},
          {absl::StatusCode::kUnavailable, "UNAVAILABLE"},
          {absl::StatusCode::kDataLoss, "DATA_LOSS"},
          {absl::StatusCode::kUnauthenticated, "UNAUTHENTICATED"},
      };
  return *codes;
}

grpc::StatusCode ToGrpcCode(absl::StatusCode code) {
  return static_cast<grpc::StatusCode>(static_cast<int>(code));
}

std::vector<MappingCase> Cases() {
  std::vector<MappingCase> cases;
  cases.push_back(Row(
      "ok", [] { return absl::OkStatus(); }, grpc::StatusCode::OK, "", ""));
  for (const auto& [code, code_name] : AllCodes()) {
    const absl::StatusCode c = code;
    // A plain status (a library's own error): the reason is the code name.
    cases.push_back(Row(
        absl::StrCat("plain_", code_name),
        [c] { return absl::Status(c, "plain failure"); }, ToGrpcCode(code),
        "plain failure", code_name));
    // A project error keeps its reason and metadata.
    cases.push_back(Row(absl::StrCat("reasoned_", code_name),
                        [c] {
                          return MakeError(c, "SOME_REASON", "typed failure",
                                           {{"thing_id", "thing_1"}});
                        },
                        ToGrpcCode(code), "typed failure", "SOME_REASON",
                        {{"thing_id", "thing_1"}}));
  }
  cases.push_back(Row(
      "field_error",
      [] {
        return FieldError("tools[2].function.function.name", "INVALID_FORMAT",
                          "bad name");
      },
      grpc::StatusCode::INVALID_ARGUMENT,
      "tools[2].function.function.name: bad name", "INVALID_FORMAT",
      {{"field", "tools[2].function.function.name"}},
      "tools[2].function.function.name"));
  cases.push_back(
      Row("not_found", [] { return NotFound("thread", "thread_abc"); },
          grpc::StatusCode::NOT_FOUND, "No thread found with id 'thread_abc'.",
          "THREAD_NOT_FOUND", {{"thread_id", "thread_abc"}}));
  cases.push_back(Row(
      "store_unavailable_is_retryable",
      [] { return StoreUnavailable("disk I/O error"); },
      grpc::StatusCode::UNAVAILABLE, "The store is unavailable: disk I/O error",
      "STORE_UNAVAILABLE", {}, "", 100));
  cases.push_back(Row(
      "plain_with_retry_delay",
      [] {
        absl::Status status = absl::UnavailableError("busy");
        SetRetryDelay(status, std::chrono::milliseconds(1500));
        return status;
      },
      grpc::StatusCode::UNAVAILABLE, "busy", "UNAVAILABLE", {}, "", 1500));
  cases.push_back(Row(
      "field_error_with_retry_delay",
      [] {
        absl::Status status =
            FieldError("limit", "VALUE_OUT_OF_RANGE", "too big");
        SetRetryDelay(status, std::chrono::milliseconds(2000));
        return status;
      },
      grpc::StatusCode::INVALID_ARGUMENT, "limit: too big",
      "VALUE_OUT_OF_RANGE", {{"field", "limit"}}, "limit", 2000));
  cases.push_back(Row(
      "unparsable_error_info_payload_gets_default_reason",
      [] {
        absl::Status status = absl::InternalError("odd");
        status.SetPayload(kErrorInfoUrl, absl::Cord("\xff\xff not a proto"));
        return status;
      },
      grpc::StatusCode::INTERNAL, "odd", "INTERNAL"));
  // An ErrorInfo with an empty reason still gets the code's name.
  cases.push_back(Row(
      "empty_reason_gets_default_reason",
      [] {
        return MakeError(absl::StatusCode::kInternal, "", "no reason given");
      },
      grpc::StatusCode::INTERNAL, "no reason given", "INTERNAL"));
  cases.push_back(Row(
      "empty_message",
      [] { return absl::Status(absl::StatusCode::kAborted, ""); },
      grpc::StatusCode::ABORTED, "", "ABORTED"));
  return cases;
}

class StatusMappingTest : public ::testing::TestWithParam<MappingCase> {};

TEST_P(StatusMappingTest, MapsToRichGrpcStatus) {
  const MappingCase& c = GetParam();
  const absl::Status input = c.make();
  const grpc::Status status = ToGrpcStatus(input);

  EXPECT_EQ(status.error_code(), c.code);
  EXPECT_EQ(status.error_message(), c.message);
  if (c.code == grpc::StatusCode::OK) {
    EXPECT_TRUE(status.ok());
    EXPECT_EQ(status.error_details(), "");
    return;
  }

  google::rpc::Status rich;
  ASSERT_TRUE(rich.ParseFromString(status.error_details()))
      << "error_details is not a google.rpc.Status";
  EXPECT_EQ(rich.code(), static_cast<int>(c.code));
  EXPECT_EQ(rich.message(), c.message);
  ASSERT_GE(rich.details_size(), 1);

  // Exactly one ErrorInfo, and it comes first.
  int error_infos = 0;
  for (const auto& detail : rich.details()) {
    if (detail.Is<google::rpc::ErrorInfo>()) ++error_infos;
  }
  EXPECT_EQ(error_infos, 1);
  google::rpc::ErrorInfo info;
  ASSERT_TRUE(rich.details(0).UnpackTo(&info))
      << "details[0] is " << rich.details(0).type_url();
  EXPECT_EQ(info.reason(), c.reason);
  EXPECT_EQ(info.domain(), "assistants.gateway");
  for (const auto& [key, value] : c.metadata) {
    auto it = info.metadata().find(key);
    ASSERT_NE(it, info.metadata().end()) << "metadata lacks " << key;
    EXPECT_EQ(it->second, value);
  }

  // BadRequest and RetryInfo appear exactly when expected, after ErrorInfo.
  int bad_requests = 0;
  int retry_infos = 0;
  for (int i = 1; i < rich.details_size(); ++i) {
    const auto& detail = rich.details(i);
    if (detail.Is<google::rpc::BadRequest>()) {
      ++bad_requests;
      google::rpc::BadRequest bad_request;
      ASSERT_TRUE(detail.UnpackTo(&bad_request));
      ASSERT_EQ(bad_request.field_violations_size(), 1);
      EXPECT_EQ(bad_request.field_violations(0).field(), c.bad_request_field);
      EXPECT_FALSE(bad_request.field_violations(0).description().empty());
    } else if (detail.Is<google::rpc::RetryInfo>()) {
      ++retry_infos;
      google::rpc::RetryInfo retry;
      ASSERT_TRUE(detail.UnpackTo(&retry));
      EXPECT_EQ(retry.retry_delay().seconds(), c.retry_ms / 1000);
      EXPECT_EQ(retry.retry_delay().nanos(), (c.retry_ms % 1000) * 1000000);
    } else {
      ADD_FAILURE() << "unexpected detail " << detail.type_url();
    }
  }
  EXPECT_EQ(bad_requests, c.bad_request_field.empty() ? 0 : 1);
  EXPECT_EQ(retry_infos, c.retry_ms < 0 ? 0 : 1);
  EXPECT_EQ(rich.details_size(), 1 + bad_requests + retry_infos);
}

INSTANTIATE_TEST_SUITE_P(Table, StatusMappingTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<MappingCase>& info) {
                           return info.param.name;
                         });

// The mapping must not alter its input: the core may still log it.
TEST(StatusMappingInputTest, LeavesInputUntouched) {
  absl::Status input = FieldError("model", "FIELD_REQUIRED", "is required");
  const absl::Status copy = input;
  EXPECT_FALSE(ToGrpcStatus(input).ok());
  EXPECT_EQ(input, copy);
}

}  // namespace
}  // namespace assistants
