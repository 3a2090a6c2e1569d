// Tests of the C++ tool-worker SDK: a real ToolWorker registers with an
// in-process fake ToolRegistryService and is invoked over a real channel.
#include "tool_workers/sdk/tool_worker.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "assistants/v1/tool_worker.grpc.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/tool_workers/sdk/fake_gateway.h"

namespace assistants::worker_sdk {
namespace {

namespace v1 = ::assistants::v1;
using fakes::ErrorInfoOf;
using fakes::FakeRegistry;
using fakes::Invocation;
using fakes::Invoke;
using fakes::kPatience;
using fakes::kToken;
using fakes::StructToJson;
using nlohmann::json;
using std::chrono::milliseconds;

// A one-shot signal between a test and a handler.
class Gate {
 public:
  void Open() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = true;
    }
    opened_.notify_all();
  }
  bool Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    return opened_.wait_for(lock, kPatience, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable opened_;
  bool open_ = false;
};

WorkerOptions Options(const FakeRegistry* registry = nullptr) {
  WorkerOptions options;
  if (registry != nullptr) options.gateway = registry->address();
  options.worker_id = "worker-1";
  options.token = kToken;
  options.register_timeout = kPatience;
  options.drain_timeout = kPatience;
  return options;
}

ToolSpec Tool(std::string name, ToolHandler handler) {
  ToolSpec spec;
  spec.name = std::move(name);
  spec.description = "a test tool";
  spec.parameters = {{"type", "object"}};
  spec.handler = std::move(handler);
  return spec;
}

// Answers with its arguments and counts its calls.
ToolSpec Echo(std::atomic<int>* calls, std::string name = "echo") {
  return Tool(std::move(name),
              [calls](const json& arguments,
                      const CallContext&) -> absl::StatusOr<json> {
                ++*calls;
                return arguments;
              });
}

// --- Registration, heartbeat, unregistration --------------------------------

TEST(ToolWorkerRegistrationTest, RegistersToolsEndpointAndToken) {
  FakeRegistry registry;
  WorkerOptions options = Options(&registry);
  options.lease_ttl_ms = 3000;
  ToolWorker worker(options);
  ToolSpec spec =
      Tool("get_stock_price",
           [](const json&, const CallContext&) -> absl::StatusOr<json> {
             return json::object();
           });
  spec.description = "Get the price";
  spec.parameters = json::parse(
      R"({"type":"object","properties":{"ticker":{"type":"string"}},
          "required":["ticker"]})");
  spec.strict = true;
  spec.timeout_ms = 1500;
  spec.max_concurrency = 3;
  spec.idempotent = true;
  worker.AddTool(spec);
  std::atomic<int> calls{0};
  worker.AddTool(Echo(&calls));

  ASSERT_TRUE(worker.Start().ok());

  // The token is checked by the fake: a registration exists only with it.
  const auto registrations = registry.registrations();
  ASSERT_EQ(registrations.size(), 1u);
  const v1::RegisterWorkerRequest& request = registrations[0];
  EXPECT_EQ(request.worker_id(), "worker-1");
  EXPECT_EQ(request.endpoint(), "127.0.0.1:" + std::to_string(worker.port()));
  EXPECT_EQ(worker.endpoint(), request.endpoint());
  EXPECT_EQ(request.lease_ttl_ms(), 3000);
  ASSERT_EQ(request.tools_size(), 2);
  const v1::WorkerTool& tool = request.tools(0);
  EXPECT_EQ(tool.function().name(), "get_stock_price");
  EXPECT_EQ(tool.function().description(), "Get the price");
  EXPECT_EQ(StructToJson(tool.function().parameters()), spec.parameters);
  ASSERT_TRUE(tool.function().has_strict());
  EXPECT_TRUE(tool.function().strict());
  EXPECT_EQ(tool.timeout_ms(), 1500);
  EXPECT_EQ(tool.max_concurrency(), 3);
  EXPECT_TRUE(tool.idempotent());
  // strict is sent even when false: the worker's definition is complete.
  ASSERT_TRUE(request.tools(1).function().has_strict());
  EXPECT_FALSE(request.tools(1).function().strict());
  EXPECT_FALSE(request.tools(1).idempotent());
}

