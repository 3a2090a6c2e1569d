// TLS credential builders: read PEM files and hand them to gRPC's SSL
// credentials (or, for a server that reloads them, its TLS credentials over
// a file-watching certificate provider).
#include "service/common/tls.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace assistants::tls {
namespace {

// Both halves of a key pair or neither: a certificate without its key (or
// the reverse) is a configuration mistake, not a request for plaintext.
absl::Status CheckKeyPair(const TlsFiles& options) {
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TLS needs both a certificate and its private key: ",
        options.cert_file.empty()
            ? absl::StrCat("key file \"", options.key_file,
                           "\" is set but no certificate file")
            : absl::StrCat("certificate file \"", options.cert_file,
                           "\" is set but no key file")));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ReadPemFile(const std::string& path,
                                        const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot read ", what, " file \"", path, "\": ", std::strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  std::string pem = text.str();
  // gRPC would only fail later, at the first handshake or with a bare
  // "cannot listen": say which file is wrong now.
  if (!absl::StrContains(pem, "-----BEGIN ")) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " file \"", path, "\" holds no PEM block"));
  }
  return pem;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const ServerTlsOptions& options) {
  if (options.empty()) return grpc::InsecureServerCredentials();
  if (absl::Status pair = CheckKeyPair(options); !pair.ok()) return pair;
  if (options.cert_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a client CA file (\"", options.ca_file,
        "\") needs a server certificate and key: mutual TLS is TLS first"));
  }
  absl::StatusOr<std::string> cert =
      ReadPemFile(options.cert_file, "TLS certificate");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key =
      ReadPemFile(options.key_file, "TLS private key");
  if (!key.ok()) return key.status();

  std::string ca;
  if (!options.ca_file.empty()) {
    absl::StatusOr<std::string> read =
        ReadPemFile(options.ca_file, "TLS client CA");
    if (!read.ok()) return read.status();
    ca = *std::move(read);
  }
  const grpc_ssl_client_certificate_request_type request =
      options.ca_file.empty()
          ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
          : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  if (options.reload_interval_s > 0) {
    // gRPC's file watcher re-reads the files on its own thread and hands
    // new handshakes the latest good pair (and client CA).
    auto provider =
        std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
            options.key_file, options.cert_file, options.ca_file,
            static_cast<unsigned int>(options.reload_interval_s));
    grpc::experimental::TlsServerCredentialsOptions tls(provider);
    tls.watch_identity_key_cert_pairs();
    if (!options.ca_file.empty()) tls.watch_root_certs();
    tls.set_cert_request_type(request);
    return grpc::experimental::TlsServerCredentials(tls);
  }
  grpc::SslServerCredentialsOptions ssl(request);
  ssl.pem_key_cert_pairs.push_back({*std::move(key), *std::move(cert)});
  ssl.pem_root_certs = std::move(ca);
  return grpc::SslServerCredentials(ssl);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(
    const ClientTlsOptions& options) {
  if (options.empty()) return grpc::InsecureChannelCredentials();
  if (absl::Status pair = CheckKeyPair(options); !pair.ok()) return pair;
  grpc::SslCredentialsOptions ssl;
  if (!options.ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPemFile(options.ca_file, "TLS CA");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
  }
  if (!options.cert_file.empty()) {
    absl::StatusOr<std::string> cert =
        ReadPemFile(options.cert_file, "TLS client certificate");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key =
        ReadPemFile(options.key_file, "TLS client private key");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace assistants::tls
