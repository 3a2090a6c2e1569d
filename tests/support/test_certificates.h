// Test certificates made at run time with the `openssl` command-line tool, so
// no key material lives in the repository and nothing expires in CI: a CA, a
// server certificate it signed (SAN IP:127.0.0.1 and DNS:localhost, so
// clients dialling 127.0.0.1 verify it without a name override), a client
// certificate it signed, and a client certificate from a second, untrusted CA.
#ifndef TESTS_SUPPORT_TEST_CERTIFICATES_H_
#define TESTS_SUPPORT_TEST_CERTIFICATES_H_

#include <string>

namespace assistants::test_support {

// Paths of PEM files (certificates and unencrypted private keys).
struct TestCertificates {
  std::string ca_cert;  // the trusted CA
  std::string server_cert;
  std::string server_key;
  std::string client_cert;  // signed by ca_cert
  std::string client_key;
  std::string other_ca_cert;          // a CA nobody trusts
  std::string untrusted_client_cert;  // signed by other_ca_cert
  std::string untrusted_client_key;
};

// Writes the certificates into `dir` (which must exist). On failure returns
// false with `*error` holding openssl's output.
bool MakeTestCertificates(const std::string& dir, TestCertificates* out,
                          std::string* error);

// The contents of `path` (empty when it cannot be read).
std::string ReadTextFile(const std::string& path);

}  // namespace assistants::test_support

#endif  // TESTS_SUPPORT_TEST_CERTIFICATES_H_
