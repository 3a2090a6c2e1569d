// Unit tests of the worker dispatcher (tool_workers/dispatcher.h) over a real
// ToolRegistry and a fake WorkerTransport that records each InvokeTool call
// and lets the test complete it. Time is a FakeClock; deadlines fire through
// ManualTimers::RunDue(). Every test counts `done` invocations: each call
// must be answered exactly once, and every failure must be a JSON output
// {"error", "error_type", "tool"}.
#include "tool_workers/dispatcher.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "service/common/clock.h"
#include "service/common/errors.h"
#include "service/common/timers.h"
#include "tool_workers/registry.h"
#include "tool_workers/worker_transport.h"

namespace assistants::tool_workers {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr char kToken[] = "token";

// Records every call; the test completes them by index.
class FakeTransport : public WorkerTransport {
 public:
  struct Call {
    std::string endpoint;
    v1::InvokeToolRequest request;
    int64_t deadline_ms = 0;
    Done done;
    bool completed = false;
    std::shared_ptr<std::atomic<int>> cancels =
        std::make_shared<std::atomic<int>>(0);
  };

  std::function<void()> Invoke(const std::string& endpoint,
                               const v1::InvokeToolRequest& request,
                               int64_t deadline_ms, Done done) override {
    std::function<void(size_t)> hook;
    size_t index = 0;
    std::shared_ptr<std::atomic<int>> cancels;
    {
      absl::MutexLock lock(&mu_);
      Call& call = calls_.emplace_back();
      call.endpoint = endpoint;
      call.request = request;
      call.deadline_ms = deadline_ms;
      call.done = std::move(done);
      cancels = call.cancels;
      index = calls_.size() - 1;
      hook = on_invoke_;
    }
    if (hook) hook(index);
    return [cancels] { ++*cancels; };
  }

  // Runs inside Invoke (before it returns), e.g. to complete at once.
  void set_on_invoke(std::function<void(size_t)> hook) {
    absl::MutexLock lock(&mu_);
    on_invoke_ = std::move(hook);
  }

  size_t size() const {
    absl::MutexLock lock(&mu_);
    return calls_.size();
  }
  // Calls are never removed, so references stay valid.
  const Call& call(size_t i) const {
    absl::MutexLock lock(&mu_);
    return calls_.at(i);
  }
  int cancels(size_t i) const { return call(i).cancels->load(); }
  // Indexes of calls not completed yet.
  std::vector<size_t> Open() const {
    absl::MutexLock lock(&mu_);
    std::vector<size_t> open;
    for (size_t i = 0; i < calls_.size(); ++i) {
      if (!calls_[i].completed) open.push_back(i);
    }
    return open;
  }

  void Complete(size_t i, const absl::Status& status, std::string output = "") {
    Done done;
    {
      absl::MutexLock lock(&mu_);
      Call& call = calls_.at(i);
      if (call.completed) {
        ADD_FAILURE() << "transport call " << i << " completed twice";
        return;
      }
      call.completed = true;
      done = std::move(call.done);
    }
    done(status, std::move(output));
  }
  void Succeed(size_t i, std::string output) {
    Complete(i, absl::OkStatus(), std::move(output));
  }
  void CompleteAll(const absl::Status& status) {
    for (size_t i : Open()) Complete(i, status);
  }

 private:
  mutable absl::Mutex mu_;
  std::deque<Call> calls_ ABSL_GUARDED_BY(mu_);
  std::function<void(size_t)> on_invoke_ ABSL_GUARDED_BY(mu_);
};

// What a call's `done` received.
struct Outcome {
  std::vector<std::string> outputs;
  int count() const { return static_cast<int>(outputs.size()); }
  // The one output (a failure when there is not exactly one).
  std::string output() const {
    EXPECT_EQ(outputs.size(), 1u);
    return outputs.empty() ? "" : outputs.back();
  }
};
using OutcomePtr = std::shared_ptr<Outcome>;

// Checks that `output` is {"error": non-empty, "error_type": type,
// "tool": tool} and nothing else; returns the message.
std::string ErrorMessage(const std::string& output, const std::string& type,
                         const std::string& tool) {
  const nlohmann::json json = nlohmann::json::parse(output, nullptr, false);
  EXPECT_TRUE(json.is_object()) << output;
  if (!json.is_object()) return "";
  EXPECT_EQ(json.size(), 3u) << output;
  EXPECT_EQ(json.value("error_type", std::string()), type) << output;
  EXPECT_EQ(json.value("tool", std::string()), tool) << output;
  EXPECT_TRUE(json.contains("error") && json["error"].is_string()) << output;
  const std::string message = json.value("error", std::string());
  EXPECT_FALSE(message.empty()) << output;
  return message;
}

v1::WorkerTool MakeTool(const std::string& name, bool idempotent = false,
                        int32_t timeout_ms = 1000,
                        int32_t max_concurrency = 0) {
  v1::WorkerTool tool;
  tool.mutable_function()->set_name(name);
  tool.mutable_function()->set_description("Tool " + name + ".");
  tool.set_idempotent(idempotent);
  tool.set_timeout_ms(timeout_ms);
  tool.set_max_concurrency(max_concurrency);
  return tool;
}

RegistryOptions Options() {
  RegistryOptions options;
  options.registration_token = kToken;
  return options;
}

class DispatcherTest : public ::testing::Test {
 protected:
  DispatcherTest() : registry_(Options(), &clock_), timers_(&clock_) {}

  ~DispatcherTest() override {
    if (dispatcher_ == nullptr) return;
    dispatcher_->Shutdown();
    // As gRPC does after a cancel; the destructor waits for every call.
    transport_.CompleteAll(absl::CancelledError("cancelled by the test"));
    dispatcher_.reset();
  }

  void Start(DispatcherOptions options = {}) {
    dispatcher_ = std::make_unique<WorkerDispatcher>(
        &registry_, &transport_, &clock_, &timers_, options);
  }

  // Registers replica `id` on 127.0.0.1:`port` with a long lease.
  void AddWorker(const std::string& id, int port,
                 std::vector<v1::WorkerTool> tools) {
    v1::RegisterWorkerRequest request;
    request.set_worker_id(id);
    request.set_endpoint(Endpoint(port));
    for (v1::WorkerTool& tool : tools) *request.add_tools() = std::move(tool);
    request.set_lease_ttl_ms(300000);
    auto registered = registry_.Register(kToken, request);
    ASSERT_TRUE(registered.ok()) << registered.status();
    leases_[id] = registered->lease_id();
  }

