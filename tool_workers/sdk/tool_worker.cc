// ToolWorker: a callback-API ToolWorkerService whose calls run on a handler
// pool, a deduplicating result cache, and the registration/heartbeat client
// of the gateway's ToolRegistryService.
#include "tool_workers/sdk/tool_worker.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <iostream>
#include <list>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "assistants/v1/tool_worker.grpc.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace assistants::worker_sdk {
namespace {

namespace v1 = ::assistants::v1;
using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;
using SystemClock = std::chrono::system_clock;

constexpr absl::string_view kErrorInfoUrl =
    "type.googleapis.com/google.rpc.ErrorInfo";
// Deadline of each registry RPC; unregistering is best effort and must not
// hold up a shutdown.
constexpr milliseconds kRegistryRpcTimeout{5000};
constexpr milliseconds kUnregisterTimeout{1000};
constexpr milliseconds kFirstBackoff{100};
constexpr milliseconds kMaxBackoff{2000};
// Heartbeat interval when the gateway suggests none and grants no TTL.
constexpr milliseconds kDefaultHeartbeat{5000};

// An SDK error carrying an ErrorInfo of the project's domain.
absl::Status SdkError(absl::StatusCode code, absl::string_view reason,
                      absl::string_view message) {
  absl::Status status(code, message);
  google::rpc::ErrorInfo info;
  info.set_reason(std::string(reason));
  info.set_domain(std::string(kErrorDomain));
  status.SetPayload(kErrorInfoUrl, absl::Cord(info.SerializeAsString()));
  return status;
}

// The one mapping to the wire: the code and message, and the status's
// payloads as the details of a google.rpc.Status in the trailer.
grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(status.code());
  const std::string message(status.message());
  google::rpc::Status rich;
  rich.set_code(static_cast<int>(status.code()));
  rich.set_message(message);
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
    google::protobuf::Any* detail = rich.add_details();
    detail->set_type_url(std::string(url));
    detail->set_value(std::string(payload));
  });
  if (rich.details_size() == 0) return grpc::Status(code, message);
  return grpc::Status(code, message, rich.SerializeAsString());
}

// The gateway's error with its ErrorInfo reason (BAD_REGISTRATION_TOKEN,
// ENDPOINT_NOT_ALLOWED, TOOL_DEFINITION_CONFLICT, ...) up front, so an
// operator reading the worker's log knows what to fix.
absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view rpc,
                            absl::string_view gateway) {
  if (status.ok()) return absl::OkStatus();
  std::string reason;
  google::rpc::Status details;
  if (!status.error_details().empty() &&
      details.ParseFromString(status.error_details())) {
    for (const google::protobuf::Any& any : details.details()) {
      google::rpc::ErrorInfo info;
      if (any.UnpackTo(&info) && !info.reason().empty()) {
        reason = absl::StrCat(info.reason(), ": ");
        break;
      }
    }
  }
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(rpc, " to ", gateway, " failed: ", reason,
                                   status.error_message()));
}

bool IsTransient(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable ||
         code == absl::StatusCode::kDeadlineExceeded;
}

bool IsValidToolName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

std::string DefaultWorkerId() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0)
    return absl::StrCat("worker-", getpid());
  return absl::StrCat(host, "-", getpid());
}

// "host:port" -> host (brackets of an IPv6 literal kept).
std::string HostOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

std::string DefaultAdvertiseHost(const std::string& listen) {
  const std::string host = HostOf(listen);
  // A wildcard is not an address anyone can dial.
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "::") {
    return "127.0.0.1";
  }
  return host;
}

absl::StatusOr<v1::WorkerTool> ToWorkerTool(const ToolSpec& spec) {
  v1::WorkerTool tool;
  v1::FunctionDefinition* function = tool.mutable_function();
  function->set_name(spec.name);
  function->set_description(spec.description);
  const auto converted = google::protobuf::util::JsonStringToMessage(
      spec.parameters.dump(), function->mutable_parameters());
  if (!converted.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tool '", spec.name,
                     "': parameters cannot be sent: ", converted.ToString()));
  }
  function->set_strict(spec.strict);
  tool.set_timeout_ms(spec.timeout_ms);
  tool.set_max_concurrency(spec.max_concurrency);
  tool.set_idempotent(spec.idempotent);
  return tool;
}

