// Admission through the wire: a real in-process GatewayServer with API keys
// for two projects (and a second key of the first), driven by the generated
// stubs. Covers every UNAUTHENTICATED reason, open health checks, isolation
// of every resource across projects (each RPC of the other project answers
// NOT_FOUND and changes nothing), per-project idempotency keys, the per-key
// rate limit with RetryInfo, the request size limit, and the per-project
// stream and active-run limits.
#include "service/api/admission.h"

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/message.grpc.pb.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "assistants/v1/thread.grpc.pb.h"
#include "assistants/v1/tool_worker.grpc.pb.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "service/api/server.h"
#include "service/auth/api_keys.h"
#include "service/auth/rate_limiter.h"
#include "service/common/clock.h"
#include "service/common/executor.h"
#include "service/common/timers.h"
#include "service/runs/engine.h"
#include "service/runs/tool_dispatcher.h"
#include "service/store/memory_store.h"
#include "tests/runs/engine_fakes.h"

namespace assistants {
namespace {

constexpr char kKeyA[] = "key-project-a";
constexpr char kKeyA2[] = "key-project-a-second";
constexpr char kKeyB[] = "key-project-b";
constexpr char kKeyDefault[] = "key-project-default";

auth::ApiKeys TestKeys() {
  auto entry = [](const char* project, const char* name, const char* key) {
    return absl::StrCat(R"({"project":")", project, R"(","name":")", name,
                        R"(","sha256":")", auth::ApiKeys::Sha256Hex(key),
                        R"("})");
  };
  auto keys = auth::ApiKeys::Parse(
      absl::StrCat(R"({"keys":[)", entry("proj_a", "first", kKeyA), ",",
                   entry("proj_a", "second", kKeyA2), ",",
                   entry("proj_b", "only", kKeyB), ",",
                   entry("default", "legacy", kKeyDefault), "]}"),
      "test keys");
  EXPECT_TRUE(keys.ok()) << keys.status();
  return *std::move(keys);
}

struct WireError {
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::string reason;
  std::string field;
  int64_t retry_ms = -1;
};

WireError Decode(const grpc::Status& status) {
  WireError error;
  error.code = status.error_code();
  google::rpc::Status rich;
  if (!rich.ParseFromString(status.error_details())) return error;
  for (const auto& detail : rich.details()) {
    google::rpc::ErrorInfo info;
    google::rpc::RetryInfo retry;
    if (detail.UnpackTo(&info)) {
      error.reason = info.reason();
      auto field = info.metadata().find("field");
      if (field != info.metadata().end()) error.field = field->second;
    } else if (detail.UnpackTo(&retry)) {
      error.retry_ms = retry.retry_delay().seconds() * 1000 +
                       retry.retry_delay().nanos() / 1'000'000;
    }
  }
  return error;
}

// One RPC made with some key: the test passes the call as a lambda over a
// prepared ClientContext.
using Rpc = std::function<grpc::Status(grpc::ClientContext*)>;

class AdmissionTest : public ::testing::Test {
 protected:
  AdmissionTest() : keys_(TestKeys()), timers_(&clock_), engine_executor_(2) {}

  ~AdmissionTest() override {
    if (server_ != nullptr) server_->Shutdown(std::chrono::milliseconds(100));
    server_.reset();
    engine_.reset();
  }

  // Starts the gateway with `options` (api_keys are always set).
  void Start(AdmissionOptions options = {},
             runs::EngineOptions engine_options = {}) {
    engine_ = std::make_unique<runs::RunEngine>(
        &store_,
        [this](absl::string_view) -> absl::StatusOr<upstream::Provider*> {
          return &provider_;
        },
        &dispatcher_, &clock_, &timers_, &engine_executor_, engine_options);
    ServerOptions server_options;
    server_options.listen = "127.0.0.1:0";
    options.api_keys = &keys_;
    server_options.admission = options;
    auto server = GatewayServer::Start(server_options, &store_, &clock_,
                                       engine_.get(), &timers_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    assistants_ = v1::AssistantService::NewStub(channel_);
    threads_ = v1::ThreadService::NewStub(channel_);
    messages_ = v1::MessageService::NewStub(channel_);
    runs_ = v1::RunService::NewStub(channel_);
    registry_ = v1::ToolRegistryService::NewStub(channel_);
  }

  // Makes `rpc` with `authorization` set to `header` (none when empty).
  grpc::Status WithHeader(const std::string& header, const Rpc& rpc) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    if (!header.empty()) context.AddMetadata("authorization", header);
    return rpc(&context);
  }
  grpc::Status As(const std::string& key, const Rpc& rpc) {
    return WithHeader(key.empty() ? "" : absl::StrCat("Bearer ", key), rpc);
  }

