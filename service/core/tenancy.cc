#include "service/core/tenancy.h"

#include <vector>

#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"
#include "service/common/errors.h"
#include "service/common/ids.h"
#include "service/common/status_macros.h"
#include "service/core/validation.h"
#include "service/store/store_errors.h"

namespace assistants {
namespace {

using google::protobuf::FieldDescriptor;

// Requests nest a few levels at most (RunEvents > start > options); the
// bound keeps a pathological message from recursing deeply.
constexpr int kMaxDepth = 8;

}  // namespace

absl::Status Tenancy::CheckAccess(absl::string_view project,
                                  const google::protobuf::Message& request) {
  return CheckFields(project, request, 0);
}

absl::Status Tenancy::CheckFields(absl::string_view project,
                                  const google::protobuf::Message& message,
                                  int depth) {
  if (depth > kMaxDepth) return absl::OkStatus();
  const google::protobuf::Reflection* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    if (field->is_repeated()) continue;
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      RETURN_IF_ERROR(CheckFields(
          project, reflection->GetMessage(message, field), depth + 1));
      continue;
    }
    if (field->cpp_type() != FieldDescriptor::CPPTYPE_STRING) continue;
    if (field->name() == "assistant_id") {
      const std::string id = reflection->GetString(message, field);
      if (ValidateId(id, kAssistantPrefix, "assistant_id").ok()) {
        RETURN_IF_ERROR(CheckOwned(project, OwnedKind::kAssistant, id));
      }
    } else if (field->name() == "thread_id") {
      const std::string id = reflection->GetString(message, field);
      if (ValidateId(id, kThreadPrefix, "thread_id").ok()) {
        RETURN_IF_ERROR(CheckOwned(project, OwnedKind::kThread, id));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Tenancy::CheckOwned(absl::string_view project, OwnedKind kind,
                                 const std::string& id) {
  std::string owner;
  bool cached = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = owners_.find(id);
    if (it != owners_.end()) {
      owner = it->second;
      cached = true;
    }
  }
  if (!cached) {
    absl::StatusOr<std::string> stored = store_->GetProject(kind, id);
    // A missing object is the operation's to report (with its own wording).
    if (stored.status().code() == absl::StatusCode::kNotFound) {
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(stored.status());
    owner = *std::move(stored);
    absl::MutexLock lock(&mu_);
    // Clearing all at the bound is crude but keeps memory fixed and the
    // common case (a working set far below it) a single hash lookup.
    if (owners_.size() >= cache_entries_) owners_.clear();
    owners_.emplace(id, owner);
  }
  if (owner == project) return absl::OkStatus();
  return NotFound(kind == OwnedKind::kAssistant ? kAssistantKind : kThreadKind,
                  id);
}

}  // namespace assistants
