// WorkerDispatcher: the run engine's ToolDispatcher over the registry. Each
// call goes to a live replica of its tool (chosen by the registry, under
// each replica's concurrency cap; calls over the cap wait in order), with
// the tool's deadline and an idempotency key (run_id:call_id). Failures
// never reach the run as errors: they become a JSON output the model reads,
//   {"error": "...", "error_type": "timeout", "tool": "get_stock_price"}
// with error_type one of invalid_arguments, no_worker, unavailable, timeout,
// worker_error, invalid_output, cancelled. UNAVAILABLE is retried on another
// replica when the tool is idempotent, or for any tool when the worker said
// it did not start the call (CALL_NOT_STARTED).
#ifndef TOOL_WORKERS_DISPATCHER_H_
#define TOOL_WORKERS_DISPATCHER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "service/common/clock.h"
#include "service/common/timers.h"
#include "service/runs/tool_dispatcher.h"
#include "tool_workers/registry.h"
#include "tool_workers/worker_transport.h"

namespace assistants::tool_workers {

struct DispatcherOptions {
  // Attempts of one call over distinct replicas (retries need a reason).
  int max_attempts = 3;
  // How long a call whose tool has no live worker waits for one to
  // register; covers runs resumed after a gateway restart, before their
  // workers noticed and registered again. 0 answers no_worker at once.
  int64_t no_worker_wait_ms = 0;
  // Larger outputs are refused (the model's input has limits too).
  size_t max_output_bytes = 512 * 1024;
};

class WorkerDispatcher final : public runs::ToolDispatcher {
 public:
  // Installs itself as the registry's capacity listener. Every pointer
  // must outlive the dispatcher.
  WorkerDispatcher(ToolRegistry* registry, WorkerTransport* transport,
                   const Clock* clock, Timers* timers,
                   DispatcherOptions options);
  // Shutdown(), then waits for the transport to return every call.
  ~WorkerDispatcher() override;

  bool Handles(absl::string_view tool_name) const override;
  std::optional<v1::FunctionDefinition> Definition(
      absl::string_view tool_name) const override;
  void Invoke(const runs::ToolCallContext& context,
              const runs::ToolInvocation& invocation,
              std::function<void(std::string)> done) override;
  void CancelRun(absl::string_view run_id) override;
  // Cancels every call (each still gets its `done`); later calls are
  // answered cancelled at once.
  void Shutdown();

  // Calls waiting for a replica; for tests and metrics.
  size_t waiting() const;

 private:
  struct Call;
  using CallPtr = std::shared_ptr<Call>;

  // Tries to place `call` on a replica; otherwise queues it or ends it.
  void TryStart(const CallPtr& call);
  // One try; true when capacity changed meanwhile and it must look again.
  bool TryStartOnce(const CallPtr& call);
  void OnResult(const CallPtr& call, const WorkerSlot& slot, uint64_t attempt,
                const absl::Status& status, std::string output);
  void OnCapacity();
  void OnDeadline(const CallPtr& call);
  // Marks `call` finished (under mu_); the caller runs Deliver() after
  // unlocking. False when it had finished already.
  bool FinishLocked(const CallPtr& call) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void Deliver(const CallPtr& call, std::string output);

  ToolRegistry* const registry_;
  WorkerTransport* const transport_;
  const Clock* const clock_;
  Timers* const timers_;
  const DispatcherOptions options_;

  mutable absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<CallPtr> waiting_ ABSL_GUARDED_BY(mu_);
  // Unfinished calls by run, for CancelRun and Shutdown.
  absl::flat_hash_map<std::string, std::vector<CallPtr>> by_run_
      ABSL_GUARDED_BY(mu_);
  int attempts_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // Bumped by every capacity change; closes the gap between Acquire()
  // failing and the call joining waiting_.
  uint64_t capacity_epoch_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace assistants::tool_workers

#endif  // TOOL_WORKERS_DISPATCHER_H_
