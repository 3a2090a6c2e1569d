#include "service/api/run_events_stream.h"

#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "service/api/status_mapping.h"
#include "service/common/errors.h"
#include "service/runs/event_hub.h"

namespace assistants {

bool StreamRegistry::Add(const std::shared_ptr<Member>& member) {
  absl::MutexLock lock(&mu_);
  members_[member.get()] = member;
  return !draining_;
}

void StreamRegistry::Remove(const Member* member) {
  absl::MutexLock lock(&mu_);
  members_.erase(member);
}

void StreamRegistry::DrainAll() {
  std::vector<std::shared_ptr<Member>> members;
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    for (auto& [key, weak] : members_) {
      if (auto member = weak.lock()) members.push_back(std::move(member));
    }
  }
  for (auto& member : members) member->Drain();
}

size_t StreamRegistry::size() const {
  absl::MutexLock lock(&mu_);
  return members_.size();
}

namespace {

using runs::EventPtr;
using runs::RunEventHub;

// Several replicas: how often a stream of a run driven elsewhere re-reads
// the store without a notification (one lost while a listener reconnected).
constexpr int64_t kRemotePollMs = 1000;

// How a stream ends when the gateway shuts down: clients retry elsewhere (or
// after the restart) with their last sequence.
grpc::Status DrainingStatus() {
  absl::Status status = MakeError(
      absl::StatusCode::kUnavailable, "GATEWAY_DRAINING",
      "The gateway is shutting down; reconnect with after_sequence to "
      "resume");
  SetRetryDelay(status, std::chrono::milliseconds(1000));
  return ToGrpcStatus(status);
}

// The part of a stream that outlives the reactor: hub waiters, timers,
// store reads and the registry hold it, and reach the reactor only while it
// is alive (`reactor` is cleared in OnDone under `mu`).
class StreamCore : public RunEventHub::Waiter, public StreamRegistry::Member {
 public:
  void Wake() override;
  void Drain() override;

  absl::Mutex mu;
  RunEventsStream* reactor ABSL_GUARDED_BY(mu) = nullptr;
};

}  // namespace

