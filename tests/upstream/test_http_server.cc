// TestHttpServer: see test_http_server.h. Everything below except the public
// setters and counters runs on the server thread; scripts and recordings
// cross threads under mu_, counters are atomics, and the thread is stopped by
// a periodic tick that checks stop_ (libevent is built without its locking
// here, so no other thread may touch the event base).
#include "tests/upstream/test_http_server.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace assistants::upstream::testing {
namespace {

timeval ToTimeval(std::chrono::milliseconds ms) {
  timeval tv;
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

}  // namespace

std::string RecordedRequest::Header(const std::string& name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return value;
  }
  return "";
}

struct TestHttpServer::Connection {
  enum class Step { kHead, kChunk };

  ~Connection() {
    if (timer != nullptr) event_free(timer);
    if (bev != nullptr) bufferevent_free(bev);  // closes the socket
  }

  TestHttpServer* server = nullptr;
  bufferevent* bev = nullptr;
  event* timer = nullptr;
  Step pending = Step::kHead;
  bool busy = false;  // a response is in progress
  bool reset_when_flushed = false;
  TestResponse response;
  size_t next_chunk = 0;

  evbuffer* out() { return bufferevent_get_output(bev); }

  // Drops the connection; `reset` makes it an RST rather than a FIN.
  void Close(bool reset) {
    if (reset) {
      linger lg{1, 0};
      setsockopt(bufferevent_getfd(bev), SOL_SOCKET, SO_LINGER, &lg,
                 sizeof(lg));
    }
    server->connections_closed_.fetch_add(1);
    server->connections_.erase(this);  // deletes *this
  }

  void Schedule(std::chrono::milliseconds delay, Step step) {
    pending = step;
    if (timer == nullptr)
      timer = evtimer_new(bufferevent_get_base(bev), OnTimer, this);
    timeval tv = ToTimeval(delay);
    evtimer_add(timer, &tv);
  }

  static void OnTimer(evutil_socket_t, short, void* self) {
    auto* c = static_cast<Connection*>(self);
    if (c->pending == Step::kHead) {
      c->SendHead();
    } else {
      c->SendChunks();
    }
  }

  // Parses one complete request from the input, if there is one, and starts
  // answering it.
  void TryParse() {
    if (busy) return;
    evbuffer* in = bufferevent_get_input(bev);
    evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, nullptr);
    if (end.pos < 0) return;
    const size_t head_len = static_cast<size_t>(end.pos) + 4;
    std::string head(head_len, '\0');
    evbuffer_copyout(in, head.data(), head_len);
    RecordedRequest request;
    size_t content_length = 0;
    bool first = true;
    for (absl::string_view line : absl::StrSplit(
             absl::string_view(head).substr(0, head_len - 4), "\r\n")) {
      if (first) {
        std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
        if (parts.size() >= 2) {
          request.method = std::string(parts[0]);
          request.target = std::string(parts[1]);
        }
        first = false;
        continue;
      }
      size_t colon = line.find(':');
      if (colon == absl::string_view::npos) continue;
      std::string name = absl::AsciiStrToLower(line.substr(0, colon));
      std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      if (name == "content-length") {
        (void)absl::SimpleAtoi(value, &content_length);
      }
      request.headers.emplace_back(std::move(name), std::move(value));
    }
    if (evbuffer_get_length(in) < head_len + content_length) return;
    evbuffer_drain(in, head_len);
    request.body.resize(content_length);
    evbuffer_remove(in, request.body.data(), content_length);
    request.received = std::chrono::steady_clock::now();
    std::string path = request.target.substr(0, request.target.find('?'));
    server->Record(std::move(request));
    response = server->Script(path);
    busy = true;
    next_chunk = 0;
    if (response.head_delay.count() > 0) {
      Schedule(response.head_delay, Step::kHead);
    } else {
      SendHead();
    }
  }

  void SendHead() {
    using Action = TestResponse::Action;
    switch (response.action) {
      case Action::kStall:
        return;
      case Action::kResetBeforeHead:
        Close(/*reset=*/true);
        return;
      default:
        break;
    }
    const bool chunked =
        !response.chunks.empty() || response.action == Action::kResetMidBody;
    std::string head =
        absl::StrCat("HTTP/1.1 ", response.status, " ",
                     response.status == 200 ? "OK" : "Status", "\r\n");
    for (const auto& [name, value] : response.headers) {
      absl::StrAppend(&head, name, ": ", value, "\r\n");
    }
    if (chunked) {
      absl::StrAppend(&head, "Transfer-Encoding: chunked\r\n\r\n");
    } else {
      absl::StrAppend(&head, "Content-Length: ", response.body.size(),
                      "\r\n\r\n", response.body);
    }
    evbuffer_add(out(), head.data(), head.size());
    if (!chunked) {
      Done();
      return;
    }
    if (response.chunk_delay.count() > 0) {
      Schedule(response.chunk_delay, Step::kChunk);
    } else {
      SendChunks();
    }
  }

  // Sends the next chunk (every remaining one when there is no delay) and
  // schedules or finishes the rest.
  void SendChunks() {
    while (true) {
      if (response.action == TestResponse::Action::kResetMidBody &&
          static_cast<int>(next_chunk) == response.reset_after_chunks) {
        // RST only after the chunks already written reached the client.
        if (evbuffer_get_length(out()) == 0) {
          Close(/*reset=*/true);
        } else {
          reset_when_flushed = true;
        }
        return;
      }
      if (next_chunk == response.chunks.size()) {
        evbuffer_add(out(), "0\r\n\r\n", 5);
        Done();
        return;
      }
      if (static_cast<int>(next_chunk) == response.gate_before_chunk &&
          !server->gate_open_.load()) {
        Schedule(std::chrono::milliseconds(5), Step::kChunk);
        return;
      }
      const std::string& chunk = response.chunks[next_chunk++];
      evbuffer_add_printf(out(), "%zx\r\n", chunk.size());
      evbuffer_add(out(), chunk.data(), chunk.size());
      evbuffer_add(out(), "\r\n", 2);
      server->chunks_sent_.fetch_add(1);
      if (response.chunk_delay.count() > 0 &&
          next_chunk < response.chunks.size()) {
        Schedule(response.chunk_delay, Step::kChunk);
        return;
      }
    }
  }

  void Done() {
    busy = false;
    response = TestResponse();
    TryParse();  // a request that arrived meanwhile
  }

  static void OnRead(bufferevent*, void* self) {
    static_cast<Connection*>(self)->TryParse();
  }

  static void OnWrite(bufferevent*, void* self) {
    auto* c = static_cast<Connection*>(self);
    if (c->reset_when_flushed) c->Close(/*reset=*/true);
  }

  static void OnEvent(bufferevent*, short what, void* self) {
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
      static_cast<Connection*>(self)->Close(/*reset=*/false);
    }
  }
};

