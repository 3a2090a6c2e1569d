// The model half of fake-openai: the scripted-step model, request parsing
// and validation for the Responses and Chat Completions APIs, the default
// deterministic "model", and rendering of replies (JSON bodies and SSE event
// lists). Kept free of libevent so it can be unit tested; the server only
// moves the bytes this produces and applies the timing/fault knobs.
#ifndef UPSTREAM_FAKE_SCENARIO_H_
#define UPSTREAM_FAKE_SCENARIO_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"

namespace assistants::fake_openai {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

enum class Api { kResponses, kChatCompletions };

// ---------------------------------------------------------------------------
// Scripted steps (POST /_fake/script, --scenario_file).

struct ScriptedToolCall {
  std::string name;
  std::string arguments;  // Sent verbatim; may be invalid JSON on purpose.
  std::string call_id;    // Empty: generated.
};

struct Step {
  std::optional<std::string> text;
  std::vector<ScriptedToolCall> tool_calls;
  bool has_code_interpreter = false;
  std::string code_interpreter_code;
  std::string code_interpreter_logs;
  std::optional<std::string> refusal;
  int tokens = 0;  // 0: default tokenisation.
  int token_delay_ms = 0;
  int first_byte_delay_ms = 0;
  std::optional<int> usage_input_tokens;
  std::optional<int> usage_output_tokens;
  std::string finish;             // "", "stop", "length", "content_filter".
  std::string incomplete_reason;  // Responses incomplete_details.reason.
  // Faults.
  int status = 0;  // Non-zero: answer with this HTTP status and `error`.
  Json error;      // {message, type, code, param}; defaults per status.
  double retry_after_s = -1;
  int64_t retry_after_ms = -1;
  int drop_after_events = -1;
  int stall_after_events = -1;
  int malformed_after_events = -1;
  bool failed = false;
  Json failed_error;  // {code, message} for response.failed.
  int repeat = 1;     // How many requests this step serves.
  Json source;        // The step as given, for GET /_fake/script.
};

// Parses {"responses":[...]} (or a bare array of steps). On failure returns
// false with a human-readable reason.
bool ParseScript(const Json& script, std::vector<Step>* steps,
                 std::string* error);

// ---------------------------------------------------------------------------
// A request normalised across both APIs, which is what the default model
// reasons about.

struct ConvItem {
  enum Kind { kMessage, kFunctionCall, kFunctionOutput, kOther };
  Kind kind = kOther;
  std::string role;  // kMessage.
  std::string text;  // kMessage: concatenated text parts.
  std::string name;  // kFunctionCall.
  std::string arguments;
  std::string call_id;  // kFunctionCall / kFunctionOutput.
  std::string output;   // kFunctionOutput.
  std::string id;       // Item id when the client sent one.
};

struct ToolDef {
  std::string name;
  std::string description;
  Json parameters = Json::object();
};

struct ModelRequest {
  Api api = Api::kResponses;
  std::string model;
  std::vector<ConvItem> items;
  std::string instructions;
  std::vector<ToolDef> tools;  // Function tools only.
  bool code_interpreter = false;
  std::string tool_choice = "auto";  // none | auto | required | function.
  std::string tool_choice_name;      // When tool_choice == "function".
  bool parallel_tool_calls = true;
  int64_t max_output_tokens = -1;  // -1: unlimited.
  bool stream = false;
  bool include_usage = false;  // Chat stream_options.include_usage.
  // stream_options.include_obfuscation: random padding on delta events,
  // which the real service adds by default.
  bool include_obfuscation = true;
  bool include_ci_outputs = false;  // include: code_interpreter_call.outputs.
  Json text_format;                 // Responses text.format / response_format.
  size_t input_chars = 0;           // For the usage estimate.
};

// What the "model" answers, before it is rendered for an API.
struct PlannedCall {
  std::string name;
  std::string arguments;
  std::string call_id;
};

struct Completion {
  bool has_text = false;
  std::string text;
  bool has_refusal = false;
  std::string refusal;
  std::vector<PlannedCall> calls;
  bool has_code_interpreter = false;
  std::string ci_code;
  std::string ci_logs;
};

// The default deterministic behaviour (see the brief in scenario.cc).
Completion DecideDefault(const ModelRequest& request);

// Helpers of the default behaviour, exposed for unit tests.
std::vector<const ToolDef*> MatchTools(const std::vector<ToolDef>& tools,
                                       const std::string& user_text);
Json BuildArguments(const Json& schema, const std::string& user_text);
std::string ExtractExpression(const std::string& text);
bool EvaluateExpression(const std::string& expression, double* value,
                        bool* is_float);
std::string FormatPythonNumber(double value, bool is_float);
std::string FormatMoney(double value);  // 237500 -> "237,500.00".
// Default tokenisation: word-ish pieces of a few characters, never splitting
// a UTF-8 sequence. `n > 0` splits into exactly n pieces (fewer when the
// text has fewer characters).
std::vector<std::string> SplitIntoDeltas(const std::string& text, int n);

// ---------------------------------------------------------------------------
// Replies.

struct SseEvent {
  std::string wire;       // Complete SSE message, "...\n\n".
  bool is_delta = false;  // Paced by token_delay_ms.
};

struct Reply {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string content_type = "application/json";
  bool stream = false;
  std::string body;              // When !stream.
  std::vector<SseEvent> events;  // When stream.
  std::string malformed_wire;    // The broken event for malformed_after.
  int first_byte_delay_ms = 0;
  int token_delay_ms = 0;
  int drop_after_events = -1;
  int stall_after_events = -1;
  int malformed_after_events = -1;
};

// OpenAI-style error body {"error":{message,type,param,code}}.
std::string ErrorBody(const std::string& message, const std::string& type,
                      const Json& param, const Json& code);
Reply ErrorReply(int status, const std::string& message,
                 const std::string& type, const Json& param = nullptr,
                 const Json& code = nullptr);

// Parses and validates a request body the way the real API does. Returns
// false with `*error` set to the 400 reply when the request is invalid.
bool ParseRequest(Api api, const std::string& body, ModelRequest* request,
                  Json* raw, Reply* error);

// The fake model: a FIFO of scripted steps, stored responses for
// previous_response_id, and id generation. Not thread-safe (one event loop).
class FakeModel {
 public:
  explicit FakeModel(uint64_t seed);

  void Enqueue(std::vector<Step> steps);
  void ClearScript() { script_.clear(); }
  size_t queued() const { return script_.size(); }
  Json ScriptJson() const;

  // Handles an authenticated POST to `api` with raw body `body`.
  Reply Handle(Api api, const std::string& body);

  // GET /v1/responses/{id}: the stored Response JSON.
  bool GetStoredResponse(const std::string& id, std::string* json) const;

  std::string NewId(const std::string& prefix, int hex_chars);
  std::string NewAlnumId(const std::string& prefix, int chars);
  std::string Obfuscation();

 private:
  struct Stored {
    std::vector<ConvItem> items;  // Inputs then outputs, for chaining.
    std::string response_json;
  };

  Reply RenderResponses(const ModelRequest& req, const Json& raw,
                        const Completion& completion, const Step* step);
  Reply RenderChat(const ModelRequest& req, const Json& raw,
                   const Completion& completion, const Step* step);
  void Store(const std::string& id, Stored stored);

  std::mt19937_64 rng_;
  std::deque<Step> script_;
  std::map<std::string, Stored> stored_;
  std::deque<std::string> stored_order_;  // FIFO eviction.
};

}  // namespace assistants::fake_openai

#endif  // UPSTREAM_FAKE_SCENARIO_H_
