// The worker binaries through their public surface (flags, the "listening
// on" line, SIGTERM, gRPC): stock-price-worker and test-tool-worker register
// with a fake registry, answer InvokeTool and unregister when stopped.
#include <sys/wait.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/support/server_process.h"
#include "tests/tool_workers/sdk/fake_gateway.h"

namespace assistants::worker_sdk {
namespace {

namespace v1 = ::assistants::v1;
using fakes::ErrorInfoOf;
using fakes::FakeRegistry;
using fakes::Invocation;
using fakes::Invoke;
using fakes::kToken;
using fakes::StructToJson;
using nlohmann::json;
using test_support::ServerProcess;
using test_support::TempDir;

std::string Binary(const std::string& path) {
  return std::string(ASSISTANTS_BINARY_DIR) + "/" + path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

// Lines of a test-tool-worker log, split into words.
std::vector<std::vector<std::string>> LogLines(const std::string& path) {
  std::vector<std::vector<std::string>> lines;
  for (absl::string_view line :
       absl::StrSplit(ReadFile(path), '\n', absl::SkipEmpty())) {
    lines.push_back(absl::StrSplit(line, ' '));
  }
  return lines;
}

class WorkerBinaryTest : public ::testing::Test {
 protected:
  // Starts `binary` registered with the fake, its token in a file (with the
  // whitespace an editor leaves).
  void StartWorker(ServerProcess* worker, const std::string& binary,
                   std::vector<std::string> args) {
    const std::string token_file = dir_.path() + "/token";
    std::ofstream(token_file) << "  " << kToken << "\n";
    args.push_back("--gateway=" + registry_.address());
    args.push_back("--token_file=" + token_file);
    std::string error;
    ASSERT_TRUE(worker->Start(binary, args, &error)) << error;
  }

  TempDir dir_;
  FakeRegistry registry_;
};

TEST_F(WorkerBinaryTest, StockPriceWorkerServesTheSeedTool) {
  ServerProcess worker;
  StartWorker(&worker, Binary("tool_workers/examples/stock-price-worker"),
              {"--worker_id=stock-1"});

  // Registered before it announced itself.
  const auto registrations = registry_.registrations();
  ASSERT_EQ(registrations.size(), 1u);
  const v1::RegisterWorkerRequest& request = registrations[0];
  EXPECT_EQ(request.worker_id(), "stock-1");
  EXPECT_EQ(request.endpoint(), worker.address());
  ASSERT_EQ(request.tools_size(), 1);
  const v1::WorkerTool& tool = request.tools(0);
  EXPECT_EQ(tool.function().name(), "get_stock_price");
  EXPECT_EQ(tool.function().description(),
            "Get the current stock price for a given ticker symbol.");
  EXPECT_EQ(StructToJson(tool.function().parameters()), json::parse(R"({
    "type": "object",
    "properties": {
      "ticker": {"type": "string", "description": "Stock ticker symbol, e.g. AAPL"}
    },
    "required": ["ticker"]})"));
  EXPECT_TRUE(tool.idempotent());

  const Invocation apple =
      Invoke(worker.port(), "get_stock_price", R"({"ticker": "AAPL"})");
  ASSERT_TRUE(apple.status.ok()) << apple.status.error_message();
  EXPECT_EQ(apple.output, R"({"price": 237.5, "currency": "USD"})");
  EXPECT_EQ(
      Invoke(worker.port(), "get_stock_price", R"({"ticker": "GOOGL"})").output,
      R"({"price": 191.3, "currency": "USD"})");
  EXPECT_EQ(
      Invoke(worker.port(), "get_stock_price", R"({"ticker": "XYZ"})").output,
      R"({"error": "Unknown ticker: XYZ"})");
  EXPECT_EQ(Invoke(worker.port(), "get_stock_price", "{}").status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  EXPECT_EQ(worker.Stop(), 0) << worker.captured_stderr();
  ASSERT_EQ(registry_.unregistrations().size(), 1u);
  EXPECT_EQ(registry_.unregistrations()[0].worker_id(), "stock-1");
}

TEST_F(WorkerBinaryTest, TestToolWorkerRegistersAndLogsEachRunOnce) {
  const std::string log = dir_.path() + "/calls.log";
  ServerProcess worker;
  StartWorker(
      &worker, Binary("tests/support/test-tool-worker"),
      {"--worker_id=tw-1", "--tools=alpha,beta", "--idempotent",
       "--timeout_ms=1234", "--max_concurrency=2", "--log_file=" + log});

  const auto registrations = registry_.registrations();
  ASSERT_EQ(registrations.size(), 1u);
  ASSERT_EQ(registrations[0].tools_size(), 2);
  for (const v1::WorkerTool& tool : registrations[0].tools()) {
    EXPECT_TRUE(tool.idempotent());
    EXPECT_EQ(tool.timeout_ms(), 1234);
    EXPECT_EQ(tool.max_concurrency(), 2);
  }
  EXPECT_EQ(registrations[0].tools(1).function().name(), "beta");

  const Invocation first =
      Invoke(worker.port(), "beta", R"({"value": "x", "sleep_ms": 1})", "r:c1");
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  EXPECT_EQ(json::parse(first.output), json({{"tool", "beta"},
                                             {"value", "x"},
                                             {"worker", "tw-1"},
                                             {"sleep_ms", 1}}));
  // The same call again is answered from the first run.
  EXPECT_EQ(Invoke(worker.port(), "beta", R"({"value": "x"})", "r:c1").output,
            first.output);
  EXPECT_EQ(worker.Stop(), 0) << worker.captured_stderr();

  const auto lines = LogLines(log);
  ASSERT_EQ(lines.size(), 2u) << ReadFile(log);
  EXPECT_EQ(lines[0][0], "start");
  EXPECT_EQ(lines[1][0], "end");
  for (const auto& line : lines) {
    ASSERT_EQ(line.size(), 5u);
    EXPECT_EQ(line[1], "beta");
    EXPECT_EQ(line[2], "r:c1");
    EXPECT_EQ(line[3], "tw-1");
    EXPECT_GT(std::stoll(line[4]), 0);
  }
}

TEST_F(WorkerBinaryTest, TestToolWorkerDiesMidCall) {
  const std::string log = dir_.path() + "/calls.log";
  ServerProcess worker;
  StartWorker(&worker, Binary("tests/support/test-tool-worker"),
              {"--worker_id=tw-2", "--exit_on_call", "--log_file=" + log});
  const Invocation result = Invoke(worker.port(), "echo", "{}", "r:c1");
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  const int status = worker.Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1)
      << test_support::DescribeWaitStatus(status);
  const auto lines = LogLines(log);
  ASSERT_EQ(lines.size(), 1u) << ReadFile(log);
  EXPECT_EQ(lines[0][0], "start");
}

TEST_F(WorkerBinaryTest, TestToolWorkerRefusesAsNotStarted) {
  const std::string log = dir_.path() + "/calls.log";
  ServerProcess worker;
  StartWorker(&worker, Binary("tests/support/test-tool-worker"),
              {"--fail=not_started", "--log_file=" + log});
  const Invocation result = Invoke(worker.port(), "echo", "{}", "r:c1");
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  const auto info = ErrorInfoOf(result.status);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "CALL_NOT_STARTED");
  EXPECT_EQ(worker.Stop(), 0);
  EXPECT_EQ(ReadFile(log), "");
}

TEST_F(WorkerBinaryTest, TestToolWorkerHugeOutput) {
  ServerProcess worker;
  StartWorker(&worker, Binary("tests/support/test-tool-worker"),
              {"--fail=huge_output"});
  const Invocation result = Invoke(worker.port(), "echo", "{}");
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.output.size(), 1u << 20);
  EXPECT_TRUE(json::accept(result.output));
  EXPECT_EQ(worker.Stop(), 0);
}

}  // namespace
}  // namespace assistants::worker_sdk
