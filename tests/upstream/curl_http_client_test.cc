// Tests of CurlHttpClient against TestHttpServer on 127.0.0.1: delivery,
// streaming, connection reuse, every timeout, the retry policy, cancellation,
// shutdown and secret hygiene. Backoffs are tiny and jitter is pinned to 1.0
// so the suite runs in seconds; waits are for completion only, with generous
// limits.
#include "upstream/http/curl_http_client.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/errors.h"
#include "tests/upstream/test_http_server.h"

namespace assistants::upstream {
namespace {

using std::chrono::milliseconds;
using testing::RecordedRequest;
using testing::TestHttpServer;
using testing::TestResponse;

constexpr absl::Duration kCompletionTimeout = absl::Seconds(20);

// Records every callback; thread-safe so tests can inspect it while running.
class RecordingHandler : public HttpStreamHandler {
 public:
  void OnHeaders(const HttpResponseHead& head) override {
    absl::MutexLock lock(&mu_);
    head_ = head;
    ++headers_calls_;
  }

  void OnBody(absl::string_view chunk) override {
    std::function<void(absl::string_view)> hook;
    {
      absl::MutexLock lock(&mu_);
      body_.append(chunk.data(), chunk.size());
      chunks_.emplace_back(chunk);
      if (completions_ > 0) body_after_complete_ = true;
      hook = on_body_;
    }
    if (hook) hook(chunk);
  }

  void OnComplete(const absl::Status& status,
                  const HttpTransferStats& stats) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    stats_ = stats;
    ++completions_;
  }

  void set_on_body(std::function<void(absl::string_view)> hook) {
    absl::MutexLock lock(&mu_);
    on_body_ = std::move(hook);
  }

  // True once OnComplete ran (within the timeout).
  bool WaitDone(absl::Duration timeout = kCompletionTimeout) {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return completions_ > 0;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  }

  bool WaitBody(absl::Duration timeout = kCompletionTimeout) {
    absl::MutexLock lock(&mu_);
    auto some = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !body_.empty() || completions_ > 0;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&some), timeout) &&
           !body_.empty();
  }

  absl::Status status() const {
    absl::MutexLock lock(&mu_);
    return status_;
  }
  HttpTransferStats stats() const {
    absl::MutexLock lock(&mu_);
    return stats_;
  }
  HttpResponseHead head() const {
    absl::MutexLock lock(&mu_);
    return head_;
  }
  std::string body() const {
    absl::MutexLock lock(&mu_);
    return body_;
  }
  std::vector<std::string> chunks() const {
    absl::MutexLock lock(&mu_);
    return chunks_;
  }
  int headers_calls() const {
    absl::MutexLock lock(&mu_);
    return headers_calls_;
  }
  int completions() const {
    absl::MutexLock lock(&mu_);
    return completions_;
  }
  bool body_after_complete() const {
    absl::MutexLock lock(&mu_);
    return body_after_complete_;
  }

 private:
  mutable absl::Mutex mu_;
  HttpResponseHead head_ ABSL_GUARDED_BY(mu_);
  std::string body_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> chunks_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  HttpTransferStats stats_ ABSL_GUARDED_BY(mu_);
  int headers_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int completions_ ABSL_GUARDED_BY(mu_) = 0;
  bool body_after_complete_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void(absl::string_view)> on_body_ ABSL_GUARDED_BY(mu_);
};

CurlHttpClientOptions TestOptions() {
  CurlHttpClientOptions options;
  options.jitter = [] { return 1.0; };
  return options;
}

HttpRequest Request(const std::string& method, const std::string& url) {
  HttpRequest request;
  request.method = method;
  request.url = url;
  request.retry.initial_backoff = milliseconds(10);
  request.retry.max_backoff = milliseconds(50);
  request.timeouts.connect = milliseconds(5000);
  request.timeouts.first_byte = milliseconds(10000);
  request.timeouts.idle = milliseconds(10000);
  request.timeouts.total = milliseconds(30000);
  return request;
}

std::string TimeoutKind(const absl::Status& status) {
  auto info = GetErrorInfo(status);
  if (!info.has_value()) return "";
  auto it = info->metadata().find("timeout");
  return it == info->metadata().end() ? "" : it->second;
}

