// The tool-worker registry shared by two gateway replicas on one PostgreSQL
// database, end to end with real processes: fake-openai, two
// assistants-gateway processes on one fresh schema (PgTestDb), and the C++
// stock-price-worker registered with gateway A only. Gateway B learns the
// worker from the database and dispatches the get_stock_price call of a run
// created on B to it; when the worker shuts down (unregistering through A),
// B lets it go. Without $ASSISTANTS_TEST_PG_URL the tests skip.
#include <curl/curl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "assistants/v1/tool_worker.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/e2e_helpers.h"
#include "tests/support/pg_test_db.h"
#include "tests/support/server_process.h"

namespace assistants::test_support {
namespace {

namespace v1 = ::assistants::v1;
using Json = nlohmann::json;
using std::chrono::seconds;

constexpr char kToken[] = "e2e-shared-registry-token";
// stock-price-worker's answer for AAPL.
constexpr char kStockOutput[] = R"({"price": 237.5, "currency": "USD"})";

std::string StockWorkerBinary() {
  return std::string(ASSISTANTS_BINARY_DIR) +
         "/tool_workers/examples/stock-price-worker";
}

// One gateway process and its clients.
struct Gateway {
  ServerProcess process;
  std::unique_ptr<v1::AssistantService::Stub> assistants;
  std::unique_ptr<v1::RunService::Stub> runs;
  std::unique_ptr<v1::ToolRegistryService::Stub> registry;

  // Whether this gateway lists `worker_id` (SERVING when `serving`).
  bool Lists(const std::string& worker_id) {
    v1::ListWorkersResponse response;
    grpc::Status status = registry->ListWorkers(
        Context().get(), v1::ListWorkersRequest(), &response);
    EXPECT_TRUE(status.ok()) << Describe(status);
    for (const v1::Worker& worker : response.workers()) {
      if (worker.worker_id() == worker_id &&
          worker.health() == v1::WORKER_HEALTH_SERVING) {
        return true;
      }
    }
    return false;
  }
};

class SharedRegistryE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { curl_global_init(CURL_GLOBAL_ALL); }

  void SetUp() override {
    if (!PgTestDb::Available()) GTEST_SKIP() << PgTestDb::SkipMessage();
    db_ = std::make_unique<PgTestDb>();
    ASSERT_TRUE(db_->status().ok()) << db_->status();
    token_file_ = dir_.path() + "/registration-token";
    {
      std::ofstream out(token_file_);
      out << kToken << "\n";
    }
    std::string error;
    ASSERT_TRUE(fake_.Start(FakeOpenAiBinary(), {"--seed=7"}, &error)) << error;
  }

  void TearDown() override {
    if (worker_ != nullptr) worker_->Kill();
    if (HasFailure()) {
      std::cerr << "--- gateway A stderr ---\n"
                << a_.process.captured_stderr() << "--- gateway B stderr ---\n"
                << b_.process.captured_stderr();
      if (worker_ != nullptr) {
        std::cerr << "--- stock-price-worker stderr ---\n"
                  << worker_->captured_stderr();
      }
    }
  }

  // Starts `gateway` on the test's database, in front of fake-openai.
  void Start(Gateway& gateway) {
    gateway.process.set_env(
        {"OPENAI_BASE_URL=http://127.0.0.1:" + std::to_string(fake_.port()) +
             "/v1",
         "OPENAI_API_KEY=sk-fake",
         "OPENAI_API_KEY_FILE=", "OPENAI_ORGANIZATION=", "OPENAI_PROJECT=",
         "CHAT_COMPLETIONS_BASE_URL=", "ASSISTANTS_DEFAULT_UPSTREAM=openai",
         "ASSISTANTS_WORKER_TOKEN=", "ASSISTANTS_WORKERS_CONFIG=",
         "ASSISTANTS_STORE_POSTGRES_URL=" + db_->url()});
    std::string error;
    ASSERT_TRUE(gateway.process.Start(
        GatewayBinary(),
        {"--shutdown_grace_ms=500", "--worker_token_file=" + token_file_},
        &error))
        << error;
    std::shared_ptr<grpc::Channel> channel = gateway.process.Connect();
    ASSERT_NE(channel, nullptr) << "gateway never accepted connections";
    gateway.assistants = v1::AssistantService::NewStub(channel);
    gateway.runs = v1::RunService::NewStub(channel);
    gateway.registry = v1::ToolRegistryService::NewStub(channel);
  }

