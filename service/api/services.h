// gRPC adapters (callback API) for the public services. Each handler is a
// thin adapter: it hands the request to the core on the executor and maps
// the result; no business rules live here.
#ifndef SERVICE_API_SERVICES_H_
#define SERVICE_API_SERVICES_H_

#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/message.grpc.pb.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "assistants/v1/thread.grpc.pb.h"
#include "assistants/v1/tool_worker.grpc.pb.h"
#include "service/api/admission.h"
#include "service/api/run_events_stream.h"
#include "service/common/executor.h"
#include "service/common/timers.h"
#include "service/core/resources.h"
#include "service/runs/engine.h"
#include "tool_workers/registry.h"

namespace assistants {

class AssistantServiceImpl final
    : public v1::AssistantService::CallbackService {
 public:
  using Proto = v1::AssistantService;

  AssistantServiceImpl(Resources* resources, Executor* executor,
                       Admission* admission)
      : resources_(resources), executor_(executor), admission_(admission) {}

  grpc::ServerUnaryReactor* CreateAssistant(
      grpc::CallbackServerContext* context,
      const v1::CreateAssistantRequest* request,
      v1::CreateAssistantResponse* response) override;
  grpc::ServerUnaryReactor* GetAssistant(
      grpc::CallbackServerContext* context,
      const v1::GetAssistantRequest* request,
      v1::GetAssistantResponse* response) override;
  grpc::ServerUnaryReactor* ListAssistants(
      grpc::CallbackServerContext* context,
      const v1::ListAssistantsRequest* request,
      v1::ListAssistantsResponse* response) override;
  grpc::ServerUnaryReactor* UpdateAssistant(
      grpc::CallbackServerContext* context,
      const v1::UpdateAssistantRequest* request,
      v1::UpdateAssistantResponse* response) override;
  grpc::ServerUnaryReactor* DeleteAssistant(
      grpc::CallbackServerContext* context,
      const v1::DeleteAssistantRequest* request,
      v1::DeleteAssistantResponse* response) override;

 private:
  Resources* resources_;
  Executor* executor_;
  Admission* admission_;
};

class ThreadServiceImpl final : public v1::ThreadService::CallbackService {
 public:
  using Proto = v1::ThreadService;

  ThreadServiceImpl(Resources* resources, Executor* executor,
                    Admission* admission)
      : resources_(resources), executor_(executor), admission_(admission) {}

  grpc::ServerUnaryReactor* CreateThread(
      grpc::CallbackServerContext* context,
      const v1::CreateThreadRequest* request,
      v1::CreateThreadResponse* response) override;
  grpc::ServerUnaryReactor* GetThread(grpc::CallbackServerContext* context,
                                      const v1::GetThreadRequest* request,
                                      v1::GetThreadResponse* response) override;
  grpc::ServerUnaryReactor* UpdateThread(
      grpc::CallbackServerContext* context,
      const v1::UpdateThreadRequest* request,
      v1::UpdateThreadResponse* response) override;
  grpc::ServerUnaryReactor* DeleteThread(
      grpc::CallbackServerContext* context,
      const v1::DeleteThreadRequest* request,
      v1::DeleteThreadResponse* response) override;

 private:
  Resources* resources_;
  Executor* executor_;
  Admission* admission_;
};

class MessageServiceImpl final : public v1::MessageService::CallbackService {
 public:
  using Proto = v1::MessageService;

  MessageServiceImpl(Resources* resources, Executor* executor,
                     Admission* admission)
      : resources_(resources), executor_(executor), admission_(admission) {}

  grpc::ServerUnaryReactor* CreateMessage(
      grpc::CallbackServerContext* context,
      const v1::CreateMessageRequest* request,
      v1::CreateMessageResponse* response) override;
  grpc::ServerUnaryReactor* GetMessage(
      grpc::CallbackServerContext* context,
      const v1::GetMessageRequest* request,
      v1::GetMessageResponse* response) override;
  grpc::ServerUnaryReactor* ListMessages(
      grpc::CallbackServerContext* context,
      const v1::ListMessagesRequest* request,
      v1::ListMessagesResponse* response) override;
  grpc::ServerUnaryReactor* UpdateMessage(
      grpc::CallbackServerContext* context,
      const v1::UpdateMessageRequest* request,
      v1::UpdateMessageResponse* response) override;
  grpc::ServerUnaryReactor* DeleteMessage(
      grpc::CallbackServerContext* context,
      const v1::DeleteMessageRequest* request,
      v1::DeleteMessageResponse* response) override;

