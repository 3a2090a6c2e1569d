// upstream-probe: runs ONE model turn through a provider (Responses or Chat
// Completions) and prints every ProviderEvent as a JSON line on stdout,
// then {"done":true} or {"error":{...}}. Exit status: 0 when the turn
// finished, 1 when it failed, 2 on a usage error.
//
// It is the fidelity test's way of making the providers talk to fake-openai
// (whose recorded requests are then checked against OpenAI's OpenAPI
// description), and the live smoke tool: with a real key and the default
// base URL it talks to api.openai.com.
//
//   upstream-probe --api=responses --scenario=seed
//   upstream-probe --api=chat --scenario=tool_outputs
//       --base_url=http://127.0.0.1:8080/v1 --api_key=sk-fake
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "service/common/errors.h"
#include "upstream/http/curl_http_client.h"
#include "upstream/provider.h"
#include "upstream/provider_config.h"
#include "upstream/provider_registry.h"

ABSL_FLAG(std::string, api, "responses",
          "Wire API: responses (POST /responses) or chat (POST "
          "/chat/completions).");
ABSL_FLAG(std::string, base_url, "",
          "Upstream base URL up to the version (default: $OPENAI_BASE_URL, "
          "else https://api.openai.com/v1).");
ABSL_FLAG(std::string, api_key, "", "Bearer key (default: $OPENAI_API_KEY).");
ABSL_FLAG(std::string, model, "gpt-4o-mini", "Model to ask.");
ABSL_FLAG(std::string, scenario, "seed",
          "Turn to send: seed | text | tool_outputs | code_interpreter | "
          "json_schema.");
ABSL_FLAG(int, timeout_s, 120, "Give up on the whole turn after this long.");

namespace assistants::upstream {
namespace {

using nlohmann::json;

// ===========================================================================
// Scenarios: the Turns the probe can send.
// ===========================================================================

// The seed tutorial's "Data Analyst" assistant (see scripts/demo.sh), so the
// probe sends what the gateway will send for the project's headline example.
constexpr char kSeedInstructions[] =
    "You are a data analyst agent. When given data or questions about data, "
    "write and execute Python code to answer. Always show your work. If you "
    "need to make calculations, use code_interpreter.";
constexpr char kSeedQuestion[] =
    "What's the stock price of AAPL, and calculate what 1000 shares would be "
    "worth?";
constexpr char kSeedCallId[] = "call_probe_aapl";

// A protobuf Struct from JSON text that is part of this file (always valid).
google::protobuf::Struct StructFromJson(const std::string& text) {
  google::protobuf::Struct out;
  if (!google::protobuf::util::JsonStringToMessage(text, &out).ok()) {
    std::fprintf(stderr, "upstream-probe: bad built-in JSON: %s\n",
                 text.c_str());
    std::abort();
  }
  return out;
}

v1::Tool CodeInterpreterTool() {
  v1::Tool tool;
  tool.mutable_code_interpreter();
  return tool;
}

v1::Tool StockPriceTool() {
  v1::Tool tool;
  v1::FunctionDefinition* fn = tool.mutable_function()->mutable_function();
  fn->set_name("get_stock_price");
  fn->set_description("Get the current stock price for a given ticker symbol.");
  *fn->mutable_parameters() = StructFromJson(R"({
    "type": "object",
    "properties": {
      "ticker": {"type": "string",
                 "description": "Stock ticker symbol, e.g. AAPL"}
    },
    "required": ["ticker"]
  })");
  return tool;
}

// The seed assistant's tools. code_interpreter is in the Turn for both APIs,
// as it is on the assistant; the Chat Completions provider leaves hosted
// tools out of its request, which the fidelity test then observes.
void AddSeedTools(Turn& turn) {
  turn.tools.push_back(CodeInterpreterTool());
  turn.tools.push_back(StockPriceTool());
}

// False when `name` is not a known scenario.
bool BuildTurn(const std::string& name, const std::string& model, Turn* turn) {
  turn->model = model;
  if (name == "seed" || name == "tool_outputs") {
    turn->instructions = kSeedInstructions;
    turn->items.push_back(TurnItem::UserText(kSeedQuestion));
    AddSeedTools(*turn);
    if (name == "tool_outputs") {
      // The turn after the gateway ran get_stock_price: the model's call and
      // the worker's output go back, and the model should answer in text.
      turn->items.push_back(TurnItem::FunctionCall(
          kSeedCallId, "get_stock_price", R"({"ticker":"AAPL"})"));
      turn->items.push_back(TurnItem::FunctionCallOutput(
          kSeedCallId, R"({"price": 237.5, "currency": "USD"})"));
    }
    return true;
  }
  if (name == "text") {
    turn->instructions = "You are a concise assistant.";
    turn->items.push_back(TurnItem::UserText(
        "In one short sentence: what is the capital of France?"));
    return true;
  }
  if (name == "code_interpreter") {
    turn->instructions = kSeedInstructions;
    turn->items.push_back(
        TurnItem::UserText("Calculate 1000 * 237.5 with Python and tell me "
                           "the result."));
    turn->tools.push_back(CodeInterpreterTool());
    return true;
  }
  if (name == "json_schema") {
    turn->instructions = "You answer with JSON only.";
    turn->items.push_back(TurnItem::UserText(
        "Give an example stock quote for the ticker AAPL with a price."));
    turn->response_format.set_type(v1::ResponseFormat::TYPE_JSON_SCHEMA);
    v1::ResponseFormat::JsonSchema* schema =
        turn->response_format.mutable_json_schema();
    schema->set_name("stock_quote");
    schema->set_description("A stock quote.");
    // Strict mode wants every property required and no extra properties.
    *schema->mutable_schema() = StructFromJson(R"({
      "type": "object",
      "properties": {
        "ticker": {"type": "string"},
        "price": {"type": "number"}
      },
      "required": ["ticker", "price"],
      "additionalProperties": false
    })");
    schema->set_strict(true);
    return true;
  }
  return false;
}

