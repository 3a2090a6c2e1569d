// tool_roundtrip_bench: what the gateway adds to one tool call, against a
// direct call to the same worker in the same run (the machine is shared and
// noisy, so only differences are meaningful).
//
// It starts fake-openai, assistants-gateway (SQLite, the default, and
// :memory:) and test-tool-worker (tool `echo`, no delay) registered with the
// gateway. Each sample is a run whose model calls `echo` once and then
// answers; the client reads it through RunEvents and stamps every event it
// receives. The tool round trip through the gateway is the gap between the
// last `thread.run.step.delta` carrying the call's arguments (the model's
// turn is ending) and the one carrying the worker's output: the turn's end,
// the step made durable, dispatch, the worker's RPC, the output made
// durable and published. The baseline is an InvokeTool RPC from this process
// straight to the worker, interleaved with the runs so load drifts hit both.
//
//   tool_roundtrip_bench --gateway=BIN --fake_openai=BIN --worker=BIN
//                        [--runs=200] [--quick]
//
// Exits non-zero only on a functional failure, never because of a timing.
#include <curl/curl.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "assistants/v1/tool_worker.grpc.pb.h"
#include "bench/bench_support.h"
#include "nlohmann/json.hpp"
#include "tests/support/server_process.h"

ABSL_FLAG(std::string, gateway, "", "assistants-gateway binary");
ABSL_FLAG(std::string, fake_openai, "", "fake-openai binary");
ABSL_FLAG(std::string, worker, "", "test-tool-worker binary");
ABSL_FLAG(int, runs, 200, "measured runs per store");
ABSL_FLAG(bool, quick, false, "smoke mode: 5 runs, no warm-up");

namespace {

namespace v1 = assistants::v1;
namespace ts = assistants::test_support;
using assistants::bench::Clock;
using assistants::bench::Context;
using assistants::bench::Micros;
using assistants::bench::Percentile;
using assistants::bench::ScriptFake;
using Json = nlohmann::json;

constexpr char kArguments[] = R"({"value":"hi"})";

bool Fail(const std::string& message) {
  std::fprintf(stderr, "tool_roundtrip_bench: %s\n", message.c_str());
  return false;
}

struct Sample {
  double through_gateway_us = 0;  // arguments delta -> output delta
  double run_us = 0;              // RunEvents call -> done
};

class Bench {
 public:
  Bench(std::string store, int fake_port) : store_(std::move(store)) {
    fake_port_ = fake_port;
  }