TEST(ToolWorkerRegistrationTest, BadTokenIsReturnedByStart) {
  FakeRegistry registry;
  WorkerOptions options = Options(&registry);
  options.token = "wrong";
  std::atomic<int> calls{0};
  ToolWorker worker(options);
  worker.AddTool(Echo(&calls));
  const absl::Status started = worker.Start();
  EXPECT_EQ(started.code(), absl::StatusCode::kUnauthenticated) << started;
  EXPECT_NE(started.message().find("bad token"), absl::string_view::npos);
}

TEST(ToolWorkerRegistrationTest, PermanentErrorIsReturnedWithoutRetry) {
  FakeRegistry registry;
  registry.FailRegistrations(
      {grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                    "endpoint 127.0.0.1 is not allowed")});
  std::atomic<int> calls{0};
  ToolWorker worker(Options(&registry));
  worker.AddTool(Echo(&calls));
  const absl::Status started = worker.Start();
  EXPECT_EQ(started.code(), absl::StatusCode::kPermissionDenied) << started;
  EXPECT_NE(started.message().find("endpoint 127.0.0.1 is not allowed"),
            absl::string_view::npos);
  EXPECT_EQ(registry.registrations().size(), 1u);
}

TEST(ToolWorkerRegistrationTest, TransientFailuresAreRetried) {
  FakeRegistry registry;
  registry.FailRegistrations(
      {grpc::Status(grpc::StatusCode::UNAVAILABLE, "starting"),
       grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "slow")});
  std::atomic<int> calls{0};
  ToolWorker worker(Options(&registry));
  worker.AddTool(Echo(&calls));
  EXPECT_TRUE(worker.Start().ok());
  EXPECT_EQ(registry.registrations().size(), 3u);
}

TEST(ToolWorkerRegistrationTest, GivesUpAfterRegisterTimeout) {
  FakeRegistry registry;
  registry.FailRegistrations(std::vector<grpc::Status>(
      100, grpc::Status(grpc::StatusCode::UNAVAILABLE, "down")));
  WorkerOptions options = Options(&registry);
  options.register_timeout = milliseconds(250);
  std::atomic<int> calls{0};
  ToolWorker worker(options);
  worker.AddTool(Echo(&calls));
  const absl::Status started = worker.Start();
  EXPECT_EQ(started.code(), absl::StatusCode::kUnavailable) << started;
  EXPECT_GE(registry.registrations().size(), 2u);
}

TEST(ToolWorkerRegistrationTest, HeartbeatsCarryTheLease) {
  FakeRegistry registry;
  std::atomic<int> calls{0};
  ToolWorker worker(Options(&registry));
  worker.AddTool(Echo(&calls));
  ASSERT_TRUE(worker.Start().ok());
  ASSERT_TRUE(
      registry.WaitUntil([&] { return registry.heartbeat_count() >= 2; }));
  const v1::HeartbeatRequest beat = registry.heartbeats()[1];
  EXPECT_EQ(beat.worker_id(), "worker-1");
  EXPECT_EQ(beat.lease_id(), "lease-1");
  EXPECT_EQ(beat.in_flight(), 0);
}

TEST(ToolWorkerRegistrationTest, RegistersAgainWhenTheLeaseIsNotFound) {
  FakeRegistry registry;
  std::atomic<int> calls{0};
  ToolWorker worker(Options(&registry));
  worker.AddTool(Echo(&calls));
  ASSERT_TRUE(worker.Start().ok());
  registry.FailNextHeartbeat(
      grpc::Status(grpc::StatusCode::NOT_FOUND, "lease expired"));
  // Registered again (lease-2), then heartbeats go on with the new lease.
  ASSERT_TRUE(registry.WaitUntil([&] {
    return registry.registration_count() == 2 &&
           registry.last_heartbeat().lease_id() == "lease-2";
  }));
  EXPECT_EQ(registry.registrations()[1].tools_size(), 1);
}