TestResponse Chunked(std::vector<std::string> chunks, milliseconds delay) {
  TestResponse response;
  response.headers = {{"Content-Type", "text/event-stream"}};
  response.chunks = std::move(chunks);
  response.chunk_delay = delay;
  return response;
}

TestResponse WithStatus(
    int status, std::string body,
    std::vector<std::pair<std::string, std::string>> headers = {}) {
  TestResponse response;
  response.status = status;
  response.body = std::move(body);
  response.headers = std::move(headers);
  return response;
}

class CurlHttpClientTest : public ::testing::Test {
 protected:
  std::shared_ptr<RecordingHandler> Run(HttpRequest request) {
    auto handler = std::make_shared<RecordingHandler>();
    client_->Start(std::move(request), handler);
    EXPECT_TRUE(handler->WaitDone());
    return handler;
  }

  TestHttpServer server_;
  std::unique_ptr<CurlHttpClient> client_ =
      std::make_unique<CurlHttpClient>(TestOptions());
};

TEST_F(CurlHttpClientTest, SimpleGet) {
  server_.SetResponse("/hello", WithStatus(200, "hello world",
                                           {{"X-Test", "a"}, {"X-Test", "b"}}));
  auto h = Run(Request("GET", server_.Url("/hello?x=1")));
  EXPECT_TRUE(h->status().ok()) << h->status();
  EXPECT_EQ(h->head().status, 200);
  // Lower-cased names; the last value of a repeated header wins.
  EXPECT_EQ(h->head().headers.at("x-test"), "b");
  EXPECT_EQ(h->body(), "hello world");
  EXPECT_EQ(h->headers_calls(), 1);
  EXPECT_EQ(h->completions(), 1);
  EXPECT_EQ(h->stats().attempts, 1);
  EXPECT_GT(h->stats().total_time.count(), 0);
  ASSERT_EQ(server_.received().size(), 1u);
  EXPECT_EQ(server_.received()[0].method, "GET");
  EXPECT_EQ(server_.received()[0].target, "/hello?x=1");
}

TEST_F(CurlHttpClientTest, PostSendsBodyAndHeadersWithoutExpect) {
  std::string body(200'000, 'x');  // big enough to trigger 100-continue
  HttpRequest request = Request("POST", server_.Url("/post"));
  request.body = body;
  request.headers = {{"Content-Type", "application/json"},
                     {"Authorization", "Bearer abc"}};
  auto h = Run(request);
  EXPECT_TRUE(h->status().ok()) << h->status();
  auto received = server_.received();
  ASSERT_EQ(received.size(), 1u);
  const RecordedRequest& got = received[0];
  EXPECT_EQ(got.method, "POST");
  EXPECT_EQ(got.body, body);
  EXPECT_EQ(got.Header("content-type"), "application/json");
  EXPECT_EQ(got.Header("authorization"), "Bearer abc");
  EXPECT_EQ(got.Header("expect"), "");
}

TEST_F(CurlHttpClientTest, OtherMethods) {
  HttpRequest del = Request("DELETE", server_.Url("/thing"));
  EXPECT_TRUE(Run(del)->status().ok());
  HttpRequest put = Request("PUT", server_.Url("/thing"));
  put.body = "{}";
  EXPECT_TRUE(Run(put)->status().ok());
  auto got = server_.received();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].method, "DELETE");
  EXPECT_EQ(got[1].method, "PUT");
  EXPECT_EQ(got[1].body, "{}");
}

TEST_F(CurlHttpClientTest, StreamedChunksArriveInOrderAndIncrementally) {
  TestResponse response =
      Chunked({"data: 1\n\n", "data: 2\n\n", "data: 3\n\n", "data: 4\n\n"},
              milliseconds(1));
  // Chunk 1 onwards is held until the first one reached the handler.
  response.gate_before_chunk = 1;
  server_.SetResponse("/stream", response);
  auto h = std::make_shared<RecordingHandler>();
  client_->Start(Request("GET", server_.Url("/stream")), h);
  ASSERT_TRUE(h->WaitBody());
  EXPECT_EQ(server_.chunks_sent(), 1);
  EXPECT_EQ(h->headers_calls(), 1);
  EXPECT_EQ(h->head().headers.at("content-type"), "text/event-stream");
  server_.OpenGate();
  ASSERT_TRUE(h->WaitDone());
  EXPECT_TRUE(h->status().ok()) << h->status();
  EXPECT_EQ(h->body(), "data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n");
  EXPECT_EQ(h->chunks().front(), "data: 1\n\n");
}

