// End-to-end tests of tool workers: the real assistants-gateway in front of
// the real fake-openai, with real worker processes registering over gRPC —
// test-tool-worker (configurable: slow, dying mid-call, logging every call),
// the C++ stock-price-worker and the Python calculator worker (run.sh).
// Covers the registry (token, allow-list, conflicting definitions, leases,
// SIGTERM, static workers), the seed scenario served entirely by workers,
// parallel dispatch and the concurrency cap, retries after a replica dies
// mid-call, timeouts, calls left to the caller, a gateway kill -9 between
// dispatch and result, and malformed arguments.
//
// What a worker did is read from test-tool-worker's --log_file ("start|end
// <tool> <idempotency key> <worker id> <unix ms>", fsync'd per line), which
// makes overlap, retries and deduplication observable without timing
// guesses. Every RPC has a deadline and every wait is bounded.
#include <curl/curl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "assistants/v1/thread.pb.h"
#include "assistants/v1/tool_worker.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/e2e_helpers.h"
#include "tests/support/server_process.h"

namespace assistants::test_support {
namespace {

namespace v1 = ::assistants::v1;
using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;
using Json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kToken[] = "e2e-worker-registration-token";
constexpr char kSeedQuestion[] =
    "What's the stock price of AAPL, and calculate what 1000 shares would "
    "be worth?";
// stock-price-worker's answer for AAPL (byte for byte the seed's json.dumps).
constexpr char kStockOutput[] = R"({"price": 237.5, "currency": "USD"})";
// The example workers' definitions, which the model must be offered.
constexpr char kStockDescription[] =
    "Get the current stock price for a given ticker symbol.";
constexpr char kStockSchema[] = R"({"type": "object", "properties": {"ticker":
    {"type": "string", "description": "Stock ticker symbol, e.g. AAPL"}},
    "required": ["ticker"]})";
constexpr char kCalculatorDescription[] =
    "Evaluate an arithmetic expression and return the result";
constexpr char kCalculatorSchema[] = R"({"type": "object", "properties":
    {"expression": {"type": "string", "description":
    "An arithmetic expression such as 1000 * 237.5"}},
    "required": ["expression"]})";

std::string TestWorkerBinary() {
  return std::string(ASSISTANTS_BINARY_DIR) + "/tests/support/test-tool-worker";
}

std::string StockWorkerBinary() {
  return std::string(ASSISTANTS_BINARY_DIR) +
         "/tool_workers/examples/stock-price-worker";
}

std::string PythonWorkerScript() {
  return std::string(ASSISTANTS_SOURCE_DIR) +
         "/tool_workers/examples/python/run.sh";
}

int64_t UnixMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

// --- test-tool-worker's call log -------------------------------------------

struct LogLine {
  std::string event;  // "start" or "end"
  std::string tool;
  std::string key;  // idempotency key, run_id:call_id
  std::string worker;
  int64_t unix_ms = 0;
};

std::ostream& operator<<(std::ostream& os, const LogLine& line) {
  return os << line.event << " " << line.tool << " " << line.key << " "
            << line.worker << " " << line.unix_ms;
}

void PrintTo(const LogLine& line, std::ostream* os) { *os << line; }

// The log's lines in file order (missing file: none).
std::vector<LogLine> ReadLog(const std::string& path) {
  std::vector<LogLine> lines;
  std::ifstream in(path);
  std::string text;
  while (std::getline(in, text)) {
    std::istringstream words(text);
    LogLine line;
    if (words >> line.event >> line.tool >> line.key >> line.worker >>
        line.unix_ms) {
      lines.push_back(line);
    } else {
      ADD_FAILURE() << "malformed log line in " << path << ": " << text;
    }
  }
  return lines;
}

// The lines of `log` whose idempotency key starts with `prefix` (a run id
// followed by ':' selects one run's calls).
std::vector<LogLine> LinesWithKeyPrefix(const std::vector<LogLine>& log,
                                        const std::string& prefix) {
  std::vector<LogLine> out;
  for (const LogLine& line : log) {
    if (line.key.rfind(prefix, 0) == 0) out.push_back(line);
  }
  return out;
}

int CountLines(const std::vector<LogLine>& lines, const std::string& event,
               const std::string& worker) {
  return static_cast<int>(
      std::count_if(lines.begin(), lines.end(), [&](const LogLine& line) {
        return line.event == event && line.worker == worker;
      }));
}

std::string DumpLog(const std::vector<LogLine>& lines) {
  std::ostringstream out;
  for (const LogLine& line : lines) out << "  " << line << "\n";
  return out.str();
}

// --- Objects -------------------------------------------------------------

// A function tool that only names a worker's tool: the gateway fills in the
// worker's description and parameters.
v1::Tool NamedTool(const std::string& name) {
  v1::Tool tool;
  tool.mutable_function()->mutable_function()->set_name(name);
  return tool;
}

// A function tool the caller defines (and answers).
v1::Tool CallerTool(const std::string& name, const std::string& parameters) {
  v1::Tool tool;
  v1::FunctionDefinition* function =
      tool.mutable_function()->mutable_function();
  function->set_name(name);
  function->set_description("Looks something up on the caller's side.");
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(
                  parameters, function->mutable_parameters())
                  .ok())
      << parameters;
  return tool;
}

// A scripted model turn calling `calls` (name, arguments text) in parallel.
Json ToolCallsStep(
    const std::vector<std::pair<std::string, std::string>>& calls) {
  Json list = Json::array();
  for (const auto& [name, arguments] : calls) {
    list.push_back({{"name", name}, {"arguments", arguments}});
  }
  return {{"tool_calls", list}};
}

bool HasEvent(const std::vector<v1::RunEvent>& events,
              const std::string& name) {
  return std::any_of(
      events.begin(), events.end(),
      [&](const v1::RunEvent& event) { return event.event() == name; });
}

// The run of a stream's events (from its first run event).
v1::Run RunOf(const std::vector<v1::RunEvent>& events) {
  for (const v1::RunEvent& event : events) {
    if (event.has_run()) return event.run();
  }
  ADD_FAILURE() << "no run event among " << events.size() << " events";
  return v1::Run();
}

// Outputs streamed as thread.run.step.delta events, by call id.
std::map<std::string, std::string> StreamedOutputs(
    const std::vector<v1::RunEvent>& events) {
  std::map<std::string, std::string> outputs;
  for (const v1::RunEvent& event : events) {
    if (!event.has_step_delta()) continue;
    for (const v1::ToolCallDelta& call :
         event.step_delta().delta().tool_calls()) {
      if (call.function().has_output()) {
        outputs[call.id()] = call.function().output();
      }
    }
  }
  return outputs;
}

// --- Model requests as fake-openai recorded them ---------------------------

// The function tools a request offered, name -> {description, parameters},
// on either wire API.
std::map<std::string, Json> OfferedTools(const Json& body) {
  std::map<std::string, Json> tools;
  if (!body.is_object() || !body.contains("tools")) return tools;
  for (const Json& tool : body["tools"]) {
    // Chat Completions nests the function; Responses does not.
    const Json& function = tool.contains("function") ? tool["function"] : tool;
    if (tool.value("type", "") != "function") continue;
    tools[function.value("name", "")] = {
        {"description", function.value("description", "")},
        {"parameters", function.value("parameters", Json::object())}};
  }
  return tools;
}