 private:
  Resources* resources_;
  Executor* executor_;
  Admission* admission_;
};

// RunService over the run engine; RunEvents is a RunEventsStream.
class RunServiceImpl final : public v1::RunService::CallbackService {
 public:
  using Proto = v1::RunService;

  RunServiceImpl(runs::RunEngine* engine, Executor* executor, Timers* timers,
                 const Clock* clock, Admission* admission,
                 StreamOptions stream_options)
      : engine_(engine),
        executor_(executor),
        timers_(timers),
        clock_(clock),
        admission_(admission),
        stream_options_(stream_options) {}

  grpc::ServerUnaryReactor* CreateRun(grpc::CallbackServerContext* context,
                                      const v1::CreateRunRequest* request,
                                      v1::CreateRunResponse* response) override;
  grpc::ServerUnaryReactor* CreateThreadAndRun(
      grpc::CallbackServerContext* context,
      const v1::CreateThreadAndRunRequest* request,
      v1::CreateThreadAndRunResponse* response) override;
  grpc::ServerUnaryReactor* GetRun(grpc::CallbackServerContext* context,
                                   const v1::GetRunRequest* request,
                                   v1::GetRunResponse* response) override;
  grpc::ServerUnaryReactor* ListRuns(grpc::CallbackServerContext* context,
                                     const v1::ListRunsRequest* request,
                                     v1::ListRunsResponse* response) override;
  grpc::ServerUnaryReactor* UpdateRun(grpc::CallbackServerContext* context,
                                      const v1::UpdateRunRequest* request,
                                      v1::UpdateRunResponse* response) override;
  grpc::ServerUnaryReactor* CancelRun(grpc::CallbackServerContext* context,
                                      const v1::CancelRunRequest* request,
                                      v1::CancelRunResponse* response) override;
  grpc::ServerUnaryReactor* SubmitToolOutputs(
      grpc::CallbackServerContext* context,
      const v1::SubmitToolOutputsRequest* request,
      v1::SubmitToolOutputsResponse* response) override;
  grpc::ServerUnaryReactor* GetRunStep(
      grpc::CallbackServerContext* context,
      const v1::GetRunStepRequest* request,
      v1::GetRunStepResponse* response) override;
  grpc::ServerUnaryReactor* ListRunSteps(
      grpc::CallbackServerContext* context,
      const v1::ListRunStepsRequest* request,
      v1::ListRunStepsResponse* response) override;
  grpc::ServerWriteReactor<v1::RunEventsResponse>* RunEvents(
      grpc::CallbackServerContext* context,
      const v1::RunEventsRequest* request) override;

  // Sends `draining` on every open RunEvents stream and ends it.
  void DrainStreams() { streams_.DrainAll(); }
  size_t open_streams() const { return streams_.size(); }

 private:
  runs::RunEngine* engine_;
  Executor* executor_;
  Timers* timers_;
  const Clock* clock_;
  Admission* admission_;
  StreamOptions stream_options_;
  StreamRegistry streams_;
};

// ToolRegistryService over the registry. Lists are answered on the
// callback thread (the registry is in memory); RegisterWorker, Heartbeat and
// UnregisterWorker too, unless the registry is shared by replicas: then they
// write to the database and run on `executor`.
class ToolRegistryServiceImpl final
    : public v1::ToolRegistryService::CallbackService {
 public:
  using Proto = v1::ToolRegistryService;

  // Workers authenticate with the registry's token; ListTools and
  // ListWorkers, which callers use, pass `admission`'s authentication.
  ToolRegistryServiceImpl(tool_workers::ToolRegistry* registry,
                          Executor* executor, Admission* admission)
      : registry_(registry), executor_(executor), admission_(admission) {}

  grpc::ServerUnaryReactor* RegisterWorker(
      grpc::CallbackServerContext* context,
      const v1::RegisterWorkerRequest* request,
      v1::RegisterWorkerResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* UnregisterWorker(
      grpc::CallbackServerContext* context,
      const v1::UnregisterWorkerRequest* request,
      v1::UnregisterWorkerResponse* response) override;
  grpc::ServerUnaryReactor* ListTools(grpc::CallbackServerContext* context,
                                      const v1::ListToolsRequest* request,
                                      v1::ListToolsResponse* response) override;
  grpc::ServerUnaryReactor* ListWorkers(
      grpc::CallbackServerContext* context,
      const v1::ListWorkersRequest* request,
      v1::ListWorkersResponse* response) override;

 private:
  tool_workers::ToolRegistry* registry_;
  Executor* executor_;
  Admission* admission_;
};

}  // namespace assistants

#endif  // SERVICE_API_SERVICES_H_
