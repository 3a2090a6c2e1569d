// The access-log interceptor; see access_log.h.
#include "service/api/access_log.h"

#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "grpcpp/support/status.h"
#include "service/common/ids.h"
#include "service/common/log.h"

namespace assistants {
namespace {

using grpc::experimental::InterceptionHookPoints;

// Client-supplied ids longer than this are replaced: they end up in every
// log line of the call.
constexpr size_t kMaxRequestIdLength = 128;

// Only the project's own services: their messages are generated protobuf
// classes, so GetRecvMessage() points at a google::protobuf::Message. (The
// health service, for one, receives raw ByteBuffers.)
constexpr absl::string_view kOwnServicePrefix = "/assistants.v1.";

const char* CodeName(grpc::StatusCode code) {
  static constexpr const char* kNames[] = {
      "OK",
      "CANCELLED",
      "UNKNOWN",
      "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED",
      "NOT_FOUND",
      "ALREADY_EXISTS",
      "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION",
      "ABORTED",
      "OUT_OF_RANGE",
      "UNIMPLEMENTED",
      "INTERNAL",
      "UNAVAILABLE",
      "DATA_LOSS",
      "UNAUTHENTICATED",
  };
  const int index = static_cast<int>(code);
  return index >= 0 && index < 17 ? kNames[index] : "UNKNOWN";
}

bool IsServerFault(grpc::StatusCode code) {
  return code == grpc::StatusCode::INTERNAL ||
         code == grpc::StatusCode::UNKNOWN ||
         code == grpc::StatusCode::DATA_LOSS;
}

// A string field of `message` named `name`, or "".
std::string StringField(const google::protobuf::Message& message,
                        const char* name) {
  const google::protobuf::FieldDescriptor* field =
      message.GetDescriptor()->FindFieldByName(name);
  if (field == nullptr || field->is_repeated() ||
      field->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_STRING) {
    return "";
  }
  return message.GetReflection()->GetString(message, field);
}

class AccessLogInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit AccessLogInterceptor(grpc::experimental::ServerRpcInfo* info)
      : method_(info->method()),
        own_service_(absl::StartsWith(method_, kOwnServicePrefix)),
        start_(std::chrono::steady_clock::now()) {}

  // The call is over when gRPC destroys its interceptors: log it.
  ~AccessLogInterceptor() override {
    const LogLevel level = !status_sent_          ? LogLevel::kDebug
                           : IsServerFault(code_) ? LogLevel::kWarning
                                                  : LogLevel::kDebug;
    if (!LogEnabled(level)) return;
    const double duration_ms = std::chrono::duration<double, std::milli>(
                                   std::chrono::steady_clock::now() - start_)
                                   .count();
    // A call that ended without a status (the client went away) is
    // reported as CANCELLED, as the client saw it.
    const char* code =
        status_sent_ ? CodeName(code_) : CodeName(grpc::StatusCode::CANCELLED);
    std::vector<LogField> fields = {{"method", method_},
                                    {"code", code},
                                    {"duration_ms", duration_ms},
                                    {"request_id", request_id_}};
    if (!thread_id_.empty()) fields.emplace_back("thread_id", thread_id_);
    if (!run_id_.empty()) fields.emplace_back("run_id", run_id_);
    Log(level, "rpc", fields);
  }

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      ReadRequestId(methods->GetRecvInitialMetadata());
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      if (request_id_.empty()) request_id_ = NewId("req_");
      methods->GetSendInitialMetadata()->emplace(kRequestIdMetadata,
                                                 request_id_);
    }
    if (own_service_ && thread_id_.empty() && run_id_.empty() &&
        methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_MESSAGE)) {
      if (void* received = methods->GetRecvMessage(); received != nullptr) {
        const auto* message =
            static_cast<const google::protobuf::Message*>(received);
        thread_id_ = StringField(*message, "thread_id");
        run_id_ = StringField(*message, "run_id");
      }
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      status_sent_ = true;
      code_ = methods->GetSendStatus().error_code();
      if (request_id_.empty()) request_id_ = NewId("req_");
    }
    methods->Proceed();
  }

 private:
  void ReadRequestId(
      std::multimap<grpc::string_ref, grpc::string_ref>* metadata) {
    if (metadata == nullptr) return;
    auto it = metadata->find(kRequestIdMetadata);
    if (it == metadata->end()) return;
    if (it->second.size() == 0 || it->second.size() > kMaxRequestIdLength) {
      return;
    }
    request_id_.assign(it->second.data(), it->second.size());
  }

  // Hooks of one call run one at a time, so no lock is needed.
  const std::string method_;
  const bool own_service_;
  const std::chrono::steady_clock::time_point start_;
  std::string request_id_;
  std::string thread_id_;
  std::string run_id_;
  bool status_sent_ = false;
  grpc::StatusCode code_ = grpc::StatusCode::OK;
};

class AccessLogInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new AccessLogInterceptor(info);
  }
};

}  // namespace

std::shared_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeAccessLogInterceptorFactory() {
  return std::make_shared<AccessLogInterceptorFactory>();
}

}  // namespace assistants