// The function outputs a request carried back to the model, call id ->
// output, on either wire API.
std::map<std::string, std::string> FunctionOutputs(const Json& body) {
  std::map<std::string, std::string> outputs;
  if (!body.is_object()) return outputs;
  for (const Json& item : body.value("input", Json::array())) {
    if (item.is_object() && item.value("type", "") == "function_call_output") {
      outputs[item.value("call_id", "")] = item.value("output", "");
    }
  }
  for (const Json& message : body.value("messages", Json::array())) {
    if (message.value("role", "") == "tool") {
      outputs[message.value("tool_call_id", "")] = message.value("content", "");
    }
  }
  return outputs;
}

std::vector<std::string> Values(const std::map<std::string, std::string>& m) {
  std::vector<std::string> values;
  for (const auto& [key, value] : m) values.push_back(value);
  return values;
}

// --- Fixture -------------------------------------------------------------

struct Clients {
  explicit Clients(const std::shared_ptr<grpc::Channel>& channel)
      : assistants(v1::AssistantService::NewStub(channel)),
        runs(v1::RunService::NewStub(channel)),
        registry(v1::ToolRegistryService::NewStub(channel)) {}

  std::unique_ptr<v1::AssistantService::Stub> assistants;
  std::unique_ptr<v1::RunService::Stub> runs;
  std::unique_ptr<v1::ToolRegistryService::Stub> registry;
};

class ToolWorkersE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { curl_global_init(CURL_GLOBAL_ALL); }

  void SetUp() override {
    token_file_ = dir_.path() + "/registration-token";
    WriteFile(token_file_, std::string(kToken) + "\n");
    std::string error;
    ASSERT_TRUE(fake_.Start(FakeOpenAiBinary(), {"--seed=7"}, &error)) << error;
  }

  void TearDown() override {
    // The Python worker runs under run.sh, which forwards SIGTERM; a SIGKILL
    // would leave the Python process behind. The C++ workers may hold long
    // calls (drained on SIGTERM), so they are killed.
    for (Worker& worker : workers_) {
      if (worker.graceful && worker.process->running()) {
        worker.process->Stop(seconds(15));
      }
      worker.process->Kill();
    }
    clients_.reset();
    if (HasFailure()) {
      std::cerr << "--- gateway stderr ---\n"
                << gateway_.captured_stderr() << "--- fake-openai stderr ---\n"
                << fake_.captured_stderr();
      for (const Worker& worker : workers_) {
        std::cerr << "--- " << worker.name << " stderr ---\n"
                  << worker.process->captured_stderr();
      }
    }
  }

  // --- Processes -----------------------------------------------------------

  // Starts the gateway in front of fake-openai, with dynamic registration
  // (the token file) on. `args` add to (and override) the defaults: an
  // in-memory store and the backend "openai".
  void StartGateway(const std::vector<std::string>& args = {}) {
    gateway_args_ = args;
    RestartGateway();
  }

  // (Re)starts the gateway with the arguments of the last StartGateway plus
  // `extra`.
  void RestartGateway(const std::vector<std::string>& extra = {}) {
    const std::vector<std::string> env = {
        "OPENAI_BASE_URL=http://127.0.0.1:" + std::to_string(fake_.port()) +
            "/v1",
        "OPENAI_API_KEY=sk-fake",
        "OPENAI_API_KEY_FILE=",
        "OPENAI_ORGANIZATION=",
        "OPENAI_PROJECT=",
        "CHAT_COMPLETIONS_BASE_URL=",
        "ASSISTANTS_DEFAULT_UPSTREAM=openai",
        "ASSISTANTS_UPSTREAM_MAX_ATTEMPTS=",
        "ASSISTANTS_REQUIRES_ACTION_TIMEOUT_S=",
        "ASSISTANTS_ACTIVE_RUN_POLICY=",
        "ASSISTANTS_WORKER_TOKEN=",
        "ASSISTANTS_WORKERS_CONFIG="};
    std::vector<std::string> args = {"--shutdown_grace_ms=500",
                                     "--worker_token_file=" + token_file_};
    if (std::none_of(
            gateway_args_.begin(), gateway_args_.end(),
            [](const std::string& a) { return a.rfind("--db=", 0) == 0; })) {
      args.push_back("--db=:memory:");
    }
    args.insert(args.end(), gateway_args_.begin(), gateway_args_.end());
    args.insert(args.end(), extra.begin(), extra.end());
    clients_.reset();
    gateway_.set_env(env);
    std::string error;
    ASSERT_TRUE(gateway_.Start(GatewayBinary(), args, &error)) << error;
    std::shared_ptr<grpc::Channel> channel = gateway_.Connect();
    ASSERT_NE(channel, nullptr) << "gateway never accepted connections";
    clients_ = std::make_unique<Clients>(channel);
  }

  // Starts a worker process (`binary --listen=127.0.0.1:0 args...`) and
  // waits for its "listening on" line, which the SDKs print once
  // registered. Returns nullptr (after a failure) when it does not start.
  ServerProcess* StartProcess(const std::string& name,
                              const std::string& binary,
                              const std::vector<std::string>& args,
                              bool graceful = false) {
    workers_.push_back(
        {name, std::make_unique<ServerProcess>(), /*graceful=*/graceful});
    ServerProcess* process = workers_.back().process.get();
    std::string error;
    if (!process->Start(binary, args, &error, seconds(60))) {
      ADD_FAILURE() << name << " did not start: " << error;
      return nullptr;
    }
    return process;
  }

  // The flags that make a worker register with the gateway as `worker_id`.
  std::vector<std::string> RegisterFlags(const std::string& worker_id) const {
    return {"--gateway=" + gateway_.address(), "--token_file=" + token_file_,
            "--worker_id=" + worker_id};
  }

  // A test-tool-worker registered with the gateway as `worker_id`.
  ServerProcess* StartTestWorker(const std::string& worker_id,
                                 const std::vector<std::string>& flags) {
    std::vector<std::string> args = RegisterFlags(worker_id);
    args.insert(args.end(), flags.begin(), flags.end());
    return StartProcess(worker_id, TestWorkerBinary(), args);
  }

  Clients& clients() { return *clients_; }

  // --- Registry ------------------------------------------------------------

  v1::ListWorkersResponse ListWorkers() {
    v1::ListWorkersResponse response;
    grpc::Status status = clients().registry->ListWorkers(
        Context().get(), v1::ListWorkersRequest(), &response);
    EXPECT_TRUE(status.ok()) << Describe(status);
    return response;
  }

  v1::ListToolsResponse ListTools() {
    v1::ListToolsResponse response;
    grpc::Status status = clients().registry->ListTools(
        Context().get(), v1::ListToolsRequest(), &response);
    EXPECT_TRUE(status.ok()) << Describe(status);
    return response;
  }

  std::optional<v1::Worker> FindWorker(const std::string& worker_id) {
    const v1::ListWorkersResponse workers = ListWorkers();
    for (const v1::Worker& worker : workers.workers()) {
      if (worker.worker_id() == worker_id) return worker;
    }
    return std::nullopt;
  }

  std::vector<std::string> WorkerIds() {
    std::vector<std::string> ids;
    const v1::ListWorkersResponse workers = ListWorkers();
    for (const v1::Worker& worker : workers.workers()) {
      ids.push_back(worker.worker_id());
    }
    return ids;
  }

  // Polls ListWorkers until every one of `ids` is listed SERVING.
  bool WaitForWorkers(const std::set<std::string>& ids,
                      milliseconds timeout = seconds(20)) {
    return WaitUntil(
        [&] {
          size_t serving = 0;
          const v1::ListWorkersResponse workers = ListWorkers();
          for (const v1::Worker& worker : workers.workers()) {
            if (ids.count(worker.worker_id()) > 0 &&
                worker.health() == v1::WORKER_HEALTH_SERVING) {
              ++serving;
            }
          }
          return serving == ids.size();
        },
        timeout);
  }

  // --- Runs ----------------------------------------------------------------

  std::string CreateAssistant(const std::vector<v1::Tool>& tools,
                              const std::string& upstream = "") {
    return test_support::CreateAssistant(clients().assistants.get(), tools,
                                         upstream);
  }

  // Starts a run on a new thread and streams it to its end; checks the
  // stream is whole (numbered 1..N, payloads, done).
  std::vector<v1::RunEvent> StreamNewRun(const std::string& assistant_id,
                                         const std::string& question,
                                         milliseconds timeout = seconds(30)) {
    v1::RunEventsRequest request;
    *request.mutable_create_thread_and_run() =
        ThreadAndRun(assistant_id, question);
    EventStream stream(clients().runs.get(), request, timeout);
    std::vector<v1::RunEvent> events;
    grpc::Status status = stream.ReadAll(&events);
    EXPECT_TRUE(status.ok()) << Describe(status);
    ExpectWholeStream(events);
    return events;
  }

  static void ExpectWholeStream(const std::vector<v1::RunEvent>& events) {
    ASSERT_GE(events.size(), 3u);
    EXPECT_EQ(events.back().event(), "done");
    EXPECT_EQ(Sequences(events), OneTo(static_cast<int64_t>(events.size())));
    ExpectPayloads(events);
  }

  v1::Run CreateThreadAndRun(const std::string& assistant_id,
                             const std::string& question) {
    v1::CreateThreadAndRunResponse response;
    grpc::Status status = clients().runs->CreateThreadAndRun(
        Context().get(), ThreadAndRun(assistant_id, question), &response);
    EXPECT_TRUE(status.ok()) << Describe(status);
    return response.run();
  }

  v1::Run GetRun(const v1::Run& run) {
    return test_support::GetRun(clients().runs.get(), run);
  }

  std::vector<v1::RunStep> ListSteps(const v1::Run& run) {
    return test_support::ListSteps(clients().runs.get(), run);
  }

  // The function calls of every tool_calls step of `run`, in order.
  std::vector<v1::ToolCall> FunctionCalls(const v1::Run& run) {
    std::vector<v1::ToolCall> calls;
    for (const v1::RunStep& step : ListSteps(run)) {
      for (const v1::ToolCall& call :
           step.step_details().tool_calls().tool_calls()) {
        if (call.has_function()) calls.push_back(call);
      }
    }
    return calls;
  }

  grpc::Status Submit(const v1::Run& run, const std::string& call_id,
                      const std::string& output) {
    v1::SubmitToolOutputsRequest request;
    request.set_thread_id(run.thread_id());
    request.set_run_id(run.id());
    v1::ToolOutput* tool_output = request.add_tool_outputs();
    tool_output->set_tool_call_id(call_id);
    tool_output->set_output(output);
    v1::SubmitToolOutputsResponse response;
    return clients().runs->SubmitToolOutputs(Context().get(), request,
                                             &response);
  }

  // A run that ended completed, with no requires_action on the way.
  void ExpectCompletedByWorkers(const std::vector<v1::RunEvent>& events) {
    EXPECT_FALSE(HasEvent(events, "thread.run.requires_action"));
    ASSERT_GE(events.size(), 2u);
    EXPECT_EQ(events[events.size() - 2].event(), "thread.run.completed");
    const v1::Run run = GetRun(RunOf(events));
    EXPECT_EQ(run.status(), v1::RUN_STATUS_COMPLETED)
        << run.last_error().DebugString();
    EXPECT_FALSE(run.has_required_action());
  }

  // --- fake-openai ---------------------------------------------------------

  void Script(const Json& steps) { ScriptFake(fake_.port(), steps); }

  // The model requests fake-openai received, in order.
  std::vector<Json> ModelRequests() {
    const Json recorded = FakeCall(fake_.port(), "GET", "/_fake/requests");
    std::vector<Json> requests;
    for (const Json& r : recorded.value("requests", Json::array())) {
      requests.push_back(r);
    }
    return requests;
  }

  void ForgetModelRequests() {
    FakeCall(fake_.port(), "DELETE", "/_fake/requests");
  }

  struct Worker {
    std::string name;
    std::unique_ptr<ServerProcess> process;
    bool graceful = false;
  };

  TempDir dir_;
  std::string token_file_;
  ServerProcess fake_;
  ServerProcess gateway_;
  std::vector<std::string> gateway_args_;
  std::vector<Worker> workers_;
  std::unique_ptr<Clients> clients_;
};

