#include "tool_workers/dispatcher.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "service/common/errors.h"

namespace assistants::tool_workers {
namespace {

std::string ErrorOutput(absl::string_view type, absl::string_view tool,
                        absl::string_view message) {
  // Messages quote workers and parsers, byte for byte: invalid UTF-8 must
  // not make dump() throw.
  return nlohmann::json{{"error", std::string(message)},
                        {"error_type", std::string(type)},
                        {"tool", std::string(tool)}}
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// The model's arguments as the worker will get them, or why they are
// unusable. Empty means "no arguments".
bool NormalizeArguments(std::string* arguments, std::string* problem) {
  if (arguments->empty()) {
    *arguments = "{}";
    return true;
  }
  try {
    if (!nlohmann::json::parse(*arguments).is_object()) {
      *problem = "the arguments are JSON but not an object";
      return false;
    }
  } catch (const nlohmann::json::exception& error) {
    // parse_error, or out_of_range for a number such as 1e999.
    *problem =
        absl::StrCat("the arguments are not valid JSON (", error.what(), ")");
    return false;
  }
  return true;
}

}  // namespace

struct WorkerDispatcher::Call {
  runs::ToolCallContext context;
  runs::ToolInvocation invocation;
  std::function<void(std::string)> done;
  // Set by the first placement (the tool's timeout) or the first wait.
  int64_t deadline_ms = 0;
  // deadline_ms ends a wait for a worker to register, not the call: the
  // first placement (or wait for a slot) sets the call's own deadline.
  bool worker_wait = false;
  int attempts = 0;
  std::set<std::string> tried;  // replicas that failed with UNAVAILABLE
  std::string last_failure;
  bool waiting = false;
  bool finished = false;
  std::function<void()> cancel;  // of the attempt in flight
  int completed_attempt = 0;     // the last attempt the transport answered
  Timers::Id timer = 0;
};

WorkerDispatcher::WorkerDispatcher(ToolRegistry* registry,
                                   WorkerTransport* transport,
                                   const Clock* clock, Timers* timers,
                                   DispatcherOptions options)
    : registry_(registry),
      transport_(transport),
      clock_(clock),
      timers_(timers),
      options_(options) {
  registry_->set_capacity_listener([this] { OnCapacity(); });
}

WorkerDispatcher::~WorkerDispatcher() {
  Shutdown();
  registry_->set_capacity_listener(nullptr);
  // Transport callbacks refer to this dispatcher.
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](int* in_flight) { return *in_flight == 0; }, &attempts_in_flight_));
}

bool WorkerDispatcher::Handles(absl::string_view tool_name) const {
  return registry_->Serves(tool_name);
}

std::optional<v1::FunctionDefinition> WorkerDispatcher::Definition(
    absl::string_view tool_name) const {
  std::optional<v1::WorkerTool> tool = registry_->Tool(tool_name);
  if (!tool.has_value()) return std::nullopt;
  return tool->function();
}

size_t WorkerDispatcher::waiting() const {
  absl::MutexLock lock(&mu_);
  return waiting_.size();
}

void WorkerDispatcher::Invoke(const runs::ToolCallContext& context,
                              const runs::ToolInvocation& invocation,
                              std::function<void(std::string)> done) {
  auto call = std::make_shared<Call>();
  call->context = context;
  call->invocation = invocation;
  call->done = std::move(done);
  std::string problem;
  if (!NormalizeArguments(&call->invocation.arguments, &problem)) {
    // The model's mistake: it reads the error and can call again.
    Deliver(call, ErrorOutput("invalid_arguments", invocation.name,
                              absl::StrCat(problem, "; call ", invocation.name,
                                           " again with a JSON object")));
    return;
  }
  bool accepted = false;
  {
    absl::MutexLock lock(&mu_);
    accepted = !shut_down_;
    if (accepted) by_run_[context.run_id].push_back(call);
  }
  if (!accepted) {
    Deliver(call, ErrorOutput("cancelled", invocation.name,
                              "the gateway is shutting down"));
    return;
  }
  TryStart(call);
}

void WorkerDispatcher::TryStart(const CallPtr& call) {
  while (TryStartOnce(call)) {
  }
}