TEST(ToolWorkerRegistrationTest, KeepsBeatingThroughOtherFailures) {
  FakeRegistry registry;
  std::atomic<int> calls{0};
  ToolWorker worker(Options(&registry));
  worker.AddTool(Echo(&calls));
  ASSERT_TRUE(worker.Start().ok());
  registry.FailNextHeartbeat(
      grpc::Status(grpc::StatusCode::UNAVAILABLE, "gateway busy"));
  const size_t beats = registry.heartbeats().size();
  ASSERT_TRUE(registry.WaitUntil(
      [&] { return registry.heartbeat_count() >= beats + 3; }));
  EXPECT_EQ(registry.registrations().size(), 1u);
}

TEST(ToolWorkerRegistrationTest, ShutdownUnregistersOnceAndStopsServing) {
  FakeRegistry registry;
  std::atomic<int> calls{0};
  ToolWorker worker(Options(&registry));
  worker.AddTool(Echo(&calls));
  ASSERT_TRUE(worker.Start().ok());
  worker.Shutdown();
  worker.Shutdown();  // idempotent
  const auto unregistrations = registry.unregistrations();
  ASSERT_EQ(unregistrations.size(), 1u);
  EXPECT_EQ(unregistrations[0].worker_id(), "worker-1");
  EXPECT_EQ(unregistrations[0].lease_id(), "lease-1");
  EXPECT_NE(Invoke(worker.port(), "echo", "{}", "", milliseconds(500))
                .status.error_code(),
            grpc::StatusCode::OK);
}

// --- Start() checks and endpoints --------------------------------------------

TEST(ToolWorkerStartTest, RejectsBadSpecs) {
  const ToolHandler handler = [](const json&,
                                 const CallContext&) -> absl::StatusOr<json> {
    return json();
  };
  std::vector<std::vector<ToolSpec>> bad = {
      {},
      {Tool("has space", handler)},
      {Tool("", handler)},
      {Tool(std::string(65, 'a'), handler)},
      {Tool("ok", nullptr)},
      {Tool("ok", handler), Tool("ok", handler)},
  };
  ToolSpec array_schema = Tool("ok", handler);
  array_schema.parameters = json::array();
  bad.push_back({array_schema});
  for (const auto& specs : bad) {
    ToolWorker worker(Options());
    for (const ToolSpec& spec : specs) worker.AddTool(spec);
    EXPECT_EQ(worker.Start().code(), absl::StatusCode::kInvalidArgument)
        << (specs.empty() ? "no tools" : specs[0].name);
  }
}

// Unusable TLS settings fail Start() with the file named, serving nothing.
TEST(ToolWorkerStartTest, BadTlsSettingsAreReportedByStart) {
  std::atomic<int> calls{0};
  const std::string missing = "/nonexistent/tls/worker.pem";
  WorkerOptions server = Options();
  server.server_tls = {missing, missing, ""};
  WorkerOptions gateway = Options();
  gateway.gateway = "127.0.0.1:1";
  gateway.gateway_tls = {"", "", missing};
  WorkerOptions no_key = Options();
  no_key.server_tls = {missing, "", ""};
  for (const WorkerOptions& options : {server, gateway, no_key}) {
    ToolWorker worker(options);
    worker.AddTool(Echo(&calls));
    const absl::Status started = worker.Start();
    EXPECT_EQ(started.code(), absl::StatusCode::kInvalidArgument) << started;
    EXPECT_NE(started.message().find(missing), absl::string_view::npos)
        << started;
    EXPECT_EQ(worker.port(), 0);
  }
}

TEST(ToolWorkerStartTest, WildcardListenAdvertisesLoopback) {
  WorkerOptions options = Options();
  options.listen = "0.0.0.0:0";
  std::atomic<int> calls{0};
  ToolWorker worker(options);
  worker.AddTool(Echo(&calls));
  ASSERT_TRUE(worker.Start().ok());
  EXPECT_GT(worker.port(), 0);
  EXPECT_EQ(worker.endpoint(), "127.0.0.1:" + std::to_string(worker.port()));
}

