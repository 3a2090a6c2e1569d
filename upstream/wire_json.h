// Conversions of contract types to the JSON both OpenAI wire APIs share.
#ifndef UPSTREAM_WIRE_JSON_H_
#define UPSTREAM_WIRE_JSON_H_

#include <string>
#include <vector>

#include "assistants/v1/common.pb.h"
#include "assistants/v1/message.pb.h"
#include "google/protobuf/struct.pb.h"
#include "nlohmann/json.hpp"

namespace assistants::upstream {

// A Struct as a JSON object (an empty object if it cannot be converted).
nlohmann::json StructToJson(const google::protobuf::Struct& value);

// A function's parameters schema; an empty object schema when absent.
nlohmann::json FunctionParameters(const v1::FunctionDefinition& function);

// "auto" | "low" | "high".
std::string ImageDetailName(v1::ImageDetail detail);

// The text parts of `content` joined by newlines.
std::string ConcatenatedText(const std::vector<v1::MessageContent>& content);

}  // namespace assistants::upstream

#endif  // UPSTREAM_WIRE_JSON_H_
