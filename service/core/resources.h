// The core of the assistants, threads and messages API: validation, defaults,
// ids, timestamps, partial updates and idempotency, over the Store and Clock
// seams. Knows nothing of gRPC: takes and returns the contract's messages and
// absl::Status errors (see errors.h); service/api adapts it to the wire.
#ifndef SERVICE_CORE_RESOURCES_H_
#define SERVICE_CORE_RESOURCES_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "assistants/v1/assistant.pb.h"
#include "assistants/v1/message.pb.h"
#include "assistants/v1/thread.pb.h"
#include "service/common/clock.h"
#include "service/core/idempotency.h"
#include "service/store/store.h"

namespace assistants {

// Creates and lists act within the caller's `project` (kDefaultProject when
// authentication is off); reads and writes of one object by id do not check
// it: the API layer's tenancy guard (tenancy.h) has, before calling here.
class Resources {
 public:
  // `store` and `clock` must outlive this object.
  Resources(Store* store, const Clock* clock)
      : store_(store), clock_(clock), idempotency_(store, clock) {}

  absl::StatusOr<v1::CreateAssistantResponse> CreateAssistant(
      absl::string_view project, const v1::CreateAssistantRequest& request);
  absl::StatusOr<v1::GetAssistantResponse> GetAssistant(
      const v1::GetAssistantRequest& request);
  absl::StatusOr<v1::ListAssistantsResponse> ListAssistants(
      absl::string_view project, const v1::ListAssistantsRequest& request);
  absl::StatusOr<v1::UpdateAssistantResponse> UpdateAssistant(
      const v1::UpdateAssistantRequest& request);
  absl::StatusOr<v1::DeleteAssistantResponse> DeleteAssistant(
      const v1::DeleteAssistantRequest& request);

  absl::StatusOr<v1::CreateThreadResponse> CreateThread(
      absl::string_view project, const v1::CreateThreadRequest& request);
  absl::StatusOr<v1::GetThreadResponse> GetThread(
      const v1::GetThreadRequest& request);
  absl::StatusOr<v1::UpdateThreadResponse> UpdateThread(
      const v1::UpdateThreadRequest& request);
  absl::StatusOr<v1::DeleteThreadResponse> DeleteThread(
      const v1::DeleteThreadRequest& request);

  absl::StatusOr<v1::CreateMessageResponse> CreateMessage(
      absl::string_view project, const v1::CreateMessageRequest& request);
  absl::StatusOr<v1::GetMessageResponse> GetMessage(
      const v1::GetMessageRequest& request);
  absl::StatusOr<v1::ListMessagesResponse> ListMessages(
      const v1::ListMessagesRequest& request);
  absl::StatusOr<v1::UpdateMessageResponse> UpdateMessage(
      const v1::UpdateMessageRequest& request);
  absl::StatusOr<v1::DeleteMessageResponse> DeleteMessage(
      const v1::DeleteMessageRequest& request);

 private:
  // Runs a create at most once per (method, request_id) within the
  // idempotency window: `build` validates and makes the response, `persist`
  // stores its object together with the record (null without a request_id).
  // A repeat of the key with the same request replays the first response.
  template <typename Request, typename Response>
  absl::StatusOr<Response> Idempotent(
      absl::string_view method, absl::string_view project,
      const Request& request,
      const std::function<absl::StatusOr<Response>()>& build,
      const std::function<absl::Status(const Response&,
                                       const IdempotencyRecord*)>& persist);

  Store* store_;
  const Clock* clock_;
  IdempotencyGuard idempotency_;
};

}  // namespace assistants

#endif  // SERVICE_CORE_RESOURCES_H_
