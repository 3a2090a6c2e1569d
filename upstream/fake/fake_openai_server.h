// The HTTP side of fake-openai: one evhttp server on one libevent loop that
// serves the OpenAI endpoints from FakeModel, streams SSE with chunked
// transfer paced by event timers, injects transport faults (drop, stall,
// malformed events), and exposes the /_fake control API and statistics.
#ifndef UPSTREAM_FAKE_FAKE_OPENAI_SERVER_H_
#define UPSTREAM_FAKE_FAKE_OPENAI_SERVER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>

#include "upstream/fake/scenario.h"

struct event;
struct event_base;
struct evhttp;
struct evhttp_connection;
struct evhttp_request;
struct evbuffer;
struct bufferevent;

namespace assistants::fake_openai {

class FakeOpenAiServer {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    int port = 0;  // 0: pick a free port.
    std::string api_key = "sk-fake";
    // Idle keep-alive connections are closed after this long.
    int idle_timeout_s = 120;
    // Oldest recorded requests are dropped beyond this, so benchmarks do not
    // grow memory without bound.
    size_t max_recorded_requests = 1000;
    uint64_t seed = 0;  // 0: seeded from the clock.
  };

  FakeOpenAiServer(event_base* base, Options options);
  ~FakeOpenAiServer();
  FakeOpenAiServer(const FakeOpenAiServer&) = delete;
  FakeOpenAiServer& operator=(const FakeOpenAiServer&) = delete;

  // Binds and starts serving on the caller's loop. False with `*error` when
  // the address cannot be bound.
  bool Start(std::string* error);
  int port() const { return port_; }
  FakeModel& model() { return model_; }

  // Frees every connection and in-flight reply; call before the loop's
  // base is freed.
  void Shutdown();

 private:
  struct ConnState;
  struct Pending;

  static void OnRequest(evhttp_request* req, void* arg);
  static void OnConnectionClosed(evhttp_connection* evcon, void* arg);
  static void OnTimer(int fd, short what, void* arg);
  static void OnChunkDrained(evhttp_connection* evcon, void* arg);
  static bufferevent* OnNewConnection(event_base* base, void* arg);

  void HandleRequest(evhttp_request* req);
  void HandleControl(evhttp_request* req, int method, const std::string& path,
                     const std::string& body);
  void HandleApi(evhttp_request* req, ConnState* conn, int method,
                 const std::string& path, const std::string& body);
  ConnState* TrackConnection(evhttp_connection* evcon);
  void SendJson(evhttp_request* req, int status, const std::string& body);
  void SendReply(evhttp_request* req, const Reply& reply);
  void StartReply(ConnState* conn, evhttp_request* req, Reply reply);
  void BeginPending(Pending* p);
  void Pump(Pending* p);
  void ArmTimer(Pending* p, int ms);
  void DropWhenFlushed(Pending* p);
  void PollStalledPeer(Pending* p);
  void FinishPending(Pending* p);
  void DestroyPending(Pending* p);
  void Record(evhttp_request* req, int method, const std::string& path,
              const std::string& body, bool authorized);

  event_base* base_;
  Options options_;
  FakeModel model_;
  evhttp* http_ = nullptr;
  int port_ = 0;
  bool shutting_down_ = false;

  std::unordered_map<evhttp_connection*, std::unique_ptr<ConnState>> conns_;
  std::unordered_map<Pending*, std::unique_ptr<Pending>> pending_;
  std::deque<Json> recorded_;
  uint64_t next_request_id_ = 0;

  // Statistics for /_fake/stats.
  uint64_t connections_accepted_ = 0;
  uint64_t requests_ = 0;
  uint64_t streamed_events_ = 0;
  // Streamed replies whose client closed the connection before the end.
  uint64_t streams_aborted_ = 0;
  int64_t open_connections_ = 0;
};

}  // namespace assistants::fake_openai

#endif  // UPSTREAM_FAKE_FAKE_OPENAI_SERVER_H_
