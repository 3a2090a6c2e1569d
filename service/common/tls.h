// TLS credentials for every gRPC server and channel of the project (the
// gateway, the gateway -> worker channels, the worker SDK, the CLI): PEM
// files named by configuration become grpc::ServerCredentials or
// grpc::ChannelCredentials. Nothing set means insecure (plaintext), so
// development on a laptop keeps working without certificates.
//
// A server may watch its files (reload_interval_s > 0): a renewed
// certificate, key or client CA (cert-manager rotating a Kubernetes Secret)
// is served to new connections within that interval, without a restart;
// connections already open keep the certificate they were made with.
// Channels read their files once, when the credentials are built.
#ifndef SERVICE_COMMON_TLS_H_
#define SERVICE_COMMON_TLS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace assistants::tls {

// Paths of PEM files; empty means "not set".
struct TlsFiles {
  // Our own certificate chain and its private key (set both or neither).
  std::string cert_file;
  std::string key_file;
  // For a server: the CA that must have signed every client's certificate
  // (set: mutual TLS, clients without a valid certificate are refused).
  // For a channel: the CA the server's certificate must chain to (empty:
  // the system's roots).
  std::string ca_file;
  // Servers only: seconds between checks of the files for new contents; 0
  // reads them once, at start. A file that cannot be read or does not match
  // its pair at a check leaves the last good certificate in use.
  int reload_interval_s = 0;

  bool empty() const {
    return cert_file.empty() && key_file.empty() && ca_file.empty();
  }
};

using ServerTlsOptions = TlsFiles;
using ClientTlsOptions = TlsFiles;

// Credentials for a listening port:
// - nothing set: insecure;
// - cert_file + key_file: TLS (clients are not asked for a certificate);
// - plus ca_file: mutual TLS; a client must present a certificate signed by
//   that CA (GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY).
// With reload_interval_s > 0 the same, from files watched for changes
// (checked at start as without it, so a bad file still stops the start).
// INVALID_ARGUMENT when only one of cert/key is set, when ca_file is set
// without them, or when a file cannot be read or holds no PEM block (the
// message names the file).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const ServerTlsOptions& options);

// Credentials for a channel:
// - nothing set: insecure;
// - ca_file and/or cert_file + key_file: TLS, verifying the server against
//   ca_file (or the system's roots), presenting cert_file (mutual TLS) when
//   set. The server's certificate must name the host dialled (a DNS or IP
//   SAN).
// INVALID_ARGUMENT when only one of cert/key is set, or when a file cannot
// be read or holds no PEM block (the message names the file).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(
    const ClientTlsOptions& options);

// The contents of a PEM file; INVALID_ARGUMENT naming `what` ("TLS
// certificate") and the path when it cannot be read or holds no PEM block.
absl::StatusOr<std::string> ReadPemFile(const std::string& path,
                                        const std::string& what);

}  // namespace assistants::tls

#endif  // SERVICE_COMMON_TLS_H_
