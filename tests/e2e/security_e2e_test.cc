// End-to-end security tests with the real binaries: TLS and mutual TLS on the
// gateway's port (certificates made by the test with the openssl CLI), tool
// workers served and dialled over mutual TLS, and the upstream API key never
// reaching a run's last_error or the gateway's stderr, whatever the upstream
// echoes back.
#include <curl/curl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "assistants/v1/tool_worker.grpc.pb.h"
#include "gmock/gmock.h"
#include "nlohmann/json.hpp"
#include "service/common/tls.h"
#include "tests/e2e/e2e_helpers.h"
#include "tests/support/server_process.h"
#include "tests/support/test_certificates.h"

namespace assistants::test_support {
namespace {

namespace v1 = ::assistants::v1;
using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::json;
using std::chrono::seconds;

constexpr char kToken[] = "e2e-tls-registration-token";
// What fake-openai accepts, and what must never leak.
constexpr char kUpstreamKey[] = "sk-e2e-secret-0123456789abcdef";

std::string TestWorkerBinary() {
  return std::string(ASSISTANTS_BINARY_DIR) + "/tests/support/test-tool-worker";
}

// The environment the gateway gets: fake-openai at `fake_port` (0: none),
// nothing inherited that could change behaviour.
std::vector<std::string> GatewayEnv(int fake_port,
                                    const std::string& base_url = "") {
  return {"OPENAI_BASE_URL=" +
              (base_url.empty()
                   ? "http://127.0.0.1:" + std::to_string(fake_port) + "/v1"
                   : base_url),
          "ASSISTANTS_UPSTREAM_CA_FILE=",
          std::string("OPENAI_API_KEY=") + kUpstreamKey,
          "OPENAI_API_KEY_FILE=",
          "OPENAI_ORGANIZATION=",
          "OPENAI_PROJECT=",
          "CHAT_COMPLETIONS_BASE_URL=",
          "ASSISTANTS_DEFAULT_UPSTREAM=openai",
          "ASSISTANTS_UPSTREAM_MAX_ATTEMPTS=",
          "ASSISTANTS_WORKER_TOKEN=",
          "ASSISTANTS_WORKERS_CONFIG=",
          "ASSISTANTS_TLS_CERT_FILE=",
          "ASSISTANTS_TLS_KEY_FILE=",
          "ASSISTANTS_TLS_CLIENT_CA_FILE=",
          "ASSISTANTS_WORKER_TLS_CA_FILE=",
          "ASSISTANTS_WORKER_TLS_CERT_FILE=",
          "ASSISTANTS_WORKER_TLS_KEY_FILE="};
}

// `env` with `entry` ("NAME=VALUE") replacing any entry of that name (the
// child would see only the first of two).
std::vector<std::string> Override(std::vector<std::string> env,
                                  const std::string& entry) {
  const std::string name = entry.substr(0, entry.find('=') + 1);
  env.erase(std::remove_if(
                env.begin(), env.end(),
                [&](const std::string& e) { return e.rfind(name, 0) == 0; }),
            env.end());
  env.push_back(entry);
  return env;
}

// GetAssistant of an id that does not exist: NOT_FOUND proves the call got
// through the handshake to the gateway's handler.
grpc::Status GetUnknownAssistant(
    const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = v1::AssistantService::NewStub(channel);
  v1::GetAssistantRequest request;
  request.set_assistant_id("asst_doesnotexist");
  v1::GetAssistantResponse response;
  return stub->GetAssistant(Context().get(), request, &response);
}

class SecurityE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    curl_global_init(CURL_GLOBAL_ALL);
    dir_ = new TempDir();
    certs_ = new TestCertificates();
    std::string error;
    ASSERT_TRUE(MakeTestCertificates(dir_->path(), certs_, &error)) << error;
  }
  static void TearDownTestSuite() {
    delete certs_;
    delete dir_;
  }

  void SetUp() override {
    token_file_ = dir_->path() + "/registration-token";
    std::ofstream(token_file_) << kToken << "\n";
  }

  void TearDown() override {
    for (auto& worker : workers_) worker->Kill();
    if (HasFailure()) {
      std::cerr << "--- gateway stderr ---\n"
                << gateway_.captured_stderr() << "--- fake-openai stderr ---\n"
                << fake_.captured_stderr();
      for (const auto& worker : workers_) {
        std::cerr << "--- worker stderr ---\n" << worker->captured_stderr();
      }
    }
  }

