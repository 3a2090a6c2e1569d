"""A small Python SDK for assistants-gateway tool workers.

It mirrors the C++ SDK (tool_workers/sdk/tool_worker.h) and its wire
conventions: declare tools with handlers; Worker serves ToolWorkerService,
registers with the gateway's ToolRegistryService, keeps its lease alive by
heartbeat (registering again when the gateway forgot it, e.g. after a
gateway restart), and on shutdown unregisters, refuses new calls and lets
the calls in flight finish.

    def price(arguments, context):
        return {"ticker": arguments["ticker"], "price": 237.5}

    worker = Worker([Tool("get_stock_price", "Latest price", schema, price)],
                    **worker_options_from_flags())
    sys.exit(worker.serve_until_signal("stock-price-worker"))

Wire conventions (what the gateway relies on):
- Arguments are the model's JSON text; "" means {}. Text that is not a JSON
  object is INVALID_ARGUMENT ("arguments are not valid JSON: ...") without
  calling the handler. An unknown tool is NOT_FOUND.
- A handler's ToolError keeps its code and message (and its ErrorInfo reason,
  if any, as a google.rpc.Status in grpc-status-details-bin). Any other
  exception is INTERNAL; the worker never dies of it.
- Not started: a call refused WITHOUT running its handler (the worker is
  draining and has no result for its idempotency key, or the handler raised
  call_not_started()) is UNAVAILABLE with ErrorInfo CALL_NOT_STARTED, which
  the gateway retries on another replica even for a non-idempotent tool; a
  plain UNAVAILABLE is retried for idempotent tools only.
- Calls are deduplicated by idempotency key: a finished result (output or
  error, except UNAVAILABLE) is remembered in a bounded LRU, and a call whose
  key is still running waits for that run, so a retried call never runs the
  handler twice on one replica. An empty key is never deduplicated.

Only the stubs generated from proto/ (scripts/python-stubs.sh, on
PYTHONPATH), Debian's python3-grpcio and python3-protobuf are needed.
"""

import argparse
import collections
import concurrent.futures
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Optional

import grpc
from google.protobuf import any_pb2
from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory

from assistants.v1 import common_pb2
from assistants.v1 import tool_worker_pb2
from assistants.v1 import tool_worker_pb2_grpc

__all__ = [
    "CALL_NOT_STARTED", "CallContext", "ERROR_DOMAIN", "RegistrationError",
    "Tool", "ToolError", "Worker", "add_worker_flags", "call_not_started",
    "worker_options_from_args", "worker_options_from_flags",
]

logger = logging.getLogger("assistants_worker")

# The ErrorInfo domain and the reason marking a call that was not started.
ERROR_DOMAIN = "assistants.gateway"
CALL_NOT_STARTED = "CALL_NOT_STARTED"
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

# Registration retries transient failures only: the gateway may still be
# starting, or be restarting behind a load balancer.
TRANSIENT_CODES = (grpc.StatusCode.UNAVAILABLE,
                   grpc.StatusCode.DEADLINE_EXCEEDED)
BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 2.0
# One registry RPC never blocks a heartbeat tick for long; unregistering is
# best effort and must not hold up a shutdown.
REGISTRY_RPC_TIMEOUT_S = 5.0
UNREGISTER_TIMEOUT_S = 1.0
# Used when the gateway suggests no interval and grants no TTL.
DEFAULT_HEARTBEAT_INTERVAL_S = 5.0


class ToolError(Exception):
    """Raised by a handler to answer the call with a gRPC status.

    INVALID_ARGUMENT: arguments the tool cannot use (the model gets a JSON
    error it can read). UNAVAILABLE: the call failed in a way another replica
    may not (retried there for idempotent tools). Any other code is reported
    as a worker error. `reason` (and `metadata`) travel as a google.rpc
    ErrorInfo of the project's domain.
    """

    def __init__(self, code: grpc.StatusCode, message: str, reason: str = "",
                 metadata: Optional[dict] = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})


