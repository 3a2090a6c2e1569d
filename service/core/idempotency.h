// Idempotency keys (a client's request_id) for creates and submits: a retry
// with the same key and the same request replays the first response instead
// of doing the work twice; the same key with a different request is refused.
// Shared by the resource core and the run engine.
#ifndef SERVICE_CORE_IDEMPOTENCY_H_
#define SERVICE_CORE_IDEMPOTENCY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "service/common/clock.h"
#include "service/common/status_macros.h"
#include "service/store/store.h"

namespace assistants {

// How long a request_id protects against duplicates (as Stripe and OpenAI's
// idempotency keys: 24 hours).
inline constexpr int64_t kIdempotencyWindowMs = 24 * 3600 * 1000;

// Deterministic bytes of `request` without its request_id: two requests are
// "the same" for idempotency when these bytes are equal.
std::string RequestFingerprint(const google::protobuf::Message& request);

class IdempotencyGuard {
 public:
  // `store` and `clock` must outlive the guard.
  IdempotencyGuard(Store* store, const Clock* clock)
      : store_(store), clock_(clock) {}

  // Runs `execute` at most once per (method, project, request.request_id())
  // within the window: one project can neither replay nor block another's
  // keys. `execute` gets the record to store (null when the request
  // has no request_id); before writing, it must set record->response to its
  // serialized response, and write the record in the same transaction as
  // its effects.
  // Concurrent requests with one key are serialized; the later ones replay.
  template <typename Request, typename Response>
  absl::StatusOr<Response> Run(
      absl::string_view method, absl::string_view project,
      const Request& request,
      const std::function<absl::StatusOr<Response>(IdempotencyRecord*)>&
          execute) {
    if (request.request_id().empty()) return execute(nullptr);
    std::string stored;
    ASSIGN_OR_RETURN(bool replayed,
                     RunBytes(method, project, request.request_id(),
                              RequestFingerprint(request), &stored,
                              [&](IdempotencyRecord* record) -> absl::Status {
                                return execute(record).status();
                              }));
    (void)replayed;
    Response response;
    if (!response.ParseFromString(stored)) return CorruptResponse();
    return response;
  }

 private:
  // The untyped core of Run: `*response` receives the stored or new
  // serialized response. Returns whether it was a replay.
  absl::StatusOr<bool> RunBytes(
      absl::string_view method, absl::string_view project,
      absl::string_view request_id, const std::string& fingerprint,
      std::string* response,
      const std::function<absl::Status(IdempotencyRecord*)>& execute);
  absl::StatusOr<std::optional<IdempotencyRecord>> Replayable(
      const std::string& key, const std::string& fingerprint,
      absl::string_view request_id);
  static absl::Status CorruptResponse();

  absl::Mutex* KeyLock(const std::string& key);
  void ReleaseKeyLock(const std::string& key);

  Store* store_;
  const Clock* clock_;
  absl::Mutex key_locks_mu_;
  struct KeyLockEntry {
    absl::Mutex mu;
    int users = 0;
  };
  absl::flat_hash_map<std::string, std::unique_ptr<KeyLockEntry>> key_locks_
      ABSL_GUARDED_BY(key_locks_mu_);
};

}  // namespace assistants

#endif  // SERVICE_CORE_IDEMPOTENCY_H_
