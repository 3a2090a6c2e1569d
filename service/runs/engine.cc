#include "service/runs/engine.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "service/common/errors.h"
#include "service/common/ids.h"
#include "service/common/log.h"
#include "service/common/status_macros.h"
#include "service/core/objects.h"
#include "service/core/validation.h"
#include "service/runs/run_actor.h"
#include "service/runs/run_options.h"
#include "service/runs/run_status.h"
#include "service/store/store_errors.h"

namespace assistants::runs {
namespace {

// Several replicas: how soon a queued run waiting for an older run driven
// elsewhere is looked at again, and how many expired leases one sweep takes.
constexpr int64_t kQueuedRecheckMs = 500;
constexpr int kClaimBatch = 32;

// Waits for an actor's reply (the caller is on an executor thread, where
// blocking is allowed).
class RunReplyWaiter {
 public:
  RunActor::RunReply Callback() {
    return [this](absl::StatusOr<v1::Run> result) {
      result_ = std::move(result);
      done_.Notify();
    };
  }
  absl::StatusOr<v1::Run> Wait() {
    done_.WaitForNotification();
    return std::move(result_);
  }

 private:
  absl::Notification done_;
  absl::StatusOr<v1::Run> result_ = absl::UnknownError("no reply");
};

v1::RunEvent InitialEvent(int64_t sequence, absl::string_view name,
                          int64_t now_ms) {
  v1::RunEvent event;
  event.set_sequence(sequence);
  event.set_event(std::string(name));
  event.set_created_at_ms(now_ms);
  return event;
}

}  // namespace

RunEngine::RunEngine(Store* store, ProviderResolver resolve_provider,
                     ToolDispatcher* dispatcher, const Clock* clock,
                     Timers* timers, Executor* executor, EngineOptions options)
    : idempotency_(store, clock), committer_(store, &hub_) {
  context_.store = store;
  context_.resolve_provider = std::move(resolve_provider);
  context_.dispatcher = dispatcher;
  context_.clock = clock;
  context_.timers = timers;
  context_.executor = executor;
  context_.committer = &committer_;
  context_.hub = &hub_;
  context_.options = std::move(options);
  context_.on_finished = [this](const std::shared_ptr<RunActor>& actor) {
    OnFinished(actor);
  };
}

RunEngine::~RunEngine() { Stop(); }

void RunEngine::EnableCluster(cluster::RunLeases* leases) {
  context_.leases = leases;
}

void RunEngine::Stop() {
  {
    absl::MutexLock lock(&lease_mu_);
    lease_loop_stop_ = true;
  }
  if (lease_thread_.joinable()) lease_thread_.join();
  std::vector<std::shared_ptr<RunActor>> actors;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    for (auto& [id, actor] : actors_) actors.push_back(actor);
  }
  absl::BlockingCounter quiet(static_cast<int>(actors.size()));
  for (auto& actor : actors) actor->Stop([&quiet] { quiet.DecrementCount(); });
  quiet.Wait();
  committer_.Flush();
  hub_.CloseAll();
  // Everything is durable: another replica may take the runs over now
  // rather than after their leases expire (a rolling restart).
  if (clustered()) {
    for (auto& actor : actors) {
      if (actor->lease_token() != 0) {
        context_.leases->Release(LeaseOf(*actor), 0).IgnoreError();
      }
    }
  }
  absl::MutexLock lock(&mu_);
  actors_.clear();
  threads_.clear();
}

cluster::RunLease RunEngine::LeaseOf(const RunActor& actor) const {
  return {actor.run_id(), actor.thread_id(), actor.lease_token()};
}

size_t RunEngine::active_runs() const {
  absl::MutexLock lock(&mu_);
  return actors_.size();
}

// --- Admission and the per-thread queue ---

bool RunEngine::Admit(const std::shared_ptr<RunActor>& actor,
                      bool check_older) {
  if (check_older && clustered()) {
    // The queue policy across replicas: an older active run of the thread
    // driven elsewhere goes first; this one is looked at again by a later
    // sweep (a run queued behind a local one waits in threads_ instead).
    absl::StatusOr<std::vector<cluster::RunLease>> older =
        context_.leases->ThreadRuns(actor->thread_id(), actor->run_id());
    bool blocked = !older.ok();
    if (older.ok()) {
      absl::MutexLock lock(&mu_);
      for (const cluster::RunLease& lease : *older) {
        if (!actors_.contains(lease.run_id)) blocked = true;
      }
    }
    if (blocked) {
      ReleaseRunSlot(actor->run_id());
      hub_.Close(actor->run_id());
      context_.leases->Release(LeaseOf(*actor), kQueuedRecheckMs).IgnoreError();
      return false;
    }
  }
  bool start = false;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) {
      ReleaseRunSlotLocked(actor->run_id());
      if (actor->lease_token() != 0) {
        context_.leases->Release(LeaseOf(*actor), 0).IgnoreError();
      }
      return false;
    }
    actors_[actor->run_id()] = actor;
    auto& queue = threads_[actor->thread_id()];
    queue.push_back(actor);
    start = queue.size() == 1;
  }
  if (start) actor->Start();
  return true;
}