  // The stock-price-worker, registered with `gateway` only.
  void StartWorker(Gateway& gateway, const std::string& worker_id) {
    worker_ = std::make_unique<ServerProcess>();
    std::string error;
    ASSERT_TRUE(worker_->Start(
        StockWorkerBinary(),
        {"--gateway=" + gateway.process.address(),
         "--token_file=" + token_file_, "--worker_id=" + worker_id},
        &error, seconds(60)))
        << error;
  }

  TempDir dir_;
  std::unique_ptr<PgTestDb> db_;
  std::string token_file_;
  ServerProcess fake_;
  Gateway a_;
  Gateway b_;
  std::unique_ptr<ServerProcess> worker_;
};

TEST_F(SharedRegistryE2eTest, RunOnBCallsTheWorkerRegisteredWithA) {
  Start(a_);
  if (HasFatalFailure()) return;
  Start(b_);
  if (HasFatalFailure()) return;
  StartWorker(a_, "stock-cpp");
  if (HasFatalFailure()) return;
  ASSERT_TRUE(a_.Lists("stock-cpp"));
  // B never heard from the worker: it learns it from the database.
  ASSERT_TRUE(WaitUntil([&] { return b_.Lists("stock-cpp"); }, seconds(30)));

  // An assistant naming the worker's tool, a run on B calling it.
  v1::Tool tool;
  tool.mutable_function()->mutable_function()->set_name("get_stock_price");
  const std::string assistant_id = CreateAssistant(b_.assistants.get(), {tool});
  ScriptFake(
      fake_.port(),
      Json::array(
          {{{"tool_calls",
             Json::array({{{"name", "get_stock_price"},
                           {"arguments", R"({"ticker": "AAPL"})"}}})}}}));
  v1::RunEventsRequest request;
  *request.mutable_create_thread_and_run() =
      ThreadAndRun(assistant_id, "What's the stock price of AAPL?");
  EventStream stream(b_.runs.get(), request, seconds(60));
  std::vector<v1::RunEvent> events;
  grpc::Status status = stream.ReadAll(&events);
  ASSERT_TRUE(status.ok()) << Describe(status);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back().event(), "done");
  for (const v1::RunEvent& event : events) {
    EXPECT_NE(event.event(), "thread.run.requires_action")
        << "the call went to the caller, not the worker";
  }
  v1::Run run;
  for (const v1::RunEvent& event : events) {
    if (event.has_run()) run = event.run();
  }
  ASSERT_FALSE(run.id().empty());
  const v1::Run final_run = GetRun(b_.runs.get(), run);
  EXPECT_EQ(final_run.status(), v1::RUN_STATUS_COMPLETED)
      << final_run.last_error().DebugString();
  std::vector<std::string> outputs;
  for (const v1::RunStep& step : ListSteps(b_.runs.get(), run)) {
    for (const v1::ToolCall& call :
         step.step_details().tool_calls().tool_calls()) {
      if (call.has_function()) outputs.push_back(call.function().output());
    }
  }
  ASSERT_EQ(outputs.size(), 1u);
  EXPECT_EQ(outputs[0], kStockOutput);  // from the worker, via gateway B

  // The worker shuts down (unregistering with A): B lets it go too.
  EXPECT_EQ(worker_->Stop(seconds(15)), 0);
  EXPECT_TRUE(WaitUntil([&] { return !b_.Lists("stock-cpp"); }, seconds(30)));
}

}  // namespace
}  // namespace assistants::test_support
