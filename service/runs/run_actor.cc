#include "service/runs/run_actor.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "service/common/errors.h"
#include "service/common/ids.h"
#include "service/common/log.h"
#include "service/runs/run_status.h"
#include "service/runs/turn_builder.h"

namespace assistants::runs {
namespace {

// Marks a step abandoned by a gateway restart.
constexpr absl::string_view kInterruptedKey = "gateway.interrupted";

constexpr absl::string_view kStepStatusEvent[] = {
    "thread.run.step.unspecified", "thread.run.step.in_progress",
    "thread.run.step.cancelled",   "thread.run.step.failed",
    "thread.run.step.completed",   "thread.run.step.expired"};

absl::string_view StepEvent(v1::RunStepStatus status) {
  return kStepStatusEvent[static_cast<int>(status)];
}

// Keeps the first position and the last version of each id: a batch may
// carry a step as created and as completed; the store needs it once, where
// it first appeared.
template <typename T>
void DedupeById(std::vector<T>& items) {
  if (items.size() < 2) return;
  absl::flat_hash_map<std::string, size_t> first;
  std::vector<T> out;
  out.reserve(items.size());
  for (T& item : items) {
    auto [it, inserted] = first.emplace(item.id(), out.size());
    if (inserted) {
      out.push_back(std::move(item));
    } else {
      out[it->second] = std::move(item);
    }
  }
  items.swap(out);
}

}  // namespace

// Forwards one turn's provider callbacks (on the HTTP thread) to the strand.
class RunActor::TurnObserver : public upstream::TurnObserver {
 public:
  TurnObserver(std::weak_ptr<RunActor> actor, uint64_t turn)
      : actor_(std::move(actor)), turn_(turn) {}
  void OnEvent(const upstream::ProviderEvent& event) override {
    if (auto actor = actor_.lock()) {
      actor->Post([actor, turn = turn_, event] {
        actor->OnProviderEvent(turn, event);
      });
    }
  }
  void OnDone(const std::optional<upstream::TurnError>& error) override {
    if (auto actor = actor_.lock()) {
      actor->Post(
          [actor, turn = turn_, error] { actor->OnTurnDone(turn, error); });
    }
  }