void RunEngine::OnFinished(const std::shared_ptr<RunActor>& actor) {
  Detach(actor);
  if (actor->lease_token() == 0) return;
  // A run that ended needs no lease; one that stopped otherwise (its writes
  // failed) is left to whichever replica sweeps it up next.
  absl::Status status = actor->ended()
                            ? context_.leases->Finish(LeaseOf(*actor))
                            : context_.leases->Release(LeaseOf(*actor), 0);
  if (!status.ok()) {
    Log(LogLevel::kWarning, "run lease not given back",
        {{"run_id", actor->run_id()}, {"error", status.message()}});
  }
}

void RunEngine::Detach(const std::shared_ptr<RunActor>& actor) {
  std::shared_ptr<RunActor> next;
  {
    absl::MutexLock lock(&mu_);
    // With the thread's queue, in one critical section: an interrupting
    // CreateRun that sees the thread free must see the slot free too.
    auto current = actors_.find(actor->run_id());
    // Several replicas: this replica may drive the run again by now (taken
    // back over) with a newer actor, whose slot and channel stay.
    if (current == actors_.end() || current->second != actor) return;
    ReleaseRunSlotLocked(actor->run_id());
    actors_.erase(current);
    auto it = threads_.find(actor->thread_id());
    if (it != threads_.end()) {
      auto& queue = it->second;
      const bool was_front = !queue.empty() && queue.front() == actor;
      queue.erase(std::remove(queue.begin(), queue.end(), actor), queue.end());
      if (queue.empty()) {
        threads_.erase(it);
      } else if (was_front) {
        next = queue.front();
      }
    }
  }
  hub_.Close(actor->run_id());
  if (next != nullptr) next->Start();
}

absl::Status RunEngine::ReserveRunSlot(const std::string& project,
                                       const std::string& run_id, bool force) {
  const int limit = context_.options.max_active_runs_per_project;
  absl::MutexLock lock(&mu_);
  int& count = project_runs_[project];
  if (!force && limit > 0 && count >= limit) {
    if (count == 0) project_runs_.erase(project);
    return ProjectActiveRunLimit(project, limit);
  }
  ++count;
  run_projects_[run_id] = project;
  return absl::OkStatus();
}

void RunEngine::ReleaseRunSlot(const std::string& run_id) {
  absl::MutexLock lock(&mu_);
  ReleaseRunSlotLocked(run_id);
}

void RunEngine::ReleaseRunSlotLocked(const std::string& run_id) {
  auto it = run_projects_.find(run_id);
  if (it == run_projects_.end()) return;
  auto count = project_runs_.find(it->second);
  if (count != project_runs_.end() && --count->second <= 0) {
    project_runs_.erase(count);
  }
  run_projects_.erase(it);
}

std::shared_ptr<RunActor> RunEngine::FindActor(absl::string_view thread_id,
                                               absl::string_view run_id) const {
  absl::MutexLock lock(&mu_);
  auto it = actors_.find(run_id);
  if (it == actors_.end() || it->second->thread_id() != thread_id) {
    return nullptr;
  }
  return it->second;
}

v1::ActiveRunPolicy RunEngine::EffectivePolicy(
    v1::ActiveRunPolicy requested) const {
  return requested == v1::ACTIVE_RUN_POLICY_UNSPECIFIED
             ? context_.options.default_active_run_policy
             : requested;
}

absl::Status RunEngine::InterruptActive(const std::string& thread_id) {
  std::vector<std::shared_ptr<RunActor>> victims;
  {
    absl::MutexLock lock(&mu_);
    auto it = threads_.find(thread_id);
    if (it != threads_.end()) {
      victims.assign(it->second.begin(), it->second.end());
    }
  }
  for (auto& victim : victims) victim->Cancel([](absl::StatusOr<v1::Run>) {});
  const absl::Time deadline =
      absl::Now() + absl::Milliseconds(context_.options.interrupt_wait_ms);
  {
    absl::MutexLock lock(&mu_);
    auto gone = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return threads_.find(thread_id) == threads_.end();
    };
    if (!mu_.AwaitWithDeadline(absl::Condition(&gone), deadline)) {
      return MakeError(absl::StatusCode::kUnavailable, "RUN_INTERRUPT_TIMEOUT",
                       absl::StrCat("The active run of thread ", thread_id,
                                    " did not stop in time; retry"),
                       {{"thread_id", thread_id}});
    }
  }
  return clustered() ? InterruptRemote(thread_id, deadline) : absl::OkStatus();
}