absl::Status ValidateTool(const ToolSpec& spec) {
  const std::string prefix = absl::StrCat("tool '", spec.name, "': ");
  if (!IsValidToolName(spec.name)) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "name must match ^[a-zA-Z0-9_-]{1,64}$"));
  }
  if (!spec.parameters.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "parameters must be a JSON Schema object"));
  }
  if (!spec.handler) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "no handler"));
  }
  if (spec.timeout_ms < 0 || spec.max_concurrency < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "timeout_ms and max_concurrency must not be negative"));
  }
  return absl::OkStatus();
}

// Runs one call's handler and turns everything it can do (bad arguments, an
// error, an exception, an unserializable result) into output or a status.
absl::StatusOr<std::string> RunHandler(const ToolSpec& spec,
                                       const std::string& arguments_text,
                                       const CallContext& context) {
  nlohmann::json arguments = nlohmann::json::object();
  if (!arguments_text.empty()) {
    try {
      arguments = nlohmann::json::parse(arguments_text);
    } catch (const nlohmann::json::exception& e) {
      return SdkError(absl::StatusCode::kInvalidArgument, "INVALID_ARGUMENTS",
                      absl::StrCat("arguments are not valid JSON: ", e.what()));
    }
    if (!arguments.is_object()) {
      return SdkError(absl::StatusCode::kInvalidArgument, "INVALID_ARGUMENTS",
                      absl::StrCat("arguments are not valid JSON: expected an "
                                   "object, got ",
                                   arguments.type_name()));
    }
  }
  try {
    absl::StatusOr<nlohmann::json> result = spec.handler(arguments, context);
    if (!result.ok()) return result.status();
    if (result->is_string()) return result->get<std::string>();
    return result->dump(-1, ' ', false,
                        nlohmann::json::error_handler_t::replace);
  } catch (const std::exception& e) {
    // The message goes to the model; the exception's text may hold
    // secrets, so it stays in the worker's log.
    std::cerr << "tool '" << spec.name << "' threw: " << e.what() << "\n";
    return SdkError(absl::StatusCode::kInternal, "TOOL_HANDLER_FAILED",
                    absl::StrCat("tool '", spec.name,
                                 "' failed with an exception (see the "
                                 "worker's log)"));
  } catch (...) {
    return SdkError(
        absl::StatusCode::kInternal, "TOOL_HANDLER_FAILED",
        absl::StrCat("tool '", spec.name, "' failed: unknown exception"));
  }
}

// A fixed pool running handlers, so no gRPC callback thread ever blocks.
class HandlerPool {
 public:
  explicit HandlerPool(int threads) {
    for (int i = 0; i < std::max(1, threads); ++i) {
      threads_.emplace_back([this] { Work(); });
    }
  }
  // Runs what is queued, then joins.
  ~HandlerPool() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    for (std::thread& thread : threads_) thread.join();
  }

  void Schedule(std::function<void()> task) {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(task));
  }

 private:
  void Work() {
    while (true) {
      std::function<void()> task;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](HandlerPool* pool) {
              return pool->stopping_ || !pool->queue_.empty();
            },
            this));
        if (queue_.empty()) return;
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// What a call is answered with.
struct CallResult {
  grpc::Status status;
  std::string output;
};
using Reply = std::function<void(const CallResult&)>;

// Results by idempotency key: finished ones in an LRU of bounded size, running
// ones with the replies waiting for them.
class DedupeCache {
 public:
  explicit DedupeCache(size_t capacity) : capacity_(capacity) {}

  enum class Outcome {
    kRun,       // the caller is the first with the key: run, then Complete()
    kAnswered,  // `reply` got the remembered result, or will get the result
                // of the run in progress
    kUnknown,   // nothing known and `may_run` was false
  };

  Outcome Join(const std::string& key, const Reply& reply, bool may_run) {
    CallResult remembered;
    {
      absl::MutexLock lock(&mu_);
      auto it = entries_.find(key);
      if (it == entries_.end()) {
        if (!may_run) return Outcome::kUnknown;
        entries_.try_emplace(key);
        return Outcome::kRun;
      }
      Entry& entry = it->second;
      if (!entry.done) {
        entry.waiters.push_back(reply);
        return Outcome::kAnswered;
      }
      lru_.splice(lru_.begin(), lru_, entry.lru);
      remembered = entry.result;
    }
    reply(remembered);
    return Outcome::kAnswered;
  }