TEST(ToolWorkerStartTest, AdvertisedEndpointIsRegistered) {
  FakeRegistry registry;
  WorkerOptions options = Options(&registry);
  options.advertise = "tools.internal:7000";
  std::atomic<int> calls{0};
  ToolWorker worker(options);
  worker.AddTool(Echo(&calls));
  ASSERT_TRUE(worker.Start().ok());
  EXPECT_EQ(worker.endpoint(), "tools.internal:7000");
  EXPECT_EQ(registry.registrations()[0].endpoint(), "tools.internal:7000");
}

TEST(ToolWorkerStartTest, DefaultWorkerIdIsHostAndPid) {
  WorkerOptions options = Options();
  options.worker_id.clear();
  ToolWorker worker(options);
  EXPECT_NE(worker.worker_id().find("-" + std::to_string(getpid())),
            std::string::npos)
      << worker.worker_id();
}

// --- Invocation
// ---------------------------------------------------------------

class ToolWorkerInvokeTest : public ::testing::Test {
 protected:
  // Serves `specs` plus "echo" without a gateway.
  void Serve(std::vector<ToolSpec> specs, WorkerOptions options = Options()) {
    worker_ = std::make_unique<ToolWorker>(options);
    worker_->AddTool(Echo(&echo_calls_));
    for (ToolSpec& spec : specs) worker_->AddTool(std::move(spec));
    ASSERT_TRUE(worker_->Start().ok());
  }
  Invocation Call(const std::string& tool, const std::string& arguments,
                  const std::string& key = "") {
    return Invoke(worker_->port(), tool, arguments, key);
  }

  std::atomic<int> echo_calls_{0};
  std::unique_ptr<ToolWorker> worker_;
};

TEST_F(ToolWorkerInvokeTest, ObjectResultIsSerialized) {
  Serve({});
  const Invocation result = Call("echo", R"({"a": [1, 2]})");
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.output, R"({"a":[1,2]})");
}

TEST_F(ToolWorkerInvokeTest, StringResultIsSentAsIs) {
  Serve({Tool("text",
              [](const json&, const CallContext&) -> absl::StatusOr<json> {
                return json(R"({"price": 237.5, "currency": "USD"})");
              })});
  EXPECT_EQ(Call("text", "{}").output,
            R"({"price": 237.5, "currency": "USD"})");
}

TEST_F(ToolWorkerInvokeTest, EmptyArgumentsAreAnEmptyObject) {
  Serve({});
  const Invocation result = Call("echo", "");
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.output, "{}");
}

TEST_F(ToolWorkerInvokeTest, ContextCarriesTheCall) {
  CallContext seen;
  Serve({Tool(
      "context",
      [&](const json&, const CallContext& context) -> absl::StatusOr<json> {
        seen = context;
        seen.cancelled = nullptr;  // valid only during the call
        return context.cancelled();
      })});
  auto stub = v1::ToolWorkerService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(worker_->port()),
                          grpc::InsecureChannelCredentials()));
  v1::InvokeToolRequest request;
  request.set_tool_name("context");
  request.set_idempotency_key("run_1:call_1");
  request.set_tool_call_id("call_1");
  request.set_run_id("run_1");
  request.set_thread_id("thread_1");
  request.set_assistant_id("asst_1");
  grpc::ClientContext client;
  const auto deadline = std::chrono::system_clock::now() + kPatience;
  client.set_deadline(deadline);
  v1::InvokeToolResponse response;
  ASSERT_TRUE(stub->InvokeTool(&client, request, &response).ok());
  EXPECT_EQ(response.output(), "false");
  EXPECT_EQ(seen.idempotency_key, "run_1:call_1");
  EXPECT_EQ(seen.tool_call_id, "call_1");
  EXPECT_EQ(seen.run_id, "run_1");
  EXPECT_EQ(seen.thread_id, "thread_1");
  EXPECT_EQ(seen.assistant_id, "asst_1");
  EXPECT_LE(std::chrono::abs(seen.deadline - deadline), milliseconds(100));
}

TEST_F(ToolWorkerInvokeTest, InvalidArgumentsAreRejectedWithoutTheHandler) {
  Serve({});
  for (const std::string& arguments :
       {std::string("{"), std::string("[1]"), std::string("\"text\""),
        std::string("nul"), std::string(" ")}) {
    const Invocation result = Call("echo", arguments);
    EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << arguments;
    EXPECT_EQ(result.status.error_message().rfind(
                  "arguments are not valid JSON: ", 0),
              0u)
        << result.status.error_message();
  }
  EXPECT_EQ(echo_calls_, 0);
}

