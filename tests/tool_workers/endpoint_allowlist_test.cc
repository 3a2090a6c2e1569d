// Unit tests of the worker endpoint parser and allow-list
// (tool_workers/endpoint_allowlist.h): which "host:port" strings a worker may
// register, and which hosts each kind of allow-list entry (address, IPv4
// block, glob, "*") lets through.
#include "tool_workers/endpoint_allowlist.h"

#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/errors.h"
#include "service/core/validation.h"

namespace assistants::tool_workers {
namespace {

using ::testing::HasSubstr;

// Asserts that `status` is INVALID_ARGUMENT with `reason` naming `field`.
void ExpectFieldError(const absl::Status& status, absl::string_view reason,
                      absl::string_view field) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_EQ(ErrorReason(status), reason) << status;
  auto info = GetErrorInfo(status);
  ASSERT_TRUE(info.has_value()) << status;
  auto it = info->metadata().find("field");
  ASSERT_NE(it, info->metadata().end()) << status;
  EXPECT_EQ(it->second, field);
}

HostPort Host(const std::string& host) { return HostPort{host, 50051}; }

// --- ParseEndpoint: accepted ---

struct GoodEndpoint {
  std::string endpoint;
  std::string host;
  int port;
};

class ParseEndpointGoodTest : public ::testing::TestWithParam<GoodEndpoint> {};

TEST_P(ParseEndpointGoodTest, SplitsHostAndPort) {
  const GoodEndpoint& param = GetParam();
  auto parsed = ParseEndpoint(param.endpoint, "endpoint");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->host, param.host);
  EXPECT_EQ(parsed->port, param.port);
}

INSTANTIATE_TEST_SUITE_P(
    Endpoints, ParseEndpointGoodTest,
    ::testing::Values(GoodEndpoint{"127.0.0.1:50051", "127.0.0.1", 50051},
                      GoodEndpoint{"localhost:1", "localhost", 1},
                      GoodEndpoint{"calc.tools.svc.cluster.local:65535",
                                   "calc.tools.svc.cluster.local", 65535},
                      GoodEndpoint{"worker_1-a.example.com:8080",
                                   "worker_1-a.example.com", 8080},
                      // Host names are case-insensitive: kept lower-case.
                      GoodEndpoint{"Worker.Example.COM:443",
                                   "worker.example.com", 443},
                      // IPv6 keeps its brackets.
                      GoodEndpoint{"[::1]:50051", "[::1]", 50051},
                      GoodEndpoint{"[fd00::1:2]:9000", "[fd00::1:2]", 9000},
                      GoodEndpoint{"[2001:DB8::1]:80", "[2001:db8::1]", 80}));

// --- ParseEndpoint: refused ---

struct BadEndpoint {
  std::string name;  // test name suffix
  std::string endpoint;
  std::string reason;
  std::string why;  // part of the message
};

class ParseEndpointBadTest : public ::testing::TestWithParam<BadEndpoint> {};

TEST_P(ParseEndpointBadTest, IsInvalidArgumentNamingTheField) {
  const BadEndpoint& param = GetParam();
  auto parsed = ParseEndpoint(param.endpoint, "workers[2].endpoint");
  ASSERT_FALSE(parsed.ok()) << parsed->host << " " << parsed->port;
  ExpectFieldError(parsed.status(), param.reason, "workers[2].endpoint");
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(param.why));
}