  static std::string Endpoint(int port) {
    return absl::StrCat("127.0.0.1:", port);
  }

  OutcomePtr Invoke(const std::string& tool, const std::string& call_id,
                    const std::string& arguments = "{}",
                    const std::string& run_id = "run_1") {
    auto outcome = std::make_shared<Outcome>();
    dispatcher_->Invoke(runs::ToolCallContext{run_id, "thread_1", "asst_1"},
                        runs::ToolInvocation{call_id, tool, arguments},
                        [outcome](std::string output) {
                          outcome->outputs.push_back(std::move(output));
                        });
    return outcome;
  }

  void Advance(int64_t ms) { clock_.Advance(std::chrono::milliseconds(ms)); }
  int64_t Now() const { return clock_.NowMillis(); }

  int InFlight(const std::string& worker_id) const {
    const v1::ListWorkersResponse list = registry_.ListWorkers();
    for (const v1::Worker& worker : list.workers()) {
      if (worker.worker_id() == worker_id) return worker.in_flight();
    }
    return -1;
  }

  FakeClock clock_;
  ToolRegistry registry_;
  ManualTimers timers_;
  FakeTransport transport_;
  std::map<std::string, std::string> leases_;
  std::unique_ptr<WorkerDispatcher> dispatcher_;
};

// --- The request ---

TEST_F(DispatcherTest, SendsTheCallToTheWorker) {
  AddWorker("calc-1", 7001, {MakeTool("add", false, /*timeout_ms=*/2500)});
  Start();
  const int64_t start = Now();
  // Arguments go as the model wrote them, spacing included.
  OutcomePtr outcome = Invoke("add", "call_9", R"({ "a": 1, "b": 2 })");
  ASSERT_EQ(transport_.size(), 1u);
  const FakeTransport::Call& call = transport_.call(0);
  EXPECT_EQ(call.endpoint, "127.0.0.1:7001");
  EXPECT_EQ(call.request.idempotency_key(), "run_1:call_9");
  EXPECT_EQ(call.request.tool_name(), "add");
  EXPECT_EQ(call.request.arguments(), R"({ "a": 1, "b": 2 })");
  EXPECT_EQ(call.request.tool_call_id(), "call_9");
  EXPECT_EQ(call.request.run_id(), "run_1");
  EXPECT_EQ(call.request.thread_id(), "thread_1");
  EXPECT_EQ(call.request.assistant_id(), "asst_1");
  EXPECT_EQ(call.deadline_ms, start + 2500);
  EXPECT_EQ(outcome->count(), 0);
  EXPECT_EQ(InFlight("calc-1"), 1);

  transport_.Succeed(0, R"({"sum": 3})");
  EXPECT_EQ(outcome->output(), R"({"sum": 3})");
  EXPECT_EQ(InFlight("calc-1"), 0);
  EXPECT_EQ(transport_.cancels(0), 0);
}

TEST_F(DispatcherTest, OutputNeedNotBeJson) {
  AddWorker("w", 7001, {MakeTool("echo")});
  Start();
  OutcomePtr outcome = Invoke("echo", "call_1");
  transport_.Succeed(0, "plain text");
  EXPECT_EQ(outcome->output(), "plain text");
}

TEST_F(DispatcherTest, EmptyArgumentsBecomeAnEmptyObject) {
  AddWorker("w", 7001, {MakeTool("now")});
  Start();
  OutcomePtr outcome = Invoke("now", "call_1", "");
  ASSERT_EQ(transport_.size(), 1u);
  EXPECT_EQ(transport_.call(0).request.arguments(), "{}");
  transport_.Succeed(0, "{}");
  EXPECT_EQ(outcome->count(), 1);
}

class InvalidArgumentsTest : public DispatcherTest,
                             public ::testing::WithParamInterface<const char*> {
};

TEST_P(InvalidArgumentsTest, AnsweredAtOnceWithoutCallingTheWorker) {
  AddWorker("w", 7001, {MakeTool("add")});
  Start();
  OutcomePtr outcome = Invoke("add", "call_1", GetParam());
  ASSERT_EQ(outcome->count(), 1);
  EXPECT_THAT(ErrorMessage(outcome->output(), "invalid_arguments", "add"),
              HasSubstr("JSON object"));
  EXPECT_EQ(transport_.size(), 0u);
  EXPECT_EQ(dispatcher_->waiting(), 0u);
  EXPECT_EQ(InFlight("w"), 0);
}

INSTANTIATE_TEST_SUITE_P(Arguments, InvalidArgumentsTest,
                         ::testing::Values("{", "not json", "{\"a\": 1,}",
                                           "{\"a\": 1} trailing", "[1, 2]",
                                           "42", "\"text\"", "null", "true",
                                           " ",
                                           // Valid syntax, but a number out
                                           // of range for the parser.
                                           "{\"a\": 1e999}",
                                           // Invalid UTF-8 (quoted in the
                                           // parser's message).
                                           "{\"a\": \"\xff\"}", "\xff"));

// --- Handles / Definition ---

TEST_F(DispatcherTest, HandlesAndDefinitionFollowTheRegistry) {
  Start();
  EXPECT_FALSE(dispatcher_->Handles("add"));
  EXPECT_FALSE(dispatcher_->Definition("add").has_value());

  v1::WorkerTool add = MakeTool("add");
  (*add.mutable_function()->mutable_parameters()->mutable_fields())["type"]
      .set_string_value("object");
  AddWorker("w", 7001, {add});
  EXPECT_TRUE(dispatcher_->Handles("add"));
  EXPECT_FALSE(dispatcher_->Handles("sub"));
  std::optional<v1::FunctionDefinition> definition =
      dispatcher_->Definition("add");
  ASSERT_TRUE(definition.has_value());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
      *definition, add.function()));

  v1::UnregisterWorkerRequest unregister;
  unregister.set_worker_id("w");
  unregister.set_lease_id(leases_["w"]);
  ASSERT_TRUE(registry_.Unregister(kToken, unregister).ok());
  EXPECT_FALSE(dispatcher_->Handles("add"));
  EXPECT_FALSE(dispatcher_->Definition("add").has_value());
}

