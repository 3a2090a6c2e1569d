// End-to-end tests of runs: the real assistants-gateway binary in front of
// the real fake-openai binary, both child processes on 127.0.0.1, driven
// over gRPC exactly as a client would. Covers the seed scenario (streamed on
// both wire APIs, and polled), disconnect and resume of RunEvents (and a
// retried `start`), cancel, upstream faults, requires_action expiry (with
// heartbeats), the one-active-run rule, and kill -9 + restart on the same
// SQLite file. ClusterE2eTest: three gateways on one PostgreSQL database
// (runs across replicas, takeover after kill -9, fencing of a paused
// driver, the thread policies across replicas).
//
// Every RPC has a deadline and every wait is bounded; no test sleeps for a
// fixed long time.
#include <curl/curl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/message.grpc.pb.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "assistants/v1/thread.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/e2e_helpers.h"
#include "tests/support/pg_test_db.h"
#include "tests/support/server_process.h"

namespace assistants::test_support {
namespace {

namespace v1 = ::assistants::v1;
using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;
using Json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kSeedQuestion[] =
    "What's the stock price of AAPL, and calculate what 1000 shares would "
    "be worth?";
constexpr char kStockOutput[] = R"({"price": 237.5, "currency": "USD"})";
constexpr char kCalculatorOutput[] = R"({"result": 237500})";

// --- Objects -------------------------------------------------------------

google::protobuf::Struct Schema(const std::string& json) {
  google::protobuf::Struct schema;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &schema).ok())
      << json;
  return schema;
}

v1::Tool FunctionTool(const std::string& name, const std::string& description,
                      const std::string& parameters) {
  v1::Tool tool;
  v1::FunctionDefinition* function =
      tool.mutable_function()->mutable_function();
  function->set_name(name);
  function->set_description(description);
  *function->mutable_parameters() = Schema(parameters);
  return tool;
}

// The seed's tools: get_stock_price{ticker} and calculator{expression}.
std::vector<v1::Tool> SeedTools() {
  return {FunctionTool("get_stock_price",
                       "Get the current stock price for a given ticker symbol.",
                       R"({"type":"object","properties":{"ticker":{
                           "type":"string","description":
                           "Stock ticker symbol, e.g. AAPL"}},
                           "required":["ticker"]})"),
          FunctionTool("calculator", "Evaluate an arithmetic expression.",
                       R"({"type":"object","properties":{"expression":{
                           "type":"string"}},"required":["expression"]})")};
}

// The seed's answers: the stock price, then the calculator's result. Checks
// the model's arguments on the way.
std::vector<v1::ToolOutput> SeedAnswers(const v1::Run& run) {
  std::vector<v1::ToolOutput> outputs;
  for (const v1::RequiredToolCall& call :
       run.required_action().submit_tool_outputs().tool_calls()) {
    const Json arguments =
        Json::parse(call.function().arguments(), nullptr, false);
    v1::ToolOutput output;
    output.set_tool_call_id(call.id());
    if (call.function().name() == "get_stock_price") {
      EXPECT_EQ(arguments.value("ticker", ""), "AAPL")
          << call.function().arguments();
      output.set_output(kStockOutput);
    } else if (call.function().name() == "calculator") {
      EXPECT_EQ(arguments.value("expression", ""), "1000 * 237.5")
          << call.function().arguments();
      output.set_output(kCalculatorOutput);
    } else {
      ADD_FAILURE() << "unexpected tool call " << call.DebugString();
    }
    outputs.push_back(std::move(output));
  }
  return outputs;
}

// Event names with each run of a `*.delta` event folded into "name*".
std::vector<std::string> FoldedNames(const std::vector<v1::RunEvent>& events) {
  std::vector<std::string> names;
  for (const v1::RunEvent& event : events) {
    const std::string& name = event.event();
    const bool delta =
        name.size() > 6 && name.rfind(".delta") == name.size() - 6;
    if (delta && !names.empty() && names.back() == name + "*") continue;
    names.push_back(delta ? name + "*" : name);
  }
  return names;
}

// The decoded google.rpc.ErrorInfo of a failed call (empty on failure).
google::rpc::ErrorInfo ErrorInfoOf(const grpc::Status& status) {
  google::rpc::Status rich;
  google::rpc::ErrorInfo info;
  EXPECT_TRUE(rich.ParseFromString(status.error_details()))
      << "error_details is not a google.rpc.Status";
  EXPECT_EQ(rich.code(), static_cast<int>(status.error_code()));
  EXPECT_TRUE(rich.details_size() > 0 && rich.details(0).UnpackTo(&info))
      << "details[0] is not an ErrorInfo";
  EXPECT_EQ(info.domain(), "assistants.gateway");
  return info;
}

std::string MetadataOf(const google::rpc::ErrorInfo& info,
                       const std::string& key) {
  auto it = info.metadata().find(key);
  return it == info.metadata().end() ? "<absent>" : it->second;
}

// --- gRPC --------------------------------------------------------------------

struct Clients {
  explicit Clients(const std::shared_ptr<grpc::Channel>& channel)
      : assistants(v1::AssistantService::NewStub(channel)),
        threads(v1::ThreadService::NewStub(channel)),
        messages(v1::MessageService::NewStub(channel)),
        runs(v1::RunService::NewStub(channel)) {}

  std::unique_ptr<v1::AssistantService::Stub> assistants;
  std::unique_ptr<v1::ThreadService::Stub> threads;
  std::unique_ptr<v1::MessageService::Stub> messages;
  std::unique_ptr<v1::RunService::Stub> runs;
};

// The event order ENGINEERING.md §6 gives for the seed's streamed run,
// started with create_thread_and_run and with two tool rounds
// (get_stock_price, then calculator), deltas folded.
const std::vector<std::string>& SeedEventOrder() {
  static const auto* order = new std::vector<std::string>{
      "thread.created",
      "thread.run.created",
      "thread.run.queued",
      "thread.run.in_progress",
      // Round 1: get_stock_price.
      "thread.run.step.created",
      "thread.run.step.in_progress",
      "thread.run.step.delta*",
      "thread.run.requires_action",
      "thread.run.queued",
      "thread.run.in_progress",
      "thread.run.step.completed",
      // Round 2: calculator.
      "thread.run.step.created",
      "thread.run.step.in_progress",
      "thread.run.step.delta*",
      "thread.run.requires_action",
      "thread.run.queued",
      "thread.run.in_progress",
      "thread.run.step.completed",
      // The answer.
      "thread.run.step.created",
      "thread.run.step.in_progress",
      "thread.message.created",
      "thread.message.in_progress",
      "thread.message.delta*",
      "thread.message.completed",
      "thread.run.step.completed",
      "thread.run.completed",
      "done",
  };
  return *order;
}

// --- Fixture -----------------------------------------------------------------

