// Validation of client input against OpenAI's Assistants limits. Each check
// returns INVALID_ARGUMENT built by FieldError(): a reason below and the
// offending field path (for example "tools[2].function.name"), so a client
// learns exactly what to fix. Checks run on whole objects (an assistant as it
// would be stored), so create and partial update share one rule set.
#ifndef SERVICE_CORE_VALIDATION_H_
#define SERVICE_CORE_VALIDATION_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "assistants/v1/assistant.pb.h"
#include "assistants/v1/common.pb.h"
#include "assistants/v1/message.pb.h"
#include "assistants/v1/thread.pb.h"
#include "google/protobuf/map.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "service/store/store.h"

namespace assistants {

// Reasons carried by validation errors (ErrorInfo.reason).
inline constexpr absl::string_view kFieldRequired = "FIELD_REQUIRED";
inline constexpr absl::string_view kFieldTooLong = "FIELD_TOO_LONG";
inline constexpr absl::string_view kTooManyItems = "TOO_MANY_ITEMS";
inline constexpr absl::string_view kValueOutOfRange = "VALUE_OUT_OF_RANGE";
inline constexpr absl::string_view kInvalidFormat = "INVALID_FORMAT";
inline constexpr absl::string_view kInvalidValue = "INVALID_VALUE";
inline constexpr absl::string_view kDuplicateValue = "DUPLICATE_VALUE";

// OpenAI's limits, and the gateway's where OpenAI published none.
inline constexpr size_t kMaxModelChars = 256;
inline constexpr size_t kMaxNameChars = 256;
inline constexpr size_t kMaxDescriptionChars = 512;
inline constexpr size_t kMaxInstructionsChars = 256'000;
inline constexpr int kMaxTools = 128;
inline constexpr size_t kMaxFunctionDescriptionChars = 1'024;
inline constexpr int kMaxMetadataPairs = 16;
inline constexpr size_t kMaxMetadataKeyChars = 64;
inline constexpr size_t kMaxMetadataValueChars = 512;
inline constexpr int kMaxCodeInterpreterFiles = 20;
inline constexpr int kMaxVectorStores = 1;
inline constexpr size_t kMaxMessageTextChars = 256'000;
inline constexpr int kMaxContentParts = 64;
inline constexpr int kMaxAttachments = 10;
inline constexpr int kMaxInitialMessages = 32;
inline constexpr size_t kMaxRequestIdChars = 256;
inline constexpr size_t kMaxUpstreamChars = 64;
inline constexpr int kMaxListLimit = 100;
inline constexpr int kDefaultListLimit = 20;

// Number of Unicode code points in valid UTF-8 `s` (OpenAI counts
// characters, not bytes).
size_t CharCount(absl::string_view s);

// `id` must be non-empty and shaped like an id with `prefix`.
absl::Status ValidateId(absl::string_view id, absl::string_view prefix,
                        absl::string_view field);

// `value` is finite and within [low, high].
absl::Status ValidateRange(double value, double low, double high,
                           absl::string_view field);

// The optional idempotency key of create/submit requests.
absl::Status ValidateRequestId(absl::string_view request_id);

// <= 16 pairs, keys 1..64 chars, values <= 512 chars.
absl::Status ValidateMetadata(
    const google::protobuf::Map<std::string, std::string>& metadata,
    absl::string_view field);

// A function definition: name ^[a-zA-Z0-9_-]{1,64}$, description <= 1,024
// characters, parameters (when set) a JSON Schema object.
absl::Status ValidateFunction(const v1::FunctionDefinition& function,
                              absl::string_view field);

// <= 128 tools, each with exactly one type; function names
// ^[a-zA-Z0-9_-]{1,64}$ and unique; parameters a JSON Schema object.
absl::Status ValidateTools(
    const google::protobuf::RepeatedPtrField<v1::Tool>& tools,
    absl::string_view field);

absl::Status ValidateToolResources(const v1::ToolResources& resources,
                                   absl::string_view field);

absl::Status ValidateResponseFormat(const v1::ResponseFormat& format,
                                    absl::string_view field);

// An assistant as it will be stored (after create or a partial update).
absl::Status ValidateAssistant(const v1::Assistant& assistant);

// The body of a new message; `field` is its path ("message",
// "messages[3]").
absl::Status ValidateMessageInput(const v1::MessageInput& input,
                                  absl::string_view field);

// Limit, order and cursors of a list call, turned into a store query.
absl::StatusOr<ListQuery> ToListQuery(const v1::ListOptions& options,
                                      absl::string_view field);

}  // namespace assistants

#endif  // SERVICE_CORE_VALIDATION_H_