  void StartFake() {
    std::string error;
    ASSERT_TRUE(fake_.Start(
        FakeOpenAiBinary(),
        {"--seed=7", std::string("--api_key=") + kUpstreamKey}, &error))
        << error;
  }

  // The gateway with an in-memory store, the registration token and `args`.
  void StartGateway(const std::vector<std::string>& args) {
    std::vector<std::string> all = {"--db=:memory:", "--shutdown_grace_ms=500",
                                    "--worker_token_file=" + token_file_};
    all.insert(all.end(), args.begin(), args.end());
    gateway_.set_env(GatewayEnv(fake_.running() ? fake_.port() : 1));
    std::string error;
    ASSERT_TRUE(gateway_.Start(GatewayBinary(), all, &error)) << error;
  }

  std::vector<std::string> ServerTlsFlags() const {
    return {"--tls_cert_file=" + certs_->server_cert,
            "--tls_key_file=" + certs_->server_key};
  }

  // A channel to the gateway with `options` (empty: plaintext).
  std::shared_ptr<grpc::Channel> Channel(const tls::ClientTlsOptions& options) {
    auto credentials = tls::ChannelCredentials(options);
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    return grpc::CreateChannel(
        gateway_.address(),
        credentials.ok() ? *credentials : grpc::InsecureChannelCredentials());
  }

  tls::ClientTlsOptions TrustingClient() const {
    return {"", "", certs_->ca_cert};
  }
  tls::ClientTlsOptions CertifiedClient() const {
    return {certs_->client_cert, certs_->client_key, certs_->ca_cert};
  }

  // A test-tool-worker serving `tool` (not idempotent) with `args`; null
  // (after a failure) when it does not start.
  ServerProcess* StartWorker(const std::string& worker_id,
                             const std::string& tool,
                             const std::vector<std::string>& args) {
    workers_.push_back(std::make_unique<ServerProcess>());
    std::vector<std::string> all = {
        "--gateway=" + gateway_.address(), "--token_file=" + token_file_,
        "--worker_id=" + worker_id, "--tools=" + tool,
        "--register_timeout_ms=20000"};
    all.insert(all.end(), args.begin(), args.end());
    workers_.back()->set_env({"ASSISTANTS_WORKER_TOKEN="});
    std::string error;
    if (!workers_.back()->Start(TestWorkerBinary(), all, &error, seconds(60))) {
      ADD_FAILURE() << worker_id << " did not start: " << error;
      return nullptr;
    }
    return workers_.back().get();
  }

  // Streams a new run of an assistant offering `tool` (served by a worker)
  // whose model calls it once with `arguments`; returns the run.
  v1::Run RunCallingTool(const std::shared_ptr<grpc::Channel>& channel,
                         const std::string& tool, const Json& arguments) {
    auto assistants = v1::AssistantService::NewStub(channel);
    auto runs = v1::RunService::NewStub(channel);
    v1::Tool named;
    named.mutable_function()->mutable_function()->set_name(tool);
    const std::string assistant_id = CreateAssistant(assistants.get(), {named});
    const Json step = {
        {"tool_calls", {{{"name", tool}, {"arguments", arguments.dump()}}}}};
    ScriptFake(fake_.port(), Json::array({step}));
    v1::RunEventsRequest request;
    *request.mutable_create_thread_and_run() =
        ThreadAndRun(assistant_id, "Call the tool, please.");
    EventStream stream(runs.get(), request, seconds(60));
    std::vector<v1::RunEvent> events;
    const grpc::Status status = stream.ReadAll(&events);
    EXPECT_TRUE(status.ok()) << Describe(status);
    for (const v1::RunEvent& event : events) {
      if (event.has_run()) return GetRun(runs.get(), event.run());
    }
    ADD_FAILURE() << "no run event among " << events.size() << " events";
    return v1::Run();
  }

  // The output of the run's only function call, parsed.
  Json ToolOutput(const std::shared_ptr<grpc::Channel>& channel,
                  const v1::Run& run) {
    auto runs = v1::RunService::NewStub(channel);
    for (const v1::RunStep& step : ListSteps(runs.get(), run)) {
      for (const v1::ToolCall& call :
           step.step_details().tool_calls().tool_calls()) {
        if (call.has_function()) {
          return Json::parse(call.function().output(), nullptr, false);
        }
      }
    }
    ADD_FAILURE() << "no function call in run " << run.id();
    return Json();
  }