  // Hands `result` to the waiting replies and remembers it if `remember`.
  void Complete(const std::string& key, const CallResult& result,
                bool remember) {
    std::vector<Reply> waiters;
    {
      absl::MutexLock lock(&mu_);
      auto it = entries_.find(key);
      if (it == entries_.end()) return;
      waiters = std::move(it->second.waiters);
      if (!remember || capacity_ == 0) {
        entries_.erase(it);
      } else {
        Entry& entry = it->second;
        entry.done = true;
        entry.result = result;
        entry.waiters.clear();
        lru_.push_front(key);
        entry.lru = lru_.begin();
        while (lru_.size() > capacity_) {
          entries_.erase(lru_.back());
          lru_.pop_back();
        }
      }
    }
    for (const Reply& reply : waiters) reply(result);
  }

 private:
  struct Entry {
    bool done = false;
    CallResult result;
    std::vector<Reply> waiters;
    std::list<std::string>::iterator lru;
  };

  const size_t capacity_;
  absl::Mutex mu_;
  std::unordered_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  // Keys of finished entries, most recently used first.
  std::list<std::string> lru_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::Status CallNotStarted(absl::string_view message) {
  return SdkError(absl::StatusCode::kUnavailable, kCallNotStartedReason,
                  message);
}

class ToolWorker::Impl final : public v1::ToolWorkerService::CallbackService {
 public:
  explicit Impl(WorkerOptions options)
      : options_(std::move(options)), dedupe_(options_.dedupe_entries) {
    if (options_.worker_id.empty()) options_.worker_id = DefaultWorkerId();
  }
  ~Impl() override { Shutdown(); }

  void AddTool(ToolSpec spec) {
    if (started_) {
      std::cerr << "tool worker " << options_.worker_id << ": AddTool(\""
                << spec.name << "\") after Start() is ignored" << std::endl;
      return;
    }
    specs_.push_back(std::move(spec));
  }

  absl::Status Start();
  void Shutdown();

  int port() const { return port_; }
  const std::string& endpoint() const { return endpoint_; }
  const std::string& worker_id() const { return options_.worker_id; }

  grpc::ServerUnaryReactor* InvokeTool(
      grpc::CallbackServerContext* context,
      const v1::InvokeToolRequest* request,
      v1::InvokeToolResponse* response) override;

 private:
  absl::Status BuildTools();
  absl::Status Serve();
  absl::Status RegisterWithRetry();
  absl::StatusOr<v1::RegisterWorkerResponse> Register(milliseconds timeout);
  void AdoptLease(const v1::RegisterWorkerResponse& response);
  void HeartbeatLoop();
  absl::Status Beat();
  void Unregister();
  void StopServing();
  void SetAuthorization(grpc::ClientContext* context) const;
  // Counts a call in flight until EndCall(); false once draining (the call
  // must not start).
  bool BeginCall();
  void EndCall();

  WorkerOptions options_;
  DedupeCache dedupe_;
  std::vector<ToolSpec> specs_;
  bool started_ = false;
  // Read-only once Start() has served.
  std::unordered_map<std::string, const ToolSpec*> tools_;
  v1::RegisterWorkerRequest register_request_;
  int port_ = 0;
  std::string endpoint_;

  std::unique_ptr<HandlerPool> pool_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::ChannelCredentials> gateway_credentials_;
  std::unique_ptr<v1::ToolRegistryService::Stub> registry_;
  std::thread heartbeat_thread_;
  // Only the heartbeat thread touches it.
  bool lease_lost_ = false;