INSTANTIATE_TEST_SUITE_P(
    Endpoints, ParseEndpointBadTest,
    ::testing::Values(
        BadEndpoint{"Empty", "", std::string(kFieldRequired), "required"},
        BadEndpoint{"NoPort", "localhost", std::string(kInvalidFormat),
                    "no port"},
        BadEndpoint{"NoHost", ":50051", std::string(kInvalidFormat), "no host"},
        BadEndpoint{"PortWithSpace", "localhost: 80",
                    std::string(kInvalidFormat), "1..65535"},
        BadEndpoint{"PortWithTrailingSpace", "localhost:80 ",
                    std::string(kInvalidFormat), "1..65535"},
        BadEndpoint{"PortWithPlus", "localhost:+80",
                    std::string(kInvalidFormat), "1..65535"},
        BadEndpoint{"PortHex", "localhost:0x50", std::string(kInvalidFormat),
                    "1..65535"},
        BadEndpoint{"PortHuge", "localhost:99999999999999999999",
                    std::string(kInvalidFormat), "1..65535"},
        BadEndpoint{"EmptyPort", "localhost:", std::string(kInvalidFormat),
                    "1..65535"},
        BadEndpoint{"PortZero", "localhost:0", std::string(kInvalidFormat),
                    "1..65535"},
        BadEndpoint{"Port65536", "localhost:65536", std::string(kInvalidFormat),
                    "1..65535"},
        BadEndpoint{"NegativePort", "localhost:-1", std::string(kInvalidFormat),
                    "1..65535"},
        BadEndpoint{"PortNotANumber", "localhost:http",
                    std::string(kInvalidFormat), "1..65535"},
        BadEndpoint{"BracketedIpv6WithoutPort", "[::1]",
                    std::string(kInvalidFormat), "1..65535"},
        BadEndpoint{"Ipv6WithoutBrackets", "::1:50051",
                    std::string(kInvalidFormat), "invalid host"},
        BadEndpoint{"UnclosedBracket", "[::1:50051",
                    std::string(kInvalidFormat), "brackets"},
        BadEndpoint{"NotAnIpv6InBrackets", "[example.com]:80",
                    std::string(kInvalidFormat), "brackets"},
        BadEndpoint{"EmptyBrackets", "[]:80", std::string(kInvalidFormat),
                    "brackets"},
        BadEndpoint{"SpaceInHost", "exa mple.com:80",
                    std::string(kInvalidFormat), "invalid host"},
        BadEndpoint{"SlashInHost", "evil.com/x:80", std::string(kInvalidFormat),
                    "invalid host"},
        BadEndpoint{"AtInHost", "user@evil.com:80", std::string(kInvalidFormat),
                    "invalid host"},
        BadEndpoint{"GlobInHost", "*.svc.cluster.local:80",
                    std::string(kInvalidFormat), "invalid host"},
        BadEndpoint{"TooLong", std::string(250, 'a') + ".com:80",
                    std::string(kInvalidFormat), "too long"}),
    [](const ::testing::TestParamInfo<BadEndpoint>& info) {
      return info.param.name;
    });

TEST(ParseEndpointTest, LengthLimitIs255) {
  // 248 + ".com" + ":80" = 255 characters fit; one more does not.
  EXPECT_TRUE(
      ParseEndpoint(std::string(248, 'a') + ".com:80", "endpoint").ok());
  EXPECT_FALSE(
      ParseEndpoint(std::string(249, 'a') + ".com:80", "endpoint").ok());
}

TEST(ParseEndpointTest, MessageQuotesTheEndpoint) {
  auto parsed = ParseEndpoint("localhost:0", "endpoint");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()),
              HasSubstr("\"localhost:0\""));
}

// --- EndpointAllowList: the default (loopback only) ---

struct AllowCase {
  std::string host;
  bool allowed;
};

class DefaultAllowListTest : public ::testing::TestWithParam<AllowCase> {};

TEST_P(DefaultAllowListTest, AllowsLoopbackOnly) {
  EXPECT_EQ(EndpointAllowList().Allows(Host(GetParam().host)),
            GetParam().allowed)
      << GetParam().host;
}

INSTANTIATE_TEST_SUITE_P(
    Hosts, DefaultAllowListTest,
    ::testing::Values(
        AllowCase{"127.0.0.1", true}, AllowCase{"127.5.5.5", true},
        AllowCase{"127.255.255.255", true}, AllowCase{"localhost", true},
        AllowCase{"[::1]", true}, AllowCase{"10.0.0.1", false},
        AllowCase{"128.0.0.1", false}, AllowCase{"126.255.255.255", false},
        AllowCase{"example.com", false},
        AllowCase{"localhost.example.com", false},
        AllowCase{"127.0.0.1.nip.io", false}, AllowCase{"[::2]", false}));

TEST(EndpointAllowListTest, DefaultDescriptionNamesLoopback) {
  EXPECT_EQ(EndpointAllowList().description(), "127.0.0.0/8,[::1],localhost");
}

TEST(EndpointAllowListTest, WorksWithParsedEndpoints) {
  const EndpointAllowList list;
  auto v6 = ParseEndpoint("[::1]:50051", "endpoint");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_TRUE(list.Allows(*v6));
  auto upper = ParseEndpoint("LOCALHOST:50051", "endpoint");
  ASSERT_TRUE(upper.ok()) << upper.status();
  EXPECT_TRUE(list.Allows(*upper));
}

// --- EndpointAllowList::Parse ---

struct ListCase {
  std::string entries;
  std::string host;
  bool allowed;
};

class ParsedAllowListTest : public ::testing::TestWithParam<ListCase> {};

TEST_P(ParsedAllowListTest, Allows) {
  const ListCase& param = GetParam();
  auto list = EndpointAllowList::Parse(param.entries);
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->Allows(Host(param.host)), param.allowed)
      << param.entries << " / " << param.host;
}

