// Tests of the run engine (service/runs) through RunEngine's public API, with
// fakes of every seam: MemoryStore (or SqliteStore), a ScriptedProvider, a
// FakeDispatcher, FakeClock and ManualTimers. Runs progress on the engine's
// executor, so tests wait for conditions with bounded polling.
#include "service/runs/engine.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "service/common/clock.h"
#include "service/common/errors.h"
#include "service/common/executor.h"
#include "service/common/ids.h"
#include "service/common/log.h"
#include "service/common/status_macros.h"
#include "service/common/timers.h"
#include "service/core/objects.h"
#include "service/runs/run_options.h"
#include "service/runs/run_status.h"
#include "service/store/memory_store.h"
#include "service/store/sqlite_store.h"
#include "service/store/store.h"
#include "tests/runs/engine_fakes.h"
#include "tests/runs/turn_text.h"

namespace assistants::runs {
namespace {

using ::assistants::runs::testing::FakeDispatcher;
using ::assistants::runs::testing::FinishedEvent;
using ::assistants::runs::testing::FnCall;
using ::assistants::runs::testing::ItemTexts;
using ::assistants::runs::testing::Reply;
using ::assistants::runs::testing::ScriptedProvider;
using ::assistants::runs::testing::TextDelta;
using ::assistants::runs::testing::TextReply;
using ::assistants::runs::testing::ToolOutputCount;
using ::assistants::runs::testing::ToolReply;
using ::assistants::runs::testing::UsageEvent;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

// FakeClock's default start, in seconds.
constexpr int64_t kStartSeconds = 1'700'000'000;

constexpr char kQuestion[] = "What's the weather in Paris?";
FnCall WeatherCall() { return {"get_weather", {"{\"city\":", "\"Paris\"}"}}; }
constexpr char kWeatherArgs[] = "{\"city\":\"Paris\"}";

// Polls `condition` until true or `timeout` passes.
bool WaitUntil(const std::function<bool()>& condition,
               absl::Duration timeout = absl::Seconds(5)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

std::vector<std::string> Names(const std::vector<v1::RunEvent>& events) {
  std::vector<std::string> names;
  for (const v1::RunEvent& event : events) names.push_back(event.event());
  return names;
}

int Count(const std::vector<std::string>& names, const std::string& name) {
  return static_cast<int>(std::count(names.begin(), names.end(), name));
}

// Position of the first `name` at or after `from`, or -1.
int IndexOf(const std::vector<std::string>& names, const std::string& name,
            size_t from = 0) {
  for (size_t i = from; i < names.size(); ++i) {
    if (names[i] == name) return static_cast<int>(i);
  }
  return -1;
}

// The status a thread.run.* event announces.
std::optional<v1::RunStatus> StatusOfEvent(const std::string& name) {
  if (name == "thread.run.created") return v1::RUN_STATUS_QUEUED;
  for (int i = v1::RunStatus_MIN; i <= v1::RunStatus_MAX; ++i) {
    const auto status = static_cast<v1::RunStatus>(i);
    if (RunStatusEvent(status) == name) return status;
  }
  return std::nullopt;
}

// Sequences are 1..N without gaps.
void ExpectConsecutive(const std::vector<v1::RunEvent>& events) {
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].sequence(), static_cast<int64_t>(i + 1))
        << "event " << i << " " << events[i].event();
  }
}

// Every thread.run.* event carries the run in the status it announces.
void ExpectRunPayloads(const std::vector<v1::RunEvent>& events,
                       const std::string& run_id) {
  for (const v1::RunEvent& event : events) {
    std::optional<v1::RunStatus> status = StatusOfEvent(event.event());
    if (!status.has_value()) continue;
    ASSERT_TRUE(event.has_run()) << event.event();
    EXPECT_EQ(event.run().id(), run_id) << event.event();
    EXPECT_EQ(event.run().status(), *status) << event.event();
  }
}

// The text of a message's content parts, concatenated.
std::string Text(const v1::Message& message) {
  std::string text;
  for (const auto& part : message.content()) {
    if (part.has_text()) text += part.text().value();
  }
  return text;
}

std::vector<std::string> RequiredCallIds(const v1::Run& run) {
  std::vector<std::string> ids;
  for (const auto& call :
       run.required_action().submit_tool_outputs().tool_calls()) {
    ids.push_back(call.id());
  }
  return ids;
}

class EngineTest : public ::testing::Test {
 protected:
  EngineTest() : timers_(&clock_) {
    options_.default_upstream = "fake";
    store_ = std::make_unique<MemoryStore>();
  }

  void SetUp() override {
    CreateAssistant();
    StartEngine();
  }

  void TearDown() override { StopEngine(); }

  void StartEngine() {
    executor_ = std::make_unique<Executor>(2);
    engine_ = std::make_unique<RunEngine>(
        store_.get(),
        [this](absl::string_view name) -> absl::StatusOr<upstream::Provider*> {
          if (name == "missing") {
            return MakeError(absl::StatusCode::kFailedPrecondition,
                             "UPSTREAM_UNKNOWN", "no such upstream");
          }
          return &provider_;
        },
        &dispatcher_, &clock_, &timers_, executor_.get(), options_);
  }

  // Stops driving runs (as a process exit would) and frees the engine.
  void StopEngine() {
    provider_.JoinThreads();
    if (engine_ != nullptr) engine_->Stop();
    executor_.reset();
    engine_.reset();
  }

  // A process restart on the same store.
  void RestartEngine() {
    StopEngine();
    StartEngine();
    ASSERT_TRUE(engine_->Recover().ok());
  }

  void CreateAssistant() {
    assistant_.set_id(NewId(kAssistantPrefix));
    assistant_.set_object("assistant");
    assistant_.set_created_at(kStartSeconds);
    assistant_.set_model("gpt-test");
    assistant_.set_instructions("You are a weather bot.");
    auto* fn = assistant_.add_tools()->mutable_function()->mutable_function();
    fn->set_name("get_weather");
    assistant_.add_tools()->mutable_code_interpreter();
    ASSERT_TRUE(
        store_->CreateAssistant(assistant_, kDefaultProject, nullptr).ok());
  }

  std::string NewThread(const std::vector<std::string>& texts = {kQuestion}) {
    v1::Thread thread;
    thread.set_id(NewId(kThreadPrefix));
    thread.set_object("thread");
    thread.set_created_at(clock_.NowSeconds());
    std::vector<v1::Message> messages;
    for (const std::string& text : texts) {
      v1::MessageInput input;
      input.set_role(v1::MESSAGE_ROLE_USER);
      input.set_text(text);
      messages.push_back(NewMessage(input, thread.id(), clock_.NowSeconds()));
    }
    EXPECT_TRUE(
        store_->CreateThread(thread, kDefaultProject, messages, nullptr).ok());
    return thread.id();
  }

  v1::RunOptions Options() const {
    v1::RunOptions options;
    options.set_assistant_id(assistant_.id());
    return options;
  }

  absl::StatusOr<v1::Run> TryCreate(const std::string& thread_id,
                                    const v1::RunOptions& options,
                                    const std::string& request_id = "") {
    v1::CreateRunRequest request;
    request.set_thread_id(thread_id);
    *request.mutable_options() = options;
    request.set_request_id(request_id);
    absl::StatusOr<v1::CreateRunResponse> response =
        engine_->CreateRun(kDefaultProject, request);
    if (!response.ok()) return response.status();
    return response->run();
  }

  v1::Run Create(const std::string& thread_id) {
    return Create(thread_id, Options());
  }
  v1::Run Create(const std::string& thread_id, const v1::RunOptions& options) {
    absl::StatusOr<v1::Run> run = TryCreate(thread_id, options);
    EXPECT_TRUE(run.ok()) << run.status();
    return run.ok() ? *run : v1::Run();
  }

  // The stored run (empty when it cannot be read).
  v1::Run Stored(const v1::Run& run) {
    absl::StatusOr<v1::Run> stored = store_->GetRun(run.thread_id(), run.id());
    return stored.ok() ? *stored : v1::Run();
  }

  // Waits (bounded) until the stored run has `status`.
  v1::Run WaitForStatus(const v1::Run& run, v1::RunStatus status) {
    v1::Run stored;
    const bool reached = WaitUntil([&] {
      stored = Stored(run);
      return stored.status() == status;
    });
    EXPECT_TRUE(reached) << "run " << run.id() << " is "
                         << RunStatusName(stored.status()) << ", not "
                         << RunStatusName(status);
    engine_->FlushForTesting();
    return stored;
  }

  // Waits (bounded) until the run's log ends with `done`; returns the run.
  v1::Run WaitDone(const v1::Run& run) {
    const bool done = WaitUntil([&] {
      absl::StatusOr<std::vector<v1::RunEvent>> events =
          store_->ListRunEvents(run.id(), 0, 100000);
      return events.ok() && !events->empty() &&
             events->back().event() == "done";
    });
    EXPECT_TRUE(done) << "run " << run.id() << " did not end; it is "
                      << RunStatusName(Stored(run).status());
    engine_->FlushForTesting();
    // on_finished runs right after the last commit and closes the run's
    // channel; wait for it so the engine has forgotten the run.
    EXPECT_TRUE(WaitUntil(
        [&] { return engine_->hub()->LastSequence(run.id()) == -1; }));
    return Stored(run);
  }

  // Waits until the run's log holds an event named `name`.
  bool WaitForEvent(const v1::Run& run, const std::string& name) {
    return WaitUntil([&] {
      absl::StatusOr<std::vector<v1::RunEvent>> events =
          store_->ListRunEvents(run.id(), 0, 100000);
      if (!events.ok()) return false;
      for (const auto& event : *events) {
        if (event.event() == name) return true;
      }
      return false;
    });
  }

  std::vector<v1::RunEvent> Events(const v1::Run& run) {
    engine_->FlushForTesting();
    absl::StatusOr<std::vector<v1::RunEvent>> events =
        store_->ListRunEvents(run.id(), 0, 100000);
    EXPECT_TRUE(events.ok()) << events.status();
    return events.ok() ? *events : std::vector<v1::RunEvent>();
  }

  std::vector<v1::RunStep> Steps(const v1::Run& run) {
    v1::ListRunStepsRequest request;
    request.set_thread_id(run.thread_id());
    request.set_run_id(run.id());
    request.mutable_options()->set_limit(100);
    request.mutable_options()->set_order(v1::LIST_ORDER_ASC);
    absl::StatusOr<v1::ListRunStepsResponse> response =
        engine_->ListRunSteps(request);
    EXPECT_TRUE(response.ok()) << response.status();
    if (!response.ok()) return {};
    return {response->data().begin(), response->data().end()};
  }

  std::vector<v1::Message> RunMessages(const v1::Run& run) {
    ListQuery query;
    query.limit = 100;
    query.ascending = true;
    absl::StatusOr<Page<v1::Message>> page =
        store_->ListMessages(run.thread_id(), run.id(), query);
    EXPECT_TRUE(page.ok()) << page.status();
    return page.ok() ? page->items : std::vector<v1::Message>();
  }

  absl::StatusOr<v1::Run> TrySubmit(
      const v1::Run& run,
      const std::vector<std::pair<std::string, std::string>>& outputs,
      const std::string& request_id = "", const std::string& thread_id = "") {
    v1::SubmitToolOutputsRequest request;
    request.set_thread_id(thread_id.empty() ? run.thread_id() : thread_id);
    request.set_run_id(run.id());
    request.set_request_id(request_id);
    for (const auto& [id, output] : outputs) {
      v1::ToolOutput* out = request.add_tool_outputs();
      out->set_tool_call_id(id);
      out->set_output(output);
    }
    absl::StatusOr<v1::SubmitToolOutputsResponse> response =
        engine_->SubmitToolOutputs(kDefaultProject, request);
    if (!response.ok()) return response.status();
    return response->run();
  }

  // Answers every pending call of `run` (as stored) with `output`.
  v1::Run SubmitAll(const v1::Run& run, const std::string& output) {
    std::vector<std::pair<std::string, std::string>> outputs;
    for (const std::string& id : RequiredCallIds(run)) {
      outputs.emplace_back(id, output);
    }
    absl::StatusOr<v1::Run> submitted = TrySubmit(run, outputs);
    EXPECT_TRUE(submitted.ok()) << submitted.status();
    return submitted.ok() ? *submitted : v1::Run();
  }

  absl::StatusOr<v1::Run> TryCancel(const v1::Run& run) {
    v1::CancelRunRequest request;
    request.set_thread_id(run.thread_id());
    request.set_run_id(run.id());
    absl::StatusOr<v1::CancelRunResponse> response =
        engine_->CancelRun(request);
    if (!response.ok()) return response.status();
    return response->run();
  }

  // Writes a run as CreateRun would, without driving it (a process that
  // died right after storing it).
  v1::Run StoreQueuedRun(const std::string& thread) {
    RunCreation creation;
    creation.run =
        ComposeRun(Options(), assistant_, thread, "fake", clock_.NowSeconds());
    for (int i = 1; i <= 2; ++i) {
      v1::RunEvent& event = creation.events.emplace_back();
      event.set_sequence(i);
      event.set_event(i == 1 ? "thread.run.created" : "thread.run.queued");
      *event.mutable_run() = creation.run;
    }
    EXPECT_TRUE(store_->CreateRun(creation).ok());
    return creation.run;
  }

  FakeClock clock_;
  ManualTimers timers_;
  ScriptedProvider provider_;
  FakeDispatcher dispatcher_;
  std::unique_ptr<Store> store_;
  EngineOptions options_;
  v1::Assistant assistant_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<RunEngine> engine_;
};

// --- The seed scenario: one function call, then text ---

class SeedRunTest : public EngineTest,
                    public ::testing::WithParamInterface<bool> {};

