#include "upstream/chat_completions_provider.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "upstream/error_mapping.h"
#include "upstream/wire_json.h"

namespace assistants::upstream {
namespace {

using nlohmann::json;

json UserContent(const TurnItem& item) {
  // A single text part goes as a plain string, which every compatible
  // server understands; images need the array form.
  if (item.content.size() == 1 && item.content[0].has_text()) {
    return item.content[0].text().value();
  }
  json parts = json::array();
  for (const v1::MessageContent& part : item.content) {
    if (part.has_text()) {
      parts.push_back({{"type", "text"}, {"text", part.text().value()}});
    } else if (part.has_image_url()) {
      parts.push_back(
          {{"type", "image_url"},
           {"image_url",
            {{"url", part.image_url().url()},
             {"detail", ImageDetailName(part.image_url().detail())}}}});
    }
    // image_file parts need a file store the Chat Completions API lacks.
  }
  return parts;
}

json Messages(const Turn& turn) {
  json messages = json::array();
  if (!turn.instructions.empty()) {
    messages.push_back({{"role", "system"}, {"content", turn.instructions}});
  }
  for (const TurnItem& item : turn.items) {
    switch (item.kind) {
      case TurnItem::Kind::kMessage:
        if (item.role == v1::MESSAGE_ROLE_ASSISTANT) {
          messages.push_back({{"role", "assistant"},
                              {"content", ConcatenatedText(item.content)}});
        } else {
          messages.push_back(
              {{"role", "user"}, {"content", UserContent(item)}});
        }
        break;
      case TurnItem::Kind::kFunctionCall: {
        json call = {
            {"id", item.call_id},
            {"type", "function"},
            {"function", {{"name", item.name}, {"arguments", item.arguments}}}};
        // Consecutive calls belong to one assistant message (parallel calls).
        if (!messages.empty() && messages.back()["role"] == "assistant" &&
            messages.back().contains("tool_calls")) {
          messages.back()["tool_calls"].push_back(std::move(call));
        } else {
          messages.push_back({{"role", "assistant"},
                              {"content", nullptr},
                              {"tool_calls", json::array({std::move(call)})}});
        }
        break;
      }
      case TurnItem::Kind::kFunctionCallOutput:
        messages.push_back({{"role", "tool"},
                            {"tool_call_id", item.call_id},
                            {"content", item.output}});
        break;
    }
  }
  return messages;
}

json ToolChoiceJson(const v1::ToolChoice& choice) {
  switch (choice.mode()) {
    case v1::ToolChoice::MODE_NONE:
      return "none";
    case v1::ToolChoice::MODE_REQUIRED:
      return "required";
    case v1::ToolChoice::MODE_FUNCTION:
      return {{"type", "function"},
              {"function", {{"name", choice.function_name()}}}};
    default:
      return "auto";
  }
}

json ResponseFormatJson(const v1::ResponseFormat& format) {
  switch (format.type()) {
    case v1::ResponseFormat::TYPE_JSON_OBJECT:
      return {{"type", "json_object"}};
    case v1::ResponseFormat::TYPE_JSON_SCHEMA: {
      const auto& schema = format.json_schema();
      json inner = {{"name", schema.name()},
                    {"schema", StructToJson(schema.schema())},
                    {"strict", schema.has_strict() && schema.strict()}};
      if (!schema.description().empty()) {
        inner["description"] = schema.description();
      }
      return {{"type", "json_schema"}, {"json_schema", std::move(inner)}};
    }
    default:
      return {{"type", "text"}};
  }
}

class ChatTranslator final : public StreamTranslator {
 public:
  explicit ChatTranslator(std::string provider)
      : provider_(std::move(provider)) {}

