#include "upstream/responses_provider.h"

#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "upstream/error_mapping.h"
#include "upstream/wire_json.h"

namespace assistants::upstream {
namespace {

using nlohmann::json;

json ContentPart(const v1::MessageContent& part) {
  switch (part.content_case()) {
    case v1::MessageContent::kText:
      return {{"type", "input_text"}, {"text", part.text().value()}};
    case v1::MessageContent::kImageUrl:
      return {{"type", "input_image"},
              {"image_url", part.image_url().url()},
              {"detail", ImageDetailName(part.image_url().detail())}};
    case v1::MessageContent::kImageFile:
      return {{"type", "input_image"},
              {"file_id", part.image_file().file_id()},
              {"detail", ImageDetailName(part.image_file().detail())}};
    default:
      return nullptr;
  }
}

json InputItem(const TurnItem& item) {
  switch (item.kind) {
    case TurnItem::Kind::kFunctionCall:
      return {{"type", "function_call"},
              {"call_id", item.call_id},
              {"name", item.name},
              {"arguments", item.arguments}};
    case TurnItem::Kind::kFunctionCallOutput:
      return {{"type", "function_call_output"},
              {"call_id", item.call_id},
              {"output", item.output}};
    case TurnItem::Kind::kMessage:
      break;
  }
  if (item.role == v1::MESSAGE_ROLE_ASSISTANT) {
    // Earlier answers go back as plain assistant text.
    return {{"type", "message"},
            {"role", "assistant"},
            {"content", ConcatenatedText(item.content)}};
  }
  json parts = json::array();
  for (const v1::MessageContent& part : item.content) {
    json converted = ContentPart(part);
    if (!converted.is_null()) parts.push_back(std::move(converted));
  }
  return {{"type", "message"}, {"role", "user"}, {"content", std::move(parts)}};
}

json ToolJson(const v1::Tool& tool, const Turn& turn) {
  switch (tool.tool_case()) {
    case v1::Tool::kFunction: {
      const v1::FunctionDefinition& function = tool.function().function();
      json out = {{"type", "function"},
                  {"name", function.name()},
                  {"parameters", FunctionParameters(function)},
                  // The Assistants API defaulted to non-strict schemas; the
                  // Responses API defaults to strict, so say it explicitly.
                  {"strict", function.has_strict() && function.strict()}};
      if (!function.description().empty()) {
        out["description"] = function.description();
      }
      return out;
    }
    case v1::Tool::kCodeInterpreter: {
      json container = {{"type", "auto"}};
      if (!turn.code_interpreter_file_ids.empty()) {
        container["file_ids"] = turn.code_interpreter_file_ids;
      }
      return {{"type", "code_interpreter"},
              {"container", std::move(container)}};
    }
    case v1::Tool::kFileSearch: {
      json out = {{"type", "file_search"},
                  {"vector_store_ids", turn.vector_store_ids}};
      if (tool.file_search().max_num_results() > 0) {
        out["max_num_results"] = tool.file_search().max_num_results();
      }
      return out;
    }
    case v1::Tool::TOOL_NOT_SET:
      break;
  }
  return nullptr;
}

json ToolChoiceJson(const v1::ToolChoice& choice) {
  switch (choice.mode()) {
    case v1::ToolChoice::MODE_NONE:
      return "none";
    case v1::ToolChoice::MODE_REQUIRED:
      return "required";
    case v1::ToolChoice::MODE_FUNCTION:
      return {{"type", "function"}, {"name", choice.function_name()}};
    case v1::ToolChoice::MODE_CODE_INTERPRETER:
      return {{"type", "code_interpreter"}};
    case v1::ToolChoice::MODE_FILE_SEARCH:
      return {{"type", "file_search"}};
    default:
      return "auto";
  }
}

json TextFormat(const v1::ResponseFormat& format) {
  switch (format.type()) {
    case v1::ResponseFormat::TYPE_JSON_OBJECT:
      return {{"type", "json_object"}};
    case v1::ResponseFormat::TYPE_JSON_SCHEMA: {
      const auto& schema = format.json_schema();
      json out = {{"type", "json_schema"},
                  {"name", schema.name()},
                  {"schema", StructToJson(schema.schema())},
                  {"strict", schema.has_strict() && schema.strict()}};
      if (!schema.description().empty())
        out["description"] = schema.description();
      return out;
    }
    default:
      return {{"type", "text"}};
  }
}

class ResponsesTranslator final : public StreamTranslator {
 public:
  explicit ResponsesTranslator(std::string provider)
      : provider_(std::move(provider)) {}