 private:
  std::weak_ptr<RunActor> actor_;
  const uint64_t turn_;
};

RunActor::RunActor(EngineContext* context, v1::Run run,
                   std::vector<v1::RunStep> steps, int64_t last_sequence,
                   int64_t lease_token)
    : context_(context),
      run_id_(run.id()),
      thread_id_(run.thread_id()),
      // The run's own timeout is stored with it, so it survives restarts.
      requires_action_timeout_ms_(
          run.requires_action_timeout_seconds() > 0
              ? int64_t{run.requires_action_timeout_seconds()} * 1000
              : context->options.requires_action_timeout_ms),
      driven_since_ms_(context->clock->NowMillis()),
      lease_token_(lease_token),
      run_(std::move(run)),
      steps_(std::move(steps)),
      last_sequence_(last_sequence) {}

// --- Strand ---

void RunActor::Post(std::function<void()> task) {
  {
    absl::MutexLock lock(&strand_mu_);
    tasks_.push_back(std::move(task));
    if (draining_) return;
    draining_ = true;
  }
  context_->executor->Schedule([self = shared_from_this()] { self->Drain(); });
}

void RunActor::Drain() {
  while (true) {
    std::deque<std::function<void()>> tasks;
    {
      absl::MutexLock lock(&strand_mu_);
      if (tasks_.empty()) {
        draining_ = false;
        return;
      }
      tasks.swap(tasks_);
    }
    for (std::function<void()>& task : tasks) task();
    // What these tasks produced is committed as one change: a streaming run's
    // tokens that arrived during the last commit go to the store together.
    Commit();
  }
}

// --- Entry points ---

void RunActor::Start() {
  Post([self = shared_from_this()] { self->StartOnStrand(); });
}

void RunActor::Cancel(RunReply reply) {
  Post([self = shared_from_this(), reply = std::move(reply)]() mutable {
    if (self->stopped_ && !IsTerminal(self->run_.status())) {
      reply(RunNotDriven(self->run_id_));
      return;
    }
    if (IsTerminal(self->run_.status())) {
      reply(RunNotActive(self->run_));
      return;
    }
    if (self->run_.status() != v1::RUN_STATUS_CANCELLING) {
      self->SetStatus(v1::RUN_STATUS_CANCELLING);
      if (self->call_ != nullptr) {
        // The turn's OnDone (CANCELLED) finishes the run.
        self->call_->Cancel();
      } else {
        self->FinishCancelled();
      }
    }
    self->ReplyAfterCommit(std::move(reply));
  });
}

void RunActor::SubmitToolOutputs(std::vector<v1::ToolOutput> outputs,
                                 IdempotencyRecord* idempotency,
                                 RunReply reply) {
  Post([self = shared_from_this(), outputs = std::move(outputs), idempotency,
        reply = std::move(reply)]() mutable {
    if (self->stopped_ && !IsTerminal(self->run_.status())) {
      reply(RunNotDriven(self->run_id_));
      return;
    }
    if (self->run_.status() != v1::RUN_STATUS_REQUIRES_ACTION) {
      reply(RunNotAwaitingOutputs(self->run_));
      return;
    }
    // The exact set: every output names a pending call, once, and every
    // pending call is answered.
    std::set<std::string> answered;
    for (size_t i = 0; i < outputs.size(); ++i) {
      const std::string& id = outputs[i].tool_call_id();
      const std::string field =
          absl::StrCat("tool_outputs[", i, "].tool_call_id");
      if (self->caller_pending_.count(id) == 0) {
        reply(
            FieldError(field, "UNKNOWN_TOOL_CALL_ID",
                       absl::StrCat("tool call ", id, " is not pending in run ",
                                    self->run_id_)));
        return;
      }
      if (!answered.insert(id).second) {
        reply(FieldError(
            field, "DUPLICATE_VALUE",
            absl::StrCat("tool call ", id, " is answered more than once")));
        return;
      }
    }
    for (const std::string& id : self->caller_pending_) {
      if (answered.count(id) == 0) {
        reply(FieldError("tool_outputs", "MISSING_TOOL_OUTPUT",
                         absl::StrCat("tool call ", id,
                                      " has no output; answer every pending "
                                      "call in one request")));
        return;
      }
    }
    v1::RunStep* step = self->ToolStep();
    if (step != nullptr) {
      for (v1::ToolCall& call : *step->mutable_step_details()
                                     ->mutable_tool_calls()
                                     ->mutable_tool_calls()) {
        for (const v1::ToolOutput& output : outputs) {
          if (call.id() == output.tool_call_id() && call.has_function()) {
            call.mutable_function()->set_output(output.output());
          }
        }
      }
      self->pending_.steps.push_back(*step);
    }
    self->caller_pending_.clear();
    if (self->expiry_timer_ != 0) {
      self->context_->timers->Cancel(self->expiry_timer_);
      self->expiry_timer_ = 0;
    }
    self->run_.clear_required_action();
    self->run_.clear_expires_at();
    self->SetStatus(v1::RUN_STATUS_QUEUED);
    if (idempotency != nullptr) {
      v1::SubmitToolOutputsResponse response;
      *response.mutable_run() = self->run_;
      idempotency->response = response.SerializeAsString();
      self->pending_.idempotency = idempotency;
    }
    self->ReplyAfterCommit(std::move(reply));
    if (self->workers_outstanding_ == 0) {
      self->ContinueAfterOutputs();
    } else {
      // Worker calls of the same step are still running.
      self->SetStatus(v1::RUN_STATUS_IN_PROGRESS);
    }
  });
}

void RunActor::UpdateMetadata(
    google::protobuf::Map<std::string, std::string> metadata, RunReply reply) {
  Post([self = shared_from_this(), metadata = std::move(metadata),
        reply = std::move(reply)]() mutable {
    if (self->stopped_) {
      // Terminal runs are updated by the engine directly; a stopped actor
      // of an active run must not write any more.
      reply(RunNotDriven(self->run_id_));
      return;
    }
    *self->run_.mutable_metadata() = std::move(metadata);
    self->pending_.run = self->run_;
    self->ReplyAfterCommit(std::move(reply));
  });
}

void RunActor::Stop(std::function<void()> done) {
  Post([self = shared_from_this(), done = std::move(done)] {
    self->stopped_ = true;
    ++self->turn_;
    if (self->call_ != nullptr) {
      self->call_->Cancel();
      self->call_.reset();
    }
    if (self->expiry_timer_ != 0) {
      self->context_->timers->Cancel(self->expiry_timer_);
      self->expiry_timer_ = 0;
    }
    // Calls in flight go out again, with the same ids, when a process
    // resumes the run.
    self->AbandonWorkerCalls();
    // What earlier tasks of this drain produced must reach the committer
    // before the engine is told this run is quiet (it flushes next).
    self->Commit();
    done();
  });
}

bool RunActor::ended() const { return IsTerminal(run_.status()); }

void RunActor::Park(
    std::function<void(bool parked, int64_t expires_at_ms)> done) {
  Post([self = shared_from_this(), done = std::move(done)]() mutable {
    if (self->stopped_ ||
        self->run_.status() != v1::RUN_STATUS_REQUIRES_ACTION ||
        self->workers_outstanding_ > 0) {
      done(false, 0);
      return;
    }
    self->stopped_ = true;
    ++self->turn_;
    if (self->expiry_timer_ != 0) {
      self->context_->timers->Cancel(self->expiry_timer_);
      self->expiry_timer_ = 0;
    }
    const int64_t expires_at_ms = self->run_.expires_at() * 1000;
    // Through the committer even when nothing is pending: `done` must follow
    // the durability of everything this replica wrote for the run.
    self->Commit([self, done = std::move(done),
                  expires_at_ms](const absl::Status& status) mutable {
      self->Post([status, done = std::move(done), expires_at_ms] {
        done(status.ok(), expires_at_ms);
      });
    });
  });
}

// --- Life cycle ---

void RunActor::StartOnStrand() {
  if (stopped_) return;
  // Rebuild the waiting state from the stored objects (a recovered run).
  for (const v1::RunStep& step : steps_) {
    if (step.status() == v1::RUN_STEP_STATUS_IN_PROGRESS &&
        step.step_details().has_tool_calls()) {
      tool_step_id_ = step.id();
    }
  }
  switch (run_.status()) {
    case v1::RUN_STATUS_QUEUED:
      if (tool_step_id_.empty()) {
        BeginTurn();
        return;
      }
      // The caller's outputs were stored before a restart; worker calls of
      // the same step may still lack theirs.
      if (std::vector<ToolInvocation> calls = UnansweredWorkerCalls();
          !calls.empty()) {
        SetStatus(v1::RUN_STATUS_IN_PROGRESS);
        pending_.steps.push_back(*ToolStep());
        DispatchToWorkers(std::move(calls));
        return;
      }
      ContinueAfterOutputs();
      return;
    case v1::RUN_STATUS_IN_PROGRESS:
      ResumeInProgress();
      return;
    case v1::RUN_STATUS_REQUIRES_ACTION:
      for (const v1::RequiredToolCall& call :
           run_.required_action().submit_tool_outputs().tool_calls()) {
        caller_pending_.insert(call.id());
      }
      ArmExpiry();
      DispatchToWorkers(UnansweredWorkerCalls());
      return;
    case v1::RUN_STATUS_CANCELLING:
      FinishCancelled();
      return;
    default:
      // Terminal already: nothing to drive.
      stopped_ = true;
      finished_ = true;
      context_->on_finished(shared_from_this());
      return;
  }
}

void RunActor::ResumeInProgress() {
  // Counted on the run itself (stored before the turn is retried), so a
  // turn that crashes the process before any output still ends the loop.
  run_.set_restart_resumes(run_.restart_resumes() + 1);
  pending_.run = run_;
  // The model turn in flight when the process stopped is lost; its output
  // so far is kept (the message ends incomplete, the step failed) and the
  // turn runs again.
  v1::LastError error;
  error.set_code("server_error");
  error.set_message(
      "The gateway restarted during this step; the model turn was retried.");
  bool pending_calls = false;
  for (v1::RunStep& step : steps_) {
    if (step.status() != v1::RUN_STEP_STATUS_IN_PROGRESS) continue;
    if (step.step_details().has_message_creation()) {
      absl::StatusOr<v1::Message> message = context_->store->GetMessage(
          thread_id_, step.step_details().message_creation().message_id());
      if (message.ok() && message->status() == v1::MESSAGE_STATUS_IN_PROGRESS) {
        message_ = *std::move(message);
        RestoreStreamedContent();
        message_.set_status(v1::MESSAGE_STATUS_INCOMPLETE);
        message_.set_incomplete_at(context_->clock->NowSeconds());
        message_.mutable_incomplete_details()->set_reason("run_failed");
        EmitMessage("thread.message.incomplete");
      }
      continue;
    }
    for (const v1::ToolCall& call :
         step.step_details().tool_calls().tool_calls()) {
      if (call.has_function() && !call.function().has_output()) {
        pending_calls = true;
      }
    }
  }
  if (run_.restart_resumes() > context_->options.max_restart_resumes) {
    Fail("server_error",
         absl::StrCat("The gateway restarted ", run_.restart_resumes(),
                      " times during this run; it was not resumed again."));
    return;
  }
  if (pending_calls && !tool_step_id_.empty()) {
    // The turn had ended with function calls and the caller's were answered
    // (or there were none): the rest were with workers. Send them again with
    // the same ids; a worker that finished one answers from its
    // idempotency cache instead of running it twice.
    pending_.steps.push_back(*ToolStep());
    DispatchToWorkers(UnansweredWorkerCalls());
    return;
  }
  for (v1::RunStep& step : steps_) {
    if (step.status() != v1::RUN_STEP_STATUS_IN_PROGRESS) continue;
    step.set_status(v1::RUN_STEP_STATUS_FAILED);
    step.set_failed_at(context_->clock->NowSeconds());
    *step.mutable_last_error() = error;
    (*step.mutable_metadata())[std::string(kInterruptedKey)] = "restart";
    EmitStep(StepEvent(step.status()), step);
  }
  tool_step_id_.clear();
  BeginTurn();
}

void RunActor::RestoreStreamedContent() {
  // Text is stored with the message only when it closes; what streamed
  // before the restart is in the log as deltas.
  int64_t after = 0;
  while (true) {
    absl::StatusOr<std::vector<v1::RunEvent>> events =
        context_->store->ListRunEvents(run_id_, after, 1000);
    if (!events.ok() || events->empty()) return;
    after = events->back().sequence();
    for (const v1::RunEvent& event : *events) {
      if (!event.has_message_delta() ||
          event.message_delta().id() != message_.id()) {
        continue;
      }
      for (const v1::MessageContentDelta& delta :
           event.message_delta().delta().content()) {
        if (delta.index() < 0 || delta.index() > message_.content_size()) {
          continue;
        }
        if (delta.index() == message_.content_size()) message_.add_content();
        v1::MessageContent* part = message_.mutable_content(delta.index());
        if (delta.has_text()) {
          part->mutable_text()->mutable_value()->append(delta.text().value());
        } else if (delta.content_case() == v1::MessageContentDelta::kRefusal) {
          part->mutable_refusal()->append(delta.refusal());
        }
      }
    }
  }
}

void RunActor::BeginTurn() {
  if (stopped_) return;
  if (run_.status() == v1::RUN_STATUS_QUEUED) {
    if (!SetStatus(v1::RUN_STATUS_IN_PROGRESS)) return;
  }
  if (run_.has_max_prompt_tokens() &&
      run_.usage().prompt_tokens() >= run_.max_prompt_tokens()) {
    FinishIncomplete("max_prompt_tokens");
    return;
  }
  if (run_.has_max_completion_tokens() &&
      run_.usage().completion_tokens() >= run_.max_completion_tokens()) {
    FinishIncomplete("max_completion_tokens");
    return;
  }
  if (turns_taken_ >= context_->options.max_turns) {
    Fail("server_error", absl::StrCat("The run called the model ", turns_taken_,
                                      " times without finishing."));
    return;
  }
  absl::StatusOr<upstream::Provider*> provider =
      context_->resolve_provider(run_.upstream());
  if (!provider.ok()) {
    Fail("server_error", provider.status().message());
    return;
  }
  // The turn is built from durable state only.
  absl::StatusOr<v1::Thread> thread = context_->store->GetThread(thread_id_);
  if (!thread.ok()) {
    Fail("server_error", thread.status().message());
    return;
  }
  absl::StatusOr<v1::Assistant> assistant =
      context_->store->GetAssistant(run_.assistant_id());
  v1::Assistant fallback;  // a deleted assistant: the run keeps its copy
  std::vector<v1::Message> messages;
  ListQuery query;
  query.limit = 100;
  query.ascending = true;
  while (true) {
    absl::StatusOr<Page<v1::Message>> page =
        context_->store->ListMessages(thread_id_, "", query);
    if (!page.ok()) {
      Fail("server_error", page.status().message());
      return;
    }
    for (v1::Message& message : page->items) {
      messages.push_back(std::move(message));
    }
    if (!page->has_more || messages.empty()) break;
    query.after = messages.back().id();
  }
  // The open message (if any) is newer than what the store holds.
  TurnInputs inputs;
  inputs.assistant = assistant.ok() ? &*assistant : &fallback;
  inputs.thread = &*thread;
  inputs.run = &run_;
  inputs.messages = &messages;
  inputs.own_messages = &own_messages_;
  inputs.steps = &steps_;
  inputs.completion_tokens_used = run_.usage().completion_tokens();
  inputs.tool_definitions = context_->dispatcher;
  upstream::Turn turn = BuildTurn(inputs);

  ++turns_taken_;
  ++turn_;
  finish_reason_ = upstream::FinishReason::kStop;
  turn_usage_.Clear();
  turn_has_usage_ = false;
  call_position_.clear();
  // The in_progress event is committed before the request leaves.
  Commit();
  call_ = (*provider)->StreamTurn(
      turn, std::make_shared<TurnObserver>(weak_from_this(), turn_));
}

void RunActor::OnProviderEvent(uint64_t turn,
                               const upstream::ProviderEvent& event) {
  if (turn != turn_ || stopped_ ||
      run_.status() != v1::RUN_STATUS_IN_PROGRESS) {
    return;  // a stale turn, or one being cancelled
  }
  using Type = upstream::ProviderEvent::Type;
  switch (event.type) {
    case Type::kTextDelta:
    case Type::kRefusalDelta: {
      EnsureMessage();
      const bool refusal = event.type == Type::kRefusalDelta;
      // One content part per kind, created on its first delta.
      int index = -1;
      for (int i = 0; i < message_.content_size(); ++i) {
        if (refusal ? message_.content(i).content_case() ==
                          v1::MessageContent::kRefusal
                    : message_.content(i).has_text()) {
          index = i;
        }
      }
      if (index < 0) {
        index = message_.content_size();
        v1::MessageContent* part = message_.add_content();
        if (refusal) {
          part->set_refusal("");
        } else {
          part->mutable_text();
        }
      }
      v1::MessageContent* part = message_.mutable_content(index);
      if (refusal) {
        part->mutable_refusal()->append(event.text);
      } else {
        part->mutable_text()->mutable_value()->append(event.text);
      }
      v1::RunEvent& out = NewEvent("thread.message.delta");
      v1::MessageDelta* delta = out.mutable_message_delta();
      delta->set_id(message_.id());
      delta->set_object("thread.message.delta");
      v1::MessageContentDelta* content = delta->mutable_delta()->add_content();
      content->set_index(index);
      if (refusal) {
        content->set_refusal(event.text);
      } else {
        content->mutable_text()->set_value(event.text);
      }
      return;
    }
    case Type::kToolCallStarted:
    case Type::kCodeInterpreterStarted:
    case Type::kToolCallArgumentsDelta:
    case Type::kCodeInterpreterCodeDelta:
    case Type::kToolCallDone:
    case Type::kCodeInterpreterDone: {
      const bool code = event.type == Type::kCodeInterpreterStarted ||
                        event.type == Type::kCodeInterpreterCodeDelta ||
                        event.type == Type::kCodeInterpreterDone;
      EnsureToolStep();
      v1::RunStep* step = ToolStep();
      auto* calls = step->mutable_step_details()
                        ->mutable_tool_calls()
                        ->mutable_tool_calls();
      auto [it, created] = call_position_.emplace(event.index, calls->size());
      if (!created && it->second >= calls->size()) {
        return;  // a call of a step already closed: nothing to attach to
      }
      v1::RunEvent& out = NewEvent("thread.run.step.delta");
      v1::RunStepDelta* delta = out.mutable_step_delta();
      delta->set_id(step->id());
      delta->set_object("thread.run.step.delta");
      v1::ToolCallDelta* call_delta = delta->mutable_delta()->add_tool_calls();
      call_delta->set_index(it->second);
      if (created) {
        v1::ToolCall* call = calls->Add();
        call->set_id(NewId(kCallPrefix));
        if (code) {
          call->mutable_code_interpreter();
        } else {
          call->mutable_function()->set_name(event.name);
        }
        call_delta->set_id(call->id());
      }
      v1::ToolCall* call = calls->Mutable(it->second);
      if (code) {
        v1::CodeInterpreterCallDelta* ci =
            call_delta->mutable_code_interpreter();
        v1::CodeInterpreterToolCall* full = call->mutable_code_interpreter();
        if (event.type == Type::kCodeInterpreterCodeDelta) {
          full->mutable_input()->append(event.text);
          ci->set_input(event.text);
        } else if (event.type == Type::kCodeInterpreterDone) {
          if (full->input().empty()) {
            full->set_input(event.text);
            ci->set_input(event.text);
          }
          for (const v1::CodeInterpreterOutput& output : event.outputs) {
            *full->add_outputs() = output;
            if (output.has_logs()) ci->add_logs(output.logs().logs());
            if (output.has_image()) {
              ci->add_image_file_ids(output.image().file_id());
            }
          }
        }
      } else {
        v1::FunctionCallDelta* fn = call_delta->mutable_function();
        v1::FunctionToolCall* full = call->mutable_function();
        if (full->name().empty() && !event.name.empty()) {
          full->set_name(event.name);
        }
        if (created) fn->set_name(full->name());
        if (event.type == Type::kToolCallArgumentsDelta) {
          full->mutable_arguments()->append(event.text);
          fn->set_arguments(event.text);
        } else if (event.type == Type::kToolCallDone) {
          // The final arguments are authoritative; send what the deltas
          // missed, if anything.
          if (full->arguments() != event.text) {
            if (absl::StartsWith(event.text, full->arguments())) {
              fn->set_arguments(event.text.substr(full->arguments().size()));
            }
            full->set_arguments(event.text);
          }
        }
      }
      if (!created && event.type == Type::kToolCallDone &&
          call_delta->function().arguments().empty()) {
        // Nothing new to tell: drop the empty delta.
        pending_.events.pop_back();
        --last_sequence_;
      }
      return;
    }
    case Type::kUsage:
      turn_usage_ = event.usage;
      turn_has_usage_ = true;
      return;
    case Type::kFinished:
      finish_reason_ = event.finish_reason;
      return;
  }
}

void RunActor::OnTurnDone(uint64_t turn,
                          const std::optional<upstream::TurnError>& error) {
  if (turn != turn_) return;
  call_.reset();
  if (stopped_) return;
  if (turn_has_usage_) AddUsage(turn_usage_);
  if (run_.status() == v1::RUN_STATUS_CANCELLING) {
    FinishCancelled();
    return;
  }
  if (error.has_value()) {
    Fail(error->run_error_code.empty() ? "server_error" : error->run_error_code,
         error->status.message());
    return;
  }
  const bool prompt_over =
      run_.has_max_prompt_tokens() &&
      run_.usage().prompt_tokens() > run_.max_prompt_tokens();
  const bool completion_spent =
      run_.has_max_completion_tokens() &&
      run_.usage().completion_tokens() >= run_.max_completion_tokens();
  if (finish_reason_ == upstream::FinishReason::kLength) {
    if (!message_step_id_.empty()) {
      CloseMessage(v1::MESSAGE_STATUS_INCOMPLETE, "max_tokens");
    }
    FinishIncomplete(run_.has_max_prompt_tokens() && prompt_over
                         ? "max_prompt_tokens"
                         : "max_completion_tokens");
    return;
  }
  if (!message_step_id_.empty()) {
    if (finish_reason_ == upstream::FinishReason::kContentFilter) {
      CloseMessage(v1::MESSAGE_STATUS_INCOMPLETE, "content_filter");
    } else {
      CloseMessage(v1::MESSAGE_STATUS_COMPLETED, "");
    }
  }
  bool function_calls = false;
  if (v1::RunStep* step = ToolStep()) {
    for (const v1::ToolCall& call :
         step->step_details().tool_calls().tool_calls()) {
      if (call.has_function() && !call.function().has_output()) {
        function_calls = true;
      }
    }
  }
  if (function_calls) {
    if (prompt_over) {
      FinishIncomplete("max_prompt_tokens");
    } else if (completion_spent) {
      FinishIncomplete("max_completion_tokens");
    } else {
      HandleFunctionCalls();
    }
    return;
  }
  if (prompt_over) {
    FinishIncomplete("max_prompt_tokens");
    return;
  }
  FinishCompleted();
}

void RunActor::HandleFunctionCalls() {
  v1::RunStep* step = ToolStep();
  if (step == nullptr) return;
  std::set<std::string> declared;
  for (const v1::Tool& tool : run_.tools()) {
    if (tool.has_function()) declared.insert(tool.function().function().name());
  }
  std::vector<v1::RequiredToolCall> for_caller;
  std::vector<ToolInvocation> for_workers;
  for (const v1::ToolCall& call :
       step->step_details().tool_calls().tool_calls()) {
    if (!call.has_function() || call.function().has_output()) continue;
    const std::string& name = call.function().name();
    // Only tools the run offers go to workers: a model (or an injected
    // prompt) naming another team's worker tool must not reach it.
    if (declared.count(name) > 0 && context_->dispatcher->Handles(name)) {
      for_workers.push_back({call.id(), name, call.function().arguments()});
    } else {
      v1::RequiredToolCall required;
      required.set_id(call.id());
      required.set_type("function");
      required.mutable_function()->set_name(name);
      required.mutable_function()->set_arguments(call.function().arguments());
      for_caller.push_back(std::move(required));
    }
  }
  pending_.steps.push_back(*step);
  if (!for_caller.empty()) {
    v1::SubmitToolOutputsAction* action =
        run_.mutable_required_action()->mutable_submit_tool_outputs();
    run_.mutable_required_action()->set_type("submit_tool_outputs");
    action->clear_tool_calls();
    for (v1::RequiredToolCall& call : for_caller) {
      caller_pending_.insert(call.id());
      *action->add_tool_calls() = std::move(call);
    }
    run_.set_expires_at(
        (context_->clock->NowMillis() + requires_action_timeout_ms_ + 999) /
        1000);
    SetStatus(v1::RUN_STATUS_REQUIRES_ACTION);
    ArmExpiry();
  }
  // Last: its commit carries the step and requires_action together, so a
  // recovered run can always tell the caller's calls from the workers'.
  DispatchToWorkers(std::move(for_workers));
}

std::vector<ToolInvocation> RunActor::UnansweredWorkerCalls() {
  std::vector<ToolInvocation> calls;
  const v1::RunStep* step = ToolStep();
  if (step == nullptr) return calls;
  for (const v1::ToolCall& call :
       step->step_details().tool_calls().tool_calls()) {
    // Stored calls without an output that the caller was not asked for
    // were handed to workers.
    if (call.has_function() && !call.function().has_output() &&
        caller_pending_.count(call.id()) == 0) {
      calls.push_back(
          {call.id(), call.function().name(), call.function().arguments()});
    }
  }
  return calls;
}

void RunActor::DispatchToWorkers(std::vector<ToolInvocation> calls) {
  if (calls.empty()) return;
  workers_outstanding_ += static_cast<int>(calls.size());
  // Workers see a call only once its step is durable: a restart then sends
  // the same call ids (the idempotency keys) again rather than re-running
  // the turn and inventing new ones.
  std::weak_ptr<RunActor> weak = weak_from_this();
  const uint64_t turn = turn_;
  Commit([weak, turn, calls = std::move(calls)](const absl::Status& status) {
    if (!status.ok()) return;  // OnCommitFailed stops the run here
    if (auto actor = weak.lock()) {
      actor->Post([actor, turn, calls] { actor->SendToWorkers(turn, calls); });
    }
  });
}

void RunActor::SendToWorkers(uint64_t turn,
                             const std::vector<ToolInvocation>& calls) {
  if (turn != turn_ || stopped_) return;
  const ToolCallContext tool_context{run_id_, thread_id_, run_.assistant_id()};
  for (const ToolInvocation& invocation : calls) {
    std::weak_ptr<RunActor> weak = weak_from_this();
    const std::string call_id = invocation.call_id;
    context_->dispatcher->Invoke(
        tool_context, invocation, [weak, turn, call_id](std::string output) {
          if (auto actor = weak.lock()) {
            actor->Post(
                [actor, turn, call_id, output = std::move(output)]() mutable {
                  actor->OnWorkerOutput(turn, call_id, std::move(output));
                });
          }
        });
  }
}

void RunActor::OnWorkerOutput(uint64_t turn, const std::string& call_id,
                              std::string output) {
  if (turn != turn_ || stopped_) return;
  v1::RunStep* step = ToolStep();
  if (step == nullptr) return;
  auto* calls =
      step->mutable_step_details()->mutable_tool_calls()->mutable_tool_calls();
  for (int i = 0; i < calls->size(); ++i) {
    v1::ToolCall* call = calls->Mutable(i);
    if (call->id() != call_id || !call->has_function() ||
        call->function().has_output()) {
      continue;
    }
    call->mutable_function()->set_output(output);
    --workers_outstanding_;
    pending_.steps.push_back(*step);
    // Tool activity is visible on the stream as the output arrives.
    v1::RunEvent& out = NewEvent("thread.run.step.delta");
    v1::RunStepDelta* delta = out.mutable_step_delta();
    delta->set_id(step->id());
    delta->set_object("thread.run.step.delta");
    v1::ToolCallDelta* call_delta = delta->mutable_delta()->add_tool_calls();
    call_delta->set_index(i);
    call_delta->set_id(call_id);
    call_delta->mutable_function()->set_output(std::move(output));
    break;
  }
  if (workers_outstanding_ == 0 && caller_pending_.empty() &&
      run_.status() == v1::RUN_STATUS_IN_PROGRESS) {
    ContinueAfterOutputs();
  }
}

void RunActor::AbandonWorkerCalls() {
  if (workers_outstanding_ == 0) return;
  workers_outstanding_ = 0;
  // Their outputs, if any still come, find a stale turn.
  ++turn_;
  context_->dispatcher->CancelRun(run_id_);
}

void RunActor::ContinueAfterOutputs() {
  if (run_.status() == v1::RUN_STATUS_QUEUED) {
    if (!SetStatus(v1::RUN_STATUS_IN_PROGRESS)) return;
  }
  if (v1::RunStep* step = ToolStep()) {
    step->set_status(v1::RUN_STEP_STATUS_COMPLETED);
    step->set_completed_at(context_->clock->NowSeconds());
    EmitStep(StepEvent(step->status()), *step);
  }
  tool_step_id_.clear();
  BeginTurn();
}

void RunActor::ArmExpiry() {
  if (expiry_timer_ != 0) context_->timers->Cancel(expiry_timer_);
  const int64_t deadline_ms = run_.expires_at() * 1000;
  std::weak_ptr<RunActor> weak = weak_from_this();
  expiry_timer_ = context_->timers->ScheduleAt(deadline_ms, [weak] {
    if (auto actor = weak.lock()) {
      actor->Post([actor] { actor->OnExpiryTimer(); });
    }
  });
}

void RunActor::OnExpiryTimer() {
  expiry_timer_ = 0;
  if (stopped_ || run_.status() != v1::RUN_STATUS_REQUIRES_ACTION) return;
  if (context_->clock->NowMillis() < run_.expires_at() * 1000) {
    ArmExpiry();  // woken early
    return;
  }
  EndOpenSteps(v1::RUN_STEP_STATUS_EXPIRED, nullptr);
  caller_pending_.clear();
  Terminate(v1::RUN_STATUS_EXPIRED);
}

// --- Endings ---

void RunActor::Fail(absl::string_view code, absl::string_view message) {
  if (call_ != nullptr) {
    ++turn_;
    call_->Cancel();
    call_.reset();
  }
  v1::LastError error;
  error.set_code(std::string(code));
  error.set_message(std::string(message));
  // The message ends incomplete; its step fails with the run.
  CloseMessage(v1::MESSAGE_STATUS_INCOMPLETE, "run_failed",
               /*complete_step=*/false);
  EndOpenSteps(v1::RUN_STEP_STATUS_FAILED, &error);
  *run_.mutable_last_error() = error;
  run_.set_failed_at(context_->clock->NowSeconds());
  Terminate(v1::RUN_STATUS_FAILED);
}

void RunActor::FinishCancelled() {
  CloseMessage(v1::MESSAGE_STATUS_INCOMPLETE, "run_cancelled",
               /*complete_step=*/false);
  EndOpenSteps(v1::RUN_STEP_STATUS_CANCELLED, nullptr);
  run_.set_cancelled_at(context_->clock->NowSeconds());
  Terminate(v1::RUN_STATUS_CANCELLED);
}

void RunActor::FinishIncomplete(absl::string_view reason) {
  if (!message_step_id_.empty()) {
    CloseMessage(v1::MESSAGE_STATUS_INCOMPLETE, "max_tokens");
  }
  EndOpenSteps(v1::RUN_STEP_STATUS_CANCELLED, nullptr);
  run_.mutable_incomplete_details()->set_reason(std::string(reason));
  Terminate(v1::RUN_STATUS_INCOMPLETE);
}

void RunActor::FinishCompleted() {
  // Hosted-tool steps (code interpreter) end with the turn.
  EndOpenSteps(v1::RUN_STEP_STATUS_COMPLETED, nullptr);
  run_.set_completed_at(context_->clock->NowSeconds());
  Terminate(v1::RUN_STATUS_COMPLETED);
}

void RunActor::Terminate(v1::RunStatus status) {
  AbandonWorkerCalls();
  if (expiry_timer_ != 0) {
    context_->timers->Cancel(expiry_timer_);
    expiry_timer_ = 0;
  }
  run_.clear_required_action();
  if (status != v1::RUN_STATUS_EXPIRED) run_.clear_expires_at();
  if (!SetStatus(status)) return;
  NewEvent("done").mutable_done();
  stopped_ = true;
  const int64_t driven_ms = context_->clock->NowMillis() - driven_since_ms_;
  if (RunObserver* observer = context_->options.observer) {
    observer->OnRunEnded(status, driven_ms);
  }
  // Built now: the commit's callback runs on the committer's thread, where
  // run_ (strand state) must not be read.
  std::vector<LogField> ended = EndedLogFields(driven_ms);
  Commit([self = shared_from_this(), status,
          ended = std::move(ended)](const absl::Status& committed) {
    // Once durable (a failed commit logs its own reason): one line per run.
    if (committed.ok()) {
      Log(status == v1::RUN_STATUS_FAILED ? LogLevel::kWarning
                                          : LogLevel::kInfo,
          "run ended", ended);
    }
    // Back on the strand: finished_ is strand state.
    self->Post([self] {
      if (!self->finished_) {
        self->finished_ = true;
        self->context_->on_finished(self);
      }
    });
  });
}

std::vector<LogField> RunActor::EndedLogFields(int64_t driven_ms) const {
  std::vector<LogField> fields = {
      {"run_id", run_.id()},
      {"thread_id", run_.thread_id()},
      {"assistant_id", run_.assistant_id()},
      {"status", RunStatusName(run_.status())},
      {"model", run_.model()},
      {"driven_ms", driven_ms},
      {"prompt_tokens", run_.usage().prompt_tokens()},
      {"completion_tokens", run_.usage().completion_tokens()},
      {"restart_resumes", run_.restart_resumes()}};
  if (run_.has_last_error()) {
    fields.emplace_back("error_code", run_.last_error().code());
    fields.emplace_back("error", run_.last_error().message());
  }
  if (run_.has_incomplete_details()) {
    fields.emplace_back("incomplete_reason",
                        run_.incomplete_details().reason());
  }
  return fields;
}

// --- Objects and events ---

bool RunActor::SetStatus(v1::RunStatus status) {
  absl::Status allowed = CheckTransition(run_.status(), status);
  if (!allowed.ok()) {
    // A bug: refuse the move rather than corrupt the run.
    return false;
  }
  run_.set_status(status);
  if (status == v1::RUN_STATUS_IN_PROGRESS && !run_.has_started_at()) {
    run_.set_started_at(context_->clock->NowSeconds());
  }
  EmitRun(RunStatusEvent(status));
  return true;
}

v1::RunStep RunActor::NewStep(v1::RunStepType type) {
  v1::RunStep step;
  step.set_id(NewId(kStepPrefix));
  step.set_object("thread.run.step");
  step.set_created_at(context_->clock->NowSeconds());
  step.set_assistant_id(run_.assistant_id());
  step.set_thread_id(thread_id_);
  step.set_run_id(run_id_);
  step.set_type(type);
  step.set_status(v1::RUN_STEP_STATUS_IN_PROGRESS);
  return step;
}

void RunActor::EnsureMessage() {
  if (!message_step_id_.empty()) return;
  // A hosted-tool step (code interpreter) is over once the model speaks.
  if (v1::RunStep* step = ToolStep()) {
    bool functions = false;
    for (const v1::ToolCall& call :
         step->step_details().tool_calls().tool_calls()) {
      functions = functions || call.has_function();
    }
    if (!functions) {
      step->set_status(v1::RUN_STEP_STATUS_COMPLETED);
      step->set_completed_at(context_->clock->NowSeconds());
      EmitStep(StepEvent(step->status()), *step);
      tool_step_id_.clear();
    }
  }
  message_.Clear();
  message_.set_id(NewId(kMessagePrefix));
  message_.set_object("thread.message");
  message_.set_created_at(context_->clock->NowSeconds());
  message_.set_thread_id(thread_id_);
  message_.set_status(v1::MESSAGE_STATUS_IN_PROGRESS);
  message_.set_role(v1::MESSAGE_ROLE_ASSISTANT);
  message_.set_assistant_id(run_.assistant_id());
  message_.set_run_id(run_id_);
  v1::RunStep step = NewStep(v1::RUN_STEP_TYPE_MESSAGE_CREATION);
  step.mutable_step_details()->mutable_message_creation()->set_message_id(
      message_.id());
  message_step_id_ = step.id();
  steps_.push_back(step);
  EmitStep("thread.run.step.created", step);
  EmitStep("thread.run.step.in_progress", step);
  EmitMessage("thread.message.created");
  EmitMessage("thread.message.in_progress");
}

void RunActor::CloseMessage(v1::MessageStatus status, absl::string_view reason,
                            bool complete_step) {
  if (message_step_id_.empty()) return;
  const int64_t now = context_->clock->NowSeconds();
  message_.set_status(status);
  if (status == v1::MESSAGE_STATUS_COMPLETED) {
    message_.set_completed_at(now);
    EmitMessage("thread.message.completed");
  } else {
    message_.set_incomplete_at(now);
    message_.mutable_incomplete_details()->set_reason(std::string(reason));
    EmitMessage("thread.message.incomplete");
  }
  v1::RunStep* step = complete_step ? FindStep(message_step_id_) : nullptr;
  if (step != nullptr) {
    step->set_status(v1::RUN_STEP_STATUS_COMPLETED);
    step->set_completed_at(now);
    EmitStep(StepEvent(step->status()), *step);
  }
  message_step_id_.clear();
}

void RunActor::EnsureToolStep() {
  if (!tool_step_id_.empty()) return;
  // The model moved from text to tools: its message is done.
  if (!message_step_id_.empty()) CloseMessage(v1::MESSAGE_STATUS_COMPLETED, "");
  v1::RunStep step = NewStep(v1::RUN_STEP_TYPE_TOOL_CALLS);
  step.mutable_step_details()->mutable_tool_calls();
  tool_step_id_ = step.id();
  // The provider's call indexes map to positions in this step only.
  call_position_.clear();
  steps_.push_back(step);
  EmitStep("thread.run.step.created", step);
  EmitStep("thread.run.step.in_progress", step);
}

v1::RunStep* RunActor::ToolStep() {
  return tool_step_id_.empty() ? nullptr : FindStep(tool_step_id_);
}

v1::RunStep* RunActor::FindStep(const std::string& id) {
  for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) {
    if (it->id() == id) return &*it;
  }
  return nullptr;
}

