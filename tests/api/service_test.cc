// Service tests through the wire: a real in-process GatewayServer (MemoryStore
// behind a write-counting wrapper, FakeClock, 127.0.0.1:0) driven by the
// generated stubs over an insecure channel. Covers every RPC of
// AssistantService, ThreadService and MessageService, partial updates,
// pagination, idempotency, NOT_FOUND reasons, the UNIMPLEMENTED registry,
// health, and one parameterized table holding every validation rule.
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <future>
#include <limits>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/message.grpc.pb.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "assistants/v1/thread.grpc.pb.h"
#include "assistants/v1/tool_worker.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "service/api/server.h"
#include "service/common/clock.h"
#include "service/common/executor.h"
#include "service/common/timers.h"
#include "service/runs/engine.h"
#include "service/runs/tool_dispatcher.h"
#include "service/store/memory_store.h"
#include "service/store/store.h"

namespace assistants {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::testing::StartsWith;

// FakeClock's default start, in seconds.
constexpr int64_t kStartSeconds = 1'700'000'000;

// A Store that forwards to a MemoryStore and counts the writes that
// succeeded, so a test can tell that a rejected request stored nothing.
class CountingStore final : public Store {
 public:
  explicit CountingStore(int64_t max_messages_per_thread)
      : inner_(max_messages_per_thread) {}

  int writes() const { return writes_.load(); }
  MemoryStore& inner() { return inner_; }

  absl::Status CreateAssistant(const v1::Assistant& assistant,
                               absl::string_view project,
                               const IdempotencyRecord* idempotency) override {
    return Count(inner_.CreateAssistant(assistant, project, idempotency));
  }
  absl::StatusOr<v1::Assistant> GetAssistant(absl::string_view id) override {
    return inner_.GetAssistant(id);
  }
  absl::StatusOr<Page<v1::Assistant>> ListAssistants(
      absl::string_view project, const ListQuery& query) override {
    return inner_.ListAssistants(project, query);
  }
  absl::StatusOr<v1::Assistant> UpdateAssistant(
      absl::string_view id, const Mutation<v1::Assistant>& mutate) override {
    auto result = inner_.UpdateAssistant(id, mutate);
    if (result.ok()) ++writes_;
    return result;
  }
  absl::Status DeleteAssistant(absl::string_view id) override {
    return Count(inner_.DeleteAssistant(id));
  }
  absl::Status CreateThread(const v1::Thread& thread, absl::string_view project,
                            const std::vector<v1::Message>& messages,
                            const IdempotencyRecord* idempotency) override {
    return Count(inner_.CreateThread(thread, project, messages, idempotency));
  }
  absl::StatusOr<v1::Thread> GetThread(absl::string_view id) override {
    return inner_.GetThread(id);
  }
  absl::StatusOr<v1::Thread> UpdateThread(
      absl::string_view id, const Mutation<v1::Thread>& mutate) override {
    auto result = inner_.UpdateThread(id, mutate);
    if (result.ok()) ++writes_;
    return result;
  }
  absl::Status DeleteThread(absl::string_view id) override {
    return Count(inner_.DeleteThread(id));
  }
  absl::Status CreateMessage(const v1::Message& message,
                             const IdempotencyRecord* idempotency) override {
    return Count(inner_.CreateMessage(message, idempotency));
  }
  absl::StatusOr<v1::Message> GetMessage(
      absl::string_view thread_id, absl::string_view message_id) override {
    return inner_.GetMessage(thread_id, message_id);
  }
  absl::StatusOr<Page<v1::Message>> ListMessages(
      absl::string_view thread_id, absl::string_view run_id,
      const ListQuery& query) override {
    return inner_.ListMessages(thread_id, run_id, query);
  }
  absl::StatusOr<v1::Message> UpdateMessage(
      absl::string_view thread_id, absl::string_view message_id,
      const Mutation<v1::Message>& mutate) override {
    auto result = inner_.UpdateMessage(thread_id, message_id, mutate);
    if (result.ok()) ++writes_;
    return result;
  }
  absl::Status DeleteMessage(absl::string_view thread_id,
                             absl::string_view message_id) override {
    return Count(inner_.DeleteMessage(thread_id, message_id));
  }
  absl::StatusOr<std::string> GetProject(OwnedKind kind,
                                         absl::string_view id) override {
    return inner_.GetProject(kind, id);
  }
  absl::StatusOr<std::optional<IdempotencyRecord>> GetIdempotencyRecord(
      absl::string_view key) override {
    return inner_.GetIdempotencyRecord(key);
  }
  absl::StatusOr<int64_t> PruneIdempotencyRecords(int64_t cutoff_ms) override {
    return inner_.PruneIdempotencyRecords(cutoff_ms);
  }
  absl::Status CreateRun(const RunCreation& creation) override {
    return Count(inner_.CreateRun(creation));
  }
  absl::StatusOr<v1::Run> GetRun(absl::string_view thread_id,
                                 absl::string_view run_id) override {
    return inner_.GetRun(thread_id, run_id);
  }
  absl::StatusOr<Page<v1::Run>> ListRuns(absl::string_view thread_id,
                                         const ListQuery& query) override {
    return inner_.ListRuns(thread_id, query);
  }
  absl::StatusOr<std::vector<v1::Run>> ListActiveRuns() override {
    return inner_.ListActiveRuns();
  }
  absl::Status CommitRunChanges(
      const std::vector<const RunChanges*>& batch) override {
    return Count(inner_.CommitRunChanges(batch));
  }
  absl::StatusOr<v1::RunStep> GetRunStep(absl::string_view thread_id,
                                         absl::string_view run_id,
                                         absl::string_view step_id) override {
    return inner_.GetRunStep(thread_id, run_id, step_id);
  }
  absl::StatusOr<Page<v1::RunStep>> ListRunSteps(
      absl::string_view thread_id, absl::string_view run_id,
      const ListQuery& query) override {
    return inner_.ListRunSteps(thread_id, run_id, query);
  }
  absl::StatusOr<std::vector<v1::RunEvent>> ListRunEvents(
      absl::string_view run_id, int64_t after_sequence, int limit) override {
    return inner_.ListRunEvents(run_id, after_sequence, limit);
  }

 private:
  absl::Status Count(absl::Status status) {
    if (status.ok()) ++writes_;
    return status;
  }

  MemoryStore inner_;
  std::atomic<int> writes_{0};
};

// The decoded rich error of a failed call.
struct WireError {
  google::rpc::Status rich;
  google::rpc::ErrorInfo info;
  std::optional<google::rpc::BadRequest> bad_request;
};

// Decodes `status.error_details()`: a google.rpc.Status whose details[0] is
// an ErrorInfo of the gateway's domain. Fails the test otherwise.
std::optional<WireError> Decode(const grpc::Status& status) {
  WireError error;
  if (!error.rich.ParseFromString(status.error_details())) {
    ADD_FAILURE() << "error_details is not a google.rpc.Status";
    return std::nullopt;
  }
  EXPECT_EQ(error.rich.code(), static_cast<int>(status.error_code()));
  EXPECT_EQ(error.rich.message(), status.error_message());
  if (error.rich.details_size() == 0 ||
      !error.rich.details(0).UnpackTo(&error.info)) {
    ADD_FAILURE() << "details[0] is not an ErrorInfo";
    return std::nullopt;
  }
  EXPECT_EQ(error.info.domain(), "assistants.gateway");
  for (int i = 1; i < error.rich.details_size(); ++i) {
    google::rpc::BadRequest bad_request;
    if (error.rich.details(i).UnpackTo(&bad_request)) {
      error.bad_request = bad_request;
    }
  }
  return error;
}

std::string Metadata(const google::rpc::ErrorInfo& info,
                     const std::string& key) {
  auto it = info.metadata().find(key);
  return it == info.metadata().end() ? "<absent>" : it->second;
}

// Asserts a failed call: `code`, ErrorInfo `reason` and, when `key` is
// given, ErrorInfo.metadata[key] == `value`.
void ExpectError(const grpc::Status& status, grpc::StatusCode code,
                 const std::string& reason, const std::string& key = "",
                 const std::string& value = "") {
  EXPECT_EQ(status.error_code(), code) << status.error_message();
  std::optional<WireError> error = Decode(status);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->info.reason(), reason) << status.error_message();
  if (!key.empty()) {
    EXPECT_EQ(Metadata(error->info, key), value);
  }
}

std::string Repeat(size_t n, const std::string& unit) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += unit;
  return out;
}

// The generated stubs of every service, with one `Call` overload per RPC
// (chosen by request type) that sets a deadline.
class Client {
 public:
  explicit Client(int port)
      : channel_(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                     grpc::InsecureChannelCredentials())),
        assistants_(v1::AssistantService::NewStub(channel_)),
        threads_(v1::ThreadService::NewStub(channel_)),
        messages_(v1::MessageService::NewStub(channel_)),
        runs_(v1::RunService::NewStub(channel_)),
        registry_(v1::ToolRegistryService::NewStub(channel_)) {}

#define ASSISTANTS_DEFINE_CALL(stub, Method)                        \
  grpc::Status Call(const v1::Method##Request& request,             \
                    v1::Method##Response* response = nullptr) {     \
    v1::Method##Response ignored;                                   \
    grpc::ClientContext context;                                    \
    context.set_deadline(std::chrono::system_clock::now() +         \
                         std::chrono::seconds(30));                 \
    return stub->Method(&context, request,                          \
                        response != nullptr ? response : &ignored); \
  }

  ASSISTANTS_DEFINE_CALL(assistants_, CreateAssistant)
  ASSISTANTS_DEFINE_CALL(assistants_, GetAssistant)
  ASSISTANTS_DEFINE_CALL(assistants_, ListAssistants)
  ASSISTANTS_DEFINE_CALL(assistants_, UpdateAssistant)
  ASSISTANTS_DEFINE_CALL(assistants_, DeleteAssistant)
  ASSISTANTS_DEFINE_CALL(threads_, CreateThread)
  ASSISTANTS_DEFINE_CALL(threads_, GetThread)
  ASSISTANTS_DEFINE_CALL(threads_, UpdateThread)
  ASSISTANTS_DEFINE_CALL(threads_, DeleteThread)
  ASSISTANTS_DEFINE_CALL(messages_, CreateMessage)
  ASSISTANTS_DEFINE_CALL(messages_, GetMessage)
  ASSISTANTS_DEFINE_CALL(messages_, ListMessages)
  ASSISTANTS_DEFINE_CALL(messages_, UpdateMessage)
  ASSISTANTS_DEFINE_CALL(messages_, DeleteMessage)
  ASSISTANTS_DEFINE_CALL(runs_, CreateRun)
  ASSISTANTS_DEFINE_CALL(runs_, CreateThreadAndRun)
  ASSISTANTS_DEFINE_CALL(runs_, GetRun)
  ASSISTANTS_DEFINE_CALL(runs_, ListRuns)
  ASSISTANTS_DEFINE_CALL(runs_, UpdateRun)
  ASSISTANTS_DEFINE_CALL(runs_, CancelRun)
  ASSISTANTS_DEFINE_CALL(runs_, SubmitToolOutputs)
  ASSISTANTS_DEFINE_CALL(runs_, GetRunStep)
  ASSISTANTS_DEFINE_CALL(runs_, ListRunSteps)
  ASSISTANTS_DEFINE_CALL(registry_, RegisterWorker)
  ASSISTANTS_DEFINE_CALL(registry_, Heartbeat)
  ASSISTANTS_DEFINE_CALL(registry_, UnregisterWorker)
  ASSISTANTS_DEFINE_CALL(registry_, ListTools)
  ASSISTANTS_DEFINE_CALL(registry_, ListWorkers)

