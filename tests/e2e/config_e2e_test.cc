// End to end: the real assistants-gateway binary with bad configuration
// files, environment variables and flags (each must exit 2 with a message
// naming the key and its source), --print_config, and a good configuration
// file that starts, serves and writes JSON log lines with request ids.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "assistants/v1/assistant.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "nlohmann/json.hpp"
#include "service/auth/api_keys.h"
#include "tests/e2e/e2e_helpers.h"
#include "tests/support/server_process.h"

namespace assistants::test_support {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Variables of the developer's or CI's environment that would change the
// outcome; empty means unset to the gateway.
std::vector<std::string> CleanEnvironment(std::vector<std::string> extra) {
  std::vector<std::string> env = {"ASSISTANTS_CONFIG=",
                                  "ASSISTANTS_LOG_LEVEL=",
                                  "ASSISTANTS_ACTIVE_RUN_POLICY=",
                                  "ASSISTANTS_ENGINE_THREADS=",
                                  "ASSISTANTS_TLS_CERT_FILE=",
                                  "ASSISTANTS_TLS_KEY_FILE=",
                                  "ASSISTANTS_WORKER_ALLOWLIST=",
                                  "ASSISTANTS_DEFAULT_UPSTREAM=",
                                  "OPENAI_API_KEY=",
                                  "OPENAI_API_KEY_FILE="};
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

std::string WriteFile(const TempDir& dir, const std::string& name,
                      const std::string& contents) {
  const std::string path = dir.path() + "/" + name;
  std::ofstream(path) << contents;
  return path;
}

struct BadStart {
  const char* name;
  const char* file;  // Written to $DIR/gateway.json and passed with --config.
  std::vector<std::string> args;
  std::vector<std::string> env;
  // Expected on stderr after "assistants-gateway: "; $DIR is the scratch
  // directory.
  const char* message;
};

void PrintTo(const BadStart& c, std::ostream* os) { *os << c.name; }

class BadConfigE2eTest : public ::testing::TestWithParam<BadStart> {};

std::string Expand(std::string text, const std::string& dir) {
  for (size_t at = text.find("$DIR"); at != std::string::npos;
       at = text.find("$DIR", at + dir.size())) {
    text.replace(at, 4, dir);
  }
  return text;
}

TEST_P(BadConfigE2eTest, ExitsWithCode2AndNamesTheKey) {
  const BadStart& c = GetParam();
  TempDir dir;
  WriteFile(dir, "cert.pem", "-----BEGIN CERTIFICATE-----\n");
  std::vector<std::string> argv = {GatewayBinary(), "--listen=127.0.0.1:0",
                                   "--db=:memory:"};
  if (c.file != nullptr) {
    argv.push_back("--config=" + WriteFile(dir, "gateway.json", c.file));
  }
  for (const std::string& arg : c.args) argv.push_back(Expand(arg, dir.path()));
  std::vector<std::string> env;
  for (const std::string& entry : c.env) {
    env.push_back(Expand(entry, dir.path()));
  }
  const CommandResult result = RunCommand(argv, std::chrono::seconds(60),
                                          CleanEnvironment(std::move(env)));
  EXPECT_EQ(result.exit_code, 2) << result.stderr_text;
  EXPECT_THAT(result.stderr_text, HasSubstr("assistants-gateway: " +
                                            Expand(c.message, dir.path())));
  EXPECT_THAT(result.stderr_text, Not(HasSubstr("listening on")));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadConfigE2eTest,
    ::testing::Values(
        BadStart{"FileOutOfRange",
                 R"({"limits": {"max_message_bytes": 10}})",
                 {},
                 {},
                 "config $DIR/gateway.json: limits.max_message_bytes: must be "
                 "between 1024 and 67108864, got 10\n"},
        BadStart{"FileUnknownKey",
                 R"({"streams": {"heartbeat": 100}})",
                 {},
                 {},
                 "config $DIR/gateway.json: streams.heartbeat: unknown key "
                 "(did you mean \"streams.heartbeat_ms\"?)\n"},
        BadStart{"FileWrongType",
                 R"({"runs": {"engine_threads": "four"}})",
                 {},
                 {},
                 "config $DIR/gateway.json: runs.engine_threads: must be an "
                 "integer, got a string (\"four\")\n"},
        BadStart{"FileNotJson",
                 "listen: 127.0.0.1:0\n",
                 {},
                 {},
                 "config $DIR/gateway.json: not valid JSON: "},
        BadStart{"MissingFileByFlag",
                 nullptr,
                 {"--config=$DIR/missing.json"},
                 {},
                 "config $DIR/missing.json: cannot read the file (named by "
                 "flag --config): "},
        BadStart{"MissingFileByEnv",
                 nullptr,
                 {},
                 {"ASSISTANTS_CONFIG=$DIR/missing.json"},
                 "config $DIR/missing.json: cannot read the file (named by env "
                 "ASSISTANTS_CONFIG): "},
        BadStart{"EnvBadEnum",
                 nullptr,
                 {},
                 {"ASSISTANTS_ACTIVE_RUN_POLICY=fifo"},
                 "env ASSISTANTS_ACTIVE_RUN_POLICY: runs.active_run_policy: "
                 "must be one of reject, queue, interrupt, got \"fifo\"\n"},
        BadStart{"EnvBadLevel",
                 nullptr,
                 {},
                 {"ASSISTANTS_LOG_LEVEL=trace"},
                 "env ASSISTANTS_LOG_LEVEL: log.level: must be one of debug, "
                 "info, warning, error, got \"trace\"\n"},
        BadStart{"FlagOutOfRange",
                 nullptr,
                 {"--engine_threads=0"},
                 {},
                 "flag --engine_threads: runs.engine_threads: must be between "
                 "1 and 256, got 0\n"},
        BadStart{"FlagNotANumber",
                 nullptr,
                 {"--requires_action_timeout_s=ten"},
                 {},
                 "flag --requires_action_timeout_s: "
                 "runs.requires_action_timeout_s: must be an integer, got "
                 "\"ten\"\n"},
        BadStart{"FlagCertWithoutKey",
                 nullptr,
                 {"--tls_cert_file=$DIR/cert.pem"},
                 {},
                 "flag --tls_cert_file: tls.cert_file: is set but "
                 "tls.key_file is not (a certificate needs its private key)\n"},
        BadStart{"FlagUnreadableTokenFile",
                 nullptr,
                 {"--worker_token_file=$DIR/no-token"},
                 {},
                 "flag --worker_token_file: workers.token_file: cannot read "
                 "\"$DIR/no-token\": No such file or directory\n"},
        BadStart{"EnvBadAllowList",
                 nullptr,
                 {},
                 {"ASSISTANTS_WORKER_ALLOWLIST=10.0.0.0/99"},
                 "env ASSISTANTS_WORKER_ALLOWLIST: workers.allowlist: worker "
                 "endpoint allow-list: \"10.0.0.0/99\" is not an IPv4 block "
                 "such as 10.0.0.0/8\n"},
        BadStart{"FlagBeatsFileButBadFileStillFails",
                 R"({"shutdown": {"grace_ms": -1}})",
                 {"--shutdown_grace_ms=100"},
                 {},
                 "config $DIR/gateway.json: shutdown.grace_ms: must be between "
                 "0 and 3600000, got -1\n"}),
    [](const ::testing::TestParamInfo<BadStart>& info) {
      return std::string(info.param.name);
    });

TEST(ConfigE2eTest, PrintConfigShowsEffectiveValuesWithSecretsRedacted) {
  TempDir dir;
  const std::string file = WriteFile(
      dir, "gateway.json",
      R"({"streams": {"heartbeat_ms": 500}, "log": {"level": "warning"}})");
  const CommandResult result =
      RunCommand({GatewayBinary(), "--config=" + file, "--heartbeat_ms=700",
                  "--print_config"},
                 std::chrono::seconds(60),
                 CleanEnvironment({"OPENAI_API_KEY=sk-e2e-secret",
                                   "ASSISTANTS_MAX_STREAMS_PER_PROJECT=9"}));
  ASSERT_EQ(result.exit_code, 0) << result.stderr_text;
  EXPECT_THAT(result.stdout_text, Not(HasSubstr("sk-e2e-secret")));
  const auto printed = nlohmann::json::parse(result.stdout_text);
  EXPECT_EQ(printed["streams"]["heartbeat_ms"], 700);
  EXPECT_EQ(printed["log"]["level"], "warning");
  EXPECT_EQ(printed["limits"]["max_streams_per_project"], 9);
  EXPECT_EQ(printed["upstream"]["openai"]["api_key"], "<redacted>");
  EXPECT_EQ(printed["listen"], "127.0.0.1:50051");
}

TEST(ConfigE2eTest, GoodConfigFileServesAndLogsJsonWithRequestIds) {
  TempDir dir;
  const std::string file = WriteFile(dir, "gateway.json", R"({
    "store": {"path": ":memory:"},
    "log": {"level": "debug"},
    "runs": {"engine_threads": 2, "active_run_policy": "queue"},
    "limits": {"max_message_bytes": 1048576}
  })");
  ServerProcess gateway;
  gateway.set_env(CleanEnvironment({}));
  std::string error;
  ASSERT_TRUE(gateway.Start(GatewayBinary(), {"--config=" + file}, &error))
      << error;
  {
    // Clients go away before the gateway stops: an open connection would
    // hold its graceful shutdown for the whole grace period.
    auto channel = gateway.Connect();
    ASSERT_NE(channel, nullptr);
    auto stub = v1::AssistantService::NewStub(channel);

    v1::GetAssistantRequest request;
    request.set_assistant_id("asst_doesnotexist");
    v1::GetAssistantResponse response;
    grpc::ClientContext context;
    context.AddMetadata("x-request-id", "req-e2e-42");
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    const grpc::Status status =
        stub->GetAssistant(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND)
        << status.error_message();
    // A response without a message travels as trailers only: the echoed id
    // then arrives with the trailing metadata.
    std::string echoed;
    for (const auto* metadata : {&context.GetServerInitialMetadata(),
                                 &context.GetServerTrailingMetadata()}) {
      auto it = metadata->find("x-request-id");
      if (it != metadata->end()) {
        echoed = std::string(it->second.data(), it->second.size());
      }
    }
    EXPECT_EQ(echoed, "req-e2e-42");

    // A call without an id gets a generated one.
    grpc::ClientContext anonymous;
    anonymous.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::seconds(10));
    v1::ListAssistantsRequest list;
    v1::ListAssistantsResponse listed;
    ASSERT_TRUE(stub->ListAssistants(&anonymous, list, &listed).ok());
    auto generated = anonymous.GetServerInitialMetadata().find("x-request-id");
    ASSERT_NE(generated, anonymous.GetServerInitialMetadata().end());
    EXPECT_THAT(std::string(generated->second.data(), generated->second.size()),
                ::testing::StartsWith("req_"));
  }
  ASSERT_EQ(gateway.Stop(), 0) << gateway.captured_stderr();
  bool saw_listening = false;
  bool saw_rpc = false;
  std::istringstream lines(gateway.captured_stderr());
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] != '{') continue;    // gRPC's own output.
    const auto entry = nlohmann::json::parse(line);  // Every line is JSON.
    ASSERT_TRUE(entry.contains("ts") && entry.contains("level") &&
                entry.contains("msg"))
        << line;
    const std::string msg = entry["msg"];
    saw_listening = saw_listening || msg.find(
                                         "assistants-gateway listening on "
                                         "127.0.0.1:") == 0;
    if (msg == "rpc" &&
        entry["method"] == "/assistants.v1.AssistantService/GetAssistant") {
      saw_rpc = true;
      EXPECT_EQ(entry["level"], "debug");
      EXPECT_EQ(entry["code"], "NOT_FOUND");
      EXPECT_EQ(entry["request_id"], "req-e2e-42");
      EXPECT_TRUE(entry["duration_ms"].is_number());
    }
  }
  EXPECT_TRUE(saw_listening) << gateway.captured_stderr();
  EXPECT_TRUE(saw_rpc) << gateway.captured_stderr();
}