  bool Start() {
    const std::string token_file = dir_.path() + "/token";
    std::ofstream(token_file) << "bench-token\n";
    const std::string db =
        store_ == "memory" ? ":memory:" : dir_.path() + "/gateway.db";
    gateway_.set_env(
        {absl::StrCat("OPENAI_BASE_URL=http://127.0.0.1:", fake_port_, "/v1"),
         "OPENAI_API_KEY=sk-fake"});
    std::string error;
    if (!gateway_.Start(absl::GetFlag(FLAGS_gateway),
                        {"--db=" + db, "--worker_token_file=" + token_file},
                        &error)) {
      return Fail("gateway: " + error);
    }
    auto channel = gateway_.Connect();
    if (channel == nullptr) return Fail("gateway does not accept calls");
    runs_ = v1::RunService::NewStub(channel);
    registry_ = v1::ToolRegistryService::NewStub(channel);
    if (!worker_.Start(
            absl::GetFlag(FLAGS_worker),
            {"--tools=echo", "--idempotent", "--gateway=" + gateway_.address(),
             "--token_file=" + token_file, "--worker_id=bench-1"},
            &error)) {
      return Fail("worker: " + error);
    }
    worker_stub_ = v1::ToolWorkerService::NewStub(grpc::CreateChannel(
        worker_.address(), grpc::InsecureChannelCredentials()));
    // Registered once the gateway lists it.
    for (int i = 0; i < 100; ++i) {
      v1::ListToolsResponse tools;
      if (registry_->ListTools(Context().get(), v1::ListToolsRequest(), &tools)
              .ok() &&
          tools.tools_size() == 1) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    auto assistants = v1::AssistantService::NewStub(channel);
    v1::CreateAssistantRequest create;
    create.set_model("gpt-4o");
    // Named only: the gateway fills in the worker's schema.
    create.add_tools()->mutable_function()->mutable_function()->set_name(
        "echo");
    v1::CreateAssistantResponse created;
    grpc::Status status =
        assistants->CreateAssistant(Context().get(), create, &created);
    if (!status.ok()) return Fail("CreateAssistant: " + status.error_message());
    assistant_id_ = created.assistant().id();
    return true;
  }

  // One run: the model calls echo, then answers.
  bool Run(Sample* sample) {
    if (!ScriptFake(fake_port_,
                    Json::array({{{"tool_calls", Json::array({{
                                                     {"name", "echo"},
                                                     {"arguments", kArguments},
                                                 }})}},
                                 {{"text", "ok"}}}))) {
      return Fail("cannot script fake-openai");
    }
    v1::RunEventsRequest request;
    auto* start = request.mutable_create_thread_and_run();
    start->mutable_options()->set_assistant_id(assistant_id_);
    v1::MessageInput* message = start->mutable_thread()->add_messages();
    message->set_role(v1::MESSAGE_ROLE_USER);
    message->set_text("echo hi");
    auto context = Context();
    const Clock::time_point begin = Clock::now();
    auto reader = runs_->RunEvents(context.get(), request);
    v1::RunEventsResponse response;
    Clock::time_point arguments_at{}, output_at{};
    bool done = false;
    v1::Run last;
    while (reader->Read(&response)) {
      const Clock::time_point now = Clock::now();
      const v1::RunEvent& event = response.event();
      if (event.has_run()) last = event.run();
      if (event.has_step_delta()) {
        for (const auto& call : event.step_delta().delta().tool_calls()) {
          if (!call.function().arguments().empty()) arguments_at = now;
          if (call.function().has_output()) output_at = now;
        }
      }
      if (event.event() == "done") {
        done = true;
        sample->run_us = Micros(now - begin);
      }
    }
    grpc::Status status = reader->Finish();
    if (!done || !status.ok()) {
      return Fail("run did not reach done: " + status.error_message());
    }
    if (last.status() != v1::RUN_STATUS_COMPLETED) {
      return Fail("run ended " + v1::RunStatus_Name(last.status()) + ": " +
                  last.last_error().message());
    }
    if (arguments_at == Clock::time_point{} ||
        output_at == Clock::time_point{}) {
      return Fail("the run showed no worker output");
    }
    sample->through_gateway_us = Micros(output_at - arguments_at);
    return true;
  }

  // One InvokeTool straight to the worker (a fresh key: no cached answer).
  bool Direct(double* us) {
    v1::InvokeToolRequest request;
    request.set_idempotency_key(absl::StrCat("direct:", ++direct_calls_));
    request.set_tool_name("echo");
    request.set_arguments(kArguments);
    v1::InvokeToolResponse response;
    const Clock::time_point begin = Clock::now();
    grpc::Status status =
        worker_stub_->InvokeTool(Context().get(), request, &response);
    *us = Micros(Clock::now() - begin);
    if (!status.ok()) return Fail("InvokeTool: " + status.error_message());
    return true;
  }

  const std::string& store() const { return store_; }

 private:
  std::string store_;
  int fake_port_ = 0;
  ts::TempDir dir_;
  ts::ServerProcess gateway_;
  ts::ServerProcess worker_;
  std::unique_ptr<v1::RunService::Stub> runs_;
  std::unique_ptr<v1::ToolRegistryService::Stub> registry_;
  std::unique_ptr<v1::ToolWorkerService::Stub> worker_stub_;
  std::string assistant_id_;
  int direct_calls_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const bool quick = absl::GetFlag(FLAGS_quick);
  const int runs = quick ? 5 : absl::GetFlag(FLAGS_runs);
  const int warmup = quick ? 0 : 20;

  ts::ServerProcess fake;
  std::string error;
  if (!fake.Start(absl::GetFlag(FLAGS_fake_openai),
                  {"--max_recorded_requests=0"}, &error)) {
    Fail("fake-openai: " + error);
    return 1;
  }
  std::printf(
      "## Tool round trip (%d runs per store; one `echo` call, no work in "
      "the worker)\n\n",
      runs);
  std::printf(
      "| store | direct InvokeTool p50 / p99 | through the gateway p50 / p99 "
      "| added p50 / p99 | whole run p50 |\n|---|---|---|---|---|\n");
  for (const std::string store : {"sqlite", "memory"}) {
    Bench bench(store, fake.port());
    if (!bench.Start()) return 1;
    std::vector<double> direct, through, whole;
    for (int i = 0; i < warmup + runs; ++i) {
      Sample sample;
      double direct_us = 0;
      if (!bench.Direct(&direct_us) || !bench.Run(&sample)) return 1;
      if (i < warmup) continue;
      direct.push_back(direct_us);
      through.push_back(sample.through_gateway_us);
      whole.push_back(sample.run_us);
    }
    std::printf(
        "| %s | %.0f / %.0f µs | %.0f / %.0f µs | **%.0f / %.0f µs** | %.1f ms "
        "|\n",
        store.c_str(), Percentile(direct, 0.5), Percentile(direct, 0.99),
        Percentile(through, 0.5), Percentile(through, 0.99),
        Percentile(through, 0.5) - Percentile(direct, 0.5),
        Percentile(through, 0.99) - Percentile(direct, 0.99),
        Percentile(whole, 0.5) / 1000);
  }
  std::printf(
      "\nGoal (ENGINEERING.md §10): one tool round trip adds <= 1 ms p50.\n");
  return 0;
}
