// Fakes of the run engine's seams for tests/runs: a ScriptedProvider that
// plays one scripted reply per model turn (and records the turns it got),
// and a FakeDispatcher that serves a configurable set of tools.
#ifndef TESTS_RUNS_ENGINE_FAKES_H_
#define TESTS_RUNS_ENGINE_FAKES_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/runs/tool_dispatcher.h"
#include "upstream/provider.h"

namespace assistants::runs::testing {

// --- Provider events ---

inline upstream::ProviderEvent TextDelta(std::string text) {
  upstream::ProviderEvent event;
  event.type = upstream::ProviderEvent::Type::kTextDelta;
  event.text = std::move(text);
  return event;
}

inline upstream::ProviderEvent UsageEvent(int64_t prompt, int64_t completion) {
  upstream::ProviderEvent event;
  event.type = upstream::ProviderEvent::Type::kUsage;
  event.usage.set_prompt_tokens(prompt);
  event.usage.set_completion_tokens(completion);
  event.usage.set_total_tokens(prompt + completion);
  return event;
}

inline upstream::ProviderEvent FinishedEvent(upstream::FinishReason reason) {
  upstream::ProviderEvent event;
  event.type = upstream::ProviderEvent::Type::kFinished;
  event.finish_reason = reason;
  return event;
}

// A function call the model makes: its name and its arguments as streamed.
struct FnCall {
  std::string name;
  std::vector<std::string> fragments;
};

// Started, argument deltas, then done (with the whole arguments) for one
// call at `index`.
inline std::vector<upstream::ProviderEvent> CallEvents(int index,
                                                       const FnCall& call) {
  using Type = upstream::ProviderEvent::Type;
  std::vector<upstream::ProviderEvent> events;
  upstream::ProviderEvent started;
  started.type = Type::kToolCallStarted;
  started.index = index;
  started.call_id = "upstream_call_" + std::to_string(index);
  started.name = call.name;
  events.push_back(started);
  std::string all;
  for (const std::string& fragment : call.fragments) {
    upstream::ProviderEvent delta;
    delta.type = Type::kToolCallArgumentsDelta;
    delta.index = index;
    delta.call_id = started.call_id;
    delta.text = fragment;
    all += fragment;
    events.push_back(delta);
  }
  upstream::ProviderEvent done;
  done.type = Type::kToolCallDone;
  done.index = index;
  done.call_id = started.call_id;
  done.name = call.name;
  done.text = all;
  events.push_back(done);
  return events;
}

// --- Scripted replies ---

struct Reply {
  // Played as soon as the turn starts.
  std::vector<upstream::ProviderEvent> events;
  // After `events`, wait for ScriptedProvider::Release (or Cancel).
  bool hang = false;
  // Played by Release.
  std::vector<upstream::ProviderEvent> after_release;
  // OnDone's error (none: a good turn).
  std::optional<upstream::TurnError> error;
  // Play on a thread of its own instead of inside StreamTurn.
  bool threaded = false;
  // Cancel() is recorded but does not end the turn (a slow upstream): the
  // turn ends at Release.
  bool ignore_cancel = false;

  Reply& Hang() {
    hang = true;
    return *this;
  }
  Reply& Threaded() {
    threaded = true;
    return *this;
  }
};

// A text answer in `parts`, then usage and kStop.
inline Reply TextReply(const std::vector<std::string>& parts,
                       int64_t prompt = 10, int64_t completion = 5) {
  Reply reply;
  for (const std::string& part : parts) reply.events.push_back(TextDelta(part));
  reply.events.push_back(UsageEvent(prompt, completion));
  reply.events.push_back(FinishedEvent(upstream::FinishReason::kStop));
  return reply;
}

// Function calls (in parallel when several), then usage and kToolCalls.
inline Reply ToolReply(const std::vector<FnCall>& calls, int64_t prompt = 10,
                       int64_t completion = 5) {
  Reply reply;
  for (size_t i = 0; i < calls.size(); ++i) {
    for (auto& event : CallEvents(static_cast<int>(i), calls[i])) {
      reply.events.push_back(std::move(event));
    }
  }
  reply.events.push_back(UsageEvent(prompt, completion));
  reply.events.push_back(FinishedEvent(upstream::FinishReason::kToolCalls));
  return reply;
}

inline Reply ErrorReply(std::vector<upstream::ProviderEvent> events,
                        absl::Status status, std::string run_error_code) {
  Reply reply;
  reply.events = std::move(events);
  reply.error =
      upstream::TurnError{std::move(status), std::move(run_error_code)};
  return reply;
}

// Each StreamTurn records its Turn and plays the next scripted Reply. A turn
// without a scripted reply fails (server_error "no scripted reply").
class ScriptedProvider : public upstream::Provider {
 public:
  ~ScriptedProvider() override { JoinThreads(); }