def call_not_started(message: str) -> ToolError:
    """UNAVAILABLE with ErrorInfo CALL_NOT_STARTED: "this call had no
    effects, run it elsewhere", retried even for a non-idempotent tool. The
    worker answers it itself while draining; a handler may raise it too, but
    only before it did anything with effects."""
    return ToolError(grpc.StatusCode.UNAVAILABLE, message,
                     reason=CALL_NOT_STARTED)


class RegistrationError(Exception):
    """The gateway refused the registration (bad token, endpoint not allowed,
    conflicting tool definition), or it stayed unreachable."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__("%s: %s" % (code.name, message))
        self.code = code
        self.message = message


@dataclass(frozen=True)
class CallContext:
    """What a handler knows about the call it serves."""
    # run_id + ":" + tool_call_id; the same key means the same call.
    idempotency_key: str
    tool_call_id: str
    run_id: str
    thread_id: str
    assistant_id: str
    _grpc_context: Any = field(default=None, repr=False, compare=False)

    def time_remaining(self) -> Optional[float]:
        """Seconds left before the gateway's deadline; None without one."""
        if self._grpc_context is None:
            return None
        return self._grpc_context.time_remaining()

    def cancelled(self) -> bool:
        """True once the gateway gave up on the call (cancelled, deadline
        passed). Long handlers should poll it and return early: shutdown()
        cancels the calls still running after its drain timeout and waits
        for their handlers."""
        return (self._grpc_context is not None and
                not self._grpc_context.is_active())


# handler(arguments: dict, context: CallContext) -> str | JSON-serializable
Handler = Callable[[dict, CallContext], Any]


class Tool:
    """One function tool: the definition the model sees, plus its handler."""

    def __init__(self, name: str, description: str, parameters: dict,
                 handler: Handler, idempotent: bool = False,
                 timeout_ms: int = 0, max_concurrency: int = 0,
                 strict: bool = False):
        if not TOOL_NAME.match(name or ""):
            raise ValueError("tool name %r must match %s" %
                             (name, TOOL_NAME.pattern))
        if not isinstance(parameters, dict):
            raise ValueError("tool %s: parameters must be a JSON Schema object"
                             % name)
        if not callable(handler):
            raise ValueError("tool %s: handler is not callable" % name)
        if timeout_ms < 0 or max_concurrency < 0:
            raise ValueError("tool %s: timeout_ms and max_concurrency must not "
                             "be negative" % name)
        self.name = name
        self.description = description
        self.parameters = parameters
        self.handler = handler
        self.idempotent = idempotent  # safe to run twice for one call
        self.timeout_ms = timeout_ms  # 0: the gateway default (30 s)
        self.max_concurrency = max_concurrency  # 0: the gateway default (16)
        self.strict = strict

    def to_proto(self) -> tool_worker_pb2.WorkerTool:
        function = common_pb2.FunctionDefinition(
            name=self.name, description=self.description)
        function.parameters.update(self.parameters)
        # `strict` is optional in the proto: absent reads as false, so only a
        # strict tool sets it, keeping the definition minimal.
        if self.strict:
            function.strict = True
        return tool_worker_pb2.WorkerTool(
            function=function, timeout_ms=self.timeout_ms,
            max_concurrency=self.max_concurrency, idempotent=self.idempotent)


