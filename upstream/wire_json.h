// Conversions of contract types to the JSON both OpenAI wire APIs share.
#ifndef UPSTREAM_WIRE_JSON_H_
#define UPSTREAM_WIRE_JSON_H_

#include <cstdint>
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

// A string member of `object`; empty when absent, null or not a string
// (OpenAI sends null for absent values in places the schema calls required).
std::string Text(const nlohmann::json& object, const char* key);

// An object member of `object`; an empty object when absent or of another
// type (json::value() would hand back a non-object that then throws).
const nlohmann::json& Object(const nlohmann::json& object, const char* key);

// An integer member of `object`; 0 when absent, null or not an integer.
int64_t Int(const nlohmann::json& object, const char* key);

// The text parts of `content` joined by newlines.
std::string ConcatenatedText(const std::vector<v1::MessageContent>& content);

}  // namespace assistants::upstream

#endif  // UPSTREAM_WIRE_JSON_H_