  static TempDir* dir_;
  static TestCertificates* certs_;
  std::string token_file_;
  ServerProcess fake_;
  ServerProcess gateway_;
  std::vector<std::unique_ptr<ServerProcess>> workers_;
};

TempDir* SecurityE2eTest::dir_ = nullptr;
TestCertificates* SecurityE2eTest::certs_ = nullptr;

// --- The gateway's port ------------------------------------------------------

TEST_F(SecurityE2eTest, TlsGatewayServesTlsClientsOnly) {
  StartGateway(ServerTlsFlags());
  if (HasFatalFailure()) return;
  EXPECT_THAT(gateway_.captured_stderr(), HasSubstr(", tls)"));

  const grpc::Status tls = GetUnknownAssistant(Channel(TrustingClient()));
  EXPECT_EQ(tls.error_code(), grpc::StatusCode::NOT_FOUND) << Describe(tls);

  const grpc::Status plaintext = GetUnknownAssistant(Channel({}));
  EXPECT_EQ(plaintext.error_code(), grpc::StatusCode::UNAVAILABLE)
      << Describe(plaintext);

  const grpc::Status wrong_ca =
      GetUnknownAssistant(Channel({"", "", certs_->other_ca_cert}));
  EXPECT_EQ(wrong_ca.error_code(), grpc::StatusCode::UNAVAILABLE)
      << Describe(wrong_ca);
}

TEST_F(SecurityE2eTest, MutualTlsGatewayWantsATrustedClientCertificate) {
  std::vector<std::string> flags = ServerTlsFlags();
  flags.push_back("--tls_client_ca_file=" + certs_->ca_cert);
  StartGateway(flags);
  if (HasFatalFailure()) return;
  EXPECT_THAT(gateway_.captured_stderr(), HasSubstr(", mutual tls)"));

  const grpc::Status no_cert = GetUnknownAssistant(Channel(TrustingClient()));
  EXPECT_EQ(no_cert.error_code(), grpc::StatusCode::UNAVAILABLE)
      << Describe(no_cert);

  const grpc::Status untrusted = GetUnknownAssistant(
      Channel({certs_->untrusted_client_cert, certs_->untrusted_client_key,
               certs_->ca_cert}));
  EXPECT_EQ(untrusted.error_code(), grpc::StatusCode::UNAVAILABLE)
      << Describe(untrusted);

  const grpc::Status good = GetUnknownAssistant(Channel(CertifiedClient()));
  EXPECT_EQ(good.error_code(), grpc::StatusCode::NOT_FOUND) << Describe(good);
}

// The certificate files are renewed on disk (by a new CA, to tell them
// apart): the running gateway serves the new one to new connections.
TEST_F(SecurityE2eTest, RenewedCertificateIsServedWithoutARestart) {
  TempDir renewed_dir;
  TestCertificates renewed;
  std::string error;
  ASSERT_TRUE(MakeTestCertificates(renewed_dir.path(), &renewed, &error))
      << error;
  TempDir live;
  const std::string cert = live.path() + "/tls.crt";
  const std::string key = live.path() + "/tls.key";
  auto replace = [](const std::string& path, const std::string& from) {
    std::ofstream(path + ".next", std::ios::binary) << ReadTextFile(from);
    return std::rename((path + ".next").c_str(), path.c_str()) == 0;
  };
  ASSERT_TRUE(replace(cert, certs_->server_cert));
  ASSERT_TRUE(replace(key, certs_->server_key));
  StartGateway({"--tls_cert_file=" + cert, "--tls_key_file=" + key,
                "--tls_reload_interval_s=1"});
  if (HasFatalFailure()) return;
  const grpc::Status before = GetUnknownAssistant(Channel(TrustingClient()));
  EXPECT_EQ(before.error_code(), grpc::StatusCode::NOT_FOUND)
      << Describe(before);

  ASSERT_TRUE(replace(key, renewed.server_key));
  ASSERT_TRUE(replace(cert, renewed.server_cert));
  const tls::ClientTlsOptions trusting_renewed{"", "", renewed.ca_cert};
  EXPECT_TRUE(WaitUntil(
      [&] {
        return GetUnknownAssistant(Channel(trusting_renewed)).error_code() ==
               grpc::StatusCode::NOT_FOUND;
      },
      std::chrono::seconds(30)))
      << "the renewed certificate was never served";
  const grpc::Status old_ca = GetUnknownAssistant(Channel(TrustingClient()));
  EXPECT_EQ(old_ca.error_code(), grpc::StatusCode::UNAVAILABLE)
      << Describe(old_ca);
}