#undef ASSISTANTS_DEFINE_CALL

  v1::RunService::Stub& runs() { return *runs_; }
  const std::shared_ptr<grpc::Channel>& channel() { return channel_; }

  // Creates and returns an object; fails the test when the call fails.
  v1::Assistant NewAssistant(const std::string& name = "helper") {
    v1::CreateAssistantRequest request;
    request.set_model("gpt-4o");
    request.set_name(name);
    v1::CreateAssistantResponse response;
    grpc::Status status = Call(request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.assistant();
  }
  v1::Thread NewThread(const v1::CreateThreadRequest& request = {}) {
    v1::CreateThreadResponse response;
    grpc::Status status = Call(request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.thread();
  }
  v1::Message NewMessage(const std::string& thread_id,
                         const std::string& text = "hello") {
    v1::CreateMessageRequest request;
    request.set_thread_id(thread_id);
    request.mutable_message()->set_role(v1::MESSAGE_ROLE_USER);
    request.mutable_message()->set_text(text);
    v1::CreateMessageResponse response;
    grpc::Status status = Call(request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.message();
  }
  v1::ListAssistantsResponse ListAssistants(const v1::ListOptions& options) {
    v1::ListAssistantsRequest request;
    *request.mutable_options() = options;
    v1::ListAssistantsResponse response;
    grpc::Status status = Call(request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }
  v1::ListMessagesResponse ListMessages(const std::string& thread_id,
                                        const v1::ListOptions& options = {}) {
    v1::ListMessagesRequest request;
    request.set_thread_id(thread_id);
    *request.mutable_options() = options;
    v1::ListMessagesResponse response;
    grpc::Status status = Call(request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AssistantService::Stub> assistants_;
  std::unique_ptr<v1::ThreadService::Stub> threads_;
  std::unique_ptr<v1::MessageService::Stub> messages_;
  std::unique_ptr<v1::RunService::Stub> runs_;
  std::unique_ptr<v1::ToolRegistryService::Stub> registry_;
};

// A running gateway and a client connected to it.
class Gateway {
 public:
  explicit Gateway(int64_t max_messages_per_thread = kMaxMessagesPerThread)
      : store_(max_messages_per_thread),
        timers_(&clock_),
        engine_executor_(2),
        engine_(
            &store_,
            [](absl::string_view name) -> absl::StatusOr<upstream::Provider*> {
              return absl::UnavailableError(
                  absl::StrCat("no upstream in service tests: ", name));
            },
            &dispatcher_, &clock_, &timers_, &engine_executor_, {}) {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    auto server =
        GatewayServer::Start(options, &store_, &clock_, &engine_, &timers_);
    EXPECT_TRUE(server.ok()) << server.status();
    if (server.ok()) {
      server_ = std::move(server).value();
      client_ = std::make_unique<Client>(server_->port());
    }
  }
  bool ok() const { return client_ != nullptr; }

  CountingStore store_;
  FakeClock clock_;
  ManualTimers timers_;
  Executor engine_executor_;
  runs::CallerOnlyDispatcher dispatcher_;
  runs::RunEngine engine_;
  std::unique_ptr<GatewayServer> server_;
  std::unique_ptr<Client> client_;
};

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(gateway_.ok()); }

  Client& client() { return *gateway_.client_; }
  FakeClock& clock() { return gateway_.clock_; }
  CountingStore& store() { return gateway_.store_; }

  Gateway gateway_;
};

std::vector<std::string> Ids(const v1::ListAssistantsResponse& list) {
  std::vector<std::string> ids;
  for (const auto& a : list.data()) ids.push_back(a.id());
  return ids;
}

std::vector<std::string> Ids(const v1::ListMessagesResponse& list) {
  std::vector<std::string> ids;
  for (const auto& m : list.data()) ids.push_back(m.id());
  return ids;
}

google::protobuf::Struct SchemaOfType(const std::string& type) {
  google::protobuf::Struct schema;
  (*schema.mutable_fields())["type"].set_string_value(type);
  return schema;
}

v1::Tool FunctionTool(const std::string& name) {
  v1::Tool tool;
  tool.mutable_function()->mutable_function()->set_name(name);
  return tool;
}

v1::Tool CodeInterpreterTool() {
  v1::Tool tool;
  tool.mutable_code_interpreter();
  return tool;
}

// ===================== AssistantService =====================

TEST_F(ServiceTest, CreateGetListUpdateDeleteAssistant) {
  v1::CreateAssistantRequest request;
  request.set_model("gpt-4o");
  request.set_name("Math tutor");
  request.set_description("Helps with algebra");
  request.set_instructions("Answer briefly.");
  v1::Tool* fn = request.add_tools();
  fn->mutable_function()->mutable_function()->set_name("get_weather");
  fn->mutable_function()->mutable_function()->set_description("Weather");
  *fn->mutable_function()->mutable_function()->mutable_parameters() =
      SchemaOfType("object");
  fn->mutable_function()->mutable_function()->set_strict(true);
  request.add_tools()->mutable_code_interpreter();
  v1::Tool* search = request.add_tools();
  search->mutable_file_search()->set_max_num_results(50);
  search->mutable_file_search()->mutable_ranking_options()->set_score_threshold(
      0.5);
  request.mutable_tool_resources()->mutable_code_interpreter()->add_file_ids(
      "file_1");
  request.mutable_tool_resources()->mutable_file_search()->add_vector_store_ids(
      "vs_1");
  (*request.mutable_metadata())["team"] = "math";
  request.set_temperature(0.7);
  request.set_top_p(0.9);
  request.mutable_response_format()->set_type(
      v1::ResponseFormat::TYPE_JSON_SCHEMA);
  request.mutable_response_format()->mutable_json_schema()->set_name("answer");
  *request.mutable_response_format()->mutable_json_schema()->mutable_schema() =
      SchemaOfType("object");
  request.set_upstream("openai-eu");

  v1::CreateAssistantResponse created;
  ASSERT_TRUE(client().Call(request, &created).ok());
  const v1::Assistant& a = created.assistant();
  EXPECT_THAT(a.id(), StartsWith("asst_"));
  EXPECT_EQ(a.id().size(), 5u + 22u);
  EXPECT_EQ(a.object(), "assistant");
  EXPECT_EQ(a.created_at(), kStartSeconds);
  EXPECT_EQ(a.model(), "gpt-4o");
  ASSERT_TRUE(a.has_name());
  EXPECT_EQ(a.name(), "Math tutor");
  EXPECT_EQ(a.description(), "Helps with algebra");
  EXPECT_EQ(a.instructions(), "Answer briefly.");
  ASSERT_EQ(a.tools_size(), 3);
  EXPECT_TRUE(MessageDifferencer::Equals(a.tools(0), request.tools(0)));
  EXPECT_TRUE(a.tools(1).has_code_interpreter());
  EXPECT_EQ(a.tools(2).file_search().max_num_results(), 50);
  EXPECT_TRUE(
      MessageDifferencer::Equals(a.tool_resources(), request.tool_resources()));
  EXPECT_EQ(a.metadata().at("team"), "math");
  EXPECT_EQ(a.metadata_size(), 1);
  ASSERT_TRUE(a.has_temperature());
  EXPECT_DOUBLE_EQ(a.temperature(), 0.7);
  ASSERT_TRUE(a.has_top_p());
  EXPECT_DOUBLE_EQ(a.top_p(), 0.9);
  EXPECT_TRUE(MessageDifferencer::Equals(a.response_format(),
                                         request.response_format()));
  EXPECT_EQ(a.upstream(), "openai-eu");

  // Get returns the same object.
  v1::GetAssistantRequest get;
  get.set_assistant_id(a.id());
  v1::GetAssistantResponse got;
  ASSERT_TRUE(client().Call(get, &got).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(got.assistant(), a))
      << got.assistant().DebugString();

  // List holds it in the "list" envelope.
  v1::ListAssistantsResponse list = client().ListAssistants({});
  EXPECT_EQ(list.object(), "list");
  ASSERT_THAT(list.data(), SizeIs(1));
  EXPECT_TRUE(MessageDifferencer::Equals(list.data(0), a));
  EXPECT_EQ(list.first_id(), a.id());
  EXPECT_EQ(list.last_id(), a.id());
  EXPECT_FALSE(list.has_more());

  // Update changes only the named field and keeps id and created_at.
  clock().Advance(std::chrono::seconds(60));
  v1::UpdateAssistantRequest update;
  update.set_assistant_id(a.id());
  update.set_model("gpt-4o-mini");
  v1::UpdateAssistantResponse updated;
  ASSERT_TRUE(client().Call(update, &updated).ok());
  v1::Assistant expected = a;
  expected.set_model("gpt-4o-mini");
  EXPECT_TRUE(MessageDifferencer::Equals(updated.assistant(), expected))
      << updated.assistant().DebugString();
  ASSERT_TRUE(client().Call(get, &got).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(got.assistant(), expected));

  // Delete answers OpenAI's deletion object; the assistant is gone.
  v1::DeleteAssistantRequest del;
  del.set_assistant_id(a.id());
  v1::DeleteAssistantResponse deleted;
  ASSERT_TRUE(client().Call(del, &deleted).ok());
  EXPECT_EQ(deleted.id(), a.id());
  EXPECT_EQ(deleted.object(), "assistant.deleted");
  EXPECT_TRUE(deleted.deleted());
  ExpectError(client().Call(get), grpc::StatusCode::NOT_FOUND,
              "ASSISTANT_NOT_FOUND", "assistant_id", a.id());
  ExpectError(client().Call(del), grpc::StatusCode::NOT_FOUND,
              "ASSISTANT_NOT_FOUND", "assistant_id", a.id());
  EXPECT_THAT(client().ListAssistants({}).data(), IsEmpty());
}

TEST_F(ServiceTest, MinimalAssistantLeavesOptionalFieldsUnset) {
  v1::CreateAssistantRequest request;
  request.set_model("gpt-4o");
  v1::CreateAssistantResponse created;
  ASSERT_TRUE(client().Call(request, &created).ok());
  const v1::Assistant& a = created.assistant();
  EXPECT_FALSE(a.has_name());
  EXPECT_FALSE(a.has_description());
  EXPECT_FALSE(a.has_instructions());
  EXPECT_FALSE(a.has_temperature());
  EXPECT_FALSE(a.has_top_p());
  EXPECT_THAT(a.tools(), IsEmpty());
  EXPECT_TRUE(a.metadata().empty());
  EXPECT_EQ(a.upstream(), "");
}

TEST_F(ServiceTest, CreatedAtFollowsTheClock) {
  v1::Assistant first = client().NewAssistant("a");
  clock().Advance(std::chrono::milliseconds(2500));
  v1::Assistant second = client().NewAssistant("b");
  EXPECT_EQ(first.created_at(), kStartSeconds);
  EXPECT_EQ(second.created_at(), kStartSeconds + 2);
  EXPECT_NE(first.id(), second.id());
}

TEST_F(ServiceTest, UpdateWithoutMaskWritesOnlyPresentFields) {
  v1::CreateAssistantRequest request;
  request.set_model("gpt-4o");
  request.set_name("a");
  request.set_description("d");
  request.set_instructions("i");
  request.set_temperature(0.5);
  *request.add_tools() = CodeInterpreterTool();
  (*request.mutable_metadata())["k"] = "v";
  v1::CreateAssistantResponse created;
  ASSERT_TRUE(client().Call(request, &created).ok());
  const std::string id = created.assistant().id();

  v1::UpdateAssistantRequest update;
  update.set_assistant_id(id);
  update.set_name("b");
  v1::UpdateAssistantResponse updated;
  ASSERT_TRUE(client().Call(update, &updated).ok());
  const v1::Assistant& a = updated.assistant();
  EXPECT_EQ(a.name(), "b");
  EXPECT_EQ(a.model(), "gpt-4o");
  EXPECT_EQ(a.description(), "d");
  EXPECT_EQ(a.instructions(), "i");
  EXPECT_DOUBLE_EQ(a.temperature(), 0.5);
  ASSERT_EQ(a.tools_size(), 1);
  EXPECT_EQ(a.metadata().at("k"), "v");

  // Present scalars, tools and metadata (replaced whole).
  update.Clear();
  update.set_assistant_id(id);
  update.set_temperature(0);
  update.set_top_p(1);
  *update.add_tools() = FunctionTool("lookup");
  (*update.mutable_metadata())["x"] = "y";
  ASSERT_TRUE(client().Call(update, &updated).ok());
  EXPECT_TRUE(updated.assistant().has_temperature());
  EXPECT_DOUBLE_EQ(updated.assistant().temperature(), 0);
  EXPECT_DOUBLE_EQ(updated.assistant().top_p(), 1);
  ASSERT_EQ(updated.assistant().tools_size(), 1);
  EXPECT_EQ(updated.assistant().tools(0).function().function().name(),
            "lookup");
  EXPECT_EQ(updated.assistant().metadata_size(), 1);
  EXPECT_EQ(updated.assistant().metadata().at("x"), "y");
  EXPECT_EQ(updated.assistant().name(), "b");

  // An empty update changes nothing.
  v1::Assistant before = updated.assistant();
  update.Clear();
  update.set_assistant_id(id);
  ASSERT_TRUE(client().Call(update, &updated).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(updated.assistant(), before));
}

TEST_F(ServiceTest, UpdateWithMaskClearsListedUnsetFields) {
  v1::CreateAssistantRequest request;
  request.set_model("gpt-4o");
  request.set_name("a");
  request.set_description("d");
  request.set_temperature(1.5);
  *request.add_tools() = CodeInterpreterTool();
  (*request.mutable_metadata())["k"] = "v";
  request.mutable_tool_resources()->mutable_code_interpreter()->add_file_ids(
      "file_1");
  request.mutable_response_format()->set_type(
      v1::ResponseFormat::TYPE_JSON_OBJECT);
  request.set_upstream("eu");
  v1::CreateAssistantResponse created;
  ASSERT_TRUE(client().Call(request, &created).ok());
  const std::string id = created.assistant().id();

  v1::UpdateAssistantRequest update;
  update.set_assistant_id(id);
  update.set_name("written");          // listed below: written
  update.set_instructions("ignored");  // not listed: ignored
  update.mutable_update_mask()->add_paths("name");
  update.mutable_update_mask()->add_paths("description");
  update.mutable_update_mask()->add_paths("temperature");
  update.mutable_update_mask()->add_paths("tools");
  update.mutable_update_mask()->add_paths("metadata");
  update.mutable_update_mask()->add_paths("tool_resources");
  update.mutable_update_mask()->add_paths("response_format");
  update.mutable_update_mask()->add_paths("upstream");
  v1::UpdateAssistantResponse updated;
  ASSERT_TRUE(client().Call(update, &updated).ok());
  const v1::Assistant& a = updated.assistant();
  // Cleared message fields are empty (presence of an empty message is not
  // meaningful: create stores them the same way).
  EXPECT_EQ(a.tool_resources().ByteSizeLong(), 0u);
  EXPECT_EQ(a.response_format().ByteSizeLong(), 0u);
  EXPECT_EQ(a.upstream(), "");
  EXPECT_EQ(a.name(), "written");
  EXPECT_FALSE(a.has_description());
  EXPECT_FALSE(a.has_temperature());
  EXPECT_FALSE(a.has_instructions());
  EXPECT_THAT(a.tools(), IsEmpty());
  EXPECT_TRUE(a.metadata().empty());
  EXPECT_EQ(a.model(), "gpt-4o");

  // The stored version matches the answer.
  v1::GetAssistantRequest get;
  get.set_assistant_id(id);
  v1::GetAssistantResponse got;
  ASSERT_TRUE(client().Call(get, &got).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(got.assistant(), a));
}

TEST_F(ServiceTest, UpdateWithUnknownMaskPathIsRejectedAndChangesNothing) {
  v1::Assistant a = client().NewAssistant("keep");
  v1::UpdateAssistantRequest update;
  update.set_assistant_id(a.id());
  update.set_name("changed");
  update.mutable_update_mask()->add_paths("name");
  update.mutable_update_mask()->add_paths("created_at");
  grpc::Status status = client().Call(update);
  ExpectError(status, grpc::StatusCode::INVALID_ARGUMENT, "INVALID_VALUE",
              "field", "update_mask.paths[1]");

  v1::GetAssistantRequest get;
  get.set_assistant_id(a.id());
  v1::GetAssistantResponse got;
  ASSERT_TRUE(client().Call(get, &got).ok());
  EXPECT_EQ(got.assistant().name(), "keep");
}

TEST_F(ServiceTest, ListAssistantsEmpty) {
  v1::ListAssistantsResponse list = client().ListAssistants({});
  EXPECT_EQ(list.object(), "list");
  EXPECT_THAT(list.data(), IsEmpty());
  EXPECT_EQ(list.first_id(), "");
  EXPECT_EQ(list.last_id(), "");
  EXPECT_FALSE(list.has_more());
}

TEST_F(ServiceTest, PaginatesAssistantsThroughTheWire) {
  std::vector<std::string> ids;  // a1..a5 in creation order
  for (int i = 0; i < 5; ++i) {
    ids.push_back(client().NewAssistant(absl::StrCat("a", i + 1)).id());
    clock().Advance(std::chrono::seconds(1));
  }
  const auto& a = ids;

  // Default order is newest first.
  v1::ListAssistantsResponse list = client().ListAssistants({});
  EXPECT_THAT(Ids(list), ElementsAre(a[4], a[3], a[2], a[1], a[0]));
  EXPECT_FALSE(list.has_more());

  // Descending pages of 2 walked with `after`.
  v1::ListOptions options;
  options.set_limit(2);
  list = client().ListAssistants(options);
  EXPECT_THAT(Ids(list), ElementsAre(a[4], a[3]));
  EXPECT_TRUE(list.has_more());
  EXPECT_EQ(list.first_id(), a[4]);
  EXPECT_EQ(list.last_id(), a[3]);
  options.set_after(list.last_id());
  list = client().ListAssistants(options);
  EXPECT_THAT(Ids(list), ElementsAre(a[2], a[1]));
  EXPECT_TRUE(list.has_more());
  options.set_after(list.last_id());
  list = client().ListAssistants(options);
  EXPECT_THAT(Ids(list), ElementsAre(a[0]));
  EXPECT_FALSE(list.has_more());
  EXPECT_EQ(list.first_id(), a[0]);
  EXPECT_EQ(list.last_id(), a[0]);

  // Ascending.
  options.Clear();
  options.set_limit(3);
  options.set_order(v1::LIST_ORDER_ASC);
  list = client().ListAssistants(options);
  EXPECT_THAT(Ids(list), ElementsAre(a[0], a[1], a[2]));
  EXPECT_TRUE(list.has_more());
  options.set_after(a[2]);
  list = client().ListAssistants(options);
  EXPECT_THAT(Ids(list), ElementsAre(a[3], a[4]));
  EXPECT_FALSE(list.has_more());

  // `before` keeps the items closest to the cursor, in the requested order.
  options.Clear();
  options.set_limit(2);
  options.set_order(v1::LIST_ORDER_ASC);
  options.set_before(a[3]);
  list = client().ListAssistants(options);
  EXPECT_THAT(Ids(list), ElementsAre(a[1], a[2]));
  EXPECT_TRUE(list.has_more());
  options.set_before(a[1]);
  list = client().ListAssistants(options);
  EXPECT_THAT(Ids(list), ElementsAre(a[0]));
  EXPECT_FALSE(list.has_more());
  options.set_order(v1::LIST_ORDER_DESC);
  options.set_before(a[1]);
  list = client().ListAssistants(options);
  EXPECT_THAT(Ids(list), ElementsAre(a[3], a[2]));
  EXPECT_TRUE(list.has_more());

  // Both cursors: the window between them.
  options.Clear();
  options.set_order(v1::LIST_ORDER_ASC);
  options.set_after(a[0]);
  options.set_before(a[4]);
  list = client().ListAssistants(options);
  EXPECT_THAT(Ids(list), ElementsAre(a[1], a[2], a[3]));
}

TEST_F(ServiceTest, PagingContinuesPastADeletedAssistant) {
  std::vector<std::string> a;
  for (int i = 0; i < 5; ++i) a.push_back(client().NewAssistant().id());
  v1::ListOptions options;
  options.set_limit(2);
  options.set_order(v1::LIST_ORDER_ASC);
  v1::ListAssistantsResponse list = client().ListAssistants(options);
  ASSERT_THAT(Ids(list), ElementsAre(a[0], a[1]));

  // The cursor's object disappears between two pages.
  v1::DeleteAssistantRequest del;
  del.set_assistant_id(a[1]);
  ASSERT_TRUE(client().Call(del).ok());
  options.set_after(list.last_id());
  list = client().ListAssistants(options);
  EXPECT_THAT(Ids(list), ElementsAre(a[2], a[3]));
  EXPECT_TRUE(list.has_more());

  options.set_order(v1::LIST_ORDER_DESC);
  options.set_after(a[1]);
  list = client().ListAssistants(options);
  EXPECT_THAT(Ids(list), ElementsAre(a[0]));
  EXPECT_FALSE(list.has_more());

  options.clear_after();
  options.set_before(a[1]);
  list = client().ListAssistants(options);
  EXPECT_THAT(Ids(list), ElementsAre(a[3], a[2]));
  EXPECT_TRUE(list.has_more());
}

// ===================== ThreadService =====================

TEST_F(ServiceTest, CreateThreadWithInitialMessagesKeepsOrder) {
  clock().Advance(std::chrono::seconds(7));
  v1::CreateThreadRequest request;
  v1::MessageInput* first = request.add_messages();
  first->set_role(v1::MESSAGE_ROLE_USER);
  first->set_text("first");
  (*first->mutable_metadata())["n"] = "1";
  v1::MessageInput* second = request.add_messages();
  second->set_role(v1::MESSAGE_ROLE_ASSISTANT);
  second->add_content()->mutable_text()->set_value("second");
  v1::ImageUrl* image = second->add_content()->mutable_image_url();
  image->set_url("https://example.com/cat.png");
  image->set_detail(v1::IMAGE_DETAIL_HIGH);
  v1::MessageInput* third = request.add_messages();
  third->set_role(v1::MESSAGE_ROLE_USER);
  third->add_content()->mutable_image_file()->set_file_id("file_img");
  v1::Attachment* attachment = third->add_attachments();
  attachment->set_file_id("file_doc");
  attachment->add_tools()->mutable_file_search();
  request.mutable_tool_resources()->mutable_code_interpreter()->add_file_ids(
      "file_1");
  (*request.mutable_metadata())["user"] = "u1";

  v1::CreateThreadResponse created;
  ASSERT_TRUE(client().Call(request, &created).ok());
  const v1::Thread& thread = created.thread();
  EXPECT_THAT(thread.id(), StartsWith("thread_"));
  EXPECT_EQ(thread.object(), "thread");
  EXPECT_EQ(thread.created_at(), kStartSeconds + 7);
  EXPECT_TRUE(MessageDifferencer::Equals(thread.tool_resources(),
                                         request.tool_resources()));
  EXPECT_EQ(thread.metadata().at("user"), "u1");

  v1::ListOptions asc;
  asc.set_order(v1::LIST_ORDER_ASC);
  v1::ListMessagesResponse list = client().ListMessages(thread.id(), asc);
  ASSERT_THAT(list.data(), SizeIs(3));
  for (const v1::Message& m : list.data()) {
    EXPECT_THAT(m.id(), StartsWith("msg_"));
    EXPECT_EQ(m.object(), "thread.message");
    EXPECT_EQ(m.thread_id(), thread.id());
    EXPECT_EQ(m.created_at(), kStartSeconds + 7);
    EXPECT_EQ(m.status(), v1::MESSAGE_STATUS_COMPLETED);
    EXPECT_EQ(m.run_id(), "");
    EXPECT_EQ(m.assistant_id(), "");
  }
  // The text shortcut becomes one text part.
  const v1::Message& m0 = list.data(0);
  EXPECT_EQ(m0.role(), v1::MESSAGE_ROLE_USER);
  ASSERT_EQ(m0.content_size(), 1);
  EXPECT_EQ(m0.content(0).text().value(), "first");
  EXPECT_THAT(m0.content(0).text().annotations(), IsEmpty());
  EXPECT_EQ(m0.metadata().at("n"), "1");
  const v1::Message& m1 = list.data(1);
  EXPECT_EQ(m1.role(), v1::MESSAGE_ROLE_ASSISTANT);
  ASSERT_EQ(m1.content_size(), 2);
  EXPECT_EQ(m1.content(0).text().value(), "second");
  EXPECT_EQ(m1.content(1).image_url().url(), "https://example.com/cat.png");
  EXPECT_EQ(m1.content(1).image_url().detail(), v1::IMAGE_DETAIL_HIGH);
  const v1::Message& m2 = list.data(2);
  EXPECT_EQ(m2.content(0).image_file().file_id(), "file_img");
  ASSERT_EQ(m2.attachments_size(), 1);
  EXPECT_TRUE(MessageDifferencer::Equals(m2.attachments(0), *attachment));

  // Default order is newest first.
  list = client().ListMessages(thread.id());
  ASSERT_THAT(list.data(), SizeIs(3));
  EXPECT_EQ(list.data(0).content(0).image_file().file_id(), "file_img");
}

TEST_F(ServiceTest, GetUpdateDeleteThread) {
  v1::CreateThreadRequest request;
  (*request.mutable_metadata())["a"] = "1";
  (*request.mutable_metadata())["b"] = "2";
  request.mutable_tool_resources()->mutable_code_interpreter()->add_file_ids(
      "file_1");
  v1::Thread thread = client().NewThread(request);

  v1::GetThreadRequest get;
  get.set_thread_id(thread.id());
  v1::GetThreadResponse got;
  ASSERT_TRUE(client().Call(get, &got).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(got.thread(), thread));

  // Metadata present: replaced whole. tool_resources absent: kept.
  v1::UpdateThreadRequest update;
  update.set_thread_id(thread.id());
  (*update.mutable_metadata())["c"] = "3";
  v1::UpdateThreadResponse updated;
  ASSERT_TRUE(client().Call(update, &updated).ok());
  EXPECT_EQ(updated.thread().metadata_size(), 1);
  EXPECT_EQ(updated.thread().metadata().at("c"), "3");
  EXPECT_EQ(updated.thread().tool_resources().code_interpreter().file_ids(0),
            "file_1");
  EXPECT_EQ(updated.thread().id(), thread.id());
  EXPECT_EQ(updated.thread().created_at(), thread.created_at());

  // Without a mask, empty metadata is "not present": kept.
  update.Clear();
  update.set_thread_id(thread.id());
  ASSERT_TRUE(client().Call(update, &updated).ok());
  EXPECT_EQ(updated.thread().metadata().at("c"), "3");

  // tool_resources present: replaced whole.
  update.mutable_tool_resources()->mutable_file_search()->add_vector_store_ids(
      "vs_1");
  ASSERT_TRUE(client().Call(update, &updated).ok());
  EXPECT_THAT(updated.thread().tool_resources().code_interpreter().file_ids(),
              IsEmpty());
  EXPECT_EQ(updated.thread().tool_resources().file_search().vector_store_ids(0),
            "vs_1");

  // With a mask, a listed empty metadata clears it.
  update.Clear();
  update.set_thread_id(thread.id());
  update.mutable_update_mask()->add_paths("metadata");
  ASSERT_TRUE(client().Call(update, &updated).ok());
  EXPECT_TRUE(updated.thread().metadata().empty());
  EXPECT_EQ(updated.thread().tool_resources().file_search().vector_store_ids(0),
            "vs_1");

  // Unknown mask path.
  update.mutable_update_mask()->set_paths(0, "messages");
  ExpectError(client().Call(update), grpc::StatusCode::INVALID_ARGUMENT,
              "INVALID_VALUE", "field", "update_mask.paths[0]");

  ASSERT_TRUE(client().Call(get, &got).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(got.thread(), updated.thread()));

  v1::DeleteThreadRequest del;
  del.set_thread_id(thread.id());
  v1::DeleteThreadResponse deleted;
  ASSERT_TRUE(client().Call(del, &deleted).ok());
  EXPECT_EQ(deleted.id(), thread.id());
  EXPECT_EQ(deleted.object(), "thread.deleted");
  EXPECT_TRUE(deleted.deleted());
  ExpectError(client().Call(get), grpc::StatusCode::NOT_FOUND,
              "THREAD_NOT_FOUND", "thread_id", thread.id());
  ExpectError(client().Call(del), grpc::StatusCode::NOT_FOUND,
              "THREAD_NOT_FOUND", "thread_id", thread.id());
}

TEST_F(ServiceTest, DeleteThreadCascadesToMessages) {
  v1::Thread thread = client().NewThread();
  v1::Message message = client().NewMessage(thread.id());
  v1::Thread other = client().NewThread();

  v1::DeleteThreadRequest del;
  del.set_thread_id(thread.id());
  ASSERT_TRUE(client().Call(del).ok());

  v1::GetMessageRequest get;
  get.set_thread_id(thread.id());
  get.set_message_id(message.id());
  ExpectError(client().Call(get), grpc::StatusCode::NOT_FOUND,
              "THREAD_NOT_FOUND", "thread_id", thread.id());
  v1::ListMessagesRequest list;
  list.set_thread_id(thread.id());
  ExpectError(client().Call(list), grpc::StatusCode::NOT_FOUND,
              "THREAD_NOT_FOUND", "thread_id", thread.id());
  // The message is gone from the store too, not just hidden by its thread:
  // its id is free again (the store refuses ids of live objects).
  v1::Message reused = message;
  reused.set_thread_id(other.id());
  EXPECT_TRUE(store().inner().CreateMessage(reused, nullptr).ok());
  // The other thread is untouched.
  v1::GetThreadRequest get_other;
  get_other.set_thread_id(other.id());
  EXPECT_TRUE(client().Call(get_other).ok());
}

// ===================== MessageService =====================

TEST_F(ServiceTest, CreateGetListUpdateDeleteMessage) {
  v1::Thread thread = client().NewThread();
  clock().Advance(std::chrono::seconds(3));
  v1::CreateMessageRequest request;
  request.set_thread_id(thread.id());
  request.mutable_message()->set_role(v1::MESSAGE_ROLE_USER);
  request.mutable_message()->set_text("What is 2+2?");
  v1::Attachment* attachment = request.mutable_message()->add_attachments();
  attachment->set_file_id("file_x");
  attachment->add_tools()->mutable_code_interpreter();
  (*request.mutable_message()->mutable_metadata())["k"] = "v";
  v1::CreateMessageResponse created;
  ASSERT_TRUE(client().Call(request, &created).ok());
  const v1::Message& m = created.message();
  EXPECT_THAT(m.id(), StartsWith("msg_"));
  EXPECT_EQ(m.id().size(), 4u + 22u);
  EXPECT_EQ(m.object(), "thread.message");
  EXPECT_EQ(m.created_at(), kStartSeconds + 3);
  EXPECT_EQ(m.thread_id(), thread.id());
  EXPECT_EQ(m.status(), v1::MESSAGE_STATUS_COMPLETED);
  EXPECT_EQ(m.role(), v1::MESSAGE_ROLE_USER);
  ASSERT_EQ(m.content_size(), 1);
  EXPECT_EQ(m.content(0).text().value(), "What is 2+2?");
  ASSERT_EQ(m.attachments_size(), 1);
  EXPECT_TRUE(MessageDifferencer::Equals(m.attachments(0), *attachment));
  EXPECT_EQ(m.metadata().at("k"), "v");

  v1::GetMessageRequest get;
  get.set_thread_id(thread.id());
  get.set_message_id(m.id());
  v1::GetMessageResponse got;
  ASSERT_TRUE(client().Call(get, &got).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(got.message(), m));

  v1::ListMessagesResponse list = client().ListMessages(thread.id());
  EXPECT_EQ(list.object(), "list");
  ASSERT_THAT(list.data(), SizeIs(1));
  EXPECT_TRUE(MessageDifferencer::Equals(list.data(0), m));
  EXPECT_EQ(list.first_id(), m.id());
  EXPECT_EQ(list.last_id(), m.id());
  EXPECT_FALSE(list.has_more());

  // Metadata is replaced whole; nothing else changes.
  v1::UpdateMessageRequest update;
  update.set_thread_id(thread.id());
  update.set_message_id(m.id());
  (*update.mutable_metadata())["other"] = "x";
  v1::UpdateMessageResponse updated;
  ASSERT_TRUE(client().Call(update, &updated).ok());
  v1::Message expected = m;
  expected.clear_metadata();
  (*expected.mutable_metadata())["other"] = "x";
  EXPECT_TRUE(MessageDifferencer::Equals(updated.message(), expected))
      << updated.message().DebugString();
  ASSERT_TRUE(client().Call(get, &got).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(got.message(), expected));

  v1::DeleteMessageRequest del;
  del.set_thread_id(thread.id());
  del.set_message_id(m.id());
  v1::DeleteMessageResponse deleted;
  ASSERT_TRUE(client().Call(del, &deleted).ok());
  EXPECT_EQ(deleted.id(), m.id());
  EXPECT_EQ(deleted.object(), "thread.message.deleted");
  EXPECT_TRUE(deleted.deleted());
  ExpectError(client().Call(get), grpc::StatusCode::NOT_FOUND,
              "MESSAGE_NOT_FOUND", "message_id", m.id());
  ExpectError(client().Call(del), grpc::StatusCode::NOT_FOUND,
              "MESSAGE_NOT_FOUND", "message_id", m.id());
  EXPECT_THAT(client().ListMessages(thread.id()).data(), IsEmpty());
}

TEST_F(ServiceTest, ListMessagesFiltersByRunId) {
  v1::Thread thread = client().NewThread();
  v1::Message user = client().NewMessage(thread.id(), "question");
  // Runs are not served yet: write run output straight into the store.
  v1::Message from_run;
  from_run.set_id("msg_fromrun1");
  from_run.set_object("thread.message");
  from_run.set_thread_id(thread.id());
  from_run.set_role(v1::MESSAGE_ROLE_ASSISTANT);
  from_run.set_run_id("run_abc");
  from_run.set_assistant_id("asst_abc");
  from_run.add_content()->mutable_text()->set_value("answer");
  ASSERT_TRUE(store().inner().CreateMessage(from_run, nullptr).ok());
  v1::Message other_run = from_run;
  other_run.set_id("msg_fromrun2");
  other_run.set_run_id("run_def");
  ASSERT_TRUE(store().inner().CreateMessage(other_run, nullptr).ok());

  v1::ListMessagesRequest request;
  request.set_thread_id(thread.id());
  request.set_run_id("run_abc");
  v1::ListMessagesResponse list;
  ASSERT_TRUE(client().Call(request, &list).ok());
  EXPECT_THAT(Ids(list), ElementsAre("msg_fromrun1"));
  EXPECT_EQ(list.data(0).run_id(), "run_abc");
  EXPECT_FALSE(list.has_more());

  request.set_run_id("run_none");
  ASSERT_TRUE(client().Call(request, &list).ok());
  EXPECT_THAT(list.data(), IsEmpty());
  EXPECT_FALSE(list.has_more());

  request.clear_run_id();
  ASSERT_TRUE(client().Call(request, &list).ok());
  EXPECT_THAT(Ids(list),
              ElementsAre("msg_fromrun2", "msg_fromrun1", user.id()));
}

TEST_F(ServiceTest, PaginatesMessagesWithDefaultLimit) {
  v1::CreateThreadRequest request;
  for (int i = 0; i < 25; ++i) {
    v1::MessageInput* input = request.add_messages();
    input->set_role(v1::MESSAGE_ROLE_USER);
    input->set_text(absl::StrCat("m", i));
  }
  v1::Thread thread = client().NewThread(request);

  // Default: 20 items, newest first.
  v1::ListMessagesResponse page = client().ListMessages(thread.id());
  ASSERT_THAT(page.data(), SizeIs(20));
  EXPECT_EQ(page.data(0).content(0).text().value(), "m24");
  EXPECT_EQ(page.data(19).content(0).text().value(), "m5");
  EXPECT_TRUE(page.has_more());
  EXPECT_EQ(page.first_id(), page.data(0).id());
  EXPECT_EQ(page.last_id(), page.data(19).id());

  v1::ListOptions options;
  options.set_after(page.last_id());
  v1::ListMessagesResponse rest = client().ListMessages(thread.id(), options);
  ASSERT_THAT(rest.data(), SizeIs(5));
  EXPECT_EQ(rest.data(0).content(0).text().value(), "m4");
  EXPECT_EQ(rest.data(4).content(0).text().value(), "m0");
  EXPECT_FALSE(rest.has_more());

  // Paging past a deleted message.
  options.Clear();
  options.set_order(v1::LIST_ORDER_ASC);
  options.set_limit(3);
  page = client().ListMessages(thread.id(), options);
  ASSERT_THAT(page.data(), SizeIs(3));
  v1::DeleteMessageRequest del;
  del.set_thread_id(thread.id());
  del.set_message_id(page.last_id());
  ASSERT_TRUE(client().Call(del).ok());
  options.set_after(page.last_id());
  page = client().ListMessages(thread.id(), options);
  ASSERT_THAT(page.data(), SizeIs(3));
  EXPECT_EQ(page.data(0).content(0).text().value(), "m3");
  EXPECT_TRUE(page.has_more());

  // limit 100 holds everything that is left.
  options.Clear();
  options.set_limit(100);
  page = client().ListMessages(thread.id(), options);
  EXPECT_THAT(page.data(), SizeIs(24));
  EXPECT_FALSE(page.has_more());
}

TEST(MessageLimitTest, ThreadMessageLimitIsFailedPrecondition) {
  Gateway gateway(/*max_messages_per_thread=*/2);
  ASSERT_TRUE(gateway.ok());
  Client& client = *gateway.client_;
  v1::CreateThreadRequest request;
  for (int i = 0; i < 3; ++i) {
    v1::MessageInput* input = request.add_messages();
    input->set_role(v1::MESSAGE_ROLE_USER);
    input->set_text("m");
  }
  ExpectError(client.Call(request), grpc::StatusCode::FAILED_PRECONDITION,
              "THREAD_MESSAGE_LIMIT");
  EXPECT_EQ(gateway.store_.writes(), 0);

  request.mutable_messages()->RemoveLast();
  v1::Thread thread = client.NewThread(request);
  v1::CreateMessageRequest more;
  more.set_thread_id(thread.id());
  more.mutable_message()->set_role(v1::MESSAGE_ROLE_USER);
  more.mutable_message()->set_text("one too many");
  ExpectError(client.Call(more), grpc::StatusCode::FAILED_PRECONDITION,
              "THREAD_MESSAGE_LIMIT", "thread_id", thread.id());
  EXPECT_THAT(client.ListMessages(thread.id()).data(), SizeIs(2));

  // Deleting a message makes room again.
  v1::DeleteMessageRequest del;
  del.set_thread_id(thread.id());
  del.set_message_id(client.ListMessages(thread.id()).first_id());
  ASSERT_TRUE(client.Call(del).ok());
  EXPECT_TRUE(client.Call(more).ok());
}

// ===================== NOT_FOUND =====================

TEST_F(ServiceTest, UnknownIdsAreNotFoundWithReasons) {
  const std::string asst = "asst_doesnotexist";
  const std::string thread = "thread_doesnotexist";
  const std::string msg = "msg_doesnotexist";
  v1::GetAssistantRequest get_a;
  get_a.set_assistant_id(asst);
  ExpectError(client().Call(get_a), grpc::StatusCode::NOT_FOUND,
              "ASSISTANT_NOT_FOUND", "assistant_id", asst);
  v1::UpdateAssistantRequest update_a;
  update_a.set_assistant_id(asst);
  update_a.set_name("x");
  ExpectError(client().Call(update_a), grpc::StatusCode::NOT_FOUND,
              "ASSISTANT_NOT_FOUND", "assistant_id", asst);
  v1::DeleteAssistantRequest delete_a;
  delete_a.set_assistant_id(asst);
  ExpectError(client().Call(delete_a), grpc::StatusCode::NOT_FOUND,
              "ASSISTANT_NOT_FOUND", "assistant_id", asst);

  v1::GetThreadRequest get_t;
  get_t.set_thread_id(thread);
  ExpectError(client().Call(get_t), grpc::StatusCode::NOT_FOUND,
              "THREAD_NOT_FOUND", "thread_id", thread);
  v1::UpdateThreadRequest update_t;
  update_t.set_thread_id(thread);
  ExpectError(client().Call(update_t), grpc::StatusCode::NOT_FOUND,
              "THREAD_NOT_FOUND", "thread_id", thread);
  v1::DeleteThreadRequest delete_t;
  delete_t.set_thread_id(thread);
  ExpectError(client().Call(delete_t), grpc::StatusCode::NOT_FOUND,
              "THREAD_NOT_FOUND", "thread_id", thread);

  v1::CreateMessageRequest create_m;
  create_m.set_thread_id(thread);
  create_m.mutable_message()->set_role(v1::MESSAGE_ROLE_USER);
  create_m.mutable_message()->set_text("hi");
  ExpectError(client().Call(create_m), grpc::StatusCode::NOT_FOUND,
              "THREAD_NOT_FOUND", "thread_id", thread);
  v1::ListMessagesRequest list_m;
  list_m.set_thread_id(thread);
  ExpectError(client().Call(list_m), grpc::StatusCode::NOT_FOUND,
              "THREAD_NOT_FOUND", "thread_id", thread);

  // Unknown message in an existing thread.
  v1::Thread real = client().NewThread();
  v1::GetMessageRequest get_m;
  get_m.set_thread_id(real.id());
  get_m.set_message_id(msg);
  ExpectError(client().Call(get_m), grpc::StatusCode::NOT_FOUND,
              "MESSAGE_NOT_FOUND", "message_id", msg);
  v1::UpdateMessageRequest update_m;
  update_m.set_thread_id(real.id());
  update_m.set_message_id(msg);
  ExpectError(client().Call(update_m), grpc::StatusCode::NOT_FOUND,
              "MESSAGE_NOT_FOUND", "message_id", msg);
  v1::DeleteMessageRequest delete_m;
  delete_m.set_thread_id(real.id());
  delete_m.set_message_id(msg);
  ExpectError(client().Call(delete_m), grpc::StatusCode::NOT_FOUND,
              "MESSAGE_NOT_FOUND", "message_id", msg);
  // Unknown thread wins over unknown message.
  get_m.set_thread_id(thread);
  ExpectError(client().Call(get_m), grpc::StatusCode::NOT_FOUND,
              "THREAD_NOT_FOUND", "thread_id", thread);
  EXPECT_EQ(store().writes(), 1);  // only the thread created above
}

TEST_F(ServiceTest, MessageOfAnotherThreadIsNotFound) {
  v1::Thread a = client().NewThread();
  v1::Thread b = client().NewThread();
  v1::Message in_a = client().NewMessage(a.id());

  v1::GetMessageRequest get;
  get.set_thread_id(b.id());
  get.set_message_id(in_a.id());
  ExpectError(client().Call(get), grpc::StatusCode::NOT_FOUND,
              "MESSAGE_NOT_FOUND", "message_id", in_a.id());
  v1::UpdateMessageRequest update;
  update.set_thread_id(b.id());
  update.set_message_id(in_a.id());
  (*update.mutable_metadata())["k"] = "v";
  ExpectError(client().Call(update), grpc::StatusCode::NOT_FOUND,
              "MESSAGE_NOT_FOUND", "message_id", in_a.id());
  v1::DeleteMessageRequest del;
  del.set_thread_id(b.id());
  del.set_message_id(in_a.id());
  ExpectError(client().Call(del), grpc::StatusCode::NOT_FOUND,
              "MESSAGE_NOT_FOUND", "message_id", in_a.id());

  // Still intact in its own thread.
  get.set_thread_id(a.id());
  v1::GetMessageResponse got;
  ASSERT_TRUE(client().Call(get, &got).ok());
  EXPECT_TRUE(got.message().metadata().empty());
  // And a message of another thread is no cursor for this one.
  v1::ListMessagesRequest list;
  list.set_thread_id(b.id());
  list.mutable_options()->set_after(in_a.id());
  ExpectError(client().Call(list), grpc::StatusCode::INVALID_ARGUMENT,
              "INVALID_CURSOR");
}

// ===================== Idempotency =====================

TEST_F(ServiceTest, SameRequestIdAndRequestReturnsTheSameAssistant) {
  v1::CreateAssistantRequest request;
  request.set_model("gpt-4o");
  request.set_name("once");
  request.set_request_id("req-1");
  v1::CreateAssistantResponse first;
  ASSERT_TRUE(client().Call(request, &first).ok());
  clock().Advance(std::chrono::seconds(30));
  v1::CreateAssistantResponse second;
  ASSERT_TRUE(client().Call(request, &second).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(first, second));
  EXPECT_THAT(client().ListAssistants({}).data(), SizeIs(1));
  EXPECT_EQ(store().writes(), 1);

  // A different request under the same key.
  request.set_name("twice");
  grpc::Status status = client().Call(request);
  ExpectError(status, grpc::StatusCode::FAILED_PRECONDITION,
              "IDEMPOTENCY_KEY_REUSED", "request_id", "req-1");
  ExpectError(status, grpc::StatusCode::FAILED_PRECONDITION,
              "IDEMPOTENCY_KEY_REUSED", "field", "request_id");
  EXPECT_THAT(client().ListAssistants({}).data(), SizeIs(1));

  // Another key creates another assistant.
  request.set_request_id("req-2");
  ASSERT_TRUE(client().Call(request).ok());
  EXPECT_THAT(client().ListAssistants({}).data(), SizeIs(2));
  // Without a key every call creates.
  request.clear_request_id();
  ASSERT_TRUE(client().Call(request).ok());
  ASSERT_TRUE(client().Call(request).ok());
  EXPECT_THAT(client().ListAssistants({}).data(), SizeIs(4));
}

TEST_F(ServiceTest, IdempotencyKeysArePerMethod) {
  v1::CreateAssistantRequest assistant;
  assistant.set_model("gpt-4o");
  assistant.set_request_id("shared");
  ASSERT_TRUE(client().Call(assistant).ok());
  v1::CreateThreadRequest thread;
  thread.set_request_id("shared");
  v1::CreateThreadResponse created;
  EXPECT_TRUE(client().Call(thread, &created).ok());
  EXPECT_THAT(created.thread().id(), StartsWith("thread_"));
}

TEST_F(ServiceTest, IdempotencyKeyExpiresAfter24Hours) {
  v1::CreateAssistantRequest request;
  request.set_model("gpt-4o");
  request.set_request_id("daily");
  v1::CreateAssistantResponse first;
  ASSERT_TRUE(client().Call(request, &first).ok());
  clock().Advance(std::chrono::hours(23));
  v1::CreateAssistantResponse again;
  ASSERT_TRUE(client().Call(request, &again).ok());
  EXPECT_EQ(again.assistant().id(), first.assistant().id());
  clock().Advance(std::chrono::hours(2));
  ASSERT_TRUE(client().Call(request, &again).ok());
  EXPECT_NE(again.assistant().id(), first.assistant().id());
  EXPECT_THAT(client().ListAssistants({}).data(), SizeIs(2));
}

TEST_F(ServiceTest, RejectedRequestDoesNotConsumeTheKey) {
  v1::CreateAssistantRequest request;
  request.set_request_id("fix-and-retry");
  ExpectError(client().Call(request), grpc::StatusCode::INVALID_ARGUMENT,
              "FIELD_REQUIRED", "field", "model");
  request.set_model("gpt-4o");
  EXPECT_TRUE(client().Call(request).ok());
}

TEST_F(ServiceTest, CreateThreadIsIdempotentWithItsMessages) {
  v1::CreateThreadRequest request;
  request.set_request_id("thread-once");
  for (const char* text : {"a", "b"}) {
    v1::MessageInput* input = request.add_messages();
    input->set_role(v1::MESSAGE_ROLE_USER);
    input->set_text(text);
  }
  v1::CreateThreadResponse first, second;
  ASSERT_TRUE(client().Call(request, &first).ok());
  ASSERT_TRUE(client().Call(request, &second).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(first, second));
  EXPECT_THAT(client().ListMessages(first.thread().id()).data(), SizeIs(2));
  EXPECT_EQ(store().writes(), 1);

  request.mutable_messages(1)->set_text("c");
  ExpectError(client().Call(request), grpc::StatusCode::FAILED_PRECONDITION,
              "IDEMPOTENCY_KEY_REUSED");
}

TEST_F(ServiceTest, CreateMessageIsIdempotent) {
  v1::Thread thread = client().NewThread();
  v1::CreateMessageRequest request;
  request.set_thread_id(thread.id());
  request.set_request_id("msg-once");
  request.mutable_message()->set_role(v1::MESSAGE_ROLE_USER);
  request.mutable_message()->set_text("hi");
  v1::CreateMessageResponse first, second;
  ASSERT_TRUE(client().Call(request, &first).ok());
  ASSERT_TRUE(client().Call(request, &second).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(first, second));
  EXPECT_THAT(client().ListMessages(thread.id()).data(), SizeIs(1));

  // Same key, another thread: a different request.
  v1::Thread other = client().NewThread();
  request.set_thread_id(other.id());
  ExpectError(client().Call(request), grpc::StatusCode::FAILED_PRECONDITION,
              "IDEMPOTENCY_KEY_REUSED");
  EXPECT_THAT(client().ListMessages(other.id()).data(), IsEmpty());
}

TEST_F(ServiceTest, ConcurrentDuplicatesCreateOneAssistant) {
  constexpr int kCallers = 8;
  v1::CreateAssistantRequest request;
  request.set_model("gpt-4o");
  request.set_name("racy");
  request.set_request_id("concurrent-key");
  std::vector<std::string> ids(kCallers);
  std::vector<grpc::Status> statuses(kCallers);
  std::vector<std::thread> callers;
  std::atomic<bool> go{false};
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([&, i] {
      Client own(gateway_.server_->port());  // one channel per caller
      while (!go.load()) std::this_thread::yield();
      v1::CreateAssistantResponse response;
      statuses[i] = own.Call(request, &response);
      ids[i] = response.assistant().id();
    });
  }
  go = true;
  for (std::thread& t : callers) t.join();
  for (int i = 0; i < kCallers; ++i) {
    EXPECT_TRUE(statuses[i].ok()) << statuses[i].error_message();
  }
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 1u);
  EXPECT_THAT(client().ListAssistants({}).data(), SizeIs(1));
  EXPECT_EQ(store().writes(), 1);
}

TEST_F(ServiceTest, ConcurrentConflictingRequestsUnderOneKey) {
  constexpr int kCallers = 8;
  std::vector<grpc::Status> statuses(kCallers);
  std::vector<std::string> ids(kCallers);
  std::vector<std::thread> callers;
  std::atomic<bool> go{false};
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([&, i] {
      Client own(gateway_.server_->port());
      v1::CreateThreadRequest request;
      request.set_request_id("contested");
      (*request.mutable_metadata())["variant"] = i % 2 == 0 ? "even" : "odd";
      while (!go.load()) std::this_thread::yield();
      v1::CreateThreadResponse response;
      statuses[i] = own.Call(request, &response);
      ids[i] = response.thread().id();
    });
  }
  go = true;
  for (std::thread& t : callers) t.join();
  std::set<std::string> created;
  int ok = 0;
  for (int i = 0; i < kCallers; ++i) {
    if (statuses[i].ok()) {
      ++ok;
      created.insert(ids[i]);
    } else {
      ExpectError(statuses[i], grpc::StatusCode::FAILED_PRECONDITION,
                  "IDEMPOTENCY_KEY_REUSED");
    }
  }
  EXPECT_EQ(ok, kCallers / 2);  // exactly the winner's variant
  EXPECT_EQ(created.size(), 1u);
  EXPECT_EQ(store().writes(), 1);
}

