// Tests of the metrics: the registry's series, the sampled gauges, the
// HTTP server, and each recorder (provider and tool-dispatcher decorators,
// the run observer, the retry hook, the RPC interceptor through an
// in-process gateway), checked through the Prometheus text they produce.
#include "service/observability/metrics.h"

#include <curl/curl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "service/api/metrics_interceptor.h"
#include "service/api/server.h"
#include "service/common/clock.h"
#include "service/common/errors.h"
#include "service/common/executor.h"
#include "service/common/timers.h"
#include "service/observability/metered_provider.h"
#include "service/observability/metered_tool_dispatcher.h"
#include "service/observability/run_metrics.h"
#include "service/runs/engine.h"
#include "service/store/memory_store.h"
#include "tests/support/prometheus_text.h"
#include "upstream/provider_registry.h"

namespace assistants::observability {
namespace {

using test_support::SeriesValue;
using upstream::ProviderEvent;

double Value(const Metrics& metrics, const std::string& name,
             const std::map<std::string, std::string>& labels = {}) {
  return SeriesValue(metrics.Serialize(), name, labels).value_or(-1);
}

// --- The registry ---------------------------------------------------------

TEST(MetricsTest, DeclaresEveryFamily) {
  Metrics metrics;
  metrics.Rpc("/m", "OK");
  metrics.Upstream("p");
  metrics.UpstreamError("p", "UPSTREAM_TIMEOUT");
  metrics.Tool("t");
  metrics.ToolCall("t", "ok");
  metrics.RunEnded("completed", 1);
  const std::string text = metrics.Serialize();
  for (const char* family :
       {"assistants_rpcs_total", "assistants_rpc_duration_seconds",
        "assistants_runs_total", "assistants_run_duration_seconds",
        "assistants_tool_calls_total", "assistants_tool_call_duration_seconds",
        "assistants_upstream_request_duration_seconds",
        "assistants_upstream_time_to_first_token_seconds",
        "assistants_upstream_tokens_total", "assistants_upstream_retries_total",
        "assistants_upstream_errors_total"}) {
    EXPECT_NE(text.find(std::string("# TYPE ") + family), std::string::npos)
        << family;
  }
}

TEST(MetricsTest, SampledGaugesAreReadAtEachScrapeUntilCleared) {
  Metrics metrics;
  int depth = 3;
  metrics.AddSampledGauge("assistants_executor_queue_depth", "help", "executor",
                          "engine", [&depth] { return depth; });
  metrics.AddSampledGauge("assistants_executor_queue_depth", "help", "executor",
                          "blocking", [] { return 1.0; });
  metrics.AddSampledGauge("assistants_open_streams", "help", "", "",
                          [] { return 2.0; });
  EXPECT_EQ(Value(metrics, "assistants_executor_queue_depth",
                  {{"executor", "engine"}}),
            3);
  depth = 5;
  EXPECT_EQ(Value(metrics, "assistants_executor_queue_depth",
                  {{"executor", "engine"}}),
            5);
  EXPECT_EQ(Value(metrics, "assistants_executor_queue_depth",
                  {{"executor", "blocking"}}),
            1);
  EXPECT_EQ(Value(metrics, "assistants_open_streams"), 2);
  // One family with both children, not two families of the same name.
  const std::string text = metrics.Serialize();
  EXPECT_EQ(text.find("# TYPE assistants_executor_queue_depth gauge"),
            text.rfind("# TYPE assistants_executor_queue_depth gauge"));

  metrics.ClearSampledGauges();
  EXPECT_FALSE(SeriesValue(metrics.Serialize(), "assistants_open_streams"));
}

TEST(RunMetricsTest, CountsTerminalStatusesWithDurations) {
  Metrics metrics;
  RunMetrics runs(&metrics);
  runs.OnRunEnded(v1::RUN_STATUS_COMPLETED, 1500);
  runs.OnRunEnded(v1::RUN_STATUS_COMPLETED, 500);
  runs.OnRunEnded(v1::RUN_STATUS_FAILED, 20);
  EXPECT_EQ(Value(metrics, "assistants_runs_total", {{"status", "completed"}}),
            2);
  EXPECT_EQ(Value(metrics, "assistants_runs_total", {{"status", "failed"}}), 1);
  EXPECT_DOUBLE_EQ(Value(metrics, "assistants_run_duration_seconds_sum",
                         {{"status", "completed"}}),
                   2.0);
  EXPECT_EQ(Value(metrics, "assistants_run_duration_seconds_count",
                  {{"status", "failed"}}),
            1);
}

// --- MetricsServer ----------------------------------------------------------

size_t AppendBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// GET http://127.0.0.1:port/path; the body, or nullopt unless 200.
std::optional<std::string> HttpGet(int port, const std::string& path) {
  CURL* curl = curl_easy_init();
  std::string body;
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + path;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
  const CURLcode code = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(curl);
  if (code != CURLE_OK || status != 200) return std::nullopt;
  return body;
}

TEST(MetricsServerTest, ServesTheSeriesOverHttp) {
  Metrics metrics;
  metrics.RunEnded("completed", 0.5);
  metrics.AddSampledGauge("assistants_active_runs", "help", "", "",
                          [] { return 4.0; });
  auto server = MetricsServer::Start("127.0.0.1:0", &metrics);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);