TEST_F(DispatcherTest, HandlesStopsWhenTheLeaseExpires) {
  Start();
  AddWorker("w", 7001, {MakeTool("add")});
  EXPECT_TRUE(dispatcher_->Handles("add"));
  Advance(300000);
  EXPECT_FALSE(dispatcher_->Handles("add"));
}

// --- No worker ---

TEST_F(DispatcherTest, NoWorkerIsAnsweredAtOnce) {
  AddWorker("w", 7001, {MakeTool("mul")});
  Start();  // no_worker_wait_ms = 0
  OutcomePtr outcome = Invoke("add", "call_1");
  ASSERT_EQ(outcome->count(), 1);
  EXPECT_THAT(ErrorMessage(outcome->output(), "no_worker", "add"),
              HasSubstr("add"));
  EXPECT_EQ(transport_.size(), 0u);
  EXPECT_EQ(dispatcher_->waiting(), 0u);
  EXPECT_EQ(timers_.pending(), 0u);
}

TEST_F(DispatcherTest, NoWorkerWaitsForARegistration) {
  DispatcherOptions options;
  options.no_worker_wait_ms = 10000;
  Start(options);
  OutcomePtr outcome = Invoke("add", "call_1", R"({"a":1})");
  EXPECT_EQ(outcome->count(), 0);
  EXPECT_EQ(dispatcher_->waiting(), 1u);
  EXPECT_EQ(transport_.size(), 0u);

  Advance(9000);
  EXPECT_EQ(timers_.RunDue(), 0);
  // The capacity listener starts the call as the worker registers.
  AddWorker("w", 7001, {MakeTool("add", false, /*timeout_ms=*/5000)});
  ASSERT_EQ(transport_.size(), 1u);
  EXPECT_EQ(dispatcher_->waiting(), 0u);
  EXPECT_EQ(transport_.call(0).request.arguments(), R"({"a":1})");
  EXPECT_EQ(transport_.call(0).request.idempotency_key(), "run_1:call_1");
  // The call gets the tool's whole timeout, not what was left of the wait
  // for a worker.
  EXPECT_EQ(transport_.call(0).deadline_ms, Now() + 5000);

  // The end of the wait for a worker does not end the call.
  Advance(1000);
  timers_.RunDue();
  EXPECT_EQ(outcome->count(), 0);
  transport_.Succeed(0, "2");
  EXPECT_EQ(outcome->output(), "2");
}

TEST_F(DispatcherTest, LateWorkerGivesQueuedCallsTheToolsTimeout) {
  DispatcherOptions options;
  options.no_worker_wait_ms = 10000;
  Start(options);
  OutcomePtr first = Invoke("add", "call_1");
  OutcomePtr second = Invoke("add", "call_2");
  Advance(9000);
  // One slot: call_1 runs, call_2 now waits for the slot, for as long as
  // the tool's timeout from here, not for what is left of the wait for a
  // worker.
  AddWorker("w", 7001, {MakeTool("add", false, /*timeout_ms=*/5000, 1)});
  const int64_t registered = Now();
  ASSERT_EQ(transport_.size(), 1u);
  EXPECT_EQ(dispatcher_->waiting(), 1u);
  Advance(1000);  // the end of the wait for a worker
  timers_.RunDue();
  EXPECT_EQ(second->count(), 0);
  EXPECT_EQ(dispatcher_->waiting(), 1u);
  transport_.Succeed(0, "1");
  ASSERT_EQ(transport_.size(), 2u);
  EXPECT_EQ(transport_.call(1).deadline_ms, registered + 5000);
  transport_.Succeed(1, "2");
  EXPECT_EQ(first->output(), "1");
  EXPECT_EQ(second->output(), "2");
}

TEST_F(DispatcherTest, QueuedCallTimesOutAfterALateWorkersTimeout) {
  DispatcherOptions options;
  options.no_worker_wait_ms = 10000;
  Start(options);
  OutcomePtr first = Invoke("add", "call_1");
  OutcomePtr second = Invoke("add", "call_2");
  Advance(9000);
  AddWorker("w", 7001, {MakeTool("add", false, /*timeout_ms=*/5000, 1)});
  Advance(4999);
  timers_.RunDue();
  EXPECT_EQ(second->count(), 0);
  Advance(1);
  timers_.RunDue();
  ErrorMessage(second->output(), "timeout", "add");
  EXPECT_EQ(first->count(), 0);
}

TEST_F(DispatcherTest, NoWorkerAnswersAtTheEndOfTheWait) {
  DispatcherOptions options;
  options.no_worker_wait_ms = 10000;
  Start(options);
  OutcomePtr outcome = Invoke("add", "call_1");
  OutcomePtr other = Invoke("mul", "call_2");
  EXPECT_EQ(dispatcher_->waiting(), 2u);
  Advance(9999);
  EXPECT_EQ(timers_.RunDue(), 0);
  EXPECT_EQ(outcome->count(), 0);
  Advance(1);
  timers_.RunDue();
  ASSERT_EQ(outcome->count(), 1);
  ErrorMessage(outcome->output(), "no_worker", "add");
  ErrorMessage(other->output(), "no_worker", "mul");
  EXPECT_EQ(dispatcher_->waiting(), 0u);
  // A worker registering later does not resurrect it.
  AddWorker("w", 7001, {MakeTool("add")});
  EXPECT_EQ(transport_.size(), 0u);
  EXPECT_EQ(outcome->count(), 1);
}

TEST_F(DispatcherTest, WaitingForAWorkerOnlyStartsCallsOfItsTools) {
  DispatcherOptions options;
  options.no_worker_wait_ms = 10000;
  Start(options);
  OutcomePtr add = Invoke("add", "call_1");
  OutcomePtr mul = Invoke("mul", "call_2");
  AddWorker("w", 7001, {MakeTool("mul")});
  ASSERT_EQ(transport_.size(), 1u);
  EXPECT_EQ(transport_.call(0).request.tool_name(), "mul");
  EXPECT_EQ(dispatcher_->waiting(), 1u);
  AddWorker("v", 7002, {MakeTool("add")});
  ASSERT_EQ(transport_.size(), 2u);
  EXPECT_EQ(transport_.call(1).request.tool_name(), "add");
  EXPECT_EQ(transport_.call(1).endpoint, Endpoint(7002));
  EXPECT_EQ(dispatcher_->waiting(), 0u);
}

