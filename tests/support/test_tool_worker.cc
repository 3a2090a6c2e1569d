// test-tool-worker: a configurable tool worker for end-to-end tests of the
// gateway's dispatcher. It serves the --tools it is told to, can be slow,
// fail in each way the dispatcher must handle, or die mid-call, and logs
// every handler start and end to --log_file so a test can prove which
// replica ran a call and that nothing ran twice.
//
// Log lines (one write each, fsync'd at once, so they survive a kill):
//   start <tool> <idempotency_key or -> <worker_id> <unix_ms>
//   end <tool> <idempotency_key or -> <worker_id> <unix_ms>
// Output of a call: {"tool": name, "value": arguments.value, "worker":
// worker_id, "sleep_ms": n}; n is arguments.sleep_ms when given, else
// --delay_ms. Sleeping ends early when the gateway cancels the call.
// --fail=not_started refuses every call as not started (UNAVAILABLE with
// CALL_NOT_STARTED) without logging it; the other --fail modes log the call
// and fail after sleeping.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tool_workers/sdk/tool_worker.h"

ABSL_FLAG(std::string, tools, "echo", "comma-separated names of the tools");
ABSL_FLAG(bool, idempotent, false, "register the tools as idempotent");
ABSL_FLAG(int, timeout_ms, 0, "registered timeout_ms of each tool");
ABSL_FLAG(int, max_concurrency, 0, "registered max_concurrency of each tool");
ABSL_FLAG(int, delay_ms, 0,
          "how long each call sleeps unless its arguments give sleep_ms");
ABSL_FLAG(std::string, log_file, "", "file to append start/end lines to");
ABSL_FLAG(std::string, fail, "none",
          "none | invalid_argument | unavailable | not_started (UNAVAILABLE "
          "with CALL_NOT_STARTED) | internal | huge_output (a 1 MiB output)");
ABSL_FLAG(bool, exit_on_call, false,
          "_exit(1) in the first call, right after logging its start");

namespace {

namespace sdk = assistants::worker_sdk;
using nlohmann::json;

constexpr size_t kHugeOutputBytes = 1 << 20;

int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class CallLog {
 public:
  explicit CallLog(const std::string& path)
      : fd_(path.empty()
                ? -1
                : open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
                       0644)) {}
  bool ok(const std::string& path) const { return path.empty() || fd_ >= 0; }

  void Write(absl::string_view event, const std::string& tool,
             const std::string& key, const std::string& worker_id) const {
    if (fd_ < 0) return;
    const std::string line =
        absl::StrCat(event, " ", tool, " ", key.empty() ? "-" : key, " ",
                     worker_id, " ", UnixMs(), "\n");
    // One append per line keeps lines whole when replicas share the file.
    if (write(fd_, line.data(), line.size()) < 0) std::perror("write log");
    fsync(fd_);
  }

 private:
  int fd_;
};

// Sleeps `ms`, waking early when the call is cancelled.
void Sleep(int ms, const sdk::CallContext& context) {
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < until && !context.cancelled()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

absl::StatusOr<json> Fail(const std::string& mode, json output) {
  if (mode == "invalid_argument") {
    return absl::InvalidArgumentError("test-tool-worker: --fail=" + mode);
  }
  if (mode == "unavailable") {
    return absl::UnavailableError("test-tool-worker: --fail=" + mode);
  }
  if (mode == "internal") {
    return absl::InternalError("test-tool-worker: --fail=" + mode);
  }
  if (mode == "huge_output") {
    const std::string head = R"({"padding":")";
    const std::string tail = R"("})";
    return json(head +
                std::string(kHugeOutputBytes - head.size() - tail.size(), 'x') +
                tail);
  }
  return output;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "A configurable tool worker for tests.\nUsage: test-tool-worker "
      "--gateway=HOST:PORT --tools=a,b [--delay_ms=N] [--fail=MODE] ...");
  absl::ParseCommandLine(argc, argv);
  const std::string fail = absl::GetFlag(FLAGS_fail);
  if (fail != "none" && fail != "invalid_argument" && fail != "unavailable" &&
      fail != "not_started" && fail != "internal" && fail != "huge_output") {
    std::fprintf(stderr, "test-tool-worker: unknown --fail=%s\n", fail.c_str());
    return 1;
  }
  absl::StatusOr<sdk::WorkerOptions> options = sdk::WorkerOptionsFromFlags();
  if (!options.ok()) {
    std::fprintf(stderr, "test-tool-worker: %s\n",
                 std::string(options.status().message()).c_str());
    return 1;
  }
  const std::string log_path = absl::GetFlag(FLAGS_log_file);
  const CallLog log(log_path);
  if (!log.ok(log_path)) {
    std::perror(("test-tool-worker: " + log_path).c_str());
    return 1;
  }

  sdk::ToolWorker worker(*std::move(options));
  const std::string worker_id = worker.worker_id();
  const int delay_ms = absl::GetFlag(FLAGS_delay_ms);
  const bool exit_on_call = absl::GetFlag(FLAGS_exit_on_call);
  const json schema = json::parse(R"({"type": "object", "properties": {
      "value": {"type": "string"}, "sleep_ms": {"type": "integer"}}})");

  const std::vector<std::string> names =
      absl::StrSplit(absl::GetFlag(FLAGS_tools), ',', absl::SkipEmpty());
  for (const std::string& name : names) {
    auto handler =
        [&, name](const json& arguments,
                  const sdk::CallContext& context) -> absl::StatusOr<json> {
      // Refused before anything ran, so nothing is logged either.
      if (fail == "not_started") {
        return sdk::CallNotStarted("test-tool-worker: --fail=not_started");
      }
      log.Write("start", name, context.idempotency_key, worker_id);
      if (exit_on_call) _exit(1);
      int sleep_ms = delay_ms;
      if (auto given = arguments.find("sleep_ms"); given != arguments.end()) {
        if (!given->is_number_integer()) {
          log.Write("end", name, context.idempotency_key, worker_id);
          return absl::InvalidArgumentError("sleep_ms must be an integer");
        }
        sleep_ms = given->get<int>();
      }
      Sleep(sleep_ms, context);
      absl::StatusOr<json> result =
          Fail(fail, {{"tool", name},
                      {"value", arguments.value("value", json())},
                      {"worker", worker_id},
                      {"sleep_ms", sleep_ms}});
      log.Write("end", name, context.idempotency_key, worker_id);
      return result;
    };
    worker.AddTool({.name = name,
                    .description = "Test tool " + name,
                    .parameters = schema,
                    .timeout_ms = absl::GetFlag(FLAGS_timeout_ms),
                    .max_concurrency = absl::GetFlag(FLAGS_max_concurrency),
                    .idempotent = absl::GetFlag(FLAGS_idempotent),
                    .handler = handler});
  }
  return worker.RunUntilSignal("test-tool-worker");
}