  std::optional<TurnError> OnEvent(const SseEvent& event,
                                   TurnObserver& observer) override {
    if (event.data == "[DONE]") return Finish(observer);
    json chunk = json::parse(event.data, nullptr, false);
    if (chunk.is_discarded() || !chunk.is_object()) {
      return ProtocolError(provider_, "a chunk is not a JSON object");
    }
    if (auto error = chunk.find("error");
        error != chunk.end() && error->is_object()) {
      return MapStreamError(provider_, Text(*error, "code"),
                            Text(*error, "message"));
    }
    if (auto usage = chunk.find("usage");
        usage != chunk.end() && usage->is_object()) {
      usage_.set_prompt_tokens(Int(*usage, "prompt_tokens"));
      usage_.set_completion_tokens(Int(*usage, "completion_tokens"));
      usage_.set_total_tokens(Int(*usage, "total_tokens"));
      has_usage_ = true;
    }
    auto choices = chunk.find("choices");
    if (choices == chunk.end() || !choices->is_array()) return std::nullopt;
    for (const json& choice : *choices) {
      if (!choice.is_object() || Int(choice, "index") != 0) continue;
      if (auto error = OnDelta(Object(choice, "delta"), observer)) {
        return error;
      }
      // finish_reason is null in every chunk but the last.
      std::string reason = Text(choice, "finish_reason");
      if (!reason.empty()) finish_reason_ = reason;
    }
    return std::nullopt;
  }

  std::optional<TurnError> OnEnd(TurnObserver& observer) override {
    // Some compatible servers end the body without "[DONE]"; a finish
    // reason already seen means the turn was complete.
    if (!done_ && !finish_reason_.empty()) return Finish(observer);
    return std::nullopt;
  }

  bool done() const override { return done_; }

 private:
  struct Call {
    std::string id;
    std::string name;
    std::string arguments;
  };

  std::optional<TurnError> OnDelta(const json& delta, TurnObserver& observer) {
    if (!delta.is_object()) return std::nullopt;
    if (std::string text = Text(delta, "content"); !text.empty()) {
      Emit(observer, ProviderEvent::Type::kTextDelta, 0, "", std::move(text));
    }
    if (std::string text = Text(delta, "refusal"); !text.empty()) {
      Emit(observer, ProviderEvent::Type::kRefusalDelta, 0, "",
           std::move(text));
    }
    auto tool_calls = delta.find("tool_calls");
    if (tool_calls == delta.end() || !tool_calls->is_array()) {
      return std::nullopt;
    }
    for (const json& fragment : *tool_calls) {
      if (!fragment.is_object()) continue;
      const json& function = Object(fragment, "function");
      std::string id = Text(fragment, "id");
      // Fragments continue the call at their `index`. Some compatible
      // servers omit the index and send each parallel call whole with its
      // own id, so a new id always starts a new call; ordinals are ours.
      auto index_field = fragment.find("index");
      std::optional<int64_t> upstream_index;
      if (index_field != fragment.end() && index_field->is_number_integer()) {
        upstream_index = index_field->get<int64_t>();
      }
      int ordinal = -1;
      if (upstream_index.has_value()) {
        auto it = by_upstream_index_.find(*upstream_index);
        if (it != by_upstream_index_.end() &&
            (id.empty() || id == calls_[it->second].id)) {
          ordinal = it->second;
        }
      } else if (id.empty() && !calls_.empty()) {
        ordinal = static_cast<int>(calls_.size()) - 1;
      }
      if (ordinal < 0) {
        Call call{id, Text(function, "name"), ""};
        if (call.id.empty() || call.name.empty()) {
          return ProtocolError(provider_,
                               "a tool call started without an id or name");
        }
        ordinal = static_cast<int>(calls_.size());
        calls_.push_back(call);
        if (upstream_index.has_value()) {
          by_upstream_index_[*upstream_index] = ordinal;
        }
        ProviderEvent started;
        started.type = ProviderEvent::Type::kToolCallStarted;
        started.index = ordinal;
        started.call_id = call.id;
        started.name = call.name;
        observer.OnEvent(started);
      }
      Call& call = calls_[ordinal];
      if (std::string args = Text(function, "arguments"); !args.empty()) {
        call.arguments += args;
        Emit(observer, ProviderEvent::Type::kToolCallArgumentsDelta, ordinal,
             call.id, std::move(args));
      }
    }
    return std::nullopt;
  }