absl::Status RunEngine::StartRun(RunCreation& creation,
                                 const v1::RunOptions& options) {
  const v1::ActiveRunPolicy policy =
      EffectivePolicy(options.active_run_policy());
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) {
      return MakeError(absl::StatusCode::kUnavailable, "GATEWAY_DRAINING",
                       "The gateway is shutting down; retry on another "
                       "replica or after it restarts");
    }
  }
  const v1::Run& run = creation.run;
  creation.reject_if_thread_active = policy != v1::ACTIVE_RUN_POLICY_QUEUE;
  // One process's count is its own runs; replicas share the store's.
  if (clustered()) {
    creation.max_active_runs_in_project =
        context_.options.max_active_runs_per_project;
  }
  const int64_t now_ms = context_.clock->NowMillis();
  int64_t sequence = 0;
  if (creation.new_thread != nullptr) {
    v1::RunEvent& event = creation.events.emplace_back(
        InitialEvent(++sequence, "thread.created", now_ms));
    *event.mutable_thread() = *creation.new_thread;
  }
  *creation.events
       .emplace_back(InitialEvent(++sequence, "thread.run.created", now_ms))
       .mutable_run() = run;
  *creation.events
       .emplace_back(InitialEvent(++sequence, "thread.run.queued", now_ms))
       .mutable_run() = run;
  RETURN_IF_ERROR(ReserveRunSlot(creation.project, run.id(), false));
  // The channel opens before the run exists, so a stream attaching right
  // after creation finds it live and misses nothing.
  hub_.Open(run.id(), 0);
  absl::Status created = context_.store->CreateRun(creation);
  if (!created.ok()) {
    hub_.Close(run.id());
    ReleaseRunSlot(run.id());
    return created;
  }
  std::vector<EventPtr> events;
  for (const v1::RunEvent& event : creation.events) {
    auto response = std::make_shared<v1::RunEventsResponse>();
    *response->mutable_event() = event;
    events.push_back(std::move(response));
  }
  int64_t lease_token = 0;
  if (clustered()) {
    absl::StatusOr<cluster::RunLease> lease =
        context_.leases->Acquire(run.id());
    if (!lease.ok()) {
      // The run exists; a sweep picks it up after the store's grace.
      Log(LogLevel::kWarning, "new run left for another replica",
          {{"run_id", run.id()}, {"error", lease.status().message()}});
      hub_.Publish(run.id(), std::move(events));
      hub_.Close(run.id());
      ReleaseRunSlot(run.id());
      return absl::OkStatus();
    }
    lease_token = lease->token;
  }
  hub_.Publish(run.id(), std::move(events));
  Admit(std::make_shared<RunActor>(&context_, run, std::vector<v1::RunStep>{},
                                   sequence, lease_token),
        /*check_older=*/policy == v1::ACTIVE_RUN_POLICY_QUEUE);
  return absl::OkStatus();
}

// --- RPCs ---

absl::StatusOr<v1::CreateRunResponse> RunEngine::CreateRun(
    absl::string_view project, const v1::CreateRunRequest& request) {
  using Response = v1::CreateRunResponse;
  RETURN_IF_ERROR(ValidateId(request.thread_id(), kThreadPrefix, "thread_id"));
  RETURN_IF_ERROR(ValidateRunOptions(request.options(), true));
  return idempotency_.Run<v1::CreateRunRequest, Response>(
      "CreateRun", project, request,
      [&](IdempotencyRecord* record) -> absl::StatusOr<Response> {
        const v1::RunOptions& options = request.options();
        ASSIGN_OR_RETURN(v1::Thread thread,
                         context_.store->GetThread(request.thread_id()));
        (void)thread;
        ASSIGN_OR_RETURN(v1::Assistant assistant,
                         context_.store->GetAssistant(options.assistant_id()));
        RunCreation creation;
        creation.project = std::string(project);
        creation.run = ComposeRun(options, assistant, request.thread_id(),
                                  context_.options.default_upstream,
                                  context_.clock->NowSeconds());
        RETURN_IF_ERROR(
            context_.resolve_provider(creation.run.upstream()).status());
        // Only a request that is otherwise valid may stop the active run.
        if (EffectivePolicy(options.active_run_policy()) ==
            v1::ACTIVE_RUN_POLICY_INTERRUPT) {
          RETURN_IF_ERROR(InterruptActive(request.thread_id()));
        }
        for (const v1::MessageInput& input : options.additional_messages()) {
          creation.messages.push_back(NewMessage(input, request.thread_id(),
                                                 context_.clock->NowSeconds()));
        }
        Response response;
        *response.mutable_run() = creation.run;
        if (record != nullptr) {
          record->response = response.SerializeAsString();
          creation.idempotency = record;
        }
        RETURN_IF_ERROR(StartRun(creation, options));
        return response;
      });
}

