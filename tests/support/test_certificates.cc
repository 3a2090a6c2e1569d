// MakeTestCertificates: a throwaway PKI from the openssl CLI (EC P-256 keys:
// quick to generate, and what modern deployments use).
#include "tests/support/test_certificates.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/server_process.h"

namespace assistants::test_support {
namespace {

constexpr char kOpenSsl[] = "/usr/bin/openssl";

bool Run(const std::vector<std::string>& argv, std::string* error) {
  const CommandResult result = RunCommand(argv);
  if (result.exit_code == 0) return true;
  std::string command;
  for (const std::string& arg : argv) command += arg + " ";
  *error = "`" + command + "` failed (exit " +
           std::to_string(result.exit_code) + "):\n" + result.stderr_text +
           result.stdout_text;
  return false;
}

bool WriteText(const std::string& path, const std::string& text,
               std::string* error) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (out.good()) return true;
  *error = "cannot write " + path;
  return false;
}

// A self-signed CA certificate and key named `name`.pem / `name`.key.
bool MakeCa(const std::string& dir, const std::string& name,
            std::string* error) {
  return Run({kOpenSsl,
              "req",
              "-x509",
              "-newkey",
              "ec",
              "-pkeyopt",
              "ec_paramgen_curve:prime256v1",
              "-nodes",
              "-days",
              "2",
              "-subj",
              "/CN=" + name,
              "-keyout",
              dir + "/" + name + ".key",
              "-out",
              dir + "/" + name + ".pem",
              "-addext",
              "basicConstraints=critical,CA:TRUE",
              "-addext",
              "keyUsage=critical,keyCertSign,cRLSign"},
             error);
}

// A leaf certificate `name`.pem / `name`.key signed by CA `ca`, with the
// extensions in `extensions` (an openssl extfile's lines).
bool MakeLeaf(const std::string& dir, const std::string& name,
              const std::string& ca, const std::string& extensions,
              std::string* error) {
  const std::string base = dir + "/" + name;
  if (!WriteText(base + ".ext", extensions, error)) return false;
  return Run({kOpenSsl, "req", "-new", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=" + name,
              "-keyout", base + ".key", "-out", base + ".csr"},
             error) &&
         Run({kOpenSsl, "x509", "-req", "-in", base + ".csr", "-CA",
              dir + "/" + ca + ".pem", "-CAkey", dir + "/" + ca + ".key",
              "-CAcreateserial", "-days", "2", "-extfile", base + ".ext",
              "-out", base + ".pem"},
             error);
}

}  // namespace

bool MakeTestCertificates(const std::string& dir, TestCertificates* out,
                          std::string* error) {
  const std::string leaf = "basicConstraints=critical,CA:FALSE\n";
  if (!MakeCa(dir, "test-ca", error) || !MakeCa(dir, "other-ca", error) ||
      !MakeLeaf(dir, "server", "test-ca",
                leaf + "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                       "extendedKeyUsage=serverAuth\n",
                error) ||
      !MakeLeaf(dir, "client", "test-ca",
                leaf + "extendedKeyUsage=clientAuth\n", error) ||
      !MakeLeaf(dir, "untrusted-client", "other-ca",
                leaf + "extendedKeyUsage=clientAuth\n", error)) {
    return false;
  }
  out->ca_cert = dir + "/test-ca.pem";
  out->server_cert = dir + "/server.pem";
  out->server_key = dir + "/server.key";
  out->client_cert = dir + "/client.pem";
  out->client_key = dir + "/client.key";
  out->other_ca_cert = dir + "/other-ca.pem";
  out->untrusted_client_cert = dir + "/untrusted-client.pem";
  out->untrusted_client_key = dir + "/untrusted-client.key";
  return true;
}

std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace assistants::test_support