def _status_classes():
    """google.rpc.Status and ErrorInfo built at run time, in a private
    descriptor pool, so the SDK needs no googleapis stubs and cannot clash
    with a program that imports generated google.rpc modules. Field numbers
    and types are those of google/rpc/{status,error_details}.proto, so the
    bytes are the same."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    proto = descriptor_pb2.FieldDescriptorProto
    optional, repeated = proto.LABEL_OPTIONAL, proto.LABEL_REPEATED
    file = descriptor_pb2.FileDescriptorProto(
        name="assistants_worker/google_rpc.proto", package="google.rpc",
        syntax="proto3", dependency=["google/protobuf/any.proto"])

    status = file.message_type.add(name="Status")
    status.field.add(name="code", number=1, type=proto.TYPE_INT32,
                     label=optional)
    status.field.add(name="message", number=2, type=proto.TYPE_STRING,
                     label=optional)
    status.field.add(name="details", number=3, type=proto.TYPE_MESSAGE,
                     label=repeated, type_name=".google.protobuf.Any")

    info = file.message_type.add(name="ErrorInfo")
    info.field.add(name="reason", number=1, type=proto.TYPE_STRING,
                   label=optional)
    info.field.add(name="domain", number=2, type=proto.TYPE_STRING,
                   label=optional)
    entry = info.nested_type.add(name="MetadataEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=proto.TYPE_STRING,
                    label=optional)
    entry.field.add(name="value", number=2, type=proto.TYPE_STRING,
                    label=optional)
    info.field.add(name="metadata", number=3, type=proto.TYPE_MESSAGE,
                   label=repeated,
                   type_name=".google.rpc.ErrorInfo.MetadataEntry")

    pool.Add(file)
    factory = message_factory.MessageFactory(pool)
    return tuple(
        factory.GetPrototype(pool.FindMessageTypeByName("google.rpc." + name))
        for name in ("Status", "ErrorInfo"))


_Status, _ErrorInfo = _status_classes()


def _abort(context, error: ToolError):
    """Ends the call with `error`; its reason, if any, goes as a
    google.rpc.Status in grpc-status-details-bin, as the C++ SDK sends it."""
    if error.reason:
        status = _Status(code=error.code.value[0], message=error.message)
        status.details.add().Pack(_ErrorInfo(
            reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata))
        context.set_trailing_metadata(
            (("grpc-status-details-bin", status.SerializeToString()),))
    context.abort(error.code, error.message)


def _reject_constant(name):
    raise ValueError("%s is not valid JSON" % name)


def _parse_arguments(text: str) -> dict:
    """The model's arguments as a dict; "" means no arguments."""
    if not text:
        return {}
    try:
        # NaN and Infinity are Python extensions, not JSON.
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError as error:  # JSONDecodeError is a ValueError
        raise ToolError(grpc.StatusCode.INVALID_ARGUMENT,
                        "arguments are not valid JSON: %s" % error,
                        reason="INVALID_ARGUMENTS") from None
    if not isinstance(value, dict):
        kind = {list: "array", str: "string", bool: "boolean",
                type(None): "null"}.get(type(value), "number")
        raise ToolError(grpc.StatusCode.INVALID_ARGUMENT,
                        "arguments are not valid JSON: expected an object, "
                        "got %s" % kind, reason="INVALID_ARGUMENTS")
    return value


def _serialize_output(value: Any) -> str:
    # A string is already the output (conventionally JSON); anything else is
    # serialized, refusing NaN/Infinity which JSON readers reject.
    if isinstance(value, str):
        return value
    return json.dumps(value, allow_nan=False)


class _Result(NamedTuple):
    """A finished call: its output, or the error it ended with."""
    output: str = ""
    error: Optional[ToolError] = None


class _Dedupe:
    """Results by idempotency key: finished ones in a bounded LRU, running
    ones as futures a duplicate waits on."""

    def __init__(self, capacity: int):
        self._capacity = capacity
        self._lock = threading.Lock()
        self._done = collections.OrderedDict()  # key -> _Result, oldest first
        self._running = {}  # key -> Future of the _Result

    def join(self, key, may_run: bool):
        """(result, None) for a finished call; (None, future) when the same
        call is running; (None, None) when nothing is known: the caller runs
        it and calls finish(), unless `may_run` is false."""
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                return self._done[key], None
            if key in self._running:
                return None, self._running[key]
            if may_run:
                self._running[key] = concurrent.futures.Future()
            return None, None

    def finish(self, key, result: _Result):
        """Hands `result` to the waiting duplicates and remembers it, unless
        the handler gave up or invites a retry (UNAVAILABLE, CANCELLED,
        DEADLINE_EXCEEDED): a retry of those (e.g. after a gateway restart)
        runs the tool again."""
        with self._lock:
            future = self._running.pop(key)
            if result.error is None or result.error.code not in (
                    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                    grpc.StatusCode.DEADLINE_EXCEEDED):
                self._done[key] = result
                while len(self._done) > self._capacity:
                    self._done.popitem(last=False)
        future.set_result(result)


def _split_host_port(address: str):
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError("%r is not HOST:PORT" % address)
    return host, int(port)