TEST_F(ToolWorkerInvokeTest, UnknownToolIsNotFound) {
  Serve({});
  const Invocation result = Call("nope", "{}");
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(result.status.error_message().find("nope"), std::string::npos);
}

TEST_F(ToolWorkerInvokeTest, HandlerExceptionsAreInternal) {
  Serve({Tool("throws",
              [](const json&, const CallContext&) -> absl::StatusOr<json> {
                throw std::runtime_error("boom");
              }),
         Tool("throws_int",
              [](const json&, const CallContext&) -> absl::StatusOr<json> {
                throw 42;
              })});
  const Invocation result = Call("throws", "{}");
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INTERNAL);
  // The exception's text (it may hold secrets) stays in the worker's log.
  EXPECT_EQ(result.status.error_message().find("boom"), std::string::npos);
  EXPECT_NE(result.status.error_message().find("failed with an exception"),
            std::string::npos);
  EXPECT_EQ(Call("throws_int", "{}").status.error_code(),
            grpc::StatusCode::INTERNAL);
  // The worker survived.
  EXPECT_TRUE(Call("echo", "{}").status.ok());
}

TEST_F(ToolWorkerInvokeTest, ParallelCallsRunTogether) {
  // Each call waits inside its handler until all of them are inside: the
  // test passes only if the worker runs them at the same time.
  constexpr int kCalls = 4;
  std::mutex mu;
  std::condition_variable changed;
  int inside = 0;
  Serve({Tool("rendezvous",
              [&](const json&, const CallContext&) -> absl::StatusOr<json> {
                std::unique_lock<std::mutex> lock(mu);
                ++inside;
                changed.notify_all();
                if (!changed.wait_for(lock, kPatience,
                                      [&] { return inside >= kCalls; })) {
                  return absl::DeadlineExceededError("ran alone");
                }
                return json("together");
              })});
  std::vector<std::thread> clients;
  std::vector<Invocation> results(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    clients.emplace_back([&, i] { results[i] = Call("rendezvous", "{}"); });
  }
  for (std::thread& client : clients) client.join();
  for (const Invocation& result : results) {
    EXPECT_TRUE(result.status.ok()) << result.status.error_message();
    EXPECT_EQ(result.output, "together");
  }
}

TEST_F(ToolWorkerInvokeTest, CancelledTurnsTrueAtTheDeadline) {
  Gate noticed;
  Serve({Tool(
      "waits",
      [&](const json&, const CallContext& context) -> absl::StatusOr<json> {
        const auto give_up = std::chrono::steady_clock::now() + kPatience;
        while (!context.cancelled() &&
               std::chrono::steady_clock::now() < give_up) {
          std::this_thread::sleep_for(milliseconds(5));
        }
        if (context.cancelled()) noticed.Open();
        return json("done");
      })});
  const Invocation result =
      Invoke(worker_->port(), "waits", "{}", "", milliseconds(100));
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(noticed.Wait());
}

class HandlerErrorTest
    : public ToolWorkerInvokeTest,
      public ::testing::WithParamInterface<absl::StatusCode> {};

TEST_P(HandlerErrorTest, KeepsItsCodeAndMessage) {
  const absl::StatusCode code = GetParam();
  Serve({Tool("fails",
              [code](const json&, const CallContext&) -> absl::StatusOr<json> {
                return absl::Status(code, "the reason");
              })});
  const Invocation result = Call("fails", "{}");
  EXPECT_EQ(static_cast<int>(result.status.error_code()),
            static_cast<int>(code));
  EXPECT_EQ(result.status.error_message(), "the reason");
}

INSTANTIATE_TEST_SUITE_P(
    Codes, HandlerErrorTest,
    ::testing::Values(absl::StatusCode::kInvalidArgument,
                      absl::StatusCode::kUnavailable,
                      absl::StatusCode::kInternal,
                      absl::StatusCode::kPermissionDenied,
                      absl::StatusCode::kFailedPrecondition,
                      absl::StatusCode::kResourceExhausted));