absl::StatusOr<v1::CreateThreadAndRunResponse> RunEngine::CreateThreadAndRun(
    absl::string_view project, const v1::CreateThreadAndRunRequest& request) {
  using Response = v1::CreateThreadAndRunResponse;
  RETURN_IF_ERROR(ValidateCreateThreadAndRun(request));
  return idempotency_.Run<v1::CreateThreadAndRunRequest, Response>(
      "CreateThreadAndRun", project, request,
      [&](IdempotencyRecord* record) -> absl::StatusOr<Response> {
        const v1::RunOptions& options = request.options();
        ASSIGN_OR_RETURN(v1::Assistant assistant,
                         context_.store->GetAssistant(options.assistant_id()));
        const int64_t now = context_.clock->NowSeconds();
        v1::Thread thread;
        thread.set_id(NewId(kThreadPrefix));
        thread.set_object("thread");
        thread.set_created_at(now);
        *thread.mutable_tool_resources() = request.thread().tool_resources();
        *thread.mutable_metadata() = request.thread().metadata();
        RunCreation creation;
        creation.project = std::string(project);
        creation.new_thread = &thread;
        for (const v1::MessageInput& input : request.thread().messages()) {
          creation.messages.push_back(NewMessage(input, thread.id(), now));
        }
        creation.run = ComposeRun(options, assistant, thread.id(),
                                  context_.options.default_upstream, now);
        RETURN_IF_ERROR(
            context_.resolve_provider(creation.run.upstream()).status());
        Response response;
        *response.mutable_run() = creation.run;
        if (record != nullptr) {
          record->response = response.SerializeAsString();
          creation.idempotency = record;
        }
        RETURN_IF_ERROR(StartRun(creation, options));
        return response;
      });
}

absl::StatusOr<v1::GetRunResponse> RunEngine::GetRun(
    const v1::GetRunRequest& request) {
  RETURN_IF_ERROR(ValidateId(request.thread_id(), kThreadPrefix, "thread_id"));
  RETURN_IF_ERROR(ValidateId(request.run_id(), kRunPrefix, "run_id"));
  v1::GetRunResponse response;
  ASSIGN_OR_RETURN(
      *response.mutable_run(),
      context_.store->GetRun(request.thread_id(), request.run_id()));
  return response;
}

absl::StatusOr<v1::ListRunsResponse> RunEngine::ListRuns(
    const v1::ListRunsRequest& request) {
  RETURN_IF_ERROR(ValidateId(request.thread_id(), kThreadPrefix, "thread_id"));
  ASSIGN_OR_RETURN(ListQuery query, ToListQuery(request.options(), "options"));
  absl::StatusOr<Page<v1::Run>> page =
      context_.store->ListRuns(request.thread_id(), query);
  if (!page.ok()) return InRequestPaths(page.status());
  return ToListResponse<v1::ListRunsResponse>(*std::move(page));
}

absl::StatusOr<v1::UpdateRunResponse> RunEngine::UpdateRun(
    const v1::UpdateRunRequest& request) {
  RETURN_IF_ERROR(ValidateId(request.thread_id(), kThreadPrefix, "thread_id"));
  RETURN_IF_ERROR(ValidateId(request.run_id(), kRunPrefix, "run_id"));
  RETURN_IF_ERROR(ValidateMetadata(request.metadata(), "metadata"));
  v1::UpdateRunResponse response;
  std::shared_ptr<RunActor> actor =
      FindActor(request.thread_id(), request.run_id());
  if (actor == nullptr && clustered()) {
    ASSIGN_OR_RETURN(
        TakeOverResult taken,
        TakeOver(request.thread_id(), request.run_id(),
                 cluster::RunCommand::kPark,
                 [](const v1::Run& run) { return IsTerminal(run.status()); }));
    actor = std::move(taken.actor);
  }
  if (actor != nullptr) {
    RunReplyWaiter waiter;
    actor->UpdateMetadata(request.metadata(), waiter.Callback());
    ASSIGN_OR_RETURN(*response.mutable_run(), waiter.Wait());
    return response;
  }
  // Not driven here: the run is terminal, so nothing else writes it.
  ASSIGN_OR_RETURN(v1::Run run, context_.store->GetRun(request.thread_id(),
                                                       request.run_id()));
  if (!IsTerminal(run.status())) return RunNotDriven(run.id());
  *run.mutable_metadata() = request.metadata();
  RunChanges changes;
  changes.thread_id = run.thread_id();
  changes.run_id = run.id();
  changes.run = run;
  RETURN_IF_ERROR(context_.store->CommitRunChanges({&changes}));
  *response.mutable_run() = std::move(run);
  return response;
}

