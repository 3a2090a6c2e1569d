// TestHttpServer: a scriptable HTTP/1.1 server on 127.0.0.1 for the HTTP
// client tests. It runs a libevent loop on its own thread and speaks just
// enough HTTP/1.1 (Content-Length request bodies, keep-alive, chunked
// responses) for libcurl. It sits on raw bufferevents rather than evhttp so
// that the tests control exactly when bytes go out and how a connection dies
// (RST before or in the middle of a response, or never answering), and can
// count TCP connections.
#ifndef TESTS_UPSTREAM_TEST_HTTP_SERVER_H_
#define TESTS_UPSTREAM_TEST_HTTP_SERVER_H_

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

struct event_base;
struct evconnlistener;
struct event;
struct sockaddr;

namespace assistants::upstream::testing {

// What the server does with one request.
struct TestResponse {
  enum class Action {
    kRespond,          // status line, headers, body
    kResetBeforeHead,  // close the connection (RST) without answering
    kResetMidBody,  // send the head and `reset_after_chunks` chunks, then RST
    kStall,         // never answer
  };
  Action action = Action::kRespond;
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  // Sent with Content-Length when `chunks` is empty.
  std::string body;
  // Sent with Transfer-Encoding: chunked, one HTTP chunk each, `chunk_delay`
  // before each of them.
  std::vector<std::string> chunks;
  std::chrono::milliseconds chunk_delay{0};
  // Wait before the status line.
  std::chrono::milliseconds head_delay{0};
  int reset_after_chunks = 0;
  // When >= 0, hold chunk number `gate_before_chunk` (0-based) until
  // OpenGate() is called.
  int gate_before_chunk = -1;
};

struct RecordedRequest {
  std::string method;
  std::string target;
  // Names lower-cased, in arrival order.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::chrono::steady_clock::time_point received;

  // The value of header `name` (lower-case), or "" when absent.
  std::string Header(const std::string& name) const;
};

class TestHttpServer {
 public:
  // Listens on 127.0.0.1 at an ephemeral port and starts serving.
  TestHttpServer();
  ~TestHttpServer();

  TestHttpServer(const TestHttpServer&) = delete;
  TestHttpServer& operator=(const TestHttpServer&) = delete;

  int port() const { return port_; }
  // "http://127.0.0.1:<port><path>".
  std::string Url(const std::string& path) const;

  // The response for every request to `path` (query ignored) that has no
  // queued response. Unscripted paths answer 200 "ok".
  void SetResponse(const std::string& path, TestResponse response);
  // A one-shot response for the next request to `path`; queued responses
  // are used in order before the default one.
  void QueueResponse(const std::string& path, TestResponse response);
  void OpenGate() { gate_open_.store(true); }

  int connections_accepted() const { return connections_accepted_.load(); }
  int connections_closed() const { return connections_closed_.load(); }
  int requests() const { return requests_.load(); }
  int chunks_sent() const { return chunks_sent_.load(); }
  std::vector<RecordedRequest> received() const;

  // Polls `condition` until it holds or `timeout` passes; true if it held.
  static bool WaitFor(const std::function<bool()>& condition,
                      std::chrono::milliseconds timeout);

 private:
  struct Connection;
  friend struct Connection;

  TestResponse Script(const std::string& path);
  void Record(RecordedRequest request);
  static void OnAccept(evconnlistener* listener, int fd, sockaddr* addr,
                       int socklen, void* self);
  static void OnTick(int fd, short what, void* self);

  event_base* base_ = nullptr;
  evconnlistener* listener_ = nullptr;
  event* tick_ = nullptr;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> gate_open_{false};
  std::atomic<int> connections_accepted_{0};
  std::atomic<int> connections_closed_{0};
  std::atomic<int> requests_{0};
  std::atomic<int> chunks_sent_{0};
  // Open connections; server thread only.
  std::map<Connection*, std::unique_ptr<Connection>> connections_;

  mutable absl::Mutex mu_;
  std::map<std::string, TestResponse> defaults_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::deque<TestResponse>> queued_ ABSL_GUARDED_BY(mu_);
  std::vector<RecordedRequest> received_ ABSL_GUARDED_BY(mu_);
};

}  // namespace assistants::upstream::testing

#endif  // TESTS_UPSTREAM_TEST_HTTP_SERVER_H_
