// RunEngine: the Assistants run semantics over the Store, Provider,
// ToolDispatcher, Clock and Timers seams. It owns every active run of this
// gateway (one RunActor each), the one-active-run-per-thread policy, the
// durable event log (through the RunCommitter) and its live tail (the
// RunEventHub that RunEvents streams read). No gRPC or HTTP in here.
//
// The public methods block on the store (call them off gRPC threads); the
// runs themselves progress on the engine's executor, so a slow provider or
// store never holds a caller.
#ifndef SERVICE_RUNS_ENGINE_H_
#define SERVICE_RUNS_ENGINE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "assistants/v1/run_service.pb.h"
#include "service/common/clock.h"
#include "service/common/executor.h"
#include "service/common/timers.h"
#include "service/core/idempotency.h"
#include "service/runs/committer.h"
#include "service/runs/event_hub.h"
#include "service/runs/run_observer.h"
#include "service/runs/tool_dispatcher.h"
#include "service/store/store.h"
#include "upstream/provider.h"

namespace assistants::runs {

class RunActor;

// The provider serving an upstream backend name (the run's `upstream`).
using ProviderResolver =
    std::function<absl::StatusOr<upstream::Provider*>(absl::string_view)>;

struct EngineOptions {
  // How long a run may wait in requires_action (OpenAI: 10 minutes).
  int64_t requires_action_timeout_ms = 600'000;
  // The policy when a request leaves active_run_policy unspecified.
  v1::ActiveRunPolicy default_active_run_policy = v1::ACTIVE_RUN_POLICY_REJECT;
  // Recorded as run.upstream when the assistant names none.
  std::string default_upstream;
  // A run may call the model at most this many times (a tool loop guard).
  int max_turns = 32;
  // Interrupt policy: how long to wait for the active run to end.
  int64_t interrupt_wait_ms = 30'000;
  // A run interrupted by this many gateway restarts fails instead of being
  // resumed again (a turn that crashes the process must not loop forever).
  int max_restart_resumes = 2;
  // At most this many active runs (queued, in progress, waiting for tool
  // outputs) per project on this gateway; 0 = no limit.
  int max_active_runs_per_project = 0;
  // Told about every run that reaches a terminal status (metrics); may be
  // null. Must outlive the engine.
  RunObserver* observer = nullptr;
};

// Everything a RunActor needs from its engine.
struct EngineContext {
  Store* store = nullptr;
  ProviderResolver resolve_provider;
  ToolDispatcher* dispatcher = nullptr;
  const Clock* clock = nullptr;
  Timers* timers = nullptr;
  Executor* executor = nullptr;
  RunCommitter* committer = nullptr;
  RunEventHub* hub = nullptr;
  EngineOptions options;
  // Called once when a run reached a terminal status and its last event is
  // durable (or it stopped being driven).
  std::function<void(const std::shared_ptr<RunActor>&)> on_finished;
};

class RunEngine {
 public:
  // Every pointer must outlive the engine. `executor` runs the runs.
  RunEngine(Store* store, ProviderResolver resolve_provider,
            ToolDispatcher* dispatcher, const Clock* clock, Timers* timers,
            Executor* executor, EngineOptions options);
  // Stops driving runs (see Stop) and releases everything.
  ~RunEngine();

  // Picks up the runs a previous process left active: queued runs start,
  // in_progress runs resume from their last durable point (the start of the
  // interrupted model turn), requires_action runs keep waiting with their
  // expiry, cancelling runs end cancelled. Call once, before serving.
  absl::Status Recover();

  // Stops driving: in-flight model turns are aborted and runs keep their
  // stored status, to be resumed by the next process's Recover. Idempotent.
  void Stop();