  // Held for the whole of Shutdown(), so a second caller waits for the first.
  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;  // wakes the heartbeat thread
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::string lease_id_ ABSL_GUARDED_BY(mu_);
  milliseconds heartbeat_interval_ ABSL_GUARDED_BY(mu_) = kDefaultHeartbeat;
};

absl::Status ToolWorker::Impl::Start() {
  if (started_) return absl::FailedPreconditionError("Start() called twice");
  started_ = true;
  if (absl::Status built = BuildTools(); !built.ok()) return built;
  // Both credentials first: a bad TLS file must not leave a port served.
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
      gateway_credentials = tls::ChannelCredentials(options_.gateway_tls);
  if (!gateway_credentials.ok()) return gateway_credentials.status();
  gateway_credentials_ = *std::move(gateway_credentials);
  if (absl::Status served = Serve(); !served.ok()) return served;
  register_request_.set_endpoint(endpoint_);
  if (options_.gateway.empty()) return absl::OkStatus();

  registry_ = v1::ToolRegistryService::NewStub(
      grpc::CreateChannel(options_.gateway, gateway_credentials_));
  absl::Status registered = RegisterWithRetry();
  // Shutdown() may have run meanwhile (from another thread): it found no
  // heartbeat thread to stop, so clean up here instead of starting one.
  absl::MutexLock shutdown_lock(&shutdown_mu_);
  if (shut_down_) {
    if (registered.ok()) Unregister();
    return absl::CancelledError("Shutdown() was called during Start()");
  }
  if (!registered.ok()) {
    StopServing();
    return registered;
  }
  heartbeat_thread_ = std::thread([this] { HeartbeatLoop(); });
  return absl::OkStatus();
}

absl::Status ToolWorker::Impl::BuildTools() {
  if (specs_.empty()) {
    return absl::InvalidArgumentError("no tools: call AddTool() first");
  }
  register_request_.set_worker_id(options_.worker_id);
  register_request_.set_lease_ttl_ms(options_.lease_ttl_ms);
  for (const ToolSpec& spec : specs_) {
    if (absl::Status valid = ValidateTool(spec); !valid.ok()) return valid;
    if (!tools_.emplace(spec.name, &spec).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("tool '", spec.name, "' is added twice"));
    }
    absl::StatusOr<v1::WorkerTool> tool = ToWorkerTool(spec);
    if (!tool.ok()) return tool.status();
    *register_request_.add_tools() = *std::move(tool);
  }
  return absl::OkStatus();
}

absl::Status ToolWorker::Impl::Serve() {
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      tls::ServerCredentials(options_.server_tls);
  if (!credentials.ok()) return credentials.status();
  pool_ = std::make_unique<HandlerPool>(options_.handler_threads);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.listen, *credentials, &port_);
  builder.RegisterService(this);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    server_.reset();
    pool_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.listen));
  }
  endpoint_ =
      options_.advertise.empty()
          ? absl::StrCat(DefaultAdvertiseHost(options_.listen), ":", port_)
          : options_.advertise;
  return absl::OkStatus();
}

void ToolWorker::Impl::SetAuthorization(grpc::ClientContext* context) const {
  if (!options_.token.empty()) {
    context->AddMetadata("authorization",
                         absl::StrCat("Bearer ", options_.token));
  }
}

absl::StatusOr<v1::RegisterWorkerResponse> ToolWorker::Impl::Register(
    milliseconds timeout) {
  grpc::ClientContext context;
  SetAuthorization(&context);
  context.set_deadline(SystemClock::now() + timeout);
  v1::RegisterWorkerResponse response;
  const grpc::Status status =
      registry_->RegisterWorker(&context, register_request_, &response);
  if (!status.ok()) {
    return FromGrpcStatus(status, "RegisterWorker", options_.gateway);
  }
  return response;
}

void ToolWorker::Impl::AdoptLease(const v1::RegisterWorkerResponse& response) {
  milliseconds interval(response.heartbeat_interval_ms());
  if (interval.count() <= 0)
    interval = milliseconds(response.lease_ttl_ms() / 3);
  if (interval.count() <= 0) interval = kDefaultHeartbeat;
  absl::MutexLock lock(&mu_);
  lease_id_ = response.lease_id();
  heartbeat_interval_ = interval;
}