TEST_P(SeedRunTest, EventOrderAndPayloads) {
  const bool threaded = GetParam();
  Reply first = ToolReply({WeatherCall()}, /*prompt=*/50, /*completion=*/10);
  Reply second = TextReply({"It is ", "sunny."}, /*prompt=*/70,
                           /*completion=*/5);
  first.threaded = threaded;
  second.threaded = threaded;
  provider_.Add(first);
  provider_.Add(second);

  v1::CreateThreadAndRunRequest request;
  v1::MessageInput* input = request.mutable_thread()->add_messages();
  input->set_role(v1::MESSAGE_ROLE_USER);
  input->set_text(kQuestion);
  *request.mutable_options() = Options();
  absl::StatusOr<v1::CreateThreadAndRunResponse> created =
      engine_->CreateThreadAndRun(kDefaultProject, request);
  ASSERT_TRUE(created.ok()) << created.status();
  const v1::Run run = created->run();
  EXPECT_EQ(run.status(), v1::RUN_STATUS_QUEUED);
  EXPECT_EQ(run.object(), "thread.run");
  EXPECT_EQ(run.assistant_id(), assistant_.id());

  v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  ASSERT_THAT(RequiredCallIds(waiting), SizeIs(1));
  const std::string call_id = RequiredCallIds(waiting)[0];
  EXPECT_TRUE(absl::StartsWith(call_id, "call_"));
  SubmitAll(waiting, "{\"temp\":20}");
  const v1::Run final_run = WaitDone(run);

  const std::vector<v1::RunEvent> events = Events(run);
  ASSERT_THAT(
      Names(events),
      ElementsAre("thread.created", "thread.run.created", "thread.run.queued",
                  "thread.run.in_progress", "thread.run.step.created",
                  "thread.run.step.in_progress", "thread.run.step.delta",
                  "thread.run.step.delta", "thread.run.step.delta",
                  "thread.run.requires_action", "thread.run.queued",
                  "thread.run.in_progress", "thread.run.step.completed",
                  "thread.run.step.created", "thread.run.step.in_progress",
                  "thread.message.created", "thread.message.in_progress",
                  "thread.message.delta", "thread.message.delta",
                  "thread.message.completed", "thread.run.step.completed",
                  "thread.run.completed", "done"));
  ExpectConsecutive(events);
  ExpectRunPayloads(events, run.id());
  for (const auto& event : events) {
    EXPECT_GE(event.created_at_ms(), kStartSeconds * 1000) << event.event();
  }

  // thread.created carries the new thread.
  ASSERT_TRUE(events[0].has_thread());
  EXPECT_EQ(events[0].thread().id(), run.thread_id());

  // The tool_calls step.
  ASSERT_TRUE(events[4].has_step());
  const v1::RunStep& tool_step = events[4].step();
  EXPECT_EQ(tool_step.object(), "thread.run.step");
  EXPECT_EQ(tool_step.type(), v1::RUN_STEP_TYPE_TOOL_CALLS);
  EXPECT_EQ(tool_step.status(), v1::RUN_STEP_STATUS_IN_PROGRESS);
  EXPECT_EQ(tool_step.run_id(), run.id());
  EXPECT_EQ(tool_step.thread_id(), run.thread_id());
  EXPECT_EQ(tool_step.assistant_id(), assistant_.id());
  ASSERT_TRUE(events[5].has_step());
  EXPECT_EQ(events[5].step().id(), tool_step.id());

  // Deltas: {id, object, delta}; the first names the call, then fragments.
  for (int i : {6, 7, 8}) {
    ASSERT_TRUE(events[i].has_step_delta()) << i;
    EXPECT_EQ(events[i].step_delta().id(), tool_step.id());
    EXPECT_EQ(events[i].step_delta().object(), "thread.run.step.delta");
    ASSERT_EQ(events[i].step_delta().delta().tool_calls_size(), 1);
    EXPECT_EQ(events[i].step_delta().delta().tool_calls(0).index(), 0);
  }
  const v1::ToolCallDelta& named = events[6].step_delta().delta().tool_calls(0);
  EXPECT_EQ(named.id(), call_id);
  EXPECT_EQ(named.function().name(), "get_weather");
  EXPECT_EQ(named.function().arguments(), "");
  EXPECT_EQ(events[7].step_delta().delta().tool_calls(0).function().arguments(),
            "{\"city\":");
  EXPECT_EQ(events[8].step_delta().delta().tool_calls(0).function().arguments(),
            "\"Paris\"}");

  // requires_action: the call to answer, and when it expires.
  const v1::Run& required = events[9].run();
  EXPECT_EQ(required.required_action().type(), "submit_tool_outputs");
  ASSERT_EQ(required.required_action().submit_tool_outputs().tool_calls_size(),
            1);
  const v1::RequiredToolCall& required_call =
      required.required_action().submit_tool_outputs().tool_calls(0);
  EXPECT_EQ(required_call.id(), call_id);
  EXPECT_EQ(required_call.type(), "function");
  EXPECT_EQ(required_call.function().name(), "get_weather");
  EXPECT_EQ(required_call.function().arguments(), kWeatherArgs);
  EXPECT_EQ(required.expires_at(), kStartSeconds + 600);

  // After the submit: no required_action any more.
  EXPECT_FALSE(events[10].run().has_required_action());
  EXPECT_FALSE(events[10].run().has_expires_at());

  // The tool step completes with its output.
  ASSERT_TRUE(events[12].has_step());
  EXPECT_EQ(events[12].step().id(), tool_step.id());
  EXPECT_EQ(events[12].step().status(), v1::RUN_STEP_STATUS_COMPLETED);
  const v1::ToolCall& done_call =
      events[12].step().step_details().tool_calls().tool_calls(0);
  EXPECT_EQ(done_call.id(), call_id);
  EXPECT_EQ(done_call.function().arguments(), kWeatherArgs);
  EXPECT_EQ(done_call.function().output(), "{\"temp\":20}");

  // The message_creation step and its message.
  ASSERT_TRUE(events[13].has_step());
  const v1::RunStep& message_step = events[13].step();
  EXPECT_EQ(message_step.type(), v1::RUN_STEP_TYPE_MESSAGE_CREATION);
  ASSERT_TRUE(events[15].has_message());
  const v1::Message& created_message = events[15].message();
  EXPECT_EQ(message_step.step_details().message_creation().message_id(),
            created_message.id());
  EXPECT_EQ(created_message.object(), "thread.message");
  EXPECT_EQ(created_message.role(), v1::MESSAGE_ROLE_ASSISTANT);
  EXPECT_EQ(created_message.status(), v1::MESSAGE_STATUS_IN_PROGRESS);
  EXPECT_EQ(created_message.run_id(), run.id());
  EXPECT_EQ(created_message.assistant_id(), assistant_.id());
  EXPECT_EQ(created_message.thread_id(), run.thread_id());
  ASSERT_TRUE(events[16].has_message());
  for (int i : {17, 18}) {
    ASSERT_TRUE(events[i].has_message_delta()) << i;
    EXPECT_EQ(events[i].message_delta().id(), created_message.id());
    EXPECT_EQ(events[i].message_delta().object(), "thread.message.delta");
    ASSERT_EQ(events[i].message_delta().delta().content_size(), 1);
    EXPECT_EQ(events[i].message_delta().delta().content(0).index(), 0);
  }
  EXPECT_EQ(events[17].message_delta().delta().content(0).text().value(),
            "It is ");
  EXPECT_EQ(events[18].message_delta().delta().content(0).text().value(),
            "sunny.");
  ASSERT_TRUE(events[19].has_message());
  EXPECT_EQ(events[19].message().status(), v1::MESSAGE_STATUS_COMPLETED);
  EXPECT_EQ(Text(events[19].message()), "It is sunny.");
  ASSERT_TRUE(events[20].has_step());
  EXPECT_EQ(events[20].step().id(), message_step.id());
  EXPECT_EQ(events[20].step().status(), v1::RUN_STEP_STATUS_COMPLETED);
  EXPECT_TRUE(events[22].has_done());

  // The final run: usage summed over both turns, timestamps.
  EXPECT_EQ(final_run.status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(final_run.usage().prompt_tokens(), 120);
  EXPECT_EQ(final_run.usage().completion_tokens(), 15);
  EXPECT_EQ(final_run.usage().total_tokens(), 135);
  EXPECT_EQ(final_run.started_at(), kStartSeconds);
  EXPECT_EQ(final_run.completed_at(), kStartSeconds);
  EXPECT_FALSE(final_run.has_required_action());
  EXPECT_FALSE(final_run.has_expires_at());
  EXPECT_FALSE(final_run.has_failed_at());
  EXPECT_EQ(events[21].run().usage().total_tokens(), 135);

  // Steps as stored, with their own usage.
  std::vector<v1::RunStep> steps = Steps(run);
  ASSERT_THAT(steps, SizeIs(2));
  EXPECT_EQ(steps[0].id(), tool_step.id());
  EXPECT_EQ(steps[0].status(), v1::RUN_STEP_STATUS_COMPLETED);
  EXPECT_EQ(steps[0].usage().prompt_tokens(), 50);
  EXPECT_EQ(steps[0].usage().completion_tokens(), 10);
  EXPECT_EQ(steps[0].usage().total_tokens(), 60);
  EXPECT_EQ(
      steps[0].step_details().tool_calls().tool_calls(0).function().output(),
      "{\"temp\":20}");
  EXPECT_EQ(steps[1].id(), message_step.id());
  EXPECT_EQ(steps[1].status(), v1::RUN_STEP_STATUS_COMPLETED);
  EXPECT_EQ(steps[1].usage().prompt_tokens(), 70);
  EXPECT_EQ(steps[1].usage().completion_tokens(), 5);
  EXPECT_EQ(steps[1].usage().total_tokens(), 75);

  // The assistant message as stored.
  std::vector<v1::Message> messages = RunMessages(run);
  ASSERT_THAT(messages, SizeIs(1));
  EXPECT_EQ(messages[0].id(), created_message.id());
  EXPECT_EQ(messages[0].status(), v1::MESSAGE_STATUS_COMPLETED);
  EXPECT_EQ(Text(messages[0]), "It is sunny.");
  EXPECT_EQ(messages[0].run_id(), run.id());
  EXPECT_EQ(messages[0].assistant_id(), assistant_.id());
  EXPECT_TRUE(messages[0].has_completed_at());

  // What the model saw.
  ASSERT_EQ(provider_.calls(), 2);
  EXPECT_THAT(ItemTexts(provider_.turn(0)),
              ElementsAre(absl::StrCat("user:", kQuestion)));
  EXPECT_THAT(
      ItemTexts(provider_.turn(1)),
      ElementsAre(absl::StrCat("user:", kQuestion),
                  absl::StrCat("call:", call_id, ":get_weather:", kWeatherArgs),
                  absl::StrCat("output:", call_id, ":{\"temp\":20}")));
  EXPECT_EQ(provider_.turn(0).model, "gpt-test");
  EXPECT_EQ(provider_.turn(0).instructions, "You are a weather bot.");
  EXPECT_EQ(engine_->active_runs(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Delivery, SeedRunTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "ProviderThread" : "Synchronous";
                         });

TEST_F(EngineTest, CreateRunStartsWithCreatedAndQueued) {
  provider_.Add(TextReply({"Hello."}));
  const v1::Run run = Create(NewThread());
  WaitDone(run);
  const std::vector<v1::RunEvent> events = Events(run);
  EXPECT_THAT(
      Names(events),
      ElementsAre("thread.run.created", "thread.run.queued",
                  "thread.run.in_progress", "thread.run.step.created",
                  "thread.run.step.in_progress", "thread.message.created",
                  "thread.message.in_progress", "thread.message.delta",
                  "thread.message.completed", "thread.run.step.completed",
                  "thread.run.completed", "done"));
  ExpectConsecutive(events);
  ExpectRunPayloads(events, run.id());
}

// --- Tool loops ---

TEST_F(EngineTest, TwoToolRoundsThenText) {
  provider_.Add(ToolReply({WeatherCall()}, 10, 1));
  provider_.Add(ToolReply({{"get_forecast", {"{\"days\":3}"}}}, 20, 2));
  provider_.Add(TextReply({"Sunny for days."}, 30, 3));
  const v1::Run run = Create(NewThread());

  v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  const std::string first_call = RequiredCallIds(waiting).at(0);
  SubmitAll(waiting, "20C");
  // The second round.
  ASSERT_TRUE(WaitUntil([&] {
    v1::Run stored = Stored(run);
    return stored.status() == v1::RUN_STATUS_REQUIRES_ACTION &&
           RequiredCallIds(stored) != std::vector<std::string>{first_call};
  }));
  waiting = Stored(run);
  ASSERT_THAT(RequiredCallIds(waiting), SizeIs(1));
  const std::string second_call = RequiredCallIds(waiting)[0];
  EXPECT_EQ(waiting.required_action()
                .submit_tool_outputs()
                .tool_calls(0)
                .function()
                .name(),
            "get_forecast");
  SubmitAll(waiting, "sun,sun,sun");
  const v1::Run final_run = WaitDone(run);

  EXPECT_EQ(final_run.status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(final_run.usage().prompt_tokens(), 60);
  EXPECT_EQ(final_run.usage().completion_tokens(), 6);
  const std::vector<std::string> names = Names(Events(run));
  EXPECT_EQ(Count(names, "thread.run.requires_action"), 2);
  EXPECT_EQ(Count(names, "thread.run.queued"), 3);
  EXPECT_EQ(names.back(), "done");
  ExpectConsecutive(Events(run));

  ASSERT_EQ(provider_.calls(), 3);
  EXPECT_THAT(
      ItemTexts(provider_.turn(2)),
      ElementsAre(
          absl::StrCat("user:", kQuestion),
          absl::StrCat("call:", first_call, ":get_weather:", kWeatherArgs),
          absl::StrCat("output:", first_call, ":20C"),
          absl::StrCat("call:", second_call, ":get_forecast:{\"days\":3}"),
          absl::StrCat("output:", second_call, ":sun,sun,sun")));
  std::vector<v1::RunStep> steps = Steps(run);
  ASSERT_THAT(steps, SizeIs(3));
  EXPECT_EQ(steps[0].type(), v1::RUN_STEP_TYPE_TOOL_CALLS);
  EXPECT_EQ(steps[1].type(), v1::RUN_STEP_TYPE_TOOL_CALLS);
  EXPECT_EQ(steps[2].type(), v1::RUN_STEP_TYPE_MESSAGE_CREATION);
  for (const auto& step : steps) {
    EXPECT_EQ(step.status(), v1::RUN_STEP_STATUS_COMPLETED);
  }
}

TEST_F(EngineTest, ParallelToolCallsShareOneStep) {
  provider_.Add(
      ToolReply({WeatherCall(), {"get_weather", {"{\"city\":\"Rome\"}"}}}));
  provider_.Add(TextReply({"Both sunny."}));
  const v1::Run run = Create(NewThread());
  v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);

  const auto& calls =
      waiting.required_action().submit_tool_outputs().tool_calls();
  ASSERT_EQ(calls.size(), 2);
  EXPECT_NE(calls[0].id(), calls[1].id());
  EXPECT_EQ(calls[0].function().arguments(), kWeatherArgs);
  EXPECT_EQ(calls[1].function().arguments(), "{\"city\":\"Rome\"}");
  const std::string paris = calls[0].id();
  const std::string rome = calls[1].id();

  std::vector<v1::RunStep> steps = Steps(run);
  ASSERT_THAT(steps, SizeIs(1));
  ASSERT_EQ(steps[0].step_details().tool_calls().tool_calls_size(), 2);

  ASSERT_TRUE(
      TrySubmit(waiting, {{rome, "rome-out"}, {paris, "paris-out"}}).ok());
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);

  ASSERT_EQ(provider_.calls(), 2);
  const std::vector<std::string> items = ItemTexts(provider_.turn(1));
  const std::string paris_call =
      absl::StrCat("call:", paris, ":get_weather:", kWeatherArgs);
  const std::string paris_out = absl::StrCat("output:", paris, ":paris-out");
  const std::string rome_call =
      absl::StrCat("call:", rome, ":get_weather:{\"city\":\"Rome\"}");
  const std::string rome_out = absl::StrCat("output:", rome, ":rome-out");
  ASSERT_THAT(items, SizeIs(5));
  EXPECT_EQ(items[0], absl::StrCat("user:", kQuestion));
  for (const auto& item : {paris_call, paris_out, rome_call, rome_out}) {
    EXPECT_THAT(items, Contains(item));
  }
  auto position = [&](const std::string& item) {
    return std::find(items.begin(), items.end(), item) - items.begin();
  };
  EXPECT_LT(position(paris_call), position(paris_out));
  EXPECT_LT(position(rome_call), position(rome_out));
  // Outputs are stored on the calls, whatever order they were submitted in.
  steps = Steps(run);
  EXPECT_EQ(
      steps[0].step_details().tool_calls().tool_calls(0).function().output(),
      "paris-out");
  EXPECT_EQ(
      steps[0].step_details().tool_calls().tool_calls(1).function().output(),
      "rome-out");
}

// --- SubmitToolOutputs ---

TEST_F(EngineTest, SubmitToolOutputsChecksTheExactSet) {
  provider_.Add(ToolReply({WeatherCall(), {"get_time", {"{}"}}}));
  provider_.Add(TextReply({"Done."}));
  const v1::Run run = Create(NewThread());
  const v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  const std::vector<std::string> ids = RequiredCallIds(waiting);
  ASSERT_THAT(ids, SizeIs(2));
  const size_t events_before = Events(run).size();

  // An id that is not pending.
  absl::Status unknown =
      TrySubmit(waiting, {{ids[0], "a"}, {"call_unknown", "b"}}).status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(unknown), "UNKNOWN_TOOL_CALL_ID");
  EXPECT_THAT(std::string(unknown.message()), HasSubstr("call_unknown"));
  ASSERT_TRUE(GetErrorInfo(unknown).has_value());
  EXPECT_EQ(GetErrorInfo(unknown)->metadata().at("field"),
            "tool_outputs[1].tool_call_id");

  // A pending call left unanswered.
  absl::Status missing = TrySubmit(waiting, {{ids[0], "a"}}).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(missing), "MISSING_TOOL_OUTPUT");
  EXPECT_THAT(std::string(missing.message()), HasSubstr(ids[1]));
  EXPECT_EQ(GetErrorInfo(missing)->metadata().at("field"), "tool_outputs");

  // The same id twice.
  absl::Status duplicate =
      TrySubmit(waiting, {{ids[0], "a"}, {ids[1], "b"}, {ids[0], "c"}})
          .status();
  EXPECT_EQ(duplicate.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(duplicate), "DUPLICATE_VALUE");
  EXPECT_THAT(std::string(duplicate.message()), HasSubstr(ids[0]));
  EXPECT_EQ(GetErrorInfo(duplicate)->metadata().at("field"),
            "tool_outputs[2].tool_call_id");

  // No outputs at all.
  absl::Status none = TrySubmit(waiting, {}).status();
  EXPECT_EQ(none.code(), absl::StatusCode::kInvalidArgument);

  // Another thread of the same store.
  const std::string other_thread = NewThread();
  absl::Status wrong_thread =
      TrySubmit(waiting, {{ids[0], "a"}, {ids[1], "b"}}, "", other_thread)
          .status();
  EXPECT_EQ(wrong_thread.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrorReason(wrong_thread), "RUN_NOT_FOUND");

  // None of that changed the run.
  EXPECT_EQ(Stored(run).status(), v1::RUN_STATUS_REQUIRES_ACTION);
  EXPECT_EQ(Events(run).size(), events_before);
  EXPECT_EQ(provider_.calls(), 1);

  // The exact set, in any order, is accepted.
  absl::StatusOr<v1::Run> accepted =
      TrySubmit(waiting, {{ids[1], "b"}, {ids[0], "a"}});
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_EQ(accepted->status(), v1::RUN_STATUS_QUEUED);
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);

  // Not awaiting outputs any more.
  absl::Status late =
      TrySubmit(waiting, {{ids[0], "a"}, {ids[1], "b"}}).status();
  EXPECT_EQ(late.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(late), "RUN_NOT_AWAITING_OUTPUTS");
}