  std::optional<TurnError> Finish(TurnObserver& observer) {
    if (done_) return std::nullopt;
    for (size_t ordinal = 0; ordinal < calls_.size(); ++ordinal) {
      const Call& call = calls_[ordinal];
      ProviderEvent done_call;
      done_call.type = ProviderEvent::Type::kToolCallDone;
      done_call.index = static_cast<int>(ordinal);
      done_call.call_id = call.id;
      done_call.name = call.name;
      done_call.text = call.arguments;
      observer.OnEvent(done_call);
    }
    if (has_usage_) {
      ProviderEvent usage;
      usage.type = ProviderEvent::Type::kUsage;
      usage.usage = usage_;
      observer.OnEvent(usage);
    }
    ProviderEvent finished;
    finished.type = ProviderEvent::Type::kFinished;
    if (finish_reason_ == "length") {
      finished.finish_reason = FinishReason::kLength;
    } else if (finish_reason_ == "content_filter") {
      finished.finish_reason = FinishReason::kContentFilter;
    } else if (finish_reason_ == "tool_calls" ||
               finish_reason_ == "function_call" || !calls_.empty()) {
      finished.finish_reason = FinishReason::kToolCalls;
    } else {
      finished.finish_reason = FinishReason::kStop;
    }
    done_ = true;
    observer.OnEvent(finished);
    return std::nullopt;
  }

  static void Emit(TurnObserver& observer, ProviderEvent::Type type, int index,
                   std::string call_id, std::string text) {
    ProviderEvent out;
    out.type = type;
    out.index = index;
    out.call_id = std::move(call_id);
    out.text = std::move(text);
    observer.OnEvent(out);
  }

  const std::string provider_;
  std::vector<Call> calls_;  // in order of appearance (our ordinals)
  absl::flat_hash_map<int64_t, int> by_upstream_index_;
  std::string finish_reason_;
  v1::Usage usage_;
  bool has_usage_ = false;
  bool done_ = false;
};

}  // namespace

json ChatCompletionsProvider::BuildRequest(const Turn& turn,
                                           bool legacy_max_tokens) {
  json body = {{"model", turn.model},
               {"messages", Messages(turn)},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  json tools = json::array();
  for (const v1::Tool& tool : turn.tools) {
    if (!tool.has_function()) continue;
    const v1::FunctionDefinition& function = tool.function().function();
    json definition = {{"name", function.name()},
                       {"parameters", FunctionParameters(function)}};
    if (!function.description().empty()) {
      definition["description"] = function.description();
    }
    if (function.has_strict()) definition["strict"] = function.strict();
    tools.push_back(
        {{"type", "function"}, {"function", std::move(definition)}});
  }
  if (!tools.empty()) {
    body["tools"] = std::move(tools);
    body["tool_choice"] = ToolChoiceJson(turn.tool_choice);
    body["parallel_tool_calls"] = turn.parallel_tool_calls;
  }
  if (turn.response_format.type() != v1::ResponseFormat::TYPE_UNSPECIFIED) {
    body["response_format"] = ResponseFormatJson(turn.response_format);
  }
  if (turn.temperature.has_value()) body["temperature"] = *turn.temperature;
  if (turn.top_p.has_value()) body["top_p"] = *turn.top_p;
  if (turn.max_output_tokens.has_value()) {
    body[legacy_max_tokens ? "max_tokens" : "max_completion_tokens"] =
        *turn.max_output_tokens;
  }
  if (!turn.end_user.empty()) body["safety_identifier"] = turn.end_user;
  return body;
}

std::unique_ptr<StreamTranslator> ChatCompletionsProvider::NewTranslator(
    std::string provider_name) {
  return std::make_unique<ChatTranslator>(std::move(provider_name));
}

std::unique_ptr<TurnCall> ChatCompletionsProvider::StreamTurn(
    const Turn& turn, std::shared_ptr<TurnObserver> observer) {
  return StartStreamingTurn(http_, config_, "/chat/completions",
                            BuildRequest(turn, config_.legacy_max_tokens),
                            NewTranslator(config_.name), std::move(observer));
}

}  // namespace assistants::upstream
