// fake-openai's transport: evhttp request routing, auth, request recording,
// chunked SSE streaming with timer pacing and backpressure, fault injection,
// and connection statistics. Everything runs on the caller's single
// libevent loop; no threads, no sleeps.
//
// Lifetime rules that keep evhttp happy:
//  * A reply that cannot be sent at once (first-byte delay, a stream, a
//    stall) is a Pending owned by pending_ and linked from its connection's
//    ConnState, so the connection close callback can cancel it.
//  * When the client goes away mid-reply, evhttp detaches the request from
//    the dead connection (evcon == NULL) and leaves freeing it to us; when
//    the server tears the connection down itself (drop fault, shutdown) the
//    request is still attached and evhttp frees it.
#include "upstream/fake/fake_openai_server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace assistants::fake_openai {

struct FakeOpenAiServer::ConnState {
  FakeOpenAiServer* server = nullptr;
  evhttp_connection* evcon = nullptr;
  Pending* active = nullptr;
};

struct FakeOpenAiServer::Pending {
  enum class Phase { kFirstByte, kStreaming, kDropping, kStalled };
  FakeOpenAiServer* server = nullptr;
  ConnState* conn = nullptr;
  evhttp_request* req = nullptr;
  Reply reply;
  event* timer = nullptr;
  Phase phase = Phase::kFirstByte;
  size_t next = 0;  // Next event to send.
  int sent = 0;     // Events sent (for the *_after_events faults).
  bool delay_done = false;
  bool malformed_sent = false;
};

namespace {

constexpr size_t kBatchBytes = 32 * 1024;

int MethodOf(evhttp_request* req) {
  return static_cast<int>(evhttp_request_get_command(req));
}

const char* MethodName(int method) {
  switch (method) {
    case EVHTTP_REQ_GET:
      return "GET";
    case EVHTTP_REQ_POST:
      return "POST";
    case EVHTTP_REQ_HEAD:
      return "HEAD";
    case EVHTTP_REQ_PUT:
      return "PUT";
    case EVHTTP_REQ_DELETE:
      return "DELETE";
    case EVHTTP_REQ_OPTIONS:
      return "OPTIONS";
    case EVHTTP_REQ_PATCH:
      return "PATCH";
    default:
      return "OTHER";
  }
}

std::string BodyOf(evhttp_request* req) {
  evbuffer* in = evhttp_request_get_input_buffer(req);
  const size_t n = evbuffer_get_length(in);
  if (n == 0) return "";
  return std::string(reinterpret_cast<const char*>(evbuffer_pullup(in, n)), n);
}

void AddHeader(evhttp_request* req, const std::string& k,
               const std::string& v) {
  evhttp_add_header(evhttp_request_get_output_headers(req), k.c_str(),
                    v.c_str());
}

std::string RandomHex(uint64_t* state, int n) {
  static const char kHex[] = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < n; ++i) {
    // xorshift64: cheap, and request ids need no quality.
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    s.push_back(kHex[*state & 15]);
  }
  return s;
}

}  // namespace

FakeOpenAiServer::FakeOpenAiServer(event_base* base, Options options)
    : base_(base),
      options_(std::move(options)),
      model_(options_.seed != 0
                 ? options_.seed
                 : static_cast<uint64_t>(std::chrono::steady_clock::now()
                                             .time_since_epoch()
                                             .count())),
      next_request_id_(options_.seed != 0 ? options_.seed
                                          : 0x9e3779b97f4a7c15ULL) {}

FakeOpenAiServer::~FakeOpenAiServer() { Shutdown(); }