  std::optional<std::string> page = HttpGet((*server)->port(), "/metrics");
  ASSERT_TRUE(page.has_value());
  EXPECT_EQ(
      SeriesValue(*page, "assistants_runs_total", {{"status", "completed"}}),
      1);
  EXPECT_EQ(SeriesValue(*page, "assistants_active_runs"), 4);
  server->reset();
  metrics.ClearSampledGauges();
}

TEST(MetricsServerTest, PortInUseIsListenFailed) {
  Metrics metrics;
  auto first = MetricsServer::Start("127.0.0.1:0", &metrics);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string taken = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = MetricsServer::Start(taken, &metrics);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorReason(second.status()), "LISTEN_FAILED");
}

// --- MeteredProvider
// ----------------------------------------------------------

// A provider whose turn the test plays by hand through the observer it got.
class ManualProvider : public upstream::Provider {
 public:
  class Call : public upstream::TurnCall {
   public:
    void Cancel() override {}
  };
  std::unique_ptr<upstream::TurnCall> StreamTurn(
      const upstream::Turn&,
      std::shared_ptr<upstream::TurnObserver> observer) override {
    observer_ = std::move(observer);
    return std::make_unique<Call>();
  }
  upstream::TurnObserver& observer() { return *observer_; }

 private:
  std::shared_ptr<upstream::TurnObserver> observer_;
};

// What the engine's observer would have seen.
class RecordingObserver : public upstream::TurnObserver {
 public:
  void OnEvent(const ProviderEvent& event) override {
    events.push_back(event.type);
  }
  void OnDone(const std::optional<upstream::TurnError>& error) override {
    ++done;
    this->error = error;
  }
  std::vector<ProviderEvent::Type> events;
  int done = 0;
  std::optional<upstream::TurnError> error;
};

ProviderEvent Event(ProviderEvent::Type type) {
  ProviderEvent event;
  event.type = type;
  return event;
}

TEST(MeteredProviderTest, RecordsATurnAndForwardsEverything) {
  Metrics metrics;
  ManualProvider inner;
  MeteredProvider provider(&inner, "openai", &metrics);
  auto recorder = std::make_shared<RecordingObserver>();
  auto call = provider.StreamTurn(upstream::Turn(), recorder);
  ASSERT_NE(call, nullptr);

  EXPECT_EQ(Value(metrics,
                  "assistants_upstream_time_to_first_token_seconds_"
                  "count",
                  {{"provider", "openai"}}),
            0);
  inner.observer().OnEvent(Event(ProviderEvent::Type::kTextDelta));
  inner.observer().OnEvent(Event(ProviderEvent::Type::kTextDelta));
  ProviderEvent usage = Event(ProviderEvent::Type::kUsage);
  usage.usage.set_prompt_tokens(12);
  usage.usage.set_completion_tokens(7);
  inner.observer().OnEvent(usage);
  inner.observer().OnEvent(Event(ProviderEvent::Type::kFinished));
  EXPECT_EQ(Value(metrics, "assistants_upstream_request_duration_seconds_count",
                  {{"provider", "openai"}}),
            0);
  inner.observer().OnDone(std::nullopt);

  EXPECT_EQ(
      recorder->events,
      (std::vector<ProviderEvent::Type>{
          ProviderEvent::Type::kTextDelta, ProviderEvent::Type::kTextDelta,
          ProviderEvent::Type::kUsage, ProviderEvent::Type::kFinished}));
  EXPECT_EQ(recorder->done, 1);
  EXPECT_FALSE(recorder->error.has_value());
  // The first token once per turn, not per delta.
  EXPECT_EQ(Value(metrics,
                  "assistants_upstream_time_to_first_token_seconds_"
                  "count",
                  {{"provider", "openai"}}),
            1);
  EXPECT_EQ(Value(metrics, "assistants_upstream_request_duration_seconds_count",
                  {{"provider", "openai"}}),
            1);
  EXPECT_EQ(Value(metrics, "assistants_upstream_tokens_total",
                  {{"provider", "openai"}, {"kind", "input"}}),
            12);
  EXPECT_EQ(Value(metrics, "assistants_upstream_tokens_total",
                  {{"provider", "openai"}, {"kind", "output"}}),
            7);
  EXPECT_FALSE(
      SeriesValue(metrics.Serialize(), "assistants_upstream_errors_total"));
}