// Minimal gzip writer using stored (uncompressed) deflate blocks, so the
// test needs no zlib: each piece is a separate block that a streaming
// decoder can emit as soon as it arrives.
class StoredGzip {
 public:
  std::string Header() const {
    return std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff", 10);
  }
  std::string Block(absl::string_view data) {
    for (unsigned char c : data) {
      crc_ ^= c;
      for (int k = 0; k < 8; ++k)
        crc_ = (crc_ >> 1) ^ (0xEDB88320u & -(crc_ & 1));
    }
    size_ += static_cast<uint32_t>(data.size());
    const uint16_t len = static_cast<uint16_t>(data.size());
    std::string out(1, '\x00');  // BFINAL=0, BTYPE=00 (stored)
    Append16(out, len);
    Append16(out, static_cast<uint16_t>(~len));
    out.append(data.data(), data.size());
    return out;
  }
  std::string Finish() const {
    std::string out("\x01\x00\x00\xff\xff", 5);  // empty final block
    Append32(out, ~crc_);
    Append32(out, size_);
    return out;
  }

 private:
  static void Append16(std::string& out, uint16_t v) {
    out.push_back(static_cast<char>(v & 0xff));
    out.push_back(static_cast<char>(v >> 8));
  }
  static void Append32(std::string& out, uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
  }
  uint32_t crc_ = 0xFFFFFFFFu;
  uint32_t size_ = 0;
};

// Compressed event streams must not be buffered by the decoder.
TEST_F(CurlHttpClientTest, GzipEventStreamIsDecodedIncrementally) {
  StoredGzip gz;
  std::string first = gz.Header() + gz.Block("data: 1\n\n");
  std::string second = gz.Block("data: 2\n\n");
  TestResponse response =
      Chunked({first, second, gz.Finish()}, milliseconds(1));
  response.headers.emplace_back("Content-Encoding", "gzip");
  response.gate_before_chunk = 1;
  server_.SetResponse("/gz", response);
  auto h = std::make_shared<RecordingHandler>();
  client_->Start(Request("GET", server_.Url("/gz")), h);
  ASSERT_TRUE(h->WaitBody());
  EXPECT_EQ(h->body(), "data: 1\n\n");
  EXPECT_EQ(server_.chunks_sent(), 1);
  server_.OpenGate();
  ASSERT_TRUE(h->WaitDone());
  EXPECT_TRUE(h->status().ok()) << h->status();
  EXPECT_EQ(h->body(), "data: 1\n\ndata: 2\n\n");
  EXPECT_TRUE(absl::StrContains(server_.received()[0].Header("accept-encoding"),
                                "gzip"));
}

TEST_F(CurlHttpClientTest, ManyConcurrentRequestsShareFewConnections) {
  CurlHttpClientOptions options = TestOptions();
  options.max_connections_per_host = 4;
  client_ = std::make_unique<CurlHttpClient>(options);
  server_.SetResponse("/c", Chunked({"x", "y"}, milliseconds(1)));
  std::vector<std::shared_ptr<RecordingHandler>> handlers;
  for (int i = 0; i < 200; ++i) {
    handlers.push_back(std::make_shared<RecordingHandler>());
    client_->Start(Request("GET", server_.Url("/c")), handlers.back());
  }
  for (auto& h : handlers) {
    ASSERT_TRUE(h->WaitDone());
    EXPECT_TRUE(h->status().ok()) << h->status();
    EXPECT_EQ(h->body(), "xy");
  }
  EXPECT_EQ(server_.requests(), 200);
  EXPECT_LE(server_.connections_accepted(), 4);
}

TEST_F(CurlHttpClientTest, SequentialRequestsReuseOneConnection) {
  for (int i = 0; i < 50; ++i) {
    auto h = Run(Request("GET", server_.Url("/seq")));
    ASSERT_TRUE(h->status().ok()) << h->status();
    EXPECT_EQ(h->stats().connection_reused, i > 0) << i;
  }
  EXPECT_EQ(server_.connections_accepted(), 1);
  EXPECT_EQ(server_.requests(), 50);
}

