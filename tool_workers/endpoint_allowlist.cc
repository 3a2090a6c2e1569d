#include "tool_workers/endpoint_allowlist.h"

#include <arpa/inet.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "service/common/errors.h"
#include "service/core/validation.h"

namespace assistants::tool_workers {
namespace {

bool ParseIpv4(absl::string_view text, uint32_t* out) {
  in_addr addr;
  if (inet_pton(AF_INET, std::string(text).c_str(), &addr) != 1) return false;
  *out = ntohl(addr.s_addr);
  return true;
}

// '*' matches any run of characters; everything else matches itself.
bool GlobMatch(absl::string_view pattern, absl::string_view text) {
  size_t p = 0, t = 0, star = absl::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != absl::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool ValidHostChars(absl::string_view host) {
  for (char c : host) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '-' && c != '_' && c != '*' && c != ':' && c != '[' && c != ']') {
      return false;
    }
  }
  return true;
}

bool AllDigits(absl::string_view text) {
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<HostPort> ParseEndpoint(absl::string_view endpoint,
                                       absl::string_view field) {
  auto bad = [&](absl::string_view why) {
    return FieldError(field, kInvalidFormat,
                      absl::StrCat("must be host:port (", why, "), not \"",
                                   endpoint.substr(0, 128), "\""));
  };
  if (endpoint.empty()) return FieldError(field, kFieldRequired, "is required");
  if (endpoint.size() > 255) return bad("too long");
  const size_t colon = endpoint.rfind(':');
  if (colon == absl::string_view::npos) return bad("no port");
  if (colon == 0) return bad("no host");
  HostPort out;
  out.host = absl::AsciiStrToLower(endpoint.substr(0, colon));
  // Digits only: SimpleAtoi would also take " 80" and "+80".
  const absl::string_view port = endpoint.substr(colon + 1);
  if (port.empty() || port.size() > 5 || !AllDigits(port) ||
      !absl::SimpleAtoi(port, &out.port) || out.port < 1 || out.port > 65535) {
    return bad("port 1..65535");
  }
  if (out.host.front() == '[') {
    in6_addr addr;
    if (out.host.back() != ']' ||
        inet_pton(AF_INET6, out.host.substr(1, out.host.size() - 2).c_str(),
                  &addr) != 1) {
      return bad("IPv6 addresses go in brackets");
    }
  } else if (out.host.find_first_of(":*[]") != std::string::npos ||
             !ValidHostChars(out.host)) {
    return bad("invalid host");
  }
  return out;
}

EndpointAllowList::EndpointAllowList() {
  blocks_.push_back({0x7F000000u, 0xFF000000u});
  globs_ = {"[::1]", "localhost"};
  description_ = "127.0.0.0/8,[::1],localhost";
}

absl::StatusOr<EndpointAllowList> EndpointAllowList::Parse(
    absl::string_view entries) {
  EndpointAllowList list;
  list.blocks_.clear();
  list.globs_.clear();
  for (absl::string_view raw : absl::StrSplit(entries, ',')) {
    const absl::string_view entry = absl::StripAsciiWhitespace(raw);
    if (entry.empty()) continue;
    const size_t slash = entry.find('/');
    if (slash != absl::string_view::npos) {
      uint32_t network = 0;
      int bits = -1;
      if (!ParseIpv4(entry.substr(0, slash), &network) ||
          !absl::SimpleAtoi(entry.substr(slash + 1), &bits) || bits < 0 ||
          bits > 32) {
        return absl::InvalidArgumentError(
            absl::StrCat("worker endpoint allow-list: \"", entry,
                         "\" is not an IPv4 block such as 10.0.0.0/8"));
      }
      const uint32_t mask = bits == 0 ? 0 : ~uint32_t{0} << (32 - bits);
      list.blocks_.push_back({network & mask, mask});
    } else {
      if (!ValidHostChars(entry)) {
        return absl::InvalidArgumentError(
            absl::StrCat("worker endpoint allow-list: \"", entry,
                         "\" is not a host, address, glob or IPv4 block"));
      }
      list.globs_.push_back(absl::AsciiStrToLower(entry));
    }
  }
  if (list.blocks_.empty() && list.globs_.empty()) {
    return absl::InvalidArgumentError(
        "worker endpoint allow-list is empty; use \"*\" to allow every "
        "endpoint");
  }
  list.description_ = std::string(entries);
  return list;
}

bool EndpointAllowList::Allows(const HostPort& endpoint) const {
  uint32_t address = 0;
  if (ParseIpv4(endpoint.host, &address)) {
    for (const Block& block : blocks_) {
      if ((address & block.mask) == block.network) return true;
    }
  }
  for (const std::string& glob : globs_) {
    if (GlobMatch(glob, endpoint.host)) return true;
  }
  return false;
}

}  // namespace assistants::tool_workers
