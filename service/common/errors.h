// Builders of the project's typed errors. Every error that can reach a client
// carries a reason (UPPER_SNAKE_CASE) and metadata naming the offending field
// or id; validation errors also carry BadRequest field violations. They ride
// inside absl::Status as payloads (serialized google.rpc.ErrorInfo /
// BadRequest / RetryInfo) so the core never depends on gRPC; service/api maps
// them to google.rpc.Status in one place.
#ifndef SERVICE_COMMON_ERRORS_H_
#define SERVICE_COMMON_ERRORS_H_

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/rpc/error_details.pb.h"

namespace assistants {

// The ErrorInfo domain of every error this project produces.
inline constexpr absl::string_view kErrorDomain = "assistants.gateway";

// Payload type URLs under which the details travel inside absl::Status.
inline constexpr absl::string_view kErrorInfoUrl =
    "type.googleapis.com/google.rpc.ErrorInfo";
inline constexpr absl::string_view kBadRequestUrl =
    "type.googleapis.com/google.rpc.BadRequest";
inline constexpr absl::string_view kRetryInfoUrl =
    "type.googleapis.com/google.rpc.RetryInfo";

using ErrorMetadata = std::vector<std::pair<std::string, std::string>>;

// An error with `code`, `reason` and `metadata` (for example {"thread_id",
// "thread_abc"}).
absl::Status MakeError(absl::StatusCode code, absl::string_view reason,
                       absl::string_view message, ErrorMetadata metadata = {});

// INVALID_ARGUMENT for one bad field: ErrorInfo {reason, metadata.field} plus a
// BadRequest violation for `field` (a path such as "tools[3].function.name").
absl::Status FieldError(absl::string_view field, absl::string_view reason,
                        absl::string_view description);

// NOT_FOUND for a missing object, e.g. NotFound("thread", "thread_abc") has
// reason THREAD_NOT_FOUND and metadata thread_id.
absl::Status NotFound(absl::string_view kind, absl::string_view id);

// UNAVAILABLE (reason STORE_UNAVAILABLE) for storage trouble that a retry may
// clear; `detail` is logged and included without secrets.
absl::Status StoreUnavailable(absl::string_view detail);

// Adds a RetryInfo payload telling the client how long to wait.
void SetRetryDelay(absl::Status& status, std::chrono::milliseconds delay);

// The reason of an error (ErrorInfo.reason), or empty when it carries none.
std::string ErrorReason(const absl::Status& status);

// The ErrorInfo of an error, if it has one.
std::optional<google::rpc::ErrorInfo> GetErrorInfo(const absl::Status& status);

// The BadRequest details of an error, if it has any.
std::optional<google::rpc::BadRequest> GetBadRequest(
    const absl::Status& status);

// The RetryInfo of an error, if it has one.
std::optional<google::rpc::RetryInfo> GetRetryInfo(const absl::Status& status);

}  // namespace assistants

#endif  // SERVICE_COMMON_ERRORS_H_