  // Project A's objects: an assistant with one function tool, a thread with
  // a message, and a run waiting for its tool output (so it has a step).
  void CreateProjectAObjects() {
    v1::CreateAssistantRequest create_assistant;
    create_assistant.set_model("gpt-4o");
    create_assistant.add_tools()
        ->mutable_function()
        ->mutable_function()
        ->set_name("lookup");
    v1::CreateAssistantResponse assistant;
    ASSERT_TRUE(As(kKeyA, [&](grpc::ClientContext* c) {
                  return assistants_->CreateAssistant(c, create_assistant,
                                                      &assistant);
                }).ok());
    assistant_id_ = assistant.assistant().id();
    v1::CreateThreadRequest create_thread;
    v1::MessageInput* hello = create_thread.add_messages();
    hello->set_role(v1::MESSAGE_ROLE_USER);
    hello->set_text("hello");
    v1::CreateThreadResponse thread;
    ASSERT_TRUE(As(kKeyA, [&](grpc::ClientContext* c) {
                  return threads_->CreateThread(c, create_thread, &thread);
                }).ok());
    thread_id_ = thread.thread().id();
    v1::ListMessagesRequest list;
    list.set_thread_id(thread_id_);
    v1::ListMessagesResponse messages;
    ASSERT_TRUE(As(kKeyA, [&](grpc::ClientContext* c) {
                  return messages_->ListMessages(c, list, &messages);
                }).ok());
    ASSERT_EQ(messages.data_size(), 1);
    message_id_ = messages.data(0).id();
    run_id_ = StartWaitingRun(kKeyA, thread_id_, assistant_id_);
    v1::ListRunStepsRequest steps_request;
    steps_request.set_thread_id(thread_id_);
    steps_request.set_run_id(run_id_);
    v1::ListRunStepsResponse steps;
    ASSERT_TRUE(As(kKeyA, [&](grpc::ClientContext* c) {
                  return runs_->ListRunSteps(c, steps_request, &steps);
                }).ok());
    ASSERT_GE(steps.data_size(), 1);
    step_id_ = steps.data(0).id();
  }

