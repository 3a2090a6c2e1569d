// Handlers of AssistantService, ThreadService, MessageService and
// RunService: each forwards its request to the core (or run engine) method
// of the same name.
#include "service/api/services.h"
#include "service/api/unary.h"

namespace assistants {

// Defines Service::Method as "run Resources::Method on the executor".
#define FORWARD_TO_CORE(Service, Method)                                    \
  grpc::ServerUnaryReactor* Service::Method(                                \
      grpc::CallbackServerContext* context,                                 \
      const v1::Method##Request* request, v1::Method##Response* response) { \
    return HandleUnary(context, executor_, response, [this, request] {      \
      return resources_->Method(*request);                                  \
    });                                                                     \
  }

FORWARD_TO_CORE(AssistantServiceImpl, CreateAssistant)
FORWARD_TO_CORE(AssistantServiceImpl, GetAssistant)
FORWARD_TO_CORE(AssistantServiceImpl, ListAssistants)
FORWARD_TO_CORE(AssistantServiceImpl, UpdateAssistant)
FORWARD_TO_CORE(AssistantServiceImpl, DeleteAssistant)

FORWARD_TO_CORE(ThreadServiceImpl, CreateThread)
FORWARD_TO_CORE(ThreadServiceImpl, GetThread)
FORWARD_TO_CORE(ThreadServiceImpl, UpdateThread)
FORWARD_TO_CORE(ThreadServiceImpl, DeleteThread)

FORWARD_TO_CORE(MessageServiceImpl, CreateMessage)
FORWARD_TO_CORE(MessageServiceImpl, GetMessage)
FORWARD_TO_CORE(MessageServiceImpl, ListMessages)
FORWARD_TO_CORE(MessageServiceImpl, UpdateMessage)
FORWARD_TO_CORE(MessageServiceImpl, DeleteMessage)

// Defines RunServiceImpl::Method as "run RunEngine::Method on the executor".
#define FORWARD_TO_ENGINE(Method)                                              \
  grpc::ServerUnaryReactor* RunServiceImpl::Method(                            \
      grpc::CallbackServerContext* context,                                    \
      const v1::Method##Request* request, v1::Method##Response* response) {    \
    return HandleUnary(context, executor_, response,                           \
                       [this, request] { return engine_->Method(*request); }); \
  }

FORWARD_TO_ENGINE(CreateRun)
FORWARD_TO_ENGINE(CreateThreadAndRun)
FORWARD_TO_ENGINE(GetRun)
FORWARD_TO_ENGINE(ListRuns)
FORWARD_TO_ENGINE(UpdateRun)
FORWARD_TO_ENGINE(CancelRun)
FORWARD_TO_ENGINE(SubmitToolOutputs)
FORWARD_TO_ENGINE(GetRunStep)
FORWARD_TO_ENGINE(ListRunSteps)

grpc::ServerWriteReactor<v1::RunEventsResponse>* RunServiceImpl::RunEvents(
    grpc::CallbackServerContext* context, const v1::RunEventsRequest* request) {
  return StartRunEventsStream(context, *request, engine_, executor_, timers_,
                              clock_, &streams_, stream_options_);
}

#undef FORWARD_TO_ENGINE
#undef FORWARD_TO_CORE

}  // namespace assistants