TEST(MeteredProviderTest, ToolCallStartIsTheFirstToken) {
  Metrics metrics;
  ManualProvider inner;
  MeteredProvider provider(&inner, "chat", &metrics);
  auto call = provider.StreamTurn(upstream::Turn(),
                                  std::make_shared<RecordingObserver>());
  inner.observer().OnEvent(Event(ProviderEvent::Type::kToolCallStarted));
  EXPECT_EQ(Value(metrics,
                  "assistants_upstream_time_to_first_token_seconds_"
                  "count",
                  {{"provider", "chat"}}),
            1);
}

TEST(MeteredProviderTest, CountsErrorsByReason) {
  Metrics metrics;
  ManualProvider inner;
  MeteredProvider provider(&inner, "openai", &metrics);
  auto recorder = std::make_shared<RecordingObserver>();
  auto call = provider.StreamTurn(upstream::Turn(), recorder);
  inner.observer().OnDone(
      upstream::TurnError{MakeError(absl::StatusCode::kResourceExhausted,
                                    "UPSTREAM_RATE_LIMITED", "429"),
                          "rate_limit_exceeded"});
  EXPECT_EQ(recorder->done, 1);
  ASSERT_TRUE(recorder->error.has_value());
  EXPECT_EQ(recorder->error->run_error_code, "rate_limit_exceeded");
  EXPECT_EQ(
      Value(metrics, "assistants_upstream_errors_total",
            {{"provider", "openai"}, {"reason", "UPSTREAM_RATE_LIMITED"}}),
      1);
  // No time to first token for a turn without output.
  EXPECT_EQ(Value(metrics,
                  "assistants_upstream_time_to_first_token_seconds_"
                  "count",
                  {{"provider", "openai"}}),
            0);
  EXPECT_EQ(Value(metrics, "assistants_upstream_request_duration_seconds_count",
                  {{"provider", "openai"}}),
            1);

  // An error without ErrorInfo counts under its code's name.
  call = provider.StreamTurn(upstream::Turn(), recorder);
  inner.observer().OnDone(
      upstream::TurnError{absl::InternalError("boom"), "server_error"});
  EXPECT_EQ(Value(metrics, "assistants_upstream_errors_total",
                  {{"provider", "openai"}, {"reason", "INTERNAL"}}),
            1);
}

TEST(MeteredProvidersTest, WrapsEveryBackendWithTheRegistrysContract) {
  std::vector<upstream::BackendConfig> backends(2);
  backends[0].provider.name = "openai";
  backends[1].api = upstream::WireApi::kChatCompletions;
  backends[1].provider.name = "chat";
  auto registry =
      upstream::ProviderRegistry::Create(backends, "openai", nullptr);
  ASSERT_TRUE(registry.ok()) << registry.status();
  Metrics metrics;
  MeteredProviders providers(registry->get(), &metrics);

  auto by_default = providers.Resolve("");
  auto openai = providers.Resolve("openai");
  auto chat = providers.Resolve("chat");
  ASSERT_TRUE(by_default.ok() && openai.ok() && chat.ok());
  EXPECT_EQ(*by_default, *openai);
  EXPECT_NE(*openai, *chat);
  // Decorated, not the registry's own.
  EXPECT_NE(*openai, *(*registry)->Resolve("openai"));

  auto unknown = providers.Resolve("nope");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(ErrorReason(unknown.status()), "UNKNOWN_UPSTREAM");
}