  // Creates a run whose model calls `lookup` and waits until it is in
  // requires_action; returns its id ("" on failure).
  std::string StartWaitingRun(const std::string& key,
                              const std::string& thread_id,
                              const std::string& assistant_id) {
    provider_.Add(runs::testing::ToolReply({{"lookup", {"{}"}}}));
    v1::CreateRunRequest request;
    request.set_thread_id(thread_id);
    request.mutable_options()->set_assistant_id(assistant_id);
    v1::CreateRunResponse created;
    grpc::Status status = As(key, [&](grpc::ClientContext* c) {
      return runs_->CreateRun(c, request, &created);
    });
    EXPECT_TRUE(status.ok()) << status.error_message();
    if (!status.ok()) return "";
    for (int i = 0; i < 500; ++i) {
      v1::GetRunRequest get;
      get.set_thread_id(thread_id);
      get.set_run_id(created.run().id());
      v1::GetRunResponse run;
      EXPECT_TRUE(As(key, [&](grpc::ClientContext* c) {
                    return runs_->GetRun(c, get, &run);
                  }).ok());
      if (run.run().status() == v1::RUN_STATUS_REQUIRES_ACTION) {
        return created.run().id();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "run never reached requires_action";
    return "";
  }

  std::string NewThread(const std::string& key) {
    v1::CreateThreadResponse thread;
    EXPECT_TRUE(As(key, [&](grpc::ClientContext* c) {
                  return threads_->CreateThread(c, {}, &thread);
                }).ok());
    return thread.thread().id();
  }

  // Every RPC of the API naming project A's objects, as project B would
  // make it, with the reason a nonexistent object gets.
  std::vector<std::pair<std::string, std::pair<std::string, Rpc>>>
  ForeignCalls() {
    std::vector<std::pair<std::string, std::pair<std::string, Rpc>>> calls;
    auto add = [&](const std::string& name, const std::string& reason,
                   Rpc rpc) {
      calls.push_back({name, {reason, std::move(rpc)}});
    };
    add("GetAssistant", "ASSISTANT_NOT_FOUND", [this](grpc::ClientContext* c) {
      v1::GetAssistantRequest r;
      r.set_assistant_id(assistant_id_);
      v1::GetAssistantResponse out;
      return assistants_->GetAssistant(c, r, &out);
    });
    add("UpdateAssistant", "ASSISTANT_NOT_FOUND",
        [this](grpc::ClientContext* c) {
          v1::UpdateAssistantRequest r;
          r.set_assistant_id(assistant_id_);
          r.set_name("taken over");
          v1::UpdateAssistantResponse out;
          return assistants_->UpdateAssistant(c, r, &out);
        });
    add("DeleteAssistant", "ASSISTANT_NOT_FOUND",
        [this](grpc::ClientContext* c) {
          v1::DeleteAssistantRequest r;
          r.set_assistant_id(assistant_id_);
          v1::DeleteAssistantResponse out;
          return assistants_->DeleteAssistant(c, r, &out);
        });
    add("GetThread", "THREAD_NOT_FOUND", [this](grpc::ClientContext* c) {
      v1::GetThreadRequest r;
      r.set_thread_id(thread_id_);
      v1::GetThreadResponse out;
      return threads_->GetThread(c, r, &out);
    });
    add("UpdateThread", "THREAD_NOT_FOUND", [this](grpc::ClientContext* c) {
      v1::UpdateThreadRequest r;
      r.set_thread_id(thread_id_);
      (*r.mutable_metadata())["owner"] = "b";
      v1::UpdateThreadResponse out;
      return threads_->UpdateThread(c, r, &out);
    });
    add("DeleteThread", "THREAD_NOT_FOUND", [this](grpc::ClientContext* c) {
      v1::DeleteThreadRequest r;
      r.set_thread_id(thread_id_);
      v1::DeleteThreadResponse out;
      return threads_->DeleteThread(c, r, &out);
    });
    add("CreateMessage", "THREAD_NOT_FOUND", [this](grpc::ClientContext* c) {
      v1::CreateMessageRequest r;
      r.set_thread_id(thread_id_);
      r.mutable_message()->set_role(v1::MESSAGE_ROLE_USER);
      r.mutable_message()->set_text("injected");
      v1::CreateMessageResponse out;
      return messages_->CreateMessage(c, r, &out);
    });
    add("GetMessage", "THREAD_NOT_FOUND", [this](grpc::ClientContext* c) {
      v1::GetMessageRequest r;
      r.set_thread_id(thread_id_);
      r.set_message_id(message_id_);
      v1::GetMessageResponse out;
      return messages_->GetMessage(c, r, &out);
    });
    add("ListMessages", "THREAD_NOT_FOUND", [this](grpc::ClientContext* c) {
      v1::ListMessagesRequest r;
      r.set_thread_id(thread_id_);
      v1::ListMessagesResponse out;
      return messages_->ListMessages(c, r, &out);
    });
    add("UpdateMessage", "THREAD_NOT_FOUND", [this](grpc::ClientContext* c) {
      v1::UpdateMessageRequest r;
      r.set_thread_id(thread_id_);
      r.set_message_id(message_id_);
      (*r.mutable_metadata())["k"] = "v";
      v1::UpdateMessageResponse out;
      return messages_->UpdateMessage(c, r, &out);
    });
    add("DeleteMessage", "THREAD_NOT_FOUND", [this](grpc::ClientContext* c) {
      v1::DeleteMessageRequest r;
      r.set_thread_id(thread_id_);
      r.set_message_id(message_id_);
      v1::DeleteMessageResponse out;
      return messages_->DeleteMessage(c, r, &out);
    });
    add("CreateRun on A's thread", "THREAD_NOT_FOUND",
        [this](grpc::ClientContext* c) {
          v1::CreateRunRequest r;
          r.set_thread_id(thread_id_);
          r.mutable_options()->set_assistant_id(b_assistant_id_);
          v1::CreateRunResponse out;
          return runs_->CreateRun(c, r, &out);
        });
    add("CreateRun with A's assistant", "ASSISTANT_NOT_FOUND",
        [this](grpc::ClientContext* c) {
          v1::CreateRunRequest r;
          r.set_thread_id(b_thread_id_);
          r.mutable_options()->set_assistant_id(assistant_id_);
          v1::CreateRunResponse out;
          return runs_->CreateRun(c, r, &out);
        });
    add("CreateThreadAndRun with A's assistant", "ASSISTANT_NOT_FOUND",
        [this](grpc::ClientContext* c) {
          v1::CreateThreadAndRunRequest r;
          r.mutable_options()->set_assistant_id(assistant_id_);
          v1::CreateThreadAndRunResponse out;
          return runs_->CreateThreadAndRun(c, r, &out);
        });
    add("GetRun", "THREAD_NOT_FOUND", [this](grpc::ClientContext* c) {
      v1::GetRunRequest r;
      r.set_thread_id(thread_id_);
      r.set_run_id(run_id_);
      v1::GetRunResponse out;
      return runs_->GetRun(c, r, &out);
    });
    add("ListRuns", "THREAD_NOT_FOUND", [this](grpc::ClientContext* c) {
      v1::ListRunsRequest r;
      r.set_thread_id(thread_id_);
      v1::ListRunsResponse out;
      return runs_->ListRuns(c, r, &out);
    });
    add("UpdateRun", "THREAD_NOT_FOUND", [this](grpc::ClientContext* c) {
      v1::UpdateRunRequest r;
      r.set_thread_id(thread_id_);
      r.set_run_id(run_id_);
      (*r.mutable_metadata())["k"] = "v";
      v1::UpdateRunResponse out;
      return runs_->UpdateRun(c, r, &out);
    });
    add("CancelRun", "THREAD_NOT_FOUND", [this](grpc::ClientContext* c) {
      v1::CancelRunRequest r;
      r.set_thread_id(thread_id_);
      r.set_run_id(run_id_);
      v1::CancelRunResponse out;
      return runs_->CancelRun(c, r, &out);
    });
    add("SubmitToolOutputs", "THREAD_NOT_FOUND",
        [this](grpc::ClientContext* c) {
          v1::SubmitToolOutputsRequest r;
          r.set_thread_id(thread_id_);
          r.set_run_id(run_id_);
          v1::ToolOutput* output = r.add_tool_outputs();
          output->set_tool_call_id("call_x");
          output->set_output("{}");
          v1::SubmitToolOutputsResponse out;
          return runs_->SubmitToolOutputs(c, r, &out);
        });
    add("GetRunStep", "THREAD_NOT_FOUND", [this](grpc::ClientContext* c) {
      v1::GetRunStepRequest r;
      r.set_thread_id(thread_id_);
      r.set_run_id(run_id_);
      r.set_step_id(step_id_);
      v1::GetRunStepResponse out;
      return runs_->GetRunStep(c, r, &out);
    });
    add("ListRunSteps", "THREAD_NOT_FOUND", [this](grpc::ClientContext* c) {
      v1::ListRunStepsRequest r;
      r.set_thread_id(thread_id_);
      r.set_run_id(run_id_);
      v1::ListRunStepsResponse out;
      return runs_->ListRunSteps(c, r, &out);
    });
    add("RunEvents attach", "THREAD_NOT_FOUND", [this](grpc::ClientContext* c) {
      v1::RunEventsRequest r;
      r.set_thread_id(thread_id_);
      r.set_run_id(run_id_);
      return DrainStream(c, r);
    });
    add("RunEvents start on A's thread", "THREAD_NOT_FOUND",
        [this](grpc::ClientContext* c) {
          v1::RunEventsRequest r;
          r.mutable_create_run()->set_thread_id(thread_id_);
          r.mutable_create_run()->mutable_options()->set_assistant_id(
              b_assistant_id_);
          return DrainStream(c, r);
        });
    return calls;
  }

  // Reads a RunEvents stream to its end; returns its status and the number
  // of events in `*events` when given.
  grpc::Status DrainStream(grpc::ClientContext* context,
                           const v1::RunEventsRequest& request,
                           int* events = nullptr) {
    auto reader = runs_->RunEvents(context, request);
    v1::RunEventsResponse event;
    int count = 0;
    while (reader->Read(&event)) ++count;
    if (events != nullptr) *events = count;
    return reader->Finish();
  }

  auth::ApiKeys keys_;
  MemoryStore store_;
  FakeClock clock_;
  ManualTimers timers_;
  Executor engine_executor_;
  runs::CallerOnlyDispatcher dispatcher_;
  runs::testing::ScriptedProvider provider_;
  std::unique_ptr<runs::RunEngine> engine_;
  std::unique_ptr<GatewayServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AssistantService::Stub> assistants_;
  std::unique_ptr<v1::ThreadService::Stub> threads_;
  std::unique_ptr<v1::MessageService::Stub> messages_;
  std::unique_ptr<v1::RunService::Stub> runs_;
  std::unique_ptr<v1::ToolRegistryService::Stub> registry_;

  std::string assistant_id_, thread_id_, message_id_, run_id_, step_id_;
  std::string b_assistant_id_, b_thread_id_;
};

TEST_F(AdmissionTest, EveryUnauthenticatedReason) {
  Start();
  v1::GetAssistantRequest request;
  request.set_assistant_id("asst_x");
  Rpc get = [&](grpc::ClientContext* c) {
    v1::GetAssistantResponse out;
    return assistants_->GetAssistant(c, request, &out);
  };
  struct Case {
    std::string header;
    std::string reason;
  };
  for (const Case& test : std::vector<Case>{
           {"", "API_KEY_MISSING"},
           {"Basic dXNlcjpwYXNz", "API_KEY_MALFORMED"},
           {"Bearer ", "API_KEY_MALFORMED"},
           {"Bearer not-a-key", "API_KEY_INVALID"},
           {absl::StrCat("Bearer ", auth::ApiKeys::Sha256Hex(kKeyA)),
            "API_KEY_INVALID"}}) {
    grpc::Status status = WithHeader(test.header, get);
    WireError error = Decode(status);
    EXPECT_EQ(error.code, grpc::StatusCode::UNAUTHENTICATED) << test.header;
    EXPECT_EQ(error.reason, test.reason) << test.header;
    EXPECT_EQ(error.field, "authorization");
    // The presented credential is never echoed back.
    EXPECT_EQ(status.error_message().find("not-a-key"), std::string::npos);
  }
  // The scheme is case-insensitive; a valid key gets to the operation.
  EXPECT_EQ(Decode(WithHeader(absl::StrCat("bearer ", kKeyA), get)).reason,
            "ASSISTANT_NOT_FOUND");

  // The stream, and the registry's caller-facing lists, are guarded too.
  EXPECT_EQ(Decode(As("",
                      [&](grpc::ClientContext* c) {
                        v1::RunEventsRequest r;
                        r.set_thread_id("thread_x");
                        r.set_run_id("run_x");
                        return DrainStream(c, r);
                      }))
                .reason,
            "API_KEY_MISSING");
  EXPECT_EQ(Decode(As("",
                      [&](grpc::ClientContext* c) {
                        v1::ListWorkersResponse out;
                        return registry_->ListWorkers(c, {}, &out);
                      }))
                .reason,
            "API_KEY_MISSING");
  EXPECT_TRUE(As(kKeyB, [&](grpc::ClientContext* c) {
                v1::ListWorkersResponse out;
                return registry_->ListWorkers(c, {}, &out);
              }).ok());
}

TEST_F(AdmissionTest, OpenMethodsNeedNoKey) {
  AdmissionOptions options;
  options.open_methods = {"/assistants.v1.ToolRegistryService/",
                          "/assistants.v1.AssistantService/ListAssistants"};
  Start(options);
  EXPECT_TRUE(As("", [&](grpc::ClientContext* c) {
                v1::ListWorkersResponse out;
                return registry_->ListWorkers(c, {}, &out);
              }).ok());
  // A keyless caller of an open method is the default project: it does not
  // see project A's assistants.
  v1::CreateAssistantRequest create;
  create.set_model("gpt-4o");
  v1::CreateAssistantResponse created;
  ASSERT_TRUE(As(kKeyA, [&](grpc::ClientContext* c) {
                return assistants_->CreateAssistant(c, create, &created);
              }).ok());
  v1::ListAssistantsResponse list;
  ASSERT_TRUE(As("", [&](grpc::ClientContext* c) {
                return assistants_->ListAssistants(c, {}, &list);
              }).ok());
  EXPECT_EQ(list.data_size(), 0);
  // A key on an open method still counts: A sees its own.
  ASSERT_TRUE(As(kKeyA, [&](grpc::ClientContext* c) {
                return assistants_->ListAssistants(c, {}, &list);
              }).ok());
  EXPECT_EQ(list.data_size(), 1);
  // Methods not listed still need a key; an exact name opens only itself.
  EXPECT_EQ(Decode(As("",
                      [&](grpc::ClientContext* c) {
                        return assistants_->CreateAssistant(c, create,
                                                            &created);
                      }))
                .reason,
            "API_KEY_MISSING");
}

// Health stays open without a key (probes carry none). No generated health
// stubs: grpc.health.v1.Health/Check is called generically.
TEST_F(AdmissionTest, HealthChecksNeedNoKey) {
  Start();
  grpc::GenericStub stub(channel_);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  grpc::Slice empty_message(std::string{});
  grpc::ByteBuffer request(&empty_message, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                 &request, &response,
                 [&done](grpc::Status status) { done.set_value(status); });
  grpc::Status status = done.get_future().get();
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(AdmissionTest, AnotherProjectsObjectsAreNotFoundEverywhere) {
  Start();
  ASSERT_NO_FATAL_FAILURE(CreateProjectAObjects());
  // Project B's own assistant and thread, so its calls are otherwise valid.
  v1::CreateAssistantRequest create;
  create.set_model("gpt-4o");
  v1::CreateAssistantResponse b_assistant;
  ASSERT_TRUE(As(kKeyB, [&](grpc::ClientContext* c) {
                return assistants_->CreateAssistant(c, create, &b_assistant);
              }).ok());
  b_assistant_id_ = b_assistant.assistant().id();
  b_thread_id_ = NewThread(kKeyB);

  for (auto& [name, expected] : ForeignCalls()) {
    WireError error = Decode(As(kKeyB, expected.second));
    EXPECT_EQ(error.code, grpc::StatusCode::NOT_FOUND) << name;
    EXPECT_EQ(error.reason, expected.first) << name;
  }
  // B's list holds only B's assistant, and A's id is no cursor for it.
  v1::ListAssistantsResponse list;
  ASSERT_TRUE(As(kKeyB, [&](grpc::ClientContext* c) {
                return assistants_->ListAssistants(c, {}, &list);
              }).ok());
  ASSERT_EQ(list.data_size(), 1);
  EXPECT_EQ(list.data(0).id(), b_assistant_id_);
  v1::ListAssistantsRequest paged;
  paged.mutable_options()->set_after(assistant_id_);
  EXPECT_EQ(Decode(As(kKeyB,
                      [&](grpc::ClientContext* c) {
                        return assistants_->ListAssistants(c, paged, &list);
                      }))
                .reason,
            "INVALID_CURSOR");

  // Nothing of A's changed; A's other key sees all of it.
  v1::GetAssistantRequest get_assistant;
  get_assistant.set_assistant_id(assistant_id_);
  v1::GetAssistantResponse assistant;
  ASSERT_TRUE(As(kKeyA2, [&](grpc::ClientContext* c) {
                return assistants_->GetAssistant(c, get_assistant, &assistant);
              }).ok());
  EXPECT_FALSE(assistant.assistant().has_name());
  v1::ListMessagesRequest list_messages;
  list_messages.set_thread_id(thread_id_);
  v1::ListMessagesResponse messages;
  ASSERT_TRUE(As(kKeyA2, [&](grpc::ClientContext* c) {
                return messages_->ListMessages(c, list_messages, &messages);
              }).ok());
  EXPECT_EQ(messages.data_size(), 1);
  EXPECT_EQ(messages.data(0).metadata_size(), 0);
  v1::GetRunRequest get_run;
  get_run.set_thread_id(thread_id_);
  get_run.set_run_id(run_id_);
  v1::GetRunResponse run;
  ASSERT_TRUE(As(kKeyA2, [&](grpc::ClientContext* c) {
                return runs_->GetRun(c, get_run, &run);
              }).ok());
  EXPECT_EQ(run.run().status(), v1::RUN_STATUS_REQUIRES_ACTION);
  EXPECT_EQ(run.run().metadata_size(), 0);
  v1::ListAssistantsResponse a_list;
  ASSERT_TRUE(As(kKeyA2, [&](grpc::ClientContext* c) {
                return assistants_->ListAssistants(c, {}, &a_list);
              }).ok());
  ASSERT_EQ(a_list.data_size(), 1);
  EXPECT_EQ(a_list.data(0).id(), assistant_id_);
}

TEST_F(AdmissionTest, IdempotencyKeysBelongToTheirProject) {
  Start();
  v1::CreateAssistantRequest request;
  request.set_model("gpt-4o");
  request.set_request_id("req-1");
  v1::CreateAssistantResponse a, b, a_again;
  ASSERT_TRUE(As(kKeyA, [&](grpc::ClientContext* c) {
                return assistants_->CreateAssistant(c, request, &a);
              }).ok());
  // B may use the same key (and a different body) without seeing A's.
  request.set_name("b's");
  ASSERT_TRUE(As(kKeyB, [&](grpc::ClientContext* c) {
                return assistants_->CreateAssistant(c, request, &b);
              }).ok());
  EXPECT_NE(a.assistant().id(), b.assistant().id());
  EXPECT_EQ(b.assistant().name(), "b's");
  // Within A, the key still replays A's first answer.
  request.clear_name();
  ASSERT_TRUE(As(kKeyA2, [&](grpc::ClientContext* c) {
                return assistants_->CreateAssistant(c, request, &a_again);
              }).ok());
  EXPECT_EQ(a_again.assistant().id(), a.assistant().id());
  // The default project's keys keep their old form (method/request_id);
  // no request_id of it can spell another project's key.
  request.set_request_id("proj_a/req-1");
  v1::CreateAssistantResponse spelled;
  ASSERT_TRUE(As(kKeyDefault, [&](grpc::ClientContext* c) {
                return assistants_->CreateAssistant(c, request, &spelled);
              }).ok());
  EXPECT_NE(spelled.assistant().id(), a.assistant().id());
}

TEST_F(AdmissionTest, RateLimitPerKeyWithRetryInfo) {
  auth::RateLimiter limiter(/*rate=*/1, /*burst=*/2, &clock_);
  AdmissionOptions options;
  options.rate_limiter = &limiter;
  Start(options);
  Rpc list = [&](grpc::ClientContext* c) {
    v1::ListAssistantsResponse out;
    return assistants_->ListAssistants(c, {}, &out);
  };
  EXPECT_TRUE(As(kKeyA, list).ok());
  EXPECT_TRUE(As(kKeyA, list).ok());
  WireError limited = Decode(As(kKeyA, list));
  EXPECT_EQ(limited.code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(limited.reason, "RATE_LIMITED");
  EXPECT_EQ(limited.retry_ms, 1000);
  // Each key has its own bucket, even within one project.
  EXPECT_TRUE(As(kKeyA2, list).ok());
  EXPECT_TRUE(As(kKeyB, list).ok());
  clock_.Advance(std::chrono::seconds(1));
  EXPECT_TRUE(As(kKeyA, list).ok());
}

TEST_F(AdmissionTest, OversizedRequestsAreRefusedAndNothingIsStored) {
  AdmissionOptions options;
  options.max_request_bytes = 4096;
  Start(options);
  const std::string thread_id = NewThread(kKeyA);
  auto create = [&](size_t bytes) {
    return As(kKeyA, [&](grpc::ClientContext* c) {
      v1::CreateMessageRequest r;
      r.set_thread_id(thread_id);
      r.mutable_message()->set_role(v1::MESSAGE_ROLE_USER);
      r.mutable_message()->set_text(std::string(bytes, 'x'));
      v1::CreateMessageResponse out;
      return messages_->CreateMessage(c, r, &out);
    });
  };
  EXPECT_TRUE(create(3000).ok());
  WireError too_large = Decode(create(5000));
  EXPECT_EQ(too_large.code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(too_large.reason, "REQUEST_TOO_LARGE");
  EXPECT_EQ(too_large.field, "request");
  // Far beyond the limit the transport refuses it before it is parsed.
  EXPECT_EQ(create(1 << 20).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  v1::ListMessagesRequest list;
  list.set_thread_id(thread_id);
  v1::ListMessagesResponse messages;
  ASSERT_TRUE(As(kKeyA, [&](grpc::ClientContext* c) {
                return messages_->ListMessages(c, list, &messages);
              }).ok());
  EXPECT_EQ(messages.data_size(), 1);
}

TEST_F(AdmissionTest, StreamsPerProjectAreLimited) {
  AdmissionOptions options;
  options.max_streams_per_project = 1;
  Start(options);
  ASSERT_NO_FATAL_FAILURE(CreateProjectAObjects());
  v1::RunEventsRequest attach;
  attach.set_thread_id(thread_id_);
  attach.set_run_id(run_id_);
  // A first stream stays open (the run waits for its tool output).
  grpc::ClientContext first;
  first.AddMetadata("authorization", absl::StrCat("Bearer ", kKeyA));
  auto reader = runs_->RunEvents(&first, attach);
  v1::RunEventsResponse event;
  ASSERT_TRUE(reader->Read(&event));  // the stream is admitted and open
  WireError limited = Decode(As(
      kKeyA2, [&](grpc::ClientContext* c) { return DrainStream(c, attach); }));
  EXPECT_EQ(limited.code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(limited.reason, "PROJECT_STREAM_LIMIT");
  EXPECT_GT(limited.retry_ms, 0);
  // Another project has its own slots (and gets NOT_FOUND for A's run).
  EXPECT_EQ(
      Decode(As(kKeyB,
                [&](grpc::ClientContext* c) { return DrainStream(c, attach); }))
          .reason,
      "THREAD_NOT_FOUND");
  first.TryCancel();
  while (reader->Read(&event)) {
  }
  reader->Finish();
  // The slot comes back once the first stream is done.
  bool reopened = false;
  for (int i = 0; i < 200 && !reopened; ++i) {
    grpc::ClientContext again;
    again.AddMetadata("authorization", absl::StrCat("Bearer ", kKeyA));
    auto second = runs_->RunEvents(&again, attach);
    reopened = second->Read(&event);
    again.TryCancel();
    while (second->Read(&event)) {
    }
    second->Finish();
    if (!reopened) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(reopened);
}

TEST_F(AdmissionTest, ActiveRunsPerProjectAreLimited) {
  runs::EngineOptions engine_options;
  engine_options.max_active_runs_per_project = 1;
  Start({}, engine_options);
  ASSERT_NO_FATAL_FAILURE(CreateProjectAObjects());  // one active run
  v1::CreateRunRequest second;
  second.set_thread_id(NewThread(kKeyA));
  second.mutable_options()->set_assistant_id(assistant_id_);
  v1::CreateRunResponse created;
  WireError limited = Decode(As(kKeyA2, [&](grpc::ClientContext* c) {
    return runs_->CreateRun(c, second, &created);
  }));
  EXPECT_EQ(limited.code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(limited.reason, "PROJECT_ACTIVE_RUN_LIMIT");
  EXPECT_GT(limited.retry_ms, 0);
  // Project B is not held back by A's runs.
  v1::CreateAssistantRequest create;
  create.set_model("gpt-4o");
  create.add_tools()->mutable_function()->mutable_function()->set_name(
      "lookup");
  v1::CreateAssistantResponse b_assistant;
  ASSERT_TRUE(As(kKeyB, [&](grpc::ClientContext* c) {
                return assistants_->CreateAssistant(c, create, &b_assistant);
              }).ok());
  EXPECT_NE(
      StartWaitingRun(kKeyB, NewThread(kKeyB), b_assistant.assistant().id()),
      "");
  // Once A's run ends, A may start another.
  v1::CancelRunRequest cancel;
  cancel.set_thread_id(thread_id_);
  cancel.set_run_id(run_id_);
  v1::CancelRunResponse cancelled;
  ASSERT_TRUE(As(kKeyA, [&](grpc::ClientContext* c) {
                return runs_->CancelRun(c, cancel, &cancelled);
              }).ok());
  bool started = false;
  for (int i = 0; i < 200 && !started; ++i) {
    provider_.Add(runs::testing::ToolReply({{"lookup", {"{}"}}}));
    started = As(kKeyA, [&](grpc::ClientContext* c) {
                return runs_->CreateRun(c, second, &created);
              }).ok();
    if (!started) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(started);
}

}  // namespace
}  // namespace assistants
