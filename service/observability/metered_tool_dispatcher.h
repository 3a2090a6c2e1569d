// MeteredToolDispatcher: a ToolDispatcher decorator that counts the calls
// sent to tool workers by tool and outcome (assistants_tool_calls_total) and
// observes how long each took to produce its output
// (assistants_tool_call_duration_seconds).
#ifndef SERVICE_OBSERVABILITY_METERED_TOOL_DISPATCHER_H_
#define SERVICE_OBSERVABILITY_METERED_TOOL_DISPATCHER_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "service/observability/metrics.h"
#include "service/runs/tool_dispatcher.h"

namespace assistants::observability {

// The outcome label of a tool call's output: "ok", or the error_type of
// the dispatcher's JSON error output (no_worker, timeout, unavailable,
// invalid_arguments, invalid_output, worker_error, cancelled; anything else
// counts as "error").
std::string ToolCallOutcome(absl::string_view output);

class MeteredToolDispatcher : public runs::ToolDispatcher {
 public:
  // `inner` and `metrics` must outlive this dispatcher.
  MeteredToolDispatcher(runs::ToolDispatcher* inner, Metrics* metrics)
      : inner_(inner), metrics_(metrics) {}

  bool Handles(absl::string_view tool_name) const override {
    return inner_->Handles(tool_name);
  }
  std::optional<v1::FunctionDefinition> Definition(
      absl::string_view tool_name) const override {
    return inner_->Definition(tool_name);
  }
  void Invoke(const runs::ToolCallContext& context,
              const runs::ToolInvocation& invocation,
              std::function<void(std::string output)> done) override;
  void CancelRun(absl::string_view run_id) override {
    inner_->CancelRun(run_id);
  }

 private:
  // The tool's duration series, looked up once per tool name.
  prometheus::Histogram* Duration(const std::string& tool);

  runs::ToolDispatcher* const inner_;
  Metrics* const metrics_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, prometheus::Histogram*> durations_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace assistants::observability

#endif  // SERVICE_OBSERVABILITY_METERED_TOOL_DISPATCHER_H_
