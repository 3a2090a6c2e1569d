// The CLI's connection to the gateway: channel credentials (plaintext, TLS
// with a given or the system's CA, or mTLS with a client certificate) and the
// metadata every call carries (`authorization: Bearer <api key>` and one
// `x-request-id` per invocation), added by a client interceptor so that the
// run flows' own calls carry them too.
#ifndef CLI_CONNECTION_H_
#define CLI_CONNECTION_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace assistants {
namespace cli {

// A file named on the command line or in the environment; `source` says
// which ("--tls-ca", "ASSISTANTS_TLS_CA") for error messages.
struct NamedFile {
  std::string path;
  std::string source;

  bool empty() const { return path.empty(); }
};

// The whole file, or INVALID_ARGUMENT naming where the path came from
// ("SOURCE: cannot read PATH: REASON") or that it is empty. Used for the TLS
// files and every other file a flag names.
absl::StatusOr<std::string> ReadNamedFile(const NamedFile& file);

struct ConnectionOptions {
  std::string target;
  // Sent as "authorization: Bearer <api_key>" when non-empty. Never printed.
  std::string api_key;
  // Sent as "x-request-id" when non-empty.
  std::string request_id;
  // TLS with the system's roots; implied by any of the files below.
  bool tls = false;
  NamedFile tls_ca;
  NamedFile tls_cert;
  NamedFile tls_key;
  // Host name checked against the server certificate instead of the
  // target's (connecting by IP or through a port-forward).
  std::string tls_server_name;
};

// Checks the options that need no network: the API key is a valid header
// value (the message does not quote it), the client certificate and key
// come together, and every TLS file is readable (INVALID_ARGUMENT naming the
// flag or variable and the file otherwise).
absl::Status CheckConnectionOptions(const ConnectionOptions& options);

// The channel to options.target with the credentials and the per-call
// metadata described above. Errors as CheckConnectionOptions.
absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(
    const ConnectionOptions& options);

}  // namespace cli
}  // namespace assistants

#endif  // CLI_CONNECTION_H_