TEST_F(EngineTest, SubmitToolOutputsToARunInProgressIsRefused) {
  Reply hanging;
  hanging.events = {TextDelta("Thinking")};
  hanging.Hang();
  provider_.Add(hanging);
  const v1::Run run = Create(NewThread());
  ASSERT_TRUE(provider_.WaitForCalls(1));
  WaitForStatus(run, v1::RUN_STATUS_IN_PROGRESS);
  absl::Status status = TrySubmit(run, {{"call_x", "a"}}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(status), "RUN_NOT_AWAITING_OUTPUTS");
  ASSERT_TRUE(GetErrorInfo(status).has_value());
  EXPECT_EQ(GetErrorInfo(status)->metadata().at("status"), "in_progress");
  ASSERT_TRUE(TryCancel(run).ok());
  WaitDone(run);
}

TEST_F(EngineTest, SubmitToolOutputsToUnknownRunIsNotFound) {
  v1::Run ghost;
  ghost.set_id(NewId(kRunPrefix));
  ghost.set_thread_id(NewThread());
  absl::Status status = TrySubmit(ghost, {{"call_x", "a"}}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrorReason(status), "RUN_NOT_FOUND");
}

TEST_F(EngineTest, SubmitToolOutputsIsIdempotentWithRequestId) {
  provider_.Add(ToolReply({WeatherCall()}));
  provider_.Add(TextReply({"Sunny."}));
  const v1::Run run = Create(NewThread());
  const v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  const std::string id = RequiredCallIds(waiting).at(0);

  absl::StatusOr<v1::Run> first = TrySubmit(waiting, {{id, "20C"}}, "submit-1");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->status(), v1::RUN_STATUS_QUEUED);
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);
  const size_t events_after = Events(run).size();

  // A retry replays the first answer, without a second transition.
  absl::StatusOr<v1::Run> retry = TrySubmit(waiting, {{id, "20C"}}, "submit-1");
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->id(), run.id());
  EXPECT_EQ(retry->status(), v1::RUN_STATUS_QUEUED);
  EXPECT_EQ(retry->SerializeAsString(), first->SerializeAsString());
  EXPECT_EQ(Events(run).size(), events_after);
  EXPECT_EQ(Count(Names(Events(run)), "thread.run.queued"), 2);
  EXPECT_EQ(provider_.calls(), 2);

  // The same key with other outputs is refused.
  absl::Status reused = TrySubmit(waiting, {{id, "25C"}}, "submit-1").status();
  EXPECT_EQ(reused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(reused), "IDEMPOTENCY_KEY_REUSED");
}

TEST_F(EngineTest, SubmitRetryWhileStillWaitingDoesNotTransitionTwice) {
  // The worker holds the run in_progress after the submit, so the retry
  // reaches the engine while the run is still active.
  dispatcher_.Serve("get_weather", "20C");
  dispatcher_.set_hold(true);
  provider_.Add(ToolReply({WeatherCall(), {"get_time", {"{}"}}}));
  provider_.Add(TextReply({"Ok."}));
  const v1::Run run = Create(NewThread());
  const v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  const std::string id = RequiredCallIds(waiting).at(0);
  ASSERT_TRUE(TrySubmit(waiting, {{id, "12:00"}}, "submit-2").ok());
  WaitForStatus(run, v1::RUN_STATUS_IN_PROGRESS);
  absl::StatusOr<v1::Run> retry =
      TrySubmit(waiting, {{id, "12:00"}}, "submit-2");
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->status(), v1::RUN_STATUS_QUEUED);
  EXPECT_EQ(dispatcher_.ReleaseAll(), 1);
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(Count(Names(Events(run)), "thread.run.requires_action"), 1);
  EXPECT_EQ(provider_.calls(), 2);
}

// --- Expiry ---

TEST_F(EngineTest, RequiresActionExpiresAfterTheEngineTimeout) {
  StopEngine();
  options_.requires_action_timeout_ms = 60'000;
  StartEngine();
  provider_.Add(ToolReply({WeatherCall()}));
  const v1::Run run = Create(NewThread());
  const v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  EXPECT_EQ(waiting.expires_at(), kStartSeconds + 60);
  EXPECT_EQ(timers_.pending(), 1u);

  // Not yet.
  clock_.Advance(std::chrono::seconds(59));
  EXPECT_EQ(timers_.RunDue(), 0);
  EXPECT_EQ(Stored(run).status(), v1::RUN_STATUS_REQUIRES_ACTION);

  clock_.Advance(std::chrono::seconds(2));
  EXPECT_EQ(timers_.RunDue(), 1);
  const v1::Run expired = WaitDone(run);
  EXPECT_EQ(expired.status(), v1::RUN_STATUS_EXPIRED);
  EXPECT_EQ(expired.expires_at(), kStartSeconds + 60);
  EXPECT_FALSE(expired.has_required_action());

  const std::vector<v1::RunEvent> events = Events(run);
  const std::vector<std::string> names = Names(events);
  ASSERT_GE(names.size(), 3u);
  EXPECT_EQ(names[names.size() - 3], "thread.run.step.expired");
  EXPECT_EQ(names[names.size() - 2], "thread.run.expired");
  EXPECT_EQ(names.back(), "done");
  ExpectConsecutive(events);
  ExpectRunPayloads(events, run.id());

  std::vector<v1::RunStep> steps = Steps(run);
  ASSERT_THAT(steps, SizeIs(1));
  EXPECT_EQ(steps[0].status(), v1::RUN_STEP_STATUS_EXPIRED);
  EXPECT_EQ(steps[0].expired_at(), kStartSeconds + 61);

  absl::Status late =
      TrySubmit(waiting, {{RequiredCallIds(waiting)[0], "x"}}).status();
  EXPECT_EQ(late.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(late), "RUN_NOT_AWAITING_OUTPUTS");
  EXPECT_EQ(provider_.calls(), 1);
}

TEST_F(EngineTest, RequiresActionTimeoutPerRequest) {
  provider_.Add(ToolReply({WeatherCall()}));
  v1::RunOptions options = Options();
  options.set_requires_action_timeout_seconds(5);
  const v1::Run run = Create(NewThread(), options);
  const v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  EXPECT_EQ(waiting.expires_at(), kStartSeconds + 5);
  clock_.Advance(std::chrono::seconds(4));
  EXPECT_EQ(timers_.RunDue(), 0);
  clock_.Advance(std::chrono::seconds(2));
  EXPECT_EQ(timers_.RunDue(), 1);
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_EXPIRED);
  EXPECT_EQ(Names(Events(run)).back(), "done");
}

TEST_F(EngineTest, SubmittingCancelsTheExpiryTimer) {
  provider_.Add(ToolReply({WeatherCall()}));
  provider_.Add(TextReply({"Sunny."}));
  const v1::Run run = Create(NewThread());
  const v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  EXPECT_EQ(timers_.pending(), 1u);
  SubmitAll(waiting, "20C");
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(timers_.pending(), 0u);
  clock_.Advance(std::chrono::hours(1));
  EXPECT_EQ(timers_.RunDue(), 0);
  EXPECT_EQ(Stored(run).status(), v1::RUN_STATUS_COMPLETED);
}

// --- Cancellation ---

TEST_F(EngineTest, CancelDuringAHangingTurn) {
  Reply hanging;
  hanging.events = {TextDelta("Let me th")};
  hanging.Hang();
  provider_.Add(hanging);
  const v1::Run run = Create(NewThread());
  ASSERT_TRUE(provider_.WaitForCalls(1));
  ASSERT_TRUE(WaitForEvent(run, "thread.message.delta"));

  absl::StatusOr<v1::Run> cancelling = TryCancel(run);
  ASSERT_TRUE(cancelling.ok()) << cancelling.status();
  EXPECT_EQ(cancelling->status(), v1::RUN_STATUS_CANCELLING);
  const v1::Run cancelled = WaitDone(run);
  EXPECT_EQ(cancelled.status(), v1::RUN_STATUS_CANCELLED);
  EXPECT_EQ(cancelled.cancelled_at(), kStartSeconds);
  EXPECT_TRUE(provider_.cancelled(0));

  const std::vector<v1::RunEvent> events = Events(run);
  const std::vector<std::string> names = Names(events);
  const int cancelling_at = IndexOf(names, "thread.run.cancelling");
  ASSERT_GE(cancelling_at, 0);
  EXPECT_GT(IndexOf(names, "thread.run.cancelled",
                    static_cast<size_t>(cancelling_at)),
            cancelling_at);
  EXPECT_EQ(names[names.size() - 2], "thread.run.cancelled");
  EXPECT_EQ(names.back(), "done");
  EXPECT_EQ(Count(names, "thread.run.cancelling"), 1);
  ExpectConsecutive(events);
  ExpectRunPayloads(events, run.id());

  // The half-written message is kept, incomplete.
  std::vector<v1::Message> messages = RunMessages(run);
  ASSERT_THAT(messages, SizeIs(1));
  EXPECT_EQ(messages[0].status(), v1::MESSAGE_STATUS_INCOMPLETE);
  EXPECT_EQ(Text(messages[0]), "Let me th");
  EXPECT_EQ(messages[0].incomplete_details().reason(), "run_cancelled");

  // Cancelling again: the run is over.
  absl::Status again = TryCancel(run).status();
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(again), "RUN_NOT_ACTIVE");
}

TEST_F(EngineTest, CancelInRequiresAction) {
  provider_.Add(ToolReply({WeatherCall()}));
  const v1::Run run = Create(NewThread());
  WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  ASSERT_EQ(timers_.pending(), 1u);

  absl::StatusOr<v1::Run> reply = TryCancel(run);
  ASSERT_TRUE(reply.ok()) << reply.status();
  // Nothing was in flight: the run is cancelled at once.
  EXPECT_EQ(reply->status(), v1::RUN_STATUS_CANCELLED);
  // The reply comes after the cancellation is durable: the store already
  // says so, and the thread takes a new run right away.
  absl::StatusOr<v1::Run> stored = store_->GetRun(run.thread_id(), run.id());
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->status(), v1::RUN_STATUS_CANCELLED);
  const v1::Run cancelled = WaitDone(run);
  EXPECT_EQ(cancelled.status(), v1::RUN_STATUS_CANCELLED);
  EXPECT_FALSE(cancelled.has_required_action());
  EXPECT_EQ(timers_.pending(), 0u);

  const std::vector<std::string> names = Names(Events(run));
  ASSERT_GE(names.size(), 5u);
  EXPECT_THAT(
      std::vector<std::string>(names.end() - 5, names.end()),
      ElementsAre("thread.run.requires_action", "thread.run.cancelling",
                  "thread.run.step.cancelled", "thread.run.cancelled", "done"));
  std::vector<v1::RunStep> steps = Steps(run);
  ASSERT_THAT(steps, SizeIs(1));
  EXPECT_EQ(steps[0].status(), v1::RUN_STEP_STATUS_CANCELLED);
  EXPECT_TRUE(steps[0].has_cancelled_at());
  EXPECT_EQ(provider_.calls(), 1);
}

TEST_F(EngineTest, CancelAQueuedRunWaitingBehindAnother) {
  Reply hanging;
  hanging.Hang();
  hanging.after_release = TextReply({"First done."}).events;
  provider_.Add(hanging);
  const std::string thread = NewThread();
  const v1::Run first = Create(thread);
  ASSERT_TRUE(provider_.WaitForCalls(1));
  WaitForStatus(first, v1::RUN_STATUS_IN_PROGRESS);

  v1::RunOptions queued_options = Options();
  queued_options.set_active_run_policy(v1::ACTIVE_RUN_POLICY_QUEUE);
  const v1::Run second = Create(thread, queued_options);
  EXPECT_EQ(second.status(), v1::RUN_STATUS_QUEUED);

  absl::StatusOr<v1::Run> reply = TryCancel(second);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->status(), v1::RUN_STATUS_CANCELLED);
  EXPECT_EQ(WaitDone(second).status(), v1::RUN_STATUS_CANCELLED);
  EXPECT_THAT(
      Names(Events(second)),
      ElementsAre("thread.run.created", "thread.run.queued",
                  "thread.run.cancelling", "thread.run.cancelled", "done"));
  // The first run is untouched and finishes; the cancelled one never starts.
  EXPECT_EQ(Stored(first).status(), v1::RUN_STATUS_IN_PROGRESS);
  ASSERT_TRUE(provider_.Release(0));
  EXPECT_EQ(WaitDone(first).status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(provider_.calls(), 1);
  EXPECT_EQ(Stored(second).status(), v1::RUN_STATUS_CANCELLED);
}

TEST_F(EngineTest, CancelIsIdempotentWhileCancelling) {
  Reply slow;
  slow.events = {TextDelta("Hm")};
  slow.Hang();
  slow.ignore_cancel = true;  // the upstream takes its time to stop
  provider_.Add(slow);
  const v1::Run run = Create(NewThread());
  ASSERT_TRUE(WaitForEvent(run, "thread.message.delta"));
  absl::StatusOr<v1::Run> first = TryCancel(run);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->status(), v1::RUN_STATUS_CANCELLING);
  absl::StatusOr<v1::Run> second = TryCancel(run);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->status(), v1::RUN_STATUS_CANCELLING);
  EXPECT_EQ(Stored(run).status(), v1::RUN_STATUS_CANCELLING);
  EXPECT_EQ(Count(Names(Events(run)), "thread.run.cancelling"), 1);
  EXPECT_TRUE(provider_.cancelled(0));
  // The upstream finally stops.
  ASSERT_TRUE(provider_.Release(0));
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_CANCELLED);
  EXPECT_EQ(Names(Events(run)).back(), "done");
}