bool WorkerDispatcher::TryStartOnce(const CallPtr& call) {
  const std::string& tool = call->invocation.name;
  uint64_t epoch = 0;
  {
    absl::MutexLock lock(&mu_);
    epoch = capacity_epoch_;
  }
  WorkerSlot slot;
  const AcquireResult result = registry_->Acquire(tool, call->tried, &slot);
  // The tool's timeout bounds the wait for a free slot too.
  std::optional<v1::WorkerTool> busy_tool;
  if (result == AcquireResult::kAllBusy) busy_tool = registry_->Tool(tool);
  const int64_t now = clock_->NowMillis();
  bool start = false;
  bool release = false;
  std::string failure;
  {
    absl::MutexLock lock(&mu_);
    if (call->finished) {
      release = result == AcquireResult::kAcquired;
    } else if (result == AcquireResult::kAcquired) {
      if (call->deadline_ms == 0 || call->worker_wait) {
        call->deadline_ms = now + slot.timeout_ms;
        call->worker_wait = false;
        if (call->timer != 0) {
          timers_->Cancel(call->timer);
          call->timer = 0;
        }
      }
      if (now < call->deadline_ms) {
        ++call->attempts;
        ++attempts_in_flight_;
        start = true;
      } else {
        release = true;
        failure = ErrorOutput(
            "timeout", tool,
            absl::StrCat("no replica of ", tool, " had a free slot in time"));
      }
    } else if (capacity_epoch_ != epoch) {
      // Capacity changed after Acquire looked: OnCapacity may already have
      // run without this call in the queue, so look again instead of
      // waiting for a wake-up that will not come.
      return true;
    } else {
      const bool busy = result == AcquireResult::kAllBusy;
      const bool may_wait =
          busy || (call->attempts == 0 && options_.no_worker_wait_ms > 0);
      if (may_wait && (call->deadline_ms == 0 || (busy && call->worker_wait))) {
        if (call->timer != 0) {
          timers_->Cancel(call->timer);
          call->timer = 0;
        }
        call->worker_wait = !busy;
        call->deadline_ms =
            now + (busy && busy_tool.has_value() ? busy_tool->timeout_ms()
                                                 : options_.no_worker_wait_ms);
      }
      if (may_wait && now < call->deadline_ms && !shut_down_) {
        call->waiting = true;
        waiting_.push_back(call);
        if (call->timer == 0) {
          std::weak_ptr<Call> weak = call;
          call->timer = timers_->ScheduleAt(call->deadline_ms, [this, weak] {
            if (CallPtr locked = weak.lock()) OnDeadline(locked);
          });
        }
      } else if (busy) {
        failure = ErrorOutput(
            "timeout", tool,
            absl::StrCat("no replica of ", tool, " had a free slot in time"));
      } else if (call->attempts > 0) {
        failure = ErrorOutput(
            "unavailable", tool,
            absl::StrCat(tool, " is unavailable (", call->last_failure,
                         ") and no other replica is live to retry on"));
      } else {
        failure =
            ErrorOutput("no_worker", tool,
                        absl::StrCat("no live tool worker serves ", tool));
      }
    }
    if (!failure.empty() && !FinishLocked(call)) failure.clear();
  }
  if (release) registry_->Release(slot, CallOutcome::kOther);
  if (!failure.empty()) Deliver(call, std::move(failure));
  if (!start) return false;

  v1::InvokeToolRequest request;
  request.set_idempotency_key(
      absl::StrCat(call->context.run_id, ":", call->invocation.call_id));
  request.set_tool_name(tool);
  request.set_arguments(call->invocation.arguments);
  request.set_tool_call_id(call->invocation.call_id);
  request.set_run_id(call->context.run_id);
  request.set_thread_id(call->context.thread_id);
  request.set_assistant_id(call->context.assistant_id);
  const int attempt = call->attempts;
  std::function<void()> cancel = transport_->Invoke(
      slot.endpoint, request, call->deadline_ms,
      [this, call, slot, attempt](const absl::Status& status,
                                  std::string output) {
        OnResult(call, slot, attempt, status, std::move(output));
      });
  bool cancel_now = false;
  {
    absl::MutexLock lock(&mu_);
    if (call->finished) {
      cancel_now = true;
    } else if (call->attempts == attempt && call->completed_attempt < attempt) {
      // Still in flight (the transport may have answered already).
      call->cancel = cancel;
    }
  }
  if (cancel_now) cancel();
  return false;
}