// ===================== Run and registry services, health =====================

// The run RPCs are served (their behaviour is tested in tests/runs and
// tests/e2e); here: they answer typed errors for bad input and unknown ids.
TEST_F(ServiceTest, RunServiceAnswersTypedErrors) {
  ExpectError(client().Call(v1::CreateRunRequest()),
              grpc::StatusCode::INVALID_ARGUMENT, "FIELD_REQUIRED", "field",
              "thread_id");
  v1::GetRunRequest get;
  get.set_thread_id("thread_abc");
  get.set_run_id("run_abc");
  ExpectError(client().Call(get), grpc::StatusCode::NOT_FOUND,
              "THREAD_NOT_FOUND");
  v1::SubmitToolOutputsRequest submit;
  submit.set_thread_id("thread_abc");
  submit.set_run_id("run_abc");
  ExpectError(client().Call(submit), grpc::StatusCode::INVALID_ARGUMENT,
              "FIELD_REQUIRED", "field", "tool_outputs");
}

TEST_F(ServiceTest, RunEventsUnknownRunIsNotFound) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  v1::RunEventsRequest request;
  request.set_thread_id("thread_abc");
  request.set_run_id("run_abc");
  auto reader = client().runs().RunEvents(&context, request);
  v1::RunEventsResponse event;
  EXPECT_FALSE(reader->Read(&event));
  ExpectError(reader->Finish(), grpc::StatusCode::NOT_FOUND,
              "THREAD_NOT_FOUND");
}