class RunsE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { curl_global_init(CURL_GLOBAL_ALL); }

  void SetUp() override {
    std::string error;
    ASSERT_TRUE(fake_.Start(FakeOpenAiBinary(), {"--seed=7"}, &error)) << error;
  }

  void TearDown() override {
    clients_.reset();
    if (HasFailure()) {
      std::cerr << "--- gateway stderr ---\n"
                << gateway_.captured_stderr() << "--- fake-openai stderr ---\n"
                << fake_.captured_stderr();
    }
  }

  // Starts the gateway in front of fake-openai. `args` and `env` add to (and
  // override) the defaults: an in-memory store, backend "openai" by default,
  // and no inherited upstream tuning.
  void StartGateway(const std::vector<std::string>& args = {},
                    const std::map<std::string, std::string>& env = {}) {
    gateway_args_ = args;
    gateway_env_ = env;
    RestartGateway();
  }

  // (Re)starts the gateway with the arguments of the last StartGateway.
  void RestartGateway() {
    clients_.reset();
    StartGatewayProcess(gateway_, gateway_args_);
    if (HasFatalFailure()) return;
    std::shared_ptr<grpc::Channel> channel = gateway_.Connect();
    ASSERT_NE(channel, nullptr) << "gateway never accepted connections";
    clients_ = std::make_unique<Clients>(channel);
  }

  // Starts `process` as a gateway in front of fake-openai with `extra_args`
  // and the environment of StartGateway.
  void StartGatewayProcess(ServerProcess& process,
                           const std::vector<std::string>& extra_args) {
    std::map<std::string, std::string> env = {
        {"OPENAI_BASE_URL",
         "http://127.0.0.1:" + std::to_string(fake_.port()) + "/v1"},
        {"OPENAI_API_KEY", "sk-fake"},
        {"OPENAI_API_KEY_FILE", ""},
        {"OPENAI_ORGANIZATION", ""},
        {"OPENAI_PROJECT", ""},
        {"CHAT_COMPLETIONS_BASE_URL", ""},
        {"ASSISTANTS_DEFAULT_UPSTREAM", "openai"},
        {"ASSISTANTS_UPSTREAM_CONNECT_TIMEOUT_MS", ""},
        {"ASSISTANTS_UPSTREAM_FIRST_BYTE_TIMEOUT_MS", ""},
        {"ASSISTANTS_UPSTREAM_IDLE_TIMEOUT_MS", ""},
        {"ASSISTANTS_UPSTREAM_TOTAL_TIMEOUT_MS", ""},
        {"ASSISTANTS_UPSTREAM_MAX_ATTEMPTS", ""},
        {"ASSISTANTS_REQUIRES_ACTION_TIMEOUT_S", ""},
        {"ASSISTANTS_ACTIVE_RUN_POLICY", ""}};
    for (const auto& [name, value] : gateway_env_) env[name] = value;
    std::vector<std::string> env_list;
    for (const auto& [name, value] : env)
      env_list.push_back(name + "=" + value);
    std::vector<std::string> args = {"--shutdown_grace_ms=500"};
    if (std::none_of(
            extra_args.begin(), extra_args.end(),
            [](const std::string& a) { return a.rfind("--db=", 0) == 0; })) {
      args.push_back("--db=:memory:");
    }
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    process.set_env(env_list);
    std::string error;
    ASSERT_TRUE(process.Start(GatewayBinary(), args, &error)) << error;
  }

  Clients& clients() { return *clients_; }

  std::string CreateAssistant(const std::vector<v1::Tool>& tools,
                              const std::string& upstream = "") {
    return test_support::CreateAssistant(clients().assistants.get(), tools,
                                         upstream);
  }

  v1::Run GetRun(const v1::Run& run) {
    return test_support::GetRun(clients().runs.get(), run);
  }

  // Polls GetRun until the run's status is one of `want` (bounded).
  v1::Run WaitForStatus(const v1::Run& run, std::set<v1::RunStatus> want,
                        milliseconds timeout = seconds(15)) {
    v1::Run latest;
    const bool reached = WaitUntil(
        [&] {
          latest = GetRun(run);
          return want.count(latest.status()) > 0;
        },
        timeout);
    EXPECT_TRUE(reached) << "run stuck in "
                         << v1::RunStatus_Name(latest.status());
    return latest;
  }

  grpc::Status Submit(const v1::Run& run,
                      const std::vector<v1::ToolOutput>& outputs,
                      v1::Run* updated = nullptr) {
    v1::SubmitToolOutputsRequest request;
    request.set_thread_id(run.thread_id());
    request.set_run_id(run.id());
    for (const v1::ToolOutput& output : outputs) {
      *request.add_tool_outputs() = output;
    }
    v1::SubmitToolOutputsResponse response;
    grpc::Status status =
        clients().runs->SubmitToolOutputs(Context().get(), request, &response);
    if (updated != nullptr) *updated = response.run();
    return status;
  }

  // Reads `stream` to its end, answering each thread.run.requires_action
  // with the seed's outputs while the stream stays open.
  grpc::Status ReadAnswering(EventStream& stream,
                             std::vector<v1::RunEvent>* events) {
    v1::RunEvent event;
    while (stream.Next(&event)) {
      events->push_back(event);
      if (event.event() == "thread.run.requires_action") {
        v1::Run updated;
        grpc::Status submitted =
            Submit(event.run(), SeedAnswers(event.run()), &updated);
        EXPECT_TRUE(submitted.ok()) << Describe(submitted);
        EXPECT_EQ(updated.status(), v1::RUN_STATUS_QUEUED);
      }
    }
    return stream.Finish();
  }

  // After a restart: a stream reattached after the last event of `before`
  // (what a client saw of `run` before the gateway went down) continues
  // with the next sequence to `done`, the stored log extends `before`, and
  // the run completed.
  void ReattachAndExpectCompletion(const v1::Run& run,
                                   const std::vector<v1::RunEvent>& before);

  // The whole stored log of `run`, replayed from the start.
  std::vector<v1::RunEvent> Replay(const v1::Run& run) {
    EventStream stream(clients().runs.get(), Attach(run, 0), seconds(10));
    std::vector<v1::RunEvent> events;
    grpc::Status status = stream.ReadAll(&events);
    EXPECT_TRUE(status.ok()) << Describe(status);
    return events;
  }

  std::vector<v1::Message> ListMessages(const std::string& thread_id,
                                        const std::string& run_id = "") {
    v1::ListMessagesRequest request;
    request.set_thread_id(thread_id);
    request.set_run_id(run_id);
    request.mutable_options()->set_order(v1::LIST_ORDER_ASC);
    v1::ListMessagesResponse response;
    grpc::Status status =
        clients().messages->ListMessages(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << Describe(status);
    return {response.data().begin(), response.data().end()};
  }

  std::vector<v1::RunStep> ListSteps(const v1::Run& run) {
    return test_support::ListSteps(clients().runs.get(), run);
  }

  void Script(const Json& steps) { ScriptFake(fake_.port(), steps); }
  Json FakeStats() { return FakeCall(fake_.port(), "GET", "/_fake/stats"); }
  // Paths of the model requests fake-openai received, in order.
  std::vector<std::string> ModelRequests() {
    const Json recorded = FakeCall(fake_.port(), "GET", "/_fake/requests");
    std::vector<std::string> paths;
    for (const Json& r : recorded["requests"]) {
      paths.push_back(r["path"].get<std::string>());
    }
    return paths;
  }

  // Checks a finished seed run: its events (in the §6 order, numbered 1..N),
  // its steps, its stored answer and its usage.
  void ExpectSeedRun(const std::vector<v1::RunEvent>& events,
                     const v1::Run& final_run) {
    EXPECT_EQ(FoldedNames(events), SeedEventOrder());
    EXPECT_EQ(Sequences(events), OneTo(static_cast<int64_t>(events.size())));
    ExpectPayloads(events);

    // Steps: tool_calls, tool_calls, message_creation; the tool steps end
    // completed with the submitted outputs.
    std::vector<v1::RunStep> created;
    std::vector<v1::RunStep> completed;
    const v1::Message* final_message = nullptr;
    for (const v1::RunEvent& e : events) {
      if (e.event() == "thread.run.step.created") created.push_back(e.step());
      if (e.event() == "thread.run.step.completed")
        completed.push_back(e.step());
      if (e.event() == "thread.message.completed") final_message = &e.message();
    }
    ASSERT_EQ(created.size(), 3u);
    EXPECT_EQ(created[0].type(), v1::RUN_STEP_TYPE_TOOL_CALLS);
    EXPECT_EQ(created[1].type(), v1::RUN_STEP_TYPE_TOOL_CALLS);
    EXPECT_EQ(created[2].type(), v1::RUN_STEP_TYPE_MESSAGE_CREATION);
    ASSERT_EQ(completed.size(), 3u);
    const char* want_outputs[] = {kStockOutput, kCalculatorOutput};
    for (int i = 0; i < 2; ++i) {
      EXPECT_EQ(completed[i].id(), created[i].id());
      const auto& calls = completed[i].step_details().tool_calls().tool_calls();
      ASSERT_EQ(calls.size(), 1);
      EXPECT_EQ(calls[0].function().output(), want_outputs[i]);
      // The step's deltas: the call's id and name first, then argument
      // fragments that add up to the final arguments.
      std::string name;
      std::string arguments;
      std::string call_id;
      for (const v1::RunEvent& e : events) {
        if (!e.has_step_delta() || e.step_delta().id() != created[i].id()) {
          continue;
        }
        EXPECT_EQ(e.step_delta().object(), "thread.run.step.delta");
        for (const v1::ToolCallDelta& call :
             e.step_delta().delta().tool_calls()) {
          if (call_id.empty()) {
            call_id = call.id();
            name = call.function().name();
          }
          arguments += call.function().arguments();
        }
      }
      EXPECT_EQ(call_id, calls[0].id());
      EXPECT_EQ(name, calls[0].function().name());
      EXPECT_EQ(arguments, calls[0].function().arguments());
    }

    // The streamed text is the stored answer.
    ASSERT_NE(final_message, nullptr);
    const std::string text = DeltaText(events);
    EXPECT_THAT(text, HasSubstr("237,500"));
    EXPECT_EQ(MessageText(*final_message), text);
    std::vector<v1::Message> answers =
        ListMessages(final_run.thread_id(), final_run.id());
    ASSERT_EQ(answers.size(), 1u);
    EXPECT_EQ(answers[0].id(), final_message->id());
    EXPECT_EQ(answers[0].role(), v1::MESSAGE_ROLE_ASSISTANT);
    EXPECT_EQ(answers[0].status(), v1::MESSAGE_STATUS_COMPLETED);
    EXPECT_EQ(MessageText(answers[0]), text);

    EXPECT_EQ(final_run.status(), v1::RUN_STATUS_COMPLETED);
    EXPECT_TRUE(final_run.has_completed_at());
    EXPECT_GT(final_run.usage().prompt_tokens(), 0);
    EXPECT_GT(final_run.usage().completion_tokens(), 0);
    EXPECT_EQ(final_run.usage().total_tokens(),
              final_run.usage().prompt_tokens() +
                  final_run.usage().completion_tokens());
  }

  ServerProcess fake_;
  ServerProcess gateway_;
  std::vector<std::string> gateway_args_;
  std::map<std::string, std::string> gateway_env_;
  std::unique_ptr<Clients> clients_;
};

