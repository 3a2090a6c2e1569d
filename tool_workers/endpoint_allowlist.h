// Which endpoints a tool worker may register: the gateway dials what workers
// register, so an open registry would let anyone with the token point the
// gateway at any host. Entries match the endpoint's host:
//   "10.0.0.0/8"          an IPv4 block (CIDR)
//   "127.0.0.1", "[::1]"  one address
//   "*.svc.cluster.local" a host name glob ('*' matches any characters)
//   "*"                   everything (an explicit opt-out)
#ifndef TOOL_WORKERS_ENDPOINT_ALLOWLIST_H_
#define TOOL_WORKERS_ENDPOINT_ALLOWLIST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace assistants::tool_workers {

// "host:port" split; IPv6 hosts keep their brackets ("[::1]").
struct HostPort {
  std::string host;
  int port = 0;
};

// Parses "host:port" (port 1..65535, IPv6 in brackets); INVALID_ARGUMENT
// naming `field` otherwise.
absl::StatusOr<HostPort> ParseEndpoint(absl::string_view endpoint,
                                       absl::string_view field);

class EndpointAllowList {
 public:
  // Loopback only: 127.0.0.0/8, [::1] and localhost.
  EndpointAllowList();
  // From comma-separated entries; an error names the bad entry.
  static absl::StatusOr<EndpointAllowList> Parse(absl::string_view entries);

  bool Allows(const HostPort& endpoint) const;
  const std::string& description() const { return description_; }

 private:
  struct Block {
    uint32_t network = 0;
    uint32_t mask = 0;
  };
  std::vector<Block> blocks_;
  std::vector<std::string> globs_;  // lower-case
  std::string description_;
};

}  // namespace assistants::tool_workers

#endif  // TOOL_WORKERS_ENDPOINT_ALLOWLIST_H_