// A listening socket whose accept queue is full: the kernel drops further
// SYNs, so connecting to it hangs like an unreachable host would.
class BlackholeListener {
 public:
  BlackholeListener() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 0);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    // Fills the (backlog + 1) accept queue; the next SYN is dropped.
    filler_ = socket(AF_INET, SOCK_STREAM, 0);
    connect(filler_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  }
  ~BlackholeListener() {
    close(filler_);
    close(fd_);
  }
  std::string Url() const {
    return absl::StrCat("http://127.0.0.1:", port_, "/blackhole");
  }

 private:
  int fd_ = -1;
  int filler_ = -1;
  int port_ = 0;
};

TEST_F(CurlHttpClientTest, ConnectTimeoutIsRetriedThenReported) {
  BlackholeListener blackhole;
  HttpRequest request = Request("GET", blackhole.Url());
  request.timeouts.connect = milliseconds(200);
  request.retry.max_attempts = 2;
  auto h = Run(request);
  EXPECT_EQ(h->status().code(), absl::StatusCode::kDeadlineExceeded)
      << h->status();
  EXPECT_EQ(ErrorReason(h->status()), "UPSTREAM_TIMEOUT");
  EXPECT_EQ(TimeoutKind(h->status()), "connect");
  EXPECT_EQ(h->stats().attempts, 2);
  EXPECT_EQ(h->headers_calls(), 0);
}

TEST_F(CurlHttpClientTest, FirstByteTimeout) {
  TestResponse stall;
  stall.action = TestResponse::Action::kStall;
  server_.SetResponse("/stall", stall);
  HttpRequest request = Request("GET", server_.Url("/stall"));
  request.timeouts.first_byte = milliseconds(200);
  request.retry.max_attempts = 1;
  auto start = std::chrono::steady_clock::now();
  auto h = Run(request);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(190));
  EXPECT_EQ(h->status().code(), absl::StatusCode::kDeadlineExceeded)
      << h->status();
  EXPECT_EQ(ErrorReason(h->status()), "UPSTREAM_TIMEOUT");
  EXPECT_EQ(TimeoutKind(h->status()), "first_byte");
  EXPECT_EQ(h->headers_calls(), 0);
}

TEST_F(CurlHttpClientTest, FirstByteTimeoutIsRetried) {
  TestResponse stall;
  stall.action = TestResponse::Action::kStall;
  server_.QueueResponse("/slow", stall);
  HttpRequest request = Request("GET", server_.Url("/slow"));
  request.timeouts.first_byte = milliseconds(200);
  auto h = Run(request);
  EXPECT_TRUE(h->status().ok()) << h->status();
  EXPECT_EQ(h->body(), "ok");
  EXPECT_EQ(h->stats().attempts, 2);
}

TEST_F(CurlHttpClientTest, IdleTimeoutMidStreamIsNotRetried) {
  TestResponse response = Chunked({"a", "b"}, milliseconds(1));
  response.gate_before_chunk = 1;  // never opened: the stream stalls
  server_.SetResponse("/idle", response);
  HttpRequest request = Request("GET", server_.Url("/idle"));
  request.timeouts.idle = milliseconds(200);
  auto h = Run(request);
  EXPECT_EQ(h->status().code(), absl::StatusCode::kDeadlineExceeded)
      << h->status();
  EXPECT_EQ(TimeoutKind(h->status()), "idle");
  EXPECT_EQ(h->headers_calls(), 1);
  EXPECT_EQ(h->body(), "a");
  EXPECT_EQ(h->stats().attempts, 1);
  EXPECT_EQ(server_.requests(), 1);
}

TEST_F(CurlHttpClientTest, TotalTimeout) {
  server_.SetResponse(
      "/long", Chunked(std::vector<std::string>(1000, "z"), milliseconds(10)));
  HttpRequest request = Request("GET", server_.Url("/long"));
  request.timeouts.total = milliseconds(300);
  auto h = Run(request);
  EXPECT_EQ(h->status().code(), absl::StatusCode::kDeadlineExceeded)
      << h->status();
  EXPECT_EQ(TimeoutKind(h->status()), "total");
  EXPECT_EQ(h->headers_calls(), 1);
  EXPECT_LT(h->body().size(), 1000u);
}

