#include "service/core/resources.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "service/common/errors.h"
#include "service/common/ids.h"
#include "service/common/status_macros.h"
#include "service/core/objects.h"
#include "service/core/validation.h"

namespace assistants {
namespace {

template <typename Response>
Response DeletedResponse(absl::string_view id, absl::string_view object) {
  Response response;
  response.set_id(std::string(id));
  response.set_object(std::string(object));
  response.set_deleted(true);
  return response;
}

// The fields UpdateAssistant can write, by update_mask path. `present` says
// whether the request carries the field (OpenAI's "fields present" rule when
// no mask is given); `apply` copies it into the assistant (clearing it when
// the request leaves it unset).
struct AssistantField {
  absl::string_view path;
  bool (*present)(const v1::UpdateAssistantRequest&);
  void (*apply)(const v1::UpdateAssistantRequest&, v1::Assistant&);
};

// clang-format off
#define OPTIONAL_SCALAR_FIELD(field)                                        \
  AssistantField{                                                          \
      #field,                                                              \
      [](const v1::UpdateAssistantRequest& r) { return r.has_##field(); }, \
      [](const v1::UpdateAssistantRequest& r, v1::Assistant& a) {          \
        if (r.has_##field()) {                                             \
          a.set_##field(r.field());                                        \
        } else {                                                           \
          a.clear_##field();                                               \
        }                                                                  \
      }}

#define MESSAGE_FIELD(field, is_present)                                    \
  AssistantField{                                                          \
      #field,                                                              \
      [](const v1::UpdateAssistantRequest& r) { return is_present; },      \
      [](const v1::UpdateAssistantRequest& r, v1::Assistant& a) {          \
        *a.mutable_##field() = r.field();                                  \
      }}
// clang-format on

const std::vector<AssistantField>& AssistantFields() {
  static const auto* fields = new std::vector<AssistantField>{
      OPTIONAL_SCALAR_FIELD(model),
      OPTIONAL_SCALAR_FIELD(name),
      OPTIONAL_SCALAR_FIELD(description),
      OPTIONAL_SCALAR_FIELD(instructions),
      OPTIONAL_SCALAR_FIELD(temperature),
      OPTIONAL_SCALAR_FIELD(top_p),
      OPTIONAL_SCALAR_FIELD(upstream),
      MESSAGE_FIELD(tools, r.tools_size() > 0),
      MESSAGE_FIELD(metadata, !r.metadata().empty()),
      MESSAGE_FIELD(tool_resources, r.has_tool_resources()),
      MESSAGE_FIELD(response_format, r.has_response_format()),
  };
  return *fields;
}

#undef OPTIONAL_SCALAR_FIELD
#undef MESSAGE_FIELD

// Applies `request` to `assistant` by update_mask or, without one, by field
// presence.
absl::Status ApplyAssistantUpdate(const v1::UpdateAssistantRequest& request,
                                  v1::Assistant& assistant) {
  const std::vector<AssistantField>& fields = AssistantFields();
  if (!request.has_update_mask()) {
    for (const AssistantField& field : fields) {
      if (field.present(request)) field.apply(request, assistant);
    }
    return absl::OkStatus();
  }
  for (int i = 0; i < request.update_mask().paths_size(); ++i) {
    const std::string& path = request.update_mask().paths(i);
    auto it =
        std::find_if(fields.begin(), fields.end(),
                     [&](const AssistantField& f) { return f.path == path; });
    if (it == fields.end()) {
      return FieldError(absl::StrCat("update_mask.paths[", i, "]"),
                        kInvalidValue,
                        absl::StrCat("'", path, "' is not an updatable field"));
    }
    it->apply(request, assistant);
  }
  return absl::OkStatus();
}

}  // namespace

// --- Idempotency ---

template <typename Request, typename Response>
absl::StatusOr<Response> Resources::Idempotent(
    absl::string_view method, absl::string_view project, const Request& request,
    const std::function<absl::StatusOr<Response>()>& build,
    const std::function<absl::Status(const Response&,
                                     const IdempotencyRecord*)>& persist) {
  return idempotency_.Run<Request, Response>(
      method, project, request,
      [&](IdempotencyRecord* record) -> absl::StatusOr<Response> {
        ASSIGN_OR_RETURN(Response response, build());
        if (record != nullptr) record->response = response.SerializeAsString();
        RETURN_IF_ERROR(persist(response, record));
        return response;
      });
}

// --- Assistants ---

absl::StatusOr<v1::CreateAssistantResponse> Resources::CreateAssistant(
    absl::string_view project, const v1::CreateAssistantRequest& request) {
  using Response = v1::CreateAssistantResponse;
  return Idempotent<v1::CreateAssistantRequest, Response>(
      "CreateAssistant", project, request,
      [&]() -> absl::StatusOr<Response> {
        Response response;
        v1::Assistant& assistant = *response.mutable_assistant();
        assistant.set_id(NewId(kAssistantPrefix));
        assistant.set_object("assistant");
        assistant.set_created_at(clock_->NowSeconds());
        assistant.set_model(request.model());
        if (request.has_name()) assistant.set_name(request.name());
        if (request.has_description()) {
          assistant.set_description(request.description());
        }
        if (request.has_instructions()) {
          assistant.set_instructions(request.instructions());
        }
        *assistant.mutable_tools() = request.tools();
        *assistant.mutable_tool_resources() = request.tool_resources();
        *assistant.mutable_metadata() = request.metadata();
        if (request.has_temperature()) {
          assistant.set_temperature(request.temperature());
        }
        if (request.has_top_p()) assistant.set_top_p(request.top_p());
        *assistant.mutable_response_format() = request.response_format();
        assistant.set_upstream(request.upstream());
        RETURN_IF_ERROR(ValidateAssistant(assistant));
        return response;
      },
      [&](const Response& response, const IdempotencyRecord* record) {
        return store_->CreateAssistant(response.assistant(), project, record);
      });
}

absl::StatusOr<v1::GetAssistantResponse> Resources::GetAssistant(
    const v1::GetAssistantRequest& request) {
  RETURN_IF_ERROR(
      ValidateId(request.assistant_id(), kAssistantPrefix, "assistant_id"));
  v1::GetAssistantResponse response;
  ASSIGN_OR_RETURN(*response.mutable_assistant(),
                   store_->GetAssistant(request.assistant_id()));
  return response;
}

absl::StatusOr<v1::ListAssistantsResponse> Resources::ListAssistants(
    absl::string_view project, const v1::ListAssistantsRequest& request) {
  ASSIGN_OR_RETURN(ListQuery query, ToListQuery(request.options(), "options"));
  absl::StatusOr<Page<v1::Assistant>> page =
      store_->ListAssistants(project, query);
  if (!page.ok()) return InRequestPaths(page.status());
  return ToListResponse<v1::ListAssistantsResponse>(*std::move(page));
}

absl::StatusOr<v1::UpdateAssistantResponse> Resources::UpdateAssistant(
    const v1::UpdateAssistantRequest& request) {
  RETURN_IF_ERROR(
      ValidateId(request.assistant_id(), kAssistantPrefix, "assistant_id"));
  v1::UpdateAssistantResponse response;
  ASSIGN_OR_RETURN(
      *response.mutable_assistant(),
      store_->UpdateAssistant(
          request.assistant_id(), [&](v1::Assistant& assistant) {
            RETURN_IF_ERROR(ApplyAssistantUpdate(request, assistant));
            return ValidateAssistant(assistant);
          }));
  return response;
}

absl::StatusOr<v1::DeleteAssistantResponse> Resources::DeleteAssistant(
    const v1::DeleteAssistantRequest& request) {
  RETURN_IF_ERROR(
      ValidateId(request.assistant_id(), kAssistantPrefix, "assistant_id"));
  RETURN_IF_ERROR(store_->DeleteAssistant(request.assistant_id()));
  return DeletedResponse<v1::DeleteAssistantResponse>(request.assistant_id(),
                                                      "assistant.deleted");
}

// --- Threads ---

absl::StatusOr<v1::CreateThreadResponse> Resources::CreateThread(
    absl::string_view project, const v1::CreateThreadRequest& request) {
  using Response = v1::CreateThreadResponse;
  std::vector<v1::Message> messages;
  return Idempotent<v1::CreateThreadRequest, Response>(
      "CreateThread", project, request,
      [&]() -> absl::StatusOr<Response> {
        if (request.messages_size() > kMaxInitialMessages) {
          return FieldError("messages", kTooManyItems,
                            absl::StrCat("must have at most ",
                                         kMaxInitialMessages, " items"));
        }
        for (int i = 0; i < request.messages_size(); ++i) {
          RETURN_IF_ERROR(ValidateMessageInput(
              request.messages(i), absl::StrCat("messages[", i, "]")));
        }
        RETURN_IF_ERROR(
            ValidateToolResources(request.tool_resources(), "tool_resources"));
        RETURN_IF_ERROR(ValidateMetadata(request.metadata(), "metadata"));
        Response response;
        v1::Thread& thread = *response.mutable_thread();
        thread.set_id(NewId(kThreadPrefix));
        thread.set_object("thread");
        thread.set_created_at(clock_->NowSeconds());
        *thread.mutable_tool_resources() = request.tool_resources();
        *thread.mutable_metadata() = request.metadata();
        for (const v1::MessageInput& input : request.messages()) {
          messages.push_back(
              NewMessage(input, thread.id(), clock_->NowSeconds()));
        }
        return response;
      },
      [&](const Response& response, const IdempotencyRecord* record) {
        return store_->CreateThread(response.thread(), project, messages,
                                    record);
      });
}

absl::StatusOr<v1::GetThreadResponse> Resources::GetThread(
    const v1::GetThreadRequest& request) {
  RETURN_IF_ERROR(ValidateId(request.thread_id(), kThreadPrefix, "thread_id"));
  v1::GetThreadResponse response;
  ASSIGN_OR_RETURN(*response.mutable_thread(),
                   store_->GetThread(request.thread_id()));
  return response;
}

absl::StatusOr<v1::UpdateThreadResponse> Resources::UpdateThread(
    const v1::UpdateThreadRequest& request) {
  RETURN_IF_ERROR(ValidateId(request.thread_id(), kThreadPrefix, "thread_id"));
  RETURN_IF_ERROR(
      ValidateToolResources(request.tool_resources(), "tool_resources"));
  RETURN_IF_ERROR(ValidateMetadata(request.metadata(), "metadata"));
  bool write_resources = request.has_tool_resources();
  bool write_metadata = !request.metadata().empty();
  if (request.has_update_mask()) {
    write_resources = write_metadata = false;
    for (int i = 0; i < request.update_mask().paths_size(); ++i) {
      const std::string& path = request.update_mask().paths(i);
      if (path == "tool_resources") {
        write_resources = true;
      } else if (path == "metadata") {
        write_metadata = true;
      } else {
        return FieldError(
            absl::StrCat("update_mask.paths[", i, "]"), kInvalidValue,
            absl::StrCat("'", path, "' is not an updatable field"));
      }
    }
  }
  v1::UpdateThreadResponse response;
  ASSIGN_OR_RETURN(
      *response.mutable_thread(),
      store_->UpdateThread(request.thread_id(), [&](v1::Thread& thread) {
        if (write_resources) {
          *thread.mutable_tool_resources() = request.tool_resources();
        }
        if (write_metadata) {
          *thread.mutable_metadata() = request.metadata();
        }
        return absl::OkStatus();
      }));
  return response;
}

absl::StatusOr<v1::DeleteThreadResponse> Resources::DeleteThread(
    const v1::DeleteThreadRequest& request) {
  RETURN_IF_ERROR(ValidateId(request.thread_id(), kThreadPrefix, "thread_id"));
  RETURN_IF_ERROR(store_->DeleteThread(request.thread_id()));
  return DeletedResponse<v1::DeleteThreadResponse>(request.thread_id(),
                                                   "thread.deleted");
}

// --- Messages ---

absl::StatusOr<v1::CreateMessageResponse> Resources::CreateMessage(
    absl::string_view project, const v1::CreateMessageRequest& request) {
  using Response = v1::CreateMessageResponse;
  return Idempotent<v1::CreateMessageRequest, Response>(
      "CreateMessage", project, request,
      [&]() -> absl::StatusOr<Response> {
        RETURN_IF_ERROR(
            ValidateId(request.thread_id(), kThreadPrefix, "thread_id"));
        RETURN_IF_ERROR(ValidateMessageInput(request.message(), "message"));
        Response response;
        *response.mutable_message() = NewMessage(
            request.message(), request.thread_id(), clock_->NowSeconds());
        return response;
      },
      [&](const Response& response, const IdempotencyRecord* record) {
        return store_->CreateMessage(response.message(), record);
      });
}

absl::StatusOr<v1::GetMessageResponse> Resources::GetMessage(
    const v1::GetMessageRequest& request) {
  RETURN_IF_ERROR(ValidateId(request.thread_id(), kThreadPrefix, "thread_id"));
  RETURN_IF_ERROR(
      ValidateId(request.message_id(), kMessagePrefix, "message_id"));
  v1::GetMessageResponse response;
  ASSIGN_OR_RETURN(
      *response.mutable_message(),
      store_->GetMessage(request.thread_id(), request.message_id()));
  return response;
}

absl::StatusOr<v1::ListMessagesResponse> Resources::ListMessages(
    const v1::ListMessagesRequest& request) {
  RETURN_IF_ERROR(ValidateId(request.thread_id(), kThreadPrefix, "thread_id"));
  if (!request.run_id().empty()) {
    RETURN_IF_ERROR(ValidateId(request.run_id(), kRunPrefix, "run_id"));
  }
  ASSIGN_OR_RETURN(ListQuery query, ToListQuery(request.options(), "options"));
  absl::StatusOr<Page<v1::Message>> page =
      store_->ListMessages(request.thread_id(), request.run_id(), query);
  if (!page.ok()) return InRequestPaths(page.status());
  return ToListResponse<v1::ListMessagesResponse>(*std::move(page));
}

absl::StatusOr<v1::UpdateMessageResponse> Resources::UpdateMessage(
    const v1::UpdateMessageRequest& request) {
  RETURN_IF_ERROR(ValidateId(request.thread_id(), kThreadPrefix, "thread_id"));
  RETURN_IF_ERROR(
      ValidateId(request.message_id(), kMessagePrefix, "message_id"));
  RETURN_IF_ERROR(ValidateMetadata(request.metadata(), "metadata"));
  v1::UpdateMessageResponse response;
  ASSIGN_OR_RETURN(
      *response.mutable_message(),
      store_->UpdateMessage(request.thread_id(), request.message_id(),
                            [&](v1::Message& message) {
                              *message.mutable_metadata() = request.metadata();
                              return absl::OkStatus();
                            }));
  return response;
}

absl::StatusOr<v1::DeleteMessageResponse> Resources::DeleteMessage(
    const v1::DeleteMessageRequest& request) {
  RETURN_IF_ERROR(ValidateId(request.thread_id(), kThreadPrefix, "thread_id"));
  RETURN_IF_ERROR(
      ValidateId(request.message_id(), kMessagePrefix, "message_id"));
  RETURN_IF_ERROR(
      store_->DeleteMessage(request.thread_id(), request.message_id()));
  return DeletedResponse<v1::DeleteMessageResponse>(request.message_id(),
                                                    "thread.message.deleted");
}

}  // namespace assistants