// --- The registry over the real gateway ------------------------------------

TEST_F(ToolWorkersE2eTest, RefusedRegistrationsExitWithTheReason) {
  StartGateway();
  if (HasFatalFailure()) return;
  ASSERT_NE(StartTestWorker("first", {"--tools=shared", "--idempotent"}),
            nullptr);
  ASSERT_TRUE(WaitForWorkers({"first"}));

  // Each refused worker exits non-zero naming the reason; refusals are not
  // retried, so each ends well before its registration timeout.
  auto refused = [&](const std::string& worker_id,
                     const std::vector<std::string>& flags) {
    std::vector<std::string> argv = {TestWorkerBinary(), "--listen=127.0.0.1:0",
                                     "--register_timeout_ms=20000"};
    for (const std::string& arg : RegisterFlags(worker_id)) {
      argv.push_back(arg);
    }
    argv.insert(argv.end(), flags.begin(), flags.end());
    const auto start = SteadyClock::now();
    CommandResult result = RunCommand(argv, seconds(30));
    EXPECT_LT(SteadyClock::now() - start, seconds(15))
        << worker_id << " retried a refusal";
    EXPECT_NE(result.exit_code, 0) << worker_id << ":\n" << result.stderr_text;
    EXPECT_THAT(result.stderr_text, ::testing::Not(HasSubstr("listening on")))
        << worker_id;
    return result.stderr_text;
  };

  const std::string wrong_token_file = dir_.path() + "/wrong-token";
  WriteFile(wrong_token_file, "not-the-registration-token\n");
  const std::string wrong_token = refused(
      "wrong-token", {"--tools=other", "--token_file=" + wrong_token_file});
  // The SDK reports the gRPC code, the ErrorInfo reason and the gateway's
  // message.
  EXPECT_THAT(wrong_token, HasSubstr("UNAUTHENTICATED")) << wrong_token;
  EXPECT_THAT(wrong_token, HasSubstr("BAD_REGISTRATION_TOKEN")) << wrong_token;
  EXPECT_THAT(wrong_token, HasSubstr("registration token is not valid"))
      << wrong_token;

  const std::string outside =
      refused("outside", {"--tools=other", "--advertise=10.1.2.3:7000"});
  EXPECT_THAT(outside, HasSubstr("PERMISSION_DENIED")) << outside;
  EXPECT_THAT(outside, HasSubstr("ENDPOINT_NOT_ALLOWED")) << outside;
  EXPECT_THAT(outside, HasSubstr("10.1.2.3:7000 is not in this gateway's "
                                 "worker allow-list"))
      << outside;

  // Same name, different definition (not idempotent this time).
  const std::string conflict = refused("conflicting", {"--tools=shared"});
  EXPECT_THAT(conflict, HasSubstr("ALREADY_EXISTS")) << conflict;
  EXPECT_THAT(conflict, HasSubstr("TOOL_DEFINITION_CONFLICT")) << conflict;
  EXPECT_THAT(conflict, HasSubstr("tool 'shared' is already served by worker "
                                  "first with a different definition"))
      << conflict;

  // None of them got in; the first worker still serves its definition.
  EXPECT_THAT(WorkerIds(), ElementsAre("first"));
  const v1::ListToolsResponse tools = ListTools();
  ASSERT_EQ(tools.tools_size(), 1);
  EXPECT_EQ(tools.tools(0).tool().function().name(), "shared");
  EXPECT_TRUE(tools.tools(0).tool().idempotent());
  EXPECT_THAT(tools.tools(0).worker_ids(), ElementsAre("first"));
}