absl::StatusOr<v1::CancelRunResponse> RunEngine::CancelRun(
    const v1::CancelRunRequest& request) {
  RETURN_IF_ERROR(ValidateId(request.thread_id(), kThreadPrefix, "thread_id"));
  RETURN_IF_ERROR(ValidateId(request.run_id(), kRunPrefix, "run_id"));
  v1::CancelRunResponse response;
  std::shared_ptr<RunActor> actor =
      FindActor(request.thread_id(), request.run_id());
  if (actor == nullptr && clustered()) {
    // Driven elsewhere: its driver cancels it when asked.
    ASSIGN_OR_RETURN(
        TakeOverResult taken,
        TakeOver(request.thread_id(), request.run_id(),
                 cluster::RunCommand::kCancel, [](const v1::Run& run) {
                   return run.status() == v1::RUN_STATUS_CANCELLING ||
                          IsTerminal(run.status());
                 }));
    if (taken.actor == nullptr && taken.asked && !taken.run.has_value()) {
      // The driver may have cancelled it and let go before we looked again.
      ASSIGN_OR_RETURN(taken.run, context_.store->GetRun(request.thread_id(),
                                                         request.run_id()));
    }
    if (taken.run.has_value() &&
        (taken.run->status() == v1::RUN_STATUS_CANCELLING ||
         taken.run->status() == v1::RUN_STATUS_CANCELLED)) {
      *response.mutable_run() = *std::move(taken.run);
      return response;
    }
    actor = std::move(taken.actor);
  }
  if (actor != nullptr) {
    RunReplyWaiter waiter;
    actor->Cancel(waiter.Callback());
    ASSIGN_OR_RETURN(*response.mutable_run(), waiter.Wait());
    return response;
  }
  ASSIGN_OR_RETURN(v1::Run run, context_.store->GetRun(request.thread_id(),
                                                       request.run_id()));
  if (!IsTerminal(run.status())) return RunNotDriven(run.id());
  return RunNotActive(run);
}

absl::StatusOr<v1::SubmitToolOutputsResponse> RunEngine::SubmitToolOutputs(
    absl::string_view project, const v1::SubmitToolOutputsRequest& request) {
  using Response = v1::SubmitToolOutputsResponse;
  RETURN_IF_ERROR(ValidateSubmitToolOutputs(request));
  return idempotency_.Run<v1::SubmitToolOutputsRequest, Response>(
      "SubmitToolOutputs", project, request,
      [&](IdempotencyRecord* record) -> absl::StatusOr<Response> {
        Response response;
        auto actor = FindActor(request.thread_id(), request.run_id());
        if (actor == nullptr && clustered()) {
          // Waiting for the caller, its driver hands it over when asked.
          ASSIGN_OR_RETURN(
              TakeOverResult taken,
              TakeOver(request.thread_id(), request.run_id(),
                       cluster::RunCommand::kPark, [](const v1::Run& run) {
                         return run.status() != v1::RUN_STATUS_REQUIRES_ACTION;
                       }));
          if (taken.run.has_value()) return RunNotAwaitingOutputs(*taken.run);
          actor = std::move(taken.actor);
        }
        if (actor == nullptr) {
          ASSIGN_OR_RETURN(
              v1::Run run,
              context_.store->GetRun(request.thread_id(), request.run_id()));
          if (!IsTerminal(run.status())) return RunNotDriven(run.id());
          return RunNotAwaitingOutputs(run);
        }
        RunReplyWaiter waiter;
        actor->SubmitToolOutputs(
            {request.tool_outputs().begin(), request.tool_outputs().end()},
            record, waiter.Callback());
        ASSIGN_OR_RETURN(*response.mutable_run(), waiter.Wait());
        return response;
      });
}