// With the pool exhausted a request waits inside libcurl, which enforces no
// deadline there; the total limit still applies.
TEST_F(CurlHttpClientTest, TotalTimeoutWhileWaitingForAPooledConnection) {
  CurlHttpClientOptions options = TestOptions();
  options.max_connections_per_host = 1;
  client_ = std::make_unique<CurlHttpClient>(options);
  TestResponse stall;
  stall.action = TestResponse::Action::kStall;
  server_.SetResponse("/stall", stall);
  auto blocker = std::make_shared<RecordingHandler>();
  client_->Start(Request("GET", server_.Url("/stall")), blocker);
  ASSERT_TRUE(TestHttpServer::WaitFor([&] { return server_.requests() == 1; },
                                      milliseconds(10000)));
  HttpRequest request = Request("GET", server_.Url("/queued"));
  request.timeouts.total = milliseconds(300);
  request.retry.max_attempts = 1;
  auto h = Run(request);
  EXPECT_EQ(h->status().code(), absl::StatusCode::kDeadlineExceeded)
      << h->status();
  EXPECT_EQ(TimeoutKind(h->status()), "total");
  EXPECT_FALSE(h->stats().connection_reused);
  EXPECT_EQ(server_.connections_accepted(), 1);
}

TEST_F(CurlHttpClientTest, ServerErrorThenSuccessDeliversOnlyTheSuccess) {
  server_.QueueResponse("/r", WithStatus(500, "boom"));
  server_.SetResponse("/r", WithStatus(200, "fine"));
  HttpRequest request = Request("POST", server_.Url("/r"));
  request.body = "{\"q\":1}";
  auto h = Run(request);
  EXPECT_TRUE(h->status().ok()) << h->status();
  EXPECT_EQ(h->headers_calls(), 1);
  EXPECT_EQ(h->head().status, 200);
  EXPECT_EQ(h->body(), "fine");
  EXPECT_EQ(h->stats().attempts, 2);
  auto got = server_.received();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].body, "{\"q\":1}");
  // The error body was drained, so the connection stayed usable.
  EXPECT_EQ(server_.connections_accepted(), 1);
}

TEST_F(CurlHttpClientTest, RetryAfterSecondsIsHonoured) {
  server_.QueueResponse("/ra",
                        WithStatus(429, "slow down", {{"Retry-After", "1"}}));
  HttpRequest request = Request("GET", server_.Url("/ra"));
  request.retry.max_backoff = milliseconds(1000);
  auto h = Run(request);
  EXPECT_TRUE(h->status().ok()) << h->status();
  EXPECT_EQ(h->stats().attempts, 2);
  auto got = server_.received();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_GE(got[1].received - got[0].received, milliseconds(980));
}