absl::Status ToolWorker::Impl::RegisterWithRetry() {
  const auto give_up = SteadyClock::now() + options_.register_timeout;
  milliseconds backoff = kFirstBackoff;
  while (true) {
    const auto left =
        std::chrono::duration_cast<milliseconds>(give_up - SteadyClock::now());
    absl::StatusOr<v1::RegisterWorkerResponse> response =
        Register(std::clamp(left, milliseconds(1), kRegistryRpcTimeout));
    if (response.ok()) {
      AdoptLease(*response);
      return absl::OkStatus();
    }
    const absl::Status& error = response.status();
    if (!IsTransient(error.code())) return error;
    const milliseconds pause = std::min(
        backoff,
        std::chrono::duration_cast<milliseconds>(give_up - SteadyClock::now()));
    if (pause.count() <= 0) {
      // One code for "gateway not reachable in time", whichever transient
      // failure came last.
      return absl::UnavailableError(absl::StrCat(
          "gave up registering after ", options_.register_timeout.count(),
          " ms; last error: ", error.ToString()));
    }
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping_),
                             absl::FromChrono(pause))) {
      return absl::CancelledError("shut down while registering");
    }
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

void ToolWorker::Impl::HeartbeatLoop() {
  // The last problem logged ("" when healthy), so a gateway that stays down
  // is reported once, not at every beat.
  std::string logged_problem;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_),
                           absl::FromChrono(heartbeat_interval_));
      if (stopping_) return;
    }
    const absl::Status status = Beat();
    const std::string problem =
        status.ok()
            ? ""
            : absl::StrCat(lease_lost_ ? "registering" : "heartbeat", " ",
                           absl::StatusCodeToString(status.code()));
    if (problem == logged_problem) continue;
    std::cerr << "tool worker " << options_.worker_id << ": "
              << (status.ok() ? "gateway reachable again"
                              : std::string(status.message()))
              << std::endl;
    logged_problem = problem;
  }
}

absl::Status ToolWorker::Impl::Beat() {
  if (!lease_lost_) {
    v1::HeartbeatRequest request;
    request.set_worker_id(options_.worker_id);
    {
      absl::MutexLock lock(&mu_);
      request.set_lease_id(lease_id_);
      request.set_in_flight(in_flight_);
    }
    grpc::ClientContext context;
    SetAuthorization(&context);
    context.set_deadline(SystemClock::now() + kRegistryRpcTimeout);
    v1::HeartbeatResponse response;
    const absl::Status status =
        FromGrpcStatus(registry_->Heartbeat(&context, request, &response),
                       "Heartbeat", options_.gateway);
    // NOT_FOUND: the gateway forgot the lease (expired, or it restarted).
    if (status.code() != absl::StatusCode::kNotFound) return status;
    lease_lost_ = true;
    std::cerr << "tool worker " << options_.worker_id
              << ": lease lost, registering again (" << status.message() << ")"
              << std::endl;
  }
  absl::StatusOr<v1::RegisterWorkerResponse> response =
      Register(kRegistryRpcTimeout);
  if (!response.ok()) return response.status();
  AdoptLease(*response);
  lease_lost_ = false;
  std::cerr << "tool worker " << options_.worker_id << ": registered again"
            << std::endl;
  return absl::OkStatus();
}

void ToolWorker::Impl::Unregister() {
  v1::UnregisterWorkerRequest request;
  request.set_worker_id(options_.worker_id);
  {
    absl::MutexLock lock(&mu_);
    request.set_lease_id(lease_id_);
  }
  grpc::ClientContext context;
  SetAuthorization(&context);
  context.set_deadline(SystemClock::now() + kUnregisterTimeout);
  v1::UnregisterWorkerResponse response;
  const absl::Status status =
      FromGrpcStatus(registry_->UnregisterWorker(&context, request, &response),
                     "UnregisterWorker", options_.gateway);
  if (!status.ok()) {
    std::cerr << "tool worker " << options_.worker_id << ": "
              << status.message() << std::endl;
  }
}

bool ToolWorker::Impl::BeginCall() {
  absl::MutexLock lock(&mu_);
  ++in_flight_;
  return !draining_;
}

void ToolWorker::Impl::EndCall() {
  absl::MutexLock lock(&mu_);
  --in_flight_;
}

