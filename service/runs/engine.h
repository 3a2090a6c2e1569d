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
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "assistants/v1/run_service.pb.h"
#include "service/cluster/run_leases.h"
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
  // Several replicas (EnableCluster): how often held leases are renewed and
  // expired ones claimed (a quarter of the lease TTL is usual).
  int64_t lease_maintenance_ms = 2500;
  // How long a call needing a run driven by another replica (tool outputs,
  // cancel, metadata) waits for that replica to hand it over.
  int64_t owner_wait_ms = 5000;
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
  // Null with one gateway.
  cluster::RunLeases* leases = nullptr;
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

  // Several gateway replicas on one database: runs are driven under leases
  // (service/cluster/run_leases.h). Call before Recover; `leases` must
  // outlive the engine.
  void EnableCluster(cluster::RunLeases* leases);
  bool clustered() const { return context_.leases != nullptr; }

  // Several replicas: a command another replica sent for `run_id` (acted on
  // only when the run is driven here).
  void OnRunCommand(cluster::RunCommand command, const std::string& run_id);
  // Several replicas: one round of lease upkeep: renews the leases of the
  // runs driven here, stops those whose lease was lost, claims expired
  // leases and resumes their runs. Recover starts a thread doing this every
  // lease_maintenance_ms; public for tests.
  void MaintainLeases();

  // Picks up the runs a previous process left active: queued runs start,
  // in_progress runs resume from their last durable point (the start of the
  // interrupted model turn), requires_action runs keep waiting with their
  // expiry, cancelling runs end cancelled. Call once, before serving. With
  // several replicas it takes only runs whose lease expired (the others
  // are driven elsewhere) and starts the lease upkeep thread.
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
  // With several replicas and `check_older`, a run that an older active run
  // of its thread driven elsewhere must precede is handed back (its lease
  // released for a later sweep) instead; returns whether it was admitted.
  bool Admit(const std::shared_ptr<RunActor>& actor, bool check_older = false);
  void OnFinished(const std::shared_ptr<RunActor>& actor);
  // Forgets a run that stopped being driven here (finished, parked, lost):
  // its slot, its place in the thread's queue, its live channel.
  void Detach(const std::shared_ptr<RunActor>& actor);
  // The actor of a stored active run, with its steps and log position.
  // Opens the run's live channel at its stored log position.
  absl::StatusOr<std::shared_ptr<RunActor>> LoadActor(v1::Run run,
                                                      int64_t lease_token);
  // Starts driving a run whose lease this replica just took; null when
  // there is nothing to drive (the run ended) or it was handed back.
  absl::StatusOr<std::shared_ptr<RunActor>> ResumeLeased(
      const cluster::RunLease& lease);
  // Several replicas: the actor of a run driven elsewhere, taken over once
  // its driver lets go (asked with `command`); null when the run is not
  // active. `stop_waiting(run)` ends the wait early with that run.
  struct TakeOverResult {
    // Set: the run is driven here now.
    std::shared_ptr<RunActor> actor;
    // Set: the wait ended early (stop_waiting) with the run as stored.
    std::optional<v1::Run> run;
    // The driver was sent the command (it may have acted and let go).
    bool asked = false;
  };
  // Neither set: the run is not active (or not the thread's).
  absl::StatusOr<TakeOverResult> TakeOver(
      const std::string& thread_id, const std::string& run_id,
      cluster::RunCommand command,
      const std::function<bool(const v1::Run&)>& stop_waiting);
  // Several replicas: cancels the active runs of `thread_id` driven
  // elsewhere and waits until the thread has none.
  absl::Status InterruptRemote(const std::string& thread_id,
                               absl::Time deadline);
  cluster::RunLease LeaseOf(const RunActor& actor) const;
  void LeaseLoop();
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
  // Several replicas: the lease upkeep thread.
  std::thread lease_thread_;
  absl::Mutex lease_mu_;
  bool lease_loop_stop_ ABSL_GUARDED_BY(lease_mu_) = false;
  // Last: destroyed (and joined) first, while everything its callbacks
  // reach is still alive.
  RunCommitter committer_;
};

}  // namespace assistants::runs

#endif  // SERVICE_RUNS_ENGINE_H_