TEST_F(ToolWorkerInvokeTest, HandlerCallNotStartedCarriesErrorInfo) {
  Serve({Tool("refuses",
              [](const json&, const CallContext&) -> absl::StatusOr<json> {
                return CallNotStarted("no capacity");
              })});
  const Invocation result = Call("refuses", "{}");
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  const auto info = ErrorInfoOf(result.status);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "CALL_NOT_STARTED");
  EXPECT_EQ(info->domain(), "assistants.gateway");
}

// --- Deduplication
// --------------------------------------------------------------

TEST_F(ToolWorkerInvokeTest, SameKeyRunsOnceAndAnswersTheSame) {
  std::atomic<int> calls{0};
  Serve({Tool("counter",
              [&](const json&, const CallContext&) -> absl::StatusOr<json> {
                return json{{"run", ++calls}};
              })});
  const Invocation first = Call("counter", "{}", "run_1:call_1");
  const Invocation second = Call("counter", "{}", "run_1:call_1");
  ASSERT_TRUE(first.status.ok());
  ASSERT_TRUE(second.status.ok());
  EXPECT_EQ(first.output, R"({"run":1})");
  EXPECT_EQ(second.output, first.output);
  EXPECT_EQ(Call("counter", "{}", "run_1:call_2").output, R"({"run":2})");
  EXPECT_EQ(calls, 2);
}

