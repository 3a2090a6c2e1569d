#include "service/store/store_errors.h"

#include <chrono>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "service/common/errors.h"

namespace assistants {

// Declared in store.h; defined here because the store library has no
// store.cc and both stores need it.
bool IsActiveRunStatus(v1::RunStatus status) {
  switch (status) {
    case v1::RUN_STATUS_QUEUED:
    case v1::RUN_STATUS_IN_PROGRESS:
    case v1::RUN_STATUS_REQUIRES_ACTION:
    case v1::RUN_STATUS_CANCELLING:
      return true;
    default:
      return false;
  }
}

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

absl::Status ParentIdMismatch(absl::string_view kind, absl::string_view id,
                              absl::string_view parent_kind,
                              absl::string_view parent_id) {
  return MakeError(
      absl::StatusCode::kInvalidArgument,
      absl::StrCat(absl::AsciiStrToUpper(parent_kind), "_ID_MISMATCH"),
      absl::StrCat("The ", kind, " '", id, "' does not belong to ", parent_kind,
                   " '", parent_id, "'."),
      {{absl::StrCat(parent_kind, "_id"), std::string(parent_id)},
       {absl::StrCat(kind, "_id"), std::string(id)}});
}

absl::Status ThreadHasActiveRun(absl::string_view thread_id,
                                absl::string_view run_id) {
  return MakeError(
      absl::StatusCode::kFailedPrecondition, "THREAD_HAS_ACTIVE_RUN",
      absl::StrCat("Thread ", thread_id, " already has an active run ", run_id,
                   "; wait for it to end or cancel it."),
      {{"thread_id", std::string(thread_id)}, {"run_id", std::string(run_id)}});
}

absl::Status ProjectActiveRunLimit(absl::string_view project, int64_t limit) {
  absl::Status error = MakeError(
      absl::StatusCode::kResourceExhausted, "PROJECT_ACTIVE_RUN_LIMIT",
      absl::StrCat("The project has ", limit,
                   " active runs, its limit; retry when one has ended"),
      {{"project", std::string(project)}, {"limit", absl::StrCat(limit)}});
  SetRetryDelay(error, std::chrono::seconds(1));
  return error;
}

absl::Status RunEventSequence(absl::string_view run_id, int64_t expected,
                              int64_t sequence) {
  return MakeError(absl::StatusCode::kInternal, "RUN_EVENT_SEQUENCE",
                   absl::StrCat("Event ", sequence, " of run ", run_id,
                                " does not continue its event log (expected ",
                                expected, ")."),
                   {{"run_id", std::string(run_id)},
                    {"expected_sequence", absl::StrCat(expected)},
                    {"sequence", absl::StrCat(sequence)}});
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

absl::Status ValidateRunCreation(const RunCreation& creation,
                                 int64_t max_messages_per_thread) {
  const v1::Run& run = creation.run;
  if (creation.new_thread != nullptr &&
      creation.new_thread->id() != run.thread_id()) {
    return ParentIdMismatch(kRunKind, run.id(), kThreadKind,
                            creation.new_thread->id());
  }
  for (const v1::Message& message : creation.messages) {
    if (message.thread_id() != run.thread_id()) {
      return ThreadIdMismatch(run.thread_id(), message.id());
    }
  }
  for (size_t i = 0; i < creation.events.size(); ++i) {
    const int64_t expected = static_cast<int64_t>(i) + 1;
    if (creation.events[i].sequence() != expected) {
      return RunEventSequence(run.id(), expected,
                              creation.events[i].sequence());
    }
  }
  if (creation.new_thread != nullptr &&
      static_cast<int64_t>(creation.messages.size()) >
          max_messages_per_thread) {
    return MessageLimit(run.thread_id(), max_messages_per_thread);
  }
  return absl::OkStatus();
}

absl::Status ValidateRunChanges(const RunChanges& changes) {
  if (changes.run.has_value()) {
    if (changes.run->id() != changes.run_id) {
      return ImmutableField(kRunKind, "id");
    }
    if (changes.run->thread_id() != changes.thread_id) {
      return ImmutableField(kRunKind, "thread_id");
    }
  }
  for (const v1::RunStep& step : changes.steps) {
    if (step.run_id() != changes.run_id) {
      return ParentIdMismatch(kRunStepKind, step.id(), kRunKind,
                              changes.run_id);
    }
    if (step.thread_id() != changes.thread_id) {
      return ParentIdMismatch(kRunStepKind, step.id(), kThreadKind,
                              changes.thread_id);
    }
  }
  for (const v1::Message& message : changes.messages) {
    if (message.thread_id() != changes.thread_id) {
      return ThreadIdMismatch(changes.thread_id, message.id());
    }
  }
  return absl::OkStatus();
}

}  // namespace assistants