INSTANTIATE_TEST_SUITE_P(
    Entries, ParsedAllowListTest,
    ::testing::Values(
        // An IPv4 block.
        ListCase{"10.0.0.0/8", "10.0.0.1", true},
        ListCase{"10.0.0.0/8", "10.255.255.255", true},
        ListCase{"10.0.0.0/8", "11.0.0.1", false},
        ListCase{"10.0.0.0/8", "9.255.255.255", false},
        // The block replaces the default: loopback is no longer allowed.
        ListCase{"10.0.0.0/8", "127.0.0.1", false},
        ListCase{"10.0.0.0/8", "localhost", false},
        // A name is not an address, whatever it looks like.
        ListCase{"10.0.0.0/8", "10.0.0.1.nip.io", false},
        // Host bits in the entry are ignored.
        ListCase{"192.168.1.77/24", "192.168.1.3", true},
        ListCase{"192.168.1.77/24", "192.168.2.3", false},
        ListCase{"172.16.0.0/12", "172.31.0.1", true},
        ListCase{"172.16.0.0/12", "172.32.0.1", false},
        ListCase{"10.1.2.3/32", "10.1.2.3", true},
        ListCase{"10.1.2.3/32", "10.1.2.4", false},
        ListCase{"0.0.0.0/0", "8.8.8.8", true},
        ListCase{"0.0.0.0/0", "example.com", false},
        // One address.
        ListCase{"10.1.2.3", "10.1.2.3", true},
        ListCase{"10.1.2.3", "10.1.2.30", false},
        ListCase{"[::1]", "[::1]", true}, ListCase{"[::1]", "127.0.0.1", false},
        // Host name globs.
        ListCase{"*.svc.cluster.local", "a.b.svc.cluster.local", true},
        ListCase{"*.svc.cluster.local", "calc.svc.cluster.local", true},
        ListCase{"*.svc.cluster.local", "svc.cluster.local", false},
        ListCase{"*.svc.cluster.local", "svc.cluster.local.evil.com", false},
        ListCase{"*.svc.cluster.local", "a.svc.cluster.local.evil.com", false},
        ListCase{"*.svc.cluster.local", "evilsvc.cluster.local", false},
        ListCase{"*.SVC.Cluster.Local", "a.svc.cluster.local", true},
        ListCase{"worker-*.internal", "worker-7.internal", true},
        ListCase{"worker-*.internal", "db.internal", false},
        ListCase{"calc.example.com", "calc.example.com", true},
        ListCase{"calc.example.com", "xcalc.example.com", false},
        // Everything.
        ListCase{"*", "example.com", true}, ListCase{"*", "8.8.8.8", true},
        ListCase{"*", "[2001:db8::1]", true},
        // Several entries, with spaces and empty items.
        ListCase{" 10.0.0.0/8 , *.svc.cluster.local,,localhost ", "10.9.9.9",
                 true},
        ListCase{" 10.0.0.0/8 , *.svc.cluster.local,,localhost ",
                 "x.svc.cluster.local", true},
        ListCase{" 10.0.0.0/8 , *.svc.cluster.local,,localhost ", "localhost",
                 true},
        ListCase{" 10.0.0.0/8 , *.svc.cluster.local,,localhost ", "example.com",
                 false}));

TEST(EndpointAllowListTest, DescriptionIsTheConfiguredText) {
  auto list = EndpointAllowList::Parse("10.0.0.0/8,*.svc.cluster.local");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->description(), "10.0.0.0/8,*.svc.cluster.local");
}

class BadAllowListTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BadAllowListTest, NamesTheBadEntry) {
  const std::string& entry = GetParam();
  auto list = EndpointAllowList::Parse("localhost," + entry + ",10.0.0.0/8");
  ASSERT_FALSE(list.ok()) << entry;
  EXPECT_EQ(list.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(list.status().message()),
              HasSubstr("\"" + entry + "\""));
}

INSTANTIATE_TEST_SUITE_P(Entries, BadAllowListTest,
                         ::testing::Values("10.0.0.0/33", "10.0.0.0/-1",
                                           "10.0.0.0/", "10.0.0/8",
                                           "example.com/8", "::1/128", "a b",
                                           "evil.com:80/x", "a@b", "a;b"));

TEST(EndpointAllowListTest, EmptyListIsRefused) {
  for (const char* entries : {"", " ", ",", " , ,"}) {
    SCOPED_TRACE(entries);
    auto list = EndpointAllowList::Parse(entries);
    ASSERT_FALSE(list.ok());
    EXPECT_EQ(list.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(list.status().message()), HasSubstr("empty"));
  }
}

}  // namespace
}  // namespace assistants::tool_workers