// --- The seed scenario, streamed, on each wire API ---------------------------

struct Backend {
  const char* test_name;
  const char* default_upstream;    // ASSISTANTS_DEFAULT_UPSTREAM.
  const char* assistant_upstream;  // The assistant's `upstream`.
  const char* run_upstream;        // What the run records.
  const char* path;                // Where fake-openai sees the turns.
};

void PrintTo(const Backend& backend, std::ostream* os) {
  *os << backend.test_name;
}

class SeedStreamTest : public RunsE2eTest,
                       public ::testing::WithParamInterface<Backend> {};

TEST_P(SeedStreamTest, StreamedSeedRunFollowsTheHostedEventOrder) {
  const Backend& backend = GetParam();
  StartGateway({}, {{"ASSISTANTS_DEFAULT_UPSTREAM", backend.default_upstream}});
  if (HasFatalFailure()) return;
  const std::string assistant_id =
      CreateAssistant(SeedTools(), backend.assistant_upstream);

  v1::RunEventsRequest request;
  *request.mutable_create_thread_and_run() =
      ThreadAndRun(assistant_id, kSeedQuestion);
  EventStream stream(clients().runs.get(), request);
  std::vector<v1::RunEvent> events;
  grpc::Status status = ReadAnswering(stream, &events);
  ASSERT_TRUE(status.ok()) << Describe(status);
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events.back().event(), "done");

  v1::Run run = events[1].run();
  const v1::Run final_run = GetRun(run);
  ExpectSeedRun(events, final_run);
  EXPECT_EQ(final_run.upstream(), backend.run_upstream);
  // Three model turns, all on the expected wire API.
  EXPECT_EQ(ModelRequests(), std::vector<std::string>(3, backend.path));
}

INSTANTIATE_TEST_SUITE_P(
    Backends, SeedStreamTest,
    ::testing::Values(
        Backend{"Responses", "openai", "", "openai", "/v1/responses"},
        Backend{"ChatCompletionsByDefault", "openai-chat", "", "openai-chat",
                "/v1/chat/completions"},
        Backend{"ChatCompletionsPerAssistant", "openai", "openai-chat",
                "openai-chat", "/v1/chat/completions"}),
    [](const ::testing::TestParamInfo<Backend>& info) {
      return std::string(info.param.test_name);
    });

// --- The seed's polling loop -------------------------------------------------

TEST_F(RunsE2eTest, PolledSeedRunCompletes) {
  StartGateway();
  if (HasFatalFailure()) return;
  const std::string assistant_id = CreateAssistant(SeedTools());
  v1::CreateThreadAndRunResponse created;
  grpc::Status status = clients().runs->CreateThreadAndRun(
      Context().get(), ThreadAndRun(assistant_id, kSeedQuestion), &created);
  ASSERT_TRUE(status.ok()) << Describe(status);
  const v1::Run& run = created.run();
  EXPECT_EQ(run.status(), v1::RUN_STATUS_QUEUED);

  // while run.status in (queued, in_progress, requires_action): ...
  std::vector<std::string> answered;
  v1::Run latest = run;
  const bool ended = WaitUntil(
      [&] {
        latest = GetRun(run);
        if (latest.status() == v1::RUN_STATUS_REQUIRES_ACTION) {
          for (const auto& call :
               latest.required_action().submit_tool_outputs().tool_calls()) {
            answered.push_back(call.function().name());
          }
          grpc::Status submitted = Submit(latest, SeedAnswers(latest));
          EXPECT_TRUE(submitted.ok()) << Describe(submitted);
        }
        return latest.status() != v1::RUN_STATUS_QUEUED &&
               latest.status() != v1::RUN_STATUS_IN_PROGRESS &&
               latest.status() != v1::RUN_STATUS_REQUIRES_ACTION;
      },
      seconds(20));
  ASSERT_TRUE(ended) << v1::RunStatus_Name(latest.status());
  EXPECT_EQ(answered,
            (std::vector<std::string>{"get_stock_price", "calculator"}));

  // The same run as the streamed one: events, steps, answer, usage.
  ExpectSeedRun(Replay(run), latest);
  const std::vector<v1::Message> messages = ListMessages(run.thread_id());
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(MessageText(messages[0]), kSeedQuestion);
  EXPECT_THAT(MessageText(messages[1]), HasSubstr("237,500"));
  const std::vector<v1::RunStep> steps = ListSteps(run);
  ASSERT_EQ(steps.size(), 3u);
  for (const v1::RunStep& step : steps) {
    EXPECT_EQ(step.status(), v1::RUN_STEP_STATUS_COMPLETED) << step.id();
  }
}

// --- Disconnect and resume ---------------------------------------------------

TEST_F(RunsE2eTest, ResumedStreamDeliversEveryEventOnce) {
  StartGateway();
  if (HasFatalFailure()) return;
  const std::string assistant_id = CreateAssistant({});
  Script(Json::array({{{"text", std::string(120, 'x')},
                       {"tokens", 24},
                       {"token_delay_ms", 25}}}));

  v1::RunEventsRequest request;
  *request.mutable_create_thread_and_run() =
      ThreadAndRun(assistant_id, "Tell me about Lisbon.");
  auto first = std::make_unique<EventStream>(clients().runs.get(), request);
  std::vector<v1::RunEvent> seen;
  v1::RunEvent event;
  // Up to the third text delta, then hang up.
  int deltas = 0;
  while (deltas < 3 && first->Next(&event)) {
    seen.push_back(event);
    if (event.event() == "thread.message.delta") ++deltas;
  }
  ASSERT_EQ(deltas, 3);
  const v1::Run run = seen[1].run();

  // A second watcher, from the start, while the run is live.
  std::vector<v1::RunEvent> watched;
  grpc::Status watched_status;
  std::thread watcher([&] {
    EventStream stream(clients().runs.get(), Attach(run, 0));
    watched_status = stream.ReadAll(&watched);
  });

  EXPECT_EQ(first->Cancel().error_code(), grpc::StatusCode::CANCELLED);
  first.reset();
  const int64_t last_seen = seen.back().sequence();

  EventStream resumed(clients().runs.get(), Attach(run, last_seen));
  std::vector<v1::RunEvent> rest;
  grpc::Status status = resumed.ReadAll(&rest);
  watcher.join();
  ASSERT_TRUE(status.ok()) << Describe(status);
  ASSERT_TRUE(watched_status.ok()) << Describe(watched_status);
  ASSERT_FALSE(rest.empty());
  EXPECT_EQ(rest.front().sequence(), last_seen + 1);
  EXPECT_GT(DeltaText(rest).size(), 0u) << "the hang-up was not mid-stream";

  std::vector<v1::RunEvent> all = seen;
  all.insert(all.end(), rest.begin(), rest.end());
  EXPECT_EQ(Sequences(all), OneTo(static_cast<int64_t>(all.size())));
  EXPECT_EQ(all.back().event(), "done");
  EXPECT_EQ(DeltaText(all), std::string(120, 'x'));
  // The watcher saw exactly the same events.
  ASSERT_EQ(watched.size(), all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(watched[i], all[i]))
        << "event " << i + 1 << ":\n"
        << watched[i].DebugString() << "vs\n"
        << all[i].DebugString();
  }
  EXPECT_EQ(GetRun(run).status(), v1::RUN_STATUS_COMPLETED);

  // Reconnecting to the finished run: from just before `done` gets `done`;
  // from `done` itself there is nothing left to send.
  for (const int64_t after : {static_cast<int64_t>(all.size()) - 1,
                              static_cast<int64_t>(all.size())}) {
    EventStream again(clients().runs.get(), Attach(run, after), seconds(5));
    std::vector<v1::RunEvent> tail;
    status = again.ReadAll(&tail);
    EXPECT_TRUE(status.ok())
        << "after_sequence=" << after << ": " << Describe(status);
    EXPECT_EQ(
        Sequences(tail),
        std::vector<int64_t>(after < static_cast<int64_t>(all.size()) ? 1 : 0,
                             all.size()));
  }
}