grpc::ServerUnaryReactor* ToolWorker::Impl::InvokeTool(
    grpc::CallbackServerContext* context, const v1::InvokeToolRequest* request,
    v1::InvokeToolResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto tool = tools_.find(request->tool_name());
  if (tool == tools_.end()) {
    reactor->Finish(
        ToGrpcStatus(SdkError(absl::StatusCode::kNotFound, "TOOL_NOT_FOUND",
                              absl::StrCat("this worker serves no tool named '",
                                           request->tool_name(), "'"))));
    return reactor;
  }
  const bool draining = !BeginCall();
  Reply reply = [this, reactor, response](const CallResult& result) {
    if (result.status.ok()) response->set_output(result.output);
    reactor->Finish(result.status);
    EndCall();
  };
  // Even while draining, a call this replica ran (or is running) gets that
  // run's result: refusing it as not started would let the gateway run it a
  // second time elsewhere.
  const std::string key = request->idempotency_key();
  const DedupeCache::Outcome known =
      key.empty() ? DedupeCache::Outcome::kUnknown
                  : dedupe_.Join(key, reply, /*may_run=*/!draining);
  if (known == DedupeCache::Outcome::kAnswered) return reactor;
  if (draining) {
    reply(
        {ToGrpcStatus(CallNotStarted("the tool worker is shutting down")), ""});
    return reactor;
  }

  pool_->Schedule([this, spec = tool->second, context, request, key,
                   reply = std::move(reply)] {
    CallContext call;
    call.idempotency_key = key;
    call.tool_call_id = request->tool_call_id();
    call.run_id = request->run_id();
    call.thread_id = request->thread_id();
    call.assistant_id = request->assistant_id();
    call.deadline = context->deadline();
    call.cancelled = [context, deadline = call.deadline] {
      return context->IsCancelled() || SystemClock::now() >= deadline;
    };
    absl::StatusOr<std::string> output =
        RunHandler(*spec, request->arguments(), call);
    CallResult result{ToGrpcStatus(output.status()),
                      output.ok() ? *std::move(output) : std::string()};
    if (!key.empty()) {
      // A handler that gave up (cancelled, out of time) or invites a retry
      // did not answer the call: a retry of the same key (e.g. after a
      // gateway restart) runs the tool again. Anything else, success
      // included even when the gateway stopped waiting, is the answer.
      const absl::StatusCode code = output.status().code();
      const bool remember = code != absl::StatusCode::kUnavailable &&
                            code != absl::StatusCode::kCancelled &&
                            code != absl::StatusCode::kDeadlineExceeded;
      dedupe_.Complete(key, result, remember);
    }
    reply(result);
  });
  return reactor;
}

void ToolWorker::Impl::StopServing() {
  if (server_ != nullptr) {
    // Calls still running are cancelled now; Shutdown() returns once their
    // handlers have answered.
    server_->Shutdown(SystemClock::now());
    server_.reset();
  }
  pool_.reset();
}

void ToolWorker::Impl::Shutdown() {
  absl::MutexLock shutdown_lock(&shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (heartbeat_thread_.joinable()) {
    heartbeat_thread_.join();
    Unregister();
  }
  if (server_ == nullptr) return;  // never served
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
  }
  if (grpc::HealthCheckServiceInterface* health =
          server_->GetHealthCheckService()) {
    health->SetServingStatus(false);
  }
  {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(
        absl::Condition(
            +[](int* in_flight) { return *in_flight == 0; }, &in_flight_),
        absl::FromChrono(options_.drain_timeout));
  }
  StopServing();
}

ToolWorker::ToolWorker(WorkerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

ToolWorker::~ToolWorker() = default;

void ToolWorker::AddTool(ToolSpec spec) { impl_->AddTool(std::move(spec)); }

absl::Status ToolWorker::Start() { return impl_->Start(); }

int ToolWorker::port() const { return impl_->port(); }

const std::string& ToolWorker::endpoint() const { return impl_->endpoint(); }

const std::string& ToolWorker::worker_id() const { return impl_->worker_id(); }

void ToolWorker::Shutdown() { impl_->Shutdown(); }

int ToolWorker::RunUntilSignal(absl::string_view program) {
  // Blocked before Start() creates threads, so every thread inherits the
  // mask and only sigwait() below sees the signals.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (absl::Status started = Start(); !started.ok()) {
    std::cerr << program << ": " << started << std::endl;
    return 1;
  }
  const std::string listening = absl::StrCat(HostOf(endpoint()), ":", port());
  std::cerr << program << " listening on " << listening;
  if (listening != endpoint())
    std::cerr << " (advertised as " << endpoint() << ")";
  std::cerr << std::endl;

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  std::cerr << program << ": signal " << signal_number << ", shutting down"
            << std::endl;
  Shutdown();
  return 0;
}

}  // namespace assistants::worker_sdk