bool FakeOpenAiServer::Start(std::string* error) {
  http_ = evhttp_new(base_);
  if (http_ == nullptr) {
    *error = "evhttp_new failed";
    return false;
  }
  evhttp_set_allowed_methods(http_, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
                                        EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                        EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                        EVHTTP_REQ_PATCH);
  evhttp_set_timeout(http_, options_.idle_timeout_s);
  evhttp_set_gencb(http_, &FakeOpenAiServer::OnRequest, this);
  evhttp_set_bevcb(http_, &FakeOpenAiServer::OnNewConnection, this);
  evhttp_bound_socket* bound = evhttp_bind_socket_with_handle(
      http_, options_.host.c_str(), static_cast<uint16_t>(options_.port));
  if (bound == nullptr) {
    *error =
        absl::StrCat("cannot listen on ", options_.host, ":", options_.port);
    return false;
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(evhttp_bound_socket_get_fd(bound),
                  reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    *error = "getsockname failed";
    return false;
  }
  port_ = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return true;
}

void FakeOpenAiServer::Shutdown() {
  if (http_ == nullptr) return;
  shutting_down_ = true;
  // evhttp_free closes every connection (running our close callback, which
  // drops the Pendings) and frees the attached requests itself.
  evhttp_free(http_);
  http_ = nullptr;
  while (!pending_.empty()) DestroyPending(pending_.begin()->first);
  conns_.clear();
}

bufferevent* FakeOpenAiServer::OnNewConnection(event_base* base, void* arg) {
  // Called once per accepted TCP connection; returning NULL lets evhttp
  // create its usual socket bufferevent.
  ++static_cast<FakeOpenAiServer*>(arg)->connections_accepted_;
  return nullptr;
}

FakeOpenAiServer::ConnState* FakeOpenAiServer::TrackConnection(
    evhttp_connection* evcon) {
  auto it = conns_.find(evcon);
  if (it == conns_.end()) {
    auto state = std::make_unique<ConnState>();
    state->server = this;
    state->evcon = evcon;
    it = conns_.emplace(evcon, std::move(state)).first;
    ++open_connections_;
    // Like a real API front end: each SSE event leaves at once instead of
    // the last small segment waiting for the client's delayed ACK (40 ms).
    const evutil_socket_t fd =
        bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
    if (fd >= 0) {
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
  } else if (it->second->active != nullptr) {
    // A new request can only arrive once the previous reply finished, so an
    // active Pending here belongs to a dead connection whose address was
    // reused; forget it without touching its (already freed) request.
    Pending* stale = it->second->active;
    if (stale->reply.stream && stale->phase != Pending::Phase::kDropping)
      ++streams_aborted_;
    stale->req = nullptr;
    DestroyPending(stale);
  }
  // Set every time: cheap, and robust if evhttp ever skipped the callback.
  evhttp_connection_set_closecb(evcon, &FakeOpenAiServer::OnConnectionClosed,
                                it->second.get());
  return it->second.get();
}

void FakeOpenAiServer::OnConnectionClosed(evhttp_connection* evcon, void* arg) {
  auto* conn = static_cast<ConnState*>(arg);
  FakeOpenAiServer* self = conn->server;
  if (Pending* p = conn->active) {
    // A streamed reply cut short by the client (not by a drop fault or by
    // our own shutdown).
    if (p->reply.stream && p->phase != Pending::Phase::kDropping &&
        !self->shutting_down_) {
      ++self->streams_aborted_;
    }
    if (p->req != nullptr && !self->shutting_down_ &&
        evhttp_request_get_connection(p->req) == nullptr) {
      // Detached by evhttp after the client vanished: ours to free.
      evhttp_request_free(p->req);
    }
    p->req = nullptr;
    self->DestroyPending(p);
  }
  --self->open_connections_;
  self->conns_.erase(evcon);
}

void FakeOpenAiServer::OnRequest(evhttp_request* req, void* arg) {
  static_cast<FakeOpenAiServer*>(arg)->HandleRequest(req);
}

void FakeOpenAiServer::HandleRequest(evhttp_request* req) {
  ++requests_;
  ConnState* conn = TrackConnection(evhttp_request_get_connection(req));
  const int method = MethodOf(req);
  std::string path = "/";
  if (const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req)) {
    if (const char* p = evhttp_uri_get_path(uri)) path = p;
  }
  if (path.size() > 1 && path.back() == '/') path.pop_back();
  const std::string body = BodyOf(req);
  AddHeader(req, "x-request-id", "req_" + RandomHex(&next_request_id_, 32));
  if (path == "/healthz") {
    SendJson(req, 200, "{\"status\":\"ok\"}");
  } else if (absl::StartsWith(path, "/_fake/")) {
    HandleControl(req, method, path, body);
  } else {
    HandleApi(req, conn, method, path, body);
  }
}

void FakeOpenAiServer::SendJson(evhttp_request* req, int status,
                                const std::string& body) {
  AddHeader(req, "Content-Type", "application/json");
  evbuffer* buf = evbuffer_new();
  evbuffer_add(buf, body.data(), body.size());
  evhttp_send_reply(req, status, nullptr, buf);
  evbuffer_free(buf);
}

void FakeOpenAiServer::HandleControl(evhttp_request* req, int method,
                                     const std::string& path,
                                     const std::string& body) {
  auto bad = [&](int status, const std::string& message) {
    SendJson(req, status,
             ErrorBody(message, "invalid_request_error", nullptr, nullptr));
  };
  if (path == "/_fake/script") {
    if (method == EVHTTP_REQ_POST || method == EVHTTP_REQ_PUT) {
      const Json j = Json::parse(body, nullptr, false);
      if (j.is_discarded()) return bad(400, "script is not valid JSON");
      std::vector<Step> steps;
      std::string error;
      if (!ParseScript(j, &steps, &error)) return bad(400, error);
      if (method == EVHTTP_REQ_PUT) model_.ClearScript();
      const size_t added = steps.size();
      model_.Enqueue(std::move(steps));
      return SendJson(
          req, 200, Json{{"queued", model_.queued()}, {"added", added}}.dump());
    }
    if (method == EVHTTP_REQ_DELETE) {
      model_.ClearScript();
      return SendJson(req, 200, "{\"queued\":0}");
    }
    if (method == EVHTTP_REQ_GET)
      return SendJson(req, 200, model_.ScriptJson().dump());
  } else if (path == "/_fake/requests") {
    if (method == EVHTTP_REQ_GET) {
      Json list = Json::array();
      for (const Json& r : recorded_) list.push_back(r);
      return SendJson(
          req, 200,
          Json{{"requests", list}}.dump(
              -1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    if (method == EVHTTP_REQ_DELETE) {
      recorded_.clear();
      return SendJson(req, 200, "{\"requests\":[]}");
    }
  } else if (path == "/_fake/stats") {
    if (method == EVHTTP_REQ_GET) {
      Json stats = {{"connections_accepted", connections_accepted_},
                    {"requests", requests_},
                    {"streamed_events", streamed_events_},
                    {"streams_aborted", streams_aborted_},
                    {"open_connections", open_connections_},
                    {"active_replies", pending_.size()},
                    {"script_queued", model_.queued()}};
      return SendJson(req, 200, stats.dump());
    }
  } else {
    return bad(404, absl::StrCat("Unknown control path ", path));
  }
  bad(405, absl::StrCat("Invalid method for URL (", MethodName(method), " ",
                        path, ")"));
}

void FakeOpenAiServer::Record(evhttp_request* req, int method,
                              const std::string& path, const std::string& body,
                              bool authorized) {
  if (options_.max_recorded_requests == 0) return;
  Json headers = Json::object();
  const evkeyvalq* in = evhttp_request_get_input_headers(req);
  for (const evkeyval* h = in->tqh_first; h != nullptr; h = h->next.tqe_next) {
    const std::string key = absl::AsciiStrToLower(h->key);
    headers[key] = key == "authorization" ? "REDACTED" : h->value;
  }
  Json rec;
  rec["method"] = MethodName(method);
  rec["path"] = path;
  if (const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req)) {
    if (const char* q = evhttp_uri_get_query(uri)) rec["query"] = q;
  }
  rec["headers"] = headers;
  rec["authorized"] = authorized;
  const Json parsed = Json::parse(body, nullptr, false);
  if (body.empty()) {
    rec["body"] = nullptr;
  } else if (parsed.is_discarded()) {
    rec["body"] = nullptr;
    rec["raw_body"] = body;
  } else {
    rec["body"] = parsed;
  }
  recorded_.push_back(std::move(rec));
  while (recorded_.size() > options_.max_recorded_requests)
    recorded_.pop_front();
}

void FakeOpenAiServer::HandleApi(evhttp_request* req, ConnState* conn,
                                 int method, const std::string& path,
                                 const std::string& body) {
  AddHeader(req, "openai-version", "2020-10-01");
  AddHeader(req, "openai-processing-ms", "1");
  const char* auth = evhttp_find_header(evhttp_request_get_input_headers(req),
                                        "Authorization");
  const std::string expected = "Bearer " + options_.api_key;
  const bool authorized = auth != nullptr && expected == auth;
  Record(req, method, path, body, authorized);
  auto set_status = [&](int status) {
    if (!recorded_.empty() && options_.max_recorded_requests > 0)
      recorded_.back()["response_status"] = status;
  };

  const bool is_responses = path == "/v1/responses";
  const bool is_chat = path == "/v1/chat/completions";
  const bool is_models =
      path == "/v1/models" || absl::StartsWith(path, "/v1/models/");
  const bool is_response_get = absl::StartsWith(path, "/v1/responses/");
  if (!is_responses && !is_chat && !is_models && !is_response_get) {
    set_status(404);
    return SendReply(
        req, ErrorReply(404,
                        absl::StrCat("Invalid URL (", MethodName(method), " ",
                                     path, ")"),
                        "invalid_request_error"));
  }
  if (!authorized) {
    set_status(401);
    if (auth == nullptr || !absl::StartsWith(auth, "Bearer ")) {
      return SendReply(
          req,
          ErrorReply(401,
                     "You didn't provide an API key. You need to provide your "
                     "API key in an Authorization header using Bearer auth "
                     "(i.e. Authorization: Bearer YOUR_KEY), or as the "
                     "password field (with blank username) if you're "
                     "accessing the API from your browser and are prompted "
                     "for a username and password. You can obtain an API key "
                     "from https://platform.openai.com/account/api-keys.",
                     "invalid_request_error", nullptr, "invalid_api_key"));
    }
    std::string given = std::string(auth).substr(7);
    const std::string masked =
        given.size() > 8
            ? given.substr(0, 3) + "*****" + given.substr(given.size() - 4)
            : std::string("*****");
    return SendReply(
        req, ErrorReply(401,
                        absl::StrCat("Incorrect API key provided: ", masked,
                                     ". You can find your API key at "
                                     "https://platform.openai.com/account/"
                                     "api-keys."),
                        "invalid_request_error", nullptr, "invalid_api_key"));
  }
  const bool post = method == EVHTTP_REQ_POST;
  if ((is_responses || is_chat) && !post) {
    set_status(405);
    return SendReply(
        req, ErrorReply(405,
                        absl::StrCat("Invalid method for URL (",
                                     MethodName(method), " ", path, ")"),
                        "invalid_request_error"));
  }
  if (is_models || is_response_get) {
    if (method != EVHTTP_REQ_GET) {
      set_status(405);
      return SendReply(
          req, ErrorReply(405,
                          absl::StrCat("Invalid method for URL (",
                                       MethodName(method), " ", path, ")"),
                          "invalid_request_error"));
    }
    if (is_response_get) {
      const std::string id = path.substr(std::string("/v1/responses/").size());
      std::string json;
      if (!model_.GetStoredResponse(id, &json)) {
        set_status(404);
        return SendReply(
            req,
            ErrorReply(404,
                       absl::StrCat("Response with id '", id, "' not found."),
                       "invalid_request_error", "response_id"));
      }
      set_status(200);
      return SendJson(req, 200, json);
    }
    auto model_json = [](const std::string& id) {
      return Json{{"id", id},
                  {"object", "model"},
                  {"created", 1715367049},
                  {"owned_by", "system"}};
    };
    set_status(200);
    if (path == "/v1/models") {
      Json data = Json::array();
      for (const char* id : {"gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini",
                             "gpt-5", "gpt-5-mini", "o4-mini"})
        data.push_back(model_json(id));
      return SendJson(req, 200,
                      Json{{"object", "list"}, {"data", data}}.dump());
    }
    return SendJson(
        req, 200,
        model_json(path.substr(std::string("/v1/models/").size())).dump());
  }
  Reply reply = model_.Handle(
      is_responses ? Api::kResponses : Api::kChatCompletions, body);
  set_status(reply.status);
  StartReply(conn, req, std::move(reply));
}

void FakeOpenAiServer::SendReply(evhttp_request* req, const Reply& reply) {
  for (const auto& [k, v] : reply.headers) AddHeader(req, k, v);
  AddHeader(req, "Content-Type", reply.content_type);
  evbuffer* buf = evbuffer_new();
  evbuffer_add(buf, reply.body.data(), reply.body.size());
  evhttp_send_reply(req, reply.status, nullptr, buf);
  evbuffer_free(buf);
}

void FakeOpenAiServer::StartReply(ConnState* conn, evhttp_request* req,
                                  Reply reply) {
  const bool needs_pending = reply.stream || reply.first_byte_delay_ms > 0 ||
                             reply.stall_after_events >= 0 ||
                             reply.drop_after_events >= 0;
  if (!needs_pending) {
    SendReply(req, reply);
    return;
  }
  auto owned = std::make_unique<Pending>();
  Pending* p = owned.get();
  p->server = this;
  p->conn = conn;
  p->req = req;
  p->reply = std::move(reply);
  p->timer = evtimer_new(base_, &FakeOpenAiServer::OnTimer, p);
  conn->active = p;
  pending_.emplace(p, std::move(owned));
  if (p->reply.first_byte_delay_ms > 0) {
    ArmTimer(p, p->reply.first_byte_delay_ms);
  } else {
    BeginPending(p);
  }
}

void FakeOpenAiServer::ArmTimer(Pending* p, int ms) {
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  evtimer_add(p->timer, &tv);
}

void FakeOpenAiServer::OnTimer(int fd, short what, void* arg) {
  auto* p = static_cast<Pending*>(arg);
  FakeOpenAiServer* self = p->server;
  switch (p->phase) {
    case Pending::Phase::kFirstByte:
      self->BeginPending(p);
      break;
    case Pending::Phase::kStreaming:
      p->delay_done = true;
      self->Pump(p);
      break;
    case Pending::Phase::kDropping:
      self->DropWhenFlushed(p);
      break;
    case Pending::Phase::kStalled:
      self->PollStalledPeer(p);
      break;
  }
}

void FakeOpenAiServer::PollStalledPeer(Pending* p) {
  // evhttp stops reading once a request is in, so before any reply bytes a
  // departed client goes unnoticed; peek at the socket instead.
  evhttp_connection* evcon = evhttp_request_get_connection(p->req);
  bufferevent* bev =
      evcon != nullptr ? evhttp_connection_get_bufferevent(evcon) : nullptr;
  const int fd = bev != nullptr ? bufferevent_getfd(bev) : -1;
  if (fd < 0) return;
  char byte;
  const ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0 ||
      (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
    evhttp_connection_free(evcon);  // Runs OnConnectionClosed, freeing p.
    return;
  }
  ArmTimer(p, 100);
}

void FakeOpenAiServer::BeginPending(Pending* p) {
  const Reply& r = p->reply;
  if (!r.stream) {
    // Non-streamed faults: a stall never answers; a drop closes without a
    // status line.
    if (r.stall_after_events >= 0) {
      p->phase = Pending::Phase::kStalled;
      ArmTimer(p, 100);
      return;
    }
    if (r.drop_after_events >= 0) {
      p->phase = Pending::Phase::kDropping;
      DropWhenFlushed(p);
      return;
    }
    SendReply(p->req, r);
    FinishPending(p);
    return;
  }
  for (const auto& [k, v] : r.headers) AddHeader(p->req, k, v);
  AddHeader(p->req, "Content-Type", r.content_type);
  AddHeader(p->req, "Cache-Control", "no-cache");
  evhttp_send_reply_start(p->req, r.status, nullptr);
  p->phase = Pending::Phase::kStreaming;
  Pump(p);
}

void FakeOpenAiServer::OnChunkDrained(evhttp_connection* evcon, void* arg) {
  auto* p = static_cast<Pending*>(arg);
  p->server->Pump(p);
}

void FakeOpenAiServer::Pump(Pending* p) {
  const Reply& r = p->reply;
  evbuffer* buf = evbuffer_new();
  auto flush = [&](bool resume_when_drained) {
    if (evbuffer_get_length(buf) > 0) {
      if (resume_when_drained) {
        evhttp_send_reply_chunk_with_cb(p->req, buf,
                                        &FakeOpenAiServer::OnChunkDrained, p);
      } else {
        evhttp_send_reply_chunk(p->req, buf);
      }
    }
    evbuffer_free(buf);
  };
  for (;;) {
    if (p->sent == r.stall_after_events) {
      flush(false);
      p->phase = Pending::Phase::kStalled;
      return;
    }
    if (p->sent == r.drop_after_events) {
      flush(false);
      p->phase = Pending::Phase::kDropping;
      DropWhenFlushed(p);
      return;
    }
    if (p->sent == r.malformed_after_events && !p->malformed_sent) {
      evbuffer_add(buf, r.malformed_wire.data(), r.malformed_wire.size());
      p->malformed_sent = true;
      ++streamed_events_;
    }
    if (p->next >= r.events.size()) break;
    const SseEvent& e = r.events[p->next];
    if (e.is_delta && r.token_delay_ms > 0 && !p->delay_done) {
      flush(false);
      ArmTimer(p, r.token_delay_ms);
      return;
    }
    p->delay_done = false;
    evbuffer_add(buf, e.wire.data(), e.wire.size());
    ++p->next;
    ++p->sent;
    ++streamed_events_;
    if (evbuffer_get_length(buf) >= kBatchBytes && p->next < r.events.size()) {
      // Backpressure and fairness: continue once this batch has reached the
      // socket, letting other connections run in between.
      flush(true);
      return;
    }
  }
  flush(false);
  evhttp_send_reply_end(p->req);
  FinishPending(p);
}

void FakeOpenAiServer::DropWhenFlushed(Pending* p) {
  evhttp_connection* evcon = evhttp_request_get_connection(p->req);
  if (evcon == nullptr) return;  // Already gone; the close callback cleans up.
  bufferevent* bev = evhttp_connection_get_bufferevent(evcon);
  if (bev != nullptr && evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
    // Let what was promised reach the client first, then cut.
    ArmTimer(p, 1);
    return;
  }
  // Freeing the connection runs OnConnectionClosed (which destroys p) and
  // closes the socket mid-response: the client sees the stream end without
  // the terminating chunk.
  evhttp_connection_free(evcon);
}

void FakeOpenAiServer::FinishPending(Pending* p) {
  p->req = nullptr;  // evhttp owns and frees it after the reply.
  DestroyPending(p);
}

void FakeOpenAiServer::DestroyPending(Pending* p) {
  auto it = pending_.find(p);
  if (it == pending_.end()) return;
  if (p->timer != nullptr) event_free(p->timer);
  if (p->conn != nullptr && p->conn->active == p) p->conn->active = nullptr;
  pending_.erase(it);
}

}  // namespace assistants::fake_openai
