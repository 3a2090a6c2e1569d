// Handlers of AssistantService, ThreadService, MessageService and
// RunService: each forwards its request to the core (or run engine) method
// of the same name.
#include <string>

#include "absl/strings/str_cat.h"
#include "service/api/services.h"
#include "service/api/unary.h"

namespace assistants {
namespace {

// "/package.Service/Method": what admission matches open methods against.
// Made once per handler and never freed (a function-local static).
const std::string* MethodPath(absl::string_view service,
                              absl::string_view method) {
  return new std::string(absl::StrCat("/", service, "/", method));
}

}  // namespace

// Defines Service::Method as "admit the call, then run Target->Method on
// the executor" (Target is resources_ or engine_). Creates and lists act
// within the caller's project (FORWARD_IN_PROJECT); calls on objects by id
// (FORWARD) need not know it: admission has checked the ids are the
// project's.
#define FORWARD(Service, Target, Method)                                    \
  grpc::ServerUnaryReactor* Service::Method(                                \
      grpc::CallbackServerContext* context,                                 \
      const v1::Method##Request* request, v1::Method##Response* response) { \
    static const std::string* const kPath =                                 \
        MethodPath(Proto::service_full_name(), #Method);                    \
    return HandleUnary(context, *kPath, executor_, admission_, request,     \
                       response, [this, request](const auth::Principal&) {  \
                         return Target->Method(*request);                   \
                       });                                                  \
  }
#define FORWARD_IN_PROJECT(Service, Target, Method)                          \
  grpc::ServerUnaryReactor* Service::Method(                                 \
      grpc::CallbackServerContext* context,                                  \
      const v1::Method##Request* request, v1::Method##Response* response) {  \
    static const std::string* const kPath =                                  \
        MethodPath(Proto::service_full_name(), #Method);                     \
    return HandleUnary(context, *kPath, executor_, admission_, request,      \
                       response, [this, request](const auth::Principal& c) { \
                         return Target->Method(c.project, *request);         \
                       });                                                   \
  }

FORWARD_IN_PROJECT(AssistantServiceImpl, resources_, CreateAssistant)
FORWARD(AssistantServiceImpl, resources_, GetAssistant)
FORWARD_IN_PROJECT(AssistantServiceImpl, resources_, ListAssistants)
FORWARD(AssistantServiceImpl, resources_, UpdateAssistant)
FORWARD(AssistantServiceImpl, resources_, DeleteAssistant)

FORWARD_IN_PROJECT(ThreadServiceImpl, resources_, CreateThread)
FORWARD(ThreadServiceImpl, resources_, GetThread)
FORWARD(ThreadServiceImpl, resources_, UpdateThread)
FORWARD(ThreadServiceImpl, resources_, DeleteThread)

FORWARD_IN_PROJECT(MessageServiceImpl, resources_, CreateMessage)
FORWARD(MessageServiceImpl, resources_, GetMessage)
FORWARD(MessageServiceImpl, resources_, ListMessages)
FORWARD(MessageServiceImpl, resources_, UpdateMessage)
FORWARD(MessageServiceImpl, resources_, DeleteMessage)

FORWARD_IN_PROJECT(RunServiceImpl, engine_, CreateRun)
FORWARD_IN_PROJECT(RunServiceImpl, engine_, CreateThreadAndRun)
FORWARD(RunServiceImpl, engine_, GetRun)
FORWARD(RunServiceImpl, engine_, ListRuns)
FORWARD(RunServiceImpl, engine_, UpdateRun)
FORWARD(RunServiceImpl, engine_, CancelRun)
FORWARD_IN_PROJECT(RunServiceImpl, engine_, SubmitToolOutputs)
FORWARD(RunServiceImpl, engine_, GetRunStep)
FORWARD(RunServiceImpl, engine_, ListRunSteps)

grpc::ServerWriteReactor<v1::RunEventsResponse>* RunServiceImpl::RunEvents(
    grpc::CallbackServerContext* context, const v1::RunEventsRequest* request) {
  return StartRunEventsStream(context, *request, engine_, executor_, timers_,
                              clock_, &streams_, admission_, stream_options_);
}

#undef FORWARD_IN_PROJECT
#undef FORWARD

}  // namespace assistants
