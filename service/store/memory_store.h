// MemoryStore: the in-memory Store, for tests and single-process deployments
// that can afford to lose state on restart. One mutex guards everything, so
// each method is trivially atomic.
#ifndef SERVICE_STORE_MEMORY_STORE_H_
#define SERVICE_STORE_MEMORY_STORE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "service/store/store.h"

namespace assistants {

class MemoryStore : public Store {
 public:
  // `max_messages_per_thread` exists so tests can reach the limit cheaply.
  explicit MemoryStore(int64_t max_messages_per_thread = kMaxMessagesPerThread);

  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;

  // Mutations passed to Update* run under the store's lock: they must not call
  // back into the store.
  absl::Status CreateAssistant(const v1::Assistant& assistant,
                               const IdempotencyRecord* idempotency) override;
  absl::StatusOr<v1::Assistant> GetAssistant(absl::string_view id) override;
  absl::StatusOr<Page<v1::Assistant>> ListAssistants(
      const ListQuery& query) override;
  absl::StatusOr<v1::Assistant> UpdateAssistant(
      absl::string_view id, const Mutation<v1::Assistant>& mutate) override;
  absl::Status DeleteAssistant(absl::string_view id) override;

  absl::Status CreateThread(const v1::Thread& thread,
                            const std::vector<v1::Message>& messages,
                            const IdempotencyRecord* idempotency) override;
  absl::StatusOr<v1::Thread> GetThread(absl::string_view id) override;
  absl::StatusOr<v1::Thread> UpdateThread(
      absl::string_view id, const Mutation<v1::Thread>& mutate) override;
  absl::Status DeleteThread(absl::string_view id) override;

  absl::Status CreateMessage(const v1::Message& message,
                             const IdempotencyRecord* idempotency) override;
  absl::StatusOr<v1::Message> GetMessage(absl::string_view thread_id,
                                         absl::string_view message_id) override;
  absl::StatusOr<Page<v1::Message>> ListMessages(
      absl::string_view thread_id, absl::string_view run_id,
      const ListQuery& query) override;
  absl::StatusOr<v1::Message> UpdateMessage(
      absl::string_view thread_id, absl::string_view message_id,
      const Mutation<v1::Message>& mutate) override;
  absl::Status DeleteMessage(absl::string_view thread_id,
                             absl::string_view message_id) override;

  absl::StatusOr<std::optional<IdempotencyRecord>> GetIdempotencyRecord(
      absl::string_view key) override;
  absl::StatusOr<int64_t> PruneIdempotencyRecords(int64_t cutoff_ms) override;

 private:
  struct ThreadEntry {
    int64_t seq = 0;
    v1::Thread thread;
    // The thread's messages by insertion sequence number.
    std::map<int64_t, v1::Message> messages;
  };
  // Where a message lives, so GetMessage need not scan threads.
  struct MessageLocation {
    std::string thread_id;
    int64_t seq = 0;
  };
  // A deleted object, kept so a paging cursor naming it still has a position.
  struct Tombstone {
    std::string kind;
    std::string parent_id;
    int64_t seq = 0;
  };

  // The sequence number of cursor `id` in the list of `kind` objects under
  // `parent_id` (live or deleted); INVALID_CURSOR for `field` otherwise.
  absl::StatusOr<int64_t> CursorSeq(absl::string_view field,
                                    absl::string_view id,
                                    absl::string_view kind,
                                    absl::string_view parent_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The live sequence number of `id` if it is a `kind` under `parent_id`.
  std::optional<int64_t> LiveSeq(absl::string_view id, absl::string_view kind,
                                 absl::string_view parent_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // ABORTED (IDEMPOTENCY_CONFLICT) when `record`'s key is taken.
  absl::Status CheckIdempotency(const IdempotencyRecord* record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PutIdempotency(const IdempotencyRecord* record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The thread's entry and the message's sequence number, or NOT_FOUND.
  absl::StatusOr<std::pair<ThreadEntry*, int64_t>> FindMessage(
      absl::string_view thread_id, absl::string_view message_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether `id` is taken by any live object.
  bool IdInUse(const std::string& id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int64_t max_messages_per_thread_;

  absl::Mutex mu_;
  int64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<int64_t, v1::Assistant> assistants_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, int64_t> assistant_seq_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, ThreadEntry> threads_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, MessageLocation> messages_
      ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, Tombstone> tombstones_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, IdempotencyRecord> idempotency_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace assistants

#endif  // SERVICE_STORE_MEMORY_STORE_H_