TEST_F(EngineTest, CancelWhileAWorkerRuns) {
  dispatcher_.Serve("get_weather", "{\"temp\":21}");
  dispatcher_.set_hold(true);
  provider_.Add(ToolReply({WeatherCall()}));
  const v1::Run run = Create(NewThread());
  ASSERT_TRUE(WaitUntil([&] { return dispatcher_.invocations().size() == 1; }));
  absl::StatusOr<v1::Run> reply = TryCancel(run);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->status(), v1::RUN_STATUS_CANCELLED);
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_CANCELLED);
  const size_t events = Events(run).size();
  // The late output changes nothing.
  EXPECT_EQ(dispatcher_.ReleaseAll(), 1);
  engine_->FlushForTesting();
  EXPECT_EQ(Events(run).size(), events);
  EXPECT_EQ(provider_.calls(), 1);
  std::vector<v1::RunStep> steps = Steps(run);
  ASSERT_THAT(steps, SizeIs(1));
  EXPECT_EQ(steps[0].status(), v1::RUN_STEP_STATUS_CANCELLED);
  // The dispatcher was told to give up on the run's calls.
  EXPECT_THAT(dispatcher_.cancelled_runs(), ElementsAre(run.id()));
}

TEST_F(EngineTest, CancelACompletedRunIsRefused) {
  provider_.Add(TextReply({"Hi."}));
  const v1::Run run = Create(NewThread());
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);
  absl::Status status = TryCancel(run).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(status), "RUN_NOT_ACTIVE");
  ASSERT_TRUE(GetErrorInfo(status).has_value());
  EXPECT_EQ(GetErrorInfo(status)->metadata().at("run_id"), run.id());
  EXPECT_EQ(GetErrorInfo(status)->metadata().at("status"), "completed");
}

TEST_F(EngineTest, CancelUnknownRunIsNotFound) {
  v1::Run ghost;
  ghost.set_id(NewId(kRunPrefix));
  ghost.set_thread_id(NewThread());
  absl::Status status = TryCancel(ghost).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrorReason(status), "RUN_NOT_FOUND");
}

// --- The RunObserver hook (metrics) ---

// Records what the engine reports; the engine calls from its threads.
class RecordingRunObserver : public RunObserver {
 public:
  void OnRunEnded(v1::RunStatus status, int64_t duration_ms) override {
    absl::MutexLock lock(&mu_);
    ended_.emplace_back(status, duration_ms);
  }
  std::vector<std::pair<v1::RunStatus, int64_t>> ended() const {
    absl::MutexLock lock(&mu_);
    return ended_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::pair<v1::RunStatus, int64_t>> ended_ ABSL_GUARDED_BY(mu_);
};

TEST_F(EngineTest, ObserverHearsEachTerminalStatusOnceWithItsDuration) {
  RecordingRunObserver observer;
  StopEngine();
  options_.observer = &observer;
  StartEngine();

  provider_.Add(ToolReply({WeatherCall()}));
  provider_.Add(TextReply({"Sunny."}));
  const v1::Run run = Create(NewThread());
  const v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  EXPECT_TRUE(observer.ended().empty());  // requires_action is not the end
  clock_.Advance(std::chrono::milliseconds(2500));
  SubmitAll(waiting, "20C");
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);

  provider_.Add(testing::ErrorReply({}, absl::UnavailableError("upstream down"),
                                    "server_error"));
  EXPECT_EQ(WaitDone(Create(NewThread())).status(), v1::RUN_STATUS_FAILED);

  EXPECT_THAT(observer.ended(),
              ElementsAre(std::make_pair(v1::RUN_STATUS_COMPLETED, 2500),
                          std::make_pair(v1::RUN_STATUS_FAILED, 0)));
}

// One "run ended" line per run, once its end is durable, with the ids a
// log search needs and why it ended.
TEST_F(EngineTest, EndedRunsAreLoggedOnceWithIdsStatusAndTokens) {
  absl::Mutex mu;
  std::vector<nlohmann::json> lines;
  SetLogSink([&](absl::string_view line) {
    nlohmann::json parsed = nlohmann::json::parse(line, nullptr, false);
    if (parsed.is_object() && parsed.value("msg", "") == "run ended") {
      absl::MutexLock lock(&mu);
      lines.push_back(std::move(parsed));
    }
  });
  provider_.Add(TextReply({"Sunny."}, 12, 3));
  const v1::Run completed = Create(NewThread());
  EXPECT_EQ(WaitDone(completed).status(), v1::RUN_STATUS_COMPLETED);
  provider_.Add(testing::ErrorReply({}, absl::UnavailableError("upstream down"),
                                    "server_error"));
  const v1::Run failed = Create(NewThread());
  EXPECT_EQ(WaitDone(failed).status(), v1::RUN_STATUS_FAILED);
  auto both_logged = [&] {
    absl::MutexLock lock(&mu);
    return lines.size() >= 2;
  };
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!both_logged() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  SetLogSink(nullptr);
  absl::MutexLock lock(&mu);
  ASSERT_EQ(lines.size(), 2u);
  const nlohmann::json& ok = lines[0];
  EXPECT_EQ(ok["level"], "info");
  EXPECT_EQ(ok["run_id"], completed.id());
  EXPECT_EQ(ok["thread_id"], completed.thread_id());
  EXPECT_EQ(ok["assistant_id"], completed.assistant_id());
  EXPECT_EQ(ok["status"], "completed");
  EXPECT_EQ(ok["prompt_tokens"], 12);
  EXPECT_EQ(ok["completion_tokens"], 3);
  EXPECT_FALSE(ok.contains("error_code"));
  const nlohmann::json& bad = lines[1];
  EXPECT_EQ(bad["level"], "warning");
  EXPECT_EQ(bad["run_id"], failed.id());
  EXPECT_EQ(bad["status"], "failed");
  EXPECT_EQ(bad["error_code"], "server_error");
}

// --- Failures and budgets ---

TEST_F(EngineTest, ProviderFailureFailsTheRun) {
  provider_.Add(
      testing::ErrorReply({TextDelta("Partial ans")},
                          absl::ResourceExhaustedError("upstream said 429"),
                          "rate_limit_exceeded"));
  const v1::Run run = Create(NewThread());
  const v1::Run failed = WaitDone(run);
  EXPECT_EQ(failed.status(), v1::RUN_STATUS_FAILED);
  EXPECT_EQ(failed.last_error().code(), "rate_limit_exceeded");
  EXPECT_EQ(failed.last_error().message(), "upstream said 429");
  EXPECT_EQ(failed.failed_at(), kStartSeconds);
  EXPECT_FALSE(failed.has_completed_at());

  const std::vector<std::string> names = Names(Events(run));
  EXPECT_THAT(names, Contains("thread.message.incomplete"));
  EXPECT_EQ(names[names.size() - 2], "thread.run.failed");
  EXPECT_EQ(names.back(), "done");
  ExpectConsecutive(Events(run));

  std::vector<v1::Message> messages = RunMessages(run);
  ASSERT_THAT(messages, SizeIs(1));
  EXPECT_EQ(messages[0].status(), v1::MESSAGE_STATUS_INCOMPLETE);
  EXPECT_EQ(Text(messages[0]), "Partial ans");
  EXPECT_EQ(messages[0].incomplete_details().reason(), "run_failed");
  EXPECT_TRUE(messages[0].has_incomplete_at());
}

TEST_F(EngineTest, ProviderFailureDuringToolCallsFailsTheStep) {
  Reply reply = ToolReply({WeatherCall()});
  reply.events.pop_back();  // no kFinished: the turn breaks
  reply.error =
      upstream::TurnError{absl::UnavailableError("connection reset"), ""};
  provider_.Add(reply);
  const v1::Run run = Create(NewThread());
  const v1::Run failed = WaitDone(run);
  EXPECT_EQ(failed.status(), v1::RUN_STATUS_FAILED);
  EXPECT_EQ(failed.last_error().code(), "server_error");
  std::vector<v1::RunStep> steps = Steps(run);
  ASSERT_THAT(steps, SizeIs(1));
  EXPECT_EQ(steps[0].status(), v1::RUN_STEP_STATUS_FAILED);
  EXPECT_EQ(steps[0].last_error().code(), "server_error");
  EXPECT_TRUE(steps[0].has_failed_at());
  EXPECT_THAT(Names(Events(run)), Not(Contains("thread.run.requires_action")));
}

TEST_F(EngineTest, UnresolvableUpstreamIsRefusedAtCreation) {
  v1::Assistant assistant = assistant_;
  assistant.set_id(NewId(kAssistantPrefix));
  assistant.set_upstream("missing");
  ASSERT_TRUE(
      store_->CreateAssistant(assistant, kDefaultProject, nullptr).ok());
  v1::RunOptions options = Options();
  options.set_assistant_id(assistant.id());
  absl::Status status = TryCreate(NewThread(), options).status();
  EXPECT_EQ(ErrorReason(status), "UPSTREAM_UNKNOWN");
  EXPECT_EQ(provider_.calls(), 0);
}

TEST_F(EngineTest, CompletionBudgetSpentEndsIncomplete) {
  provider_.Add(ToolReply({WeatherCall()}, /*prompt=*/10, /*completion=*/100));
  v1::RunOptions options = Options();
  options.set_max_completion_tokens(100);
  const v1::Run run = Create(NewThread(), options);
  const v1::Run incomplete = WaitDone(run);
  EXPECT_EQ(incomplete.status(), v1::RUN_STATUS_INCOMPLETE);
  EXPECT_EQ(incomplete.incomplete_details().reason(), "max_completion_tokens");
  EXPECT_EQ(provider_.turn(0).max_output_tokens, 100);
  const std::vector<std::string> names = Names(Events(run));
  EXPECT_THAT(names, Not(Contains("thread.run.requires_action")));
  EXPECT_EQ(names[names.size() - 2], "thread.run.incomplete");
  EXPECT_EQ(names.back(), "done");
  ExpectRunPayloads(Events(run), run.id());
}

TEST_F(EngineTest, FinishLengthEndsIncomplete) {
  Reply reply;
  reply.events = {TextDelta("A very long ans"), UsageEvent(10, 16),
                  FinishedEvent(upstream::FinishReason::kLength)};
  provider_.Add(reply);
  v1::RunOptions options = Options();
  options.set_max_completion_tokens(16);
  const v1::Run run = Create(NewThread(), options);
  const v1::Run incomplete = WaitDone(run);
  EXPECT_EQ(incomplete.status(), v1::RUN_STATUS_INCOMPLETE);
  EXPECT_EQ(incomplete.incomplete_details().reason(), "max_completion_tokens");
  std::vector<v1::Message> messages = RunMessages(run);
  ASSERT_THAT(messages, SizeIs(1));
  EXPECT_EQ(messages[0].status(), v1::MESSAGE_STATUS_INCOMPLETE);
  EXPECT_EQ(messages[0].incomplete_details().reason(), "max_tokens");
  EXPECT_EQ(Names(Events(run)).back(), "done");
}

TEST_F(EngineTest, MaxOutputTokensIsWhatIsLeftOfTheBudget) {
  provider_.Add(ToolReply({WeatherCall()}, /*prompt=*/10, /*completion=*/30));
  provider_.Add(TextReply({"Sunny."}, 10, 5));
  v1::RunOptions options = Options();
  options.set_max_completion_tokens(100);
  const v1::Run run = Create(NewThread(), options);
  SubmitAll(WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION), "20C");
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);
  ASSERT_EQ(provider_.calls(), 2);
  EXPECT_EQ(provider_.turn(0).max_output_tokens, 100);
  EXPECT_EQ(provider_.turn(1).max_output_tokens, 70);
}

TEST_F(EngineTest, PromptBudgetExceededEndsIncomplete) {
  provider_.Add(TextReply({"Hi."}, /*prompt=*/400, /*completion=*/5));
  v1::RunOptions options = Options();
  options.set_max_prompt_tokens(300);
  const v1::Run run = Create(NewThread(), options);
  const v1::Run incomplete = WaitDone(run);
  EXPECT_EQ(incomplete.status(), v1::RUN_STATUS_INCOMPLETE);
  EXPECT_EQ(incomplete.incomplete_details().reason(), "max_prompt_tokens");
  EXPECT_EQ(Names(Events(run)).back(), "done");
}

TEST_F(EngineTest, PromptBudgetExceededWithToolCallsEndsIncomplete) {
  provider_.Add(ToolReply({WeatherCall()}, /*prompt=*/400, /*completion=*/5));
  v1::RunOptions options = Options();
  options.set_max_prompt_tokens(300);
  const v1::Run run = Create(NewThread(), options);
  const v1::Run incomplete = WaitDone(run);
  EXPECT_EQ(incomplete.status(), v1::RUN_STATUS_INCOMPLETE);
  EXPECT_EQ(incomplete.incomplete_details().reason(), "max_prompt_tokens");
  EXPECT_THAT(Names(Events(run)), Not(Contains("thread.run.requires_action")));
}

TEST_F(EngineTest, MaxTurnsGuardFailsALoopingRun) {
  StopEngine();
  options_.max_turns = 2;
  StartEngine();
  dispatcher_.Serve("get_weather", "20C");
  for (int i = 0; i < 3; ++i) provider_.Add(ToolReply({WeatherCall()}));
  const v1::Run run = Create(NewThread());
  const v1::Run failed = WaitDone(run);
  EXPECT_EQ(failed.status(), v1::RUN_STATUS_FAILED);
  EXPECT_EQ(failed.last_error().code(), "server_error");
  EXPECT_EQ(provider_.calls(), 2);
}

// --- The one-active-run-per-thread policy ---

class ActiveRunPolicyTest : public EngineTest {
 protected:
  // A first run that hangs until released (then answers "First done.").
  v1::Run StartHangingRun(const std::string& thread) {
    Reply hanging;
    hanging.Hang();
    hanging.after_release = TextReply({"First done."}).events;
    provider_.Add(hanging);
    const int calls = provider_.calls();
    const v1::Run run = Create(thread);
    EXPECT_TRUE(provider_.WaitForCalls(calls + 1));
    WaitForStatus(run, v1::RUN_STATUS_IN_PROGRESS);
    return run;
  }
};

