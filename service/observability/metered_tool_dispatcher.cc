#include "service/observability/metered_tool_dispatcher.h"

#include <chrono>
#include <utility>

#include "absl/strings/match.h"
#include "nlohmann/json.hpp"

namespace assistants::observability {
namespace {

// The error types tool_workers' dispatcher writes; the label set stays
// bounded whatever a worker returns.
constexpr absl::string_view kKnownErrors[] = {
    "no_worker",      "timeout",      "unavailable", "invalid_arguments",
    "invalid_output", "worker_error", "cancelled"};

}  // namespace

std::string ToolCallOutcome(absl::string_view output) {
  // nlohmann::json writes keys sorted, so the dispatcher's errors start
  // with "error"; a successful output almost never does, and parsing is
  // only paid when it does.
  if (!absl::StartsWith(output, "{\"error\"")) return "ok";
  nlohmann::json parsed = nlohmann::json::parse(output, nullptr,
                                                /*allow_exceptions=*/false);
  if (!parsed.is_object() || !parsed.contains("error_type") ||
      !parsed["error_type"].is_string()) {
    return "ok";  // the worker's own output that happens to say "error"
  }
  const std::string type = parsed["error_type"].get<std::string>();
  for (absl::string_view known : kKnownErrors) {
    if (type == known) return type;
  }
  return "error";
}

prometheus::Histogram* MeteredToolDispatcher::Duration(
    const std::string& tool) {
  absl::MutexLock lock(&mu_);
  prometheus::Histogram*& duration = durations_[tool];
  if (duration == nullptr) duration = metrics_->Tool(tool).duration;
  return duration;
}

void MeteredToolDispatcher::Invoke(
    const runs::ToolCallContext& context,
    const runs::ToolInvocation& invocation,
    std::function<void(std::string output)> done) {
  const auto start = std::chrono::steady_clock::now();
  prometheus::Histogram* duration = Duration(invocation.name);
  inner_->Invoke(
      context, invocation,
      [this, start, duration, tool = invocation.name,
       done = std::move(done)](std::string output) {
        const std::chrono::duration<double> elapsed =
            std::chrono::steady_clock::now() - start;
        duration->Observe(elapsed.count());
        // Once per call: the family lookup is fine here.
        metrics_->ToolCall(tool, ToolCallOutcome(output)).Increment();
        done(std::move(output));
      });
}

}  // namespace assistants::observability