void RunActor::EndOpenSteps(v1::RunStepStatus status,
                            const v1::LastError* error) {
  const int64_t now = context_->clock->NowSeconds();
  for (v1::RunStep& step : steps_) {
    if (step.status() != v1::RUN_STEP_STATUS_IN_PROGRESS) continue;
    step.set_status(status);
    switch (status) {
      case v1::RUN_STEP_STATUS_COMPLETED:
        step.set_completed_at(now);
        break;
      case v1::RUN_STEP_STATUS_CANCELLED:
        step.set_cancelled_at(now);
        break;
      case v1::RUN_STEP_STATUS_EXPIRED:
        step.set_expired_at(now);
        break;
      default:
        step.set_failed_at(now);
        if (error != nullptr) *step.mutable_last_error() = *error;
        break;
    }
    EmitStep(StepEvent(status), step);
  }
  tool_step_id_.clear();
  message_step_id_.clear();
}

v1::RunEvent& RunActor::NewEvent(absl::string_view name) {
  v1::RunEvent& event = pending_.events.emplace_back();
  event.set_sequence(++last_sequence_);
  event.set_event(std::string(name));
  event.set_created_at_ms(context_->clock->NowMillis());
  return event;
}

void RunActor::EmitRun(absl::string_view name) {
  *NewEvent(name).mutable_run() = run_;
  pending_.run = run_;
}

