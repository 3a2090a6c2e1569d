// The Store seam: durable Assistants state. Two implementations (in-memory
// and SQLite) pass the same typed test suite (tests/store/store_test.cc).
//
// Contract shared by every implementation:
// - Methods are thread-safe and may block (call them off gRPC threads).
// - Objects are the generated protobuf messages; the store keeps them whole
//   and never interprets fields beyond ids, parents, run_id and a run's
//   status (for the one-active-run-per-thread rule).
// - Every method is atomic: it either applies all of its writes or none.
// - Errors: NOT_FOUND with reasons from errors.h (ASSISTANT_NOT_FOUND,
//   THREAD_NOT_FOUND, MESSAGE_NOT_FOUND, RUN_NOT_FOUND, RUN_STEP_NOT_FOUND);
//   UNAVAILABLE (STORE_UNAVAILABLE) for I/O trouble; INVALID_ARGUMENT
//   (INVALID_CURSOR, field "after"/"before") for a cursor id never seen in that
//   list; ABORTED (IDEMPOTENCY_CONFLICT) when a create carries an
//   IdempotencyRecord whose key already exists (a concurrent duplicate: the
//   caller re-reads the record).
// - Lists are in insertion order (ascending) or its reverse; a cursor may
//   name an object deleted since: paging continues from where it stood.
#ifndef SERVICE_STORE_STORE_H_
#define SERVICE_STORE_STORE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "assistants/v1/assistant.pb.h"
#include "assistants/v1/event.pb.h"
#include "assistants/v1/message.pb.h"
#include "assistants/v1/run.pb.h"
#include "assistants/v1/thread.pb.h"

namespace assistants {

// The project of objects created without one: everything when client
// authentication is off, and everything stored before projects existed.
inline constexpr char kDefaultProject[] = "default";

// The objects a project owns directly; messages, runs and steps belong to
// their thread's project.
enum class OwnedKind { kAssistant, kThread };

// A thread holds at most this many messages (OpenAI's limit).
inline constexpr int64_t kMaxMessagesPerThread = 100'000;

// One page request. `limit` is already validated (1..100).
struct ListQuery {
  int limit = 20;
  bool ascending = false;
  // Exclusive cursors; empty means unbounded. With `before` the page holds
  // the `limit` items closest to the cursor, still in the requested order.
  std::string after;
  std::string before;
};

template <typename T>
struct Page {
  std::vector<T> items;
  // More items exist beyond the page in the direction of travel (past the
  // last item for `after`/no cursor, before the first item for `before`).
  bool has_more = false;
};

// The outcome of a create call kept under a client's request_id, written in
// the same transaction as the object it created so a retry after a crash
// never creates a second object.
struct IdempotencyRecord {
  // Method + request_id (+ tenant, later).
  std::string key;
  // The request with request_id cleared, serialized deterministically.
  std::string request_fingerprint;
  // The serialized response returned the first time.
  std::string response;
  int64_t created_at_ms = 0;
};

// A change applied under the store's lock / transaction to the current
// version of an object; returning an error aborts the change. It must not
// call back into the store, and must not change the object's id or parent.
template <typename T>
using Mutation = std::function<absl::Status(T&)>;

// A run is active while its status is queued, in_progress, requires_action
// or cancelling; a thread has at most one active run unless runs were
// created with `reject_if_thread_active = false` (the queue policy).
bool IsActiveRunStatus(v1::RunStatus status);

// Everything CreateRun writes in one transaction.
struct RunCreation {
  // CreateThreadAndRun: the new thread, created first (null for CreateRun,
  // where run.thread_id() must exist), owned by `project`.
  const v1::Thread* new_thread = nullptr;
  std::string project = kDefaultProject;
  // The new thread's initial messages, or CreateRun's additional_messages;
  // each belongs to run.thread_id().
  std::vector<v1::Message> messages;
  v1::Run run;
  // The run's first events (sequences 1, 2, ...).
  std::vector<v1::RunEvent> events;
  // FAILED_PRECONDITION (THREAD_HAS_ACTIVE_RUN, metadata run_id = the active
  // run's id) when another run of the thread is active.
  bool reject_if_thread_active = true;
  // When > 0: RESOURCE_EXHAUSTED (PROJECT_ACTIVE_RUN_LIMIT) when `project`
  // already has this many active runs, checked and inserted as one step for
  // every process sharing the store (the engine counts its own runs in
  // memory; this bound holds across replicas).
  int64_t max_active_runs_in_project = 0;
  // May be null.
  const IdempotencyRecord* idempotency = nullptr;
};

// One run's writes, applied by CommitRunChanges.
struct RunChanges {
  std::string thread_id;
  std::string run_id;
  // Replaces the stored run when set.
  std::optional<v1::Run> run;
  // Inserted, or replaced when their id exists (same run).
  std::vector<v1::RunStep> steps;
  // Inserted into the thread, or replaced when their id exists; no
  // active-run or message-limit check (these are the run's own messages).
  std::vector<v1::Message> messages;
  // Appended to the run's event log; their sequences must continue the log
  // without gaps (INTERNAL, RUN_EVENT_SEQUENCE otherwise).
  std::vector<v1::RunEvent> events;
  // May be null (SubmitToolOutputs' request_id).
  const IdempotencyRecord* idempotency = nullptr;
  // Fencing (several gateways on one database): when `lease_token` is not
  // 0, the change applies only while `lease_owner` still holds the run's
  // lease with that token; otherwise the batch fails with ABORTED
  // (RUN_LEASE_LOST, metadata run_id) and nothing of it is written. Stores
  // without run leases (memory, SQLite: one gateway) never see a token.
  std::string lease_owner;
  int64_t lease_token = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  // --- Assistants ---
  // `idempotency` may be null. The assistant belongs to `project`.
  virtual absl::Status CreateAssistant(
      const v1::Assistant& assistant, absl::string_view project,
      const IdempotencyRecord* idempotency) = 0;
  virtual absl::StatusOr<v1::Assistant> GetAssistant(absl::string_view id) = 0;
  // The assistants of `project`; a cursor naming another project's assistant
  // is INVALID_CURSOR, as for one never seen.
  virtual absl::StatusOr<Page<v1::Assistant>> ListAssistants(
      absl::string_view project, const ListQuery& query) = 0;
  // Reads, mutates and writes back atomically; returns the new version.
  virtual absl::StatusOr<v1::Assistant> UpdateAssistant(
      absl::string_view id, const Mutation<v1::Assistant>& mutate) = 0;
  virtual absl::Status DeleteAssistant(absl::string_view id) = 0;