// ===========================================================================
// Output: one JSON object per line.
// ===========================================================================

const char* TypeName(ProviderEvent::Type type) {
  switch (type) {
    case ProviderEvent::Type::kTextDelta:
      return "text_delta";
    case ProviderEvent::Type::kRefusalDelta:
      return "refusal_delta";
    case ProviderEvent::Type::kToolCallStarted:
      return "tool_call_started";
    case ProviderEvent::Type::kToolCallArgumentsDelta:
      return "tool_call_arguments_delta";
    case ProviderEvent::Type::kToolCallDone:
      return "tool_call_done";
    case ProviderEvent::Type::kCodeInterpreterStarted:
      return "code_interpreter_started";
    case ProviderEvent::Type::kCodeInterpreterCodeDelta:
      return "code_interpreter_code_delta";
    case ProviderEvent::Type::kCodeInterpreterDone:
      return "code_interpreter_done";
    case ProviderEvent::Type::kUsage:
      return "usage";
    case ProviderEvent::Type::kFinished:
      return "finished";
  }
  return "unknown";
}

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kToolCalls:
      return "tool_calls";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kContentFilter:
      return "content_filter";
  }
  return "unknown";
}

// Only the fields meaningful for the event's type (see ProviderEvent), so
// that the lines read like the event and tests can match on presence.
json EventJson(const ProviderEvent& event) {
  json out = {{"type", TypeName(event.type)}};
  switch (event.type) {
    case ProviderEvent::Type::kTextDelta:
    case ProviderEvent::Type::kRefusalDelta:
      out["text"] = event.text;
      break;
    case ProviderEvent::Type::kToolCallStarted:
      out["index"] = event.index;
      out["call_id"] = event.call_id;
      out["name"] = event.name;
      break;
    case ProviderEvent::Type::kToolCallArgumentsDelta:
    case ProviderEvent::Type::kCodeInterpreterCodeDelta:
      out["index"] = event.index;
      out["call_id"] = event.call_id;
      out["text"] = event.text;
      break;
    case ProviderEvent::Type::kToolCallDone:
      out["index"] = event.index;
      out["call_id"] = event.call_id;
      out["name"] = event.name;
      out["text"] = event.text;
      break;
    case ProviderEvent::Type::kCodeInterpreterStarted:
      out["index"] = event.index;
      out["call_id"] = event.call_id;
      break;
    case ProviderEvent::Type::kCodeInterpreterDone: {
      out["index"] = event.index;
      out["call_id"] = event.call_id;
      out["text"] = event.text;
      json outputs = json::array();
      for (const v1::CodeInterpreterOutput& output : event.outputs) {
        if (output.has_logs()) {
          outputs.push_back({{"type", "logs"}, {"logs", output.logs().logs()}});
        } else if (output.has_image()) {
          outputs.push_back(
              {{"type", "image"}, {"file_id", output.image().file_id()}});
        }
      }
      out["outputs"] = std::move(outputs);
      break;
    }
    case ProviderEvent::Type::kUsage:
      out["usage"] = {{"prompt_tokens", event.usage.prompt_tokens()},
                      {"completion_tokens", event.usage.completion_tokens()},
                      {"total_tokens", event.usage.total_tokens()}};
      break;
    case ProviderEvent::Type::kFinished:
      out["finish_reason"] = FinishReasonName(event.finish_reason);
      break;
  }
  return out;
}