class _Servicer(tool_worker_pb2_grpc.ToolWorkerServiceServicer):

    def __init__(self, worker: "Worker"):
        self._worker = worker

    def InvokeTool(self, request, context):
        return self._worker._invoke(request, context)


class Worker:
    """Serves tools to the gateway. start() then shutdown(), or
    serve_until_signal() for a worker program."""

    def __init__(self, tools, gateway: str = "", listen: str = "127.0.0.1:0",
                 advertise: Optional[str] = None,
                 worker_id: Optional[str] = None, token: Optional[str] = None,
                 lease_ttl_ms: int = 0, handler_threads: int = 8,
                 register_timeout_s: float = 30.0,
                 drain_timeout_s: float = 10.0, dedupe_entries: int = 4096,
                 gateway_tls_ca_file: str = "",
                 gateway_tls_cert_file: str = "",
                 gateway_tls_key_file: str = "", tls_cert_file: str = "",
                 tls_key_file: str = "", tls_client_ca_file: str = ""):
        self._tools = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ValueError("tool %s declared twice" % tool.name)
            self._tools[tool.name] = tool
        if not self._tools:
            raise ValueError("a worker serves at least one tool")
        self.gateway = gateway or ""  # empty: serve without registering
        self.listen = listen or "127.0.0.1:0"
        self._advertise = advertise or ""
        self.worker_id = worker_id or "%s-%d" % (socket.gethostname(),
                                                 os.getpid())
        self._token = token or ""
        self._lease_ttl_ms = lease_ttl_ms
        self._handler_threads = handler_threads
        self._register_timeout_s = register_timeout_s
        self._drain_timeout_s = drain_timeout_s
        self._dedupe = _Dedupe(dedupe_entries)
        # TLS, as in the C++ SDK: files read now, so a typo fails at once.
        self._server_credentials = _server_credentials(
            tls_cert_file, tls_key_file, tls_client_ca_file)
        self._gateway_credentials = _channel_credentials(
            gateway_tls_ca_file, gateway_tls_cert_file, gateway_tls_key_file)

        self.port = 0
        self.endpoint = ""  # what the gateway dials
        self._server = None
        self._channel = None
        self._registry = None
        # Lease and heartbeat interval, replaced by each registration.
        self._lease_lock = threading.Lock()
        self._lease_id = ""
        self._heartbeat_interval_s = DEFAULT_HEARTBEAT_INTERVAL_S
        self._stop_heartbeats = threading.Event()
        self._heartbeat_thread = None
        # Calls being answered, and whether new ones are refused.
        self._calls = threading.Condition()
        self._in_flight = 0
        self._draining = False
        # Held for the whole shutdown, so a second caller waits for the first.
        self._shutdown_lock = threading.Lock()
        self._shut_down = False

    # Serving -----------------------------------------------------------------

    def start(self):
        """Serves, then registers (retrying UNAVAILABLE and DEADLINE_EXCEEDED
        for up to register_timeout_s). Raises RegistrationError when the
        gateway refuses the registration, having stopped serving. Once it
        returns the worker is registered."""
        self._server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(
                max_workers=self._handler_threads,
                thread_name_prefix="tool-handler"),
            # Without this a second process could bind the same fixed port and
            # silently share its calls.
            options=[("grpc.so_reuseport", 0)])
        tool_worker_pb2_grpc.add_ToolWorkerServiceServicer_to_server(
            _Servicer(self), self._server)
        try:
            if self._server_credentials is None:
                self.port = self._server.add_insecure_port(self.listen)
            else:
                self.port = self._server.add_secure_port(
                    self.listen, self._server_credentials)
        except RuntimeError as error:  # newer grpcio raises, older returns 0
            raise OSError("cannot listen on %s: %s" % (self.listen, error))
        if not self.port:
            raise OSError("cannot listen on %s" % self.listen)
        self._server.start()

        if self._advertise:
            self.endpoint = self._advertise
        else:
            # A wildcard address cannot be dialed; the loopback host reaches it.
            host, _ = _split_host_port(self.listen)
            if host in ("", "0.0.0.0", "[::]", "::"):
                host = "127.0.0.1"
            self.endpoint = "%s:%d" % (host, self.port)

        if not self.gateway:
            return  # serve only, e.g. for a gateway's static configuration
        self._channel = _channel(
            self.gateway, self._gateway_credentials,
            # gRPC's own reconnect backoff grows to minutes and would make the
            # retries below fail fast long after the gateway came up; keep it
            # at the registration backoff.
            options=[("grpc.initial_reconnect_backoff_ms",
                      int(BACKOFF_INITIAL_S * 1000)),
                     ("grpc.min_reconnect_backoff_ms",
                      int(BACKOFF_INITIAL_S * 1000)),
                     ("grpc.max_reconnect_backoff_ms",
                      int(BACKOFF_MAX_S * 1000))])
        self._registry = tool_worker_pb2_grpc.ToolRegistryServiceStub(
            self._channel)
        try:
            self._register_with_retry()
        except BaseException:
            self._server.stop(None)
            self._server = None
            self._channel.close()
            raise
        self._heartbeat_thread = threading.Thread(
            target=self._heartbeat_loop, name="heartbeat", daemon=True)
        self._heartbeat_thread.start()

    def shutdown(self):
        """Stops heartbeats, unregisters (best effort), refuses new calls
        (UNAVAILABLE, CALL_NOT_STARTED), waits up to drain_timeout_s for calls
        in flight, then cancels those left, stops serving and waits for
        their handlers. Idempotent."""
        with self._shutdown_lock:
            if self._shut_down:
                return
            self._shut_down = True
            self._stop_heartbeats.set()
            if self._heartbeat_thread is not None:
                self._heartbeat_thread.join()
                self._unregister()
            if self._channel is not None:
                self._channel.close()
            if self._server is None:
                return  # never served
            with self._calls:
                self._draining = True
                if not self._calls.wait_for(lambda: self._in_flight == 0,
                                            timeout=self._drain_timeout_s):
                    logger.warning("%d call(s) still running after %.0f s; "
                                   "cancelling them", self._in_flight,
                                   self._drain_timeout_s)
            # The grace lets the last replies leave (a call counts as done
            # when its handler returns, just before gRPC sends the reply);
            # then what still runs is cancelled.
            self._server.stop(grace=1.0).wait()
            # Cancelled handlers see context.cancelled(); like the C++ SDK,
            # return only once they did.
            with self._calls:
                self._calls.wait_for(lambda: self._in_flight == 0)

    def serve_until_signal(self, program: str) -> int:
        """start(), print "<program> listening on HOST:PORT" to stderr, serve
        until SIGTERM or SIGINT, shutdown(). Returns the exit code."""
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO,
                                format=program + ": %(message)s")
        stop = threading.Event()
        # Handlers run on the main thread; they only set the event so the
        # shutdown work happens outside signal context. Installing them also
        # undoes SIGINT being ignored in a shell's background job.
        received = []

        def on_signal(signum, frame):
            received.append(signum)
            stop.set()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_signal)
        try:
            self.start()
        except (RegistrationError, OSError) as error:
            print("%s: %s" % (program, error), file=sys.stderr, flush=True)
            return 1
        # As the C++ SDK: the host the gateway dials with the bound port, and
        # the advertised endpoint when that differs (e.g. behind a NAT).
        host = self.endpoint.rpartition(":")[0] or self.endpoint
        listening = "%s:%d" % (host, self.port)
        line = "%s listening on %s" % (program, listening)
        if listening != self.endpoint:
            line += " (advertised as %s)" % self.endpoint
        print(line, file=sys.stderr, flush=True)
        # A timed wait keeps the main thread responsive to signals.
        while not stop.wait(1.0):
            pass
        logger.info("signal %d, shutting down", received[0])
        self.shutdown()
        return 0

    # Calls -------------------------------------------------------------------

    def _invoke(self, request, context):
        tool = self._tools.get(request.tool_name)
        if tool is None:
            _abort(context, ToolError(
                grpc.StatusCode.NOT_FOUND,
                "this worker serves no tool named '%s'" % request.tool_name,
                reason="TOOL_NOT_FOUND"))
        with self._calls:
            draining = self._draining
            self._in_flight += 1
        try:
            result = self._answer(tool, request, context, draining)
        finally:
            with self._calls:
                self._in_flight -= 1
                self._calls.notify_all()
        if result.error is not None:
            _abort(context, result.error)
        return tool_worker_pb2.InvokeToolResponse(output=result.output)

    def _answer(self, tool, request, context, draining) -> _Result:
        key = request.idempotency_key
        if not key:
            if draining:
                return _Result(error=call_not_started(
                    "the tool worker is shutting down"))
            return self._run(tool, request, context)
        # Even while draining, a call this replica ran (or is running) gets
        # that run's result: refusing it as not started would let the gateway
        # run it a second time elsewhere.
        result, running = self._dedupe.join(key, may_run=not draining)
        if result is not None:
            return result
        if running is not None:
            try:
                return running.result(timeout=context.time_remaining())
            except concurrent.futures.TimeoutError:
                return _Result(error=ToolError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    "the same call is still running on this worker"))
        if draining:
            return _Result(error=call_not_started(
                "the tool worker is shutting down"))
        result = _Result(error=ToolError(grpc.StatusCode.INTERNAL,
                                         "the tool worker failed"))
        try:
            result = self._run(tool, request, context)
        finally:
            # Always, so duplicates waiting on this run are never stranded.
            self._dedupe.finish(key, result)
        return result

    def _run(self, tool, request, context) -> _Result:
        try:
            arguments = _parse_arguments(request.arguments)
        except ToolError as error:
            return _Result(error=error)
        call = CallContext(
            idempotency_key=request.idempotency_key,
            tool_call_id=request.tool_call_id, run_id=request.run_id,
            thread_id=request.thread_id, assistant_id=request.assistant_id,
            _grpc_context=context)
        try:
            return _Result(output=_serialize_output(
                tool.handler(arguments, call)))
        except ToolError as error:
            return _Result(error=error)
        # BaseException too: even sys.exit() in a tool must not end the worker.
        except BaseException as error:
            logger.exception("tool %s failed (call %s)", tool.name,
                             request.tool_call_id or request.idempotency_key)
            # The message reaches the model, and exception text may hold
            # secrets: only the type goes out, the log has the rest.
            return _Result(error=ToolError(
                grpc.StatusCode.INTERNAL,
                "tool '%s' failed: %s (details in the worker's log)" %
                (tool.name, type(error).__name__),
                reason="TOOL_HANDLER_FAILED"))

    # Registry ----------------------------------------------------------------

    def _auth_metadata(self):
        if not self._token:
            return ()
        return (("authorization", "Bearer " + self._token),)

    def _register_once(self, timeout, wait_for_ready=False):
        response = self._registry.RegisterWorker(
            tool_worker_pb2.RegisterWorkerRequest(
                worker_id=self.worker_id, endpoint=self.endpoint,
                tools=[tool.to_proto() for tool in self._tools.values()],
                lease_ttl_ms=self._lease_ttl_ms),
            metadata=self._auth_metadata(), timeout=timeout,
            wait_for_ready=wait_for_ready)
        interval_s = response.heartbeat_interval_ms / 1000.0
        if interval_s <= 0 and response.lease_ttl_ms > 0:
            interval_s = response.lease_ttl_ms / 3000.0  # three per lease
        if interval_s <= 0:
            interval_s = DEFAULT_HEARTBEAT_INTERVAL_S
        with self._lease_lock:
            self._lease_id = response.lease_id
            self._heartbeat_interval_s = interval_s

    def _unregister(self):
        with self._lease_lock:
            lease_id = self._lease_id
        try:
            self._registry.UnregisterWorker(
                tool_worker_pb2.UnregisterWorkerRequest(
                    worker_id=self.worker_id, lease_id=lease_id),
                metadata=self._auth_metadata(), timeout=UNREGISTER_TIMEOUT_S)
        except grpc.RpcError as error:
            # The lease expires by itself; shutting down matters more.
            logger.warning("UnregisterWorker to %s failed: %s: %s",
                           self.gateway, error.code().name, error.details())

    def _register_with_retry(self):
        deadline = time.monotonic() + self._register_timeout_s
        backoff = BACKOFF_INITIAL_S
        while True:
            remaining = deadline - time.monotonic()
            try:
                # Waiting for the channel sends the call as soon as the
                # gateway accepts connections instead of at the next retry.
                self._register_once(
                    timeout=max(0.05, min(REGISTRY_RPC_TIMEOUT_S, remaining)),
                    wait_for_ready=True)
                return
            except grpc.RpcError as error:
                if error.code() not in TRANSIENT_CODES:
                    raise RegistrationError(
                        error.code(), "RegisterWorker to %s failed: %s" %
                        (self.gateway, error.details())) from None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RegistrationError(
                        error.code(), "RegisterWorker to %s failed for %g s: %s"
                        % (self.gateway, self._register_timeout_s,
                           error.details())) from None
                logger.info("gateway %s not ready (%s); retrying", self.gateway,
                            error.code().name)
                time.sleep(min(backoff, remaining))
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _heartbeat_loop(self):
        # Set when the gateway forgot the lease; the next tick registers anew.
        registered = True
        while True:
            with self._lease_lock:
                interval_s = self._heartbeat_interval_s
                lease_id = self._lease_id
            if self._stop_heartbeats.wait(interval_s):
                return
            try:
                if not registered:
                    self._register_once(timeout=REGISTRY_RPC_TIMEOUT_S)
                    registered = True
                    logger.info("registered again with %s", self.gateway)
                    continue
                with self._calls:
                    in_flight = self._in_flight
                self._registry.Heartbeat(
                    tool_worker_pb2.HeartbeatRequest(
                        worker_id=self.worker_id, lease_id=lease_id,
                        in_flight=in_flight),
                    metadata=self._auth_metadata(),
                    timeout=REGISTRY_RPC_TIMEOUT_S)
            except grpc.RpcError as error:
                if registered and error.code() == grpc.StatusCode.NOT_FOUND:
                    # The gateway restarted or the lease expired: register now
                    # rather than a tick later, so the tools come back fast.
                    logger.info("lease lost (%s); registering again",
                                error.details())
                    registered = False
                    try:
                        self._register_once(timeout=REGISTRY_RPC_TIMEOUT_S)
                        registered = True
                    except grpc.RpcError as retry_error:
                        logger.warning("RegisterWorker failed: %s: %s",
                                       retry_error.code().name,
                                       retry_error.details())
                else:
                    # Transient, or a refused re-registration: keep trying at
                    # the heartbeat interval; the lease may still be alive.
                    logger.warning("%s failed: %s: %s",
                                   "Heartbeat" if registered else
                                   "RegisterWorker", error.code().name,
                                   error.details())