// --- Concurrency and balancing ---

TEST_F(DispatcherTest, CallsOverTheCapWaitAndStartInOrder) {
  AddWorker("w", 7001, {MakeTool("add", false, 1000, /*max_concurrency=*/2)});
  Start();
  constexpr int kCalls = 6;
  std::vector<OutcomePtr> outcomes;
  for (int i = 0; i < kCalls; ++i) {
    outcomes.push_back(Invoke("add", absl::StrCat("call_", i)));
  }
  ASSERT_EQ(transport_.size(), 2u);
  EXPECT_EQ(dispatcher_->waiting(), static_cast<size_t>(kCalls - 2));
  EXPECT_EQ(InFlight("w"), 2);

  // Each completion lets the oldest waiting call in.
  std::vector<std::string> started = {
      transport_.call(0).request.tool_call_id(),
      transport_.call(1).request.tool_call_id()};
  for (int done = 0; done < kCalls; ++done) {
    transport_.Succeed(done, absl::StrCat("out_", done));
    const size_t expected_started = std::min(kCalls, done + 3);
    ASSERT_EQ(transport_.size(), expected_started);
    if (started.size() < transport_.size()) {
      started.push_back(transport_.call(started.size()).request.tool_call_id());
    }
    EXPECT_EQ(dispatcher_->waiting(), kCalls - expected_started);
    EXPECT_LE(InFlight("w"), 2);
  }
  EXPECT_THAT(started, ElementsAre("call_0", "call_1", "call_2", "call_3",
                                   "call_4", "call_5"));
  for (int i = 0; i < kCalls; ++i) {
    EXPECT_EQ(outcomes[i]->output(), absl::StrCat("out_", i));
  }
  EXPECT_EQ(InFlight("w"), 0);
}

TEST_F(DispatcherTest, CallsAreBalancedOverReplicas) {
  AddWorker("a", 7001, {MakeTool("add", false, 1000, 2)});
  AddWorker("b", 7002, {MakeTool("add", false, 1000, 2)});
  Start();
  std::vector<OutcomePtr> outcomes;
  for (int i = 0; i < 5; ++i) {
    outcomes.push_back(Invoke("add", absl::StrCat("call_", i)));
  }
  ASSERT_EQ(transport_.size(), 4u);
  std::map<std::string, int> per_endpoint;
  for (size_t i = 0; i < 4; ++i) ++per_endpoint[transport_.call(i).endpoint];
  EXPECT_EQ(per_endpoint[Endpoint(7001)], 2);
  EXPECT_EQ(per_endpoint[Endpoint(7002)], 2);
  EXPECT_EQ(dispatcher_->waiting(), 1u);

  // The waiting call goes where a slot frees.
  size_t on_b = 0;
  while (transport_.call(on_b).endpoint != Endpoint(7002)) ++on_b;
  transport_.Succeed(on_b, "x");
  ASSERT_EQ(transport_.size(), 5u);
  EXPECT_EQ(transport_.call(4).endpoint, Endpoint(7002));
  EXPECT_EQ(transport_.call(4).request.tool_call_id(), "call_4");
  EXPECT_EQ(dispatcher_->waiting(), 0u);
}

TEST_F(DispatcherTest, ToolsHaveSeparateQueues) {
  AddWorker("w", 7001, {MakeTool("slow", false, 1000, 1), MakeTool("fast")});
  Start();
  OutcomePtr slow1 = Invoke("slow", "call_1");
  OutcomePtr slow2 = Invoke("slow", "call_2");
  OutcomePtr fast = Invoke("fast", "call_3");
  ASSERT_EQ(transport_.size(), 2u);
  EXPECT_EQ(transport_.call(1).request.tool_name(), "fast");
  EXPECT_EQ(dispatcher_->waiting(), 1u);
  // A completion of another tool does not start the waiting call.
  transport_.Succeed(1, "f");
  EXPECT_EQ(fast->output(), "f");
  EXPECT_EQ(transport_.size(), 2u);
  EXPECT_EQ(dispatcher_->waiting(), 1u);
  transport_.Succeed(0, "s1");
  ASSERT_EQ(transport_.size(), 3u);
  EXPECT_EQ(transport_.call(2).request.tool_call_id(), "call_2");
}

// --- Deadlines ---

TEST_F(DispatcherTest, WaitingForASlotCountsAgainstTheTimeout) {
  AddWorker("w", 7001, {MakeTool("add", false, /*timeout_ms=*/1000, 1)});
  Start();
  const int64_t start = Now();
  OutcomePtr first = Invoke("add", "call_1");
  OutcomePtr second = Invoke("add", "call_2");
  Advance(300);
  transport_.Succeed(0, "1");
  ASSERT_EQ(transport_.size(), 2u);
  EXPECT_EQ(transport_.call(1).deadline_ms, start + 1000);
  transport_.Succeed(1, "2");
  EXPECT_EQ(second->output(), "2");
}

TEST_F(DispatcherTest, QueuedCallTimesOutWithoutAFreeSlot) {
  AddWorker("w", 7001, {MakeTool("add", false, /*timeout_ms=*/1000, 1)});
  Start();
  OutcomePtr first = Invoke("add", "call_1");
  OutcomePtr second = Invoke("add", "call_2");
  EXPECT_EQ(dispatcher_->waiting(), 1u);
  Advance(999);
  timers_.RunDue();
  EXPECT_EQ(second->count(), 0);
  Advance(1);
  timers_.RunDue();
  ASSERT_EQ(second->count(), 1);
  EXPECT_THAT(ErrorMessage(second->output(), "timeout", "add"),
              HasSubstr("free slot"));
  EXPECT_EQ(dispatcher_->waiting(), 0u);
  EXPECT_EQ(transport_.size(), 1u);
  // The running call still finishes normally, and nothing else starts.
  transport_.Succeed(0, "1");
  EXPECT_EQ(first->output(), "1");
  EXPECT_EQ(transport_.size(), 1u);
  EXPECT_EQ(second->count(), 1);
}