// The registry's rules are tested in tests/tool_workers; here: the adapter
// is wired, and a gateway without a registration token refuses workers.
TEST_F(ServiceTest, ToolRegistryWithoutTokenRefusesRegistration) {
  v1::RegisterWorkerRequest request;
  request.set_worker_id("w1");
  request.set_endpoint("127.0.0.1:7000");
  ExpectError(client().Call(request), grpc::StatusCode::PERMISSION_DENIED,
              "REGISTRATION_DISABLED");
  v1::ListToolsResponse tools;
  ASSERT_TRUE(client().Call(v1::ListToolsRequest(), &tools).ok());
  EXPECT_EQ(tools.tools_size(), 0);
  v1::ListWorkersResponse workers;
  ASSERT_TRUE(client().Call(v1::ListWorkersRequest(), &workers).ok());
  EXPECT_EQ(workers.workers_size(), 0);
}

// No generated health stubs: call grpc.health.v1.Health/Check generically
// with an empty HealthCheckRequest (service "" = the whole server).
TEST_F(ServiceTest, HealthCheckServing) {
  grpc::GenericStub stub(client().channel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  grpc::Slice empty_message(std::string{});
  grpc::ByteBuffer request(&empty_message, 1);  // an empty message
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                 &request, &response,
                 [&done](grpc::Status status) { done.set_value(status); });
  grpc::Status status = done.get_future().get();
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  // HealthCheckResponse{status: SERVING (1)} is field 1, varint 1.
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
}