TEST_F(CurlHttpClientTest, RetryAfterMsIsHonouredAndCapped) {
  server_.QueueResponse("/ms",
                        WithStatus(503, "", {{"retry-after-ms", "300"}}));
  // Asks for far more than 4 * max_backoff (400 ms): capped.
  server_.QueueResponse("/ms", WithStatus(503, "", {{"Retry-After", "600"}}));
  HttpRequest request = Request("GET", server_.Url("/ms"));
  request.retry.max_backoff = milliseconds(100);
  auto h = Run(request);
  EXPECT_TRUE(h->status().ok()) << h->status();
  EXPECT_EQ(h->stats().attempts, 3);
  auto got = server_.received();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_GE(got[1].received - got[0].received, milliseconds(290));
  EXPECT_GE(got[2].received - got[1].received, milliseconds(390));
  EXPECT_LT(got[2].received - got[1].received, milliseconds(10'000));
}

TEST_F(CurlHttpClientTest, ExhaustedAttemptsDeliverTheLastErrorResponse) {
  server_.SetResponse("/busy",
                      WithStatus(503, "{\"error\":\"overloaded\"}",
                                 {{"Content-Type", "application/json"}}));
  auto h = Run(Request("GET", server_.Url("/busy")));
  EXPECT_TRUE(h->status().ok()) << h->status();
  EXPECT_EQ(h->headers_calls(), 1);
  EXPECT_EQ(h->head().status, 503);
  EXPECT_EQ(h->body(), "{\"error\":\"overloaded\"}");
  EXPECT_EQ(h->stats().attempts, 3);
  EXPECT_EQ(server_.requests(), 3);
}

TEST_F(CurlHttpClientTest, BackoffIsExponential) {
  server_.SetResponse("/exp", WithStatus(500, ""));
  HttpRequest request = Request("GET", server_.Url("/exp"));
  request.retry.max_attempts = 4;
  request.retry.initial_backoff = milliseconds(100);
  request.retry.max_backoff = milliseconds(250);
  auto h = Run(request);
  auto got = server_.received();
  ASSERT_EQ(got.size(), 4u);
  // 100, 200, then capped at 250 ms.
  EXPECT_GE(got[1].received - got[0].received, milliseconds(95));
  EXPECT_GE(got[2].received - got[1].received, milliseconds(195));
  EXPECT_GE(got[3].received - got[2].received, milliseconds(245));
}

TEST_F(CurlHttpClientTest, NonRetryableStatusIsDeliveredAtOnce) {
  server_.SetResponse("/bad", WithStatus(400, "bad request"));
  auto h = Run(Request("GET", server_.Url("/bad")));
  EXPECT_TRUE(h->status().ok());
  EXPECT_EQ(h->head().status, 400);
  EXPECT_EQ(h->stats().attempts, 1);
}

TEST_F(CurlHttpClientTest, MaxTotalStopsRetrying) {
  server_.SetResponse("/mt", WithStatus(500, "again"));
  HttpRequest request = Request("GET", server_.Url("/mt"));
  request.retry.max_attempts = 10;
  request.retry.initial_backoff = milliseconds(200);
  request.retry.max_backoff = milliseconds(200);
  request.retry.max_total = milliseconds(500);
  auto h = Run(request);
  EXPECT_EQ(h->head().status, 500);
  EXPECT_EQ(h->body(), "again");
  // Retries start at ~200 and ~400 ms; one at ~600 ms would be too late.
  EXPECT_EQ(h->stats().attempts, 3);
}

TEST_F(CurlHttpClientTest, ConnectionDroppedBeforeResponseIsRetried) {
  TestResponse reset;
  reset.action = TestResponse::Action::kResetBeforeHead;
  server_.QueueResponse("/drop", reset);
  HttpRequest request = Request("POST", server_.Url("/drop"));
  request.body = "payload";
  auto h = Run(request);
  EXPECT_TRUE(h->status().ok()) << h->status();
  EXPECT_EQ(h->body(), "ok");
  EXPECT_EQ(h->stats().attempts, 2);
  EXPECT_EQ(h->headers_calls(), 1);
  EXPECT_EQ(server_.connections_accepted(), 2);
}

TEST_F(CurlHttpClientTest, ConnectionDroppedAfterBodyBytesIsNotRetried) {
  TestResponse response = Chunked({"part1", "part2"}, milliseconds(0));
  response.action = TestResponse::Action::kResetMidBody;
  response.reset_after_chunks = 1;
  server_.SetResponse("/mid", response);
  auto h = Run(Request("GET", server_.Url("/mid")));
  EXPECT_EQ(h->status().code(), absl::StatusCode::kUnavailable) << h->status();
  EXPECT_EQ(ErrorReason(h->status()), "UPSTREAM_UNREACHABLE");
  EXPECT_EQ(h->body(), "part1");
  EXPECT_EQ(h->stats().attempts, 1);
  EXPECT_EQ(server_.requests(), 1);
}

TEST_F(CurlHttpClientTest, ConnectionRefusedIsUnreachable) {
  // A port that was just free: nothing listens there.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  HttpRequest request = Request(
      "GET", absl::StrCat("http://127.0.0.1:", ntohs(addr.sin_port), "/x"));
  request.retry.max_attempts = 2;
  auto h = Run(request);
  EXPECT_EQ(h->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorReason(h->status()), "UPSTREAM_UNREACHABLE");
  EXPECT_TRUE(absl::StrContains(h->status().message(), "GET http://127.0.0.1"))
      << h->status();
  EXPECT_EQ(h->stats().attempts, 2);
}

TEST_F(CurlHttpClientTest, CancelMidStreamFromAnotherThread) {
  server_.SetResponse(
      "/forever",
      Chunked(std::vector<std::string>(10'000, "tick\n"), milliseconds(5)));
  auto h = std::make_shared<RecordingHandler>();
  HttpClient::RequestId id =
      client_->Start(Request("GET", server_.Url("/forever")), h);
  ASSERT_TRUE(h->WaitBody());
  std::thread canceller([&] { client_->Cancel(id); });
  canceller.join();
  ASSERT_TRUE(h->WaitDone());
  EXPECT_EQ(h->status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(ErrorReason(h->status()), "UPSTREAM_CANCELLED");
  // The server notices: its connection is closed.
  EXPECT_TRUE(TestHttpServer::WaitFor(
      [&] { return server_.connections_closed() == 1; }, milliseconds(10000)));
  client_->Cancel(id);  // finished ids are ignored
  client_.reset();      // flushes the loop
  EXPECT_EQ(h->completions(), 1);
  EXPECT_FALSE(h->body_after_complete());
}

TEST_F(CurlHttpClientTest, CancelFromInsideAHandler) {
  server_.SetResponse(
      "/forever",
      Chunked(std::vector<std::string>(10'000, "tick\n"), milliseconds(2)));
  auto h = std::make_shared<RecordingHandler>();
  std::atomic<HttpClient::RequestId> id{0};
  std::atomic<int> bodies{0};
  h->set_on_body([&](absl::string_view) {
    if (bodies.fetch_add(1) == 2) client_->Cancel(id.load());
  });
  id = client_->Start(Request("GET", server_.Url("/forever")), h);
  ASSERT_TRUE(h->WaitDone());
  EXPECT_EQ(h->status().code(), absl::StatusCode::kCancelled);
  client_.reset();
  EXPECT_EQ(h->completions(), 1);
  // Nothing is delivered once Cancel was called.
  EXPECT_EQ(bodies.load(), 3);
}

TEST_F(CurlHttpClientTest, CancelWhileWaitingForRetry) {
  server_.SetResponse("/wait", WithStatus(503, "later"));
  HttpRequest request = Request("GET", server_.Url("/wait"));
  request.retry.initial_backoff = milliseconds(60'000);
  request.retry.max_backoff = milliseconds(60'000);
  request.retry.max_total = milliseconds(600'000);
  auto h = std::make_shared<RecordingHandler>();
  auto start = std::chrono::steady_clock::now();
  HttpClient::RequestId id = client_->Start(request, h);
  ASSERT_TRUE(TestHttpServer::WaitFor([&] { return server_.requests() == 1; },
                                      milliseconds(10000)));
  client_->Cancel(id);
  ASSERT_TRUE(h->WaitDone());
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(30'000));
  EXPECT_EQ(h->status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(h->headers_calls(), 0);
  EXPECT_EQ(h->stats().attempts, 1);
  EXPECT_EQ(server_.requests(), 1);
}

TEST_F(CurlHttpClientTest, DestructorCancelsTransfersInFlight) {
  TestResponse stall;
  stall.action = TestResponse::Action::kStall;
  server_.SetResponse("/stall", stall);
  server_.SetResponse("/stream", Chunked(std::vector<std::string>(10'000, "s"),
                                         milliseconds(5)));
  std::vector<std::shared_ptr<RecordingHandler>> handlers;
  for (int i = 0; i < 6; ++i) {
    handlers.push_back(std::make_shared<RecordingHandler>());
    client_->Start(Request("GET", server_.Url(i % 2 ? "/stall" : "/stream")),
                   handlers.back());
  }
  ASSERT_TRUE(TestHttpServer::WaitFor([&] { return server_.requests() == 6; },
                                      milliseconds(10000)));
  client_.reset();
  for (auto& h : handlers) {
    EXPECT_EQ(h->completions(), 1);
    EXPECT_EQ(h->status().code(), absl::StatusCode::kCancelled);
  }
}

TEST_F(CurlHttpClientTest, ErrorsNeverContainSecrets) {
  const std::string kToken = "sk-test-SECRET-xyzzy-42";
  const std::string kApiKey = "topsecret-api-key-99";
  auto with_secrets = [&](HttpRequest request) {
    request.headers = {{"Authorization", "Bearer " + kToken},
                       {"X-Api-Key", kApiKey}};
    request.secret_headers = {"x-api-key"};
    request.retry.max_attempts = 1;
    return request;
  };
  TestResponse stall;
  stall.action = TestResponse::Action::kStall;
  server_.SetResponse("/stall", stall);
  TestResponse mid = Chunked({"a", "b"}, milliseconds(0));
  mid.action = TestResponse::Action::kResetMidBody;
  mid.reset_after_chunks = 1;
  server_.SetResponse("/mid", mid);
  TestResponse reset;
  reset.action = TestResponse::Action::kResetBeforeHead;
  server_.SetResponse("/reset", reset);
  BlackholeListener blackhole;

  std::vector<absl::Status> statuses;
  HttpRequest first_byte = with_secrets(Request("GET", server_.Url("/stall")));
  first_byte.timeouts.first_byte = milliseconds(100);
  statuses.push_back(Run(first_byte)->status());
  HttpRequest connect = with_secrets(Request("GET", blackhole.Url()));
  connect.timeouts.connect = milliseconds(100);
  statuses.push_back(Run(connect)->status());
  statuses.push_back(
      Run(with_secrets(Request("GET", server_.Url("/mid"))))->status());
  statuses.push_back(
      Run(with_secrets(Request("POST", server_.Url("/reset"))))->status());
  statuses.push_back(
      Run(with_secrets(Request("GET", "http://127.0.0.1:1/refused")))
          ->status());
  statuses.push_back(
      Run(with_secrets(Request("GET", "notascheme://x/y")))->status());
  auto cancelled = std::make_shared<RecordingHandler>();
  client_->Cancel(client_->Start(
      with_secrets(Request("GET", server_.Url("/stall"))), cancelled));
  ASSERT_TRUE(cancelled->WaitDone());
  statuses.push_back(cancelled->status());

  ASSERT_EQ(server_.received().front().Header("authorization"),
            "Bearer " + kToken);
  for (const absl::Status& status : statuses) {
    EXPECT_FALSE(status.ok());
    std::string all =
        status.ToString(absl::StatusToStringMode::kWithEverything);
    EXPECT_FALSE(absl::StrContains(all, "xyzzy")) << all;
    EXPECT_FALSE(absl::StrContains(all, kApiKey)) << all;
  }
}

// Rough throughput figures; run with --gtest_also_run_disabled_tests.
TEST_F(CurlHttpClientTest, DISABLED_Throughput) {
  constexpr int kRequests = 5000;
  auto start = std::chrono::steady_clock::now();
  std::clock_t cpu_start = std::clock();
  for (int i = 0; i < kRequests; ++i) {
    auto h = Run(Request("GET", server_.Url("/small")));
    ASSERT_TRUE(h->status().ok());
  }
  double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  double cpu = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  std::printf(
      "sequential keep-alive: %.0f requests/s, %.1f us CPU/request "
      "(client+server+test), %d connections\n",
      kRequests / secs, cpu * 1e6 / kRequests, server_.connections_accepted());

  constexpr int kChunks = 500'000;
  server_.SetResponse(
      "/big", Chunked(std::vector<std::string>(
                          kChunks,
                          "data: {\"type\":\"response.output_text.delta\","
                          "\"delta\":\"hello\"}\n\n"),
                      milliseconds(0)));
  class Counter : public HttpStreamHandler {
   public:
    void OnHeaders(const HttpResponseHead&) override {}
    void OnBody(absl::string_view chunk) override {
      ++chunks;
      bytes += chunk.size();
    }
    void OnComplete(const absl::Status& s, const HttpTransferStats&) override {
      status = s;
      done.store(true);
    }
    int64_t chunks = 0;
    int64_t bytes = 0;
    absl::Status status;
    std::atomic<bool> done{false};
  };
  auto counter = std::make_shared<Counter>();
  start = std::chrono::steady_clock::now();
  cpu_start = std::clock();
  client_->Start(Request("GET", server_.Url("/big")), counter);
  ASSERT_TRUE(TestHttpServer::WaitFor([&] { return counter->done.load(); },
                                      milliseconds(120'000)));
  secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
             .count();
  cpu = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  EXPECT_TRUE(counter->status.ok()) << counter->status;
  std::printf(
      "one stream: %.0f chunks/s (%lld OnBody calls, %.1f MB/s), "
      "%.2f us CPU/chunk (client+server)\n",
      kChunks / secs, static_cast<long long>(counter->chunks),
      counter->bytes / secs / 1e6, cpu * 1e6 / kChunks);
}

}  // namespace
}  // namespace assistants::upstream