void RunActor::EmitStep(absl::string_view name, const v1::RunStep& step) {
  *NewEvent(name).mutable_step() = step;
  pending_.steps.push_back(step);
}

void RunActor::EmitMessage(absl::string_view name) {
  *NewEvent(name).mutable_message() = message_;
  pending_.messages.push_back(message_);
  own_messages_[message_.id()] = message_;
}

void RunActor::AddUsage(const v1::Usage& usage) {
  v1::Usage* total = run_.mutable_usage();
  total->set_prompt_tokens(total->prompt_tokens() + usage.prompt_tokens());
  total->set_completion_tokens(total->completion_tokens() +
                               usage.completion_tokens());
  total->set_total_tokens(total->prompt_tokens() + total->completion_tokens());
  // The turn's usage belongs to the step it ended with.
  v1::RunStep* step = !message_step_id_.empty() ? FindStep(message_step_id_)
                      : !tool_step_id_.empty()  ? ToolStep()
                      : steps_.empty()          ? nullptr
                                                : &steps_.back();
  if (step != nullptr) {
    v1::Usage* own = step->mutable_usage();
    own->set_prompt_tokens(own->prompt_tokens() + usage.prompt_tokens());
    own->set_completion_tokens(own->completion_tokens() +
                               usage.completion_tokens());
    own->set_total_tokens(own->prompt_tokens() + own->completion_tokens());
    pending_.steps.push_back(*step);
  }
  pending_.run = run_;
}

