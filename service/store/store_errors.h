// The errors both Store implementations raise, and the input checks they
// share, built in one place so the in-memory and SQLite stores answer the
// same way (the typed store test suite checks that they do).
#ifndef SERVICE_STORE_STORE_ERRORS_H_
#define SERVICE_STORE_STORE_ERRORS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "service/store/store.h"

namespace assistants {

// Object kinds as the stores name them (also the NotFound() kinds).
inline constexpr absl::string_view kAssistantKind = "assistant";
inline constexpr absl::string_view kThreadKind = "thread";
inline constexpr absl::string_view kMessageKind = "message";
inline constexpr absl::string_view kRunKind = "run";
// NotFound(kRunStepKind, id) has reason RUN_STEP_NOT_FOUND.
inline constexpr absl::string_view kRunStepKind = "run_step";

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

// INVALID_ARGUMENT (<PARENT_KIND>_ID_MISMATCH, e.g. RUN_ID_MISMATCH): a
// `kind` object written under `parent_kind` `parent_id` names another parent.
absl::Status ParentIdMismatch(absl::string_view kind, absl::string_view id,
                              absl::string_view parent_kind,
                              absl::string_view parent_id);

// FAILED_PRECONDITION (THREAD_HAS_ACTIVE_RUN): the thread's active run
// `run_id` blocks the change (new messages, deleting the thread, a second
// run).
absl::Status ThreadHasActiveRun(absl::string_view thread_id,
                                absl::string_view run_id);

// RESOURCE_EXHAUSTED (PROJECT_ACTIVE_RUN_LIMIT, with RetryInfo): the
// project already has `limit` active runs.
absl::Status ProjectActiveRunLimit(absl::string_view project, int64_t limit);

// INTERNAL (RUN_EVENT_SEQUENCE): an appended event does not continue the
// run's event log (`expected` is the last stored sequence + 1).
absl::Status RunEventSequence(absl::string_view run_id, int64_t expected,
                              int64_t sequence);

// FAILED_PRECONDITION (THREAD_MESSAGE_LIMIT).
absl::Status MessageLimit(absl::string_view thread_id, int64_t limit);

// ABORTED (IDEMPOTENCY_CONFLICT): the record's key is already stored.
absl::Status IdempotencyConflict(absl::string_view key);

// The checks of CreateRun that need no stored state, shared so both stores
// answer malformed input the same way (and before touching anything):
// new_thread and every message name run.thread_id(), the events are 1, 2,
// ..., and a new thread's messages fit in `max_messages_per_thread`.
absl::Status ValidateRunCreation(const RunCreation& creation,
                                 int64_t max_messages_per_thread);

// The same for one change of a CommitRunChanges batch: the run keeps its id
// and thread, and steps and messages belong to the change's run and thread.
absl::Status ValidateRunChanges(const RunChanges& changes);

}  // namespace assistants

#endif  // SERVICE_STORE_STORE_ERRORS_H_