TEST_F(DispatcherTest, DeadlineExceededIsATimeout) {
  AddWorker("w", 7001, {MakeTool("add", false, /*timeout_ms=*/1500)});
  Start();
  OutcomePtr outcome = Invoke("add", "call_1");
  Advance(1500);
  transport_.Complete(0, absl::DeadlineExceededError("deadline exceeded"));
  EXPECT_THAT(ErrorMessage(outcome->output(), "timeout", "add"),
              HasSubstr("1500"));
}

// --- Errors from the worker ---

struct StatusCase {
  std::string name;
  absl::Status status;
  std::string error_type;
  std::string in_message;
};

class WorkerErrorTest : public DispatcherTest,
                        public ::testing::WithParamInterface<StatusCase> {};

TEST_P(WorkerErrorTest, BecomesAJsonOutput) {
  AddWorker("a", 7001, {MakeTool("add")});  // not idempotent
  AddWorker("b", 7002, {MakeTool("add")});
  Start();
  OutcomePtr outcome = Invoke("add", "call_1");
  transport_.Complete(0, GetParam().status);
  ASSERT_EQ(outcome->count(), 1);
  EXPECT_THAT(ErrorMessage(outcome->output(), GetParam().error_type, "add"),
              HasSubstr(GetParam().in_message));
  EXPECT_EQ(transport_.size(), 1u);  // none of these is retried
  EXPECT_EQ(InFlight("a") + InFlight("b"), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Statuses, WorkerErrorTest,
    ::testing::Values(
        StatusCase{"InvalidArgument",
                   absl::InvalidArgumentError("b must be a number"),
                   "invalid_arguments", "b must be a number"},
        StatusCase{"Internal", absl::InternalError("division by zero"),
                   "worker_error", "division by zero"},
        StatusCase{"Unknown", absl::UnknownError("boom"), "worker_error",
                   "boom"},
        // A worker's message is quoted in a JSON output: invalid UTF-8 in it
        // must not break the output (or the gateway).
        StatusCase{"InternalWithInvalidUtf8",
                   absl::InternalError("bad \xff\xfe byte"), "worker_error",
                   "bad "},
        StatusCase{"NotFound", absl::NotFoundError("no such stock"),
                   "worker_error", "no such stock"},
        StatusCase{"PermissionDenied", absl::PermissionDeniedError("nope"),
                   "worker_error", "PERMISSION_DENIED"},
        StatusCase{"DeadlineExceeded", absl::DeadlineExceededError("late"),
                   "timeout", "did not answer"},
        StatusCase{"Cancelled", absl::CancelledError("gone"), "cancelled",
                   "cancelled"},
        StatusCase{"UnavailableNotIdempotent",
                   absl::UnavailableError("connection reset"), "unavailable",
                   "not retried"}),
    [](const ::testing::TestParamInfo<StatusCase>& info) {
      return info.param.name;
    });

TEST_F(DispatcherTest, OversizedOutputIsRefused) {
  AddWorker("w", 7001, {MakeTool("dump")});
  DispatcherOptions options;
  options.max_output_bytes = 10;
  Start(options);
  OutcomePtr fits = Invoke("dump", "call_1");
  OutcomePtr too_big = Invoke("dump", "call_2");
  transport_.Succeed(0, std::string(10, 'x'));
  transport_.Succeed(1, std::string(11, 'x'));
  EXPECT_EQ(fits->output(), std::string(10, 'x'));
  EXPECT_THAT(ErrorMessage(too_big->output(), "invalid_output", "dump"),
              HasSubstr("11 bytes"));
}

// --- Retries ---

TEST_F(DispatcherTest, UnavailableIdempotentCallIsRetriedOnAnotherReplica) {
  AddWorker("a", 7001, {MakeTool("quote", /*idempotent=*/true)});
  AddWorker("b", 7002, {MakeTool("quote", /*idempotent=*/true)});
  Start();
  OutcomePtr outcome = Invoke("quote", "call_1", R"({"ticker":"ACME"})");
  ASSERT_EQ(transport_.size(), 1u);
  const std::string first = transport_.call(0).endpoint;
  transport_.Complete(0, absl::UnavailableError("connection refused"));
  EXPECT_EQ(outcome->count(), 0);
  ASSERT_EQ(transport_.size(), 2u);
  const FakeTransport::Call& retry = transport_.call(1);
  EXPECT_NE(retry.endpoint, first);
  // The same call: same key, arguments and deadline.
  EXPECT_EQ(retry.request.idempotency_key(), "run_1:call_1");
  EXPECT_EQ(retry.request.arguments(), R"({"ticker":"ACME"})");
  EXPECT_EQ(retry.deadline_ms, transport_.call(0).deadline_ms);
  transport_.Succeed(1, R"({"price":42})");
  EXPECT_EQ(outcome->output(), R"({"price":42})");
  EXPECT_EQ(transport_.size(), 2u);
  EXPECT_EQ(InFlight("a") + InFlight("b"), 0);
}

TEST_F(DispatcherTest, RetryIsTriedOnlyOnceOnEachReplica) {
  AddWorker("a", 7001, {MakeTool("quote", true)});
  AddWorker("b", 7002, {MakeTool("quote", true)});
  Start();
  OutcomePtr outcome = Invoke("quote", "call_1");
  transport_.Complete(0, absl::UnavailableError("down"));
  ASSERT_EQ(transport_.size(), 2u);
  transport_.Complete(1, absl::UnavailableError("down too"));
  // Both tried: no third attempt, though max_attempts is 3.
  EXPECT_EQ(transport_.size(), 2u);
  EXPECT_THAT(ErrorMessage(outcome->output(), "unavailable", "quote"),
              HasSubstr("down too"));
}

TEST_F(DispatcherTest, UnavailableNonIdempotentCallIsNotRetried) {
  AddWorker("a", 7001, {MakeTool("pay")});
  AddWorker("b", 7002, {MakeTool("pay")});
  Start();
  OutcomePtr outcome = Invoke("pay", "call_1");
  transport_.Complete(0, absl::UnavailableError("connection reset"));
  EXPECT_EQ(transport_.size(), 1u);
  const std::string message =
      ErrorMessage(outcome->output(), "unavailable", "pay");
  EXPECT_THAT(message, HasSubstr("not retried"));
  EXPECT_THAT(message, HasSubstr("connection reset"));
}

TEST_F(DispatcherTest, CallNotStartedIsRetriedEvenIfNotIdempotent) {
  AddWorker("a", 7001, {MakeTool("pay")});
  AddWorker("b", 7002, {MakeTool("pay")});
  Start();
  OutcomePtr outcome = Invoke("pay", "call_1");
  const std::string first = transport_.call(0).endpoint;
  transport_.Complete(0, MakeError(absl::StatusCode::kUnavailable,
                                   "CALL_NOT_STARTED", "draining"));
  ASSERT_EQ(transport_.size(), 2u);
  EXPECT_NE(transport_.call(1).endpoint, first);
  EXPECT_EQ(outcome->count(), 0);
  transport_.Succeed(1, "paid");
  EXPECT_EQ(outcome->output(), "paid");
}

TEST_F(DispatcherTest, OtherReasonsDoNotMakeANonIdempotentCallRetryable) {
  AddWorker("a", 7001, {MakeTool("pay")});
  AddWorker("b", 7002, {MakeTool("pay")});
  Start();
  OutcomePtr outcome = Invoke("pay", "call_1");
  transport_.Complete(0, MakeError(absl::StatusCode::kUnavailable,
                                   "WORKER_OVERLOADED", "busy"));
  EXPECT_EQ(transport_.size(), 1u);
  ErrorMessage(outcome->output(), "unavailable", "pay");
}

TEST_F(DispatcherTest, MaxAttemptsIsRespected) {
  for (int port = 7001; port <= 7004; ++port) {
    AddWorker(absl::StrCat("w", port), port, {MakeTool("quote", true)});
  }
  DispatcherOptions options;
  options.max_attempts = 2;
  Start(options);
  OutcomePtr outcome = Invoke("quote", "call_1");
  transport_.Complete(0, absl::UnavailableError("first"));
  ASSERT_EQ(transport_.size(), 2u);
  transport_.Complete(1, absl::UnavailableError("second"));
  EXPECT_EQ(transport_.size(), 2u);
  ErrorMessage(outcome->output(), "unavailable", "quote");
}

TEST_F(DispatcherTest, DefaultMaxAttemptsIsThree) {
  for (int port = 7001; port <= 7004; ++port) {
    AddWorker(absl::StrCat("w", port), port, {MakeTool("quote", true)});
  }
  Start();
  OutcomePtr outcome = Invoke("quote", "call_1");
  std::set<std::string> endpoints;
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_EQ(transport_.size(), i + 1);
    endpoints.insert(transport_.call(i).endpoint);
    transport_.Complete(i, absl::UnavailableError("down"));
  }
  EXPECT_EQ(transport_.size(), 3u);
  EXPECT_EQ(endpoints.size(), 3u);
  ErrorMessage(outcome->output(), "unavailable", "quote");
}

