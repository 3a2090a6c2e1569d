#include "cli/connection.h"

#include <fcntl.h>
#include <grpcpp/support/client_interceptor.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace assistants {
namespace cli {
namespace {

// Adds the invocation's metadata to every call before it is sent.
class MetadataInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit MetadataInterceptor(
      const std::vector<std::pair<std::string, std::string>>* metadata)
      : metadata_(metadata) {}

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::
                PRE_SEND_INITIAL_METADATA)) {
      std::multimap<std::string, std::string>* sent =
          methods->GetSendInitialMetadata();
      for (const auto& [key, value] : *metadata_) sent->emplace(key, value);
    }
    methods->Proceed();
  }

 private:
  const std::vector<std::pair<std::string, std::string>>* metadata_;
};

class MetadataInterceptorFactory final
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit MetadataInterceptorFactory(
      std::vector<std::pair<std::string, std::string>> metadata)
      : metadata_(std::move(metadata)) {}

  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new MetadataInterceptor(&metadata_);
  }

 private:
  // Lives as long as the channel, which owns the factory.
  const std::vector<std::pair<std::string, std::string>> metadata_;
};

// Printable ASCII without leading or trailing blanks: what an HTTP/2 header
// value may carry (gRPC would otherwise fail every call obscurely).
bool IsHeaderValue(const std::string& value) {
  if (value.empty() || value.front() == ' ' || value.back() == ' ') {
    return false;
  }
  for (char c : value) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

bool UsesTls(const ConnectionOptions& options) {
  return options.tls || !options.tls_ca.empty() || !options.tls_cert.empty() ||
         !options.tls_key.empty() || !options.tls_server_name.empty();
}

}  // namespace

// POSIX calls, for an exact errno in the message.
absl::StatusOr<std::string> ReadNamedFile(const NamedFile& file) {
  auto failed = [&file](int error) {
    return absl::InvalidArgumentError(absl::StrCat(
        file.source, ": cannot read ", file.path, ": ", std::strerror(error)));
  };
  const int fd = open(file.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return failed(errno);
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;  // a directory: EISDIR
      close(fd);
      return failed(error);
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  if (text.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file.source, ": ", file.path, " is empty"));
  }
  return text;
}

absl::Status CheckConnectionOptions(const ConnectionOptions& options) {
  if (!options.api_key.empty() && !IsHeaderValue(options.api_key)) {
    // The key itself is never echoed.
    return absl::InvalidArgumentError(
        "--api-key: the key has characters a header cannot carry");
  }
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert and --tls-key go together (the client certificate and "
        "its private key)");
  }
  for (const NamedFile* file :
       {&options.tls_ca, &options.tls_cert, &options.tls_key}) {
    if (file->empty()) continue;
    absl::StatusOr<std::string> text = ReadNamedFile(*file);
    if (!text.ok()) return text.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(
    const ConnectionOptions& options) {
  if (absl::Status checked = CheckConnectionOptions(options); !checked.ok()) {
    return checked;
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  grpc::ChannelArguments args;
  if (UsesTls(options)) {
    grpc::SslCredentialsOptions ssl;
    // Empty roots: gRPC's default roots (the system's).
    for (auto [file, pem] :
         {std::pair{&options.tls_ca, &ssl.pem_root_certs},
          std::pair{&options.tls_cert, &ssl.pem_cert_chain},
          std::pair{&options.tls_key, &ssl.pem_private_key}}) {
      if (file->empty()) continue;
      absl::StatusOr<std::string> text = ReadNamedFile(*file);
      if (!text.ok()) return text.status();
      *pem = *std::move(text);
    }
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(options.tls_server_name);
    }
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  std::vector<std::pair<std::string, std::string>> metadata;
  if (!options.api_key.empty()) {
    metadata.emplace_back("authorization",
                          absl::StrCat("Bearer ", options.api_key));
  }
  if (!options.request_id.empty()) {
    metadata.emplace_back("x-request-id", options.request_id);
  }
  std::vector<
      std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(
      std::make_unique<MetadataInterceptorFactory>(std::move(metadata)));
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      options.target, credentials, args, std::move(interceptors));
}

}  // namespace cli
}  // namespace assistants