TEST(CountUpstreamRetriesTest, EachRetryHookCountsForItsBackend) {
  std::vector<upstream::BackendConfig> backends(2);
  backends[0].provider.name = "openai";
  backends[1].provider.name = "chat";
  Metrics metrics;
  CountUpstreamRetries(&metrics, &backends);
  ASSERT_TRUE(backends[0].provider.retry.on_retry);
  ASSERT_TRUE(backends[1].provider.retry.on_retry);
  backends[0].provider.retry.on_retry();
  backends[0].provider.retry.on_retry();
  backends[1].provider.retry.on_retry();
  EXPECT_EQ(Value(metrics, "assistants_upstream_retries_total",
                  {{"provider", "openai"}}),
            2);
  EXPECT_EQ(Value(metrics, "assistants_upstream_retries_total",
                  {{"provider", "chat"}}),
            1);
}

// --- MeteredToolDispatcher
// --------------------------------------------------------

struct OutcomeCase {
  const char* output;
  const char* outcome;
};

class ToolCallOutcomeTest : public ::testing::TestWithParam<OutcomeCase> {};

TEST_P(ToolCallOutcomeTest, Classifies) {
  EXPECT_EQ(ToolCallOutcome(GetParam().output), GetParam().outcome)
      << GetParam().output;
}

INSTANTIATE_TEST_SUITE_P(
    Outputs, ToolCallOutcomeTest,
    ::testing::Values(
        OutcomeCase{R"({"price": 237.5})", "ok"},
        OutcomeCase{"plain text", "ok"}, OutcomeCase{"", "ok"},
        // A worker's own output that mentions an error is still its answer.
        OutcomeCase{R"({"error":"not found in the catalogue"})", "ok"},
        OutcomeCase{R"({"error": broken json)", "ok"},
        OutcomeCase{R"({"error":"x","error_type":"no_worker","tool":"t"})",
                    "no_worker"},
        OutcomeCase{R"({"error":"x","error_type":"timeout","tool":"t"})",
                    "timeout"},
        OutcomeCase{R"({"error":"x","error_type":"unavailable","tool":"t"})",
                    "unavailable"},
        OutcomeCase{
            R"({"error":"x","error_type":"invalid_arguments","tool":"t"})",
            "invalid_arguments"},
        OutcomeCase{R"({"error":"x","error_type":"invalid_output","tool":"t"})",
                    "invalid_output"},
        OutcomeCase{R"({"error":"x","error_type":"worker_error","tool":"t"})",
                    "worker_error"},
        OutcomeCase{R"({"error":"x","error_type":"cancelled","tool":"t"})",
                    "cancelled"},
        // Unknown types do not grow the label set.
        OutcomeCase{R"({"error":"x","error_type":"surprise","tool":"t"})",
                    "error"}));

// Holds each call until the test answers it.
class HoldingDispatcher : public runs::ToolDispatcher {
 public:
  bool Handles(absl::string_view name) const override {
    return name == "get_stock_price";
  }
  void Invoke(const runs::ToolCallContext& context,
              const runs::ToolInvocation& invocation,
              std::function<void(std::string)> done) override {
    invoked.push_back(invocation.name);
    pending.push_back(std::move(done));
  }
  void CancelRun(absl::string_view run_id) override {
    cancelled.push_back(std::string(run_id));
  }
  std::vector<std::string> invoked;
  std::vector<std::function<void(std::string)>> pending;
  std::vector<std::string> cancelled;
};

TEST(MeteredToolDispatcherTest, CountsOutcomesAndDurationsPerTool) {
  Metrics metrics;
  HoldingDispatcher inner;
  MeteredToolDispatcher dispatcher(&inner, &metrics);
  EXPECT_TRUE(dispatcher.Handles("get_stock_price"));
  EXPECT_FALSE(dispatcher.Handles("calculator"));

  std::vector<std::string> outputs;
  runs::ToolInvocation call{"call_1", "get_stock_price", "{}"};
  dispatcher.Invoke({}, call, [&](std::string o) { outputs.push_back(o); });
  dispatcher.Invoke({}, call, [&](std::string o) { outputs.push_back(o); });
  ASSERT_EQ(inner.pending.size(), 2u);
  EXPECT_EQ(Value(metrics, "assistants_tool_calls_total"), -1);  // none yet

  inner.pending[0]("{\"price\": 1}");
  inner.pending[1](
      R"({"error":"slow","error_type":"timeout","tool":"get_stock_price"})");
  EXPECT_EQ(outputs.size(), 2u);
  EXPECT_EQ(outputs[0], "{\"price\": 1}");
  EXPECT_EQ(Value(metrics, "assistants_tool_calls_total",
                  {{"tool", "get_stock_price"}, {"outcome", "ok"}}),
            1);
  EXPECT_EQ(Value(metrics, "assistants_tool_calls_total",
                  {{"tool", "get_stock_price"}, {"outcome", "timeout"}}),
            1);
  EXPECT_EQ(Value(metrics, "assistants_tool_call_duration_seconds_count",
                  {{"tool", "get_stock_price"}}),
            2);

  dispatcher.CancelRun("run_1");
  EXPECT_EQ(inner.cancelled, std::vector<std::string>{"run_1"});
}