// API keys with the real binary: the keys file named in the config file;
// a call without a key is refused, a key's project sees only its own
// objects, health stays open.
TEST(ConfigE2eTest, ApiKeysFileTurnsAuthenticationOn) {
  TempDir dir;
  const std::string keys = WriteFile(
      dir, "keys.json",
      absl::StrCat(R"({"keys": [{"project": "a", "name": "one", "sha256": ")",
                   auth::ApiKeys::Sha256Hex("key-a"),
                   R"("}, {"project": "b", "name": "two", "sha256": ")",
                   auth::ApiKeys::Sha256Hex("key-b"), R"("}]})"));
  const std::string file = WriteFile(
      dir, "gateway.json",
      absl::StrCat(
          R"({"store": {"path": ":memory:"}, "auth": {"api_keys_file": ")",
          keys, R"("}})"));
  // A keys file that is not one stops the start, naming the file.
  const std::string bad = WriteFile(dir, "bad-keys.json", "sk-plaintext\n");
  const CommandResult refused = RunCommand(
      {GatewayBinary(), "--config=" + file, "--api_keys_file=" + bad},
      std::chrono::seconds(60), CleanEnvironment({}));
  EXPECT_EQ(refused.exit_code, 2) << refused.stderr_text;
  EXPECT_THAT(refused.stderr_text, HasSubstr(bad + ": (file): not valid JSON"));
  EXPECT_THAT(refused.stderr_text, Not(HasSubstr("listening on")));

  ServerProcess gateway;
  gateway.set_env(CleanEnvironment({}));
  std::string error;
  ASSERT_TRUE(gateway.Start(GatewayBinary(), {"--config=" + file}, &error))
      << error;
  {
    auto channel = gateway.Connect();
    ASSERT_NE(channel, nullptr);
    auto stub = v1::AssistantService::NewStub(channel);
    auto call = [&](const std::string& key, auto&& rpc) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::seconds(10));
      if (!key.empty()) context.AddMetadata("authorization", "Bearer " + key);
      return rpc(&context);
    };
    v1::ListAssistantsResponse listed;
    auto list = [&](grpc::ClientContext* c) {
      return stub->ListAssistants(c, {}, &listed);
    };
    EXPECT_EQ(call("", list).error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(call("key-c", list).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    v1::CreateAssistantRequest create;
    create.set_model("gpt-4o");
    v1::CreateAssistantResponse created;
    ASSERT_TRUE(call("key-a", [&](grpc::ClientContext* c) {
                  return stub->CreateAssistant(c, create, &created);
                }).ok());
    v1::GetAssistantRequest get;
    get.set_assistant_id(created.assistant().id());
    v1::GetAssistantResponse got;
    auto get_rpc = [&](grpc::ClientContext* c) {
      return stub->GetAssistant(c, get, &got);
    };
    EXPECT_TRUE(call("key-a", get_rpc).ok());
    EXPECT_EQ(call("key-b", get_rpc).error_code(), grpc::StatusCode::NOT_FOUND);
    ASSERT_TRUE(call("key-b", list).ok());
    EXPECT_EQ(listed.data_size(), 0);

    // Health needs no key (probes carry none).
    grpc::GenericStub generic(channel);
    grpc::ClientContext health;
    health.set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(10));
    grpc::Slice empty_message(std::string{});
    grpc::ByteBuffer request(&empty_message, 1);
    grpc::ByteBuffer response;
    std::promise<grpc::Status> done;
    generic.UnaryCall(&health, "/grpc.health.v1.Health/Check",
                      grpc::StubOptions(), &request, &response,
                      [&done](grpc::Status status) { done.set_value(status); });
    EXPECT_TRUE(done.get_future().get().ok());
  }
  EXPECT_EQ(gateway.Stop(), 0) << gateway.captured_stderr();
}