void WorkerDispatcher::OnResult(const CallPtr& call, const WorkerSlot& slot,
                                uint64_t attempt, const absl::Status& status,
                                std::string output) {
  registry_->Release(slot, status.ok() ? CallOutcome::kOk
                           : status.code() == absl::StatusCode::kUnavailable
                               ? CallOutcome::kUnavailable
                               : CallOutcome::kOther);
  // Counted until the very end: the destructor waits for it, and a retry
  // below still uses this dispatcher.
  auto in_flight = absl::MakeCleanup([this] {
    absl::MutexLock lock(&mu_);
    --attempts_in_flight_;
  });
  const std::string& tool = call->invocation.name;
  bool retry = false;
  std::string result;
  {
    absl::MutexLock lock(&mu_);
    call->completed_attempt =
        std::max(call->completed_attempt, static_cast<int>(attempt));
    if (static_cast<uint64_t>(call->attempts) == attempt) {
      call->cancel = nullptr;
    }
    if (call->finished) return;
    if (status.ok()) {
      if (output.size() > options_.max_output_bytes) {
        result = ErrorOutput("invalid_output", tool,
                             absl::StrCat(tool, " returned ", output.size(),
                                          " bytes; outputs are limited to ",
                                          options_.max_output_bytes, " bytes"));
      } else {
        result = std::move(output);
      }
    } else {
      const std::string message(status.message());
      switch (status.code()) {
        case absl::StatusCode::kUnavailable: {
          const bool not_started = ErrorReason(status) == kCallNotStarted;
          if ((not_started || slot.idempotent) &&
              call->attempts < options_.max_attempts &&
              clock_->NowMillis() < call->deadline_ms) {
            call->tried.insert(slot.worker_id);
            call->last_failure = message;
            retry = true;
          } else if (!not_started && !slot.idempotent) {
            result = ErrorOutput(
                "unavailable", tool,
                absl::StrCat("the worker running ", tool,
                             " failed during the call (", message,
                             "); the tool is not idempotent, so it was not "
                             "retried and may or may not have run"));
          } else {
            result = ErrorOutput(
                "unavailable", tool,
                absl::StrCat(tool, " is unavailable (", message, ")"));
          }
          break;
        }
        case absl::StatusCode::kDeadlineExceeded:
          result = ErrorOutput("timeout", tool,
                               absl::StrCat(tool, " did not answer within ",
                                            slot.timeout_ms, " ms"));
          break;
        case absl::StatusCode::kCancelled:
          result = ErrorOutput("cancelled", tool, "the call was cancelled");
          break;
        case absl::StatusCode::kInvalidArgument:
          result = ErrorOutput(
              "invalid_arguments", tool,
              absl::StrCat(tool, " refused the arguments: ", message));
          break;
        default:
          result =
              ErrorOutput("worker_error", tool,
                          absl::StrCat(tool, " failed (",
                                       absl::StatusCodeToString(status.code()),
                                       "): ", message));
          break;
      }
    }
    if (!retry && !FinishLocked(call)) return;
  }
  if (retry) {
    TryStart(call);
  } else {
    Deliver(call, std::move(result));
  }
}

void WorkerDispatcher::OnCapacity() {
  std::deque<CallPtr> candidates;
  {
    absl::MutexLock lock(&mu_);
    ++capacity_epoch_;
    if (shut_down_ || waiting_.empty()) return;
    candidates.swap(waiting_);
    for (const CallPtr& call : candidates) call->waiting = false;
  }
  // In order; once a tool has no room, its later calls keep their place.
  std::set<std::string> full;
  for (const CallPtr& call : candidates) {
    if (full.count(call->invocation.name) == 0) {
      TryStart(call);
      absl::MutexLock lock(&mu_);
      // A retry waits for a replica it has not tried yet; later calls may
      // still fit on the ones it excluded.
      if (call->waiting && call->tried.empty()) {
        full.insert(call->invocation.name);
      }
      continue;
    }
    absl::MutexLock lock(&mu_);
    if (!call->finished) {
      call->waiting = true;
      waiting_.push_back(call);
    }
  }
}

void WorkerDispatcher::OnDeadline(const CallPtr& call) {
  std::string failure;
  {
    absl::MutexLock lock(&mu_);
    call->timer = 0;
    if (call->finished || !call->waiting) return;
    const std::string& tool = call->invocation.name;
    failure =
        registry_->Serves(tool)
            ? ErrorOutput("timeout", tool,
                          absl::StrCat("no replica of ", tool,
                                       " had a free slot in time"))
            : ErrorOutput("no_worker", tool,
                          absl::StrCat("no live tool worker serves ", tool));
    if (!FinishLocked(call)) return;
  }
  Deliver(call, std::move(failure));
}

void WorkerDispatcher::CancelRun(absl::string_view run_id) {
  std::vector<CallPtr> calls;
  std::vector<std::function<void()>> cancels;
  {
    absl::MutexLock lock(&mu_);
    auto it = by_run_.find(std::string(run_id));
    if (it == by_run_.end()) return;
    calls = it->second;
    for (const CallPtr& call : calls) {
      if (call->cancel) cancels.push_back(call->cancel);
      FinishLocked(call);
    }
  }
  for (auto& cancel : cancels) cancel();
  for (const CallPtr& call : calls) {
    Deliver(call, ErrorOutput("cancelled", call->invocation.name,
                              "the run no longer waits for this call"));
  }
}

void WorkerDispatcher::Shutdown() {
  std::vector<std::string> runs;
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    for (const auto& [run_id, calls] : by_run_) runs.push_back(run_id);
  }
  for (const std::string& run_id : runs) CancelRun(run_id);
}

bool WorkerDispatcher::FinishLocked(const CallPtr& call) {
  if (call->finished) return false;
  call->finished = true;
  // The attempt's handle refers back to the call: break the cycle.
  call->cancel = nullptr;
  if (call->waiting) {
    call->waiting = false;
    waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), call),
                   waiting_.end());
  }
  if (call->timer != 0) {
    timers_->Cancel(call->timer);
    call->timer = 0;
  }
  auto it = by_run_.find(call->context.run_id);
  if (it != by_run_.end()) {
    auto& calls = it->second;
    calls.erase(std::remove(calls.begin(), calls.end(), call), calls.end());
    if (calls.empty()) by_run_.erase(it);
  }
  return true;
}

void WorkerDispatcher::Deliver(const CallPtr& call, std::string output) {
  std::function<void(std::string)> done = std::move(call->done);
  call->done = nullptr;
  if (done) done(std::move(output));
}

}  // namespace assistants::tool_workers