// ===================== Validation rule table =====================

// What exists before a table row's call.
enum class Setup { kNone, kAssistant, kThread, kThreadWithMessage };

struct Existing {
  std::string assistant_id;
  std::string thread_id;
  std::string message_id;
};

struct ValidationCase {
  std::string name;
  Setup setup;
  std::function<grpc::Status(Client&, const Existing&)> call;
  grpc::StatusCode code;
  // Expected ErrorInfo.reason and field (ErrorInfo.metadata["field"] and
  // BadRequest.field_violations[0].field); empty for an OK row.
  std::string reason;
  std::string field;
};

void PrintTo(const ValidationCase& c, std::ostream* os) { *os << c.name; }

constexpr grpc::StatusCode kOk = grpc::StatusCode::OK;
constexpr grpc::StatusCode kInvalid = grpc::StatusCode::INVALID_ARGUMENT;

ValidationCase CreateAssistantCase(
    std::string name, std::function<void(v1::CreateAssistantRequest&)> edit,
    grpc::StatusCode code, std::string reason = "", std::string field = "") {
  return {std::move(name),
          Setup::kNone,
          [edit](Client& client, const Existing&) {
            v1::CreateAssistantRequest request;
            request.set_model("gpt-4o");
            edit(request);
            return client.Call(request);
          },
          code,
          std::move(reason),
          std::move(field)};
}

ValidationCase UpdateAssistantCase(
    std::string name, std::function<void(v1::UpdateAssistantRequest&)> edit,
    grpc::StatusCode code, std::string reason = "", std::string field = "") {
  return {std::move(name),
          Setup::kAssistant,
          [edit](Client& client, const Existing& existing) {
            v1::UpdateAssistantRequest request;
            request.set_assistant_id(existing.assistant_id);
            edit(request);
            return client.Call(request);
          },
          code,
          std::move(reason),
          std::move(field)};
}

ValidationCase CreateThreadCase(
    std::string name, std::function<void(v1::CreateThreadRequest&)> edit,
    grpc::StatusCode code, std::string reason = "", std::string field = "") {
  return {std::move(name),
          Setup::kNone,
          [edit](Client& client, const Existing&) {
            v1::CreateThreadRequest request;
            edit(request);
            return client.Call(request);
          },
          code,
          std::move(reason),
          std::move(field)};
}

// A CreateMessage on an existing thread whose body starts as a valid user
// text message and is then edited.
ValidationCase CreateMessageCase(
    std::string name, std::function<void(v1::CreateMessageRequest&)> edit,
    grpc::StatusCode code, std::string reason = "", std::string field = "") {
  return {std::move(name),
          Setup::kThread,
          [edit](Client& client, const Existing& existing) {
            v1::CreateMessageRequest request;
            request.set_thread_id(existing.thread_id);
            request.mutable_message()->set_role(v1::MESSAGE_ROLE_USER);
            request.mutable_message()->set_text("hello");
            edit(request);
            return client.Call(request);
          },
          code,
          std::move(reason),
          std::move(field)};
}

// As CreateMessageCase, with the body given as content parts only.
ValidationCase ContentCase(std::string name,
                           std::function<void(v1::MessageInput&)> edit,
                           grpc::StatusCode code, std::string reason = "",
                           std::string field = "") {
  return CreateMessageCase(
      std::move(name),
      [edit](v1::CreateMessageRequest& request) {
        request.mutable_message()->clear_text();
        edit(*request.mutable_message());
      },
      code, std::move(reason), std::move(field));
}

ValidationCase ListAssistantsCase(std::string name,
                                  std::function<void(v1::ListOptions&)> edit,
                                  grpc::StatusCode code,
                                  std::string reason = "",
                                  std::string field = "") {
  return {std::move(name),
          Setup::kAssistant,
          [edit](Client& client, const Existing&) {
            v1::ListAssistantsRequest request;
            edit(*request.mutable_options());
            return client.Call(request);
          },
          code,
          std::move(reason),
          std::move(field)};
}