TEST_F(ActiveRunPolicyTest, RejectNamesTheActiveRun) {
  const std::string thread = NewThread();
  const v1::Run first = StartHangingRun(thread);
  for (v1::ActiveRunPolicy policy :
       {v1::ACTIVE_RUN_POLICY_UNSPECIFIED, v1::ACTIVE_RUN_POLICY_REJECT}) {
    v1::RunOptions options = Options();
    options.set_active_run_policy(policy);
    absl::Status status = TryCreate(thread, options).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(ErrorReason(status), "THREAD_HAS_ACTIVE_RUN");
    ASSERT_TRUE(GetErrorInfo(status).has_value());
    EXPECT_EQ(GetErrorInfo(status)->metadata().at("run_id"), first.id());
  }
  // Nothing was stored for the refused runs.
  v1::ListRunsRequest list;
  list.set_thread_id(thread);
  absl::StatusOr<v1::ListRunsResponse> runs = engine_->ListRuns(list);
  ASSERT_TRUE(runs.ok());
  EXPECT_EQ(runs->data_size(), 1);
  ASSERT_TRUE(provider_.Release(0));
  EXPECT_EQ(WaitDone(first).status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(engine_->hub()->live_runs(), 0u);
}

TEST_F(ActiveRunPolicyTest, QueueWaitsForTheActiveRun) {
  const std::string thread = NewThread();
  const v1::Run first = StartHangingRun(thread);
  provider_.Add(TextReply({"Second done."}));
  v1::RunOptions options = Options();
  options.set_active_run_policy(v1::ACTIVE_RUN_POLICY_QUEUE);
  const v1::Run second = Create(thread, options);
  EXPECT_EQ(second.status(), v1::RUN_STATUS_QUEUED);
  engine_->FlushForTesting();
  EXPECT_EQ(Stored(second).status(), v1::RUN_STATUS_QUEUED);
  EXPECT_EQ(provider_.calls(), 1);
  EXPECT_EQ(engine_->active_runs(), 2u);

  clock_.Advance(std::chrono::seconds(5));
  ASSERT_TRUE(provider_.Release(0));
  const v1::Run first_done = WaitDone(first);
  const v1::Run second_done = WaitDone(second);
  EXPECT_EQ(first_done.status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(second_done.status(), v1::RUN_STATUS_COMPLETED);
  // Timestamps follow the clock: the second run started when the first
  // ended, not when it was created.
  EXPECT_EQ(first_done.started_at(), kStartSeconds);
  EXPECT_EQ(first_done.completed_at(), kStartSeconds + 5);
  EXPECT_EQ(second_done.created_at(), kStartSeconds);
  EXPECT_EQ(second_done.started_at(), kStartSeconds + 5);
  ASSERT_EQ(provider_.calls(), 2);
  // The second run sees the first one's answer.
  EXPECT_THAT(
      ItemTexts(provider_.turn(1)),
      ElementsAre(absl::StrCat("user:", kQuestion), "assistant:First done."));
  const std::vector<std::string> names = Names(Events(second));
  EXPECT_EQ(names[0], "thread.run.created");
  EXPECT_EQ(names[1], "thread.run.queued");
  EXPECT_EQ(names[2], "thread.run.in_progress");
  EXPECT_EQ(names.back(), "done");
}

TEST_F(ActiveRunPolicyTest, DefaultPolicyFromEngineOptions) {
  StopEngine();
  options_.default_active_run_policy = v1::ACTIVE_RUN_POLICY_QUEUE;
  StartEngine();
  const std::string thread = NewThread();
  const v1::Run first = StartHangingRun(thread);
  provider_.Add(TextReply({"Second done."}));
  const v1::Run second = Create(thread);  // policy unspecified
  EXPECT_EQ(second.status(), v1::RUN_STATUS_QUEUED);
  ASSERT_TRUE(provider_.Release(0));
  EXPECT_EQ(WaitDone(second).status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(Stored(first).status(), v1::RUN_STATUS_COMPLETED);
}

TEST_F(ActiveRunPolicyTest, InterruptCancelsTheActiveRun) {
  const std::string thread = NewThread();
  const v1::Run first = StartHangingRun(thread);
  provider_.Add(TextReply({"Second done."}));
  v1::RunOptions options = Options();
  options.set_active_run_policy(v1::ACTIVE_RUN_POLICY_INTERRUPT);
  const v1::Run second = Create(thread, options);
  ASSERT_FALSE(second.id().empty());
  // The first run was cancelled before the second was stored.
  EXPECT_EQ(Stored(first).status(), v1::RUN_STATUS_CANCELLED);
  EXPECT_TRUE(provider_.cancelled(0));
  EXPECT_THAT(Names(Events(first)), Contains("thread.run.cancelling"));
  EXPECT_EQ(WaitDone(second).status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(provider_.calls(), 2);
}

TEST_F(ActiveRunPolicyTest, InterruptGivesUpWhenTheActiveRunDoesNotStop) {
  StopEngine();
  options_.interrupt_wait_ms = 50;
  StartEngine();
  const std::string thread = NewThread();
  Reply slow;
  slow.Hang();
  slow.ignore_cancel = true;
  provider_.Add(slow);
  const v1::Run first = Create(thread);
  WaitForStatus(first, v1::RUN_STATUS_IN_PROGRESS);
  v1::RunOptions options = Options();
  options.set_active_run_policy(v1::ACTIVE_RUN_POLICY_INTERRUPT);
  absl::Status status = TryCreate(thread, options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorReason(status), "RUN_INTERRUPT_TIMEOUT");
  EXPECT_EQ(WaitForStatus(first, v1::RUN_STATUS_CANCELLING).status(),
            v1::RUN_STATUS_CANCELLING);
  ASSERT_TRUE(provider_.Release(0));
  EXPECT_EQ(WaitDone(first).status(), v1::RUN_STATUS_CANCELLED);
  // Now the thread is free.
  provider_.Add(TextReply({"Second."}));
  const v1::Run second = Create(thread, options);
  EXPECT_EQ(WaitDone(second).status(), v1::RUN_STATUS_COMPLETED);
}

TEST_F(ActiveRunPolicyTest, InterruptByAnInvalidRequestKeepsTheActiveRun) {
  // A request that cannot start a run (unknown assistant) must not cancel
  // the run it would have replaced.
  const std::string thread = NewThread();
  const v1::Run first = StartHangingRun(thread);
  v1::RunOptions options = Options();
  options.set_assistant_id(NewId(kAssistantPrefix));
  options.set_active_run_policy(v1::ACTIVE_RUN_POLICY_INTERRUPT);
  absl::Status status = TryCreate(thread, options).status();
  EXPECT_EQ(ErrorReason(status), "ASSISTANT_NOT_FOUND");
  EXPECT_FALSE(provider_.cancelled(0));
  EXPECT_EQ(Stored(first).status(), v1::RUN_STATUS_IN_PROGRESS);
  if (provider_.Release(0)) {
    EXPECT_EQ(WaitDone(first).status(), v1::RUN_STATUS_COMPLETED);
  } else {
    WaitDone(first);
  }
}

TEST_F(ActiveRunPolicyTest, CreateMessageOnAThreadWithAnActiveRunFails) {
  const std::string thread = NewThread();
  const v1::Run first = StartHangingRun(thread);
  v1::MessageInput input;
  input.set_role(v1::MESSAGE_ROLE_USER);
  input.set_text("Also: Rome?");
  absl::Status status =
      store_->CreateMessage(NewMessage(input, thread, kStartSeconds), nullptr);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(status), "THREAD_HAS_ACTIVE_RUN");
  ASSERT_TRUE(provider_.Release(0));
  WaitDone(first);
  EXPECT_TRUE(
      store_->CreateMessage(NewMessage(input, thread, kStartSeconds), nullptr)
          .ok());
}

// --- Creation ---

TEST_F(EngineTest, CreateRunIsIdempotentWithRequestId) {
  provider_.Add(TextReply({"Once."}));
  const std::string thread = NewThread();
  absl::StatusOr<v1::Run> first = TryCreate(thread, Options(), "create-1");
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<v1::Run> retry = TryCreate(thread, Options(), "create-1");
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->id(), first->id());
  WaitDone(*first);
  // Also after the run ended.
  absl::StatusOr<v1::Run> late = TryCreate(thread, Options(), "create-1");
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_EQ(late->id(), first->id());

  v1::ListRunsRequest list;
  list.set_thread_id(thread);
  absl::StatusOr<v1::ListRunsResponse> runs = engine_->ListRuns(list);
  ASSERT_TRUE(runs.ok());
  EXPECT_EQ(runs->data_size(), 1);
  EXPECT_EQ(provider_.calls(), 1);

  v1::RunOptions other = Options();
  other.set_model("gpt-other");
  absl::Status reused = TryCreate(thread, other, "create-1").status();
  EXPECT_EQ(reused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(reused), "IDEMPOTENCY_KEY_REUSED");
}

TEST_F(EngineTest, CreateRunValidates) {
  const std::string thread = NewThread();
  v1::RunOptions no_assistant;
  EXPECT_EQ(TryCreate(thread, no_assistant).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TryCreate("not-a-thread", Options()).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status missing_thread =
      TryCreate(NewId(kThreadPrefix), Options()).status();
  EXPECT_EQ(ErrorReason(missing_thread), "THREAD_NOT_FOUND");
  v1::RunOptions ghost = Options();
  ghost.set_assistant_id(NewId(kAssistantPrefix));
  EXPECT_EQ(ErrorReason(TryCreate(thread, ghost).status()),
            "ASSISTANT_NOT_FOUND");
  EXPECT_EQ(provider_.calls(), 0);
}

TEST_F(EngineTest, CreateThreadAndRunCreatesTheThreadWithItsMessages) {
  provider_.Add(TextReply({"Hello!"}));
  v1::CreateThreadAndRunRequest request;
  for (const char* text : {"first", "second"}) {
    v1::MessageInput* input = request.mutable_thread()->add_messages();
    input->set_role(v1::MESSAGE_ROLE_USER);
    input->set_text(text);
  }
  (*request.mutable_thread()->mutable_metadata())["k"] = "v";
  request.mutable_thread()
      ->mutable_tool_resources()
      ->mutable_code_interpreter()
      ->add_file_ids("file_thread");
  *request.mutable_options() = Options();
  absl::StatusOr<v1::CreateThreadAndRunResponse> created =
      engine_->CreateThreadAndRun(kDefaultProject, request);
  ASSERT_TRUE(created.ok()) << created.status();
  const v1::Run run = created->run();
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);

  absl::StatusOr<v1::Thread> thread = store_->GetThread(run.thread_id());
  ASSERT_TRUE(thread.ok()) << thread.status();
  EXPECT_EQ(thread->metadata().at("k"), "v");
  ListQuery query;
  query.ascending = true;
  absl::StatusOr<Page<v1::Message>> messages =
      store_->ListMessages(run.thread_id(), "", query);
  ASSERT_TRUE(messages.ok());
  ASSERT_THAT(messages->items, SizeIs(3));
  EXPECT_EQ(Text(messages->items[0]), "first");
  EXPECT_EQ(Text(messages->items[1]), "second");
  EXPECT_EQ(messages->items[2].run_id(), run.id());

  const std::vector<v1::RunEvent> events = Events(run);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].event(), "thread.created");
  EXPECT_EQ(events[0].thread().metadata().at("k"), "v");
  EXPECT_THAT(ItemTexts(provider_.turn(0)),
              ElementsAre("user:first", "user:second"));
  EXPECT_THAT(provider_.turn(0).code_interpreter_file_ids,
              ElementsAre("file_thread"));
}

TEST_F(EngineTest, AssistantResourcesApplyWhenTheThreadHasNone) {
  // A thread created without tool_resources must not hide the assistant's.
  v1::Assistant assistant = assistant_;
  assistant.set_id(NewId(kAssistantPrefix));
  assistant.mutable_tool_resources()->mutable_code_interpreter()->add_file_ids(
      "file_assistant");
  ASSERT_TRUE(
      store_->CreateAssistant(assistant, kDefaultProject, nullptr).ok());
  provider_.Add(TextReply({"Hello!"}));
  v1::CreateThreadAndRunRequest request;
  v1::MessageInput* input = request.mutable_thread()->add_messages();
  input->set_role(v1::MESSAGE_ROLE_USER);
  input->set_text("hi");
  *request.mutable_options() = Options();
  request.mutable_options()->set_assistant_id(assistant.id());
  absl::StatusOr<v1::CreateThreadAndRunResponse> created =
      engine_->CreateThreadAndRun(kDefaultProject, request);
  ASSERT_TRUE(created.ok()) << created.status();
  WaitDone(created->run());
  ASSERT_EQ(provider_.calls(), 1);
  EXPECT_THAT(provider_.turn(0).code_interpreter_file_ids,
              ElementsAre("file_assistant"));
}

TEST_F(EngineTest, CreateThreadAndRunIsIdempotentWithRequestId) {
  provider_.Add(TextReply({"Once."}));
  v1::CreateThreadAndRunRequest request;
  v1::MessageInput* input = request.mutable_thread()->add_messages();
  input->set_role(v1::MESSAGE_ROLE_USER);
  input->set_text("hi");
  *request.mutable_options() = Options();
  request.set_request_id("thread-and-run-1");
  absl::StatusOr<v1::CreateThreadAndRunResponse> first =
      engine_->CreateThreadAndRun(kDefaultProject, request);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<v1::CreateThreadAndRunResponse> retry =
      engine_->CreateThreadAndRun(kDefaultProject, request);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->run().id(), first->run().id());
  EXPECT_EQ(retry->run().thread_id(), first->run().thread_id());
  WaitDone(first->run());
  EXPECT_EQ(provider_.calls(), 1);
}

TEST_F(EngineTest, CreateThreadAndRunRefusesAdditionalFields) {
  v1::CreateThreadAndRunRequest request;
  *request.mutable_options() = Options();
  request.mutable_options()->set_additional_instructions("more");
  absl::Status status =
      engine_->CreateThreadAndRun(kDefaultProject, request).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(EngineTest, AdditionalMessagesAndInstructionsReachTheTurn) {
  provider_.Add(TextReply({"Ok."}));
  const std::string thread = NewThread();
  v1::RunOptions options = Options();
  options.set_additional_instructions("Answer in French.");
  v1::MessageInput* extra = options.add_additional_messages();
  extra->set_role(v1::MESSAGE_ROLE_USER);
  extra->set_text("And tomorrow?");
  const v1::Run run = Create(thread, options);
  EXPECT_EQ(run.instructions(), "You are a weather bot.\n\nAnswer in French.");
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);
  ASSERT_EQ(provider_.calls(), 1);
  EXPECT_EQ(provider_.turn(0).instructions,
            "You are a weather bot.\n\nAnswer in French.");
  EXPECT_THAT(
      ItemTexts(provider_.turn(0)),
      ElementsAre(absl::StrCat("user:", kQuestion), "user:And tomorrow?"));
  // The additional message is part of the thread now.
  ListQuery query;
  query.ascending = true;
  absl::StatusOr<Page<v1::Message>> messages =
      store_->ListMessages(thread, "", query);
  ASSERT_TRUE(messages.ok());
  ASSERT_GE(messages->items.size(), 2u);
  EXPECT_EQ(Text(messages->items[1]), "And tomorrow?");
}

TEST_F(EngineTest, OverridesReachTheTurnAndTheRun) {
  provider_.Add(TextReply({"Ok."}));
  v1::RunOptions options = Options();
  options.set_model("gpt-override");
  options.set_instructions("Only haiku.");
  options.set_temperature(0.25);
  options.set_top_p(0.5);
  options.set_parallel_tool_calls(false);
  auto* fn = options.add_tools()->mutable_function()->mutable_function();
  fn->set_name("lookup");
  (*options.mutable_metadata())["team"] = "weather";
  const v1::Run run = Create(NewThread(), options);
  EXPECT_EQ(run.model(), "gpt-override");
  EXPECT_EQ(run.instructions(), "Only haiku.");
  EXPECT_EQ(run.temperature(), 0.25);
  EXPECT_EQ(run.top_p(), 0.5);
  EXPECT_FALSE(run.parallel_tool_calls());
  ASSERT_EQ(run.tools_size(), 1);
  EXPECT_EQ(run.tools(0).function().function().name(), "lookup");
  EXPECT_EQ(run.metadata().at("team"), "weather");
  EXPECT_EQ(run.upstream(), "fake");
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);

  const upstream::Turn turn = provider_.turn(0);
  EXPECT_EQ(turn.model, "gpt-override");
  EXPECT_EQ(turn.instructions, "Only haiku.");
  EXPECT_EQ(turn.temperature, 0.25);
  EXPECT_EQ(turn.top_p, 0.5);
  EXPECT_FALSE(turn.parallel_tool_calls);
  ASSERT_EQ(turn.tools.size(), 1u);
  EXPECT_EQ(turn.tools[0].function().function().name(), "lookup");
}

