// The C++ tool-worker SDK: declare tools with handlers; ToolWorker serves
// ToolWorkerService, registers with the gateway's ToolRegistryService, keeps
// its lease alive by heartbeat (registering again when the gateway forgot
// it, e.g. after a gateway restart), and on shutdown unregisters, refuses new
// calls and lets the calls in flight finish.
//
// Wire conventions (what the gateway relies on):
// - Arguments are the model's JSON text; empty means {}. Text that is not a
//   JSON object is answered INVALID_ARGUMENT ("arguments are not valid JSON:
//   ...", ErrorInfo INVALID_ARGUMENTS) without calling the handler. An
//   unknown tool is NOT_FOUND (TOOL_NOT_FOUND).
// - A handler's error keeps its code and message; payloads of the
//   absl::Status (e.g. google.rpc.ErrorInfo) travel as google.rpc.Status
//   details. A handler that throws is INTERNAL (TOOL_HANDLER_FAILED); the
//   process never dies of it.
// - Not started: a call the worker refuses WITHOUT running its handler (the
//   worker is draining and has no result for its idempotency key) is
//   UNAVAILABLE with a google.rpc.Status in the
//   grpc-status-details-bin trailer holding one google.rpc.ErrorInfo
//   {reason: "CALL_NOT_STARTED", domain: "assistants.gateway"}. The gateway
//   retries such a call on another replica even for a non-idempotent tool;
//   a plain UNAVAILABLE is retried for idempotent tools only.
// - Calls are deduplicated by idempotency key: a finished result is
//   remembered (up to dedupe_entries, least recently used first out) and a
//   call whose key is still running waits for that run's result, so a
//   retried call never runs the handler twice on one replica. UNAVAILABLE
//   results are not remembered (a retry deserves a fresh attempt); calls
//   with an empty key are never deduplicated. While draining, a key this
//   replica already ran is still answered with its result.
//
//   ToolWorker worker(options);
//   worker.AddTool({.name = "get_stock_price", ..., .handler = Price});
//   return worker.RunUntilSignal("stock-price-worker");
#ifndef TOOL_WORKERS_SDK_TOOL_WORKER_H_
#define TOOL_WORKERS_SDK_TOOL_WORKER_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "service/common/tls.h"

namespace assistants::worker_sdk {

// The ErrorInfo domain and the reason marking a call that was not started.
inline constexpr absl::string_view kErrorDomain = "assistants.gateway";
inline constexpr absl::string_view kCallNotStartedReason = "CALL_NOT_STARTED";

// What a handler knows about the call it serves. Valid only while the handler
// runs.
struct CallContext {
  // run_id + ":" + tool_call_id; the same key means the same call.
  std::string idempotency_key;
  std::string tool_call_id;
  std::string run_id;
  std::string thread_id;
  std::string assistant_id;
  std::chrono::system_clock::time_point deadline;
  // True once the gateway gave up on the call (cancelled, deadline passed).
  // Long handlers should poll it and return early: Shutdown() cancels the
  // calls still running after drain_timeout and waits for their handlers.
  std::function<bool()> cancelled;
};

// Returns the tool's output (serialized with dump() unless it is a JSON
// string, which is sent as is) or an error: InvalidArgument for arguments
// the tool cannot use (the model gets a JSON error it can read), Unavailable
// when the call failed in a way another replica may not (retried there for
// idempotent tools), CallNotStarted() when the handler did nothing with
// effects (retried there for any tool); any other code is reported as a
// worker error.
using ToolHandler = std::function<absl::StatusOr<nlohmann::json>(
    const nlohmann::json& arguments, const CallContext& context)>;

// UNAVAILABLE carrying the CALL_NOT_STARTED ErrorInfo: "this call had no
// effects, run it elsewhere". The worker answers it itself while draining; a
// handler may return it too.
absl::Status CallNotStarted(absl::string_view message);

struct ToolSpec {
  std::string name;  // ^[a-zA-Z0-9_-]{1,64}$
  std::string description;
  nlohmann::json parameters = nlohmann::json::object();  // a JSON Schema object
  bool strict = false;
  int timeout_ms = 0;       // 0: the gateway default (30 s)
  int max_concurrency = 0;  // 0: the gateway default (16)
  bool idempotent = false;  // safe to run twice for one call
  ToolHandler handler;
};

struct WorkerOptions {
  // host:port of the gateway; empty serves without registering.
  std::string gateway;
  // Where to serve; port 0 picks a free port.
  std::string listen = "127.0.0.1:0";
  // The endpoint the gateway dials; empty: the listen host with the bound
  // port.
  std::string advertise;
  // Stable per replica; empty: "<hostname>-<pid>".
  std::string worker_id;
  // The gateway's registration token (sent as authorization: Bearer).
  std::string token;
  // TLS towards the gateway: ca_file verifies the gateway's certificate
  // (empty: the system's roots), cert_file + key_file are presented when the
  // gateway demands a client certificate. All empty: plaintext.
  tls::ClientTlsOptions gateway_tls;
  // TLS on the worker's own port: cert_file + key_file; ca_file set: only
  // callers with a certificate it signed (the gateway) may call. All empty:
  // plaintext.
  tls::ServerTlsOptions server_tls;
  // Requested lease; 0: the gateway default.
  int lease_ttl_ms = 0;
  // Threads running handlers (handlers may block).
  int handler_threads = 8;
  // How long Start() keeps retrying a gateway that is not reachable yet.
  std::chrono::milliseconds register_timeout{30000};
  // On shutdown, how long calls in flight may finish.
  std::chrono::milliseconds drain_timeout{10000};
  // Completed results remembered by idempotency key, so a retried call is
  // answered without running the handler again.
  size_t dedupe_entries = 4096;
};

class ToolWorker {
 public:
  explicit ToolWorker(WorkerOptions options);
  ~ToolWorker();  // Shutdown() if still running
  ToolWorker(const ToolWorker&) = delete;
  ToolWorker& operator=(const ToolWorker&) = delete;