# TLS -------------------------------------------------------------------------


def _read_pem(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as file:
            pem = file.read()
    except OSError as error:
        raise ValueError("cannot read %s file %r: %s" %
                         (what, path, error.strerror)) from error
    if b"-----BEGIN " not in pem:
        raise ValueError("%s file %r holds no PEM block" % (what, path))
    return pem


def _check_pair(cert_file: str, key_file: str):
    if bool(cert_file) != bool(key_file):
        raise ValueError("TLS needs both a certificate and its private key "
                         "(certificate %r, key %r)" % (cert_file, key_file))


def _server_credentials(cert_file: str, key_file: str, client_ca_file: str):
    """None (plaintext) when nothing is set; TLS with cert+key; mutual TLS
    (client certificates required and verified) with a client CA."""
    if not (cert_file or key_file or client_ca_file):
        return None
    _check_pair(cert_file, key_file)
    if not cert_file:
        raise ValueError("a client CA file needs a server certificate and key")
    pair = (_read_pem(key_file, "TLS private key"),
            _read_pem(cert_file, "TLS certificate"))
    ca = _read_pem(client_ca_file, "TLS client CA") if client_ca_file else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca,
                                       require_client_auth=ca is not None)


def _channel_credentials(ca_file: str, cert_file: str, key_file: str):
    """None (plaintext) when nothing is set; else TLS verified against ca_file
    (or the system's roots), presenting cert+key when set."""
    if not (ca_file or cert_file or key_file):
        return None
    _check_pair(cert_file, key_file)
    return grpc.ssl_channel_credentials(
        root_certificates=_read_pem(ca_file, "TLS CA") if ca_file else None,
        private_key=(_read_pem(key_file, "TLS client private key")
                     if key_file else None),
        certificate_chain=(_read_pem(cert_file, "TLS client certificate")
                           if cert_file else None))