TEST_F(EngineTest, WithoutOverridesTheAssistantsSettingsApply) {
  provider_.Add(TextReply({"Ok."}));
  const v1::Run run = Create(NewThread());
  EXPECT_EQ(run.model(), "gpt-test");
  EXPECT_EQ(run.tools_size(), 2);
  EXPECT_TRUE(run.parallel_tool_calls());
  EXPECT_EQ(run.truncation_strategy().type(),
            v1::TruncationStrategy::TYPE_AUTO);
  EXPECT_EQ(run.tool_choice().mode(), v1::ToolChoice::MODE_AUTO);
  WaitDone(run);
  const upstream::Turn turn = provider_.turn(0);
  EXPECT_EQ(turn.tools.size(), 2u);
  EXPECT_FALSE(turn.temperature.has_value());
}

TEST_F(EngineTest, OverrideToolsWithNoTools) {
  provider_.Add(TextReply({"Ok."}));
  v1::RunOptions options = Options();
  options.set_override_tools(true);
  const v1::Run run = Create(NewThread(), options);
  EXPECT_EQ(run.tools_size(), 0);
  WaitDone(run);
  EXPECT_THAT(provider_.turn(0).tools, IsEmpty());
}

TEST_F(EngineTest, StoppedEngineRefusesNewRuns) {
  engine_->Stop();
  absl::Status status = TryCreate(NewThread(), Options()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorReason(status), "GATEWAY_DRAINING");
}

// --- Streaming details ---

TEST_F(EngineTest, ToolCallDoneSendsTheArgumentsTheDeltasMissed) {
  Reply reply;
  reply.events = testing::CallEvents(0, {"get_weather", {"{\"ci"}});
  reply.events.back().text = kWeatherArgs;  // done: the whole arguments
  reply.events.push_back(UsageEvent(1, 1));
  reply.events.push_back(FinishedEvent(upstream::FinishReason::kToolCalls));
  provider_.Add(reply);
  const v1::Run run = Create(NewThread());
  const v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  EXPECT_EQ(waiting.required_action()
                .submit_tool_outputs()
                .tool_calls(0)
                .function()
                .arguments(),
            kWeatherArgs);
  std::string streamed;
  for (const auto& event : Events(run)) {
    if (!event.has_step_delta()) continue;
    streamed += event.step_delta().delta().tool_calls(0).function().arguments();
  }
  // The stream adds up to the final arguments.
  EXPECT_EQ(streamed, kWeatherArgs);
  ASSERT_TRUE(TryCancel(run).ok());
  WaitDone(run);
}

TEST_F(EngineTest, RefusalIsItsOwnContentPart) {
  Reply reply;
  upstream::ProviderEvent refusal;
  refusal.type = upstream::ProviderEvent::Type::kRefusalDelta;
  refusal.text = "I can't help with that.";
  reply.events = {refusal, UsageEvent(1, 1),
                  FinishedEvent(upstream::FinishReason::kStop)};
  provider_.Add(reply);
  const v1::Run run = Create(NewThread());
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);
  std::vector<v1::Message> messages = RunMessages(run);
  ASSERT_THAT(messages, SizeIs(1));
  ASSERT_EQ(messages[0].content_size(), 1);
  EXPECT_EQ(messages[0].content(0).refusal(), "I can't help with that.");
  bool delta = false;
  for (const auto& event : Events(run)) {
    if (!event.has_message_delta()) continue;
    delta = true;
    EXPECT_EQ(event.message_delta().delta().content(0).refusal(),
              "I can't help with that.");
  }
  EXPECT_TRUE(delta);
}

TEST_F(EngineTest, CodeInterpreterStepEndsWhenTheModelSpeaks) {
  using Type = upstream::ProviderEvent::Type;
  Reply reply;
  upstream::ProviderEvent started;
  started.type = Type::kCodeInterpreterStarted;
  started.call_id = "ci_0";
  upstream::ProviderEvent code = started;
  code.type = Type::kCodeInterpreterCodeDelta;
  code.text = "print(6*7)";
  upstream::ProviderEvent done = started;
  done.type = Type::kCodeInterpreterDone;
  done.text = "print(6*7)";
  done.outputs.emplace_back().mutable_logs()->set_logs("42");
  reply.events = {started,
                  code,
                  done,
                  TextDelta("It is 42."),
                  UsageEvent(5, 5),
                  FinishedEvent(upstream::FinishReason::kStop)};
  provider_.Add(reply);
  const v1::Run run = Create(NewThread());
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);

  std::vector<v1::RunStep> steps = Steps(run);
  ASSERT_THAT(steps, SizeIs(2));
  EXPECT_EQ(steps[0].type(), v1::RUN_STEP_TYPE_TOOL_CALLS);
  EXPECT_EQ(steps[0].status(), v1::RUN_STEP_STATUS_COMPLETED);
  ASSERT_EQ(steps[0].step_details().tool_calls().tool_calls_size(), 1);
  const v1::ToolCall& call = steps[0].step_details().tool_calls().tool_calls(0);
  EXPECT_TRUE(absl::StartsWith(call.id(), "call_"));
  EXPECT_EQ(call.code_interpreter().input(), "print(6*7)");
  ASSERT_EQ(call.code_interpreter().outputs_size(), 1);
  EXPECT_EQ(call.code_interpreter().outputs(0).logs().logs(), "42");
  EXPECT_EQ(steps[1].type(), v1::RUN_STEP_TYPE_MESSAGE_CREATION);
  EXPECT_EQ(steps[1].status(), v1::RUN_STEP_STATUS_COMPLETED);
  // The usage belongs to the step the turn ended with.
  EXPECT_EQ(steps[1].usage().total_tokens(), 10);

  const std::vector<std::string> names = Names(Events(run));
  const int tool_done = IndexOf(names, "thread.run.step.completed");
  const int message_created = IndexOf(names, "thread.message.created");
  ASSERT_GE(tool_done, 0);
  EXPECT_LT(tool_done, message_created);
  EXPECT_EQ(Count(names, "thread.run.requires_action"), 0);
}

// --- Tool workers ---

TEST_F(EngineTest, HandledToolsAreInvokedAndTheRunContinues) {
  dispatcher_.Serve("get_weather", "{\"temp\":21}");
  dispatcher_.set_hold(true);
  provider_.Add(ToolReply({WeatherCall()}));
  provider_.Add(TextReply({"21 degrees."}));
  const v1::Run run = Create(NewThread());
  ASSERT_TRUE(WaitUntil([&] { return dispatcher_.invocations().size() == 1; }));

  const FakeDispatcher::Invocation invocation = dispatcher_.invocations()[0];
  EXPECT_EQ(invocation.context.run_id, run.id());
  EXPECT_EQ(invocation.context.thread_id, run.thread_id());
  EXPECT_EQ(invocation.context.assistant_id, assistant_.id());
  EXPECT_EQ(invocation.invocation.name, "get_weather");
  EXPECT_EQ(invocation.invocation.arguments, kWeatherArgs);
  EXPECT_TRUE(absl::StartsWith(invocation.invocation.call_id, "call_"));
  // While the worker works, the run stays in_progress.
  engine_->FlushForTesting();
  EXPECT_EQ(Stored(run).status(), v1::RUN_STATUS_IN_PROGRESS);
  EXPECT_EQ(provider_.calls(), 1);

  EXPECT_EQ(dispatcher_.ReleaseAll(), 1);
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);

  const std::vector<v1::RunEvent> events = Events(run);
  const std::vector<std::string> names = Names(events);
  EXPECT_THAT(names, Not(Contains("thread.run.requires_action")));
  EXPECT_EQ(Count(names, "thread.run.queued"), 1);
  ExpectConsecutive(events);
  // The output shows on the stream as a step delta.
  bool output_delta = false;
  for (const auto& event : events) {
    if (!event.has_step_delta()) continue;
    for (const auto& call : event.step_delta().delta().tool_calls()) {
      if (call.function().has_output()) {
        output_delta = true;
        EXPECT_EQ(call.id(), invocation.invocation.call_id);
        EXPECT_EQ(call.function().output(), "{\"temp\":21}");
        EXPECT_EQ(event.step_delta().object(), "thread.run.step.delta");
      }
    }
  }
  EXPECT_TRUE(output_delta);
  std::vector<v1::RunStep> steps = Steps(run);
  ASSERT_THAT(steps, SizeIs(2));
  EXPECT_EQ(steps[0].status(), v1::RUN_STEP_STATUS_COMPLETED);
  EXPECT_EQ(
      steps[0].step_details().tool_calls().tool_calls(0).function().output(),
      "{\"temp\":21}");
  ASSERT_EQ(provider_.calls(), 2);
  EXPECT_THAT(ItemTexts(provider_.turn(1)),
              Contains(absl::StrCat("output:", invocation.invocation.call_id,
                                    ":{\"temp\":21}")));
}

TEST_F(EngineTest, WorkersSeeACallOnlyOnceItsStepIsDurable) {
  dispatcher_.Serve("get_weather", "{\"temp\":21}");
  // At the moment of the invocation the stored step already holds the call,
  // so a restart re-sends this call id instead of inventing a new one.
  std::atomic<int> stored_before_invoke{0};
  dispatcher_.set_on_invoke(
      [&](const ToolCallContext& context, const ToolInvocation& invocation) {
        ListQuery query;
        query.limit = 100;
        absl::StatusOr<Page<v1::RunStep>> steps =
            store_->ListRunSteps(context.thread_id, context.run_id, query);
        if (!steps.ok()) return;
        for (const v1::RunStep& step : steps->items) {
          for (const v1::ToolCall& call :
               step.step_details().tool_calls().tool_calls()) {
            if (call.id() == invocation.call_id) ++stored_before_invoke;
          }
        }
      });
  provider_.Add(ToolReply({WeatherCall()}));
  provider_.Add(TextReply({"21 degrees."}));
  const v1::Run run = Create(NewThread());
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);
  ASSERT_EQ(dispatcher_.invocations().size(), 1u);
  EXPECT_EQ(stored_before_invoke.load(), 1);
}

TEST_F(EngineTest, MixedWorkerAndCallerCalls) {
  dispatcher_.Serve("get_weather", "{\"temp\":21}");
  provider_.Add(
      ToolReply({WeatherCall(), {"ask_user", {"{\"q\":\"coat?\"}"}}}));
  provider_.Add(TextReply({"Take a coat."}));
  const v1::Run run = Create(NewThread());
  const v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  // Only the caller's call is required.
  const auto& calls =
      waiting.required_action().submit_tool_outputs().tool_calls();
  ASSERT_EQ(calls.size(), 1);
  EXPECT_EQ(calls[0].function().name(), "ask_user");
  ASSERT_TRUE(WaitUntil([&] { return dispatcher_.invocations().size() == 1; }));
  const std::string worker_call =
      dispatcher_.invocations()[0].invocation.call_id;
  EXPECT_NE(worker_call, calls[0].id());

  // The worker's call is not the caller's to answer.
  absl::Status status =
      TrySubmit(waiting, {{calls[0].id(), "yes"}, {worker_call, "x"}}).status();
  EXPECT_EQ(ErrorReason(status), "UNKNOWN_TOOL_CALL_ID");

  SubmitAll(waiting, "yes");
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);
  ASSERT_EQ(provider_.calls(), 2);
  const std::vector<std::string> items = ItemTexts(provider_.turn(1));
  EXPECT_THAT(items,
              Contains(absl::StrCat("output:", worker_call, ":{\"temp\":21}")));
  EXPECT_THAT(items, Contains(absl::StrCat("output:", calls[0].id(), ":yes")));
}

TEST_F(EngineTest, MixedCallsWithTheWorkerSlowerThanTheCaller) {
  dispatcher_.Serve("get_weather", "{\"temp\":21}");
  dispatcher_.set_hold(true);
  provider_.Add(ToolReply({WeatherCall(), {"ask_user", {"{}"}}}));
  provider_.Add(TextReply({"Done."}));
  const v1::Run run = Create(NewThread());
  const v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  absl::StatusOr<v1::Run> submitted =
      TrySubmit(waiting, {{RequiredCallIds(waiting).at(0), "answer"}});
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  // Waiting for the worker: in_progress, no new turn yet.
  WaitForStatus(run, v1::RUN_STATUS_IN_PROGRESS);
  EXPECT_EQ(provider_.calls(), 1);
  EXPECT_EQ(dispatcher_.ReleaseAll(), 1);
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);
  ASSERT_EQ(provider_.calls(), 2);
  EXPECT_EQ(ToolOutputCount(provider_.turn(1)), 2);
  ExpectConsecutive(Events(run));
}

// --- Updates and reads ---

TEST_F(EngineTest, UpdateRunMetadataOnAnActiveRun) {
  provider_.Add(ToolReply({WeatherCall()}));
  provider_.Add(TextReply({"Sunny."}));
  const v1::Run run = Create(NewThread());
  const v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  v1::UpdateRunRequest update;
  update.set_thread_id(run.thread_id());
  update.set_run_id(run.id());
  (*update.mutable_metadata())["stage"] = "waiting";
  absl::StatusOr<v1::UpdateRunResponse> updated = engine_->UpdateRun(update);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->run().metadata().at("stage"), "waiting");
  EXPECT_EQ(updated->run().status(), v1::RUN_STATUS_REQUIRES_ACTION);
  engine_->FlushForTesting();
  EXPECT_EQ(Stored(run).metadata().at("stage"), "waiting");
  // The engine keeps it through the rest of the run.
  SubmitAll(waiting, "20C");
  const v1::Run done = WaitDone(run);
  EXPECT_EQ(done.status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(done.metadata().at("stage"), "waiting");
}

TEST_F(EngineTest, UpdateRunMetadataOnACompletedRun) {
  provider_.Add(TextReply({"Hi."}));
  v1::RunOptions options = Options();
  (*options.mutable_metadata())["old"] = "1";
  const v1::Run run = Create(NewThread(), options);
  WaitDone(run);
  v1::UpdateRunRequest update;
  update.set_thread_id(run.thread_id());
  update.set_run_id(run.id());
  (*update.mutable_metadata())["new"] = "2";
  absl::StatusOr<v1::UpdateRunResponse> updated = engine_->UpdateRun(update);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->run().status(), v1::RUN_STATUS_COMPLETED);
  // Replaced whole.
  EXPECT_EQ(updated->run().metadata().size(), 1u);
  EXPECT_EQ(updated->run().metadata().at("new"), "2");
  const v1::Run stored = Stored(run);
  EXPECT_EQ(stored.metadata().size(), 1u);
  EXPECT_EQ(stored.metadata().at("new"), "2");
  EXPECT_EQ(stored.status(), v1::RUN_STATUS_COMPLETED);

  update.set_run_id(NewId(kRunPrefix));
  EXPECT_EQ(ErrorReason(engine_->UpdateRun(update).status()), "RUN_NOT_FOUND");
}