TEST_F(ToolWorkersE2eTest, ListsLiveWorkersAndTheirTools) {
  StartGateway();
  if (HasFatalFailure()) return;
  const std::vector<std::string> tuned = {"--timeout_ms=2500",
                                          "--max_concurrency=3"};
  std::vector<std::string> a_flags = {"--tools=alpha,beta"};
  a_flags.insert(a_flags.end(), tuned.begin(), tuned.end());
  std::vector<std::string> b_flags = {"--tools=beta"};
  b_flags.insert(b_flags.end(), tuned.begin(), tuned.end());
  ServerProcess* a = StartTestWorker("worker-a", a_flags);
  ServerProcess* b = StartTestWorker("worker-b", b_flags);
  ServerProcess* c = StartTestWorker("worker-c", {"--tools=gamma"});
  ASSERT_TRUE(a != nullptr && b != nullptr && c != nullptr);
  ASSERT_TRUE(WaitForWorkers({"worker-a", "worker-b", "worker-c"}));

  const int64_t now = UnixMs();
  const v1::ListWorkersResponse workers = ListWorkers();
  ASSERT_EQ(workers.workers_size(), 3) << workers.DebugString();
  const std::map<std::string, const ServerProcess*> processes = {
      {"worker-a", a}, {"worker-b", b}, {"worker-c", c}};
  const std::map<std::string, std::vector<std::string>> served = {
      {"worker-a", {"alpha", "beta"}},
      {"worker-b", {"beta"}},
      {"worker-c", {"gamma"}}};
  for (const v1::Worker& worker : workers.workers()) {
    SCOPED_TRACE(worker.worker_id());
    ASSERT_EQ(processes.count(worker.worker_id()), 1u);
    EXPECT_EQ(worker.endpoint(), processes.at(worker.worker_id())->address());
    EXPECT_EQ(worker.health(), v1::WORKER_HEALTH_SERVING);
    EXPECT_FALSE(worker.static_());
    EXPECT_EQ(worker.in_flight(), 0);
    // A 15 s lease, renewed by heartbeats.
    EXPECT_GT(worker.lease_expires_at_ms(), now);
    EXPECT_LE(worker.lease_expires_at_ms(), now + 16000);
    std::vector<std::string> names;
    for (const v1::WorkerTool& tool : worker.tools()) {
      names.push_back(tool.function().name());
    }
    EXPECT_THAT(names, ::testing::UnorderedElementsAreArray(
                           served.at(worker.worker_id())));
  }

  const v1::ListToolsResponse tools = ListTools();
  ASSERT_EQ(tools.tools_size(), 3) << tools.DebugString();
  std::map<std::string, v1::RegisteredTool> by_name;
  for (const v1::RegisteredTool& tool : tools.tools()) {
    by_name[tool.tool().function().name()] = tool;
  }
  EXPECT_THAT(by_name["alpha"].worker_ids(), ElementsAre("worker-a"));
  EXPECT_THAT(by_name["beta"].worker_ids(),
              UnorderedElementsAre("worker-a", "worker-b"));
  EXPECT_THAT(by_name["gamma"].worker_ids(), ElementsAre("worker-c"));
  // The worker's definition, its tuning, and the gateway's defaults where
  // the worker set none (30 s, 16 calls).
  const v1::WorkerTool& beta = by_name["beta"].tool();
  EXPECT_EQ(beta.function().description(), "Test tool beta");
  EXPECT_TRUE(beta.function()
                  .parameters()
                  .fields()
                  .at("properties")
                  .struct_value()
                  .fields()
                  .contains("value"))
      << beta.DebugString();
  EXPECT_EQ(beta.timeout_ms(), 2500);
  EXPECT_EQ(beta.max_concurrency(), 3);
  EXPECT_FALSE(beta.idempotent());
  EXPECT_EQ(by_name["gamma"].tool().timeout_ms(), 30000);
  EXPECT_EQ(by_name["gamma"].tool().max_concurrency(), 16);
}

TEST_F(ToolWorkersE2eTest, KilledWorkerIsDroppedWhenItsLeaseRunsOut) {
  StartGateway({"--worker_lease_ttl_ms=1000"});
  if (HasFatalFailure()) return;
  ServerProcess* doomed = StartTestWorker("doomed", {"--tools=fragile"});
  ASSERT_NE(doomed, nullptr);
  ASSERT_TRUE(WaitForWorkers({"doomed"}));
  const std::optional<v1::Worker> before = FindWorker("doomed");
  ASSERT_TRUE(before.has_value());
  // A 1 s lease (heartbeats every ~333 ms).
  EXPECT_LE(before->lease_expires_at_ms(), UnixMs() + 1000);

  doomed->Kill();  // No unregistration: only the lease can remove it.
  int64_t gone_at = 0;
  ASSERT_TRUE(WaitUntil(
      [&] {
        const bool listed = FindWorker("doomed").has_value();
        gone_at = UnixMs();
        return !listed;
      },
      seconds(10)))
      << "the dead worker stayed listed";
  // Not before its lease (the last one seen is a lower bound) ran out.
  EXPECT_GE(gone_at, before->lease_expires_at_ms());
  EXPECT_EQ(ListTools().tools_size(), 0);
}

TEST_F(ToolWorkersE2eTest, SigtermedWorkerUnregistersAtOnce) {
  StartGateway();  // A 15 s lease: only unregistration removes it quickly.
  if (HasFatalFailure()) return;
  ServerProcess* leaving = StartTestWorker("leaving", {"--tools=brief"});
  ASSERT_NE(leaving, nullptr);
  ServerProcess* staying = StartTestWorker("staying", {"--tools=other"});
  ASSERT_NE(staying, nullptr);
  ASSERT_TRUE(WaitForWorkers({"leaving", "staying"}));

  const int status = leaving->Stop(seconds(15));
  EXPECT_EQ(status, 0) << DescribeWaitStatus(status);
  // Unregistered before it exited: gone now, not after its lease.
  EXPECT_THAT(WorkerIds(), ElementsAre("staying"));
  const v1::ListToolsResponse tools = ListTools();
  ASSERT_EQ(tools.tools_size(), 1);
  EXPECT_EQ(tools.tools(0).tool().function().name(), "other");
}