TEST_F(DispatcherTest, SingleReplicaUnavailableHasNowhereToRetry) {
  AddWorker("a", 7001, {MakeTool("quote", true)});
  Start();
  OutcomePtr outcome = Invoke("quote", "call_1");
  transport_.Complete(0, absl::UnavailableError("connection refused"));
  EXPECT_EQ(transport_.size(), 1u);
  const std::string message =
      ErrorMessage(outcome->output(), "unavailable", "quote");
  EXPECT_THAT(message, HasSubstr("connection refused"));
  EXPECT_THAT(message, HasSubstr("no other replica"));
  EXPECT_EQ(InFlight("a"), 0);
}

TEST_F(DispatcherTest, NoRetryAfterTheDeadline) {
  AddWorker("a", 7001, {MakeTool("quote", true, /*timeout_ms=*/1000)});
  AddWorker("b", 7002, {MakeTool("quote", true, /*timeout_ms=*/1000)});
  Start();
  OutcomePtr outcome = Invoke("quote", "call_1");
  Advance(1000);
  transport_.Complete(0, absl::UnavailableError("late"));
  EXPECT_EQ(transport_.size(), 1u);
  ErrorMessage(outcome->output(), "unavailable", "quote");
}

TEST_F(DispatcherTest, RetryWaitsForABusyReplica) {
  AddWorker("a", 7001, {MakeTool("quote", true, 1000, 1)});
  AddWorker("b", 7002, {MakeTool("quote", true, 1000, 1)});
  Start();
  OutcomePtr first = Invoke("quote", "call_1");
  OutcomePtr second = Invoke("quote", "call_2");
  ASSERT_EQ(transport_.size(), 2u);
  const std::string first_endpoint = transport_.call(0).endpoint;
  transport_.Complete(0, absl::UnavailableError("down"));
  // The other replica is busy: the retry waits for it.
  EXPECT_EQ(transport_.size(), 2u);
  EXPECT_EQ(dispatcher_->waiting(), 1u);
  transport_.Succeed(1, "2");
  EXPECT_EQ(second->output(), "2");
  ASSERT_EQ(transport_.size(), 3u);
  EXPECT_NE(transport_.call(2).endpoint, first_endpoint);
  EXPECT_EQ(transport_.call(2).request.tool_call_id(), "call_1");
  transport_.Succeed(2, "1");
  EXPECT_EQ(first->output(), "1");
}