TEST_F(EngineTest, GetRunAndRunSteps) {
  provider_.Add(ToolReply({WeatherCall()}));
  provider_.Add(TextReply({"Sunny."}));
  const v1::Run run = Create(NewThread());
  SubmitAll(WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION), "20C");
  WaitDone(run);

  v1::GetRunRequest get;
  get.set_thread_id(run.thread_id());
  get.set_run_id(run.id());
  absl::StatusOr<v1::GetRunResponse> got = engine_->GetRun(get);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->run().status(), v1::RUN_STATUS_COMPLETED);

  std::vector<v1::RunStep> steps = Steps(run);
  ASSERT_THAT(steps, SizeIs(2));
  for (const v1::RunStep& step : steps) {
    v1::GetRunStepRequest request;
    request.set_thread_id(run.thread_id());
    request.set_run_id(run.id());
    request.set_step_id(step.id());
    absl::StatusOr<v1::GetRunStepResponse> response =
        engine_->GetRunStep(request);
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(response->step().SerializeAsString(), step.SerializeAsString());
  }

  // Descending by default, with paging.
  v1::ListRunStepsRequest list;
  list.set_thread_id(run.thread_id());
  list.set_run_id(run.id());
  list.mutable_options()->set_limit(1);
  absl::StatusOr<v1::ListRunStepsResponse> page = engine_->ListRunSteps(list);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->object(), "list");
  ASSERT_EQ(page->data_size(), 1);
  EXPECT_EQ(page->data(0).id(), steps[1].id());
  EXPECT_TRUE(page->has_more());
  EXPECT_EQ(page->first_id(), steps[1].id());
  list.mutable_options()->set_after(page->last_id());
  page = engine_->ListRunSteps(list);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->data_size(), 1);
  EXPECT_EQ(page->data(0).id(), steps[0].id());
  EXPECT_FALSE(page->has_more());

  // Errors.
  v1::GetRunStepRequest missing_step;
  missing_step.set_thread_id(run.thread_id());
  missing_step.set_run_id(run.id());
  missing_step.set_step_id(NewId(kStepPrefix));
  EXPECT_EQ(ErrorReason(engine_->GetRunStep(missing_step).status()),
            "RUN_STEP_NOT_FOUND");
  missing_step.set_step_id("msg_wrong");
  EXPECT_EQ(engine_->GetRunStep(missing_step).status().code(),
            absl::StatusCode::kInvalidArgument);
  v1::ListRunStepsRequest missing_run;
  missing_run.set_thread_id(run.thread_id());
  missing_run.set_run_id(NewId(kRunPrefix));
  EXPECT_EQ(ErrorReason(engine_->ListRunSteps(missing_run).status()),
            "RUN_NOT_FOUND");
  list.mutable_options()->set_after("step_never_seen");
  absl::Status bad_cursor = engine_->ListRunSteps(list).status();
  EXPECT_EQ(bad_cursor.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GetErrorInfo(bad_cursor)->metadata().at("field"), "options.after");
}

TEST_F(EngineTest, ReadEventsPagesTheStoredLog) {
  provider_.Add(TextReply({"a", "b", "c"}));
  const v1::Run run = Create(NewThread());
  WaitDone(run);
  const size_t total = Events(run).size();
  absl::StatusOr<std::vector<v1::RunEvent>> tail =
      engine_->ReadEvents(run.id(), 3, 2);
  ASSERT_TRUE(tail.ok());
  ASSERT_THAT(*tail, SizeIs(2));
  EXPECT_EQ((*tail)[0].sequence(), 4);
  EXPECT_EQ((*tail)[1].sequence(), 5);
  tail = engine_->ReadEvents(run.id(), static_cast<int64_t>(total), 10);
  ASSERT_TRUE(tail.ok());
  EXPECT_THAT(*tail, IsEmpty());
}

TEST_F(EngineTest, HubStreamsALiveRun) {
  Reply hanging;
  hanging.events = {TextDelta("Hel")};
  hanging.Hang();
  hanging.after_release = {TextDelta("lo"), UsageEvent(1, 1),
                           FinishedEvent(upstream::FinishReason::kStop)};
  provider_.Add(hanging);
  const v1::Run run = Create(NewThread());
  ASSERT_TRUE(WaitForEvent(run, "thread.message.delta"));
  engine_->FlushForTesting();
  RunEventHub* hub = engine_->hub();
  const int64_t last = hub->LastSequence(run.id());
  EXPECT_EQ(last, static_cast<int64_t>(Events(run).size()));
  struct Waker : RunEventHub::Waiter {
    void Wake() override { ++wakes; }
    std::atomic<int> wakes{0};
  };
  auto waker = std::make_shared<Waker>();
  RunEventHub::Read first = hub->Next(run.id(), 1, waker);
  ASSERT_EQ(first.kind, RunEventHub::Read::Kind::kEvent);
  EXPECT_EQ(first.event->event().event(), "thread.run.created");
  EXPECT_EQ(hub->Next(run.id(), last + 1, waker).kind,
            RunEventHub::Read::Kind::kWaiting);
  ASSERT_TRUE(provider_.Release(0));
  ASSERT_TRUE(WaitUntil([&] { return waker->wakes.load() >= 1; }));
  WaitDone(run);
  // Once the run ended, the channel is closed: read the store.
  EXPECT_EQ(hub->Next(run.id(), 1, waker).kind,
            RunEventHub::Read::Kind::kNotLive);
}

// --- Recovery after a restart ---

TEST_F(EngineTest, RecoveredRunInRequiresActionStillExpires) {
  provider_.Add(ToolReply({WeatherCall()}));
  const v1::Run run = Create(NewThread());
  const v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  const size_t before = Events(run).size();

  RestartEngine();
  EXPECT_EQ(engine_->active_runs(), 1u);
  EXPECT_EQ(Stored(run).status(), v1::RUN_STATUS_REQUIRES_ACTION);
  EXPECT_EQ(engine_->hub()->LastSequence(run.id()),
            static_cast<int64_t>(before));
  ASSERT_TRUE(WaitUntil([&] { return timers_.pending() == 1u; }));

  clock_.Advance(std::chrono::seconds(601));
  EXPECT_EQ(timers_.RunDue(), 1);
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_EXPIRED);
  const std::vector<v1::RunEvent> events = Events(run);
  ExpectConsecutive(events);
  ASSERT_GT(events.size(), before);
  EXPECT_EQ(events[before].sequence(), static_cast<int64_t>(before + 1));
  EXPECT_EQ(events.back().event(), "done");
  EXPECT_EQ(provider_.calls(), 1);
  (void)waiting;
}

TEST_F(EngineTest, RecoveredRunInRequiresActionTakesOutputs) {
  provider_.Add(ToolReply({WeatherCall()}));
  provider_.Add(TextReply({"Sunny."}));
  const v1::Run run = Create(NewThread());
  const v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  const std::vector<v1::RunEvent> before = Events(run);

  RestartEngine();
  const std::string call_id = RequiredCallIds(waiting).at(0);
  // The recovered actor knows what is pending.
  EXPECT_EQ(ErrorReason(TrySubmit(waiting, {{"call_other", "x"}}).status()),
            "UNKNOWN_TOOL_CALL_ID");
  ASSERT_TRUE(TrySubmit(waiting, {{call_id, "20C"}}).ok());
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);

  const std::vector<v1::RunEvent> events = Events(run);
  ExpectConsecutive(events);
  ExpectRunPayloads(events, run.id());
  // The log before the restart is unchanged; the rest continues after it.
  ASSERT_GT(events.size(), before.size());
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(events[i].SerializeAsString(), before[i].SerializeAsString());
  }
  EXPECT_EQ(events[before.size()].event(), "thread.run.queued");
  EXPECT_EQ(events.back().event(), "done");
  ASSERT_EQ(provider_.calls(), 2);
  EXPECT_THAT(
      ItemTexts(provider_.turn(1)),
      ElementsAre(absl::StrCat("user:", kQuestion),
                  absl::StrCat("call:", call_id, ":get_weather:", kWeatherArgs),
                  absl::StrCat("output:", call_id, ":20C")));
}

TEST_F(EngineTest, RecoveredRunInProgressIsResumed) {
  Reply hanging;
  hanging.events = {TextDelta("Half an ans")};
  hanging.Hang();
  provider_.Add(hanging);
  provider_.Add(TextReply({"Full answer."}));
  const v1::Run run = Create(NewThread());
  ASSERT_TRUE(WaitForEvent(run, "thread.message.delta"));

  RestartEngine();
  // Stopping aborted the turn in flight.
  EXPECT_TRUE(provider_.cancelled(0));
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);
  ASSERT_EQ(provider_.calls(), 2);
  // The retried turn does not see the interrupted attempt.
  EXPECT_THAT(ItemTexts(provider_.turn(1)),
              ElementsAre(absl::StrCat("user:", kQuestion)));

  std::vector<v1::RunStep> steps = Steps(run);
  ASSERT_THAT(steps, SizeIs(2));
  EXPECT_EQ(steps[0].status(), v1::RUN_STEP_STATUS_FAILED);
  EXPECT_EQ(steps[0].last_error().code(), "server_error");
  EXPECT_EQ(steps[1].status(), v1::RUN_STEP_STATUS_COMPLETED);
  std::vector<v1::Message> messages = RunMessages(run);
  ASSERT_THAT(messages, SizeIs(2));
  EXPECT_EQ(messages[0].status(), v1::MESSAGE_STATUS_INCOMPLETE);
  EXPECT_EQ(Text(messages[0]), "Half an ans");
  EXPECT_EQ(messages[1].status(), v1::MESSAGE_STATUS_COMPLETED);
  EXPECT_EQ(Text(messages[1]), "Full answer.");
  const std::vector<v1::RunEvent> events = Events(run);
  ExpectConsecutive(events);
  EXPECT_THAT(Names(events), Contains("thread.run.step.failed"));
}

TEST_F(EngineTest, RecoveredRunInProgressBeforeAnyOutputIsResumed) {
  Reply hanging;
  hanging.Hang();
  provider_.Add(hanging);
  provider_.Add(TextReply({"Answer."}));
  const v1::Run run = Create(NewThread());
  ASSERT_TRUE(provider_.WaitForCalls(1));
  WaitForStatus(run, v1::RUN_STATUS_IN_PROGRESS);

  RestartEngine();
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(provider_.calls(), 2);
  ExpectConsecutive(Events(run));
}

TEST_F(EngineTest, RecoveredRunInterruptedMidToolCallRetriesTheTurn) {
  // The process stops while the model streams a call's arguments: the
  // arguments are incomplete, so the call must not be handed to anyone.
  Reply hanging;
  hanging.events = testing::CallEvents(0, {"get_weather", {"{\"ci"}});
  hanging.events.pop_back();  // no kToolCallDone yet
  hanging.Hang();
  provider_.Add(hanging);
  provider_.Add(TextReply({"Sunny."}));
  const v1::Run run = Create(NewThread());
  ASSERT_TRUE(WaitForEvent(run, "thread.run.step.delta"));
  ASSERT_TRUE(WaitUntil([&] { return Events(run).size() >= 7u; }));

  RestartEngine();
  ASSERT_TRUE(WaitUntil([&] {
    const v1::RunStatus status = Stored(run).status();
    return status == v1::RUN_STATUS_REQUIRES_ACTION || IsTerminal(status);
  })) << RunStatusName(Stored(run).status());
  const v1::Run after = Stored(run);
  EXPECT_NE(after.status(), v1::RUN_STATUS_REQUIRES_ACTION)
      << "the half-streamed call was handed to the caller with arguments '"
      << (RequiredCallIds(after).empty() ? std::string()
                                         : after.required_action()
                                               .submit_tool_outputs()
                                               .tool_calls(0)
                                               .function()
                                               .arguments())
      << "'";
  if (after.status() == v1::RUN_STATUS_REQUIRES_ACTION) {
    ASSERT_TRUE(TryCancel(run).ok());
    WaitDone(run);
    return;
  }
  EXPECT_EQ(after.status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(provider_.calls(), 2);
  std::vector<v1::RunStep> steps = Steps(run);
  ASSERT_FALSE(steps.empty());
  EXPECT_EQ(steps[0].status(), v1::RUN_STEP_STATUS_FAILED);
}

TEST_F(EngineTest, RecoveredQueuedRunStarts) {
  // A run stored queued whose process died before driving it.
  const v1::Run run = StoreQueuedRun(NewThread());
  provider_.Add(TextReply({"Picked up."}));
  ASSERT_TRUE(engine_->Recover().ok());
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);
  const std::vector<v1::RunEvent> events = Events(run);
  ExpectConsecutive(events);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events[2].event(), "thread.run.in_progress");
}

TEST_F(EngineTest, RecoveredCancellingRunEndsCancelled) {
  const v1::Run queued = StoreQueuedRun(NewThread());
  v1::Run cancelling = queued;
  cancelling.set_status(v1::RUN_STATUS_CANCELLING);
  RunChanges changes;
  changes.thread_id = cancelling.thread_id();
  changes.run_id = cancelling.id();
  changes.run = cancelling;
  v1::RunEvent& event = changes.events.emplace_back();
  event.set_sequence(3);
  event.set_event("thread.run.cancelling");
  *event.mutable_run() = cancelling;
  ASSERT_TRUE(store_->CommitRunChanges({&changes}).ok());

  ASSERT_TRUE(engine_->Recover().ok());
  const v1::Run cancelled = WaitDone(queued);
  EXPECT_EQ(cancelled.status(), v1::RUN_STATUS_CANCELLED);
  EXPECT_TRUE(cancelled.has_cancelled_at());
  const std::vector<v1::RunEvent> events = Events(queued);
  ExpectConsecutive(events);
  EXPECT_THAT(
      Names(events),
      ElementsAre("thread.run.created", "thread.run.queued",
                  "thread.run.cancelling", "thread.run.cancelled", "done"));
  EXPECT_EQ(provider_.calls(), 0);
}

TEST_F(EngineTest, RecoveredRunWithWorkerCallsInFlightReinvokesThem) {
  dispatcher_.Serve("get_weather", "{\"temp\":21}");
  dispatcher_.set_hold(true);
  provider_.Add(ToolReply({WeatherCall()}));
  provider_.Add(TextReply({"21 degrees."}));
  const v1::Run run = Create(NewThread());
  ASSERT_TRUE(WaitUntil([&] { return dispatcher_.invocations().size() == 1; }));
  engine_->FlushForTesting();

  RestartEngine();
  ASSERT_TRUE(WaitUntil([&] { return dispatcher_.invocations().size() == 2; }));
  const auto invocations = dispatcher_.invocations();
  // The same call id: the worker can deduplicate (run_id + call_id).
  EXPECT_EQ(invocations[1].invocation.call_id,
            invocations[0].invocation.call_id);
  EXPECT_EQ(invocations[1].context.run_id, run.id());
  EXPECT_EQ(provider_.calls(), 1);
  // The answer held for the stopped engine goes nowhere; the new one counts.
  EXPECT_EQ(dispatcher_.ReleaseAll(), 2);
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);
  ASSERT_EQ(provider_.calls(), 2);
  EXPECT_EQ(ToolOutputCount(provider_.turn(1)), 1);
  ExpectConsecutive(Events(run));
}

TEST_F(EngineTest, RecoveredRunInRequiresActionResendsItsWorkerCalls) {
  dispatcher_.Serve("get_weather", "{\"temp\":21}");
  dispatcher_.set_hold(true);
  provider_.Add(ToolReply({WeatherCall(), {"ask_user", {"{}"}}}));
  provider_.Add(TextReply({"Done."}));
  const v1::Run run = Create(NewThread());
  const v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  ASSERT_TRUE(WaitUntil([&] { return dispatcher_.invocations().size() == 1; }));
  engine_->FlushForTesting();

  // After the restart the worker has not registered again yet: its call
  // still goes to the dispatcher (which waits for a worker), never to the
  // caller.
  dispatcher_.Unserve("get_weather");
  RestartEngine();
  ASSERT_TRUE(WaitUntil([&] { return dispatcher_.invocations().size() == 2; }));
  const auto invocations = dispatcher_.invocations();
  EXPECT_EQ(invocations[1].invocation.call_id,
            invocations[0].invocation.call_id);
  const v1::Run stored = Stored(run);
  EXPECT_EQ(stored.status(), v1::RUN_STATUS_REQUIRES_ACTION);
  EXPECT_EQ(RequiredCallIds(stored), RequiredCallIds(waiting));

  ASSERT_TRUE(
      TrySubmit(waiting, {{RequiredCallIds(waiting).at(0), "answer"}}).ok());
  EXPECT_EQ(provider_.calls(), 1);  // the worker's output is still missing
  EXPECT_EQ(dispatcher_.ReleaseAll(), 2);
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);
  ASSERT_EQ(provider_.calls(), 2);
  EXPECT_EQ(ToolOutputCount(provider_.turn(1)), 2);
  ExpectConsecutive(Events(run));
}