TEST_F(ToolWorkersE2eTest, StaticWorkerFromConfigServesCalls) {
  // A worker that does not register: the operator configures it.
  const std::string log = dir_.path() + "/static.log";
  ServerProcess* worker =
      StartProcess("static-1", TestWorkerBinary(),
                   {"--worker_id=static-1", "--tools=static_echo",
                    "--idempotent", "--log_file=" + log});
  ASSERT_NE(worker, nullptr);
  const Json parameters = {{"type", "object"},
                           {"properties", {{"value", {{"type", "string"}}}}},
                           {"required", {"value"}}};
  const Json config = {{"workers",
                        {{{"worker_id", "static-1"},
                          {"endpoint", worker->address()},
                          {"tools",
                           {{{"function",
                              {{"name", "static_echo"},
                               {"description", "Echoes a value back."},
                               {"parameters", parameters}}},
                             {"idempotent", true}}}}}}}};
  const std::string config_file = dir_.path() + "/workers.json";
  WriteFile(config_file, config.dump(2));
  StartGateway({"--workers_config=" + config_file});
  if (HasFatalFailure()) return;

  const v1::ListWorkersResponse workers = ListWorkers();
  ASSERT_EQ(workers.workers_size(), 1) << workers.DebugString();
  const v1::Worker& listed = workers.workers(0);
  EXPECT_EQ(listed.worker_id(), "static-1");
  EXPECT_EQ(listed.endpoint(), worker->address());
  EXPECT_TRUE(listed.static_());
  EXPECT_EQ(listed.health(), v1::WORKER_HEALTH_SERVING);
  EXPECT_EQ(listed.lease_expires_at_ms(), 0);

  const std::string assistant_id = CreateAssistant({NamedTool("static_echo")});
  Script(Json::array(
      {ToolCallsStep({{"static_echo", R"({"value": "from-config"})"}})}));
  const std::vector<v1::RunEvent> events =
      StreamNewRun(assistant_id, "Echo something, please.");
  if (HasFatalFailure()) return;
  ExpectCompletedByWorkers(events);
  const v1::Run run = RunOf(events);
  const std::vector<v1::ToolCall> calls = FunctionCalls(run);
  ASSERT_EQ(calls.size(), 1u);
  const Json output = Json::parse(calls[0].function().output(), nullptr, false);
  EXPECT_EQ(output.value("worker", ""), "static-1") << output;
  EXPECT_EQ(output.value("value", ""), "from-config") << output;
  // The call carried the documented idempotency key.
  const std::vector<LogLine> lines = ReadLog(log);
  ASSERT_EQ(lines.size(), 2u) << DumpLog(lines);
  EXPECT_EQ(lines[0].event, "start");
  EXPECT_EQ(lines[0].key, run.id() + ":" + calls[0].id());
  // The model was offered the configured definition.
  const std::vector<Json> requests = ModelRequests();
  ASSERT_GE(requests.size(), 1u);
  const std::map<std::string, Json> offered = OfferedTools(requests[0]["body"]);
  ASSERT_EQ(offered.count("static_echo"), 1u) << requests[0]["body"].dump();
  EXPECT_EQ(offered.at("static_echo")["parameters"], parameters);
  EXPECT_EQ(offered.at("static_echo")["description"], "Echoes a value back.");
}

// --- The seed scenario, served by the example workers ----------------------

TEST_F(ToolWorkersE2eTest, SeedScenarioRunsOnTheCppAndPythonWorkers) {
  StartGateway();
  if (HasFatalFailure()) return;
  // get_stock_price in C++, calculator in Python: the polyglot proof.
  ASSERT_NE(StartProcess("stock-price-worker", StockWorkerBinary(),
                         RegisterFlags("stock-cpp")),
            nullptr);
  ASSERT_NE(StartProcess("calculator-worker (python)", PythonWorkerScript(),
                         RegisterFlags("calculator-py"), /*graceful=*/true),
            nullptr);
  ASSERT_TRUE(WaitForWorkers({"stock-cpp", "calculator-py"}));

  struct Backend {
    std::string upstream;  // The assistant's.
    std::string path;      // Where fake-openai sees the turns.
  };
  for (const Backend& backend :
       {Backend{"", "/v1/responses"},
        Backend{"openai-chat", "/v1/chat/completions"}}) {
    SCOPED_TRACE(backend.path);
    ForgetModelRequests();
    // The assistant only names the tools; the workers define them.
    const std::string assistant_id =
        CreateAssistant({NamedTool("get_stock_price"), NamedTool("calculator")},
                        backend.upstream);
    const std::vector<v1::RunEvent> events =
        StreamNewRun(assistant_id, kSeedQuestion);
    if (HasFatalFailure()) return;
    ExpectCompletedByWorkers(events);
    const v1::Run run = GetRun(RunOf(events));

    // Steps: get_stock_price, then calculator, then the answer.
    const std::vector<v1::RunStep> steps = ListSteps(run);
    ASSERT_EQ(steps.size(), 3u);
    for (const v1::RunStep& step : steps) {
      EXPECT_EQ(step.status(), v1::RUN_STEP_STATUS_COMPLETED) << step.id();
    }
    EXPECT_EQ(steps[0].type(), v1::RUN_STEP_TYPE_TOOL_CALLS);
    EXPECT_EQ(steps[1].type(), v1::RUN_STEP_TYPE_TOOL_CALLS);
    EXPECT_EQ(steps[2].type(), v1::RUN_STEP_TYPE_MESSAGE_CREATION);
    const auto& stock_calls = steps[0].step_details().tool_calls().tool_calls();
    const auto& calc_calls = steps[1].step_details().tool_calls().tool_calls();
    ASSERT_EQ(stock_calls.size(), 1);
    ASSERT_EQ(calc_calls.size(), 1);
    const v1::FunctionToolCall& stock = stock_calls[0].function();
    const v1::FunctionToolCall& calc = calc_calls[0].function();
    EXPECT_EQ(stock.name(), "get_stock_price");
    EXPECT_EQ(Json::parse(stock.arguments(), nullptr, false),
              Json({{"ticker", "AAPL"}}));
    EXPECT_EQ(stock.output(), kStockOutput);  // From the C++ worker.
    EXPECT_EQ(calc.name(), "calculator");
    const Json calc_output = Json::parse(calc.output(), nullptr, false);
    EXPECT_EQ(calc_output.value("result", Json()), 237500)
        << calc.output();  // From the Python worker.
    EXPECT_EQ(calc_output.value("expression", ""), "1000 * 237.5")
        << calc.output();
    // The outputs were streamed as they arrived.
    EXPECT_EQ(StreamedOutputs(events),
              (std::map<std::string, std::string>{
                  {stock_calls[0].id(), stock.output()},
                  {calc_calls[0].id(), calc.output()}}));
    EXPECT_THAT(DeltaText(events), HasSubstr("237,500"));

    // Three model turns on the assistant's wire API, each offered the
    // workers' schemas (filled in by the gateway), the later ones carrying
    // the workers' outputs back.
    const std::vector<Json> requests = ModelRequests();
    ASSERT_EQ(requests.size(), 3u);
    for (const Json& request : requests) {
      EXPECT_EQ(request.value("path", ""), backend.path);
      const std::map<std::string, Json> offered =
          OfferedTools(request.value("body", Json()));
      EXPECT_EQ(offered,
                (std::map<std::string, Json>{
                    {"get_stock_price",
                     {{"description", kStockDescription},
                      {"parameters", Json::parse(kStockSchema)}}},
                    {"calculator",
                     {{"description", kCalculatorDescription},
                      {"parameters", Json::parse(kCalculatorSchema)}}}}))
          << request.dump();
    }
    EXPECT_THAT(Values(FunctionOutputs(requests[1].value("body", Json()))),
                ElementsAre(kStockOutput));
    EXPECT_THAT(Values(FunctionOutputs(requests[2].value("body", Json()))),
                UnorderedElementsAre(kStockOutput, calc.output()));
    EXPECT_EQ(run.upstream(),
              backend.upstream.empty() ? "openai" : backend.upstream);
  }
}