// Keys are added and revoked in the file while the gateway runs: within the
// reload interval the new key works and the revoked one is refused; a
// half-written version changes nothing.
TEST(ConfigE2eTest, ApiKeysRotateWithoutARestart) {
  TempDir dir;
  auto keys_json = [](const std::string& key) {
    return absl::StrCat(
        R"({"keys": [{"project": "a", "name": "k", "sha256": ")",
        auth::ApiKeys::Sha256Hex(key), R"("}]})");
  };
  const std::string keys = dir.path() + "/keys.json";
  auto replace = [&](const std::string& contents) {
    WriteFile(dir, "keys.json.next", contents);
    return std::rename((keys + ".next").c_str(), keys.c_str()) == 0;
  };
  ASSERT_TRUE(replace(keys_json("key-old")));
  ServerProcess gateway;
  gateway.set_env(CleanEnvironment({}));
  std::string error;
  ASSERT_TRUE(gateway.Start(GatewayBinary(),
                            {"--db=:memory:", "--api_keys_file=" + keys,
                             "--auth_reload_interval_s=1"},
                            &error))
      << error;
  {
    auto channel = gateway.Connect();
    ASSERT_NE(channel, nullptr);
    auto stub = v1::AssistantService::NewStub(channel);
    auto list_with = [&](const std::string& key) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::seconds(10));
      context.AddMetadata("authorization", "Bearer " + key);
      v1::ListAssistantsResponse listed;
      return stub->ListAssistants(&context, {}, &listed).error_code();
    };
    EXPECT_EQ(list_with("key-old"), grpc::StatusCode::OK);
    EXPECT_EQ(list_with("key-new"), grpc::StatusCode::UNAUTHENTICATED);

    ASSERT_TRUE(replace("{\"keys\": ["));
    EXPECT_TRUE(WaitUntil(
        [&] {
          return absl::StrContains(gateway.captured_stderr(),
                                   "API keys file not reloaded");
        },
        std::chrono::seconds(30)))
        << "the broken version was never reported";
    EXPECT_EQ(list_with("key-old"), grpc::StatusCode::OK);

    ASSERT_TRUE(replace(keys_json("key-new")));
    EXPECT_TRUE(
        WaitUntil([&] { return list_with("key-new") == grpc::StatusCode::OK; },
                  std::chrono::seconds(30)))
        << "the new key never worked";
    EXPECT_EQ(list_with("key-old"), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_THAT(gateway.captured_stderr(), HasSubstr("API keys reloaded"));
  }
  EXPECT_EQ(gateway.Stop(), 0) << gateway.captured_stderr();
}

}  // namespace
}  // namespace assistants::test_support
