// End-to-end test of the Prometheus metrics: the real assistants-gateway
// (with --metrics_listen=127.0.0.1:0) in front of the real fake-openai, a
// streamed seed run whose tool calls the caller answers, and a scrape of
// GET /metrics over HTTP that must show what happened: RPCs by method and
// code, the completed run, the upstream turns with their tokens and retry,
// and no stream or run left open.
#include <curl/curl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "assistants/v1/thread.grpc.pb.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/e2e_helpers.h"
#include "tests/support/prometheus_text.h"
#include "tests/support/server_process.h"

namespace assistants::test_support {
namespace {

namespace v1 = ::assistants::v1;
using Json = nlohmann::json;
using std::chrono::seconds;

constexpr char kSeedQuestion[] =
    "What's the stock price of AAPL, and calculate what 1000 shares would "
    "be worth?";
constexpr char kMetricsMarker[] = "metrics listening on 127.0.0.1:";

v1::Tool FunctionTool(const std::string& name, const std::string& parameters) {
  v1::Tool tool;
  v1::FunctionDefinition* function =
      tool.mutable_function()->mutable_function();
  function->set_name(name);
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(
                  parameters, function->mutable_parameters())
                  .ok());
  return tool;
}

// The seed's tools, answered by the caller (no worker serves them).
std::vector<v1::Tool> SeedTools() {
  return {FunctionTool("get_stock_price",
                       R"({"type":"object","properties":{"ticker":{
                           "type":"string"}},"required":["ticker"]})"),
          FunctionTool("calculator",
                       R"({"type":"object","properties":{"expression":{
                           "type":"string"}},"required":["expression"]})")};
}

size_t AppendBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

class MetricsE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { curl_global_init(CURL_GLOBAL_ALL); }

  void SetUp() override {
    std::string error;
    ASSERT_TRUE(fake_.Start(FakeOpenAiBinary(), {"--seed=7"}, &error)) << error;
  }

  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "--- gateway stderr ---\n"
                << gateway_.captured_stderr() << "--- fake-openai stderr ---\n"
                << fake_.captured_stderr();
    }
  }

  std::vector<std::string> GatewayEnv() const {
    return {"OPENAI_BASE_URL=http://127.0.0.1:" + std::to_string(fake_.port()) +
                "/v1",
            "OPENAI_API_KEY=sk-fake",
            "OPENAI_API_KEY_FILE=",
            "OPENAI_ORGANIZATION=",
            "OPENAI_PROJECT=",
            "CHAT_COMPLETIONS_BASE_URL=",
            "ASSISTANTS_DEFAULT_UPSTREAM=openai",
            "ASSISTANTS_UPSTREAM_MAX_ATTEMPTS=",
            "ASSISTANTS_METRICS_LISTEN="};
  }

  // Starts the gateway with `args`; its channel (null on failure).
  std::shared_ptr<grpc::Channel> StartGateway(
      const std::vector<std::string>& args) {
    gateway_.set_env(GatewayEnv());
    std::vector<std::string> all = {"--db=:memory:", "--shutdown_grace_ms=500"};
    all.insert(all.end(), args.begin(), args.end());
    std::string error;
    EXPECT_TRUE(gateway_.Start(GatewayBinary(), all, &error)) << error;
    if (!gateway_.running()) return nullptr;
    return gateway_.Connect();
  }

  // The metrics port the gateway announced on stderr (0 if it did not).
  int MetricsPort() {
    int port = 0;
    WaitUntil(
        [&] {
          const std::string text = gateway_.captured_stderr();
          const size_t at = text.find(kMetricsMarker);
          if (at == std::string::npos) return false;
          const size_t end = text.find('\n', at);
          if (end == std::string::npos) return false;
          port =
              std::atoi(text.substr(at + sizeof(kMetricsMarker) - 1).c_str());
          return true;
        },
        seconds(10));
    return port;
  }

  // GET /metrics; empty when the scrape failed.
  std::string Scrape(int port) {
    CURL* curl = curl_easy_init();
    std::string body;
    const std::string url =
        "http://127.0.0.1:" + std::to_string(port) + "/metrics";
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &AppendBody);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
    const CURLcode code = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);
    EXPECT_EQ(code, CURLE_OK);
    EXPECT_EQ(status, 200);
    return code == CURLE_OK && status == 200 ? body : "";
  }

  ServerProcess fake_;
  ServerProcess gateway_;
};

