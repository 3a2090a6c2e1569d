#include "service/store/store_errors.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "service/common/errors.h"

namespace assistants {

absl::Status InvalidCursor(absl::string_view field, absl::string_view id) {
  return FieldError(field, "INVALID_CURSOR",
                    absl::StrCat("no object with id '", id, "' in this list"));
}

absl::Status AlreadyExists(absl::string_view kind, absl::string_view id) {
  return MakeError(
      absl::StatusCode::kAlreadyExists, "OBJECT_ALREADY_EXISTS",
      absl::StrCat("A ", kind, " with id '", id, "' already exists."),
      {{absl::StrCat(kind, "_id"), std::string(id)}});
}

absl::Status ImmutableField(absl::string_view kind, absl::string_view field) {
  return MakeError(
      absl::StatusCode::kInternal, "STORE_IMMUTABLE_FIELD",
      absl::StrCat("An update may not change the ", kind, "'s ", field, "."),
      {{"field", std::string(field)}});
}

absl::Status ThreadIdMismatch(absl::string_view thread_id,
                              absl::string_view message_id) {
  return MakeError(
      absl::StatusCode::kInvalidArgument, "THREAD_ID_MISMATCH",
      absl::StrCat("Message '", message_id, "' does not belong to thread '",
                   thread_id, "'."),
      {{"thread_id", std::string(thread_id)},
       {"message_id", std::string(message_id)}});
}

absl::Status MessageLimit(absl::string_view thread_id, int64_t limit) {
  return MakeError(absl::StatusCode::kFailedPrecondition,
                   "THREAD_MESSAGE_LIMIT",
                   absl::StrCat("A thread holds at most ", limit, " messages."),
                   {{"thread_id", std::string(thread_id)}});
}

absl::Status IdempotencyConflict(absl::string_view key) {
  return MakeError(absl::StatusCode::kAborted, "IDEMPOTENCY_CONFLICT",
                   "A request with this request_id is already recorded.",
                   {{"idempotency_key", std::string(key)}});
}

}  // namespace assistants