void RunActor::Commit(std::function<void(const absl::Status&)> done) {
  if (pending_.events.empty() && !pending_.run.has_value() &&
      pending_.steps.empty() && pending_.messages.empty() &&
      pending_.idempotency == nullptr && !done) {
    return;
  }
  // An empty change with `done` still goes through the committer: its reply
  // must follow this run's earlier changes (a cancel answered before the
  // cancellation is durable would be a lie).
  pending_.run_id = run_id_;
  pending_.thread_id = thread_id_;
  if (lease_token_ != 0) {
    pending_.lease_owner = context_->leases->replica_id();
    pending_.lease_token = lease_token_;
  }
  DedupeById(pending_.steps);
  DedupeById(pending_.messages);
  std::weak_ptr<RunActor> weak = weak_from_this();
  context_->committer->Submit(
      std::move(pending_),
      [weak, done = std::move(done)](const absl::Status& status) {
        if (!status.ok()) {
          if (auto actor = weak.lock()) {
            actor->Post([actor, status] { actor->OnCommitFailed(status); });
          }
        }
        if (done) done(status);
      });
  pending_ = RunChanges();
}

void RunActor::ReplyAfterCommit(RunReply reply) {
  Commit(
      [reply = std::move(reply), snapshot = run_](const absl::Status& status) {
        if (status.ok()) {
          reply(snapshot);
        } else {
          reply(status);
        }
      });
}

void RunActor::OnCommitFailed(const absl::Status& status) {
  // The log cannot take more events: stop driving. The run stays active in
  // the store and the next process resumes it (Recover); with several
  // replicas, RUN_LEASE_LOST means another one already has.
  if (!finished_) {
    Log(LogLevel::kWarning,
        "run no longer driven here: its changes were refused",
        {{"run_id", run_id_},
         {"reason", ErrorReason(status)},
         {"error", status.message()}});
  }
  if (call_ != nullptr) {
    call_->Cancel();
    call_.reset();
  }
  ++turn_;
  stopped_ = true;
  AbandonWorkerCalls();
  pending_ = RunChanges();
  if (!finished_) {
    finished_ = true;
    context_->on_finished(shared_from_this());
  }
}

}  // namespace assistants::runs
