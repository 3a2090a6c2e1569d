// Tests of the TLS credential builders (service/common/tls.h): configuration
// mistakes are clear errors naming the file, and the credentials they build
// really do (mutual) TLS — checked with in-process handshakes against
// certificates the test makes with the openssl CLI.
#include "service/common/tls.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "assistants/v1/tool_worker.grpc.pb.h"
#include "gmock/gmock.h"
#include "tests/support/server_process.h"
#include "tests/support/test_certificates.h"

namespace assistants::tls {
namespace {

using ::assistants::test_support::MakeTestCertificates;
using ::assistants::test_support::TempDir;
using ::assistants::test_support::TestCertificates;
using ::testing::HasSubstr;

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    certs_ = new TestCertificates();
    std::string error;
    ASSERT_TRUE(MakeTestCertificates(dir_->path(), certs_, &error)) << error;
  }
  static void TearDownTestSuite() {
    delete certs_;
    delete dir_;
  }

  static std::string Missing() { return dir_->path() + "/missing.pem"; }

  static std::string NotPem() {
    const std::string path = dir_->path() + "/not-pem.txt";
    std::ofstream(path) << "just text\n";
    return path;
  }

  static TempDir* dir_;
  static TestCertificates* certs_;
};

TempDir* TlsTest::dir_ = nullptr;
TestCertificates* TlsTest::certs_ = nullptr;

// --- Configuration errors ----------------------------------------------------

TEST_F(TlsTest, NothingSetIsInsecure) {
  auto server = ServerCredentials({});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_NE(*server, nullptr);
  auto channel = ChannelCredentials({});
  ASSERT_TRUE(channel.ok()) << channel.status();
  EXPECT_NE(*channel, nullptr);
}

TEST_F(TlsTest, ServerWithCertAndKeyBuilds) {
  auto server =
      ServerCredentials({certs_->server_cert, certs_->server_key, ""});
  ASSERT_TRUE(server.ok()) << server.status();
  auto mutual = ServerCredentials(
      {certs_->server_cert, certs_->server_key, certs_->ca_cert});
  ASSERT_TRUE(mutual.ok()) << mutual.status();
}

TEST_F(TlsTest, ServerMissingFileIsNamed) {
  for (const TlsFiles& files :
       {TlsFiles{Missing(), certs_->server_key, ""},
        TlsFiles{certs_->server_cert, Missing(), ""},
        TlsFiles{certs_->server_cert, certs_->server_key, Missing()}}) {
    auto server = ServerCredentials(files);
    ASSERT_FALSE(server.ok());
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(server.status().message(), HasSubstr(Missing()));
    EXPECT_THAT(server.status().message(), HasSubstr("cannot read"));
  }
}

TEST_F(TlsTest, ServerCertWithoutKeyIsAnError) {
  auto server = ServerCredentials({certs_->server_cert, "", ""});
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(server.status().message(), HasSubstr("no key file"));
  EXPECT_THAT(server.status().message(), HasSubstr(certs_->server_cert));

  auto key_only = ServerCredentials({"", certs_->server_key, ""});
  ASSERT_FALSE(key_only.ok());
  EXPECT_THAT(key_only.status().message(), HasSubstr("no certificate file"));
}

TEST_F(TlsTest, ServerClientCaWithoutCertificateIsAnError) {
  auto server = ServerCredentials({"", "", certs_->ca_cert});
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(server.status().message(), HasSubstr(certs_->ca_cert));
}

TEST_F(TlsTest, FileWithoutPemIsNamed) {
  const std::string not_pem = NotPem();
  auto server = ServerCredentials({not_pem, certs_->server_key, ""});
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(), HasSubstr(not_pem));
  EXPECT_THAT(server.status().message(), HasSubstr("no PEM"));
  auto channel = ChannelCredentials({"", "", not_pem});
  ASSERT_FALSE(channel.ok());
  EXPECT_THAT(channel.status().message(), HasSubstr(not_pem));
}