TEST_F(RunsE2eTest, RetriedStartReattachesToTheSameRun) {
  StartGateway();
  if (HasFatalFailure()) return;
  const std::string assistant_id = CreateAssistant({});
  Script(Json::array({{{"text", std::string(40, 'w')},
                       {"tokens", 20},
                       {"token_delay_ms", 20}}}));
  v1::RunEventsRequest request;
  *request.mutable_create_thread_and_run() =
      ThreadAndRun(assistant_id, "Tell me about Lisbon.");
  request.mutable_create_thread_and_run()->set_request_id("retry-1");
  std::vector<v1::RunEvent> seen;
  {
    EventStream first(clients().runs.get(), request);
    v1::RunEvent event;
    while (seen.size() < 5 && first.Next(&event)) seen.push_back(event);
    ASSERT_EQ(seen.size(), 5u);
  }  // Hangs up.
  // The same start, resumed from the last event seen: the same run.
  request.set_after_sequence(seen.back().sequence());
  EventStream retried(clients().runs.get(), request);
  std::vector<v1::RunEvent> rest;
  grpc::Status status = retried.ReadAll(&rest);
  ASSERT_TRUE(status.ok()) << Describe(status);
  ASSERT_FALSE(rest.empty());
  EXPECT_EQ(rest.front().sequence(), seen.back().sequence() + 1);
  std::vector<v1::RunEvent> all = seen;
  all.insert(all.end(), rest.begin(), rest.end());
  EXPECT_EQ(Sequences(all), OneTo(static_cast<int64_t>(all.size())));
  EXPECT_EQ(DeltaText(all), std::string(40, 'w'));
  for (const v1::RunEvent& e : rest) {
    if (e.has_run()) {
      EXPECT_EQ(e.run().id(), seen[1].run().id());
    }
  }
  v1::ListRunsRequest list;
  list.set_thread_id(seen[1].run().thread_id());
  v1::ListRunsResponse runs;
  status = clients().runs->ListRuns(Context().get(), list, &runs);
  ASSERT_TRUE(status.ok()) << Describe(status);
  EXPECT_EQ(runs.data_size(), 1);
  EXPECT_EQ(ModelRequests().size(), 1u);
}

// --- Cancel mid-stream -------------------------------------------------------

TEST_F(RunsE2eTest, CancelWhileStreamingAbortsTheUpstreamRequest) {
  StartGateway();
  if (HasFatalFailure()) return;
  const std::string assistant_id = CreateAssistant({});
  // 100 deltas 50 ms apart: five seconds if nothing stopped it.
  Script(Json::array({{{"text", std::string(100, 'y')},
                       {"tokens", 100},
                       {"token_delay_ms", 50}}}));
  const int aborted_before = FakeStats()["streams_aborted"].get<int>();

  v1::RunEventsRequest request;
  *request.mutable_create_thread_and_run() =
      ThreadAndRun(assistant_id, "Tell me about Lisbon.");
  EventStream stream(clients().runs.get(), request);
  std::vector<v1::RunEvent> events;
  v1::RunEvent event;
  while (stream.Next(&event)) {
    events.push_back(event);
    if (event.event() == "thread.message.delta") break;
  }
  ASSERT_FALSE(events.empty());
  ASSERT_EQ(events.back().event(), "thread.message.delta");
  const v1::Run run = events[1].run();

  const auto cancel_start = SteadyClock::now();
  v1::CancelRunRequest cancel;
  cancel.set_thread_id(run.thread_id());
  cancel.set_run_id(run.id());
  v1::CancelRunResponse cancelled;
  grpc::Status status =
      clients().runs->CancelRun(Context().get(), cancel, &cancelled);
  ASSERT_TRUE(status.ok()) << Describe(status);
  EXPECT_THAT(
      cancelled.run().status(),
      ::testing::AnyOf(v1::RUN_STATUS_CANCELLING, v1::RUN_STATUS_CANCELLED));

  const size_t before_cancel = events.size();
  status = stream.ReadAll(&events);
  ASSERT_TRUE(status.ok()) << Describe(status);
  const auto cancel_took = SteadyClock::now() - cancel_start;
  EXPECT_LT(cancel_took, seconds(3)) << "the model turn was not aborted";

  std::vector<std::string> after;
  for (size_t i = before_cancel; i < events.size(); ++i) {
    after.push_back(events[i].event());
  }
  ASSERT_GE(after.size(), 3u);
  const auto cancelling =
      std::find(after.begin(), after.end(), "thread.run.cancelling");
  ASSERT_NE(cancelling, after.end()) << ::testing::PrintToString(after);
  EXPECT_EQ(std::find(cancelling, after.end(), "thread.message.delta"),
            after.end())
      << "text after cancelling: " << ::testing::PrintToString(after);
  EXPECT_EQ(after[after.size() - 2], "thread.run.cancelled");
  EXPECT_EQ(after.back(), "done");
  EXPECT_EQ(Sequences(events), OneTo(static_cast<int64_t>(events.size())));
  ExpectPayloads(events);

  const v1::Run final_run = GetRun(run);
  EXPECT_EQ(final_run.status(), v1::RUN_STATUS_CANCELLED);
  EXPECT_TRUE(final_run.has_cancelled_at());
  // fake-openai saw the gateway hang up mid-stream.
  int aborted = aborted_before;
  EXPECT_TRUE(WaitUntil(
      [&] {
        aborted = FakeStats()["streams_aborted"].get<int>();
        return aborted > aborted_before;
      },
      seconds(5)))
      << "streams_aborted stayed " << aborted;
  // Cancelling again: the run is over.
  status = clients().runs->CancelRun(Context().get(), cancel, &cancelled);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ErrorInfoOf(status).reason(), "RUN_NOT_ACTIVE");
}

// --- Upstream faults ---------------------------------------------------------

// Starts a run of a tool-less assistant and streams it to its end.
class UpstreamFaultTest : public RunsE2eTest {
 protected:
  v1::Run RunToEnd(std::vector<v1::RunEvent>* events,
                   milliseconds timeout = seconds(20)) {
    const std::string assistant_id = CreateAssistant({});
    v1::RunEventsRequest request;
    *request.mutable_create_thread_and_run() =
        ThreadAndRun(assistant_id, "Tell me about Lisbon.");
    EventStream stream(clients().runs.get(), request, timeout);
    grpc::Status status = stream.ReadAll(events);
    EXPECT_TRUE(status.ok()) << Describe(status);
    if (events->size() < 2) {
      ADD_FAILURE() << "no run events";
      return v1::Run();
    }
    EXPECT_EQ(events->back().event(), "done");
    EXPECT_EQ(Sequences(*events), OneTo(static_cast<int64_t>(events->size())));
    ExpectPayloads(*events);
    return GetRun((*events)[1].run());
  }
};

TEST_F(UpstreamFaultTest, RateLimitIsRetriedAfterRetryAfter) {
  StartGateway();
  if (HasFatalFailure()) return;
  Script(Json::array({{{"status", 429}, {"retry_after", 0.2}}}));
  std::vector<v1::RunEvent> events;
  const v1::Run run = RunToEnd(&events);
  EXPECT_EQ(run.status(), v1::RUN_STATUS_COMPLETED)
      << run.last_error().DebugString();
  EXPECT_THAT(DeltaText(events), HasSubstr("Lisbon"));
  EXPECT_EQ(ModelRequests().size(), 2u);  // The 429, then the answer.
}

