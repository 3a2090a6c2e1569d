// The standard flags of every tool worker binary, each defaulting to an
// environment variable so a worker is configured the same way in a shell and
// in a Kubernetes Deployment.
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "tool_workers/sdk/tool_worker.h"

namespace {

std::string EnvOr(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

}  // namespace

ABSL_FLAG(std::string, gateway, EnvOr("ASSISTANTS_GATEWAY", ""),
          "host:port of the gateway to register with (env "
          "ASSISTANTS_GATEWAY); empty serves without registering");
ABSL_FLAG(std::string, listen, EnvOr("WORKER_LISTEN", "127.0.0.1:0"),
          "host:port to serve ToolWorkerService on (env WORKER_LISTEN); port 0 "
          "picks a free port");
ABSL_FLAG(std::string, advertise, EnvOr("WORKER_ADVERTISE", ""),
          "host:port the gateway dials (env WORKER_ADVERTISE); empty: the "
          "listen host (127.0.0.1 for a wildcard) with the bound port");
ABSL_FLAG(std::string, worker_id, EnvOr("WORKER_ID", ""),
          "stable id of this replica (env WORKER_ID); empty: <hostname>-<pid>");
ABSL_FLAG(std::string, token_file, EnvOr("ASSISTANTS_WORKER_TOKEN_FILE", ""),
          "file holding the gateway's registration token (env "
          "ASSISTANTS_WORKER_TOKEN_FILE); empty: env ASSISTANTS_WORKER_TOKEN");
ABSL_FLAG(int, lease_ttl_ms, 0,
          "requested lease; 0: the gateway default (15 s)");
ABSL_FLAG(int, handler_threads, 8, "threads running tool handlers");
ABSL_FLAG(int, register_timeout_ms, 30000,
          "how long to keep retrying a gateway that is not reachable yet");
ABSL_FLAG(int, drain_timeout_ms, 10000,
          "on SIGTERM/SIGINT, how long calls in flight may finish");
ABSL_FLAG(std::string, gateway_tls_ca_file,
          EnvOr("ASSISTANTS_GATEWAY_TLS_CA_FILE", ""),
          "PEM CA the gateway's certificate must chain to; set (or a client "
          "certificate set): register over TLS (env "
          "ASSISTANTS_GATEWAY_TLS_CA_FILE)");
ABSL_FLAG(std::string, gateway_tls_cert_file,
          EnvOr("ASSISTANTS_GATEWAY_TLS_CERT_FILE", ""),
          "PEM client certificate presented to a gateway that demands one "
          "(env ASSISTANTS_GATEWAY_TLS_CERT_FILE)");
ABSL_FLAG(std::string, gateway_tls_key_file,
          EnvOr("ASSISTANTS_GATEWAY_TLS_KEY_FILE", ""),
          "PEM private key of --gateway_tls_cert_file (env "
          "ASSISTANTS_GATEWAY_TLS_KEY_FILE)");
ABSL_FLAG(std::string, tls_cert_file, EnvOr("WORKER_TLS_CERT_FILE", ""),
          "PEM certificate chain this worker serves TLS with (env "
          "WORKER_TLS_CERT_FILE); empty: plaintext");
ABSL_FLAG(std::string, tls_key_file, EnvOr("WORKER_TLS_KEY_FILE", ""),
          "PEM private key of --tls_cert_file (env WORKER_TLS_KEY_FILE)");
ABSL_FLAG(std::string, tls_client_ca_file,
          EnvOr("WORKER_TLS_CLIENT_CA_FILE", ""),
          "PEM CA; when set, only callers with a certificate it signed (the "
          "gateway) may call this worker (env WORKER_TLS_CLIENT_CA_FILE)");

namespace assistants::worker_sdk {

absl::StatusOr<WorkerOptions> WorkerOptionsFromFlags() {
  WorkerOptions options;
  options.gateway = absl::GetFlag(FLAGS_gateway);
  options.listen = absl::GetFlag(FLAGS_listen);
  options.advertise = absl::GetFlag(FLAGS_advertise);
  options.worker_id = absl::GetFlag(FLAGS_worker_id);
  options.lease_ttl_ms = absl::GetFlag(FLAGS_lease_ttl_ms);
  options.handler_threads = absl::GetFlag(FLAGS_handler_threads);
  options.register_timeout =
      std::chrono::milliseconds(absl::GetFlag(FLAGS_register_timeout_ms));
  options.drain_timeout =
      std::chrono::milliseconds(absl::GetFlag(FLAGS_drain_timeout_ms));
  options.gateway_tls = {absl::GetFlag(FLAGS_gateway_tls_cert_file),
                         absl::GetFlag(FLAGS_gateway_tls_key_file),
                         absl::GetFlag(FLAGS_gateway_tls_ca_file)};
  options.server_tls = {absl::GetFlag(FLAGS_tls_cert_file),
                        absl::GetFlag(FLAGS_tls_key_file),
                        absl::GetFlag(FLAGS_tls_client_ca_file)};
  if (options.handler_threads < 1 || options.lease_ttl_ms < 0 ||
      options.register_timeout.count() < 0 ||
      options.drain_timeout.count() < 0) {
    return absl::InvalidArgumentError(
        "--handler_threads must be positive; --lease_ttl_ms, "
        "--register_timeout_ms and --drain_timeout_ms must not be negative");
  }

  const std::string token_file = absl::GetFlag(FLAGS_token_file);
  if (token_file.empty()) {
    options.token = EnvOr("ASSISTANTS_WORKER_TOKEN", "");
    return options;
  }
  std::ifstream file(token_file);
  if (!file.is_open()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read --token_file ", token_file));
  }
  std::stringstream contents;
  contents << file.rdbuf();
  options.token = std::string(absl::StripAsciiWhitespace(contents.str()));
  return options;
}

}  // namespace assistants::worker_sdk
