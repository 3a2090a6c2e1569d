// Rendering of a run's event stream (RunService.RunEvents) for people: the
// seed tutorial's AgentStreamHandler output, byte for byte where the seed
// prints something, plus a few lines a gateway operator needs (the pending
// tool calls of requires_action, the run's final status, error events).
#ifndef CLI_RUN_PRINTER_H_
#define CLI_RUN_PRINTER_H_

#include <map>
#include <ostream>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "assistants/v1/event.pb.h"
#include "assistants/v1/run.pb.h"

namespace assistants {
namespace cli {

// Renders RunEvents as the seed's AgentStreamHandler (OpenAI's Python SDK
// AssistantEventHandler) prints them:
//   on_text_created       "\nassistant > "  (first text delta of a message
//                                            content part)
//   on_text_delta         the delta's value
//   on_tool_call_created  "\n[calling function]\n" / "[calling
//                         code_interpreter]" (first delta of a tool call, or a
//                         step that already carries the call)
//   on_tool_call_delta    code_interpreter input fragments
// and adds, on lines of their own: each pending call of requires_action
// ("  -> get_stock_price({...}) id=call_..."), the terminal status ("[run
// completed]", "[run failed: server_error: ...]", ...) and, on `err`, error
// events. Everything written to `out` is flushed at once, as the seed does,
// so tokens show up as they arrive.
//
// Not thread-safe. Deduplication of replayed events (by sequence) is the
// caller's job: every event given is rendered.
class RunPrinter {
 public:
  RunPrinter(std::ostream& out, std::ostream& err) : out_(out), err_(err) {}

  RunPrinter(const RunPrinter&) = delete;
  RunPrinter& operator=(const RunPrinter&) = delete;

  void Print(const v1::RunEvent& event);

  // Whether the run's terminal status line has been printed (a client that
  // attached after the terminal event prints it from GetRun instead).
  bool printed_terminal() const { return printed_terminal_; }

 private:
  // (message or step id, content or tool call index).
  using PartKey = std::pair<std::string, int>;

  void PrintMessageDelta(const v1::MessageDelta& delta);
  void PrintFinishedMessage(const v1::Message& message);
  void PrintStep(const v1::RunStep& step, bool finished);
  void PrintStepDelta(const v1::RunStepDelta& delta);
  void AnnounceToolCall(const PartKey& key, absl::string_view type);
  void PrintRequiredAction(const v1::Run& run);
  void PrintTerminal(const v1::RunEvent& event);
  void PrintError(const v1::ErrorEvent& error);

  // Writes to `out` and flushes, keeping track of the line position.
  void Write(absl::string_view text);
  // Starts a new line unless the last character written ended one, so the
  // extra lines never glue onto streamed text.
  void EndLine();

  std::ostream& out_;
  std::ostream& err_;
  bool at_line_start_ = true;
  bool printed_terminal_ = false;
  // Message content parts whose "assistant > " has been printed.
  std::set<PartKey> text_started_;
  // Tool calls whose "[calling ...]" has been printed.
  std::set<PartKey> calls_announced_;
  // code_interpreter calls whose input was printed from deltas.
  std::set<PartKey> code_printed_;
  // Function names by call, for announcing worker outputs.
  std::map<PartKey, std::string> function_names_;
};

// The event as one line of proto3 JSON (field names as in the .proto files),
// without the newline: the --json rendering of a stream.
std::string EventJsonLine(const v1::RunEvent& event);

// The event as one short line for `assistantsctl runs events` (no newline):
// "SEQ  EVENT  DETAIL", where DETAIL names the payload: the run's id and
// status (with the pending calls of requires_action, the error of a failed
// run), a step's id, type and status, a message's id, role and status, the
// text or arguments of a delta (C-escaped, so the line stays one line), an
// error event's code and message. Heartbeat, draining and done have none.
std::string EventLine(const v1::RunEvent& event);

// OpenAI's status name: "queued", "in_progress", "requires_action", ...
std::string RunStatusName(v1::RunStatus status);

// completed, failed, cancelled, expired or incomplete.
bool IsTerminalRunStatus(v1::RunStatus status);

// The status a "thread.run.*" event name announces (UNSPECIFIED for other
// names): lets a terminal event be recognised even without its payload.
v1::RunStatus RunStatusFromEventName(absl::string_view event_name);

// "  -> get_stock_price({"ticker":"AAPL"}) id=call_..." (no newline).
std::string PendingCallLine(const v1::RequiredToolCall& call);

// "[run completed]", "[run failed: server_error: ...]", "[run incomplete:
// max_completion_tokens]", "[run cancelled]", "[run expired]" (no newline);
// empty when `status` is not terminal. `run` supplies last_error and
// incomplete_details.
std::string TerminalLine(v1::RunStatus status, const v1::Run& run);

// OpenAI's names of a run step's type and status ("tool_calls",
// "in_progress", ...); "unspecified" for anything else.
absl::string_view StepTypeName(v1::RunStepType type);
absl::string_view StepStatusName(v1::RunStepStatus status);

}  // namespace cli
}  // namespace assistants

#endif  // CLI_RUN_PRINTER_H_