  // Before Start(). A bad spec (name, schema) is reported by Start().
  void AddTool(ToolSpec spec);
  // Checks the tools (InvalidArgument for a bad name, a schema that is not a
  // JSON object, a missing handler, a duplicate name, no tool at all), serves,
  // then registers (retrying UNAVAILABLE and DEADLINE_EXCEEDED with backoff up
  // to register_timeout, then UNAVAILABLE); returns the registration's error
  // when it is refused (bad token, endpoint not allowed, conflicting
  // definition), having stopped serving. Once it returns OK the worker is
  // registered. Unusable TLS settings (a missing file, a certificate without
  // its key) are INVALID_ARGUMENT naming the file, before anything serves.
  absl::Status Start();
  int port() const;
  const std::string& endpoint() const;
  const std::string& worker_id() const;
  // Stops heartbeats, unregisters (best effort), refuses new calls
  // (UNAVAILABLE, CALL_NOT_STARTED), waits up to drain_timeout for calls in
  // flight, then cancels those left, waits for their handlers and stops
  // serving. Idempotent (a second caller waits for the first).
  void Shutdown();
  // Blocks SIGTERM and SIGINT (call it before starting other threads, so
  // they inherit the mask), Start(), prints "<program> listening on
  // HOST:PORT" (the advertised host, the bound port) to stderr, serves until
  // SIGTERM or SIGINT, Shutdown(). Returns the process exit code: 0, or 1
  // when Start() failed (the reason is printed).
  int RunUntilSignal(absl::string_view program);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// WorkerOptions from the standard worker flags, each defaulting to an
// environment variable: --gateway (ASSISTANTS_GATEWAY), --listen
// (WORKER_LISTEN), --advertise (WORKER_ADVERTISE), --worker_id (WORKER_ID),
// --token_file (ASSISTANTS_WORKER_TOKEN_FILE; its contents, trimmed) or else
// ASSISTANTS_WORKER_TOKEN, --lease_ttl_ms, and --handler_threads,
// --register_timeout_ms, --drain_timeout_ms; TLS: --gateway_tls_ca_file,
// --gateway_tls_cert_file, --gateway_tls_key_file
// (ASSISTANTS_GATEWAY_TLS_{CA,CERT,KEY}_FILE) and --tls_cert_file,
// --tls_key_file, --tls_client_ca_file
// (WORKER_TLS_{CERT,KEY,CLIENT_CA}_FILE). Call after
// absl::ParseCommandLine; an unreadable token file is an error (TLS files
// are read, and reported, by Start()).
absl::StatusOr<WorkerOptions> WorkerOptionsFromFlags();

}  // namespace assistants::worker_sdk

#endif  // TOOL_WORKERS_SDK_TOOL_WORKER_H_