// --- The RPC interceptor, through an in-process gateway ---------------------

class RpcMetricsTest : public ::testing::Test {
 protected:
  RpcMetricsTest()
      : timers_(&clock_),
        engine_executor_(1),
        engine_(&store_,
                [](absl::string_view) -> absl::StatusOr<upstream::Provider*> {
                  return absl::UnavailableError("no upstream in this test");
                },
                &dispatcher_, &clock_, &timers_, &engine_executor_, {}) {}

  void SetUp() override {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.interceptors.push_back(
        std::make_shared<RpcMetricsInterceptorFactory>(&metrics_));
    auto server =
        GatewayServer::Start(options, &store_, &clock_, &engine_, &timers_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ =
        grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                            grpc::InsecureChannelCredentials());
  }

  double Calls(const std::string& method, const std::string& code) {
    return Value(metrics_, "assistants_rpcs_total",
                 {{"method", method}, {"code", code}});
  }

  Metrics metrics_;
  MemoryStore store_;
  FakeClock clock_;
  ManualTimers timers_;
  Executor engine_executor_;
  runs::CallerOnlyDispatcher dispatcher_;
  runs::RunEngine engine_;
  std::unique_ptr<GatewayServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(RpcMetricsTest, CountsCallsByMethodAndCode) {
  auto assistants = v1::AssistantService::NewStub(channel_);
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext context;
    v1::CreateAssistantRequest request;
    request.set_model("gpt-4o");
    v1::CreateAssistantResponse response;
    ASSERT_TRUE(assistants->CreateAssistant(&context, request, &response).ok());
  }
  {
    grpc::ClientContext context;
    v1::GetAssistantRequest request;
    request.set_assistant_id("asst_missing");
    v1::GetAssistantResponse response;
    EXPECT_EQ(
        assistants->GetAssistant(&context, request, &response).error_code(),
        grpc::StatusCode::NOT_FOUND);
  }
  {
    // A server stream counts once, under the status it ends with.
    auto runs = v1::RunService::NewStub(channel_);
    grpc::ClientContext context;
    v1::RunEventsRequest request;
    request.set_thread_id("thread_missing");
    request.set_run_id("run_missing");
    auto reader = runs->RunEvents(&context, request);
    v1::RunEventsResponse event;
    while (reader->Read(&event)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  }
  // The server records the status before it goes out; the clients above
  // have all seen theirs, so every call is counted by now.
  EXPECT_EQ(Calls("/assistants.v1.AssistantService/CreateAssistant", "OK"), 2);
  EXPECT_EQ(Calls("/assistants.v1.AssistantService/GetAssistant", "NOT_FOUND"),
            1);
  EXPECT_EQ(Calls("/assistants.v1.RunService/RunEvents", "NOT_FOUND"), 1);
  // Each call once: nothing else (no second count as CANCELLED).
  EXPECT_EQ(Value(metrics_, "assistants_rpcs_total"), 4);
  EXPECT_EQ(
      Value(metrics_, "assistants_rpc_duration_seconds_count",
            {{"method", "/assistants.v1.AssistantService/CreateAssistant"},
             {"code", "OK"}}),
      2);
}

TEST(RpcSeriesCacheTest, OneSeriesPerMethodAndCode) {
  Metrics metrics;
  RpcSeriesCache cache(&metrics);
  const RpcSeries& a = cache.Get("/s/M", 0);
  const RpcSeries& b = cache.Get("/s/M", 0);
  const RpcSeries& c = cache.Get("/s/M", 5);
  EXPECT_EQ(&a, &b);
  EXPECT_NE(a.calls, c.calls);
  // Out-of-range codes count as UNKNOWN.
  EXPECT_EQ(cache.Get("/s/M", 99).calls, cache.Get("/s/M", 2).calls);
  cache.Get("/s/M", 5).calls->Increment();
  EXPECT_EQ(Value(metrics, "assistants_rpcs_total",
                  {{"method", "/s/M"}, {"code", "NOT_FOUND"}}),
            1);
}

}  // namespace
}  // namespace assistants::observability