class RunEventsStream final
    : public grpc::ServerWriteReactor<v1::RunEventsResponse> {
 public:
  RunEventsStream(grpc::CallbackServerContext* context,
                  const v1::RunEventsRequest& request, runs::RunEngine* engine,
                  Executor* executor, Timers* timers, const Clock* clock,
                  StreamRegistry* registry, Admission* admission,
                  const StreamOptions& options)
      : context_(context),
        request_(request),
        engine_(engine),
        executor_(executor),
        timers_(timers),
        clock_(clock),
        registry_(registry),
        admission_(admission),
        options_(options),
        core_(std::make_shared<StreamCore>()) {
    core_->reactor = this;
    if (!registry_->Add(core_)) {
      // The gateway is shutting down: no new runs, no new streams.
      absl::MutexLock lock(&core_->mu);
      FinishLocked(DrainingStatus());
      return;
    }
    static const std::string* const kMethod = new std::string(
        absl::StrCat("/", v1::RunService::service_full_name(), "/RunEvents"));
    absl::StatusOr<auth::Principal> caller =
        admission_->Authenticate(*context, *kMethod);
    absl::Status admitted = caller.status();
    if (admitted.ok()) admitted = admission_->AcquireStream(caller->project);
    if (!admitted.ok()) {
      absl::MutexLock lock(&core_->mu);
      FinishLocked(ToGrpcStatus(admitted));
      return;
    }
    stream_project_ = caller->project;
    // Opening may create the run or read the store: off the gRPC thread.
    // The task must not touch `this` until it knows the reactor is alive.
    executor_->Schedule([core = core_, engine = engine_, request = request_,
                         admission = admission_, caller = *std::move(caller)] {
      {
        // A stream gone before its turn needs nothing opened.
        absl::MutexLock lock(&core->mu);
        if (core->reactor == nullptr) return;
      }
      absl::Status admitted = admission->CheckRequest(caller, request);
      absl::StatusOr<v1::Run> run =
          admitted.ok() ? engine->OpenEvents(caller.project, request)
                        : absl::StatusOr<v1::Run>(admitted);
      absl::MutexLock lock(&core->mu);
      if (core->reactor != nullptr) core->reactor->OnOpenedLocked(run);
    });
  }

  void OnOpenedLocked(const absl::StatusOr<v1::Run>& run)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu) {
    if (!run.ok()) {
      FinishLocked(ToGrpcStatus(run.status()));
      return;
    }
    run_id_ = run->id();
    thread_id_ = run->thread_id();
    next_ = request_.after_sequence() + 1;
    opened_ = true;
    last_write_ms_ = clock_->NowMillis();
    PumpLocked();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&core_->mu);
    writing_ = false;
    current_.reset();
    last_write_ms_ = clock_->NowMillis();
    if (!ok) {
      // The client is gone; the run goes on without it.
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "client gone"));
      return;
    }
    if (pending_finish_.has_value()) {
      grpc::Status status = *pending_finish_;
      pending_finish_.reset();
      FinishLocked(status);
      return;
    }
    PumpLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&core_->mu);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&core_->mu);
      core_->reactor = nullptr;
      if (heartbeat_timer_ != 0) timers_->Cancel(heartbeat_timer_);
      if (remote_poll_timer_ != 0) timers_->Cancel(remote_poll_timer_);
    }
    if (!run_id_.empty()) engine_->hub()->CancelWait(run_id_, core_.get());
    registry_->Remove(core_.get());
    if (stream_project_.has_value())
      admission_->ReleaseStream(*stream_project_);
    delete this;
  }

  // Everything below runs with core_->mu held.

  void PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu) {
    if (reading_) {
      // A wake-up (a notification of a commit) during a store read: that
      // read may predate the commit, so it must not be the last.
      woken_while_reading_ = true;
      return;
    }
    if (!opened_ || writing_ || finished_) return;
    if (draining_) {
      auto draining = std::make_shared<v1::RunEventsResponse>();
      v1::RunEvent* event = draining->mutable_event();
      event->set_sequence(next_ - 1);
      event->set_event("draining");
      event->set_created_at_ms(clock_->NowMillis());
      event->mutable_draining();
      pending_finish_ = DrainingStatus();
      WriteLocked(std::move(draining));
      return;
    }
    EventPtr event;
    if (!backlog_.empty()) {
      event = std::move(backlog_.front());
      backlog_.pop_front();
    } else {
      RunEventHub::Read read = engine_->hub()->Next(run_id_, next_, core_);
      switch (read.kind) {
        case RunEventHub::Read::Kind::kEvent:
          event = std::move(read.event);
          break;
        case RunEventHub::Read::Kind::kWaiting:
          ArmHeartbeatLocked();
          return;
        case RunEventHub::Read::Kind::kNotLive:
          // Several replicas: another one may be driving the run. Asking to
          // be woken before reading means no notification is missed
          // between the read and the wait.
          if (engine_->clustered()) {
            engine_->hub()->WaitRemote(run_id_, core_);
          }
          ReadStoreLocked(true);
          return;
        case RunEventHub::Read::Kind::kBehind:
          ReadStoreLocked(false);
          return;
      }
    }
    next_ = event->event().sequence() + 1;
    if (event->event().event() == "done") {
      pending_finish_ = grpc::Status::OK;
    }
    WriteLocked(std::move(event));
  }

  void WriteLocked(EventPtr event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu) {
    writing_ = true;
    current_ = std::move(event);
    StartWrite(current_.get());
  }

  void FinishLocked(const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu) {
    if (finished_) return;
    if (writing_) {
      // Finish after the write in flight completes.
      if (!pending_finish_.has_value()) pending_finish_ = status;
      return;
    }
    finished_ = true;
    Finish(status);
  }

  // Reads the next events from the stored log (the hub does not have them).
  void ReadStoreLocked(bool not_live) ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu) {
    reading_ = true;
    woken_while_reading_ = false;
    executor_->Schedule([core = core_, engine = engine_, not_live,
                         thread_id = thread_id_, run_id = run_id_,
                         after = next_ - 1, limit = options_.read_ahead] {
      absl::StatusOr<std::vector<v1::RunEvent>> events =
          engine->ReadEvents(run_id, after, limit);
      // A cursor at the end of a finished run: nothing more will come.
      bool ended = false;
      if (not_live && events.ok() && events->empty()) {
        ended = engine->RunEnded(thread_id, run_id);
      }
      absl::MutexLock lock(&core->mu);
      if (core->reactor == nullptr) return;
      core->reactor->OnStoreReadLocked(not_live, ended, std::move(events));
    });
  }

  void OnStoreReadLocked(bool not_live, bool ended,
                         absl::StatusOr<std::vector<v1::RunEvent>> events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu) {
    const std::string& run_id = run_id_;
    reading_ = false;
    if (!events.ok()) {
      FinishLocked(ToGrpcStatus(events.status()));
      return;
    }
    if (events->empty()) {
      if (ended) {
        FinishLocked(grpc::Status::OK);
        return;
      }
      if (not_live && engine_->hub()->LastSequence(run_id) < 0 &&
          engine_->clustered()) {
        // Driven by another replica (or between drivers): woken by its
        // next commit's notification, with a re-read now and then in case
        // one is lost. A notification that came during the read took the
        // registration: read again now.
        if (woken_while_reading_) {
          woken_while_reading_ = false;
          PumpLocked();
          return;
        }
        ArmHeartbeatLocked();
        ArmRemotePollLocked();
        return;
      }
      if (not_live && engine_->hub()->LastSequence(run_id) < 0) {
        // Nothing stored beyond the cursor and nobody is producing more:
        // the run is not driven here (or the cursor is past its end).
        FinishLocked(ToGrpcStatus(
            MakeError(absl::StatusCode::kUnavailable, "RUN_NOT_DRIVEN",
                      "No more events are being produced for this run here; "
                      "reconnect later with after_sequence",
                      {{"run_id", run_id}})));
        return;
      }
      // It went live in the meantime (recovery): the hub has it.
      PumpLocked();
      return;
    }
    for (v1::RunEvent& stored : *events) {
      auto response = std::make_shared<v1::RunEventsResponse>();
      response->mutable_event()->Swap(&stored);
      backlog_.push_back(std::move(response));
    }
    PumpLocked();
  }

  void ArmHeartbeatLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu) {
    if (heartbeat_timer_ != 0) return;
    const int64_t due =
        std::max(last_write_ms_, clock_->NowMillis() - options_.heartbeat_ms) +
        options_.heartbeat_ms;
    heartbeat_timer_ = timers_->ScheduleAt(due, [core = core_] {
      absl::MutexLock lock(&core->mu);
      if (core->reactor != nullptr) core->reactor->OnHeartbeatTimerLocked();
    });
  }

  void ArmRemotePollLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu) {
    if (remote_poll_timer_ != 0) return;
    remote_poll_timer_ = timers_->ScheduleAt(
        clock_->NowMillis() + kRemotePollMs, [core = core_] {
          absl::MutexLock lock(&core->mu);
          if (core->reactor == nullptr) return;
          core->reactor->remote_poll_timer_ = 0;
          core->reactor->PumpLocked();
        });
  }

  void OnHeartbeatTimerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu) {
    heartbeat_timer_ = 0;
    if (finished_ || writing_ || reading_) return;
    if (clock_->NowMillis() - last_write_ms_ < options_.heartbeat_ms) {
      ArmHeartbeatLocked();
      return;
    }
    auto heartbeat = std::make_shared<v1::RunEventsResponse>();
    v1::RunEvent* event = heartbeat->mutable_event();
    event->set_sequence(next_ - 1);
    event->set_event("heartbeat");
    event->set_created_at_ms(clock_->NowMillis());
    event->mutable_heartbeat();
    WriteLocked(std::move(heartbeat));
  }

  void DrainLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu) {
    draining_ = true;
    if (!opened_) {
      FinishLocked(DrainingStatus());
      return;
    }
    PumpLocked();
  }

 private:
  grpc::CallbackServerContext* context_;
  const v1::RunEventsRequest request_;
  runs::RunEngine* const engine_;
  Executor* const executor_;
  Timers* const timers_;
  const Clock* const clock_;
  StreamRegistry* const registry_;
  Admission* const admission_;
  const StreamOptions options_;
  const std::shared_ptr<StreamCore> core_;
  // The project holding one of its stream slots for this stream (set in the
  // constructor, read in OnDone).
  std::optional<std::string> stream_project_;

  // Guarded by core_->mu.
  std::string thread_id_;
  std::string run_id_;
  int64_t next_ = 1;
  bool opened_ = false;
  bool writing_ = false;
  bool reading_ = false;
  bool woken_while_reading_ = false;
  bool finished_ = false;
  bool draining_ = false;
  std::optional<grpc::Status> pending_finish_;
  EventPtr current_;
  std::deque<EventPtr> backlog_;
  int64_t last_write_ms_ = 0;
  Timers::Id heartbeat_timer_ = 0;
  Timers::Id remote_poll_timer_ = 0;
};

namespace {

void StreamCore::Wake() {
  absl::MutexLock lock(&mu);
  if (reactor != nullptr) reactor->PumpLocked();
}

void StreamCore::Drain() {
  absl::MutexLock lock(&mu);
  if (reactor != nullptr) reactor->DrainLocked();
}

}  // namespace

grpc::ServerWriteReactor<v1::RunEventsResponse>* StartRunEventsStream(
    grpc::CallbackServerContext* context, const v1::RunEventsRequest& request,
    runs::RunEngine* engine, Executor* executor, Timers* timers,
    const Clock* clock, StreamRegistry* registry, Admission* admission,
    const StreamOptions& options) {
  return new RunEventsStream(context, request, engine, executor, timers, clock,
                             registry, admission, options);
}

}  // namespace assistants