json ErrorJson(const TurnError& error) {
  return {{"error",
           {{"code", absl::StatusCodeToString(error.status.code())},
            {"reason", ErrorReason(error.status)},
            {"message", std::string(error.status.message())},
            {"run_error_code", error.run_error_code}}}};
}

void PrintLine(const json& line) {
  // Model text is not guaranteed to be valid UTF-8 at every delta boundary
  // on every compatible server; replace rather than throw.
  const std::string text =
      line.dump(-1, ' ', false, json::error_handler_t::replace);
  std::fprintf(stdout, "%s\n", text.c_str());
  std::fflush(stdout);
}

// ===========================================================================
// The observer: prints as events arrive and lets main wait for OnDone.
// ===========================================================================

class PrintingObserver final : public TurnObserver {
 public:
  void OnEvent(const ProviderEvent& event) override {
    absl::MutexLock lock(&mu_);
    // A late event after a timeout-cancel must not interleave with main's
    // final line.
    if (!done_) PrintLine(EventJson(event));
  }

  void OnDone(const std::optional<TurnError>& error) override {
    absl::MutexLock lock(&mu_);
    if (done_) return;
    done_ = true;
    error_ = error;
  }

  // True once OnDone ran; waits at most `timeout`.
  bool WaitDone(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_; };
    return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  }

  std::optional<TurnError> error() {
    absl::MutexLock lock(&mu_);
    return error_;
  }

 private:
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<TurnError> error_ ABSL_GUARDED_BY(mu_);
};

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::string(value) : fallback;
}

int UsageError(const std::string& message) {
  std::fprintf(stderr, "upstream-probe: %s\n", message.c_str());
  return 2;
}

