// The ToolDispatcher seam: where the run engine sends the function calls a
// model makes. Calls of tools the dispatcher handles (a registered worker
// serves them) are invoked by it; the rest surface to the caller in
// requires_action, as in the Assistants API.
#ifndef SERVICE_RUNS_TOOL_DISPATCHER_H_
#define SERVICE_RUNS_TOOL_DISPATCHER_H_

#include <functional>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "assistants/v1/common.pb.h"

namespace assistants::runs {

struct ToolCallContext {
  std::string run_id;
  std::string thread_id;
  std::string assistant_id;
};

struct ToolInvocation {
  // The run step's "call_" id; with run_id it is the idempotency key.
  std::string call_id;
  std::string name;
  // As the model produced them (possibly invalid JSON).
  std::string arguments;
};

class ToolDispatcher {
 public:
  virtual ~ToolDispatcher() = default;
  // Whether a live worker serves `tool_name` now.
  virtual bool Handles(absl::string_view tool_name) const = 0;
  // The served definition of `tool_name`, used for function tools that
  // name a worker's tool without parameters.
  virtual std::optional<v1::FunctionDefinition> Definition(
      absl::string_view tool_name) const {
    return std::nullopt;
  }
  // Invokes one call; `done` runs exactly once, on any thread, with the
  // output the model will read (failures as a JSON {"error": ...} output).
  // Must not block. A call whose tool has no live worker at the moment may
  // wait a while for one (a run resumed before its workers re-registered).
  virtual void Invoke(const ToolCallContext& context,
                      const ToolInvocation& invocation,
                      std::function<void(std::string output)> done) = 0;
  // Gives up on the calls of `run_id` still in flight (the run ended or is
  // no longer driven here); their `done` still runs.
  virtual void CancelRun(absl::string_view run_id) {}
};

// No workers: every call goes to the caller.
class CallerOnlyDispatcher : public ToolDispatcher {
 public:
  bool Handles(absl::string_view) const override { return false; }
  void Invoke(const ToolCallContext&, const ToolInvocation& invocation,
              std::function<void(std::string)> done) override {
    done("{\"error\":\"no worker serves " + invocation.name + "\"}");
  }
};

}  // namespace assistants::runs

#endif  // SERVICE_RUNS_TOOL_DISPATCHER_H_