  void Add(Reply reply) {
    absl::MutexLock lock(&mu_);
    script_.push_back(std::move(reply));
  }

  std::unique_ptr<upstream::TurnCall> StreamTurn(
      const upstream::Turn& turn,
      std::shared_ptr<upstream::TurnObserver> observer) override {
    auto call = std::make_shared<Call>();
    {
      absl::MutexLock lock(&mu_);
      turns_.push_back(turn);
      if (script_.empty()) {
        call->reply.error = upstream::TurnError{
            absl::InternalError("no scripted reply"), "server_error"};
      } else {
        call->reply = std::move(script_.front());
        script_.pop_front();
      }
      call->observer = std::move(observer);
      calls_.push_back(call);
      if (call->reply.threaded) {
        threads_.emplace_back([call] { Play(*call); });
        return std::make_unique<FakeTurnCall>(call);
      }
    }
    Play(*call);
    return std::make_unique<FakeTurnCall>(call);
  }

  int calls() const {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(turns_.size());
  }
  upstream::Turn turn(int i) const {
    absl::MutexLock lock(&mu_);
    return turns_.at(static_cast<size_t>(i));
  }
  bool cancelled(int i) const {
    std::shared_ptr<Call> call = GetCall(i);
    absl::MutexLock lock(&call->mu);
    return call->cancelled;
  }
  // Whether call i delivered OnDone.
  bool done(int i) const {
    std::shared_ptr<Call> call = GetCall(i);
    absl::MutexLock lock(&call->mu);
    return call->done;
  }

  // Blocks (bounded) until StreamTurn was called `n` times.
  bool WaitForCalls(int n, absl::Duration timeout = absl::Seconds(5)) const {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return static_cast<int>(turns_.size()) >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }

  // Ends hanging call i: plays its after_release events, then OnDone.
  // False when it had already ended (cancelled).
  bool Release(int i) {
    std::shared_ptr<Call> call = GetCall(i);
    absl::MutexLock lock(&call->mu);
    if (call->done) return false;
    for (const auto& event : call->reply.after_release) {
      call->observer->OnEvent(event);
    }
    FinishLocked(*call);
    return true;
  }

  void JoinThreads() {
    std::vector<std::thread> threads;
    {
      absl::MutexLock lock(&mu_);
      threads.swap(threads_);
    }
    for (std::thread& thread : threads) thread.join();
  }

 private:
  struct Call {
    absl::Mutex mu;
    Reply reply;
    std::shared_ptr<upstream::TurnObserver> observer ABSL_GUARDED_BY(mu);
    bool done ABSL_GUARDED_BY(mu) = false;
    bool cancelled ABSL_GUARDED_BY(mu) = false;
  };

  class FakeTurnCall : public upstream::TurnCall {
   public:
    explicit FakeTurnCall(std::shared_ptr<Call> call)
        : call_(std::move(call)) {}
    void Cancel() override {
      absl::MutexLock lock(&call_->mu);
      call_->cancelled = true;
      if (call_->done || call_->reply.ignore_cancel) return;
      call_->done = true;
      // Delivered under the call's lock, so no event follows OnDone.
      call_->observer->OnDone(upstream::TurnError{
          absl::CancelledError("turn cancelled"), "server_error"});
      call_->observer.reset();
    }

   private:
    std::shared_ptr<Call> call_;
  };