def _channel(target: str, credentials, options):
    if credentials is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, credentials, options=options)


# Flags -----------------------------------------------------------------------


def add_worker_flags(parser: argparse.ArgumentParser):
    """The standard worker flags, each defaulting to an environment variable
    (as the C++ SDK's WorkerOptionsFromFlags)."""
    env = os.environ.get
    parser.add_argument("--gateway", default=env("ASSISTANTS_GATEWAY", ""),
                        help="host:port of the gateway's ToolRegistryService; "
                        "empty serves without registering "
                        "(env ASSISTANTS_GATEWAY)")
    parser.add_argument("--listen", default=env("WORKER_LISTEN", "127.0.0.1:0"),
                        help="where to serve; port 0 picks a free port "
                        "(env WORKER_LISTEN)")
    parser.add_argument("--advertise", default=env("WORKER_ADVERTISE", ""),
                        help="host:port the gateway dials; default: the listen "
                        "host with the bound port (env WORKER_ADVERTISE)")
    parser.add_argument("--worker_id", default=env("WORKER_ID", ""),
                        help="stable per replica; default <hostname>-<pid> "
                        "(env WORKER_ID)")
    parser.add_argument("--token_file",
                        default=env("ASSISTANTS_WORKER_TOKEN_FILE", ""),
                        help="file holding the gateway's registration token "
                        "(env ASSISTANTS_WORKER_TOKEN_FILE; else the token "
                        "itself in env ASSISTANTS_WORKER_TOKEN)")
    parser.add_argument("--lease_ttl_ms", type=int, default=0,
                        help="requested lease; 0: the gateway default")
    for flag, variable, help_text in (
            ("--gateway_tls_ca_file", "ASSISTANTS_GATEWAY_TLS_CA_FILE",
             "PEM CA the gateway's certificate must chain to; set: register "
             "over TLS"),
            ("--gateway_tls_cert_file", "ASSISTANTS_GATEWAY_TLS_CERT_FILE",
             "PEM client certificate for a gateway that demands one"),
            ("--gateway_tls_key_file", "ASSISTANTS_GATEWAY_TLS_KEY_FILE",
             "PEM private key of --gateway_tls_cert_file"),
            ("--tls_cert_file", "WORKER_TLS_CERT_FILE",
             "PEM certificate chain this worker serves TLS with"),
            ("--tls_key_file", "WORKER_TLS_KEY_FILE",
             "PEM private key of --tls_cert_file"),
            ("--tls_client_ca_file", "WORKER_TLS_CLIENT_CA_FILE",
             "PEM CA; set: only callers with a certificate it signed (the "
             "gateway) may call")):
        parser.add_argument(flag, default=env(variable, ""),
                            help="%s (env %s)" % (help_text, variable))


def worker_options_from_args(args: argparse.Namespace) -> dict:
    """Worker keyword arguments from parsed add_worker_flags() flags."""
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as file:
            token = file.read().strip()  # files usually end with a newline
    else:
        token = os.environ.get("ASSISTANTS_WORKER_TOKEN", "")
    return dict(gateway=args.gateway, listen=args.listen,
                advertise=args.advertise or None,
                worker_id=args.worker_id or None, token=token,
                lease_ttl_ms=args.lease_ttl_ms,
                gateway_tls_ca_file=args.gateway_tls_ca_file,
                gateway_tls_cert_file=args.gateway_tls_cert_file,
                gateway_tls_key_file=args.gateway_tls_key_file,
                tls_cert_file=args.tls_cert_file,
                tls_key_file=args.tls_key_file,
                tls_client_ca_file=args.tls_client_ca_file)


def worker_options_from_flags(description: str = None, argv=None) -> dict:
    """Parses the standard worker flags from argv (default sys.argv)."""
    parser = argparse.ArgumentParser(description=description)
    add_worker_flags(parser)
    return worker_options_from_args(parser.parse_args(argv))
