#include "service/core/objects.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "service/common/errors.h"
#include "service/common/ids.h"

namespace assistants {

v1::Message NewMessage(const v1::MessageInput& input,
                       absl::string_view thread_id, int64_t now_seconds) {
  v1::Message message;
  message.set_id(NewId(kMessagePrefix));
  message.set_object("thread.message");
  message.set_created_at(now_seconds);
  message.set_thread_id(std::string(thread_id));
  message.set_status(v1::MESSAGE_STATUS_COMPLETED);
  message.set_role(input.role());
  if (!input.text().empty()) {
    message.add_content()->mutable_text()->set_value(input.text());
  } else {
    *message.mutable_content() = input.content();
  }
  *message.mutable_attachments() = input.attachments();
  *message.mutable_metadata() = input.metadata();
  return message;
}

absl::Status InRequestPaths(absl::Status status) {
  if (ErrorReason(status) != "INVALID_CURSOR") return status;
  std::optional<google::rpc::BadRequest> bad_request = GetBadRequest(status);
  if (!bad_request.has_value() || bad_request->field_violations_size() != 1) {
    return status;
  }
  const auto& violation = bad_request->field_violations(0);
  return FieldError(absl::StrCat("options.", violation.field()),
                    "INVALID_CURSOR", violation.description());
}

}  // namespace assistants
