// RunActor: drives one run through its states. All of its work runs on a
// strand (one task at a time, in order) on the engine's executor; provider
// events, tool outputs, timers and RPCs reach it by posting tasks, so its
// state needs no locks. It turns what happens into objects (run, steps,
// messages) and events with consecutive sequences, and hands them to the
// committer, which may commit them on the strand's thread (leader/follower,
// see committer.h); tasks posted meanwhile are drained together and their
// changes committed as one.
#ifndef SERVICE_RUNS_RUN_ACTOR_H_
#define SERVICE_RUNS_RUN_ACTOR_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "assistants/v1/run_service.pb.h"
#include "service/common/log.h"
#include "service/common/timers.h"
#include "service/runs/engine.h"
#include "service/runs/tool_dispatcher.h"
#include "upstream/provider.h"

namespace assistants::runs {

class RunActor : public std::enable_shared_from_this<RunActor> {
 public:
  using RunReply = std::function<void(absl::StatusOr<v1::Run>)>;

  // `steps` and `last_sequence` describe what is already stored (empty and
  // the count of the creation events for a new run).
  // `lease_token` is the fencing token this replica drives the run under
  // (several replicas; 0 with one gateway): every change carries it.
  RunActor(EngineContext* context, v1::Run run, std::vector<v1::RunStep> steps,
           int64_t last_sequence, int64_t lease_token = 0);

  const std::string& run_id() const { return run_id_; }
  const std::string& thread_id() const { return thread_id_; }
  int64_t lease_token() const { return lease_token_; }
  // Whether the run reached a terminal status here. Only from on_finished
  // (which runs on the strand).
  bool ended() const;

  // Drives the run from its current status (new or recovered).
  void Start();
  // CancelRun: replies with the run once `cancelling` (or, when nothing is
  // in flight, `cancelled`) is durable.
  void Cancel(RunReply reply);
  // SubmitToolOutputs: checks the exact set of pending ids, stores the
  // outputs (with `idempotency`, which must stay valid until `reply`), and
  // continues the run.
  void SubmitToolOutputs(std::vector<v1::ToolOutput> outputs,
                         IdempotencyRecord* idempotency, RunReply reply);
  // UpdateRun: replaces the metadata.
  void UpdateMetadata(google::protobuf::Map<std::string, std::string> metadata,
                      RunReply reply);
  // Stops driving without changing the stored status (shutdown): aborts the
  // model turn in flight. `done` runs once the actor is quiet.
  void Stop(std::function<void()> done);
  // Several replicas: when the run waits only for the caller's tool outputs
  // (requires_action, no worker call in flight), stops driving it so that
  // another replica can take it over, and calls done(true, expires_at_ms)
  // once everything it wrote is durable; otherwise done(false, 0). On the
  // strand.
  void Park(std::function<void(bool parked, int64_t expires_at_ms)> done);

 private:
  class TurnObserver;

  // The strand.
  void Post(std::function<void()> task);
  void Drain();

  // Steps of the life cycle (strand only).
  void StartOnStrand();
  void BeginTurn();
  void OnProviderEvent(uint64_t turn, const upstream::ProviderEvent& event);
  void OnTurnDone(uint64_t turn,
                  const std::optional<upstream::TurnError>& error);
  void HandleFunctionCalls();
  // Function calls of the open tool step that went to workers and have no
  // output yet (after a restart: those not asked of the caller).
  std::vector<ToolInvocation> UnansweredWorkerCalls();
  // Hands `calls` to the dispatcher once the step holding them is durable.
  void DispatchToWorkers(std::vector<ToolInvocation> calls);
  void SendToWorkers(uint64_t turn, const std::vector<ToolInvocation>& calls);
  // Stops waiting for worker outputs (the run ended or is not driven here).
  void AbandonWorkerCalls();
  void OnWorkerOutput(uint64_t turn, const std::string& call_id,
                      std::string output);
  void ContinueAfterOutputs();
  void OnExpiryTimer();
  void ArmExpiry();
  void ResumeInProgress();
  // Refills message_'s content from the stored delta events.
  void RestoreStreamedContent();

  // Ends the run (strand only).
  void Fail(absl::string_view code, absl::string_view message);
  void FinishCancelled();
  void FinishIncomplete(absl::string_view reason);
  void FinishCompleted();
  void Terminate(v1::RunStatus status);
  // The "run ended" log line's fields: ids, status, model, tokens, why.
  std::vector<LogField> EndedLogFields(int64_t driven_ms) const;

  // Object helpers.
  bool SetStatus(v1::RunStatus status);
  v1::RunStep NewStep(v1::RunStepType type);
  void EnsureMessage();
  // Closes the open message with `status` (and completes its step unless
  // the caller ends it otherwise).
  void CloseMessage(v1::MessageStatus status, absl::string_view reason,
                    bool complete_step = true);
  void EnsureToolStep();
  v1::RunStep* ToolStep();
  v1::RunStep* FindStep(const std::string& id);
  void EndOpenSteps(v1::RunStepStatus status, const v1::LastError* error);
  // Emits a step event (and records the step for the next commit).
  void EmitStep(absl::string_view name, const v1::RunStep& step);
  void EmitMessage(absl::string_view name);
  v1::RunEvent& NewEvent(absl::string_view name);
  void EmitRun(absl::string_view name);
  void AddUsage(const v1::Usage& usage);
  // Hands the pending changes to the committer.
  void Commit(std::function<void(const absl::Status&)> done = nullptr);
  // Commits what is pending, then replies with the run as it is now (or
  // with the commit's error).
  void ReplyAfterCommit(RunReply reply);
  void OnCommitFailed(const absl::Status& status);

  EngineContext* const context_;
  const std::string run_id_;
  const std::string thread_id_;
  const int64_t requires_action_timeout_ms_;
  // When this process began driving the run (creation or resumption), for
  // the RunObserver's duration.
  const int64_t driven_since_ms_;
  const int64_t lease_token_;

  absl::Mutex strand_mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(strand_mu_);
  bool draining_ ABSL_GUARDED_BY(strand_mu_) = false;

  // Strand-only state.
  v1::Run run_;
  std::vector<v1::RunStep> steps_;
  int64_t last_sequence_;
  RunChanges pending_;
  bool stopped_ = false;   // terminal, stopped, or broken
  bool finished_ = false;  // on_finished was called
  uint64_t turn_ = 0;      // generation of the current model turn
  int turns_taken_ = 0;
  std::unique_ptr<upstream::TurnCall> call_;
  upstream::FinishReason finish_reason_ = upstream::FinishReason::kStop;
  v1::Usage turn_usage_;
  bool turn_has_usage_ = false;
  // This run's messages as last emitted (newer than the store's copy until
  // the committer catches up).
  std::map<std::string, v1::Message> own_messages_;
  // The open message and its step (empty ids when none).
  v1::Message message_;
  std::string message_step_id_;
  // The open tool_calls step, and its calls by the provider's index.
  std::string tool_step_id_;
  std::map<int, int> call_position_;
  // Calls waiting for outputs: the caller's (requires_action) and workers'.
  std::set<std::string> caller_pending_;
  int workers_outstanding_ = 0;
  Timers::Id expiry_timer_ = 0;
};

}  // namespace assistants::runs

#endif  // SERVICE_RUNS_RUN_ACTOR_H_