  // Creates act for `project` (its idempotency keys, the new thread's owner,
  // its active-run limit); the caller has checked that the thread and the
  // assistant named are the project's (service/core/tenancy.h).
  absl::StatusOr<v1::CreateRunResponse> CreateRun(
      absl::string_view project, const v1::CreateRunRequest& request);
  absl::StatusOr<v1::CreateThreadAndRunResponse> CreateThreadAndRun(
      absl::string_view project, const v1::CreateThreadAndRunRequest& request);
  absl::StatusOr<v1::GetRunResponse> GetRun(const v1::GetRunRequest& request);
  absl::StatusOr<v1::ListRunsResponse> ListRuns(
      const v1::ListRunsRequest& request);
  absl::StatusOr<v1::UpdateRunResponse> UpdateRun(
      const v1::UpdateRunRequest& request);
  absl::StatusOr<v1::CancelRunResponse> CancelRun(
      const v1::CancelRunRequest& request);
  absl::StatusOr<v1::SubmitToolOutputsResponse> SubmitToolOutputs(
      absl::string_view project, const v1::SubmitToolOutputsRequest& request);
  absl::StatusOr<v1::GetRunStepResponse> GetRunStep(
      const v1::GetRunStepRequest& request);
  absl::StatusOr<v1::ListRunStepsResponse> ListRunSteps(
      const v1::ListRunStepsRequest& request);

  // For RunEvents: checks the request and returns the run to stream,
  // creating it first when `start` is set.
  absl::StatusOr<v1::Run> OpenEvents(absl::string_view project,
                                     const v1::RunEventsRequest& request);
  // Stored events of a run after `after_sequence` (at most `limit`).
  absl::StatusOr<std::vector<v1::RunEvent>> ReadEvents(
      const std::string& run_id, int64_t after_sequence, int limit);
  // Whether the run is no longer live here and has ended (its log is
  // complete: a reader with nothing left to read is done).
  bool RunEnded(const std::string& thread_id, const std::string& run_id);
  RunEventHub* hub() { return &hub_; }

  // Runs driven by this engine now.
  size_t active_runs() const;
  // Run changes waiting for the committer (for metrics).
  size_t commit_queue_depth() const { return committer_.queue_depth(); }
  // Blocks until every change submitted so far is durable (tests).
  void FlushForTesting() { committer_.Flush(); }

 private:
  // Starts driving `actor` (or queues it behind its thread's active run).
  void Admit(const std::shared_ptr<RunActor>& actor);
  void OnFinished(const std::shared_ptr<RunActor>& actor);
  std::shared_ptr<RunActor> FindActor(absl::string_view thread_id,
                                      absl::string_view run_id) const;
  // Interrupt policy: cancels the thread's active runs and waits for them.
  absl::Status InterruptActive(const std::string& thread_id);
  // The shared tail of CreateRun / CreateThreadAndRun: writes the run with
  // its first events and starts it.
  absl::Status StartRun(RunCreation& creation, const v1::RunOptions& options);
  v1::ActiveRunPolicy EffectivePolicy(v1::ActiveRunPolicy requested) const;
  // Counts run `run_id` against its project's active-run limit:
  // RESOURCE_EXHAUSTED (PROJECT_ACTIVE_RUN_LIMIT) when the project is at it,
  // unless `force` (recovery: those runs exist already).
  absl::Status ReserveRunSlot(const std::string& project,
                              const std::string& run_id, bool force);
  void ReleaseRunSlot(const std::string& run_id);
  void ReleaseRunSlotLocked(const std::string& run_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  RunEventHub hub_;
  EngineContext context_;
  IdempotencyGuard idempotency_;

  mutable absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<std::string, std::shared_ptr<RunActor>> actors_
      ABSL_GUARDED_BY(mu_);
  // Per thread, its active runs in order; the front one is being driven.
  absl::flat_hash_map<std::string, std::deque<std::shared_ptr<RunActor>>>
      threads_ ABSL_GUARDED_BY(mu_);
  // Active runs per project, and each counted run's project.
  absl::flat_hash_map<std::string, int> project_runs_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::string> run_projects_
      ABSL_GUARDED_BY(mu_);
  // Last: destroyed (and joined) first, while everything its callbacks
  // reach is still alive.
  RunCommitter committer_;
};

}  // namespace assistants::runs

#endif  // SERVICE_RUNS_ENGINE_H_
