// End-to-end tests against the real assistants-gateway binary:
//  - durability: everything written through the public API (assistants,
//    threads, messages, updates and deletions) reads back identically, in the
//    same list order, after a graceful SIGTERM restart on the same SQLite file;
//  - the assistantsctl CLI against a running gateway, including how it
//    reports a validation error.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/message.grpc.pb.h"
#include "assistants/v1/thread.grpc.pb.h"
#include "google/protobuf/util/message_differencer.h"
#include "nlohmann/json.hpp"
#include "tests/support/server_process.h"

namespace assistants::test_support {
namespace {

namespace v1 = ::assistants::v1;
using ::google::protobuf::util::MessageDifferencer;

// Compares messages field by field and, on a mismatch, shows both sides.
::testing::AssertionResult ProtoEquals(const google::protobuf::Message& want,
                                       const google::protobuf::Message& got) {
  if (MessageDifferencer::Equals(want, got)) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "want:\n"
                                       << want.DebugString() << "got:\n"
                                       << got.DebugString();
}

std::string Describe(const grpc::Status& status) {
  return std::to_string(status.error_code()) + ": " + status.error_message();
}

std::unique_ptr<grpc::ClientContext> Context() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(10));
  return context;
}

// Stubs of the three services over one channel.
struct Clients {
  explicit Clients(const std::shared_ptr<grpc::Channel>& channel)
      : assistants(v1::AssistantService::NewStub(channel)),
        threads(v1::ThreadService::NewStub(channel)),
        messages(v1::MessageService::NewStub(channel)) {}

  std::unique_ptr<v1::AssistantService::Stub> assistants;
  std::unique_ptr<v1::ThreadService::Stub> threads;
  std::unique_ptr<v1::MessageService::Stub> messages;
};

// The state the test reads back after the restart.
struct Snapshot {
  v1::Assistant assistant;
  v1::ListAssistantsResponse assistants;
  v1::Thread thread;
  v1::ListMessagesResponse messages_asc;
  v1::ListMessagesResponse messages_desc;
};

class GatewayTest : public ::testing::Test {
 protected:
  // Starts a gateway with `args` and connects to it; fails the test on error.
  void StartGateway(ServerProcess& gateway,
                    const std::vector<std::string>& args) {
    std::string error;
    ASSERT_TRUE(gateway.Start(GatewayBinary(), args, &error)) << error;
    channel_ = gateway.Connect();
    ASSERT_NE(channel_, nullptr)
        << "gateway at " << gateway.address() << " never accepted connections";
    clients_ = std::make_unique<Clients>(channel_);
  }

  Clients& clients() { return *clients_; }