ValidationCase ListMessagesCase(
    std::string name, std::function<void(v1::ListMessagesRequest&)> edit,
    grpc::StatusCode code, std::string reason = "", std::string field = "") {
  return {std::move(name),
          Setup::kThreadWithMessage,
          [edit](Client& client, const Existing& existing) {
            v1::ListMessagesRequest request;
            request.set_thread_id(existing.thread_id);
            edit(request);
            return client.Call(request);
          },
          code,
          std::move(reason),
          std::move(field)};
}

// Any other call, built from what exists.
ValidationCase CallCase(
    std::string name, Setup setup,
    std::function<grpc::Status(Client&, const Existing&)> call,
    grpc::StatusCode code, std::string reason = "", std::string field = "") {
  return {std::move(name),   setup,           std::move(call), code,
          std::move(reason), std::move(field)};
}

using CAR = v1::CreateAssistantRequest;
using UAR = v1::UpdateAssistantRequest;
using CTR = v1::CreateThreadRequest;
using CMR = v1::CreateMessageRequest;
using MI = v1::MessageInput;
using LO = v1::ListOptions;
using LMR = v1::ListMessagesRequest;

constexpr char kE[] = "\xC3\xA9";  // é: one character, two bytes

void AddFunctions(CAR& r, int n) {
  for (int i = 0; i < n; ++i)
    *r.add_tools() = FunctionTool("f" + std::to_string(i));
}

v1::FunctionDefinition& Fn(CAR& r) {
  return *r.add_tools()->mutable_function()->mutable_function();
}

void AddMetadata(google::protobuf::Map<std::string, std::string>& m, int n) {
  for (int i = 0; i < n; ++i) m["k" + std::to_string(i)] = "v";
}

v1::MessageInput TextInput(const std::string& text) {
  v1::MessageInput input;
  input.set_role(v1::MESSAGE_ROLE_USER);
  input.set_text(text);
  return input;
}