  static void Play(Call& call) {
    absl::MutexLock lock(&call.mu);
    for (const auto& event : call.reply.events) {
      if (call.done) return;
      call.observer->OnEvent(event);
    }
    if (call.reply.hang || call.done) return;
    FinishLocked(call);
  }

  static void FinishLocked(Call& call) ABSL_EXCLUSIVE_LOCKS_REQUIRED(call.mu) {
    if (call.done) return;
    call.done = true;
    call.observer->OnDone(call.reply.error);
    call.observer.reset();
  }

  std::shared_ptr<Call> GetCall(int i) const {
    absl::MutexLock lock(&mu_);
    return calls_.at(static_cast<size_t>(i));
  }

  mutable absl::Mutex mu_;
  std::deque<Reply> script_ ABSL_GUARDED_BY(mu_);
  std::vector<upstream::Turn> turns_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Call>> calls_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

// Serves the tools it was told to; answers at once, or when released.
class FakeDispatcher : public ToolDispatcher {
 public:
  struct Invocation {
    ToolCallContext context;
    ToolInvocation invocation;
  };

  void Serve(const std::string& tool, std::string output) {
    absl::MutexLock lock(&mu_);
    outputs_[tool] = std::move(output);
  }
  // While held, outputs wait for ReleaseAll.
  void set_hold(bool hold) {
    absl::MutexLock lock(&mu_);
    hold_ = hold;
  }

  // The worker goes away (Handles() turns false; calls still answer).
  void Unserve(const std::string& tool) {
    absl::MutexLock lock(&mu_);
    unserved_.insert(tool);
  }
  // Runs inside Invoke, before anything else (e.g. to read the store).
  void set_on_invoke(
      std::function<void(const ToolCallContext&, const ToolInvocation&)>
          on_invoke) {
    absl::MutexLock lock(&mu_);
    on_invoke_ = std::move(on_invoke);
  }

  bool Handles(absl::string_view tool_name) const override {
    absl::MutexLock lock(&mu_);
    return outputs_.contains(tool_name) &&
           !unserved_.contains(std::string(tool_name));
  }

  void CancelRun(absl::string_view run_id) override {
    absl::MutexLock lock(&mu_);
    cancelled_runs_.push_back(std::string(run_id));
  }

  std::vector<std::string> cancelled_runs() const {
    absl::MutexLock lock(&mu_);
    return cancelled_runs_;
  }

  void Invoke(const ToolCallContext& context, const ToolInvocation& invocation,
              std::function<void(std::string)> done) override {
    std::function<void(const ToolCallContext&, const ToolInvocation&)>
        on_invoke;
    {
      absl::MutexLock lock(&mu_);
      on_invoke = on_invoke_;
    }
    if (on_invoke) on_invoke(context, invocation);
    std::string output;
    {
      absl::MutexLock lock(&mu_);
      invocations_.push_back({context, invocation});
      auto it = outputs_.find(invocation.name);
      output = it == outputs_.end() ? "{\"error\":\"not served\"}" : it->second;
      if (hold_) {
        held_.emplace_back(std::move(output), std::move(done));
        return;
      }
    }
    done(std::move(output));
  }

  // Answers every held call; returns how many.
  int ReleaseAll() {
    std::vector<std::pair<std::string, std::function<void(std::string)>>> held;
    {
      absl::MutexLock lock(&mu_);
      held.swap(held_);
    }
    for (auto& [output, done] : held) done(output);
    return static_cast<int>(held.size());
  }

  std::vector<Invocation> invocations() const {
    absl::MutexLock lock(&mu_);
    return invocations_;
  }

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::string> outputs_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> unserved_ ABSL_GUARDED_BY(mu_);
  std::function<void(const ToolCallContext&, const ToolInvocation&)> on_invoke_
      ABSL_GUARDED_BY(mu_);
  std::vector<std::string> cancelled_runs_ ABSL_GUARDED_BY(mu_);
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::pair<std::string, std::function<void(std::string)>>> held_
      ABSL_GUARDED_BY(mu_);
  std::vector<Invocation> invocations_ ABSL_GUARDED_BY(mu_);
};

}  // namespace assistants::runs::testing

#endif  // TESTS_RUNS_ENGINE_FAKES_H_