absl::StatusOr<v1::GetRunStepResponse> RunEngine::GetRunStep(
    const v1::GetRunStepRequest& request) {
  RETURN_IF_ERROR(ValidateId(request.thread_id(), kThreadPrefix, "thread_id"));
  RETURN_IF_ERROR(ValidateId(request.run_id(), kRunPrefix, "run_id"));
  RETURN_IF_ERROR(ValidateId(request.step_id(), kStepPrefix, "step_id"));
  v1::GetRunStepResponse response;
  ASSIGN_OR_RETURN(
      *response.mutable_step(),
      context_.store->GetRunStep(request.thread_id(), request.run_id(),
                                 request.step_id()));
  return response;
}

absl::StatusOr<v1::ListRunStepsResponse> RunEngine::ListRunSteps(
    const v1::ListRunStepsRequest& request) {
  RETURN_IF_ERROR(ValidateId(request.thread_id(), kThreadPrefix, "thread_id"));
  RETURN_IF_ERROR(ValidateId(request.run_id(), kRunPrefix, "run_id"));
  ASSIGN_OR_RETURN(ListQuery query, ToListQuery(request.options(), "options"));
  // Steps of a run that exists (NOT_FOUND names the run otherwise).
  RETURN_IF_ERROR(
      context_.store->GetRun(request.thread_id(), request.run_id()).status());
  absl::StatusOr<Page<v1::RunStep>> page = context_.store->ListRunSteps(
      request.thread_id(), request.run_id(), query);
  if (!page.ok()) return InRequestPaths(page.status());
  return ToListResponse<v1::ListRunStepsResponse>(*std::move(page));
}

// --- Streams ---

absl::StatusOr<v1::Run> RunEngine::OpenEvents(
    absl::string_view project, const v1::RunEventsRequest& request) {
  if (request.after_sequence() < 0) {
    return FieldError("after_sequence", kValueOutOfRange,
                      "must be 0 or a sequence number seen before");
  }
  switch (request.start_case()) {
    case v1::RunEventsRequest::kCreateRun: {
      if (!request.thread_id().empty() || !request.run_id().empty()) {
        return FieldError("run_id", kInvalidValue,
                          "must be empty when start is set");
      }
      ASSIGN_OR_RETURN(v1::CreateRunResponse created,
                       CreateRun(project, request.create_run()));
      return created.run();
    }
    case v1::RunEventsRequest::kCreateThreadAndRun: {
      if (!request.thread_id().empty() || !request.run_id().empty()) {
        return FieldError("run_id", kInvalidValue,
                          "must be empty when start is set");
      }
      ASSIGN_OR_RETURN(
          v1::CreateThreadAndRunResponse created,
          CreateThreadAndRun(project, request.create_thread_and_run()));
      return created.run();
    }
    default:
      break;
  }
  RETURN_IF_ERROR(ValidateId(request.thread_id(), kThreadPrefix, "thread_id"));
  RETURN_IF_ERROR(ValidateId(request.run_id(), kRunPrefix, "run_id"));
  return context_.store->GetRun(request.thread_id(), request.run_id());
}

absl::StatusOr<std::vector<v1::RunEvent>> RunEngine::ReadEvents(
    const std::string& run_id, int64_t after_sequence, int limit) {
  return context_.store->ListRunEvents(run_id, after_sequence, limit);
}

bool RunEngine::RunEnded(const std::string& thread_id,
                         const std::string& run_id) {
  if (hub_.LastSequence(run_id) >= 0) return false;  // still live
  absl::StatusOr<v1::Run> run = context_.store->GetRun(thread_id, run_id);
  return run.ok() && IsTerminal(run->status());
}

// --- Recovery ---

absl::StatusOr<std::shared_ptr<RunActor>> RunEngine::LoadActor(
    v1::Run run, int64_t lease_token) {
  std::vector<v1::RunStep> steps;
  ListQuery query;
  query.limit = 100;
  query.ascending = true;
  while (true) {
    ASSIGN_OR_RETURN(
        Page<v1::RunStep> page,
        context_.store->ListRunSteps(run.thread_id(), run.id(), query));
    for (v1::RunStep& step : page.items) steps.push_back(std::move(step));
    if (!page.has_more || steps.empty()) break;
    query.after = steps.back().id();
  }
  // The log continues after its last stored event.
  int64_t last_sequence = 0;
  while (true) {
    ASSIGN_OR_RETURN(
        std::vector<v1::RunEvent> events,
        context_.store->ListRunEvents(run.id(), last_sequence, 1000));
    if (events.empty()) break;
    last_sequence = events.back().sequence();
  }
  // Runs that exist count against their project's limit, over it or not.
  absl::StatusOr<std::string> project =
      context_.store->GetProject(OwnedKind::kThread, run.thread_id());
  RETURN_IF_ERROR(ReserveRunSlot(project.ok() ? *project : kDefaultProject,
                                 run.id(), /*force=*/true));
  hub_.Open(run.id(), last_sequence);
  return std::make_shared<RunActor>(&context_, std::move(run), std::move(steps),
                                    last_sequence, lease_token);
}

