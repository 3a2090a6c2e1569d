#include "service/core/validation.h"

#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "service/common/errors.h"
#include "service/common/ids.h"
#include "service/common/status_macros.h"

namespace assistants {
namespace {

absl::Status CheckLength(absl::string_view value, size_t max_chars,
                         absl::string_view field) {
  if (CharCount(value) <= max_chars) return absl::OkStatus();
  return FieldError(
      field, kFieldTooLong,
      absl::StrCat("must be at most ", max_chars, " characters long"));
}

absl::Status CheckCount(int count, int max_items, absl::string_view field) {
  if (count <= max_items) return absl::OkStatus();
  return FieldError(
      field, kTooManyItems,
      absl::StrCat("must have at most ", max_items, " items, got ", count));
}

absl::Status CheckRange(double value, double low, double high,
                        absl::string_view field) {
  if (std::isfinite(value) && value >= low && value <= high) {
    return absl::OkStatus();
  }
  return FieldError(field, kValueOutOfRange,
                    absl::StrCat("must be between ", low, " and ", high));
}

// OpenAI's pattern for function and schema names: ^[a-zA-Z0-9_-]{1,64}$.
absl::Status CheckName(absl::string_view name, absl::string_view field) {
  if (name.empty()) return FieldError(field, kFieldRequired, "is required");
  if (name.size() > 64) {
    return FieldError(field, kFieldTooLong,
                      "must be at most 64 characters long");
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' &&
        c != '-') {
      return FieldError(field, kInvalidFormat,
                        "must match ^[a-zA-Z0-9_-]{1,64}$");
    }
  }
  return absl::OkStatus();
}

// A JSON Schema for arguments or output must describe an object when it says
// what it describes.
absl::Status CheckObjectSchema(const google::protobuf::Struct& schema,
                               absl::string_view field) {
  auto it = schema.fields().find("type");
  if (it == schema.fields().end()) return absl::OkStatus();
  if (it->second.kind_case() != google::protobuf::Value::kStringValue ||
      it->second.string_value() != "object") {
    return FieldError(absl::StrCat(field, ".type"), kInvalidValue,
                      "a JSON Schema for parameters must have type \"object\"");
  }
  return absl::OkStatus();
}

absl::Status CheckImageDetail(int detail, absl::string_view field) {
  if (v1::ImageDetail_IsValid(detail)) return absl::OkStatus();
  return FieldError(field, kInvalidValue, "unknown image detail level");
}

absl::Status ValidateContentPart(const v1::MessageContent& part,
                                 absl::string_view field) {
  switch (part.content_case()) {
    case v1::MessageContent::kText:
      if (part.text().value().empty()) {
        return FieldError(absl::StrCat(field, ".text.value"), kFieldRequired,
                          "text content must not be empty");
      }
      if (part.text().annotations_size() > 0) {
        return FieldError(absl::StrCat(field, ".text.annotations"),
                          kInvalidValue,
                          "annotations are written by runs, not by clients");
      }
      return CheckLength(part.text().value(), kMaxMessageTextChars,
                         absl::StrCat(field, ".text.value"));
    case v1::MessageContent::kImageUrl: {
      RETURN_IF_ERROR(CheckImageDetail(
          part.image_url().detail(), absl::StrCat(field, ".image_url.detail")));
      absl::string_view url = part.image_url().url();
      std::string url_field = absl::StrCat(field, ".image_url.url");
      if (url.empty())
        return FieldError(url_field, kFieldRequired, "is required");
      if (!absl::StartsWith(url, "https://") &&
          !absl::StartsWith(url, "http://") &&
          !absl::StartsWith(url, "data:image/")) {
        return FieldError(url_field, kInvalidFormat,
                          "must be an http(s) URL or a data:image/ URL");
      }
      return absl::OkStatus();
    }
    case v1::MessageContent::kImageFile:
      RETURN_IF_ERROR(
          CheckImageDetail(part.image_file().detail(),
                           absl::StrCat(field, ".image_file.detail")));
      if (part.image_file().file_id().empty()) {
        return FieldError(absl::StrCat(field, ".image_file.file_id"),
                          kFieldRequired, "is required");
      }
      return absl::OkStatus();
    case v1::MessageContent::kRefusal:
      return FieldError(absl::StrCat(field, ".refusal"), kInvalidValue,
                        "refusal content is written by runs, not by clients");
    case v1::MessageContent::CONTENT_NOT_SET:
      break;
  }
  return FieldError(field, kFieldRequired,
                    "set one of text, image_url or image_file");
}

}  // namespace

absl::Status ValidateFunction(const v1::FunctionDefinition& function,
                              absl::string_view field) {
  RETURN_IF_ERROR(CheckName(function.name(), absl::StrCat(field, ".name")));
  RETURN_IF_ERROR(CheckLength(function.description(),
                              kMaxFunctionDescriptionChars,
                              absl::StrCat(field, ".description")));
  if (function.has_parameters()) {
    RETURN_IF_ERROR(CheckObjectSchema(function.parameters(),
                                      absl::StrCat(field, ".parameters")));
  }
  return absl::OkStatus();
}