  // --- Threads ---
  // Creates the thread (owned by `project`) and its initial messages
  // together.
  virtual absl::Status CreateThread(const v1::Thread& thread,
                                    absl::string_view project,
                                    const std::vector<v1::Message>& messages,
                                    const IdempotencyRecord* idempotency) = 0;
  virtual absl::StatusOr<v1::Thread> GetThread(absl::string_view id) = 0;
  virtual absl::StatusOr<v1::Thread> UpdateThread(
      absl::string_view id, const Mutation<v1::Thread>& mutate) = 0;
  // Deletes the thread and everything in it (messages, runs, steps, event
  // logs). THREAD_HAS_ACTIVE_RUN while a run of the thread is active.
  virtual absl::Status DeleteThread(absl::string_view id) = 0;

  // --- Messages ---
  // THREAD_NOT_FOUND when message.thread_id does not exist;
  // FAILED_PRECONDITION (THREAD_MESSAGE_LIMIT) at kMaxMessagesPerThread;
  // FAILED_PRECONDITION (THREAD_HAS_ACTIVE_RUN) while a run is active.
  virtual absl::Status CreateMessage(const v1::Message& message,
                                     const IdempotencyRecord* idempotency) = 0;
  // MESSAGE_NOT_FOUND also when the message belongs to another thread.
  virtual absl::StatusOr<v1::Message> GetMessage(
      absl::string_view thread_id, absl::string_view message_id) = 0;
  // THREAD_NOT_FOUND when the thread does not exist. A non-empty `run_id`
  // keeps only messages with that run_id.
  virtual absl::StatusOr<Page<v1::Message>> ListMessages(
      absl::string_view thread_id, absl::string_view run_id,
      const ListQuery& query) = 0;
  virtual absl::StatusOr<v1::Message> UpdateMessage(
      absl::string_view thread_id, absl::string_view message_id,
      const Mutation<v1::Message>& mutate) = 0;
  virtual absl::Status DeleteMessage(absl::string_view thread_id,
                                     absl::string_view message_id) = 0;