TEST_F(SecurityE2eTest, UnusableTlsSettingsStopTheGatewayNamingTheFile) {
  const std::string missing = dir_->path() + "/no-such-cert.pem";
  ServerProcess gateway;
  gateway.set_env(GatewayEnv(1));
  std::string error;
  EXPECT_FALSE(gateway.Start(GatewayBinary(),
                             {"--db=:memory:", "--tls_cert_file=" + missing,
                              "--tls_key_file=" + certs_->server_key},
                             &error));
  EXPECT_THAT(error, HasSubstr(missing));

  ServerProcess no_key;
  no_key.set_env(GatewayEnv(1));
  EXPECT_FALSE(
      no_key.Start(GatewayBinary(),
                   {"--db=:memory:", "--worker_tls_ca_file=" + certs_->ca_cert,
                    "--worker_tls_cert_file=" + certs_->client_cert},
                   &error));
  // The configuration names the half-set pair before any file is read.
  EXPECT_THAT(error, HasSubstr("--worker_tls_cert_file"));
  EXPECT_THAT(error, HasSubstr("workers.tls.key_file is not"));

  ServerProcess bad_upstream_ca;
  bad_upstream_ca.set_env(
      Override(GatewayEnv(1), "ASSISTANTS_UPSTREAM_CA_FILE=" + missing));
  EXPECT_FALSE(
      bad_upstream_ca.Start(GatewayBinary(), {"--db=:memory:"}, &error));
  EXPECT_THAT(error, HasSubstr(missing));
}

// --- The upstream's certificate
// --------------------------------------------------

// A run's model call to an HTTPS upstream (here another gateway's TLS port,
// which speaks HTTP/2 over TLS but not OpenAI) fails on the certificate
// unless ASSISTANTS_UPSTREAM_CA_FILE names its CA; then it gets past TLS.
TEST_F(SecurityE2eTest, UpstreamCertificateIsVerified) {
  ServerProcess https_upstream;
  https_upstream.set_env(GatewayEnv(1));
  std::string error;
  ASSERT_TRUE(https_upstream.Start(
      GatewayBinary(),
      {"--db=:memory:", "--tls_cert_file=" + certs_->server_cert,
       "--tls_key_file=" + certs_->server_key},
      &error))
      << error;
  const std::string base_url =
      "https://127.0.0.1:" + std::to_string(https_upstream.port()) + "/v1";

  auto last_error = [&](const std::vector<std::string>& extra_env) {
    std::vector<std::string> env =
        Override(GatewayEnv(0, base_url), "ASSISTANTS_UPSTREAM_MAX_ATTEMPTS=1");
    for (const std::string& entry : extra_env) env = Override(env, entry);
    ServerProcess gateway;
    gateway.set_env(env);
    std::string start_error;
    EXPECT_TRUE(gateway.Start(GatewayBinary(), {"--db=:memory:"}, &start_error))
        << start_error;
    const std::shared_ptr<grpc::Channel> channel = gateway.Connect();
    if (channel == nullptr) return std::string("gateway not reachable");
    auto assistants = v1::AssistantService::NewStub(channel);
    auto runs = v1::RunService::NewStub(channel);
    v1::RunEventsRequest request;
    *request.mutable_create_thread_and_run() =
        ThreadAndRun(CreateAssistant(assistants.get(), {}), "Hello?");
    EventStream stream(runs.get(), request, seconds(30));
    std::vector<v1::RunEvent> events;
    const grpc::Status status = stream.ReadAll(&events);
    EXPECT_TRUE(status.ok()) << Describe(status);
    if (events.size() < 2) return std::string("no run");
    const v1::Run run = GetRun(runs.get(), events[1].run());
    EXPECT_EQ(run.status(), v1::RUN_STATUS_FAILED);
    return run.last_error().message();
  };

  EXPECT_THAT(last_error({}), HasSubstr("certificate"));
  EXPECT_THAT(last_error({"ASSISTANTS_UPSTREAM_CA_FILE=" + certs_->ca_cert}),
              Not(HasSubstr("certificate")));
}