absl::Status ValidateRange(double value, double low, double high,
                           absl::string_view field) {
  return CheckRange(value, low, high, field);
}

size_t CharCount(absl::string_view s) {
  size_t count = 0;
  for (char c : s) {
    // Count every byte that does not continue a multi-byte sequence.
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++count;
  }
  return count;
}

absl::Status ValidateId(absl::string_view id, absl::string_view prefix,
                        absl::string_view field) {
  if (id.empty()) return FieldError(field, kFieldRequired, "is required");
  if (!LooksLikeId(id, prefix)) {
    return FieldError(
        field, kInvalidFormat,
        absl::StrCat("must be an id starting with '", prefix, "'"));
  }
  return absl::OkStatus();
}

absl::Status ValidateRequestId(absl::string_view request_id) {
  RETURN_IF_ERROR(CheckLength(request_id, kMaxRequestIdChars, "request_id"));
  for (char c : request_id) {
    if (!absl::ascii_isprint(static_cast<unsigned char>(c))) {
      return FieldError("request_id", kInvalidFormat,
                        "must be printable ASCII");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateMetadata(
    const google::protobuf::Map<std::string, std::string>& metadata,
    absl::string_view field) {
  RETURN_IF_ERROR(CheckCount(metadata.size(), kMaxMetadataPairs, field));
  for (const auto& [key, value] : metadata) {
    std::string entry = absl::StrCat(field, "[", key, "]");
    if (key.empty()) {
      return FieldError(field, kFieldRequired, "keys must not be empty");
    }
    if (CharCount(key) > kMaxMetadataKeyChars) {
      return FieldError(field, kFieldTooLong,
                        absl::StrCat("keys must be at most ",
                                     kMaxMetadataKeyChars, " characters long"));
    }
    RETURN_IF_ERROR(CheckLength(value, kMaxMetadataValueChars, entry));
  }
  return absl::OkStatus();
}

absl::Status ValidateTools(
    const google::protobuf::RepeatedPtrField<v1::Tool>& tools,
    absl::string_view field) {
  RETURN_IF_ERROR(CheckCount(tools.size(), kMaxTools, field));
  absl::flat_hash_set<std::string> function_names;
  for (int i = 0; i < tools.size(); ++i) {
    std::string item = absl::StrCat(field, "[", i, "]");
    const v1::Tool& tool = tools[i];
    switch (tool.tool_case()) {
      case v1::Tool::kFunction: {
        std::string fn_field = absl::StrCat(item, ".function.function");
        RETURN_IF_ERROR(ValidateFunction(tool.function().function(), fn_field));
        if (!function_names.insert(tool.function().function().name()).second) {
          return FieldError(
              absl::StrCat(fn_field, ".name"), kDuplicateValue,
              absl::StrCat("function '", tool.function().function().name(),
                           "' is defined twice"));
        }
        break;
      }
      case v1::Tool::kFileSearch: {
        int max_results = tool.file_search().max_num_results();
        if (max_results < 0 || max_results > 50) {
          return FieldError(absl::StrCat(item, ".file_search.max_num_results"),
                            kValueOutOfRange, "must be between 1 and 50");
        }
        double threshold =
            tool.file_search().ranking_options().score_threshold();
        RETURN_IF_ERROR(CheckRange(
            threshold, 0, 1,
            absl::StrCat(item,
                         ".file_search.ranking_options.score_threshold")));
        break;
      }
      case v1::Tool::kCodeInterpreter:
        break;
      case v1::Tool::TOOL_NOT_SET:
        return FieldError(item, kFieldRequired,
                          "set one of function, code_interpreter or "
                          "file_search");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateToolResources(const v1::ToolResources& resources,
                                   absl::string_view field) {
  RETURN_IF_ERROR(CheckCount(
      resources.code_interpreter().file_ids_size(), kMaxCodeInterpreterFiles,
      absl::StrCat(field, ".code_interpreter.file_ids")));
  return CheckCount(resources.file_search().vector_store_ids_size(),
                    kMaxVectorStores,
                    absl::StrCat(field, ".file_search.vector_store_ids"));
}

absl::Status ValidateResponseFormat(const v1::ResponseFormat& format,
                                    absl::string_view field) {
  if (format.type() == v1::ResponseFormat::TYPE_JSON_SCHEMA) {
    if (!format.has_json_schema()) {
      return FieldError(absl::StrCat(field, ".json_schema"), kFieldRequired,
                        "is required when type is TYPE_JSON_SCHEMA");
    }
    RETURN_IF_ERROR(CheckName(format.json_schema().name(),
                              absl::StrCat(field, ".json_schema.name")));
    return CheckObjectSchema(format.json_schema().schema(),
                             absl::StrCat(field, ".json_schema.schema"));
  }
  if (format.has_json_schema()) {
    return FieldError(absl::StrCat(field, ".json_schema"), kInvalidValue,
                      "is only allowed when type is TYPE_JSON_SCHEMA");
  }
  if (!v1::ResponseFormat::Type_IsValid(format.type())) {
    return FieldError(absl::StrCat(field, ".type"), kInvalidValue,
                      "unknown response format type");
  }
  return absl::OkStatus();
}

absl::Status ValidateAssistant(const v1::Assistant& assistant) {
  if (assistant.model().empty()) {
    return FieldError("model", kFieldRequired, "is required");
  }
  RETURN_IF_ERROR(CheckLength(assistant.model(), kMaxModelChars, "model"));
  RETURN_IF_ERROR(CheckLength(assistant.name(), kMaxNameChars, "name"));
  RETURN_IF_ERROR(CheckLength(assistant.description(), kMaxDescriptionChars,
                              "description"));
  RETURN_IF_ERROR(CheckLength(assistant.instructions(), kMaxInstructionsChars,
                              "instructions"));
  RETURN_IF_ERROR(ValidateTools(assistant.tools(), "tools"));
  RETURN_IF_ERROR(
      ValidateToolResources(assistant.tool_resources(), "tool_resources"));
  RETURN_IF_ERROR(ValidateMetadata(assistant.metadata(), "metadata"));
  if (assistant.has_temperature()) {
    RETURN_IF_ERROR(CheckRange(assistant.temperature(), 0, 2, "temperature"));
  }
  if (assistant.has_top_p()) {
    RETURN_IF_ERROR(CheckRange(assistant.top_p(), 0, 1, "top_p"));
  }
  RETURN_IF_ERROR(
      ValidateResponseFormat(assistant.response_format(), "response_format"));
  return CheckLength(assistant.upstream(), kMaxUpstreamChars, "upstream");
}

absl::Status ValidateMessageInput(const v1::MessageInput& input,
                                  absl::string_view field) {
  if (input.role() != v1::MESSAGE_ROLE_USER &&
      input.role() != v1::MESSAGE_ROLE_ASSISTANT) {
    return FieldError(absl::StrCat(field, ".role"), kInvalidValue,
                      "must be MESSAGE_ROLE_USER or MESSAGE_ROLE_ASSISTANT");
  }
  bool has_text = !input.text().empty();
  bool has_parts = input.content_size() > 0;
  if (has_text && has_parts) {
    return FieldError(absl::StrCat(field, ".content"), kInvalidValue,
                      "give either text or content parts, not both");
  }
  if (!has_text && !has_parts) {
    return FieldError(absl::StrCat(field, ".content"), kFieldRequired,
                      "message content must not be empty");
  }
  RETURN_IF_ERROR(CheckLength(input.text(), kMaxMessageTextChars,
                              absl::StrCat(field, ".text")));
  RETURN_IF_ERROR(CheckCount(input.content_size(), kMaxContentParts,
                             absl::StrCat(field, ".content")));
  for (int i = 0; i < input.content_size(); ++i) {
    RETURN_IF_ERROR(ValidateContentPart(
        input.content(i), absl::StrCat(field, ".content[", i, "]")));
  }
  RETURN_IF_ERROR(CheckCount(input.attachments_size(), kMaxAttachments,
                             absl::StrCat(field, ".attachments")));
  for (int i = 0; i < input.attachments_size(); ++i) {
    const v1::Attachment& attachment = input.attachments(i);
    std::string item = absl::StrCat(field, ".attachments[", i, "]");
    if (attachment.file_id().empty()) {
      return FieldError(absl::StrCat(item, ".file_id"), kFieldRequired,
                        "is required");
    }
    for (int j = 0; j < attachment.tools_size(); ++j) {
      if (attachment.tools(j).tool_case() == v1::AttachmentTool::TOOL_NOT_SET) {
        return FieldError(absl::StrCat(item, ".tools[", j, "]"), kFieldRequired,
                          "set code_interpreter or file_search");
      }
    }
  }
  return ValidateMetadata(input.metadata(), absl::StrCat(field, ".metadata"));
}

absl::StatusOr<ListQuery> ToListQuery(const v1::ListOptions& options,
                                      absl::string_view field) {
  ListQuery query;
  if (options.limit() != 0) {
    if (options.limit() < 1 || options.limit() > kMaxListLimit) {
      return FieldError(absl::StrCat(field, ".limit"), kValueOutOfRange,
                        "must be between 1 and 100");
    }
    query.limit = options.limit();
  } else {
    query.limit = kDefaultListLimit;
  }
  switch (options.order()) {
    case v1::LIST_ORDER_ASC:
      query.ascending = true;
      break;
    case v1::LIST_ORDER_UNSPECIFIED:
    case v1::LIST_ORDER_DESC:
      query.ascending = false;
      break;
    default:
      return FieldError(absl::StrCat(field, ".order"), kInvalidValue,
                        "must be LIST_ORDER_ASC or LIST_ORDER_DESC");
  }
  for (auto [cursor, name] : {std::pair<const std::string&, absl::string_view>(
                                  options.after(), "after"),
                              {options.before(), "before"}}) {
    if (cursor.size() > 128) {
      return FieldError(absl::StrCat(field, ".", name), kFieldTooLong,
                        "must be at most 128 characters long");
    }
  }
  query.after = options.after();
  query.before = options.before();
  return query;
}

}  // namespace assistants
