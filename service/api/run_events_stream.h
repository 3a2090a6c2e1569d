// The RunEvents server stream: a ServerWriteReactor that tails one run's
// event log. It pulls one event at a time (the next write starts from
// OnWriteDone), from the engine's in-memory hub when it can and from the
// store when it is behind, so a slow client never makes the gateway buffer
// more than a small read-ahead. The run does not depend on the stream.
#ifndef SERVICE_API_RUN_EVENTS_STREAM_H_
#define SERVICE_API_RUN_EVENTS_STREAM_H_

#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "service/api/admission.h"
#include "service/common/executor.h"
#include "service/common/timers.h"
#include "service/runs/engine.h"

namespace assistants {

class RunEventsStream;

// Every open stream, so shutdown can tell each to drain.
class StreamRegistry {
 public:
  class Member {
   public:
    virtual ~Member() = default;
    virtual void Drain() = 0;
  };
  // Registers an open stream; false once DrainAll has run (the caller
  // drains at once: no new stream may start on a gateway shutting down).
  bool Add(const std::shared_ptr<Member>& member);
  void Remove(const Member* member);
  // Sends `draining` on every open stream and ends it.
  void DrainAll();
  size_t size() const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<const Member*, std::weak_ptr<Member>> members_
      ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
};

struct StreamOptions {
  // Silence after which a heartbeat event is sent.
  int64_t heartbeat_ms = 15'000;
  // Events read from the store per catch-up read.
  int read_ahead = 64;
};

// Creates the reactor for one RunEvents call (it deletes itself in OnDone).
// The call is admitted by `admission` (authentication, rate limit, request
// checks, the project's stream limit) before the run is opened.
grpc::ServerWriteReactor<v1::RunEventsResponse>* StartRunEventsStream(
    grpc::CallbackServerContext* context, const v1::RunEventsRequest& request,
    runs::RunEngine* engine, Executor* executor, Timers* timers,
    const Clock* clock, StreamRegistry* registry, Admission* admission,
    const StreamOptions& options);

}  // namespace assistants

#endif  // SERVICE_API_RUN_EVENTS_STREAM_H_