TEST_F(ToolWorkerInvokeTest, ErrorsAreRememberedButUnavailableIsNot) {
  std::atomic<int> calls{0};
  Serve({Tool(
      "flaky",
      [&](const json& arguments, const CallContext&) -> absl::StatusOr<json> {
        ++calls;
        return absl::Status(arguments.at("code").get<absl::StatusCode>(), "no");
      })});
  const std::string invalid = R"({"code": 3})";
  const std::string unavailable = R"({"code": 14})";
  EXPECT_EQ(Call("flaky", invalid, "k1").status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Call("flaky", invalid, "k1").status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(Call("flaky", unavailable, "k2").status.error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Call("flaky", unavailable, "k2").status.error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(calls, 3);
  // A handler that gave up (cancelled, out of time) did not answer the
  // call: the gateway's retry after a restart runs it again.
  for (const auto& [code, key] :
       {std::pair<int, std::string>{1, "k3"}, {4, "k4"}}) {
    const std::string arguments = absl::StrCat(R"({"code": )", code, "}");
    const int before = calls;
    Call("flaky", arguments, key);
    Call("flaky", arguments, key);
    EXPECT_EQ(calls, before + 2) << "code " << code;
  }
}

TEST_F(ToolWorkerInvokeTest, EmptyKeyIsNeverDeduplicated) {
  Serve({});
  Call("echo", "{}");
  Call("echo", "{}");
  EXPECT_EQ(echo_calls_, 2);
}

TEST_F(ToolWorkerInvokeTest, OldestResultsAreForgotten) {
  WorkerOptions options = Options();
  options.dedupe_entries = 1;
  Serve({}, options);
  Call("echo", "{}", "a");
  Call("echo", "{}", "b");  // evicts a
  Call("echo", "{}", "b");
  Call("echo", "{}", "a");
  EXPECT_EQ(echo_calls_, 3);
}

TEST(ToolWorkerDedupeTest, ConcurrentSameKeyWaitsForTheFirstRun) {
  // The gateway's heartbeats report calls in flight: two means the second
  // call is waiting while the first still runs.
  FakeRegistry registry;
  std::atomic<int> calls{0};
  Gate entered, release;
  ToolWorker worker(Options(&registry));
  worker.AddTool(Tool(
      "slow", [&](const json&, const CallContext&) -> absl::StatusOr<json> {
        entered.Open();
        release.Wait();
        return json{{"run", ++calls}};
      }));
  ASSERT_TRUE(worker.Start().ok());
  Invocation first, second;
  std::thread first_client(
      [&] { first = Invoke(worker.port(), "slow", "{}", "run_1:call_1"); });
  ASSERT_TRUE(entered.Wait());
  std::thread second_client(
      [&] { second = Invoke(worker.port(), "slow", "{}", "run_1:call_1"); });
  EXPECT_TRUE(registry.WaitUntil([&] {
    return registry.heartbeat_count() > 0 &&
           registry.last_heartbeat().in_flight() == 2;
  }));
  release.Open();
  first_client.join();
  second_client.join();
  ASSERT_TRUE(first.status.ok());
  ASSERT_TRUE(second.status.ok());
  EXPECT_EQ(first.output, R"({"run":1})");
  EXPECT_EQ(second.output, first.output);
  EXPECT_EQ(calls, 1);
}

// --- Draining
// ---------------------------------------------------------------------

TEST(ToolWorkerDrainTest, RefusesNewCallsAndFinishesRunningOnes) {
  FakeRegistry registry;
  std::atomic<int> echo_calls{0};
  Gate entered, release;
  ToolWorker worker(Options(&registry));
  worker.AddTool(Echo(&echo_calls));
  worker.AddTool(Tool(
      "slow", [&](const json&, const CallContext&) -> absl::StatusOr<json> {
        entered.Open();
        release.Wait();
        return json("finished");
      }));
  ASSERT_TRUE(worker.Start().ok());
  const Invocation done = Invoke(worker.port(), "echo", R"({"n":1})", "done");
  ASSERT_TRUE(done.status.ok());
  Invocation running;
  std::thread client(
      [&] { running = Invoke(worker.port(), "slow", "{}", "run_1:call_1"); });
  ASSERT_TRUE(entered.Wait());
  std::thread stopper([&] { worker.Shutdown(); });
  ASSERT_TRUE(
      registry.WaitUntil([&] { return registry.unregistration_count() == 1; }));

  // Draining begins right after unregistering.
  Invocation refused;
  int attempt = 0;
  const auto give_up = std::chrono::steady_clock::now() + kPatience;
  do {
    refused = Invoke(worker.port(), "echo", "{}",
                     "run_1:new_" + std::to_string(++attempt));
  } while (refused.status.ok() && std::chrono::steady_clock::now() < give_up);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  const auto info = ErrorInfoOf(refused.status);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "CALL_NOT_STARTED");
  EXPECT_EQ(info->domain(), "assistants.gateway");
  // A call that already ran here is answered, not refused as not started
  // (that would let the gateway run it a second time elsewhere).
  const int echoes = echo_calls;
  const Invocation again = Invoke(worker.port(), "echo", R"({"n":1})", "done");
  ASSERT_TRUE(again.status.ok()) << again.status.error_message();
  EXPECT_EQ(again.output, done.output);
  EXPECT_EQ(echo_calls, echoes);

  release.Open();
  client.join();
  stopper.join();
  ASSERT_TRUE(running.status.ok()) << running.status.error_message();
  EXPECT_EQ(running.output, "finished");
}

TEST(ToolWorkerDrainTest, CancelsCallsLeftAfterTheDrainTimeout) {
  WorkerOptions options = Options();
  options.drain_timeout = milliseconds(50);
  Gate entered;
  std::atomic<bool> saw_cancel{false};
  ToolWorker worker(options);
  worker.AddTool(Tool(
      "stubborn",
      [&](const json&, const CallContext& context) -> absl::StatusOr<json> {
        entered.Open();
        const auto give_up = std::chrono::steady_clock::now() + kPatience;
        while (!context.cancelled() &&
               std::chrono::steady_clock::now() < give_up) {
          std::this_thread::sleep_for(milliseconds(5));
        }
        saw_cancel = context.cancelled();
        return json("late");
      }));
  ASSERT_TRUE(worker.Start().ok());
  Invocation result;
  std::thread client([&] { result = Invoke(worker.port(), "stubborn", "{}"); });
  ASSERT_TRUE(entered.Wait());
  worker.Shutdown();
  client.join();
  EXPECT_TRUE(saw_cancel);
  EXPECT_NE(result.status.error_code(), grpc::StatusCode::OK);
}

}  // namespace
}  // namespace assistants::worker_sdk