// --- Parallel dispatch and the concurrency cap -----------------------------

class DispatchTest : public ToolWorkersE2eTest {
 protected:
  // Runs four parallel calls of `slow` served by one replica started with
  // `flags`; returns the run and the replica's log lines for it.
  void RunFourSlowCalls(const std::vector<std::string>& flags, v1::Run* run,
                        std::vector<LogLine>* lines) {
    StartGateway();
    if (HasFatalFailure()) return;
    const std::string log = dir_.path() + "/slow.log";
    std::vector<std::string> all_flags = {"--tools=slow", "--log_file=" + log};
    all_flags.insert(all_flags.end(), flags.begin(), flags.end());
    ASSERT_NE(StartTestWorker("slow-1", all_flags), nullptr);
    ASSERT_TRUE(WaitForWorkers({"slow-1"}));
    const std::string assistant_id = CreateAssistant({NamedTool("slow")});
    Script(Json::array({ToolCallsStep({{"slow", R"({"value": "1"})"},
                                       {"slow", R"({"value": "2"})"},
                                       {"slow", R"({"value": "3"})"},
                                       {"slow", R"({"value": "4"})"}})}));
    const std::vector<v1::RunEvent> events =
        StreamNewRun(assistant_id, "Run slow four times.");
    if (HasFatalFailure()) return;
    ExpectCompletedByWorkers(events);
    *run = GetRun(RunOf(events));
    // Every call answered by the worker, each with its own value.
    const std::vector<v1::ToolCall> calls = FunctionCalls(*run);
    ASSERT_EQ(calls.size(), 4u);
    std::set<std::string> values;
    std::set<std::string> keys;
    for (const v1::ToolCall& call : calls) {
      const Json output = Json::parse(call.function().output(), nullptr, false);
      EXPECT_EQ(output.value("worker", ""), "slow-1") << output;
      values.insert(output.value("value", ""));
      keys.insert(run->id() + ":" + call.id());
    }
    EXPECT_THAT(values, ElementsAre("1", "2", "3", "4"));
    *lines = LinesWithKeyPrefix(ReadLog(log), run->id() + ":");
    ASSERT_EQ(lines->size(), 8u) << DumpLog(*lines);
    std::set<std::string> logged_keys;
    for (const LogLine& line : *lines) logged_keys.insert(line.key);
    EXPECT_EQ(logged_keys, keys);
  }
};

TEST_F(DispatchTest, ParallelCallsOverlapOnTheWorker) {
  constexpr int kDelayMs = 800;
  v1::Run run;
  std::vector<LogLine> lines;
  RunFourSlowCalls(
      {"--delay_ms=" + std::to_string(kDelayMs), "--max_concurrency=4"}, &run,
      &lines);
  if (HasFatalFailure()) return;
  // All four started before the first one ended.
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(lines[i].event, "start") << DumpLog(lines);
  }
  // So the tool time is about one delay, not four.
  EXPECT_LT(lines.back().unix_ms - lines.front().unix_ms, 4 * kDelayMs)
      << DumpLog(lines);
}

TEST_F(DispatchTest, ConcurrencyCapOfOneSerializesCalls) {
  v1::Run run;
  std::vector<LogLine> lines;
  RunFourSlowCalls({"--delay_ms=150", "--max_concurrency=1"}, &run, &lines);
  if (HasFatalFailure()) return;
  // start/end pairs of one call each, never two calls at once.
  for (size_t i = 0; i < lines.size(); i += 2) {
    EXPECT_EQ(lines[i].event, "start") << DumpLog(lines);
    EXPECT_EQ(lines[i + 1].event, "end") << DumpLog(lines);
    EXPECT_EQ(lines[i].key, lines[i + 1].key) << DumpLog(lines);
    if (i > 0) {
      EXPECT_GE(lines[i].unix_ms, lines[i - 1].unix_ms) << DumpLog(lines);
    }
  }
}

// --- A replica dies mid-call -------------------------------------------------

// Two replicas of `flaky` log to one file. replica-b registers first and is
// given a long call by another run; replica-a (which dies in its first call)
// registers next. The balancer prefers the replica with the lowest share of
// its cap in flight, so the test's call deterministically lands on
// replica-a first, while replica-b still has free slots for a retry.
class ReplicaDiesTest : public ToolWorkersE2eTest {
 protected:
  struct Outcome {
    v1::Run run;
    v1::ToolCall call;
    std::string key;
    std::vector<LogLine> lines;  // Of the call's key.
  };

  void RunWithReplicaDyingMidCall(bool idempotent, Outcome* outcome) {
    StartGateway();
    if (HasFatalFailure()) return;
    const std::string log = dir_.path() + "/replicas.log";
    std::vector<std::string> flags = {"--tools=flaky", "--log_file=" + log};
    if (idempotent) flags.push_back("--idempotent");
    ASSERT_NE(StartTestWorker("replica-b", flags), nullptr);
    ASSERT_TRUE(WaitForWorkers({"replica-b"}));
    const std::string assistant_id = CreateAssistant({NamedTool("flaky")});

    Script(Json::array({ToolCallsStep(
        {{"flaky", R"({"value": "blocker", "sleep_ms": 60000})"}})}));
    const v1::Run blocker = CreateThreadAndRun(assistant_id, "Hold B.");
    ASSERT_TRUE(WaitUntil(
        [&] {
          return CountLines(LinesWithKeyPrefix(ReadLog(log), blocker.id()),
                            "start", "replica-b") == 1;
        },
        seconds(15)))
        << "replica-b never got the blocking call";

    flags.push_back("--exit_on_call");
    ASSERT_NE(StartTestWorker("replica-a", flags), nullptr);
    ASSERT_TRUE(WaitForWorkers({"replica-a", "replica-b"}));
    // The premise: B has a call in flight, A none.
    EXPECT_EQ(FindWorker("replica-b")->in_flight(), 1);
    EXPECT_EQ(FindWorker("replica-a")->in_flight(), 0);

    Script(Json::array(
        {ToolCallsStep({{"flaky", R"({"value": "survives-a-crash"})"}})}));
    const std::vector<v1::RunEvent> events =
        StreamNewRun(assistant_id, "Call flaky once.");
    if (HasFatalFailure()) return;
    ExpectCompletedByWorkers(events);
    outcome->run = GetRun(RunOf(events));
    const std::vector<v1::ToolCall> calls = FunctionCalls(outcome->run);
    ASSERT_EQ(calls.size(), 1u);
    outcome->call = calls[0];
    outcome->key = outcome->run.id() + ":" + calls[0].id();
    outcome->lines = LinesWithKeyPrefix(ReadLog(log), outcome->key);

    // Let B's blocking call go.
    v1::CancelRunRequest cancel;
    cancel.set_thread_id(blocker.thread_id());
    cancel.set_run_id(blocker.id());
    v1::CancelRunResponse cancelled;
    grpc::Status status =
        clients().runs->CancelRun(Context().get(), cancel, &cancelled);
    EXPECT_TRUE(status.ok()) << Describe(status);
  }
};