  // Drops the test's own connection. A gateway waits for open client
  // connections for up to its shutdown grace period, so tests that do not
  // mean to test that disconnect before stopping it.
  void Disconnect() {
    clients_.reset();
    channel_.reset();
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Clients> clients_;
};

v1::Tool StockPriceTool() {
  v1::Tool tool;
  v1::FunctionDefinition* function =
      tool.mutable_function()->mutable_function();
  function->set_name("get_stock_price");
  function->set_description("Latest price of a stock");
  google::protobuf::Struct& schema = *function->mutable_parameters();
  (*schema.mutable_fields())["type"].set_string_value("object");
  google::protobuf::Struct& symbol = *(*(*schema.mutable_fields())["properties"]
                                            .mutable_struct_value()
                                            ->mutable_fields())["symbol"]
                                          .mutable_struct_value();
  (*symbol.mutable_fields())["type"].set_string_value("string");
  (*schema.mutable_fields())["required"]
      .mutable_list_value()
      ->add_values()
      ->set_string_value("symbol");
  return tool;
}

// Reads everything the restart test checks.
void TakeSnapshot(Clients& clients, const std::string& assistant_id,
                  const std::string& thread_id, Snapshot* snapshot) {
  {
    v1::GetAssistantRequest request;
    request.set_assistant_id(assistant_id);
    v1::GetAssistantResponse response;
    grpc::Status status =
        clients.assistants->GetAssistant(Context().get(), request, &response);
    ASSERT_TRUE(status.ok()) << Describe(status);
    snapshot->assistant = response.assistant();
  }
  {
    v1::ListAssistantsRequest request;
    request.mutable_options()->set_order(v1::LIST_ORDER_ASC);
    grpc::Status status = clients.assistants->ListAssistants(
        Context().get(), request, &snapshot->assistants);
    ASSERT_TRUE(status.ok()) << Describe(status);
  }
  {
    v1::GetThreadRequest request;
    request.set_thread_id(thread_id);
    v1::GetThreadResponse response;
    grpc::Status status =
        clients.threads->GetThread(Context().get(), request, &response);
    ASSERT_TRUE(status.ok()) << Describe(status);
    snapshot->thread = response.thread();
  }
  for (auto [order, out] :
       {std::pair{v1::LIST_ORDER_ASC, &snapshot->messages_asc},
        std::pair{v1::LIST_ORDER_DESC, &snapshot->messages_desc}}) {
    v1::ListMessagesRequest request;
    request.set_thread_id(thread_id);
    request.mutable_options()->set_order(order);
    grpc::Status status =
        clients.messages->ListMessages(Context().get(), request, out);
    ASSERT_TRUE(status.ok()) << Describe(status);
  }
}

std::vector<std::string> MessageTexts(const v1::ListMessagesResponse& list) {
  std::vector<std::string> texts;
  for (const v1::Message& message : list.data()) {
    std::string text;
    for (const v1::MessageContent& content : message.content()) {
      text += content.text().value();
    }
    texts.push_back(text);
  }
  return texts;
}

TEST_F(GatewayTest, StateSurvivesGracefulRestart) {
  TempDir dir;
  const std::string db_flag = "--db=" + dir.path() + "/gw.db";
  std::string assistant_id;
  std::string thread_id;
  std::string deleted_message_id;
  v1::Assistant updated_assistant;
  v1::Thread created_thread;
  v1::Message added_message;
  Snapshot before;

  ServerProcess first;
  StartGateway(first, {db_flag});
  if (HasFatalFailure()) return;
  {
    v1::CreateAssistantRequest request;
    request.set_model("gpt-4o");
    request.set_name("Data Analyst");
    request.set_instructions("You analyse stock data.");
    request.add_tools()->mutable_code_interpreter();
    *request.add_tools() = StockPriceTool();
    (*request.mutable_metadata())["team"] = "finance";
    request.set_temperature(0.5);
    v1::CreateAssistantResponse response;
    grpc::Status status = clients().assistants->CreateAssistant(
        Context().get(), request, &response);
    ASSERT_TRUE(status.ok()) << Describe(status);
    assistant_id = response.assistant().id();
    ASSERT_FALSE(assistant_id.empty());
  }
  {
    v1::CreateThreadRequest request;
    v1::MessageInput* question = request.add_messages();
    question->set_role(v1::MESSAGE_ROLE_USER);
    question->set_text("What did ACME close at?");
    v1::MessageInput* answer = request.add_messages();
    answer->set_role(v1::MESSAGE_ROLE_ASSISTANT);
    answer->set_text("ACME closed at 12.30.");
    (*request.mutable_metadata())["customer"] = "c-42";
    v1::CreateThreadResponse response;
    grpc::Status status =
        clients().threads->CreateThread(Context().get(), request, &response);
    ASSERT_TRUE(status.ok()) << Describe(status);
    created_thread = response.thread();
    thread_id = created_thread.id();
  }
  {
    v1::CreateMessageRequest request;
    request.set_thread_id(thread_id);
    request.mutable_message()->set_role(v1::MESSAGE_ROLE_USER);
    request.mutable_message()->set_text("And the day before?");
    v1::CreateMessageResponse response;
    grpc::Status status =
        clients().messages->CreateMessage(Context().get(), request, &response);
    ASSERT_TRUE(status.ok()) << Describe(status);
    added_message = response.message();
  }
  {
    v1::UpdateAssistantRequest request;
    request.set_assistant_id(assistant_id);
    (*request.mutable_metadata())["team"] = "research";
    (*request.mutable_metadata())["tier"] = "gold";
    v1::UpdateAssistantResponse response;
    grpc::Status status = clients().assistants->UpdateAssistant(
        Context().get(), request, &response);
    ASSERT_TRUE(status.ok()) << Describe(status);
    updated_assistant = response.assistant();
    EXPECT_EQ(updated_assistant.metadata().size(), 2);
  }
  {
    // Delete the middle message (the thread's second initial message), so
    // the list order has a gap to preserve.
    v1::ListMessagesRequest list_request;
    list_request.set_thread_id(thread_id);
    list_request.mutable_options()->set_order(v1::LIST_ORDER_ASC);
    v1::ListMessagesResponse list;
    grpc::Status status =
        clients().messages->ListMessages(Context().get(), list_request, &list);
    ASSERT_TRUE(status.ok()) << Describe(status);
    ASSERT_EQ(list.data_size(), 3);
    deleted_message_id = list.data(1).id();

    v1::DeleteMessageRequest request;
    request.set_thread_id(thread_id);
    request.set_message_id(deleted_message_id);
    v1::DeleteMessageResponse response;
    status =
        clients().messages->DeleteMessage(Context().get(), request, &response);
    ASSERT_TRUE(status.ok()) << Describe(status);
    EXPECT_TRUE(response.deleted());
    EXPECT_EQ(response.id(), deleted_message_id);
  }
  TakeSnapshot(clients(), assistant_id, thread_id, &before);
  if (HasFatalFailure()) return;

  // Sanity of what was written, before relying on it as the reference.
  EXPECT_TRUE(ProtoEquals(updated_assistant, before.assistant));
  EXPECT_TRUE(ProtoEquals(created_thread, before.thread));
  EXPECT_EQ(MessageTexts(before.messages_asc),
            (std::vector<std::string>{"What did ACME close at?",
                                      "And the day before?"}));
  ASSERT_EQ(before.messages_asc.data_size(), 2);
  EXPECT_TRUE(ProtoEquals(added_message, before.messages_asc.data(1)));
  EXPECT_EQ(MessageTexts(before.messages_desc),
            (std::vector<std::string>{"And the day before?",
                                      "What did ACME close at?"}));

  const int first_exit = first.Stop();
  EXPECT_EQ(first_exit, 0) << "gateway " << DescribeWaitStatus(first_exit)
                           << "; stderr:\n"
                           << first.captured_stderr();

  ServerProcess second;
  StartGateway(second, {db_flag});
  if (HasFatalFailure()) return;
  Snapshot after;
  TakeSnapshot(clients(), assistant_id, thread_id, &after);
  if (HasFatalFailure()) return;

  EXPECT_TRUE(ProtoEquals(before.assistant, after.assistant));
  EXPECT_TRUE(ProtoEquals(before.assistants, after.assistants));
  EXPECT_TRUE(ProtoEquals(before.thread, after.thread));
  EXPECT_TRUE(ProtoEquals(before.messages_asc, after.messages_asc));
  EXPECT_TRUE(ProtoEquals(before.messages_desc, after.messages_desc));

  // The deleted message stays deleted.
  v1::GetMessageRequest request;
  request.set_thread_id(thread_id);
  request.set_message_id(deleted_message_id);
  v1::GetMessageResponse response;
  grpc::Status status =
      clients().messages->GetMessage(Context().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND)
      << Describe(status);

  const int second_exit = second.Stop();
  EXPECT_EQ(second_exit, 0)
      << "gateway " << DescribeWaitStatus(second_exit) << "; stderr:\n"
      << second.captured_stderr();
}

// Runs the CLI against `gateway` with `args` after the global flags.
CommandResult RunCli(const ServerProcess& gateway,
                     const std::vector<std::string>& args) {
  std::vector<std::string> argv = {CliBinary(), "--target", gateway.address()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

TEST_F(GatewayTest, CliCreatesGetsAndReportsErrors) {
  ServerProcess gateway;
  StartGateway(gateway, {"--db=:memory:"});
  if (HasFatalFailure()) return;

  CommandResult created = RunCli(
      gateway, {"--json", "assistants", "create", "--model", "gpt-4o", "--name",
                "Data Analyst", "--tools-json",
                R"([{"type":"code_interpreter"},{"type":"function","function":)"
                R"({"name":"get_stock_price","parameters":{"type":"object",)"
                R"("properties":{"symbol":{"type":"string"}}}}}])",
                "--metadata", "team=finance"});
  ASSERT_EQ(created.exit_code, 0) << created.stderr_text;
  const nlohmann::json assistant =
      nlohmann::json::parse(created.stdout_text, nullptr, false);
  ASSERT_FALSE(assistant.is_discarded()) << created.stdout_text;
  const std::string id = assistant.value("id", "");
  EXPECT_EQ(id.rfind("asst_", 0), 0u) << created.stdout_text;
  EXPECT_EQ(assistant.value("name", ""), "Data Analyst");
  EXPECT_EQ(assistant.value("model", ""), "gpt-4o");
  ASSERT_TRUE(assistant.contains("tools"));
  ASSERT_EQ(assistant["tools"].size(), 2u);
  EXPECT_TRUE(assistant["tools"][0].contains("code_interpreter"));
  EXPECT_EQ(assistant["tools"][1]["function"]["function"]["name"],
            "get_stock_price");
  EXPECT_EQ(assistant["metadata"]["team"], "finance");

  // Both renderings of the same assistant.
  CommandResult got_json = RunCli(gateway, {"assistants", "get", id, "--json"});
  ASSERT_EQ(got_json.exit_code, 0) << got_json.stderr_text;
  EXPECT_EQ(nlohmann::json::parse(got_json.stdout_text, nullptr, false),
            assistant);
  CommandResult got_text = RunCli(gateway, {"assistants", "get", id});
  ASSERT_EQ(got_text.exit_code, 0) << got_text.stderr_text;
  EXPECT_NE(got_text.stdout_text.find(id), std::string::npos);
  EXPECT_NE(got_text.stdout_text.find("Data Analyst"), std::string::npos);
  EXPECT_NE(got_text.stdout_text.find("gpt-4o"), std::string::npos);

  CommandResult listed = RunCli(gateway, {"assistants", "list"});
  ASSERT_EQ(listed.exit_code, 0) << listed.stderr_text;
  EXPECT_NE(listed.stdout_text.find(id), std::string::npos);

  CommandResult invalid = RunCli(gateway, {"assistants", "create", "--model",
                                           "gpt-4o", "--temperature", "5"});
  EXPECT_EQ(invalid.exit_code, 1) << invalid.stderr_text;
  EXPECT_NE(invalid.stderr_text.find("INVALID_ARGUMENT"), std::string::npos)
      << invalid.stderr_text;
  EXPECT_NE(invalid.stderr_text.find("temperature"), std::string::npos)
      << invalid.stderr_text;
  EXPECT_TRUE(invalid.stdout_text.empty()) << invalid.stdout_text;

  CommandResult missing =
      RunCli(gateway, {"assistants", "get", "asst_missing0000000000000000"});
  EXPECT_EQ(missing.exit_code, 1) << missing.stderr_text;
  EXPECT_NE(missing.stderr_text.find("NOT_FOUND"), std::string::npos)
      << missing.stderr_text;

  Disconnect();
  const int exit_status = gateway.Stop();
  EXPECT_EQ(exit_status, 0) << DescribeWaitStatus(exit_status);
}

TEST_F(GatewayTest, CliThreadsAndMessages) {
  ServerProcess gateway;
  StartGateway(gateway, {"--db=:memory:"});
  if (HasFatalFailure()) return;

  CommandResult thread =
      RunCli(gateway, {"--json", "threads", "create", "--message", "first",
                       "--message", "second", "--metadata", "k=v"});
  ASSERT_EQ(thread.exit_code, 0) << thread.stderr_text;
  const nlohmann::json thread_json =
      nlohmann::json::parse(thread.stdout_text, nullptr, false);
  const std::string thread_id = thread_json.value("id", "");
  ASSERT_FALSE(thread_id.empty()) << thread.stdout_text;

  CommandResult added =
      RunCli(gateway, {"messages", "create", thread_id, "--role", "assistant",
                       "--text", "third"});
  ASSERT_EQ(added.exit_code, 0) << added.stderr_text;

  CommandResult listed =
      RunCli(gateway, {"messages", "list", thread_id, "--order", "asc"});
  ASSERT_EQ(listed.exit_code, 0) << listed.stderr_text;
  const std::string& out = listed.stdout_text;
  const size_t first = out.find("user  first");
  const size_t second = out.find("user  second");
  const size_t third = out.find("assistant  third");
  ASSERT_NE(first, std::string::npos) << out;
  ASSERT_NE(second, std::string::npos) << out;
  ASSERT_NE(third, std::string::npos) << out;
  EXPECT_LT(first, second);
  EXPECT_LT(second, third);

  CommandResult deleted = RunCli(gateway, {"threads", "delete", thread_id});
  ASSERT_EQ(deleted.exit_code, 0) << deleted.stderr_text;
  CommandResult gone = RunCli(gateway, {"threads", "get", thread_id});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_NE(gone.stderr_text.find("NOT_FOUND"), std::string::npos)
      << gone.stderr_text;

  Disconnect();
  const int exit_status = gateway.Stop();
  EXPECT_EQ(exit_status, 0) << DescribeWaitStatus(exit_status);
}

// Usage errors never reach the network, so no gateway is needed.
TEST(CliUsageTest, UsageErrorsExitTwo) {
  const std::vector<std::vector<std::string>> cases = {
      {"assistants", "create"},  // --model missing
      {"assistants", "create", "--model", "m", "--tools-json", "[{"},
      {"assistants", "get"},
      {"assistants", "frobnicate"},
      {"messages", "list", "thread_x", "--order", "sideways"},
      {"assistants", "list", "--no-such-flag", "1"},
  };
  for (const auto& args : cases) {
    std::vector<std::string> argv = {CliBinary(), "--target", "127.0.0.1:1"};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult result = RunCommand(argv);
    EXPECT_EQ(result.exit_code, 2) << args[1] << ": " << result.stderr_text;
    EXPECT_NE(result.stderr_text.find("usage:"), std::string::npos)
        << result.stderr_text;
  }
}

}  // namespace
}  // namespace assistants::test_support