  std::optional<TurnError> OnEvent(const SseEvent& event,
                                   TurnObserver& observer) override {
    json data = json::parse(event.data, nullptr, false);
    if (data.is_discarded() || !data.is_object()) {
      return ProtocolError(provider_, "an event's data is not a JSON object");
    }
    // The type is in the data; the SSE event name repeats it.
    std::string type = Text(data, "type");
    if (type.empty()) type = event.event;

    if (type == "response.output_text.delta") {
      Emit(observer, ProviderEvent::Type::kTextDelta, Text(data, "delta"));
    } else if (type == "response.refusal.delta") {
      Emit(observer, ProviderEvent::Type::kRefusalDelta, Text(data, "delta"));
    } else if (type == "response.output_item.added") {
      return OnItemAdded(data, observer);
    } else if (type == "response.function_call_arguments.delta") {
      return OnCallDelta(data, observer,
                         ProviderEvent::Type::kToolCallArgumentsDelta);
    } else if (type == "response.code_interpreter_call_code.delta") {
      return OnCallDelta(data, observer,
                         ProviderEvent::Type::kCodeInterpreterCodeDelta);
    } else if (type == "response.output_item.done") {
      return OnItemDone(data, observer);
    } else if (type == "response.completed" || type == "response.incomplete") {
      return OnTerminal(type, data, observer);
    } else if (type == "response.failed") {
      const json& response = Object(data, "response");
      const json& error = Object(response, "error");
      return MapStreamError(provider_, Text(error, "code"),
                            Text(error, "message"));
    } else if (type == "error") {
      return MapStreamError(provider_, Text(data, "code"),
                            Text(data, "message"));
    }
    // Other events (created, in_progress, content_part.*, *.done duplicates)
    // carry nothing the run needs.
    return std::nullopt;
  }

  std::optional<TurnError> OnEnd(TurnObserver& observer) override {
    return std::nullopt;  // the caller reports truncation unless done()
  }

  bool done() const override { return done_; }

 private:
  struct Call {
    int index = 0;
    std::string call_id;
    std::string name;
    bool code_interpreter = false;
  };

  void Emit(TurnObserver& observer, ProviderEvent::Type type,
            std::string text) {
    ProviderEvent out;
    out.type = type;
    out.text = std::move(text);
    observer.OnEvent(out);
  }

  std::optional<TurnError> OnItemAdded(const json& data,
                                       TurnObserver& observer) {
    const json& item = Object(data, "item");
    std::string type = Text(item, "type");
    if (type != "function_call" && type != "code_interpreter_call") {
      return std::nullopt;
    }
    Call call;
    call.index = next_call_index_++;
    call.code_interpreter = type == "code_interpreter_call";
    call.call_id =
        call.code_interpreter ? Text(item, "id") : Text(item, "call_id");
    call.name = Text(item, "name");
    calls_[Int(data, "output_index")] = call;
    ProviderEvent out;
    out.type = call.code_interpreter
                   ? ProviderEvent::Type::kCodeInterpreterStarted
                   : ProviderEvent::Type::kToolCallStarted;
    out.index = call.index;
    out.call_id = call.call_id;
    out.name = call.name;
    observer.OnEvent(out);
    return std::nullopt;
  }

  std::optional<TurnError> OnCallDelta(const json& data, TurnObserver& observer,
                                       ProviderEvent::Type type) {
    auto it = calls_.find(Int(data, "output_index"));
    if (it == calls_.end()) {
      return ProtocolError(provider_, "a delta for an unknown output item");
    }
    ProviderEvent out;
    out.type = type;
    out.index = it->second.index;
    out.call_id = it->second.call_id;
    out.text = Text(data, "delta");
    observer.OnEvent(out);
    return std::nullopt;
  }