TEST_F(EngineTest, RecoveredInProgressWorkerCallsNeverGoToTheCaller) {
  dispatcher_.Serve("get_weather", "{\"temp\":21}");
  dispatcher_.set_hold(true);
  provider_.Add(ToolReply({WeatherCall()}));
  provider_.Add(TextReply({"21 degrees."}));
  const v1::Run run = Create(NewThread());
  ASSERT_TRUE(WaitUntil([&] { return dispatcher_.invocations().size() == 1; }));
  engine_->FlushForTesting();

  dispatcher_.Unserve("get_weather");
  RestartEngine();
  ASSERT_TRUE(WaitUntil([&] { return dispatcher_.invocations().size() == 2; }));
  EXPECT_EQ(dispatcher_.ReleaseAll(), 2);
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_THAT(Names(Events(run)), Not(Contains("thread.run.requires_action")));
}

TEST_F(EngineTest, ExpiryAbandonsWorkerCallsStillRunning) {
  dispatcher_.Serve("get_weather", "{\"temp\":21}");
  dispatcher_.set_hold(true);
  provider_.Add(ToolReply({WeatherCall(), {"ask_user", {"{}"}}}));
  const v1::Run run = Create(NewThread());
  WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  ASSERT_TRUE(WaitUntil([&] { return timers_.pending() == 1u; }));
  clock_.Advance(std::chrono::seconds(601));
  EXPECT_EQ(timers_.RunDue(), 1);
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_EXPIRED);
  EXPECT_THAT(dispatcher_.cancelled_runs(), ElementsAre(run.id()));
  EXPECT_EQ(dispatcher_.ReleaseAll(), 1);
  engine_->FlushForTesting();
  EXPECT_EQ(Names(Events(run)).back(), "done");
}

TEST_F(EngineTest, RecoveredQueueKeepsItsOrder) {
  provider_.Add(ToolReply({WeatherCall()}));
  const std::string thread = NewThread();
  const v1::Run first = Create(thread);
  const v1::Run waiting = WaitForStatus(first, v1::RUN_STATUS_REQUIRES_ACTION);
  v1::RunOptions options = Options();
  options.set_active_run_policy(v1::ACTIVE_RUN_POLICY_QUEUE);
  const v1::Run second = Create(thread, options);

  RestartEngine();
  EXPECT_EQ(engine_->active_runs(), 2u);
  engine_->FlushForTesting();
  EXPECT_EQ(Stored(second).status(), v1::RUN_STATUS_QUEUED);
  EXPECT_EQ(provider_.calls(), 1);

  provider_.Add(TextReply({"First done."}));
  provider_.Add(TextReply({"Second done."}));
  SubmitAll(waiting, "20C");
  EXPECT_EQ(WaitDone(first).status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(WaitDone(second).status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(provider_.calls(), 3);
  ExpectConsecutive(Events(second));
}

TEST_F(EngineTest, RecoveredRunKeepsItsOwnRequiresActionTimeout) {
  provider_.Add(ToolReply({WeatherCall()}));
  provider_.Add(ToolReply({{"get_forecast", {"{}"}}}));
  v1::RunOptions options = Options();
  options.set_requires_action_timeout_seconds(30);
  const v1::Run run = Create(NewThread(), options);
  const v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  EXPECT_EQ(waiting.expires_at(), kStartSeconds + 30);

  RestartEngine();
  SubmitAll(waiting, "20C");
  ASSERT_TRUE(WaitUntil([&] {
    v1::Run stored = Stored(run);
    return stored.status() == v1::RUN_STATUS_REQUIRES_ACTION &&
           RequiredCallIds(stored) != RequiredCallIds(waiting);
  }));
  // The second round waits as long as the run asked for, not the default.
  EXPECT_EQ(Stored(run).expires_at(), kStartSeconds + 30);
  ASSERT_TRUE(TryCancel(run).ok());
  WaitDone(run);
}

TEST_F(EngineTest, RestartLoopGuardFailsARunThatKeepsCrashing) {
  // Every attempt hangs (as if the turn crashed the process) before the
  // model produced anything; after max_restart_resumes restarts the run
  // fails instead of being resumed again.
  for (int i = 0; i < 6; ++i) {
    Reply hanging;
    hanging.Hang();
    provider_.Add(hanging);
  }
  const v1::Run run = Create(NewThread());
  int calls = 1;
  ASSERT_TRUE(provider_.WaitForCalls(calls));
  for (int restart = 1; restart <= options_.max_restart_resumes + 1;
       ++restart) {
    RestartEngine();
    if (IsTerminal(Stored(run).status())) break;
    ASSERT_TRUE(WaitUntil([&] {
      return provider_.calls() > calls || IsTerminal(Stored(run).status());
    }));
    calls = provider_.calls();
  }
  WaitUntil([&] { return IsTerminal(Stored(run).status()); }, absl::Seconds(1));
  const v1::Run after = Stored(run);
  EXPECT_EQ(after.status(), v1::RUN_STATUS_FAILED)
      << "model called " << provider_.calls() << " times over "
      << options_.max_restart_resumes + 1 << " restarts";
  if (!IsTerminal(after.status())) {
    ASSERT_TRUE(TryCancel(run).ok());
    WaitDone(run);
  }
}

TEST_F(EngineTest, RestartLoopGuardCountsInterruptedSteps) {
  // Each attempt streams some text before the process stops.
  for (int i = 0; i < 6; ++i) {
    Reply hanging;
    hanging.events = {TextDelta(absl::StrCat("attempt ", i))};
    hanging.Hang();
    provider_.Add(hanging);
  }
  const v1::Run run = Create(NewThread());
  ASSERT_TRUE(WaitForEvent(run, "thread.message.delta"));
  int calls = 1;
  for (int restart = 1; restart <= options_.max_restart_resumes + 1;
       ++restart) {
    RestartEngine();
    ASSERT_TRUE(WaitUntil([&] {
      return provider_.calls() > calls || IsTerminal(Stored(run).status());
    }));
    if (IsTerminal(Stored(run).status())) break;
    calls = provider_.calls();
    ASSERT_TRUE(WaitUntil([&] {
      return Count(Names(Events(run)), "thread.message.delta") >= restart + 1;
    }));
  }
  const v1::Run after = WaitDone(run);
  EXPECT_EQ(after.status(), v1::RUN_STATUS_FAILED);
  EXPECT_EQ(after.last_error().code(), "server_error");
  EXPECT_EQ(provider_.calls(), options_.max_restart_resumes + 1);
  ExpectConsecutive(Events(run));
}

// --- SqliteStore: the same runs survive a restart on a file ---

class SqliteEngineTest : public EngineTest {
 protected:
  SqliteEngineTest() {
    path_ = absl::StrCat(::testing::TempDir(), "/runs_engine_test_",
                         NewId("db_"), ".sqlite");
    store_ = OpenStore();
  }
  ~SqliteEngineTest() override {
    store_.reset();
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      std::remove(absl::StrCat(path_, suffix).c_str());
    }
  }

  std::unique_ptr<Store> OpenStore() {
    absl::StatusOr<std::unique_ptr<SqliteStore>> store =
        SqliteStore::Open(path_);
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return std::make_unique<MemoryStore>();
    return *std::move(store);
  }

  // A restart that also reopens the database file.
  void RestartWithReopen() {
    StopEngine();
    store_.reset();
    store_ = OpenStore();
    StartEngine();
    ASSERT_TRUE(engine_->Recover().ok());
  }

  std::string path_;
};

TEST_F(SqliteEngineTest, SeedRunSurvivesARestartInRequiresAction) {
  provider_.Add(ToolReply({WeatherCall()}, 50, 10));
  provider_.Add(TextReply({"It is ", "sunny."}, 70, 5));
  const v1::Run run = Create(NewThread());
  const v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  const size_t before = Events(run).size();

  RestartWithReopen();
  EXPECT_EQ(Stored(run).status(), v1::RUN_STATUS_REQUIRES_ACTION);
  SubmitAll(waiting, "{\"temp\":20}");
  const v1::Run final_run = WaitDone(run);
  EXPECT_EQ(final_run.status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(final_run.usage().total_tokens(), 135);
  const std::vector<v1::RunEvent> events = Events(run);
  ExpectConsecutive(events);
  EXPECT_GT(events.size(), before);
  EXPECT_THAT(
      Names(events),
      ElementsAre("thread.run.created", "thread.run.queued",
                  "thread.run.in_progress", "thread.run.step.created",
                  "thread.run.step.in_progress", "thread.run.step.delta",
                  "thread.run.step.delta", "thread.run.step.delta",
                  "thread.run.requires_action", "thread.run.queued",
                  "thread.run.in_progress", "thread.run.step.completed",
                  "thread.run.step.created", "thread.run.step.in_progress",
                  "thread.message.created", "thread.message.in_progress",
                  "thread.message.delta", "thread.message.delta",
                  "thread.message.completed", "thread.run.step.completed",
                  "thread.run.completed", "done"));
  std::vector<v1::Message> messages = RunMessages(run);
  ASSERT_THAT(messages, SizeIs(1));
  EXPECT_EQ(Text(messages[0]), "It is sunny.");
}

TEST_F(SqliteEngineTest, InProgressRunResumesAfterReopen) {
  Reply hanging;
  hanging.events = {TextDelta("Hal")};
  hanging.Hang();
  provider_.Add(hanging);
  provider_.Add(TextReply({"Whole."}));
  const v1::Run run = Create(NewThread());
  ASSERT_TRUE(WaitForEvent(run, "thread.message.delta"));
  RestartWithReopen();
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);
  ExpectConsecutive(Events(run));
  std::vector<v1::RunStep> steps = Steps(run);
  ASSERT_THAT(steps, SizeIs(2));
  EXPECT_EQ(steps[0].status(), v1::RUN_STEP_STATUS_FAILED);
  EXPECT_EQ(steps[0].metadata().count("gateway.interrupted"), 1u);
}

// Stores the changes of a batch up to the first one that would store the
// run in `failing`, then fails (the disk is gone): the state a crash between
// two commits leaves behind.
class FlakyStore : public MemoryStore {
 public:
  std::atomic<int> failing{v1::RUN_STATUS_UNSPECIFIED};
  absl::Status CommitRunChanges(
      const std::vector<const RunChanges*>& batch) override {
    for (size_t i = 0; i < batch.size(); ++i) {
      if (batch[i]->run.has_value() &&
          batch[i]->run->status() == failing.load()) {
        std::vector<const RunChanges*> before(batch.begin(), batch.begin() + i);
        if (!before.empty()) {
          RETURN_IF_ERROR(MemoryStore::CommitRunChanges(before));
        }
        return StoreUnavailable("the disk is gone");
      }
    }
    return MemoryStore::CommitRunChanges(batch);
  }
};

class CommitWindowTest : public EngineTest {
 protected:
  CommitWindowTest() {
    auto store = std::make_unique<FlakyStore>();
    flaky_ = store.get();
    store_ = std::move(store);
  }
  FlakyStore* flaky_ = nullptr;
};

TEST_F(CommitWindowTest, CallersCallsNeverReachWorkersWhenACommitIsLost) {
  dispatcher_.Serve("get_weather", "{\"temp\":21}");
  flaky_->failing = v1::RUN_STATUS_REQUIRES_ACTION;
  provider_.Add(ToolReply({WeatherCall(), {"ask_user", {"{}"}}}));
  provider_.Add(ToolReply({WeatherCall(), {"ask_user", {"{}"}}}));
  provider_.Add(TextReply({"Done."}));
  const v1::Run run = Create(NewThread());
  // The commit holding the calls and requires_action fails: the actor
  // stops, and no worker has been told anything.
  ASSERT_TRUE(WaitUntil([&] { return engine_->active_runs() == 0; }));
  EXPECT_THAT(dispatcher_.invocations(), IsEmpty());

  flaky_->failing = v1::RUN_STATUS_UNSPECIFIED;
  RestartEngine();
  const v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  const auto& required =
      waiting.required_action().submit_tool_outputs().tool_calls();
  ASSERT_EQ(required.size(), 1);
  EXPECT_EQ(required[0].function().name(), "ask_user");
  ASSERT_TRUE(WaitUntil([&] { return dispatcher_.invocations().size() == 1; }));
  EXPECT_EQ(dispatcher_.invocations()[0].invocation.name, "get_weather");
  SubmitAll(waiting, "yes");
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);
  for (const auto& invocation : dispatcher_.invocations()) {
    EXPECT_NE(invocation.invocation.name, "ask_user");
  }
}

TEST_F(CommitWindowTest, QueuedRunRecoveredWithWorkerCallsOutstanding) {
  dispatcher_.Serve("get_weather", "{\"temp\":21}");
  dispatcher_.set_hold(true);
  provider_.Add(ToolReply({WeatherCall(), {"ask_user", {"{}"}}}));
  provider_.Add(TextReply({"Done."}));
  const v1::Run run = Create(NewThread());
  const v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  ASSERT_TRUE(WaitUntil([&] { return dispatcher_.invocations().size() == 1; }));
  engine_->FlushForTesting();
  // The caller's output is stored with the run queued; the move back to
  // in_progress (the worker is still busy) is lost.
  flaky_->failing = v1::RUN_STATUS_IN_PROGRESS;
  // The reply may report the failed batch; what counts is what is stored.
  (void)TrySubmit(waiting, {{RequiredCallIds(waiting).at(0), "yes"}});
  ASSERT_TRUE(WaitUntil([&] { return engine_->active_runs() == 0; }));
  EXPECT_EQ(Stored(run).status(), v1::RUN_STATUS_QUEUED);

  flaky_->failing = v1::RUN_STATUS_UNSPECIFIED;
  RestartEngine();
  // The worker's call goes out again (same id) instead of being dropped.
  ASSERT_TRUE(WaitUntil([&] { return dispatcher_.invocations().size() == 2; }));
  const auto invocations = dispatcher_.invocations();
  EXPECT_EQ(invocations[1].invocation.call_id,
            invocations[0].invocation.call_id);
  EXPECT_EQ(provider_.calls(), 1);
  EXPECT_EQ(dispatcher_.ReleaseAll(), 2);
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);
  ASSERT_EQ(provider_.calls(), 2);
  EXPECT_EQ(ToolOutputCount(provider_.turn(1)), 2);
}

TEST_F(EngineTest, UndeclaredToolsNeverReachWorkers) {
  // A worker serves delete_records, but this run does not offer it: the
  // model's call to it goes to the caller, not to the worker.
  dispatcher_.Serve("delete_records", "{\"deleted\":42}");
  provider_.Add(ToolReply({{"delete_records", {"{}"}}}));
  provider_.Add(TextReply({"Nothing deleted."}));
  const v1::Run run = Create(NewThread());
  const v1::Run waiting = WaitForStatus(run, v1::RUN_STATUS_REQUIRES_ACTION);
  EXPECT_THAT(RequiredCallIds(waiting), SizeIs(1));
  EXPECT_THAT(dispatcher_.invocations(), IsEmpty());
  SubmitAll(waiting, "{\"error\":\"not allowed\"}");
  EXPECT_EQ(WaitDone(run).status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_THAT(dispatcher_.invocations(), IsEmpty());
}

}  // namespace
}  // namespace assistants::runs