std::vector<ValidationCase> Cases() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<ValidationCase> c;

  // --- CreateAssistant: scalars ---
  c.push_back(CreateAssistantCase(
      "model_missing", [](CAR& r) { r.clear_model(); }, kInvalid,
      "FIELD_REQUIRED", "model"));
  c.push_back(CreateAssistantCase(
      "model_256_ok", [](CAR& r) { r.set_model(std::string(256, 'm')); }, kOk));
  c.push_back(CreateAssistantCase(
      "model_257", [](CAR& r) { r.set_model(std::string(257, 'm')); }, kInvalid,
      "FIELD_TOO_LONG", "model"));
  c.push_back(CreateAssistantCase(
      "name_256_ok", [](CAR& r) { r.set_name(std::string(256, 'n')); }, kOk));
  c.push_back(CreateAssistantCase(
      "name_257", [](CAR& r) { r.set_name(std::string(257, 'n')); }, kInvalid,
      "FIELD_TOO_LONG", "name"));
  c.push_back(CreateAssistantCase(
      "name_256_multibyte_ok", [](CAR& r) { r.set_name(Repeat(256, kE)); },
      kOk));
  c.push_back(CreateAssistantCase(
      "name_257_multibyte", [](CAR& r) { r.set_name(Repeat(257, kE)); },
      kInvalid, "FIELD_TOO_LONG", "name"));
  c.push_back(CreateAssistantCase(
      "description_512_ok",
      [](CAR& r) { r.set_description(std::string(512, 'd')); }, kOk));
  c.push_back(CreateAssistantCase(
      "description_513",
      [](CAR& r) { r.set_description(std::string(513, 'd')); }, kInvalid,
      "FIELD_TOO_LONG", "description"));
  c.push_back(CreateAssistantCase(
      "instructions_256000_ok",
      [](CAR& r) { r.set_instructions(std::string(256'000, 'i')); }, kOk));
  c.push_back(CreateAssistantCase(
      "instructions_256001",
      [](CAR& r) { r.set_instructions(std::string(256'001, 'i')); }, kInvalid,
      "FIELD_TOO_LONG", "instructions"));
  c.push_back(CreateAssistantCase(
      "upstream_64_ok", [](CAR& r) { r.set_upstream(std::string(64, 'u')); },
      kOk));
  c.push_back(CreateAssistantCase(
      "upstream_65", [](CAR& r) { r.set_upstream(std::string(65, 'u')); },
      kInvalid, "FIELD_TOO_LONG", "upstream"));
  c.push_back(CreateAssistantCase(
      "temperature_bounds_ok", [](CAR& r) { r.set_temperature(2); }, kOk));
  c.push_back(CreateAssistantCase(
      "temperature_zero_ok", [](CAR& r) { r.set_temperature(0); }, kOk));
  c.push_back(CreateAssistantCase(
      "temperature_negative", [](CAR& r) { r.set_temperature(-0.01); },
      kInvalid, "VALUE_OUT_OF_RANGE", "temperature"));
  c.push_back(CreateAssistantCase(
      "temperature_above_2", [](CAR& r) { r.set_temperature(2.01); }, kInvalid,
      "VALUE_OUT_OF_RANGE", "temperature"));
  c.push_back(CreateAssistantCase(
      "temperature_nan", [nan](CAR& r) { r.set_temperature(nan); }, kInvalid,
      "VALUE_OUT_OF_RANGE", "temperature"));
  c.push_back(CreateAssistantCase(
      "temperature_infinite", [inf](CAR& r) { r.set_temperature(inf); },
      kInvalid, "VALUE_OUT_OF_RANGE", "temperature"));
  c.push_back(CreateAssistantCase(
      "top_p_1_ok", [](CAR& r) { r.set_top_p(1); }, kOk));
  c.push_back(CreateAssistantCase(
      "top_p_above_1", [](CAR& r) { r.set_top_p(1.01); }, kInvalid,
      "VALUE_OUT_OF_RANGE", "top_p"));
  c.push_back(CreateAssistantCase(
      "top_p_negative", [](CAR& r) { r.set_top_p(-0.5); }, kInvalid,
      "VALUE_OUT_OF_RANGE", "top_p"));
  c.push_back(CreateAssistantCase(
      "top_p_nan", [nan](CAR& r) { r.set_top_p(nan); }, kInvalid,
      "VALUE_OUT_OF_RANGE", "top_p"));

  // --- CreateAssistant: tools ---
  c.push_back(CreateAssistantCase(
      "tools_128_ok", [](CAR& r) { AddFunctions(r, 128); }, kOk));
  c.push_back(CreateAssistantCase(
      "tools_129", [](CAR& r) { AddFunctions(r, 129); }, kInvalid,
      "TOO_MANY_ITEMS", "tools"));
  c.push_back(CreateAssistantCase(
      "tool_without_type",
      [](CAR& r) {
        *r.add_tools() = CodeInterpreterTool();
        r.add_tools();
      },
      kInvalid, "FIELD_REQUIRED", "tools[1]"));
  c.push_back(CreateAssistantCase(
      "function_name_empty", [](CAR& r) { Fn(r).set_description("x"); },
      kInvalid, "FIELD_REQUIRED", "tools[0].function.function.name"));
  c.push_back(CreateAssistantCase(
      "function_name_bad_chars", [](CAR& r) { Fn(r).set_name("get weather"); },
      kInvalid, "INVALID_FORMAT", "tools[0].function.function.name"));
  c.push_back(CreateAssistantCase(
      "function_name_dot", [](CAR& r) { Fn(r).set_name("ns.fn"); }, kInvalid,
      "INVALID_FORMAT", "tools[0].function.function.name"));
  c.push_back(CreateAssistantCase(
      "function_name_64_ok",
      [](CAR& r) { Fn(r).set_name(std::string(64, 'f')); }, kOk));
  c.push_back(CreateAssistantCase(
      "function_name_65", [](CAR& r) { Fn(r).set_name(std::string(65, 'f')); },
      kInvalid, "FIELD_TOO_LONG", "tools[0].function.function.name"));
  c.push_back(CreateAssistantCase(
      "function_names_duplicate",
      [](CAR& r) {
        *r.add_tools() = FunctionTool("same");
        *r.add_tools() = CodeInterpreterTool();
        *r.add_tools() = FunctionTool("same");
      },
      kInvalid, "DUPLICATE_VALUE", "tools[2].function.function.name"));
  c.push_back(CreateAssistantCase(
      "function_parameters_object_ok",
      [](CAR& r) {
        v1::FunctionDefinition& fn = Fn(r);
        fn.set_name("f");
        *fn.mutable_parameters() = SchemaOfType("object");
      },
      kOk));
  c.push_back(CreateAssistantCase(
      "function_parameters_not_object",
      [](CAR& r) {
        v1::FunctionDefinition& fn = Fn(r);
        fn.set_name("f");
        *fn.mutable_parameters() = SchemaOfType("array");
      },
      kInvalid, "INVALID_VALUE", "tools[0].function.function.parameters.type"));
  c.push_back(CreateAssistantCase(
      "function_parameters_type_not_string",
      [](CAR& r) {
        v1::FunctionDefinition& fn = Fn(r);
        fn.set_name("f");
        (*fn.mutable_parameters()->mutable_fields())["type"].set_number_value(
            1);
      },
      kInvalid, "INVALID_VALUE", "tools[0].function.function.parameters.type"));
  c.push_back(CreateAssistantCase(
      "function_description_1024_ok",
      [](CAR& r) {
        v1::FunctionDefinition& fn = Fn(r);
        fn.set_name("f");
        fn.set_description(std::string(1024, 'd'));
      },
      kOk));
  c.push_back(CreateAssistantCase(
      "function_description_1025",
      [](CAR& r) {
        v1::FunctionDefinition& fn = Fn(r);
        fn.set_name("f");
        fn.set_description(std::string(1025, 'd'));
      },
      kInvalid, "FIELD_TOO_LONG", "tools[0].function.function.description"));
  c.push_back(CreateAssistantCase(
      "file_search_max_results_50_ok",
      [](CAR& r) {
        r.add_tools()->mutable_file_search()->set_max_num_results(50);
      },
      kOk));
  c.push_back(CreateAssistantCase(
      "file_search_max_results_51",
      [](CAR& r) {
        r.add_tools()->mutable_file_search()->set_max_num_results(51);
      },
      kInvalid, "VALUE_OUT_OF_RANGE", "tools[0].file_search.max_num_results"));
  c.push_back(CreateAssistantCase(
      "file_search_max_results_negative",
      [](CAR& r) {
        r.add_tools()->mutable_file_search()->set_max_num_results(-1);
      },
      kInvalid, "VALUE_OUT_OF_RANGE", "tools[0].file_search.max_num_results"));
  c.push_back(CreateAssistantCase(
      "file_search_score_threshold_1_ok",
      [](CAR& r) {
        r.add_tools()
            ->mutable_file_search()
            ->mutable_ranking_options()
            ->set_score_threshold(1);
      },
      kOk));
  c.push_back(CreateAssistantCase(
      "file_search_score_threshold_above_1",
      [](CAR& r) {
        r.add_tools()
            ->mutable_file_search()
            ->mutable_ranking_options()
            ->set_score_threshold(1.5);
      },
      kInvalid, "VALUE_OUT_OF_RANGE",
      "tools[0].file_search.ranking_options.score_threshold"));
  c.push_back(CreateAssistantCase(
      "file_search_score_threshold_negative",
      [](CAR& r) {
        r.add_tools()
            ->mutable_file_search()
            ->mutable_ranking_options()
            ->set_score_threshold(-0.1);
      },
      kInvalid, "VALUE_OUT_OF_RANGE",
      "tools[0].file_search.ranking_options.score_threshold"));

  // --- CreateAssistant: tool_resources ---
  c.push_back(CreateAssistantCase(
      "code_interpreter_files_20_ok",
      [](CAR& r) {
        for (int i = 0; i < 20; ++i) {
          r.mutable_tool_resources()->mutable_code_interpreter()->add_file_ids(
              "file_" + std::to_string(i));
        }
      },
      kOk));
  c.push_back(CreateAssistantCase(
      "code_interpreter_files_21",
      [](CAR& r) {
        for (int i = 0; i < 21; ++i) {
          r.mutable_tool_resources()->mutable_code_interpreter()->add_file_ids(
              "file_" + std::to_string(i));
        }
      },
      kInvalid, "TOO_MANY_ITEMS", "tool_resources.code_interpreter.file_ids"));
  c.push_back(CreateAssistantCase(
      "vector_stores_2",
      [](CAR& r) {
        auto* fs = r.mutable_tool_resources()->mutable_file_search();
        fs->add_vector_store_ids("vs_1");
        fs->add_vector_store_ids("vs_2");
      },
      kInvalid, "TOO_MANY_ITEMS",
      "tool_resources.file_search.vector_store_ids"));

  // --- CreateAssistant: metadata ---
  c.push_back(CreateAssistantCase(
      "metadata_16_ok", [](CAR& r) { AddMetadata(*r.mutable_metadata(), 16); },
      kOk));
  c.push_back(CreateAssistantCase(
      "metadata_17", [](CAR& r) { AddMetadata(*r.mutable_metadata(), 17); },
      kInvalid, "TOO_MANY_ITEMS", "metadata"));
  c.push_back(CreateAssistantCase(
      "metadata_key_64_ok",
      [](CAR& r) { (*r.mutable_metadata())[std::string(64, 'k')] = "v"; },
      kOk));
  c.push_back(CreateAssistantCase(
      "metadata_key_65",
      [](CAR& r) { (*r.mutable_metadata())[std::string(65, 'k')] = "v"; },
      kInvalid, "FIELD_TOO_LONG", "metadata"));
  c.push_back(CreateAssistantCase(
      "metadata_value_512_ok",
      [](CAR& r) { (*r.mutable_metadata())["k"] = std::string(512, 'v'); },
      kOk));
  c.push_back(CreateAssistantCase(
      "metadata_value_513",
      [](CAR& r) { (*r.mutable_metadata())["k"] = std::string(513, 'v'); },
      kInvalid, "FIELD_TOO_LONG", "metadata[k]"));
  c.push_back(CreateAssistantCase(
      "metadata_empty_key", [](CAR& r) { (*r.mutable_metadata())[""] = "v"; },
      kInvalid, "FIELD_REQUIRED", "metadata"));

  // --- CreateAssistant: response_format ---
  c.push_back(CreateAssistantCase(
      "response_format_json_object_ok",
      [](CAR& r) {
        r.mutable_response_format()->set_type(
            v1::ResponseFormat::TYPE_JSON_OBJECT);
      },
      kOk));
  c.push_back(CreateAssistantCase(
      "json_schema_missing",
      [](CAR& r) {
        r.mutable_response_format()->set_type(
            v1::ResponseFormat::TYPE_JSON_SCHEMA);
      },
      kInvalid, "FIELD_REQUIRED", "response_format.json_schema"));
  c.push_back(CreateAssistantCase(
      "json_schema_with_type_text",
      [](CAR& r) {
        r.mutable_response_format()->set_type(v1::ResponseFormat::TYPE_TEXT);
        r.mutable_response_format()->mutable_json_schema()->set_name("s");
      },
      kInvalid, "INVALID_VALUE", "response_format.json_schema"));
  c.push_back(CreateAssistantCase(
      "json_schema_with_type_unspecified",
      [](CAR& r) {
        r.mutable_response_format()->mutable_json_schema()->set_name("s");
      },
      kInvalid, "INVALID_VALUE", "response_format.json_schema"));
  c.push_back(CreateAssistantCase(
      "json_schema_name_bad",
      [](CAR& r) {
        r.mutable_response_format()->set_type(
            v1::ResponseFormat::TYPE_JSON_SCHEMA);
        r.mutable_response_format()->mutable_json_schema()->set_name("a b");
      },
      kInvalid, "INVALID_FORMAT", "response_format.json_schema.name"));
  c.push_back(CreateAssistantCase(
      "json_schema_name_empty",
      [](CAR& r) {
        r.mutable_response_format()->set_type(
            v1::ResponseFormat::TYPE_JSON_SCHEMA);
        r.mutable_response_format()->mutable_json_schema()->set_description(
            "d");
      },
      kInvalid, "FIELD_REQUIRED", "response_format.json_schema.name"));
  c.push_back(CreateAssistantCase(
      "json_schema_schema_not_object",
      [](CAR& r) {
        r.mutable_response_format()->set_type(
            v1::ResponseFormat::TYPE_JSON_SCHEMA);
        auto* schema = r.mutable_response_format()->mutable_json_schema();
        schema->set_name("s");
        *schema->mutable_schema() = SchemaOfType("string");
      },
      kInvalid, "INVALID_VALUE", "response_format.json_schema.schema.type"));
  c.push_back(CreateAssistantCase(
      "response_format_unknown_type",
      [](CAR& r) {
        r.mutable_response_format()->set_type(
            static_cast<v1::ResponseFormat::Type>(9));
      },
      kInvalid, "INVALID_VALUE", "response_format.type"));

  // --- request_id (every create) ---
  c.push_back(CreateAssistantCase(
      "request_id_256_ok",
      [](CAR& r) { r.set_request_id(std::string(256, 'r')); }, kOk));
  c.push_back(CreateAssistantCase(
      "request_id_257", [](CAR& r) { r.set_request_id(std::string(257, 'r')); },
      kInvalid, "FIELD_TOO_LONG", "request_id"));
  c.push_back(CreateAssistantCase(
      "request_id_control_char", [](CAR& r) { r.set_request_id("req\n1"); },
      kInvalid, "INVALID_FORMAT", "request_id"));
  c.push_back(CreateAssistantCase(
      "request_id_non_ascii",
      [](CAR& r) { r.set_request_id(std::string("r") + kE); }, kInvalid,
      "INVALID_FORMAT", "request_id"));
  c.push_back(CreateThreadCase(
      "thread_request_id_control_char",
      [](CTR& r) { r.set_request_id(std::string("a\x7f", 2)); }, kInvalid,
      "INVALID_FORMAT", "request_id"));
  c.push_back(CreateMessageCase(
      "message_request_id_257",
      [](CMR& r) { r.set_request_id(std::string(257, 'r')); }, kInvalid,
      "FIELD_TOO_LONG", "request_id"));

  // --- UpdateAssistant: the same rules on the updated object ---
  c.push_back(UpdateAssistantCase(
      "update_assistant_id_empty", [](UAR& r) { r.clear_assistant_id(); },
      kInvalid, "FIELD_REQUIRED", "assistant_id"));
  c.push_back(UpdateAssistantCase(
      "update_assistant_id_wrong_prefix",
      [](UAR& r) { r.set_assistant_id("thread_x"); }, kInvalid,
      "INVALID_FORMAT", "assistant_id"));
  c.push_back(UpdateAssistantCase(
      "update_name_257", [](UAR& r) { r.set_name(std::string(257, 'n')); },
      kInvalid, "FIELD_TOO_LONG", "name"));
  c.push_back(UpdateAssistantCase(
      "update_model_empty_string", [](UAR& r) { r.set_model(""); }, kInvalid,
      "FIELD_REQUIRED", "model"));
  c.push_back(UpdateAssistantCase(
      "update_mask_clears_required_model",
      [](UAR& r) { r.mutable_update_mask()->add_paths("model"); }, kInvalid,
      "FIELD_REQUIRED", "model"));
  c.push_back(UpdateAssistantCase(
      "update_mask_unknown_path",
      [](UAR& r) { r.mutable_update_mask()->add_paths("colour"); }, kInvalid,
      "INVALID_VALUE", "update_mask.paths[0]"));
  c.push_back(UpdateAssistantCase(
      "update_temperature_3", [](UAR& r) { r.set_temperature(3); }, kInvalid,
      "VALUE_OUT_OF_RANGE", "temperature"));
  c.push_back(UpdateAssistantCase(
      "update_tools_duplicate",
      [](UAR& r) {
        *r.add_tools() = FunctionTool("dup");
        *r.add_tools() = FunctionTool("dup");
      },
      kInvalid, "DUPLICATE_VALUE", "tools[1].function.function.name"));
  c.push_back(UpdateAssistantCase(
      "update_metadata_17",
      [](UAR& r) { AddMetadata(*r.mutable_metadata(), 17); }, kInvalid,
      "TOO_MANY_ITEMS", "metadata"));
  c.push_back(UpdateAssistantCase(
      "update_vector_stores_2",
      [](UAR& r) {
        auto* fs = r.mutable_tool_resources()->mutable_file_search();
        fs->add_vector_store_ids("vs_1");
        fs->add_vector_store_ids("vs_2");
      },
      kInvalid, "TOO_MANY_ITEMS",
      "tool_resources.file_search.vector_store_ids"));
  c.push_back(UpdateAssistantCase(
      "update_json_schema_missing",
      [](UAR& r) {
        r.mutable_response_format()->set_type(
            v1::ResponseFormat::TYPE_JSON_SCHEMA);
      },
      kInvalid, "FIELD_REQUIRED", "response_format.json_schema"));
  c.push_back(UpdateAssistantCase(
      "update_upstream_65",
      [](UAR& r) { r.set_upstream(std::string(65, 'u')); }, kInvalid,
      "FIELD_TOO_LONG", "upstream"));

  // --- Ids of Get / Delete ---
  c.push_back(CallCase(
      "get_assistant_id_empty", Setup::kNone,
      [](Client& client, const Existing&) {
        return client.Call(v1::GetAssistantRequest());
      },
      kInvalid, "FIELD_REQUIRED", "assistant_id"));
  c.push_back(CallCase(
      "get_assistant_id_wrong_prefix", Setup::kNone,
      [](Client& client, const Existing&) {
        v1::GetAssistantRequest request;
        request.set_assistant_id("thread_x");
        return client.Call(request);
      },
      kInvalid, "INVALID_FORMAT", "assistant_id"));
  c.push_back(CallCase(
      "get_assistant_id_prefix_only", Setup::kNone,
      [](Client& client, const Existing&) {
        v1::GetAssistantRequest request;
        request.set_assistant_id("asst_");
        return client.Call(request);
      },
      kInvalid, "INVALID_FORMAT", "assistant_id"));
  c.push_back(CallCase(
      "get_assistant_id_bad_chars", Setup::kNone,
      [](Client& client, const Existing&) {
        v1::GetAssistantRequest request;
        request.set_assistant_id("asst_../etc");
        return client.Call(request);
      },
      kInvalid, "INVALID_FORMAT", "assistant_id"));
  c.push_back(CallCase(
      "delete_assistant_id_wrong_prefix", Setup::kAssistant,
      [](Client& client, const Existing&) {
        v1::DeleteAssistantRequest request;
        request.set_assistant_id("msg_x");
        return client.Call(request);
      },
      kInvalid, "INVALID_FORMAT", "assistant_id"));
  c.push_back(CallCase(
      "get_thread_id_empty", Setup::kNone,
      [](Client& client, const Existing&) {
        return client.Call(v1::GetThreadRequest());
      },
      kInvalid, "FIELD_REQUIRED", "thread_id"));
  c.push_back(CallCase(
      "get_thread_id_wrong_prefix", Setup::kNone,
      [](Client& client, const Existing&) {
        v1::GetThreadRequest request;
        request.set_thread_id("asst_x");
        return client.Call(request);
      },
      kInvalid, "INVALID_FORMAT", "thread_id"));
  c.push_back(CallCase(
      "delete_thread_id_wrong_prefix", Setup::kThread,
      [](Client& client, const Existing&) {
        v1::DeleteThreadRequest request;
        request.set_thread_id("thread x");
        return client.Call(request);
      },
      kInvalid, "INVALID_FORMAT", "thread_id"));
  c.push_back(CallCase(
      "get_message_id_empty", Setup::kThread,
      [](Client& client, const Existing& existing) {
        v1::GetMessageRequest request;
        request.set_thread_id(existing.thread_id);
        return client.Call(request);
      },
      kInvalid, "FIELD_REQUIRED", "message_id"));
  c.push_back(CallCase(
      "get_message_id_wrong_prefix", Setup::kThread,
      [](Client& client, const Existing& existing) {
        v1::GetMessageRequest request;
        request.set_thread_id(existing.thread_id);
        request.set_message_id("thread_x");
        return client.Call(request);
      },
      kInvalid, "INVALID_FORMAT", "message_id"));
  c.push_back(CallCase(
      "get_message_thread_id_wrong_prefix", Setup::kThreadWithMessage,
      [](Client& client, const Existing& existing) {
        v1::GetMessageRequest request;
        request.set_thread_id("msg_x");
        request.set_message_id(existing.message_id);
        return client.Call(request);
      },
      kInvalid, "INVALID_FORMAT", "thread_id"));
  c.push_back(CallCase(
      "delete_message_id_wrong_prefix", Setup::kThreadWithMessage,
      [](Client& client, const Existing& existing) {
        v1::DeleteMessageRequest request;
        request.set_thread_id(existing.thread_id);
        request.set_message_id("asst_x");
        return client.Call(request);
      },
      kInvalid, "INVALID_FORMAT", "message_id"));

  // --- UpdateThread / UpdateMessage ---
  c.push_back(CallCase(
      "update_thread_metadata_17", Setup::kThread,
      [](Client& client, const Existing& existing) {
        v1::UpdateThreadRequest request;
        request.set_thread_id(existing.thread_id);
        AddMetadata(*request.mutable_metadata(), 17);
        return client.Call(request);
      },
      kInvalid, "TOO_MANY_ITEMS", "metadata"));
  c.push_back(CallCase(
      "update_thread_files_21", Setup::kThread,
      [](Client& client, const Existing& existing) {
        v1::UpdateThreadRequest request;
        request.set_thread_id(existing.thread_id);
        for (int i = 0; i < 21; ++i) {
          request.mutable_tool_resources()
              ->mutable_code_interpreter()
              ->add_file_ids("file_" + std::to_string(i));
        }
        return client.Call(request);
      },
      kInvalid, "TOO_MANY_ITEMS", "tool_resources.code_interpreter.file_ids"));
  c.push_back(CallCase(
      "update_thread_mask_unknown_path", Setup::kThread,
      [](Client& client, const Existing& existing) {
        v1::UpdateThreadRequest request;
        request.set_thread_id(existing.thread_id);
        request.mutable_update_mask()->add_paths("metadata");
        request.mutable_update_mask()->add_paths("created_at");
        return client.Call(request);
      },
      kInvalid, "INVALID_VALUE", "update_mask.paths[1]"));
  c.push_back(CallCase(
      "update_thread_id_empty", Setup::kNone,
      [](Client& client, const Existing&) {
        return client.Call(v1::UpdateThreadRequest());
      },
      kInvalid, "FIELD_REQUIRED", "thread_id"));
  c.push_back(CallCase(
      "update_message_metadata_value_513", Setup::kThreadWithMessage,
      [](Client& client, const Existing& existing) {
        v1::UpdateMessageRequest request;
        request.set_thread_id(existing.thread_id);
        request.set_message_id(existing.message_id);
        (*request.mutable_metadata())["note"] = std::string(513, 'v');
        return client.Call(request);
      },
      kInvalid, "FIELD_TOO_LONG", "metadata[note]"));
  c.push_back(CallCase(
      "update_message_id_wrong_prefix", Setup::kThreadWithMessage,
      [](Client& client, const Existing& existing) {
        v1::UpdateMessageRequest request;
        request.set_thread_id(existing.thread_id);
        request.set_message_id("run_x");
        return client.Call(request);
      },
      kInvalid, "INVALID_FORMAT", "message_id"));

  // --- CreateThread ---
  c.push_back(CreateThreadCase(
      "thread_messages_32_ok",
      [](CTR& r) {
        for (int i = 0; i < 32; ++i) *r.add_messages() = TextInput("m");
      },
      kOk));
  c.push_back(CreateThreadCase(
      "thread_messages_33",
      [](CTR& r) {
        for (int i = 0; i < 33; ++i) *r.add_messages() = TextInput("m");
      },
      kInvalid, "TOO_MANY_ITEMS", "messages"));
  c.push_back(CreateThreadCase(
      "thread_message_role_unspecified",
      [](CTR& r) {
        *r.add_messages() = TextInput("ok");
        r.add_messages()->set_text("no role");
      },
      kInvalid, "INVALID_VALUE", "messages[1].role"));
  c.push_back(CreateThreadCase(
      "thread_message_empty_content",
      [](CTR& r) { r.add_messages()->set_role(v1::MESSAGE_ROLE_USER); },
      kInvalid, "FIELD_REQUIRED", "messages[0].content"));
  c.push_back(CreateThreadCase(
      "thread_message_metadata_17",
      [](CTR& r) {
        v1::MessageInput* input = r.add_messages();
        *input = TextInput("m");
        AddMetadata(*input->mutable_metadata(), 17);
      },
      kInvalid, "TOO_MANY_ITEMS", "messages[0].metadata"));
  c.push_back(CreateThreadCase(
      "thread_metadata_17",
      [](CTR& r) { AddMetadata(*r.mutable_metadata(), 17); }, kInvalid,
      "TOO_MANY_ITEMS", "metadata"));
  c.push_back(CreateThreadCase(
      "thread_metadata_empty_key",
      [](CTR& r) { (*r.mutable_metadata())[""] = "v"; }, kInvalid,
      "FIELD_REQUIRED", "metadata"));
  c.push_back(CreateThreadCase(
      "thread_vector_stores_2",
      [](CTR& r) {
        auto* fs = r.mutable_tool_resources()->mutable_file_search();
        fs->add_vector_store_ids("vs_1");
        fs->add_vector_store_ids("vs_2");
      },
      kInvalid, "TOO_MANY_ITEMS",
      "tool_resources.file_search.vector_store_ids"));

  // --- CreateMessage ---
  c.push_back(CreateMessageCase(
      "message_thread_id_empty", [](CMR& r) { r.clear_thread_id(); }, kInvalid,
      "FIELD_REQUIRED", "thread_id"));
  c.push_back(CreateMessageCase(
      "message_thread_id_wrong_prefix",
      [](CMR& r) { r.set_thread_id("asst_x"); }, kInvalid, "INVALID_FORMAT",
      "thread_id"));
  c.push_back(CreateMessageCase(
      "message_role_unspecified",
      [](CMR& r) { r.mutable_message()->clear_role(); }, kInvalid,
      "INVALID_VALUE", "message.role"));
  c.push_back(CreateMessageCase(
      "message_role_unknown_value",
      [](CMR& r) {
        r.mutable_message()->set_role(static_cast<v1::MessageRole>(7));
      },
      kInvalid, "INVALID_VALUE", "message.role"));
  c.push_back(CreateMessageCase(
      "message_assistant_role_ok",
      [](CMR& r) { r.mutable_message()->set_role(v1::MESSAGE_ROLE_ASSISTANT); },
      kOk));
  c.push_back(CreateMessageCase(
      "message_empty_content",
      [](CMR& r) { r.mutable_message()->clear_text(); }, kInvalid,
      "FIELD_REQUIRED", "message.content"));
  c.push_back(CreateMessageCase(
      "message_text_and_parts",
      [](CMR& r) {
        r.mutable_message()->add_content()->mutable_text()->set_value("x");
      },
      kInvalid, "INVALID_VALUE", "message.content"));
  c.push_back(CreateMessageCase(
      "message_text_256000_ok",
      [](CMR& r) { r.mutable_message()->set_text(std::string(256'000, 't')); },
      kOk));
  c.push_back(CreateMessageCase(
      "message_text_256001",
      [](CMR& r) { r.mutable_message()->set_text(std::string(256'001, 't')); },
      kInvalid, "FIELD_TOO_LONG", "message.text"));
  c.push_back(ContentCase(
      "content_part_unset",
      [](MI& m) {
        m.add_content()->mutable_text()->set_value("fine");
        m.add_content();
      },
      kInvalid, "FIELD_REQUIRED", "message.content[1]"));
  c.push_back(ContentCase(
      "content_parts_64_ok",
      [](MI& m) {
        for (int i = 0; i < 64; ++i) {
          m.add_content()->mutable_text()->set_value("p");
        }
      },
      kOk));
  c.push_back(ContentCase(
      "content_parts_65",
      [](MI& m) {
        for (int i = 0; i < 65; ++i) {
          m.add_content()->mutable_text()->set_value("p");
        }
      },
      kInvalid, "TOO_MANY_ITEMS", "message.content"));
  c.push_back(ContentCase(
      "content_text_part_empty", [](MI& m) { m.add_content()->mutable_text(); },
      kInvalid, "FIELD_REQUIRED", "message.content[0].text.value"));
  c.push_back(ContentCase(
      "content_text_part_256001",
      [](MI& m) {
        m.add_content()->mutable_text()->set_value(std::string(256'001, 't'));
      },
      kInvalid, "FIELD_TOO_LONG", "message.content[0].text.value"));
  c.push_back(ContentCase(
      "content_annotation_in_input",
      [](MI& m) {
        v1::Text* text = m.add_content()->mutable_text();
        text->set_value("see file");
        text->add_annotations()->mutable_file_citation()->set_file_id("file_1");
      },
      kInvalid, "INVALID_VALUE", "message.content[0].text.annotations"));
  c.push_back(ContentCase(
      "content_refusal_in_input",
      [](MI& m) { m.add_content()->set_refusal("no"); }, kInvalid,
      "INVALID_VALUE", "message.content[0].refusal"));
  c.push_back(ContentCase(
      "content_image_url_https_ok",
      [](MI& m) {
        m.add_content()->mutable_image_url()->set_url("https://x.test/a.png");
      },
      kOk));
  c.push_back(ContentCase(
      "content_image_url_data_ok",
      [](MI& m) {
        m.add_content()->mutable_image_url()->set_url(
            "data:image/png;base64,iVBORw0KGgo=");
      },
      kOk));
  c.push_back(ContentCase(
      "content_image_url_bad_scheme",
      [](MI& m) {
        m.add_content()->mutable_image_url()->set_url("ftp://x.test/a.png");
      },
      kInvalid, "INVALID_FORMAT", "message.content[0].image_url.url"));
  c.push_back(ContentCase(
      "content_image_url_data_not_image",
      [](MI& m) {
        m.add_content()->mutable_image_url()->set_url("data:text/html,<b>");
      },
      kInvalid, "INVALID_FORMAT", "message.content[0].image_url.url"));
  c.push_back(ContentCase(
      "content_image_url_empty",
      [](MI& m) { m.add_content()->mutable_image_url(); }, kInvalid,
      "FIELD_REQUIRED", "message.content[0].image_url.url"));
  c.push_back(ContentCase(
      "content_image_file_without_id",
      [](MI& m) {
        m.add_content()->mutable_image_file()->set_detail(v1::IMAGE_DETAIL_LOW);
      },
      kInvalid, "FIELD_REQUIRED", "message.content[0].image_file.file_id"));
  c.push_back(CreateMessageCase(
      "message_attachments_10_ok",
      [](CMR& r) {
        for (int i = 0; i < 10; ++i) {
          r.mutable_message()->add_attachments()->set_file_id("file_1");
        }
      },
      kOk));
  c.push_back(CreateMessageCase(
      "message_attachments_11",
      [](CMR& r) {
        for (int i = 0; i < 11; ++i) {
          r.mutable_message()->add_attachments()->set_file_id("file_1");
        }
      },
      kInvalid, "TOO_MANY_ITEMS", "message.attachments"));
  c.push_back(CreateMessageCase(
      "message_attachment_without_file_id",
      [](CMR& r) {
        r.mutable_message()->add_attachments()->set_file_id("file_1");
        r.mutable_message()
            ->add_attachments()
            ->add_tools()
            ->mutable_file_search();
      },
      kInvalid, "FIELD_REQUIRED", "message.attachments[1].file_id"));
  c.push_back(CreateMessageCase(
      "message_attachment_tool_unset",
      [](CMR& r) {
        v1::Attachment* a = r.mutable_message()->add_attachments();
        a->set_file_id("file_1");
        a->add_tools();
      },
      kInvalid, "FIELD_REQUIRED", "message.attachments[0].tools[0]"));
  c.push_back(CreateMessageCase(
      "message_metadata_17",
      [](CMR& r) { AddMetadata(*r.mutable_message()->mutable_metadata(), 17); },
      kInvalid, "TOO_MANY_ITEMS", "message.metadata"));
  c.push_back(CreateMessageCase(
      "message_metadata_key_65",
      [](CMR& r) {
        (*r.mutable_message()->mutable_metadata())[std::string(65, 'k')] = "v";
      },
      kInvalid, "FIELD_TOO_LONG", "message.metadata"));

  // --- List options ---
  c.push_back(ListAssistantsCase(
      "list_limit_0_ok", [](LO& o) { o.set_limit(0); }, kOk));
  c.push_back(ListAssistantsCase(
      "list_limit_100_ok", [](LO& o) { o.set_limit(100); }, kOk));
  c.push_back(ListAssistantsCase(
      "list_limit_101", [](LO& o) { o.set_limit(101); }, kInvalid,
      "VALUE_OUT_OF_RANGE", "options.limit"));
  c.push_back(ListAssistantsCase(
      "list_limit_negative", [](LO& o) { o.set_limit(-1); }, kInvalid,
      "VALUE_OUT_OF_RANGE", "options.limit"));
  c.push_back(ListAssistantsCase(
      "list_order_unknown",
      [](LO& o) { o.set_order(static_cast<v1::ListOrder>(5)); }, kInvalid,
      "INVALID_VALUE", "options.order"));
  c.push_back(ListAssistantsCase(
      "list_after_129_chars",
      [](LO& o) { o.set_after("asst_" + std::string(124, 'a')); }, kInvalid,
      "FIELD_TOO_LONG", "options.after"));
  c.push_back(ListAssistantsCase(
      "list_before_129_chars",
      [](LO& o) { o.set_before(std::string(129, 'b')); }, kInvalid,
      "FIELD_TOO_LONG", "options.before"));
  // Cursor errors name the request path, like every other list error.
  c.push_back(ListAssistantsCase(
      "list_after_unknown_cursor", [](LO& o) { o.set_after("asst_unknown"); },
      kInvalid, "INVALID_CURSOR", "options.after"));
  c.push_back(ListAssistantsCase(
      "list_before_unknown_cursor", [](LO& o) { o.set_before("asst_unknown"); },
      kInvalid, "INVALID_CURSOR", "options.before"));
  c.push_back(ListMessagesCase(
      "list_messages_limit_101",
      [](LMR& r) { r.mutable_options()->set_limit(101); }, kInvalid,
      "VALUE_OUT_OF_RANGE", "options.limit"));
  c.push_back(ListMessagesCase(
      "list_messages_order_unknown",
      [](LMR& r) {
        r.mutable_options()->set_order(static_cast<v1::ListOrder>(-1));
      },
      kInvalid, "INVALID_VALUE", "options.order"));
  c.push_back(ListMessagesCase(
      "list_messages_unknown_cursor",
      [](LMR& r) { r.mutable_options()->set_after("msg_unknown"); }, kInvalid,
      "INVALID_CURSOR", "options.after"));
  c.push_back(ListMessagesCase(
      "list_messages_thread_id_empty", [](LMR& r) { r.clear_thread_id(); },
      kInvalid, "FIELD_REQUIRED", "thread_id"));
  c.push_back(ListMessagesCase(
      "list_messages_run_id_wrong_prefix",
      [](LMR& r) { r.set_run_id("msg_x"); }, kInvalid, "INVALID_FORMAT",
      "run_id"));
  c.push_back(ListMessagesCase(
      "list_messages_run_id_ok", [](LMR& r) { r.set_run_id("run_x"); }, kOk));
  return c;
}

class ValidationTableTest : public ::testing::TestWithParam<ValidationCase> {
 protected:
  void SetUp() override { ASSERT_TRUE(gateway_.ok()); }
  Gateway gateway_;
};

TEST_P(ValidationTableTest, RejectsWithReasonAndField) {
  const ValidationCase& c = GetParam();
  Client& client = *gateway_.client_;

  Existing existing;
  if (c.setup == Setup::kAssistant) {
    existing.assistant_id = client.NewAssistant().id();
  }
  if (c.setup == Setup::kThread || c.setup == Setup::kThreadWithMessage) {
    existing.thread_id = client.NewThread().id();
  }
  if (c.setup == Setup::kThreadWithMessage) {
    existing.message_id = client.NewMessage(existing.thread_id).id();
  }
  v1::Assistant assistant_before;
  if (!existing.assistant_id.empty()) {
    v1::GetAssistantRequest get;
    get.set_assistant_id(existing.assistant_id);
    v1::GetAssistantResponse got;
    ASSERT_TRUE(client.Call(get, &got).ok());
    assistant_before = got.assistant();
  }
  const int writes_before = gateway_.store_.writes();

  const grpc::Status status = c.call(client, existing);

  if (c.code == grpc::StatusCode::OK) {
    EXPECT_TRUE(status.ok()) << status.error_message();
    return;
  }
  EXPECT_EQ(status.error_code(), c.code) << status.error_message();
  std::optional<WireError> error = Decode(status);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->info.reason(), c.reason) << status.error_message();
  EXPECT_EQ(Metadata(error->info, "field"), c.field);
  ASSERT_TRUE(error->bad_request.has_value()) << "no BadRequest detail";
  ASSERT_EQ(error->bad_request->field_violations_size(), 1);
  EXPECT_EQ(error->bad_request->field_violations(0).field(), c.field);
  EXPECT_FALSE(error->bad_request->field_violations(0).description().empty());
  EXPECT_THAT(status.error_message(), StartsWith(c.field + ": "));

  // Nothing was written, and what existed is unchanged.
  EXPECT_EQ(gateway_.store_.writes(), writes_before);
  EXPECT_THAT(client.ListAssistants({}).data(),
              SizeIs(existing.assistant_id.empty() ? 0 : 1));
  if (!existing.assistant_id.empty()) {
    v1::GetAssistantRequest get;
    get.set_assistant_id(existing.assistant_id);
    v1::GetAssistantResponse got;
    ASSERT_TRUE(client.Call(get, &got).ok());
    EXPECT_TRUE(MessageDifferencer::Equals(got.assistant(), assistant_before));
  }
  if (!existing.thread_id.empty()) {
    EXPECT_THAT(client.ListMessages(existing.thread_id).data(),
                SizeIs(existing.message_id.empty() ? 0 : 1));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Rules, ValidationTableTest, ::testing::ValuesIn(Cases()),
    [](const ::testing::TestParamInfo<ValidationCase>& info) {
      return info.param.name;
    });

}  // namespace
}  // namespace assistants