// --- Tool workers over mutual TLS
// ---------------------------------------------

TEST_F(SecurityE2eTest, WorkerOverMutualTlsServesARun) {
  StartFake();
  if (HasFatalFailure()) return;
  // Everyone proves who they are: clients and workers to the gateway, the
  // gateway to its workers.
  std::vector<std::string> flags = ServerTlsFlags();
  flags.insert(flags.end(), {"--tls_client_ca_file=" + certs_->ca_cert,
                             "--worker_tls_ca_file=" + certs_->ca_cert,
                             "--worker_tls_cert_file=" + certs_->client_cert,
                             "--worker_tls_key_file=" + certs_->client_key});
  StartGateway(flags);
  if (HasFatalFailure()) return;
  ServerProcess* worker =
      StartWorker("tls-worker", "tls_echo",
                  {"--gateway_tls_ca_file=" + certs_->ca_cert,
                   "--gateway_tls_cert_file=" + certs_->client_cert,
                   "--gateway_tls_key_file=" + certs_->client_key,
                   "--tls_cert_file=" + certs_->server_cert,
                   "--tls_key_file=" + certs_->server_key,
                   "--tls_client_ca_file=" + certs_->ca_cert});
  ASSERT_NE(worker, nullptr);

  const std::shared_ptr<grpc::Channel> channel = Channel(CertifiedClient());
  const v1::Run run =
      RunCallingTool(channel, "tls_echo", {{"value", "over-mtls"}});
  if (HasFatalFailure()) return;
  EXPECT_EQ(run.status(), v1::RUN_STATUS_COMPLETED)
      << run.last_error().DebugString();
  const Json output = ToolOutput(channel, run);
  EXPECT_EQ(output.value("worker", ""), "tls-worker") << output;
  EXPECT_EQ(output.value("value", ""), "over-mtls") << output;

  // Nobody without the CA's certificate reaches the worker directly.
  auto plain = v1::ToolWorkerService::NewStub(grpc::CreateChannel(
      worker->address(), grpc::InsecureChannelCredentials()));
  v1::InvokeToolResponse response;
  const grpc::Status refused =
      plain->InvokeTool(Context().get(), v1::InvokeToolRequest(), &response);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE)
      << Describe(refused);
}

// The Python worker library speaks the same TLS flags.
TEST_F(SecurityE2eTest, PythonWorkerOverMutualTlsServesARun) {
  StartFake();
  if (HasFatalFailure()) return;
  std::vector<std::string> flags = ServerTlsFlags();
  flags.insert(flags.end(), {"--tls_client_ca_file=" + certs_->ca_cert,
                             "--worker_tls_ca_file=" + certs_->ca_cert,
                             "--worker_tls_cert_file=" + certs_->client_cert,
                             "--worker_tls_key_file=" + certs_->client_key});
  StartGateway(flags);
  if (HasFatalFailure()) return;
  workers_.push_back(std::make_unique<ServerProcess>());
  workers_.back()->set_env({"ASSISTANTS_WORKER_TOKEN="});
  std::string error;
  ASSERT_TRUE(workers_.back()->Start(
      std::string(ASSISTANTS_SOURCE_DIR) +
          "/tool_workers/examples/python/run.sh",
      {"--gateway=" + gateway_.address(), "--token_file=" + token_file_,
       "--worker_id=calculator-py-tls",
       "--gateway_tls_ca_file=" + certs_->ca_cert,
       "--gateway_tls_cert_file=" + certs_->client_cert,
       "--gateway_tls_key_file=" + certs_->client_key,
       "--tls_cert_file=" + certs_->server_cert,
       "--tls_key_file=" + certs_->server_key,
       "--tls_client_ca_file=" + certs_->ca_cert},
      &error, seconds(60)))
      << error;

  const std::shared_ptr<grpc::Channel> channel = Channel(CertifiedClient());
  const v1::Run run =
      RunCallingTool(channel, "calculator", {{"expression", "1000 * 237.5"}});
  if (HasFatalFailure()) return;
  EXPECT_EQ(run.status(), v1::RUN_STATUS_COMPLETED)
      << run.last_error().DebugString();
  const Json output = ToolOutput(channel, run);
  EXPECT_EQ(output.value("result", 0.0), 237500.0) << output;
  // run.sh forwards SIGTERM; a SIGKILL would leave Python behind.
  EXPECT_EQ(workers_.back()->Stop(seconds(15)), 0);
}