TEST_F(ReplicaDiesTest, IdempotentCallIsRetriedOnAnotherReplicaOnce) {
  Outcome outcome;
  RunWithReplicaDyingMidCall(/*idempotent=*/true, &outcome);
  if (HasFatalFailure()) return;
  const Json output =
      Json::parse(outcome.call.function().output(), nullptr, false);
  EXPECT_EQ(output.value("worker", ""), "replica-b") << output;
  EXPECT_EQ(output.value("value", ""), "survives-a-crash") << output;
  // A started it and died; B ran it once, to the end.
  EXPECT_EQ(CountLines(outcome.lines, "start", "replica-a"), 1)
      << DumpLog(outcome.lines);
  EXPECT_EQ(CountLines(outcome.lines, "end", "replica-a"), 0)
      << DumpLog(outcome.lines);
  EXPECT_EQ(CountLines(outcome.lines, "start", "replica-b"), 1)
      << DumpLog(outcome.lines);
  EXPECT_EQ(CountLines(outcome.lines, "end", "replica-b"), 1)
      << DumpLog(outcome.lines);
  ASSERT_EQ(outcome.lines.size(), 3u) << DumpLog(outcome.lines);
  EXPECT_EQ(outcome.lines[0].worker, "replica-a") << DumpLog(outcome.lines);
}

TEST_F(ReplicaDiesTest, NonIdempotentCallIsNotRetried) {
  Outcome outcome;
  RunWithReplicaDyingMidCall(/*idempotent=*/false, &outcome);
  if (HasFatalFailure()) return;
  const Json output =
      Json::parse(outcome.call.function().output(), nullptr, false);
  EXPECT_EQ(output.value("error_type", ""), "unavailable") << output;
  EXPECT_EQ(output.value("tool", ""), "flaky") << output;
  EXPECT_FALSE(output.value("error", "").empty()) << output;
  // A started it and died; B never saw it.
  EXPECT_EQ(CountLines(outcome.lines, "start", "replica-a"), 1)
      << DumpLog(outcome.lines);
  EXPECT_EQ(CountLines(outcome.lines, "start", "replica-b"), 0)
      << DumpLog(outcome.lines);
  EXPECT_EQ(outcome.lines.size(), 1u) << DumpLog(outcome.lines);
}

// --- Failures the model reads --------------------------------------------

TEST_F(ToolWorkersE2eTest, SlowWorkerTimesOutWithAJsonError) {
  StartGateway();
  if (HasFatalFailure()) return;
  const std::string log = dir_.path() + "/slow.log";
  ASSERT_NE(StartTestWorker("sleepy", {"--tools=slow", "--timeout_ms=300",
                                       "--delay_ms=5000", "--log_file=" + log}),
            nullptr);
  ASSERT_TRUE(WaitForWorkers({"sleepy"}));
  const std::string assistant_id = CreateAssistant({NamedTool("slow")});
  Script(Json::array({ToolCallsStep({{"slow", R"({"value": "late"})"}})}));

  const auto start = SteadyClock::now();
  const std::vector<v1::RunEvent> events =
      StreamNewRun(assistant_id, "Call slow.");
  const auto took = SteadyClock::now() - start;
  if (HasFatalFailure()) return;
  ExpectCompletedByWorkers(events);
  EXPECT_LT(took, seconds(4)) << "the 300 ms deadline did not cut the call";
  const v1::Run run = GetRun(RunOf(events));
  const std::vector<v1::ToolCall> calls = FunctionCalls(run);
  ASSERT_EQ(calls.size(), 1u);
  const Json output = Json::parse(calls[0].function().output(), nullptr, false);
  EXPECT_EQ(output.value("error_type", ""), "timeout") << output;
  EXPECT_EQ(output.value("tool", ""), "slow") << output;
  // The worker did get the call (it timed out; it was not refused).
  const std::vector<LogLine> lines =
      LinesWithKeyPrefix(ReadLog(log), run.id() + ":" + calls[0].id());
  EXPECT_EQ(CountLines(lines, "start", "sleepy"), 1) << DumpLog(lines);
  // The model read the error and answered.
  EXPECT_FALSE(DeltaText(events).empty());
}

TEST_F(ToolWorkersE2eTest, MalformedArgumentsNeverReachTheWorker) {
  StartGateway();
  if (HasFatalFailure()) return;
  const std::string log = dir_.path() + "/echo.log";
  ASSERT_NE(StartTestWorker("echo-1", {"--tools=echo", "--log_file=" + log}),
            nullptr);
  ASSERT_TRUE(WaitForWorkers({"echo-1"}));
  const std::string assistant_id = CreateAssistant({NamedTool("echo")});
  Script(Json::array({ToolCallsStep({{"echo", "{not json"}})}));

  const std::vector<v1::RunEvent> events =
      StreamNewRun(assistant_id, "Echo this.");
  if (HasFatalFailure()) return;
  ExpectCompletedByWorkers(events);
  const v1::Run run = GetRun(RunOf(events));
  const std::vector<v1::ToolCall> calls = FunctionCalls(run);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].function().arguments(), "{not json");
  const Json output = Json::parse(calls[0].function().output(), nullptr, false);
  EXPECT_EQ(output.value("error_type", ""), "invalid_arguments") << output;
  EXPECT_EQ(output.value("tool", ""), "echo") << output;
  // The gateway's own answer: a worker on the SDK would refuse the text too
  // (without running its handler, so the log alone cannot tell), but as
  // "echo refused the arguments: ...".
  EXPECT_THAT(output.value("error", ""), HasSubstr("not valid JSON")) << output;
  EXPECT_THAT(output.value("error", ""),
              HasSubstr("call echo again with a JSON object"))
      << output;
  EXPECT_THAT(ReadLog(log), ::testing::IsEmpty());
}

// --- Calls no worker serves go to the caller --------------------------------

TEST_F(ToolWorkersE2eTest, UnservedToolGoesToTheCaller) {
  StartGateway();
  if (HasFatalFailure()) return;
  const std::string log = dir_.path() + "/echo.log";
  ASSERT_NE(StartTestWorker("echo-1", {"--tools=echo", "--log_file=" + log}),
            nullptr);
  ASSERT_TRUE(WaitForWorkers({"echo-1"}));
  const std::string assistant_id = CreateAssistant(
      {NamedTool("echo"),
       CallerTool(
           "lookup",
           R"({"type":"object","properties":{"query":{"type":"string"}}})")});
  Script(Json::array({ToolCallsStep({{"lookup", R"({"query": "q1"})"}})}));

  v1::RunEventsRequest request;
  *request.mutable_create_thread_and_run() =
      ThreadAndRun(assistant_id, "Look q1 up.");
  EventStream stream(clients().runs.get(), request);
  std::vector<v1::RunEvent> events;
  v1::RunEvent event;
  int required = 0;
  while (stream.Next(&event)) {
    events.push_back(event);
    if (event.event() != "thread.run.requires_action") continue;
    ++required;
    const auto& calls =
        event.run().required_action().submit_tool_outputs().tool_calls();
    ASSERT_EQ(calls.size(), 1);
    EXPECT_EQ(calls[0].function().name(), "lookup");
    grpc::Status status = Submit(event.run(), calls[0].id(), "caller: found");
    EXPECT_TRUE(status.ok()) << Describe(status);
  }
  grpc::Status status = stream.Finish();
  ASSERT_TRUE(status.ok()) << Describe(status);
  ExpectWholeStream(events);
  EXPECT_EQ(required, 1);
  const v1::Run run = GetRun(RunOf(events));
  EXPECT_EQ(run.status(), v1::RUN_STATUS_COMPLETED);
  const std::vector<v1::ToolCall> calls = FunctionCalls(run);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].function().output(), "caller: found");
  EXPECT_THAT(ReadLog(log), ::testing::IsEmpty());
}