// A retry waiting for the one replica it may still use must not hold up
// later calls that fit on the replica it excluded.
TEST_F(DispatcherTest, WaitingRetryDoesNotHoldUpTheQueue) {
  AddWorker("a", 7001, {MakeTool("quote", true, 1000, 1)});
  AddWorker("b", 7002, {MakeTool("quote", true, 1000, 1)});
  Start();
  OutcomePtr c1 = Invoke("quote", "call_1");  // on X
  OutcomePtr c2 = Invoke("quote", "call_2");  // on Y
  ASSERT_EQ(transport_.size(), 2u);
  // call_2 fails on Y; its retry waits for X (busy with call_1). Y is free
  // now, so take it with call_3, and queue call_4 behind the retry.
  transport_.Complete(1, absl::UnavailableError("down"));
  EXPECT_EQ(dispatcher_->waiting(), 1u);
  OutcomePtr c3 = Invoke("quote", "call_3");
  ASSERT_EQ(transport_.size(), 3u);
  EXPECT_EQ(transport_.call(2).endpoint, transport_.call(1).endpoint);
  OutcomePtr c4 = Invoke("quote", "call_4");
  EXPECT_EQ(dispatcher_->waiting(), 2u);
  // Y frees. call_2 may not use it; call_4, behind it, may.
  transport_.Succeed(2, "3");
  EXPECT_EQ(c3->output(), "3");
  ASSERT_EQ(transport_.size(), 4u);
  EXPECT_EQ(transport_.call(3).request.tool_call_id(), "call_4");
  EXPECT_EQ(transport_.call(3).endpoint, transport_.call(1).endpoint);
  EXPECT_EQ(dispatcher_->waiting(), 1u);
  // X frees: call_2's retry goes there.
  transport_.Succeed(0, "1");
  ASSERT_EQ(transport_.size(), 5u);
  EXPECT_EQ(transport_.call(4).request.tool_call_id(), "call_2");
  EXPECT_EQ(transport_.call(4).endpoint, transport_.call(0).endpoint);
  transport_.Succeed(3, "4");
  transport_.Succeed(4, "2");
  EXPECT_EQ(c1->output(), "1");
  EXPECT_EQ(c2->output(), "2");
  EXPECT_EQ(c4->output(), "4");
}

// --- Synchronous transports ---

TEST_F(DispatcherTest, TransportMayCompleteBeforeInvokeReturns) {
  AddWorker("a", 7001, {MakeTool("quote", true)});
  AddWorker("b", 7002, {MakeTool("quote", true)});
  Start();
  transport_.set_on_invoke([this](size_t i) {
    if (i == 0) {
      transport_.Complete(i, absl::UnavailableError("down"));
    } else {
      transport_.Succeed(i, absl::StrCat("out_", i));
    }
  });
  OutcomePtr outcome = Invoke("quote", "call_1");
  EXPECT_EQ(outcome->output(), "out_1");
  EXPECT_EQ(transport_.size(), 2u);
  EXPECT_EQ(InFlight("a") + InFlight("b"), 0);
  transport_.set_on_invoke(nullptr);
}

// --- CancelRun / Shutdown ---

TEST_F(DispatcherTest, CancelRunAnswersItsCallsOnce) {
  AddWorker("w", 7001, {MakeTool("add", false, 1000, 1)});
  Start();
  OutcomePtr running = Invoke("add", "call_1", "{}", "run_1");
  OutcomePtr queued = Invoke("add", "call_2", "{}", "run_1");
  OutcomePtr other_run = Invoke("add", "call_3", "{}", "run_2");
  ASSERT_EQ(transport_.size(), 1u);
  EXPECT_EQ(dispatcher_->waiting(), 2u);

  dispatcher_->CancelRun("run_1");
  ASSERT_EQ(running->count(), 1);
  ASSERT_EQ(queued->count(), 1);
  ErrorMessage(running->output(), "cancelled", "add");
  ErrorMessage(queued->output(), "cancelled", "add");
  EXPECT_EQ(transport_.cancels(0), 1);
  EXPECT_EQ(other_run->count(), 0);
  EXPECT_EQ(dispatcher_->waiting(), 1u);

  // The worker answers anyway: ignored, but its slot is released and the
  // other run's call starts.
  transport_.Succeed(0, "late");
  EXPECT_EQ(running->count(), 1);
  ASSERT_EQ(transport_.size(), 2u);
  EXPECT_EQ(transport_.call(1).request.tool_call_id(), "call_3");
  transport_.Succeed(1, "3");
  EXPECT_EQ(other_run->output(), "3");
  EXPECT_EQ(InFlight("w"), 0);

  // Again: nothing left to cancel.
  dispatcher_->CancelRun("run_1");
  dispatcher_->CancelRun("run_unknown");
  EXPECT_EQ(running->count(), 1);
  EXPECT_EQ(queued->count(), 1);
}

TEST_F(DispatcherTest, CancelledCallIsNotRetried) {
  AddWorker("a", 7001, {MakeTool("quote", true)});
  AddWorker("b", 7002, {MakeTool("quote", true)});
  Start();
  OutcomePtr outcome = Invoke("quote", "call_1");
  dispatcher_->CancelRun("run_1");
  transport_.Complete(0, absl::UnavailableError("down"));
  EXPECT_EQ(transport_.size(), 1u);
  EXPECT_EQ(outcome->count(), 1);
}

TEST_F(DispatcherTest, CancelRunStopsTheWaitForAWorker) {
  DispatcherOptions options;
  options.no_worker_wait_ms = 10000;
  Start(options);
  OutcomePtr outcome = Invoke("add", "call_1");
  EXPECT_EQ(timers_.pending(), 1u);
  dispatcher_->CancelRun("run_1");
  ErrorMessage(outcome->output(), "cancelled", "add");
  EXPECT_EQ(timers_.pending(), 0u);
  AddWorker("w", 7001, {MakeTool("add")});
  EXPECT_EQ(transport_.size(), 0u);
  Advance(10000);
  timers_.RunDue();
  EXPECT_EQ(outcome->count(), 1);
}

TEST_F(DispatcherTest, ShutdownAnswersEveryCall) {
  AddWorker("w", 7001, {MakeTool("add", false, 1000, 1)});
  DispatcherOptions options;
  options.no_worker_wait_ms = 5000;
  Start(options);
  OutcomePtr running = Invoke("add", "call_1", "{}", "run_1");
  OutcomePtr queued = Invoke("add", "call_2", "{}", "run_2");
  OutcomePtr no_worker = Invoke("mul", "call_3", "{}", "run_3");
  EXPECT_EQ(dispatcher_->waiting(), 2u);

  dispatcher_->Shutdown();
  ErrorMessage(running->output(), "cancelled", "add");
  ErrorMessage(queued->output(), "cancelled", "add");
  ErrorMessage(no_worker->output(), "cancelled", "mul");
  EXPECT_EQ(transport_.cancels(0), 1);
  EXPECT_EQ(dispatcher_->waiting(), 0u);
  EXPECT_EQ(timers_.pending(), 0u);

  // Later calls are answered at once.
  OutcomePtr late = Invoke("add", "call_4", "{}", "run_4");
  EXPECT_THAT(ErrorMessage(late->output(), "cancelled", "add"),
              HasSubstr("shutting down"));
  transport_.Succeed(0, "late");
  EXPECT_EQ(transport_.size(), 1u);
  EXPECT_EQ(running->count(), 1);
  EXPECT_EQ(queued->count(), 1);
}