TEST_F(SecurityE2eTest, GatewayWithoutClientCertGetsAWorkerUnavailableOutput) {
  StartFake();
  if (HasFatalFailure()) return;
  // The gateway trusts the worker's certificate but has none of its own.
  StartGateway({"--worker_tls_ca_file=" + certs_->ca_cert});
  if (HasFatalFailure()) return;
  ASSERT_NE(StartWorker("picky-worker", "picky",
                        {"--tls_cert_file=" + certs_->server_cert,
                         "--tls_key_file=" + certs_->server_key,
                         "--tls_client_ca_file=" + certs_->ca_cert}),
            nullptr);

  const std::shared_ptr<grpc::Channel> channel = Channel({});
  const v1::Run run = RunCallingTool(channel, "picky", {{"value", "refused"}});
  if (HasFatalFailure()) return;
  // The model got a JSON error it can read, and the run went on.
  EXPECT_EQ(run.status(), v1::RUN_STATUS_COMPLETED)
      << run.last_error().DebugString();
  const Json output = ToolOutput(channel, run);
  EXPECT_EQ(output.value("error_type", ""), "unavailable") << output;
  EXPECT_EQ(output.value("tool", ""), "picky") << output;
  EXPECT_TRUE(gateway_.running());
}

// --- The upstream key
// ------------------------------------------------------------

// Each scripted failure quotes the key back; the run fails with the key
// nowhere in its last_error, its events or the gateway's stderr.
TEST_F(SecurityE2eTest, UpstreamKeyNeverReachesLastErrorOrLogs) {
  StartFake();
  if (HasFatalFailure()) return;
  StartGateway({});
  if (HasFatalFailure()) return;
  const std::shared_ptr<grpc::Channel> channel = Channel({});
  auto assistants = v1::AssistantService::NewStub(channel);
  auto runs = v1::RunService::NewStub(channel);
  const std::string assistant_id = CreateAssistant(assistants.get(), {});
  const std::string echo = std::string("the key ") + kUpstreamKey + " is bad";

  const std::vector<Json> failures = {
      {{"status", 401}, {"error", {{"message", echo}}}},
      {{"status", 400}, {"error", {{"message", echo}, {"code", kUpstreamKey}}}},
      {{"failed", {{"code", "server_error"}, {"message", echo}}}},
  };
  for (const Json& failure : failures) {
    SCOPED_TRACE(failure.dump());
    ScriptFake(fake_.port(), Json::array({failure}));
    v1::RunEventsRequest request;
    *request.mutable_create_thread_and_run() =
        ThreadAndRun(assistant_id, "Hello?");
    EventStream stream(runs.get(), request, seconds(30));
    std::vector<v1::RunEvent> events;
    const grpc::Status status = stream.ReadAll(&events);
    EXPECT_TRUE(status.ok()) << Describe(status);
    ASSERT_GE(events.size(), 2u);
    const v1::Run run = GetRun(runs.get(), events[1].run());
    EXPECT_EQ(run.status(), v1::RUN_STATUS_FAILED);
    EXPECT_FALSE(run.last_error().message().empty());
    EXPECT_THAT(run.last_error().DebugString(), Not(HasSubstr(kUpstreamKey)));
    for (const v1::RunEvent& event : events) {
      EXPECT_THAT(event.DebugString(), Not(HasSubstr(kUpstreamKey)));
    }
  }
  // The key did reach the upstream (fake-openai accepted it): the failures
  // above were the upstream's words, not a missing key.
  const Json recorded = FakeCall(fake_.port(), "GET", "/_fake/requests");
  ASSERT_EQ(recorded.value("requests", Json::array()).size(), 3u);
  for (const Json& r : recorded["requests"]) {
    EXPECT_TRUE(r.value("authorized", false)) << r.dump();
  }
  EXPECT_EQ(gateway_.Stop(), 0);
  EXPECT_THAT(gateway_.captured_stderr(), Not(HasSubstr(kUpstreamKey)));
}

}  // namespace
}  // namespace assistants::test_support