absl::Status RunEngine::Recover() {
  if (clustered()) {
    // Runs driven by live replicas are theirs; expired ones are claimed by
    // the upkeep loop (its first round runs now).
    lease_thread_ = std::thread([this] { LeaseLoop(); });
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::vector<v1::Run> runs, context_.store->ListActiveRuns());
  for (v1::Run& run : runs) {
    ASSIGN_OR_RETURN(std::shared_ptr<RunActor> actor,
                     LoadActor(std::move(run), 0));
    Admit(actor);
  }
  return absl::OkStatus();
}

// --- Several replicas ---

absl::StatusOr<std::shared_ptr<RunActor>> RunEngine::ResumeLeased(
    const cluster::RunLease& lease) {
  if (auto actor = FindActor(lease.thread_id, lease.run_id)) return actor;
  absl::StatusOr<v1::Run> run =
      context_.store->GetRun(lease.thread_id, lease.run_id);
  if (absl::IsNotFound(run.status()) ||
      (run.ok() && IsTerminal(run->status()))) {
    // Ended (its driver stopped before letting go of the lease), or gone.
    RETURN_IF_ERROR(context_.leases->Finish(lease));
    return nullptr;
  }
  if (!run.ok()) {
    context_.leases->Release(lease, 0).IgnoreError();
    return run.status();
  }
  const bool queued = run->status() == v1::RUN_STATUS_QUEUED;
  committer_.Forget(lease.run_id);
  absl::StatusOr<std::shared_ptr<RunActor>> actor =
      LoadActor(*std::move(run), lease.token);
  if (!actor.ok()) {
    context_.leases->Release(lease, 0).IgnoreError();
    return actor.status();
  }
  if (!Admit(*actor, /*check_older=*/queued)) return nullptr;
  return actor;
}

