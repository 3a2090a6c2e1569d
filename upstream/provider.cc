// Helpers shared by the providers: TurnItem constructors and conversions of
// contract types to the JSON both OpenAI wire APIs use.
#include "upstream/provider.h"

#include <string>
#include <utility>

#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "upstream/wire_json.h"

namespace assistants::upstream {

TurnItem TurnItem::UserText(std::string text) {
  TurnItem item;
  item.role = v1::MESSAGE_ROLE_USER;
  item.content.emplace_back().mutable_text()->set_value(std::move(text));
  return item;
}

TurnItem TurnItem::AssistantText(std::string text) {
  TurnItem item = UserText(std::move(text));
  item.role = v1::MESSAGE_ROLE_ASSISTANT;
  return item;
}

TurnItem TurnItem::FunctionCall(std::string call_id, std::string name,
                                std::string arguments) {
  TurnItem item;
  item.kind = Kind::kFunctionCall;
  item.role = v1::MESSAGE_ROLE_ASSISTANT;
  item.call_id = std::move(call_id);
  item.name = std::move(name);
  item.arguments = std::move(arguments);
  return item;
}

TurnItem TurnItem::FunctionCallOutput(std::string call_id, std::string output) {
  TurnItem item;
  item.kind = Kind::kFunctionCallOutput;
  item.call_id = std::move(call_id);
  item.output = std::move(output);
  return item;
}

nlohmann::json StructToJson(const google::protobuf::Struct& value) {
  std::string text;
  if (!google::protobuf::util::MessageToJsonString(value, &text).ok()) {
    return nlohmann::json::object();
  }
  nlohmann::json json = nlohmann::json::parse(text, nullptr, false);
  return json.is_object() ? json : nlohmann::json::object();
}

nlohmann::json FunctionParameters(const v1::FunctionDefinition& function) {
  if (!function.has_parameters()) {
    // Both APIs want an object schema; "no parameters" is an empty object.
    return {{"type", "object"}, {"properties", nlohmann::json::object()}};
  }
  return StructToJson(function.parameters());
}

std::string Text(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

const nlohmann::json& Object(const nlohmann::json& object, const char* key) {
  static const auto* const kEmpty =
      new nlohmann::json(nlohmann::json::object());
  auto it = object.find(key);
  return it != object.end() && it->is_object() ? *it : *kEmpty;
}

int64_t Int(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

std::string ImageDetailName(v1::ImageDetail detail) {
  switch (detail) {
    case v1::IMAGE_DETAIL_LOW:
      return "low";
    case v1::IMAGE_DETAIL_HIGH:
      return "high";
    default:
      return "auto";
  }
}

std::string ConcatenatedText(const std::vector<v1::MessageContent>& content) {
  std::string text;
  for (const v1::MessageContent& part : content) {
    if (part.has_text()) {
      if (!text.empty()) text += "\n";
      text += part.text().value();
    }
  }
  return text;
}

}  // namespace assistants::upstream