TEST_F(UpstreamFaultTest, PersistentServerErrorFailsTheRun) {
  StartGateway();
  if (HasFatalFailure()) return;
  Script(Json::array({{{"status", 500}, {"repeat", 10}}}));
  std::vector<v1::RunEvent> events;
  const v1::Run run = RunToEnd(&events);
  EXPECT_EQ(run.status(), v1::RUN_STATUS_FAILED);
  EXPECT_EQ(run.last_error().code(), "server_error");
  EXPECT_FALSE(run.last_error().message().empty());
  EXPECT_TRUE(run.has_failed_at());
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[events.size() - 2].event(), "thread.run.failed");
  // Bounded retries: the default three attempts.
  EXPECT_EQ(ModelRequests().size(), 3u);
}

TEST_F(UpstreamFaultTest, DroppedStreamFailsTheRun) {
  StartGateway();
  if (HasFatalFailure()) return;
  // Cut after response.created, in_progress, output_item.added,
  // content_part.added and two text deltas.
  Script(Json::array({{{"text", "one two three four five six seven eight"},
                       {"tokens", 8},
                       {"drop_after_events", 6}}}));
  std::vector<v1::RunEvent> events;
  const v1::Run run = RunToEnd(&events);
  EXPECT_EQ(run.status(), v1::RUN_STATUS_FAILED);
  EXPECT_EQ(run.last_error().code(), "server_error");
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[events.size() - 2].event(), "thread.run.failed");
  // The partial answer is kept, marked incomplete.
  std::vector<v1::Message> messages = ListMessages(run.thread_id(), run.id());
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].status(), v1::MESSAGE_STATUS_INCOMPLETE);
  EXPECT_EQ(MessageText(messages[0]), DeltaText(events));
}

TEST_F(UpstreamFaultTest, StalledStreamFailsOnTheIdleTimeout) {
  StartGateway({}, {{"ASSISTANTS_UPSTREAM_IDLE_TIMEOUT_MS", "500"}});
  if (HasFatalFailure()) return;
  Script(Json::array({{{"text", "one two three four five six seven eight"},
                       {"tokens", 8},
                       {"stall_after_events", 6}}}));
  const auto start = SteadyClock::now();
  std::vector<v1::RunEvent> events;
  const v1::Run run = RunToEnd(&events, seconds(15));
  const auto took = SteadyClock::now() - start;
  EXPECT_EQ(run.status(), v1::RUN_STATUS_FAILED);
  EXPECT_EQ(run.last_error().code(), "server_error");
  EXPECT_LT(took, seconds(5));
  EXPECT_EQ(ModelRequests().size(), 1u);  // Not retried after output.
  // The gateway hung up on the stalled request.
  EXPECT_TRUE(
      WaitUntil([&] { return FakeStats()["streams_aborted"].get<int>() == 1; },
                seconds(5)));
}

// --- requires_action expiry --------------------------------------------------

TEST_F(RunsE2eTest, UnansweredRequiresActionExpires) {
  StartGateway({"--requires_action_timeout_s=1", "--heartbeat_ms=300"});
  if (HasFatalFailure()) return;
  const std::string assistant_id = CreateAssistant(SeedTools());
  v1::RunEventsRequest request;
  *request.mutable_create_thread_and_run() =
      ThreadAndRun(assistant_id, kSeedQuestion);
  EventStream stream(clients().runs.get(), request, seconds(15));
  std::vector<v1::RunEvent> events;
  const auto start = SteadyClock::now();
  grpc::Status status = stream.ReadAll(&events);  // Answers nothing.
  ASSERT_TRUE(status.ok()) << Describe(status);
  EXPECT_LT(SteadyClock::now() - start, seconds(5));
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back().event(), "done");
  EXPECT_EQ(events[events.size() - 2].event(), "thread.run.expired");
  EXPECT_NE(std::find_if(events.begin(), events.end(),
                         [](const v1::RunEvent& e) {
                           return e.event() == "thread.run.requires_action";
                         }),
            events.end());
  EXPECT_EQ(Sequences(events), OneTo(static_cast<int64_t>(events.size())));
  ExpectPayloads(events);
  // The silent wait for outputs was kept alive by heartbeats that repeat
  // the last sequence.
  EXPECT_FALSE(stream.heartbeats().empty());
  for (const auto& [heartbeat, last_real] : stream.heartbeats()) {
    EXPECT_EQ(heartbeat.sequence(), last_real);
    EXPECT_TRUE(heartbeat.has_heartbeat());
  }

  const v1::Run run = GetRun(events[1].run());
  EXPECT_EQ(run.status(), v1::RUN_STATUS_EXPIRED);
  EXPECT_FALSE(run.has_required_action());
  // Too late to answer.
  const v1::Run waiting = [&] {
    for (const v1::RunEvent& e : events) {
      if (e.event() == "thread.run.requires_action") return e.run();
    }
    return v1::Run();
  }();
  status = Submit(waiting, SeedAnswers(waiting));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ErrorInfoOf(status).reason(), "RUN_NOT_AWAITING_OUTPUTS");
}

// --- One active run per thread ---------------------------------------------

TEST_F(RunsE2eTest, ThreadWithRunInRequiresActionRejectsWrites) {
  StartGateway();
  if (HasFatalFailure()) return;
  const std::string assistant_id = CreateAssistant(SeedTools());
  v1::CreateThreadAndRunResponse created;
  grpc::Status status = clients().runs->CreateThreadAndRun(
      Context().get(), ThreadAndRun(assistant_id, kSeedQuestion), &created);
  ASSERT_TRUE(status.ok()) << Describe(status);
  const v1::Run run =
      WaitForStatus(created.run(), {v1::RUN_STATUS_REQUIRES_ACTION});
  ASSERT_EQ(run.status(), v1::RUN_STATUS_REQUIRES_ACTION);

  v1::CreateMessageRequest message;
  message.set_thread_id(run.thread_id());
  *message.mutable_message() = UserMessage("One more thing.");
  v1::CreateMessageResponse message_response;
  status = clients().messages->CreateMessage(Context().get(), message,
                                             &message_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << Describe(status);
  google::rpc::ErrorInfo info = ErrorInfoOf(status);
  EXPECT_EQ(info.reason(), "THREAD_HAS_ACTIVE_RUN");
  EXPECT_EQ(MetadataOf(info, "run_id"), run.id());

  v1::CreateRunRequest second;
  second.set_thread_id(run.thread_id());
  second.mutable_options()->set_assistant_id(assistant_id);
  v1::CreateRunResponse second_response;
  status = clients().runs->CreateRun(Context().get(), second, &second_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << Describe(status);
  info = ErrorInfoOf(status);
  EXPECT_EQ(info.reason(), "THREAD_HAS_ACTIVE_RUN");
  EXPECT_EQ(MetadataOf(info, "run_id"), run.id());
  EXPECT_THAT(status.error_message(), HasSubstr(run.id()));

  // Nothing was added, and the waiting run is untouched.
  EXPECT_EQ(ListMessages(run.thread_id()).size(), 1u);
  EXPECT_EQ(GetRun(run).status(), v1::RUN_STATUS_REQUIRES_ACTION);
}

// --- kill -9 and restart -----------------------------------------------------

// The stored log after a crash: 1..N once each, and the events a client saw
// before the crash are exactly the stored ones (nothing renumbered).
void ExpectLogExtends(const std::vector<v1::RunEvent>& seen_before,
                      const std::vector<v1::RunEvent>& log) {
  EXPECT_EQ(Sequences(log), OneTo(static_cast<int64_t>(log.size())));
  ASSERT_GE(log.size(), seen_before.size());
  for (size_t i = 0; i < seen_before.size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(seen_before[i], log[i]))
        << "event " << i + 1 << " changed across the restart:\n"
        << seen_before[i].DebugString() << "now\n"
        << log[i].DebugString();
  }
  ExpectPayloads(log);
}

void RunsE2eTest::ReattachAndExpectCompletion(
    const v1::Run& run, const std::vector<v1::RunEvent>& before) {
  if (ReattachToCompletion(clients().runs.get(), run, before).empty()) return;
  ExpectLogExtends(before, Replay(run));
  EXPECT_EQ(GetRun(run).status(), v1::RUN_STATUS_COMPLETED);
}

TEST_F(RunsE2eTest, RunInRequiresActionSurvivesKill) {
  TempDir dir;
  StartGateway({"--db=" + dir.path() + "/gw.db"});
  if (HasFatalFailure()) return;
  const std::string assistant_id = CreateAssistant(SeedTools());
  v1::RunEventsRequest request;
  *request.mutable_create_thread_and_run() =
      ThreadAndRun(assistant_id, kSeedQuestion);
  std::vector<v1::RunEvent> before;
  {
    EventStream stream(clients().runs.get(), request);
    v1::RunEvent event;
    while (stream.Next(&event)) {
      before.push_back(event);
      if (event.event() == "thread.run.requires_action") break;
    }
    ASSERT_FALSE(before.empty());
    ASSERT_EQ(before.back().event(), "thread.run.requires_action");
    gateway_.Kill();
  }
  const v1::Run run = before.back().run();
  const int64_t last_seen = before.back().sequence();

  RestartGateway();
  if (HasFatalFailure()) return;
  v1::Run recovered = GetRun(run);
  EXPECT_EQ(recovered.status(), v1::RUN_STATUS_REQUIRES_ACTION);
  EXPECT_TRUE(MessageDifferencer::Equals(recovered.required_action(),
                                         run.required_action()));

  EventStream resumed(clients().runs.get(), Attach(run, last_seen));
  grpc::Status status_of_submit =
      Submit(recovered, SeedAnswers(recovered));  // Round 1.
  EXPECT_TRUE(status_of_submit.ok()) << Describe(status_of_submit);
  std::vector<v1::RunEvent> after;
  grpc::Status status = ReadAnswering(resumed, &after);  // And round 2.
  ASSERT_TRUE(status.ok()) << Describe(status);
  ASSERT_FALSE(after.empty());
  EXPECT_EQ(after.front().sequence(), last_seen + 1);

  std::vector<v1::RunEvent> all = before;
  all.insert(all.end(), after.begin(), after.end());
  const v1::Run final_run = GetRun(run);
  ExpectSeedRun(all, final_run);
  ExpectLogExtends(before, Replay(run));
}

TEST_F(RunsE2eTest, RunKilledMidTurnResumesAfterRestart) {
  TempDir dir;
  StartGateway({"--db=" + dir.path() + "/gw.db"});
  if (HasFatalFailure()) return;
  const std::string assistant_id = CreateAssistant({});
  // A slow first turn (killed halfway); the retried turn gets the default,
  // quick answer.
  Script(Json::array({{{"text", std::string(60, 'z')},
                       {"tokens", 60},
                       {"token_delay_ms", 50}}}));
  v1::RunEventsRequest request;
  *request.mutable_create_thread_and_run() =
      ThreadAndRun(assistant_id, "Tell me about Lisbon.");
  std::vector<v1::RunEvent> before;
  {
    EventStream stream(clients().runs.get(), request);
    v1::RunEvent event;
    int deltas = 0;
    while (deltas < 3 && stream.Next(&event)) {
      before.push_back(event);
      if (event.event() == "thread.message.delta") ++deltas;
    }
    ASSERT_EQ(deltas, 3);
    gateway_.Kill();
  }
  const v1::Run run = before[1].run();

  RestartGateway();
  if (HasFatalFailure()) return;
  ReattachAndExpectCompletion(run, before);
  // The interrupted step failed; the retried turn's step completed.
  const std::vector<v1::RunStep> steps = ListSteps(run);
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].status(), v1::RUN_STEP_STATUS_FAILED);
  EXPECT_EQ(steps[0].last_error().code(), "server_error");
  EXPECT_EQ(steps[1].status(), v1::RUN_STEP_STATUS_COMPLETED);
  // Its partial message is kept as incomplete; the answer completed.
  const std::vector<v1::Message> messages =
      ListMessages(run.thread_id(), run.id());
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0].status(), v1::MESSAGE_STATUS_INCOMPLETE);
  EXPECT_EQ(messages[1].status(), v1::MESSAGE_STATUS_COMPLETED);
  EXPECT_THAT(MessageText(messages[1]), HasSubstr("Lisbon"));
}