TEST_F(TlsTest, ChannelMissingFileIsNamed) {
  for (const TlsFiles& files :
       {TlsFiles{"", "", Missing()},
        TlsFiles{Missing(), certs_->client_key, certs_->ca_cert},
        TlsFiles{certs_->client_cert, Missing(), certs_->ca_cert}}) {
    auto channel = ChannelCredentials(files);
    ASSERT_FALSE(channel.ok());
    EXPECT_EQ(channel.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(channel.status().message(), HasSubstr(Missing()));
  }
}

TEST_F(TlsTest, ChannelCertWithoutKeyIsAnError) {
  auto channel = ChannelCredentials({certs_->client_cert, "", certs_->ca_cert});
  ASSERT_FALSE(channel.ok());
  EXPECT_EQ(channel.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(channel.status().message(), HasSubstr(certs_->client_cert));
}

// --- Handshakes
// ----------------------------------------------------------------

// Answers every InvokeTool with "ok": any completed call proves the
// handshake succeeded.
class OkWorker final : public v1::ToolWorkerService::CallbackService {
  grpc::ServerUnaryReactor* InvokeTool(
      grpc::CallbackServerContext* context, const v1::InvokeToolRequest*,
      v1::InvokeToolResponse* response) override {
    response->set_output("ok");
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

class TlsHandshakeTest : public TlsTest {
 protected:
  void Serve(const ServerTlsOptions& options) {
    auto credentials = ServerCredentials(options);
    ASSERT_TRUE(credentials.ok()) << credentials.status();
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", *credentials, &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  // One InvokeTool over a channel with `options`, dialling `host`.
  grpc::Status Call(const ClientTlsOptions& options,
                    const std::string& host = "127.0.0.1") {
    auto credentials = ChannelCredentials(options);
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    if (!credentials.ok()) return grpc::Status(grpc::StatusCode::UNKNOWN, "");
    auto stub = v1::ToolWorkerService::NewStub(
        grpc::CreateChannel(host + ":" + std::to_string(port_), *credentials));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    v1::InvokeToolResponse response;
    grpc::Status status =
        stub->InvokeTool(&context, v1::InvokeToolRequest(), &response);
    if (status.ok()) {
      EXPECT_EQ(response.output(), "ok");
    }
    return status;
  }

  OkWorker service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(TlsHandshakeTest, TlsClientTrustingTheCaConnects) {
  Serve({certs_->server_cert, certs_->server_key, ""});
  EXPECT_TRUE(Call({"", "", certs_->ca_cert}).ok());
  // The certificate names localhost too.
  EXPECT_TRUE(Call({"", "", certs_->ca_cert}, "localhost").ok());
}

TEST_F(TlsHandshakeTest, PlaintextClientToTlsPortFails) {
  Serve({certs_->server_cert, certs_->server_key, ""});
  EXPECT_EQ(Call({}).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsHandshakeTest, ClientTrustingAnotherCaFails) {
  Serve({certs_->server_cert, certs_->server_key, ""});
  EXPECT_EQ(Call({"", "", certs_->other_ca_cert}).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsHandshakeTest, MutualTlsRequiresATrustedClientCertificate) {
  Serve({certs_->server_cert, certs_->server_key, certs_->ca_cert});
  EXPECT_EQ(Call({"", "", certs_->ca_cert}).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Call({certs_->untrusted_client_cert, certs_->untrusted_client_key,
                  certs_->ca_cert})
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
  const grpc::Status good =
      Call({certs_->client_cert, certs_->client_key, certs_->ca_cert});
  EXPECT_TRUE(good.ok()) << good.error_message();
}

// --- Watched files (reload_interval_s > 0) ----------------------------------

TEST_F(TlsHandshakeTest, WatchedFilesServeTlsAsReadOnceFilesDo) {
  ServerTlsOptions options{certs_->server_cert, certs_->server_key, ""};
  options.reload_interval_s = 1;
  Serve(options);
  EXPECT_TRUE(Call({"", "", certs_->ca_cert}).ok());
  EXPECT_EQ(Call({}).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Call({"", "", certs_->other_ca_cert}).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsHandshakeTest, WatchedFilesRequireATrustedClientCertificate) {
  ServerTlsOptions options{certs_->server_cert, certs_->server_key,
                           certs_->ca_cert};
  options.reload_interval_s = 1;
  Serve(options);
  EXPECT_EQ(Call({"", "", certs_->ca_cert}).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Call({certs_->untrusted_client_cert, certs_->untrusted_client_key,
                  certs_->ca_cert})
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
  const grpc::Status good =
      Call({certs_->client_cert, certs_->client_key, certs_->ca_cert});
  EXPECT_TRUE(good.ok()) << good.error_message();
}

// Replaces `path` with the contents of `from` in one rename, as a
// Kubernetes Secret volume swaps its files.
void ReplaceFile(const std::string& path, const std::string& from) {
  const std::string next = path + ".next";
  std::ofstream(next, std::ios::binary) << test_support::ReadTextFile(from);
  ASSERT_EQ(std::rename(next.c_str(), path.c_str()), 0) << path;
}

// A certificate issued by another CA replaces the served one on disk: new
// connections get it within the reload interval, no restart.
TEST_F(TlsHandshakeTest, RotatedCertificateReachesNewConnections) {
  TempDir other_dir;
  TestCertificates other;
  std::string error;
  ASSERT_TRUE(MakeTestCertificates(other_dir.path(), &other, &error)) << error;
  TempDir live;
  const std::string cert = live.path() + "/tls.crt";
  const std::string key = live.path() + "/tls.key";
  ReplaceFile(cert, certs_->server_cert);
  ReplaceFile(key, certs_->server_key);
  ServerTlsOptions options{cert, key, ""};
  options.reload_interval_s = 1;
  Serve(options);
  EXPECT_TRUE(Call({"", "", certs_->ca_cert}).ok());
  EXPECT_EQ(Call({"", "", other.ca_cert}).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  ReplaceFile(key, other.server_key);
  ReplaceFile(cert, other.server_cert);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);
  bool rotated = false;
  while (!rotated && std::chrono::steady_clock::now() < deadline) {
    rotated = Call({"", "", other.ca_cert}).ok();
    if (!rotated) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_TRUE(rotated) << "the renewed certificate was never served";
  EXPECT_EQ(Call({"", "", certs_->ca_cert}).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace assistants::tls