TEST_F(ToolWorkersE2eTest, WorkerAndCallerShareOneTurn) {
  StartGateway();
  if (HasFatalFailure()) return;
  ASSERT_NE(StartTestWorker("echo-1", {"--tools=echo"}), nullptr);
  ASSERT_TRUE(WaitForWorkers({"echo-1"}));
  const std::string assistant_id = CreateAssistant(
      {NamedTool("echo"),
       CallerTool(
           "lookup",
           R"({"type":"object","properties":{"query":{"type":"string"}}})")});
  Script(Json::array({ToolCallsStep({{"echo", R"({"value": "from-worker"})"},
                                     {"lookup", R"({"query": "q2"})"}})}));

  v1::RunEventsRequest request;
  *request.mutable_create_thread_and_run() =
      ThreadAndRun(assistant_id, "Echo and look up.");
  EventStream stream(clients().runs.get(), request);
  std::vector<v1::RunEvent> events;
  v1::RunEvent event;
  std::string worker_output;
  while (stream.Next(&event)) {
    events.push_back(event);
    if (event.event() != "thread.run.requires_action") continue;
    // Only the caller's call is asked for...
    const auto& required =
        event.run().required_action().submit_tool_outputs().tool_calls();
    ASSERT_EQ(required.size(), 1);
    EXPECT_EQ(required[0].function().name(), "lookup");
    // ...while the worker's output lands in the step (the run waits).
    ASSERT_TRUE(WaitUntil(
        [&] {
          for (const v1::ToolCall& call : FunctionCalls(event.run())) {
            if (call.function().name() == "echo" &&
                call.function().has_output()) {
              worker_output = call.function().output();
            }
          }
          return !worker_output.empty();
        },
        seconds(10)))
        << "the worker's output never reached the step";
    EXPECT_EQ(GetRun(event.run()).status(), v1::RUN_STATUS_REQUIRES_ACTION);
    grpc::Status status = Submit(event.run(), required[0].id(), "caller: q2");
    EXPECT_TRUE(status.ok()) << Describe(status);
  }
  grpc::Status status = stream.Finish();
  ASSERT_TRUE(status.ok()) << Describe(status);
  ExpectWholeStream(events);
  const v1::Run run = GetRun(RunOf(events));
  EXPECT_EQ(run.status(), v1::RUN_STATUS_COMPLETED);
  const Json output = Json::parse(worker_output, nullptr, false);
  EXPECT_EQ(output.value("worker", ""), "echo-1") << worker_output;
  EXPECT_EQ(output.value("value", ""), "from-worker") << worker_output;

  // The next turn carried both halves back to the model.
  const std::vector<Json> requests = ModelRequests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_THAT(Values(FunctionOutputs(requests[1].value("body", Json()))),
              UnorderedElementsAre(worker_output, "caller: q2"));
}

// --- Gateway kill -9 between dispatch and result ---------------------------

TEST_F(ToolWorkersE2eTest, GatewayRestartMidCallRunsTheToolOnce) {
  // A 1.5 s lease: the worker heartbeats every 500 ms, so it notices the
  // restarted gateway forgot it and registers again quickly.
  StartGateway(
      {"--db=" + dir_.path() + "/gateway.db", "--worker_lease_ttl_ms=1500"});
  if (HasFatalFailure()) return;
  const std::string log = dir_.path() + "/survivor.log";
  ASSERT_NE(
      StartTestWorker("survivor", {"--tools=slow_idem", "--idempotent",
                                   "--delay_ms=1500", "--log_file=" + log}),
      nullptr);
  ASSERT_TRUE(WaitForWorkers({"survivor"}));
  const std::string assistant_id = CreateAssistant({NamedTool("slow_idem")});
  Script(
      Json::array({ToolCallsStep({{"slow_idem", R"({"value": "survive"})"}})}));

  v1::RunEventsRequest request;
  *request.mutable_create_thread_and_run() =
      ThreadAndRun(assistant_id, "Call slow_idem.");
  std::vector<v1::RunEvent> before;
  {
    EventStream stream(clients().runs.get(), request);
    v1::RunEvent event;
    while (stream.Next(&event)) {
      before.push_back(event);
      if (event.event() == "thread.run.step.created" &&
          event.step().type() == v1::RUN_STEP_TYPE_TOOL_CALLS) {
        break;
      }
    }
    ASSERT_FALSE(before.empty());
    ASSERT_EQ(before.back().event(), "thread.run.step.created");
    // Mid-call: the worker started it (it sleeps 1.5 s, or until the
    // gateway hangs up) and had not finished when the gateway died.
    std::vector<LogLine> at_kill;
    ASSERT_TRUE(WaitUntil(
        [&] {
          at_kill = ReadLog(log);
          return CountLines(at_kill, "start", "survivor") == 1;
        },
        seconds(10)))
        << "the worker never got the call";
    gateway_.Kill();
    EXPECT_EQ(CountLines(at_kill, "end", "survivor"), 0)
        << "the call ended before the gateway was killed:\n"
        << DumpLog(at_kill);
  }
  const v1::Run run = RunOf(before);

  // Same store, same address (the worker knows only that one).
  RestartGateway({"--listen=" + gateway_.address()});
  if (HasFatalFailure()) return;
  const std::vector<v1::RunEvent> all =
      ReattachToCompletion(clients().runs.get(), run, before);
  ASSERT_FALSE(all.empty());
  EXPECT_FALSE(HasEvent(all, "thread.run.requires_action"));

  const v1::Run final_run = GetRun(run);
  EXPECT_EQ(final_run.status(), v1::RUN_STATUS_COMPLETED);
  const std::vector<v1::ToolCall> calls = FunctionCalls(final_run);
  ASSERT_EQ(calls.size(), 1u);
  const Json output = Json::parse(calls[0].function().output(), nullptr, false);
  EXPECT_EQ(output.value("worker", ""), "survivor") << output;
  EXPECT_EQ(output.value("value", ""), "survive") << output;
  // The resumed run re-sent the call with the same key; the worker answered
  // it from its idempotency cache: the tool ran once.
  const std::string key = run.id() + ":" + calls[0].id();
  const std::vector<LogLine> lines = ReadLog(log);
  EXPECT_EQ(LinesWithKeyPrefix(lines, key).size(), 2u) << DumpLog(lines);
  EXPECT_EQ(CountLines(lines, "start", "survivor"), 1) << DumpLog(lines);
  EXPECT_EQ(CountLines(lines, "end", "survivor"), 1) << DumpLog(lines);
  // The worker is registered with the new gateway.
  EXPECT_TRUE(FindWorker("survivor").has_value());

  // The stored log is what the first client saw, extended.
  EventStream replay(clients().runs.get(), Attach(run, 0));
  std::vector<v1::RunEvent> log_events;
  const grpc::Status status = replay.ReadAll(&log_events);
  ASSERT_TRUE(status.ok()) << Describe(status);
  EXPECT_EQ(Sequences(log_events),
            OneTo(static_cast<int64_t>(log_events.size())));
  ASSERT_GE(log_events.size(), before.size());
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(before[i], log_events[i]))
        << "event " << i + 1 << " changed across the restart";
  }
}

}  // namespace
}  // namespace assistants::test_support