absl::StatusOr<RunEngine::TakeOverResult> RunEngine::TakeOver(
    const std::string& thread_id, const std::string& run_id,
    cluster::RunCommand command,
    const std::function<bool(const v1::Run&)>& stop_waiting) {
  const absl::Time deadline =
      absl::Now() + absl::Milliseconds(context_.options.owner_wait_ms);
  absl::Time next_ask = absl::InfinitePast();
  bool asked = false;
  while (true) {
    absl::StatusOr<cluster::RunLease> lease = context_.leases->Acquire(run_id);
    if (lease.ok()) {
      if (lease->thread_id != thread_id) {
        context_.leases->Release(*lease, 0).IgnoreError();
        return TakeOverResult{};
      }
      ASSIGN_OR_RETURN(std::shared_ptr<RunActor> actor, ResumeLeased(*lease));
      return TakeOverResult{std::move(actor), std::nullopt};
    }
    if (absl::IsNotFound(lease.status())) {
      return TakeOverResult{nullptr, std::nullopt, asked};
    }
    if (ErrorReason(lease.status()) != "RUN_OWNED_ELSEWHERE") {
      return lease.status();
    }
    // This replica's own sweep may have taken it meanwhile.
    if (auto actor = FindActor(thread_id, run_id)) {
      return TakeOverResult{std::move(actor), std::nullopt};
    }
    ASSIGN_OR_RETURN(v1::Run run, context_.store->GetRun(thread_id, run_id));
    if (stop_waiting(run)) {
      return TakeOverResult{nullptr, std::move(run), asked};
    }
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      absl::Status busy = MakeError(
          absl::StatusCode::kUnavailable, "RUN_OWNED_ELSEWHERE",
          absl::StrCat("Run ", run_id,
                       " is being driven by another gateway replica that did "
                       "not hand it over in time; retry"),
          {{"run_id", run_id}});
      SetRetryDelay(busy, std::chrono::seconds(1));
      return busy;
    }
    // Asked again now and then: a notification is lost if the driver's
    // listener was reconnecting.
    if (now >= next_ask) {
      asked = context_.leases->Send(command, run_id).ok() || asked;
      next_ask = now + absl::Seconds(1);
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

absl::Status RunEngine::InterruptRemote(const std::string& thread_id,
                                        absl::Time deadline) {
  ASSIGN_OR_RETURN(std::vector<cluster::RunLease> runs,
                   context_.leases->ThreadRuns(thread_id, ""));
  for (const cluster::RunLease& run : runs) {
    if (FindActor(thread_id, run.run_id) != nullptr) continue;
    absl::StatusOr<cluster::RunLease> lease =
        context_.leases->Acquire(run.run_id);
    if (lease.ok()) {
      ASSIGN_OR_RETURN(std::shared_ptr<RunActor> actor, ResumeLeased(*lease));
      if (actor != nullptr) actor->Cancel([](absl::StatusOr<v1::Run>) {});
    } else {
      context_.leases->Send(cluster::RunCommand::kCancel, run.run_id)
          .IgnoreError();
    }
  }
  // Leases go when runs end, wherever they were driven.
  while (true) {
    ASSIGN_OR_RETURN(runs, context_.leases->ThreadRuns(thread_id, ""));
    if (runs.empty()) return absl::OkStatus();
    if (absl::Now() >= deadline) {
      return MakeError(absl::StatusCode::kUnavailable, "RUN_INTERRUPT_TIMEOUT",
                       absl::StrCat("The active run of thread ", thread_id,
                                    " did not stop in time; retry"),
                       {{"thread_id", thread_id}});
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

void RunEngine::OnRunCommand(cluster::RunCommand command,
                             const std::string& run_id) {
  std::shared_ptr<RunActor> actor;
  {
    absl::MutexLock lock(&mu_);
    auto it = actors_.find(run_id);
    if (it == actors_.end()) return;
    actor = it->second;
  }
  switch (command) {
    case cluster::RunCommand::kCancel:
      actor->Cancel([](absl::StatusOr<v1::Run>) {});
      return;
    case cluster::RunCommand::kPark:
      actor->Park([this, actor](bool parked, int64_t expires_at_ms) {
        if (!parked) return;
        Detach(actor);
        // Sweeps leave it until it expires; Acquire takes it at once.
        const int64_t wait_ms =
            std::max<int64_t>(0, expires_at_ms - context_.clock->NowMillis());
        context_.leases->Release(LeaseOf(*actor), wait_ms).IgnoreError();
      });
      return;
  }
}

void RunEngine::MaintainLeases() {
  std::vector<cluster::RunLease> held;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    for (const auto& [id, actor] : actors_) {
      if (actor->lease_token() != 0) held.push_back(LeaseOf(*actor));
    }
  }
  absl::StatusOr<std::vector<std::string>> lost = context_.leases->Renew(held);
  if (!lost.ok()) {
    Log(LogLevel::kWarning, "run leases not renewed",
        {{"error", lost.status().message()}});
  } else {
    for (const std::string& run_id : *lost) {
      std::shared_ptr<RunActor> actor;
      {
        absl::MutexLock lock(&mu_);
        auto it = actors_.find(run_id);
        if (it != actors_.end()) actor = it->second;
      }
      if (actor == nullptr) continue;
      // Another replica drives it now; fencing refuses our writes anyway.
      Log(LogLevel::kWarning, "run lease lost; no longer driving the run",
          {{"run_id", run_id}});
      actor->Stop([this, actor] { Detach(actor); });
    }
  }
  absl::StatusOr<std::vector<cluster::RunLease>> claimed =
      context_.leases->ClaimExpired(kClaimBatch);
  if (!claimed.ok()) {
    Log(LogLevel::kWarning, "expired run leases not claimed",
        {{"error", claimed.status().message()}});
    return;
  }
  for (const cluster::RunLease& lease : *claimed) {
    absl::StatusOr<std::shared_ptr<RunActor>> actor = ResumeLeased(lease);
    if (!actor.ok()) {
      Log(LogLevel::kWarning, "run not taken over",
          {{"run_id", lease.run_id}, {"error", actor.status().message()}});
    } else if (*actor != nullptr) {
      Log(LogLevel::kInfo, "run taken over",
          {{"run_id", lease.run_id}, {"token", lease.token}});
    }
  }
}

void RunEngine::LeaseLoop() {
  while (true) {
    MaintainLeases();
    absl::MutexLock lock(&lease_mu_);
    auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(lease_mu_) {
      return lease_loop_stop_;
    };
    if (lease_mu_.AwaitWithTimeout(
            absl::Condition(&stop),
            absl::Milliseconds(context_.options.lease_maintenance_ms))) {
      return;
    }
  }
}

}  // namespace assistants::runs
