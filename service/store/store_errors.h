// The errors both Store implementations raise, built in one place so the
// in-memory and SQLite stores answer the same way (the typed store test
// suite checks that they do).
#ifndef SERVICE_STORE_STORE_ERRORS_H_
#define SERVICE_STORE_STORE_ERRORS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace assistants {

// Object kinds as the stores name them (also the NotFound() kinds).
inline constexpr absl::string_view kAssistantKind = "assistant";
inline constexpr absl::string_view kThreadKind = "thread";
inline constexpr absl::string_view kMessageKind = "message";

// INVALID_ARGUMENT (INVALID_CURSOR): a paging cursor never seen in the list.
absl::Status InvalidCursor(absl::string_view field, absl::string_view id);

// ALREADY_EXISTS (OBJECT_ALREADY_EXISTS): a create reused an id.
absl::Status AlreadyExists(absl::string_view kind, absl::string_view id);

// INTERNAL (STORE_IMMUTABLE_FIELD): a mutation changed an indexed field.
absl::Status ImmutableField(absl::string_view kind, absl::string_view field);

// INVALID_ARGUMENT (THREAD_ID_MISMATCH): an initial message names another
// thread.
absl::Status ThreadIdMismatch(absl::string_view thread_id,
                              absl::string_view message_id);

// FAILED_PRECONDITION (THREAD_MESSAGE_LIMIT).
absl::Status MessageLimit(absl::string_view thread_id, int64_t limit);

// ABORTED (IDEMPOTENCY_CONFLICT): the record's key is already stored.
absl::Status IdempotencyConflict(absl::string_view key);

}  // namespace assistants

#endif  // SERVICE_STORE_STORE_ERRORS_H_
