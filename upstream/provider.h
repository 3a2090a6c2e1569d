// The Provider seam: one model turn, streamed. The run engine hands a
// neutral Turn (instructions, conversation items, tools, options) to a
// Provider and receives neutral ProviderEvents back; each Provider
// translates to one wire API (OpenAI Responses, Chat Completions).
#ifndef UPSTREAM_PROVIDER_H_
#define UPSTREAM_PROVIDER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "assistants/v1/common.pb.h"
#include "assistants/v1/message.pb.h"
#include "assistants/v1/run.pb.h"

namespace assistants::upstream {

// One item of the conversation the model sees.
struct TurnItem {
  enum class Kind {
    kMessage,             // role + content parts
    kFunctionCall,        // an earlier call the model made
    kFunctionCallOutput,  // its output
  };
  Kind kind = Kind::kMessage;
  v1::MessageRole role = v1::MESSAGE_ROLE_USER;
  std::vector<v1::MessageContent> content;
  // kFunctionCall / kFunctionCallOutput.
  std::string call_id;
  std::string name;
  std::string arguments;
  std::string output;

  static TurnItem UserText(std::string text);
  static TurnItem AssistantText(std::string text);
  static TurnItem FunctionCall(std::string call_id, std::string name,
                               std::string arguments);
  static TurnItem FunctionCallOutput(std::string call_id, std::string output);
};

struct Turn {
  std::string model;
  // System / developer instructions (may be empty).
  std::string instructions;
  std::vector<TurnItem> items;
  // function, code_interpreter, file_search.
  std::vector<v1::Tool> tools;
  // Resources of the hosted tools (from the thread / assistant).
  std::vector<std::string> code_interpreter_file_ids;
  std::vector<std::string> vector_store_ids;
  v1::ToolChoice tool_choice;
  bool parallel_tool_calls = true;
  v1::ResponseFormat response_format;
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int64_t> max_output_tokens;
  // Forwarded as the upstream's `user` / safety identifier when set.
  std::string end_user;
};

// Why a turn ended.
enum class FinishReason {
  kStop,           // the model finished its answer
  kToolCalls,      // the model wants function outputs
  kLength,         // max_output_tokens (or the context) cut it
  kContentFilter,  // refused by the upstream's filter
};

// The error a failed turn reports: `status` for the gateway's RPCs and logs
// (code + ErrorInfo from the mapping table) and the Assistants `last_error`
// code the run ends with.
struct TurnError {
  absl::Status status;
  // server_error | rate_limit_exceeded | invalid_prompt.
  std::string run_error_code;
};

struct ProviderEvent {
  enum class Type {
    kTextDelta,                 // text
    kRefusalDelta,              // text
    kToolCallStarted,           // index, call_id, name
    kToolCallArgumentsDelta,    // index, call_id, text (a fragment)
    kToolCallDone,              // index, call_id, name, text (all arguments)
    kCodeInterpreterStarted,    // index, call_id
    kCodeInterpreterCodeDelta,  // index, call_id, text
    kCodeInterpreterDone,       // index, call_id, text (code), outputs
    kUsage,                     // usage
    kFinished,                  // finish_reason (last event of a good turn)
  };
  Type type = Type::kTextDelta;
  // Position of a tool call among the turn's tool calls (0, 1, ...).
  int index = 0;
  std::string call_id;
  std::string name;
  std::string text;
  std::vector<v1::CodeInterpreterOutput> outputs;
  v1::Usage usage;
  FinishReason finish_reason = FinishReason::kStop;
};

// Receives one turn's events, in order, on the HTTP client's thread; must
// not block. OnEvent runs zero or more times, then OnDone exactly once:
// without an error after kFinished, or with the turn's error.
class TurnObserver {
 public:
  virtual ~TurnObserver() = default;
  virtual void OnEvent(const ProviderEvent& event) = 0;
  virtual void OnDone(const std::optional<TurnError>& error) = 0;
};

// A turn in flight.
class TurnCall {
 public:
  virtual ~TurnCall() = default;
  // Aborts the upstream request (its connection is closed); OnDone follows
  // with CANCELLED unless it already ran. Safe from any thread, idempotent.
  virtual void Cancel() = 0;
};

class Provider {
 public:
  virtual ~Provider() = default;
  // Starts streaming `turn`. The observer must stay alive until OnDone.
  virtual std::unique_ptr<TurnCall> StreamTurn(
      const Turn& turn, std::shared_ptr<TurnObserver> observer) = 0;
};

}  // namespace assistants::upstream

#endif  // UPSTREAM_PROVIDER_H_