// SIGTERM while a run streams: the stream gets a final `draining` event
// (carrying the last real sequence) and ends UNAVAILABLE with RetryInfo, the
// gateway exits 0 well within its deadline, and after the restart the run
// resumes and the reattached stream continues with nothing lost or repeated.
TEST_F(RunsE2eTest, SigtermDrainsStreamsAndTheRunResumes) {
  TempDir dir;
  StartGateway({"--db=" + dir.path() + "/gw.db", "--shutdown_grace_ms=2000"});
  if (HasFatalFailure()) return;
  const std::string assistant_id = CreateAssistant({});
  Script(Json::array({{{"text", std::string(60, 'z')},
                       {"tokens", 60},
                       {"token_delay_ms", 50}}}));
  v1::RunEventsRequest request;
  *request.mutable_create_thread_and_run() =
      ThreadAndRun(assistant_id, "Tell me about Lisbon.");
  std::vector<v1::RunEvent> before;
  v1::RunEvent draining;
  grpc::Status drained_status;
  int exit_status = -2;
  {
    EventStream stream(clients().runs.get(), request);
    v1::RunEvent event;
    int deltas = 0;
    while (deltas < 3 && stream.Next(&event)) {
      before.push_back(event);
      if (event.event() == "thread.message.delta") ++deltas;
    }
    ASSERT_EQ(deltas, 3);
    std::thread stopper([&] { exit_status = gateway_.Stop(); });
    while (stream.Next(&event)) {
      if (event.event() == "draining") {
        draining = event;
        continue;
      }
      ASSERT_TRUE(draining.event().empty()) << "event after draining";
      before.push_back(event);
    }
    drained_status = stream.Finish();
    stopper.join();
  }
  EXPECT_EQ(draining.event(), "draining");
  EXPECT_EQ(draining.sequence(), before.back().sequence());
  EXPECT_EQ(drained_status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(drained_status.error_message(), HasSubstr("shutting down"));
  EXPECT_EQ(exit_status, 0) << DescribeWaitStatus(exit_status);
  const v1::Run run = before[1].run();

  RestartGateway();
  if (HasFatalFailure()) return;
  ReattachAndExpectCompletion(run, before);
}

// --- Several replicas on one PostgreSQL database ---------------------------

// Three gateway processes on one database (a fresh schema per test) in front
// of one fake-openai; replica 0 is the base fixture's gateway. Short run
// leases so a killed replica's runs are taken over within seconds.
class ClusterE2eTest : public RunsE2eTest {
 protected:
  static constexpr int kReplicas = 3;

  void SetUp() override {
    if (!PgTestDb::Available()) GTEST_SKIP() << PgTestDb::SkipMessage();
    RunsE2eTest::SetUp();
    if (HasFatalFailure()) return;
    db_ = std::make_unique<PgTestDb>();
    ASSERT_TRUE(db_->status().ok()) << db_->status();
    StartGateway(ReplicaArgs(0));
    if (HasFatalFailure()) return;
    for (int i = 1; i < kReplicas; ++i) {
      StartGatewayProcess(others_[i - 1], ReplicaArgs(i));
      if (HasFatalFailure()) return;
      std::shared_ptr<grpc::Channel> channel = others_[i - 1].Connect();
      ASSERT_NE(channel, nullptr) << "replica " << i << " never accepted";
      other_clients_[i - 1] = std::make_unique<Clients>(channel);
    }
  }

  void TearDown() override {
    for (auto& c : other_clients_) c.reset();
    if (HasFailure()) {
      for (int i = 1; i < kReplicas; ++i) {
        std::cerr << "--- replica " << i << " stderr ---\n"
                  << others_[i - 1].captured_stderr();
      }
    }
    RunsE2eTest::TearDown();
  }

  std::vector<std::string> ReplicaArgs(int i) const {
    std::vector<std::string> args = {
        "--store_postgres_url=" + db_->url(),
        "--cluster_replica_id=replica-" + std::to_string(i),
        "--cluster_run_lease_ttl_ms=1500"};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    return args;
  }

  // Flags every replica also gets (set by a derived fixture's constructor).
  std::vector<std::string> extra_args_;

  Clients& replica(int i) {
    return i == 0 ? clients() : *other_clients_[i - 1];
  }
  ServerProcess& process(int i) { return i == 0 ? gateway_ : others_[i - 1]; }

  grpc::Status SubmitVia(int i, const v1::Run& run,
                         const std::vector<v1::ToolOutput>& outputs) {
    v1::SubmitToolOutputsRequest request;
    request.set_thread_id(run.thread_id());
    request.set_run_id(run.id());
    for (const v1::ToolOutput& output : outputs) {
      *request.add_tool_outputs() = output;
    }
    v1::SubmitToolOutputsResponse response;
    return replica(i).runs->SubmitToolOutputs(Context().get(), request,
                                              &response);
  }

  // A run created through replica `via` whose one turn streams `tokens`
  // tokens 50 ms apart (the fake's next scripted answer).
  v1::Run StartSlowRun(int via, const std::string& assistant_id,
                       const std::string& question, int tokens) {
    Script(Json::array({{{"text", std::string(tokens, 'z')},
                         {"tokens", tokens},
                         {"token_delay_ms", 50}}}));
    v1::CreateThreadAndRunResponse created;
    grpc::Status status = replica(via).runs->CreateThreadAndRun(
        Context().get(), ThreadAndRun(assistant_id, question), &created);
    EXPECT_TRUE(status.ok()) << Describe(status);
    return created.run();
  }

  // Reads `stream` until `deltas` message deltas arrived; true if they did.
  static bool ReadDeltas(EventStream& stream, int deltas,
                         std::vector<v1::RunEvent>* events) {
    v1::RunEvent event;
    int seen = 0;
    while (seen < deltas && stream.Next(&event)) {
      events->push_back(event);
      if (event.event() == "thread.message.delta") ++seen;
    }
    return seen == deltas;
  }

  std::string CreateThread(int i) {
    v1::CreateThreadRequest request;
    *request.add_messages() = UserMessage("Tell me about Lisbon.");
    v1::CreateThreadResponse response;
    grpc::Status status =
        replica(i).threads->CreateThread(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << Describe(status);
    return response.thread().id();
  }

  std::unique_ptr<PgTestDb> db_;
  ServerProcess others_[kReplicas - 1];
  std::unique_ptr<Clients> other_clients_[kReplicas - 1];
};

// The seed scenario spread over the replicas: created through replica 0
// (which drives it), streamed through replica 1 (which sees replica 0's
// events through the database), tool outputs submitted through replica 2
// (which takes the waiting run over). The stream is the seed's exact event
// order, numbered 1..N, each event once.
TEST_F(ClusterE2eTest, RunCreatedOnOneStreamedOnAnotherOutputsThroughTheThird) {
  const std::string assistant_id = CreateAssistant(SeedTools());
  v1::CreateThreadAndRunResponse created;
  grpc::Status status = replica(0).runs->CreateThreadAndRun(
      Context().get(), ThreadAndRun(assistant_id, kSeedQuestion), &created);
  ASSERT_TRUE(status.ok()) << Describe(status);
  const v1::Run run = created.run();

  EventStream stream(replica(1).runs.get(), Attach(run, 0), seconds(60));
  std::vector<v1::RunEvent> events;
  v1::RunEvent event;
  while (stream.Next(&event)) {
    events.push_back(event);
    if (event.event() == "thread.run.requires_action") {
      grpc::Status submitted =
          SubmitVia(2, event.run(), SeedAnswers(event.run()));
      ASSERT_TRUE(submitted.ok()) << Describe(submitted);
    }
  }
  status = stream.Finish();
  ASSERT_TRUE(status.ok()) << Describe(status);
  ExpectSeedRun(events, GetRun(run));
  // Every replica reads the same stored log.
  EventStream replay(replica(2).runs.get(), Attach(run, 0), seconds(10));
  std::vector<v1::RunEvent> replayed;
  ASSERT_TRUE(replay.ReadAll(&replayed).ok());
  EXPECT_EQ(Sequences(replayed), Sequences(events));
}

// kill -9 of the replica driving a run mid-turn: another replica takes the
// run over once its lease expires and resumes it (the interrupted turn is
// retried); a stream open on a third replica the whole time continues with
// nothing lost or repeated.
TEST_F(ClusterE2eTest, KilledDriverIsTakenOverAndTheStreamContinues) {
  const std::string assistant_id = CreateAssistant({});
  const v1::Run run =
      StartSlowRun(0, assistant_id, "Tell me about Lisbon.", 60);
  ASSERT_FALSE(run.id().empty());

  EventStream stream(replica(1).runs.get(), Attach(run, 0), seconds(60));
  std::vector<v1::RunEvent> events;
  ASSERT_TRUE(ReadDeltas(stream, 3, &events));
  process(0).Kill();
  v1::RunEvent event;
  while (stream.Next(&event)) events.push_back(event);
  grpc::Status status = stream.Finish();
  ASSERT_TRUE(status.ok()) << Describe(status);

  EXPECT_EQ(Sequences(events), OneTo(static_cast<int64_t>(events.size())));
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events.back().event(), "done");
  EXPECT_EQ(events[events.size() - 2].event(), "thread.run.completed");
  const v1::Run final_run = test_support::GetRun(replica(2).runs.get(), run);
  EXPECT_EQ(final_run.status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(final_run.restart_resumes(), 1);
  const std::vector<v1::RunStep> steps =
      test_support::ListSteps(replica(2).runs.get(), run);
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].status(), v1::RUN_STEP_STATUS_FAILED);
  EXPECT_EQ(steps[0].last_error().code(), "server_error");
  EXPECT_EQ(steps[1].status(), v1::RUN_STEP_STATUS_COMPLETED);
}