int Run() {
  const std::string api = absl::GetFlag(FLAGS_api);
  if (api != "responses" && api != "chat") {
    return UsageError("--api must be responses or chat, not '" + api + "'");
  }
  const int timeout_s = absl::GetFlag(FLAGS_timeout_s);
  if (timeout_s <= 0) return UsageError("--timeout_s must be positive");
  Turn turn;
  const std::string scenario = absl::GetFlag(FLAGS_scenario);
  if (!BuildTurn(scenario, absl::GetFlag(FLAGS_model), &turn)) {
    return UsageError("unknown --scenario '" + scenario +
                      "' (seed | text | tool_outputs | code_interpreter | "
                      "json_schema)");
  }
  if (turn.model.empty()) return UsageError("--model must not be empty");

  BackendConfig backend;
  backend.api = api == "chat" ? WireApi::kChatCompletions : WireApi::kResponses;
  ProviderConfig& config = backend.provider;
  config.name = api == "chat" ? "openai-chat" : "openai";
  std::string base_url = absl::GetFlag(FLAGS_base_url);
  if (base_url.empty()) {
    base_url = EnvOr("OPENAI_BASE_URL", "https://api.openai.com/v1");
  }
  config.base_url = std::string(absl::StripSuffix(base_url, "/"));
  config.api_key = absl::GetFlag(FLAGS_api_key);
  if (config.api_key.empty()) config.api_key = EnvOr("OPENAI_API_KEY", "");
  config.organization = EnvOr("OPENAI_ORGANIZATION", "");
  config.project = EnvOr("OPENAI_PROJECT", "");
  // One budget for everything: a single attempt may use all of it, and no
  // retry starts once it is spent.
  const std::chrono::milliseconds budget(int64_t{timeout_s} * 1000);
  config.timeouts.first_byte = budget;
  config.timeouts.idle = budget;
  config.timeouts.total = budget;
  config.retry.max_total = budget;

  // Built through the registry so the probe constructs providers exactly as
  // the gateway does.
  CurlHttpClient http;
  auto registry = ProviderRegistry::Create({backend}, config.name, &http);
  if (!registry.ok()) return UsageError(registry.status().ToString());
  absl::StatusOr<Provider*> provider = (*registry)->Resolve("");
  if (!provider.ok()) return UsageError(provider.status().ToString());

  auto observer = std::make_shared<PrintingObserver>();
  std::unique_ptr<TurnCall> call = (*provider)->StreamTurn(turn, observer);
  // The HTTP client's own deadlines normally end the turn first; this guard
  // covers retry backoff and anything else that could outlast the budget.
  if (!observer->WaitDone(absl::Seconds(timeout_s) + absl::Seconds(5))) {
    call->Cancel();
    observer->WaitDone(absl::Seconds(10));
    TurnError timeout;
    timeout.status = absl::DeadlineExceededError(
        "upstream-probe: the turn did not finish within --timeout_s");
    timeout.run_error_code = "server_error";
    PrintLine(ErrorJson(timeout));
    return 1;
  }
  const std::optional<TurnError> error = observer->error();
  if (error.has_value()) {
    PrintLine(ErrorJson(*error));
    return 1;
  }
  PrintLine({{"done", true}});
  return 0;
}

// absl::ParseCommandLine exits with status 1 on an unknown flag or a bad
// value, which would read as "the turn failed"; check argv first so that
// usage errors exit 2 as documented. Mirrors absl's syntax: --name=value,
// --name value (non-bool), --name / --noname (bool), and "--" ends flags.
bool CheckFlags(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "--") && !absl::ConsumePrefix(&arg, "-")) {
      continue;  // A positional argument; main rejects it.
    }
    const size_t eq = arg.find('=');
    const absl::string_view name = arg.substr(0, eq);
    // absl's usage flags are not in the flag registry; ParseCommandLine
    // handles them (printing help and exiting).
    if (name == "help" || name == "helpfull" || name == "helpshort" ||
        name == "helppackage" || name == "helpon" || name == "helpmatch" ||
        name == "version" || name == "only_check_args") {
      continue;
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && absl::StartsWith(name, "no")) {
      flag = absl::FindCommandLineFlag(name.substr(2));
      if (flag != nullptr && flag->IsOfType<bool>() &&
          eq == absl::string_view::npos) {
        continue;
      }
      flag = nullptr;
    }
    if (flag == nullptr) {
      std::fprintf(stderr, "upstream-probe: unknown flag --%s\n",
                   std::string(name).c_str());
      return false;
    }
    std::string value;
    if (eq != absl::string_view::npos) {
      value = std::string(arg.substr(eq + 1));
    } else if (flag->IsOfType<bool>()) {
      value = "true";
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      std::fprintf(stderr, "upstream-probe: --%s needs a value\n",
                   std::string(name).c_str());
      return false;
    }
    // Parsing into the flag is harmless: ParseCommandLine sets it again.
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      std::fprintf(stderr, "upstream-probe: bad --%s: %s\n",
                   std::string(name).c_str(), error.c_str());
      return false;
    }
  }
  return true;
}

}  // namespace
}  // namespace assistants::upstream

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Runs one model turn through a provider and prints its events as JSON "
      "lines.\n  upstream-probe --api=responses|chat --scenario=seed|text|"
      "tool_outputs|code_interpreter|json_schema [--base_url=URL] "
      "[--api_key=KEY] [--model=M] [--timeout_s=N]");
  // --help lists the flags of this file (absl's default filter expects a
  // file named after the program).
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "probe/main.cc");
  };
  absl::SetFlagsUsageConfig(usage_config);
  if (!assistants::upstream::CheckFlags(argc, argv)) return 2;
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "upstream-probe: unexpected argument '%s'\n", rest[1]);
    return 2;
  }
  return assistants::upstream::Run();
}