TEST_F(DispatcherTest, DestructorWaitsForTheTransport) {
  AddWorker("w", 7001, {MakeTool("add")});
  Start();
  OutcomePtr outcome = Invoke("add", "call_1");
  dispatcher_->Shutdown();
  EXPECT_EQ(transport_.cancels(0), 1);
  transport_.Complete(0, absl::CancelledError("cancelled"));
  dispatcher_.reset();
  EXPECT_EQ(outcome->count(), 1);
  EXPECT_EQ(InFlight("w"), 0);
}

// Every path answers exactly once, with outputs the model can read.
TEST_F(DispatcherTest, EveryPathAnswersExactlyOnce) {
  AddWorker("a", 7001, {MakeTool("t", true, 1000, 2)});
  AddWorker("b", 7002, {MakeTool("t", true, 1000, 2)});
  DispatcherOptions options;
  options.no_worker_wait_ms = 2000;
  options.max_output_bytes = 100;
  Start(options);
  std::vector<OutcomePtr> outcomes;
  auto invoke = [&](const std::string& tool, const std::string& arguments,
                    const std::string& run) {
    outcomes.push_back(
        Invoke(tool, absl::StrCat("call_", outcomes.size()), arguments, run));
  };
  invoke("t", "{", "run_1");         // invalid arguments
  invoke("missing", "{}", "run_1");  // waits for a worker, then no_worker
  for (int i = 0; i < 8; ++i) invoke("t", "{}", absl::StrCat("run_", i % 3));
  ASSERT_EQ(transport_.size(), 4u);
  transport_.Succeed(0, "ok");
  transport_.Succeed(1, std::string(101, 'x'));
  transport_.Complete(2, absl::UnavailableError("down"));
  transport_.Complete(3, absl::InternalError("bug"));
  dispatcher_->CancelRun("run_2");
  for (size_t i : transport_.Open()) {
    transport_.Complete(i, absl::DeadlineExceededError("late"));
  }
  Advance(2000);
  timers_.RunDue();
  for (size_t i : transport_.Open()) transport_.Succeed(i, "ok");
  dispatcher_->Shutdown();
  transport_.CompleteAll(absl::CancelledError("cancelled"));
  Advance(60000);
  timers_.RunDue();

  for (size_t i = 0; i < outcomes.size(); ++i) {
    SCOPED_TRACE(i);
    ASSERT_EQ(outcomes[i]->count(), 1);
    const std::string& output = outcomes[i]->outputs[0];
    if (output == "ok") continue;
    const nlohmann::json json = nlohmann::json::parse(output, nullptr, false);
    ASSERT_TRUE(json.is_object()) << output;
    ErrorMessage(output, json.value("error_type", std::string()),
                 i == 1 ? "missing" : "t");
  }
  EXPECT_EQ(dispatcher_->waiting(), 0u);
  EXPECT_EQ(InFlight("a") + InFlight("b"), 0);
}

// The dispatcher's clock, over the registry's: fires a hook on its first
// read after Arm(), which in TryStart comes right after Acquire() and
// before the call is queued.
class HookClock : public Clock {
 public:
  explicit HookClock(const FakeClock* base) : base_(base) {}
  int64_t NowMillis() const override {
    std::function<void()> hook;
    hook.swap(hook_);
    if (hook) hook();
    return base_->NowMillis();
  }
  void Arm(std::function<void()> hook) { hook_ = std::move(hook); }

 private:
  const FakeClock* base_;
  mutable std::function<void()> hook_;
};

class RecordingTransport : public WorkerTransport {
 public:
  std::function<void()> Invoke(const std::string&,
                               const v1::InvokeToolRequest& request, int64_t,
                               Done done) override {
    calls.push_back({request.tool_call_id(), std::move(done)});
    return [] {};
  }
  std::vector<std::pair<std::string, Done>> calls;
};

TEST(DispatcherRaceTest, SlotFreedBetweenAcquireAndQueueingIsNotMissed) {
  FakeClock clock;
  HookClock dispatcher_clock(&clock);
  RegistryOptions options;
  options.registration_token = "t";
  ToolRegistry registry(options, &clock);
  ManualTimers timers(&clock);
  RecordingTransport transport;
  v1::RegisterWorkerRequest request;
  request.set_worker_id("w1");
  request.set_endpoint("127.0.0.1:7001");
  v1::WorkerTool* tool = request.add_tools();
  tool->mutable_function()->set_name("add");
  tool->set_max_concurrency(1);
  ASSERT_TRUE(registry.Register("t", request).ok());
  WorkerDispatcher dispatcher(&registry, &transport, &dispatcher_clock, &timers,
                              DispatcherOptions());
  std::vector<std::string> a, b;
  dispatcher.Invoke({"run_1", "thread_1", "asst_1"}, {"call_a", "add", "{}"},
                    [&](std::string output) { a.push_back(output); });
  ASSERT_EQ(transport.calls.size(), 1u);
  // B finds the only slot busy; A finishes before B joins the queue.
  dispatcher_clock.Arm([&] {
    WorkerTransport::Done done = std::move(transport.calls[0].second);
    done(absl::OkStatus(), "{}");
  });
  dispatcher.Invoke({"run_1", "thread_1", "asst_1"}, {"call_b", "add", "{}"},
                    [&](std::string output) { b.push_back(output); });
  EXPECT_THAT(a, ElementsAre("{}"));
  EXPECT_EQ(dispatcher.waiting(), 0u);
  ASSERT_EQ(transport.calls.size(), 2u);
  EXPECT_EQ(transport.calls[1].first, "call_b");
  transport.calls[1].second(absl::OkStatus(), "{\"b\":1}");
  EXPECT_THAT(b, ElementsAre("{\"b\":1}"));
}

}  // namespace
}  // namespace assistants::tool_workers