TestHttpServer::TestHttpServer() {
  // A client that goes away mid-response must not kill the test with
  // SIGPIPE when the server writes.
  signal(SIGPIPE, SIG_IGN);
  base_ = event_base_new();
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  listener_ =
      evconnlistener_new_bind(base_, &TestHttpServer::OnAccept, this,
                              LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024,
                              reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  if (listener_ == nullptr) {
    perror("evconnlistener_new_bind");
    abort();
  }
  sockaddr_in bound{};
  socklen_t len = sizeof(bound);
  getsockname(evconnlistener_get_fd(listener_),
              reinterpret_cast<sockaddr*>(&bound), &len);
  port_ = ntohs(bound.sin_port);
  tick_ = event_new(base_, -1, EV_PERSIST, &TestHttpServer::OnTick, this);
  timeval tv = ToTimeval(std::chrono::milliseconds(10));
  event_add(tick_, &tv);
  thread_ = std::thread([this] { event_base_dispatch(base_); });
}

TestHttpServer::~TestHttpServer() {
  stop_.store(true);
  thread_.join();
  // The loop is gone, so this thread may now tear its objects down.
  connections_.clear();
  event_free(tick_);
  evconnlistener_free(listener_);
  event_base_free(base_);
}

std::string TestHttpServer::Url(const std::string& path) const {
  return absl::StrCat("http://127.0.0.1:", port_, path);
}

void TestHttpServer::SetResponse(const std::string& path,
                                 TestResponse response) {
  absl::MutexLock lock(&mu_);
  defaults_[path] = std::move(response);
}

void TestHttpServer::QueueResponse(const std::string& path,
                                   TestResponse response) {
  absl::MutexLock lock(&mu_);
  queued_[path].push_back(std::move(response));
}

std::vector<RecordedRequest> TestHttpServer::received() const {
  absl::MutexLock lock(&mu_);
  return received_;
}

bool TestHttpServer::WaitFor(const std::function<bool()>& condition,
                             std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

TestResponse TestHttpServer::Script(const std::string& path) {
  absl::MutexLock lock(&mu_);
  if (auto it = queued_.find(path);
      it != queued_.end() && !it->second.empty()) {
    TestResponse response = std::move(it->second.front());
    it->second.pop_front();
    return response;
  }
  if (auto it = defaults_.find(path); it != defaults_.end()) return it->second;
  TestResponse response;
  response.body = "ok";
  return response;
}

void TestHttpServer::Record(RecordedRequest request) {
  requests_.fetch_add(1);
  absl::MutexLock lock(&mu_);
  received_.push_back(std::move(request));
}

void TestHttpServer::OnAccept(evconnlistener* listener, int fd, sockaddr*, int,
                              void* self) {
  auto* server = static_cast<TestHttpServer*>(self);
  server->connections_accepted_.fetch_add(1);
  // Chunks are small writes; Nagle would hold them for the peer's delayed
  // ACK (~40 ms) and blur the timing the tests look at.
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  auto connection = std::make_unique<Connection>();
  Connection* c = connection.get();
  c->server = server;
  c->bev = bufferevent_socket_new(server->base_, fd, BEV_OPT_CLOSE_ON_FREE);
  bufferevent_setcb(c->bev, &Connection::OnRead, &Connection::OnWrite,
                    &Connection::OnEvent, c);
  bufferevent_enable(c->bev, EV_READ | EV_WRITE);
  server->connections_.emplace(c, std::move(connection));
}

void TestHttpServer::OnTick(int, short, void* self) {
  auto* server = static_cast<TestHttpServer*>(self);
  if (server->stop_.load()) event_base_loopbreak(server->base_);
}

}  // namespace assistants::upstream::testing