// A driver that stops without dying (paused past its lease: a long GC, a
// frozen VM, a partition) is replaced; when it wakes it cannot write: the
// fencing token refuses its changes, so the log has one author at a time
// and nothing after `done`. A driver stopped with SIGTERM hands over too.
TEST_F(ClusterE2eTest, PausedDriverIsFencedOffAndSigtermHandsRunsOver) {
  const std::string assistant_id = CreateAssistant({});
  const v1::Run run =
      StartSlowRun(0, assistant_id, "Tell me about Lisbon.", 60);
  ASSERT_FALSE(run.id().empty());
  EventStream stream(replica(1).runs.get(), Attach(run, 0), seconds(60));
  std::vector<v1::RunEvent> events;
  ASSERT_TRUE(ReadDeltas(stream, 3, &events));
  ASSERT_EQ(kill(process(0).pid(), SIGSTOP), 0);
  v1::RunEvent event;
  while (stream.Next(&event)) events.push_back(event);
  grpc::Status status = stream.Finish();
  ASSERT_EQ(kill(process(0).pid(), SIGCONT), 0);
  ASSERT_TRUE(status.ok()) << Describe(status);
  ASSERT_EQ(events.back().event(), "done");
  // The woken driver learns it lost the run (its next write is refused, or
  // its lease renewal says so) and stops.
  EXPECT_TRUE(WaitUntil(
      [&] {
        const std::string err = process(0).captured_stderr();
        return err.find("RUN_LEASE_LOST") != std::string::npos ||
               err.find("run lease lost") != std::string::npos;
      },
      seconds(15)))
      << process(0).captured_stderr();
  // Nothing was added after `done`, and no sequence twice.
  EventStream replay(replica(2).runs.get(), Attach(run, 0), seconds(10));
  std::vector<v1::RunEvent> replayed;
  ASSERT_TRUE(replay.ReadAll(&replayed).ok());
  EXPECT_EQ(Sequences(replayed), OneTo(static_cast<int64_t>(events.size())));
  EXPECT_EQ(Sequences(events), Sequences(replayed));
  EXPECT_EQ(test_support::GetRun(replica(2).runs.get(), run).status(),
            v1::RUN_STATUS_COMPLETED);

  // A rolling update: SIGTERM the replica driving a new run (it releases
  // the lease after its last commit); another takes it over and the stream
  // open elsewhere continues.
  const v1::Run second = StartSlowRun(1, assistant_id, "And Porto?", 40);
  ASSERT_FALSE(second.id().empty());
  EventStream watched(replica(2).runs.get(), Attach(second, 0), seconds(60));
  std::vector<v1::RunEvent> second_events;
  ASSERT_TRUE(ReadDeltas(watched, 2, &second_events));
  EXPECT_EQ(process(1).Stop(), 0);
  while (watched.Next(&event)) second_events.push_back(event);
  status = watched.Finish();
  ASSERT_TRUE(status.ok()) << Describe(status);
  EXPECT_EQ(Sequences(second_events),
            OneTo(static_cast<int64_t>(second_events.size())));
  EXPECT_EQ(second_events.back().event(), "done");
  EXPECT_EQ(test_support::GetRun(replica(2).runs.get(), second).status(),
            v1::RUN_STATUS_COMPLETED);
}

