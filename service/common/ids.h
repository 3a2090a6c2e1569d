// Object ids: an OpenAI-style prefix ("asst_", "thread_", "msg_", "run_",
// "step_", "call_") followed by 128 bits from the kernel's CSPRNG in base62,
// so ids are unguessable and cannot be enumerated.
#ifndef SERVICE_COMMON_IDS_H_
#define SERVICE_COMMON_IDS_H_

#include <string>

#include "absl/strings/string_view.h"

namespace assistants {

inline constexpr absl::string_view kAssistantPrefix = "asst_";
inline constexpr absl::string_view kThreadPrefix = "thread_";
inline constexpr absl::string_view kMessagePrefix = "msg_";
inline constexpr absl::string_view kRunPrefix = "run_";
inline constexpr absl::string_view kStepPrefix = "step_";
inline constexpr absl::string_view kCallPrefix = "call_";

// A new id: `prefix` + 22 base62 characters (128 random bits).
std::string NewId(absl::string_view prefix);

// Whether `id` could be an id with `prefix`: the prefix, then 1..64 characters
// of [A-Za-z0-9_-]. Used to reject malformed ids before touching the store.
bool LooksLikeId(absl::string_view id, absl::string_view prefix);

}  // namespace assistants

#endif  // SERVICE_COMMON_IDS_H_