  std::optional<TurnError> OnItemDone(const json& data,
                                      TurnObserver& observer) {
    auto it = calls_.find(Int(data, "output_index"));
    if (it == calls_.end()) return std::nullopt;  // a message item
    const json& item = Object(data, "item");
    ProviderEvent out;
    out.index = it->second.index;
    out.call_id = it->second.call_id;
    out.name = it->second.name;
    if (it->second.code_interpreter) {
      out.type = ProviderEvent::Type::kCodeInterpreterDone;
      out.text = Text(item, "code");
      auto outputs = item.find("outputs");
      if (outputs != item.end() && outputs->is_array()) {
        for (const json& output : *outputs) {
          if (!output.is_object()) continue;
          std::string kind = Text(output, "type");
          if (kind == "logs") {
            out.outputs.emplace_back().mutable_logs()->set_logs(
                Text(output, "logs"));
          } else if (kind == "image") {
            out.outputs.emplace_back().mutable_image()->set_file_id(
                Text(output, "url"));
          }
        }
      }
    } else {
      out.type = ProviderEvent::Type::kToolCallDone;
      out.text = Text(item, "arguments");
      saw_function_call_ = true;
    }
    observer.OnEvent(out);
    return std::nullopt;
  }

  std::optional<TurnError> OnTerminal(const std::string& type, const json& data,
                                      TurnObserver& observer) {
    const json& response = Object(data, "response");
    const json& usage = Object(response, "usage");
    if (usage.is_object() && !usage.empty()) {
      ProviderEvent out;
      out.type = ProviderEvent::Type::kUsage;
      out.usage.set_prompt_tokens(Int(usage, "input_tokens"));
      out.usage.set_completion_tokens(Int(usage, "output_tokens"));
      out.usage.set_total_tokens(Int(usage, "total_tokens"));
      observer.OnEvent(out);
    }
    ProviderEvent finished;
    finished.type = ProviderEvent::Type::kFinished;
    if (type == "response.incomplete") {
      const json& details = Object(response, "incomplete_details");
      finished.finish_reason =
          details.is_object() && Text(details, "reason") == "content_filter"
              ? FinishReason::kContentFilter
              : FinishReason::kLength;
    } else {
      finished.finish_reason =
          saw_function_call_ ? FinishReason::kToolCalls : FinishReason::kStop;
    }
    done_ = true;
    observer.OnEvent(finished);
    return std::nullopt;
  }

  const std::string provider_;
  absl::flat_hash_map<int64_t, Call> calls_;  // by output_index
  int next_call_index_ = 0;
  bool saw_function_call_ = false;
  bool done_ = false;
};

}  // namespace

json ResponsesProvider::BuildRequest(const Turn& turn) {
  json body = {{"model", turn.model}, {"stream", true}, {"store", false}};
  if (!turn.instructions.empty()) body["instructions"] = turn.instructions;
  json input = json::array();
  for (const TurnItem& item : turn.items) input.push_back(InputItem(item));
  body["input"] = std::move(input);
  json tools = json::array();
  for (const v1::Tool& tool : turn.tools) {
    json converted = ToolJson(tool, turn);
    if (!converted.is_null()) tools.push_back(std::move(converted));
  }
  bool code_interpreter = false;
  for (const json& tool : tools) {
    code_interpreter |= tool["type"] == "code_interpreter";
  }
  if (!tools.empty()) {
    body["tools"] = std::move(tools);
    body["tool_choice"] = ToolChoiceJson(turn.tool_choice);
    body["parallel_tool_calls"] = turn.parallel_tool_calls;
  }
  if (code_interpreter) {
    // Without this the service leaves the calls' outputs (logs) null.
    body["include"] = json::array({"code_interpreter_call.outputs"});
  }
  if (turn.response_format.type() != v1::ResponseFormat::TYPE_UNSPECIFIED) {
    body["text"] = {{"format", TextFormat(turn.response_format)}};
  }
  if (turn.temperature.has_value()) body["temperature"] = *turn.temperature;
  if (turn.top_p.has_value()) body["top_p"] = *turn.top_p;
  if (turn.max_output_tokens.has_value()) {
    body["max_output_tokens"] = *turn.max_output_tokens;
  }
  if (!turn.end_user.empty()) body["safety_identifier"] = turn.end_user;
  return body;
}

std::unique_ptr<StreamTranslator> ResponsesProvider::NewTranslator(
    std::string provider_name) {
  return std::make_unique<ResponsesTranslator>(std::move(provider_name));
}

std::unique_ptr<TurnCall> ResponsesProvider::StreamTurn(
    const Turn& turn, std::shared_ptr<TurnObserver> observer) {
  return StartStreamingTurn(http_, config_, "/responses", BuildRequest(turn),
                            NewTranslator(config_.name), std::move(observer));
}

}  // namespace assistants::upstream