TEST_F(MetricsE2eTest, ScrapeAfterAStreamedRunShowsWhatHappened) {
  std::shared_ptr<grpc::Channel> channel =
      StartGateway({"--metrics_listen=127.0.0.1:0"});
  ASSERT_NE(channel, nullptr);
  const int metrics_port = MetricsPort();
  ASSERT_GT(metrics_port, 0) << gateway_.captured_stderr();
  EXPECT_NE(metrics_port, gateway_.port());
  auto assistants = v1::AssistantService::NewStub(channel);
  auto threads = v1::ThreadService::NewStub(channel);
  auto runs = v1::RunService::NewStub(channel);

  const std::string assistant_id =
      CreateAssistant(assistants.get(), SeedTools());
  v1::CreateThreadRequest thread_request;
  *thread_request.add_messages() = UserMessage(kSeedQuestion);
  v1::CreateThreadResponse thread;
  ASSERT_TRUE(
      threads->CreateThread(Context().get(), thread_request, &thread).ok());

  // The first model request gets a 429 the HTTP client retries.
  ScriptFake(fake_.port(),
             Json::array({{{"status", 429}, {"retry_after", 0.05}}}));

  v1::CreateRunRequest create;
  create.set_thread_id(thread.thread().id());
  create.mutable_options()->set_assistant_id(assistant_id);
  v1::CreateRunResponse created;
  grpc::Status status = runs->CreateRun(Context().get(), create, &created);
  ASSERT_TRUE(status.ok()) << Describe(status);

  // Stream it, answering each requires_action while the stream is open.
  int answered = 0;
  {
    EventStream stream(runs.get(), Attach(created.run(), 0));
    v1::RunEvent event;
    while (stream.Next(&event)) {
      if (event.event() != "thread.run.requires_action") continue;
      v1::SubmitToolOutputsRequest submit;
      submit.set_thread_id(event.run().thread_id());
      submit.set_run_id(event.run().id());
      for (const v1::RequiredToolCall& call :
           event.run().required_action().submit_tool_outputs().tool_calls()) {
        v1::ToolOutput* output = submit.add_tool_outputs();
        output->set_tool_call_id(call.id());
        output->set_output(call.function().name() == "calculator"
                               ? R"({"result": 237500})"
                               : R"({"price": 237.5})");
      }
      v1::SubmitToolOutputsResponse submitted;
      grpc::Status s =
          runs->SubmitToolOutputs(Context().get(), submit, &submitted);
      EXPECT_TRUE(s.ok()) << Describe(s);
      ++answered;
    }
    status = stream.Finish();
    ASSERT_TRUE(status.ok()) << Describe(status);
  }
  ASSERT_EQ(answered, 2);
  const v1::Run final_run = GetRun(runs.get(), created.run());
  ASSERT_EQ(final_run.status(), v1::RUN_STATUS_COMPLETED);
  ASSERT_GT(final_run.usage().prompt_tokens(), 0);

  // A caller's mistake, counted under its code.
  v1::GetRunRequest missing;
  missing.set_thread_id(thread.thread().id());
  missing.set_run_id("run_missing");
  v1::GetRunResponse ignored;
  EXPECT_EQ(runs->GetRun(Context().get(), missing, &ignored).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // The stream and the run are released just after their last message:
  // poll (bounded) until the gauges say so.
  std::string page;
  const bool settled = WaitUntil(
      [&] {
        page = Scrape(metrics_port);
        return SeriesValue(page, "assistants_open_streams") == 0.0 &&
               SeriesValue(page, "assistants_active_runs") == 0.0;
      },
      seconds(10));
  EXPECT_TRUE(settled) << page;

  auto rpcs = [&](const std::string& method, const std::string& code) {
    return SeriesValue(page, "assistants_rpcs_total",
                       {{"method", "/assistants.v1." + method}, {"code", code}})
        .value_or(0);
  };
  EXPECT_EQ(rpcs("AssistantService/CreateAssistant", "OK"), 1);
  EXPECT_EQ(rpcs("ThreadService/CreateThread", "OK"), 1);
  EXPECT_EQ(rpcs("RunService/CreateRun", "OK"), 1);
  EXPECT_EQ(rpcs("RunService/RunEvents", "OK"), 1);
  EXPECT_EQ(rpcs("RunService/SubmitToolOutputs", "OK"), 2);
  EXPECT_EQ(rpcs("RunService/GetRun", "NOT_FOUND"), 1);
  EXPECT_EQ(SeriesValue(page, "assistants_rpc_duration_seconds_count",
                        {{"method", "/assistants.v1.RunService/CreateRun"},
                         {"code", "OK"}}),
            1);

  EXPECT_EQ(
      SeriesValue(page, "assistants_runs_total", {{"status", "completed"}}), 1);
  EXPECT_EQ(SeriesValue(page, "assistants_run_duration_seconds_count",
                        {{"status", "completed"}}),
            1);
  EXPECT_FALSE(
      SeriesValue(page, "assistants_runs_total", {{"status", "failed"}}));

  // Three model turns (two tool rounds, then the answer), each with usage.
  const std::map<std::string, std::string> openai = {{"provider", "openai"}};
  EXPECT_EQ(
      SeriesValue(page, "assistants_upstream_request_duration_seconds_count",
                  openai),
      3);
  EXPECT_EQ(
      SeriesValue(page, "assistants_upstream_time_to_first_token_seconds_count",
                  openai),
      3);
  EXPECT_EQ(SeriesValue(page, "assistants_upstream_tokens_total",
                        {{"provider", "openai"}, {"kind", "input"}}),
            final_run.usage().prompt_tokens());
  EXPECT_EQ(SeriesValue(page, "assistants_upstream_tokens_total",
                        {{"provider", "openai"}, {"kind", "output"}}),
            final_run.usage().completion_tokens());
  EXPECT_EQ(SeriesValue(page, "assistants_upstream_retries_total", openai), 1);
  EXPECT_FALSE(SeriesValue(page, "assistants_upstream_errors_total"));

  // Queue depths are exposed (their values depend on timing).
  EXPECT_TRUE(SeriesValue(page, "assistants_executor_queue_depth",
                          {{"executor", "blocking"}}));
  EXPECT_TRUE(SeriesValue(page, "assistants_executor_queue_depth",
                          {{"executor", "engine"}}));
  EXPECT_TRUE(SeriesValue(page, "assistants_commit_queue_depth"));
  EXPECT_TRUE(SeriesValue(page, "assistants_tool_calls_waiting"));

  EXPECT_EQ(gateway_.Stop(), 0);
}

TEST_F(MetricsE2eTest, OffByDefault) {
  ASSERT_NE(StartGateway({}), nullptr);
  EXPECT_EQ(gateway_.captured_stderr().find("metrics listening on"),
            std::string::npos);
  EXPECT_EQ(gateway_.Stop(), 0);
}

TEST_F(MetricsE2eTest, UnusableMetricsAddressStopsTheGateway) {
  // fake-openai holds this port already.
  std::vector<std::string> argv = {"/usr/bin/env"};
  for (const std::string& entry : GatewayEnv()) argv.push_back(entry);
  argv.insert(argv.end(),
              {GatewayBinary(), "--listen=127.0.0.1:0", "--db=:memory:",
               "--metrics_listen=127.0.0.1:" + std::to_string(fake_.port())});
  const CommandResult result = RunCommand(argv, seconds(30));
  EXPECT_EQ(result.exit_code, 1) << result.stderr_text;
  EXPECT_NE(result.stderr_text.find("cannot serve metrics on"),
            std::string::npos)
      << result.stderr_text;
}

}  // namespace
}  // namespace assistants::test_support