  // --- Runs, run steps and run event logs ---
  // As for messages, a missing thread is THREAD_NOT_FOUND (checked before
  // the run or step) wherever a thread id is passed, except in
  // CommitRunChanges.
  //
  // THREAD_NOT_FOUND (for CreateRun), THREAD_HAS_ACTIVE_RUN, ALREADY_EXISTS
  // (any id already taken, the new thread's included), THREAD_MESSAGE_LIMIT,
  // IDEMPOTENCY_CONFLICT; THREAD_ID_MISMATCH when new_thread or a message
  // names another thread; RUN_EVENT_SEQUENCE unless events are 1, 2, ...
  // The messages are listed before anything the run adds.
  virtual absl::Status CreateRun(const RunCreation& creation) = 0;
  // RUN_NOT_FOUND also when the run belongs to another thread.
  virtual absl::StatusOr<v1::Run> GetRun(absl::string_view thread_id,
                                         absl::string_view run_id) = 0;
  // In creation order.
  virtual absl::StatusOr<Page<v1::Run>> ListRuns(absl::string_view thread_id,
                                                 const ListQuery& query) = 0;
  // Every active run of every thread, oldest first (recovery at start).
  virtual absl::StatusOr<std::vector<v1::Run>> ListActiveRuns() = 0;
  // Applies every change of the batch in one transaction, or none of them;
  // the changes apply in order (a later one sees the earlier ones' writes).
  // RUN_NOT_FOUND when a run does not exist in the change's thread (e.g.
  // deleted with it); ALREADY_EXISTS when a step or message id is taken by
  // another object; RUN_EVENT_SEQUENCE; IDEMPOTENCY_CONFLICT; INTERNAL
  // (STORE_IMMUTABLE_FIELD) when `run` has another id or thread;
  // INVALID_ARGUMENT (RUN_ID_MISMATCH, THREAD_ID_MISMATCH) when a step or
  // message names another run or thread.
  virtual absl::Status CommitRunChanges(
      const std::vector<const RunChanges*>& batch) = 0;
  // RUN_NOT_FOUND when the run is not the thread's; RUN_STEP_NOT_FOUND also
  // when the step belongs to another run.
  virtual absl::StatusOr<v1::RunStep> GetRunStep(absl::string_view thread_id,
                                                 absl::string_view run_id,
                                                 absl::string_view step_id) = 0;
  // In creation order (the order of first insertion). RUN_NOT_FOUND when
  // the run is not the thread's.
  virtual absl::StatusOr<Page<v1::RunStep>> ListRunSteps(
      absl::string_view thread_id, absl::string_view run_id,
      const ListQuery& query) = 0;
  // Up to `limit` events with sequence > after_sequence, in order (none for
  // limit <= 0). An unknown run has no events (empty result, not an error).
  virtual absl::StatusOr<std::vector<v1::RunEvent>> ListRunEvents(
      absl::string_view run_id, int64_t after_sequence, int limit) = 0;

  // --- Projects ---
  // The project owning assistant or thread `id`: NOT_FOUND
  // (ASSISTANT_NOT_FOUND / THREAD_NOT_FOUND) when no such object exists. A
  // project never changes, so callers may cache the answer.
  virtual absl::StatusOr<std::string> GetProject(OwnedKind kind,
                                                 absl::string_view id) = 0;

  // --- Idempotency ---
  virtual absl::StatusOr<std::optional<IdempotencyRecord>> GetIdempotencyRecord(
      absl::string_view key) = 0;
  // Forgets records created before `cutoff_ms`; returns how many.
  virtual absl::StatusOr<int64_t> PruneIdempotencyRecords(
      int64_t cutoff_ms) = 0;
};

}  // namespace assistants

#endif  // SERVICE_STORE_STORE_H_