// CreateRun on one thread through every replica at once: exactly one run
// is created each round (the others get THREAD_HAS_ACTIVE_RUN naming it),
// and a cancel through yet another replica reaches the replica driving it.
// Then the same request_id through two replicas at once is one run.
TEST_F(ClusterE2eTest, ConcurrentCreateRunAcrossReplicasKeepsOneActiveRun) {
  const std::string assistant_id = CreateAssistant({});
  const std::string thread_id = CreateThread(0);
  for (int round = 0; round < 3; ++round) {
    // A slow turn keeps the winner active until it is cancelled.
    Script(Json::array({{{"text", std::string(200, 'z')},
                         {"tokens", 200},
                         {"token_delay_ms", 50}}}));
    std::vector<grpc::Status> outcomes(kReplicas);
    std::vector<v1::CreateRunResponse> responses(kReplicas);
    std::vector<std::thread> callers;
    for (int i = 0; i < kReplicas; ++i) {
      callers.emplace_back([&, i] {
        v1::CreateRunRequest request;
        request.set_thread_id(thread_id);
        request.mutable_options()->set_assistant_id(assistant_id);
        outcomes[i] =
            replica(i).runs->CreateRun(Context().get(), request, &responses[i]);
      });
    }
    for (std::thread& t : callers) t.join();
    int winner = -1;
    for (int i = 0; i < kReplicas; ++i) {
      if (outcomes[i].ok()) {
        EXPECT_EQ(winner, -1) << "two runs created in round " << round;
        winner = i;
      }
    }
    ASSERT_NE(winner, -1) << "no run created in round " << round;
    const v1::Run run = responses[winner].run();
    for (int i = 0; i < kReplicas; ++i) {
      if (i == winner) continue;
      EXPECT_EQ(outcomes[i].error_code(), grpc::StatusCode::FAILED_PRECONDITION)
          << Describe(outcomes[i]);
      const google::rpc::ErrorInfo info = ErrorInfoOf(outcomes[i]);
      EXPECT_EQ(info.reason(), "THREAD_HAS_ACTIVE_RUN");
      EXPECT_EQ(info.metadata().at("run_id"), run.id());
    }
    // The winner's replica drives it; cancel through the next one.
    v1::CancelRunRequest cancel;
    cancel.set_thread_id(thread_id);
    cancel.set_run_id(run.id());
    v1::CancelRunResponse cancelled;
    grpc::Status status =
        replica((winner + 1) % kReplicas)
            .runs->CancelRun(Context().get(), cancel, &cancelled);
    ASSERT_TRUE(status.ok()) << Describe(status);
    EXPECT_TRUE(cancelled.run().status() == v1::RUN_STATUS_CANCELLING ||
                cancelled.run().status() == v1::RUN_STATUS_CANCELLED)
        << v1::RunStatus_Name(cancelled.run().status());
    WaitForStatus(run, {v1::RUN_STATUS_CANCELLED});
  }
  FakeCall(fake_.port(), "DELETE", "/_fake/script");

  // One request_id, two replicas, at once: one run, the same answer twice.
  v1::CreateRunRequest request;
  request.set_thread_id(thread_id);
  request.mutable_options()->set_assistant_id(assistant_id);
  request.set_request_id("create-once");
  v1::CreateRunResponse first;
  v1::CreateRunResponse second;
  grpc::Status first_status;
  grpc::Status second_status;
  std::thread a([&] {
    first_status = replica(1).runs->CreateRun(Context().get(), request, &first);
  });
  std::thread b([&] {
    second_status =
        replica(2).runs->CreateRun(Context().get(), request, &second);
  });
  a.join();
  b.join();
  ASSERT_TRUE(first_status.ok()) << Describe(first_status);
  ASSERT_TRUE(second_status.ok()) << Describe(second_status);
  EXPECT_EQ(first.run().id(), second.run().id());
  WaitForStatus(first.run(), {v1::RUN_STATUS_COMPLETED});
}

// A project's active-run limit holds across replicas: each replica counts
// its own runs, the shared store counts them all.
class ClusterLimitE2eTest : public ClusterE2eTest {
 protected:
  ClusterLimitE2eTest() { extra_args_ = {"--max_active_runs_per_project=1"}; }
};

TEST_F(ClusterLimitE2eTest, ProjectActiveRunLimitHoldsAcrossReplicas) {
  const std::string assistant_id = CreateAssistant({});
  const v1::Run first = StartSlowRun(0, assistant_id, "first", 100);
  for (int via : {1, 2}) {
    v1::CreateThreadAndRunResponse refused;
    grpc::Status status = replica(via).runs->CreateThreadAndRun(
        Context().get(), ThreadAndRun(assistant_id, "second"), &refused);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << "replica " << via << ": " << Describe(status);
    EXPECT_EQ(ErrorInfoOf(status).reason(), "PROJECT_ACTIVE_RUN_LIMIT");
  }
  // Once the run has ended, another replica may start one.
  v1::CancelRunRequest cancel;
  cancel.set_thread_id(first.thread_id());
  cancel.set_run_id(first.id());
  v1::CancelRunResponse cancelled;
  ASSERT_TRUE(
      replica(2).runs->CancelRun(Context().get(), cancel, &cancelled).ok());
  WaitForStatus(first, {v1::RUN_STATUS_CANCELLED});
  Script(Json::array({{{"text", "ok"}}}));
  v1::CreateThreadAndRunResponse next;
  grpc::Status status = replica(1).runs->CreateThreadAndRun(
      Context().get(), ThreadAndRun(assistant_id, "third"), &next);
  ASSERT_TRUE(status.ok()) << Describe(status);
  WaitForStatus(next.run(), {v1::RUN_STATUS_COMPLETED});
}

// The interrupt policy across replicas: a run created with it through one
// replica cancels the thread's run driven by another, then starts.
TEST_F(ClusterE2eTest, InterruptPolicyCancelsTheRunDrivenByAnotherReplica) {
  const std::string assistant_id = CreateAssistant({});
  const std::string thread_id = CreateThread(0);
  Script(Json::array({{{"text", std::string(200, 'z')},
                       {"tokens", 200},
                       {"token_delay_ms", 50}}}));
  v1::CreateRunRequest request;
  request.set_thread_id(thread_id);
  request.mutable_options()->set_assistant_id(assistant_id);
  v1::CreateRunResponse first;
  grpc::Status status =
      replica(0).runs->CreateRun(Context().get(), request, &first);
  ASSERT_TRUE(status.ok()) << Describe(status);
  WaitForStatus(first.run(), {v1::RUN_STATUS_IN_PROGRESS});
  request.mutable_options()->set_active_run_policy(
      v1::ACTIVE_RUN_POLICY_INTERRUPT);
  v1::CreateRunResponse second;
  status =
      replica(1).runs->CreateRun(Context(seconds(30)).get(), request, &second);
  ASSERT_TRUE(status.ok()) << Describe(status);
  EXPECT_EQ(GetRun(first.run()).status(), v1::RUN_STATUS_CANCELLED);
  WaitForStatus(second.run(), {v1::RUN_STATUS_COMPLETED});
}

// The queue policy across replicas: three runs queued on one thread through
// three replicas run one after another: each model request sees the answers
// of the runs before it (two at once would see the same history).
TEST_F(ClusterE2eTest, QueuedRunsOnOneThreadRunOneAtATimeAcrossReplicas) {
  const std::string assistant_id = CreateAssistant({});
  const std::string thread_id = CreateThread(0);
  FakeCall(fake_.port(), "DELETE", "/_fake/requests");
  std::vector<v1::Run> runs(kReplicas);
  std::vector<std::thread> callers;
  for (int i = 0; i < kReplicas; ++i) {
    callers.emplace_back([&, i] {
      v1::CreateRunRequest request;
      request.set_thread_id(thread_id);
      request.mutable_options()->set_assistant_id(assistant_id);
      request.mutable_options()->set_active_run_policy(
          v1::ACTIVE_RUN_POLICY_QUEUE);
      v1::CreateRunResponse response;
      grpc::Status status =
          replica(i).runs->CreateRun(Context().get(), request, &response);
      EXPECT_TRUE(status.ok()) << Describe(status);
      runs[i] = response.run();
    });
  }
  for (std::thread& t : callers) t.join();
  for (const v1::Run& run : runs) {
    WaitForStatus(run, {v1::RUN_STATUS_COMPLETED}, seconds(30));
  }
  // Each request carries the thread so far: 0, 1 and 2 earlier answers.
  const Json recorded = FakeCall(fake_.port(), "GET", "/_fake/requests");
  std::multiset<int> answers_seen;
  for (const Json& r : recorded["requests"]) {
    int answers = 0;
    for (const Json& item : r["body"].value("input", Json::array())) {
      if (item.value("role", "") == "assistant") ++answers;
    }
    answers_seen.insert(answers);
  }
  EXPECT_EQ(answers_seen, (std::multiset<int>{0, 1, 2})) << recorded.dump();
}
}  // namespace
}  // namespace assistants::test_support
