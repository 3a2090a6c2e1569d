#!/usr/bin/python3
"""Test of the Python tool worker: the calculator example and its mini-SDK
(tool_workers/examples/python), against a fake gateway registry.

The fake ToolRegistryService runs in this process, records what the worker
sends and checks its registration token; the calculator worker runs as a
real child process through its run.sh, so the stub generation, the flags,
the "listening on" line, SIGTERM handling and the exit code are covered as a
user would meet them. Shutdown draining and the CALL_NOT_STARTED refusal
need a call held in flight, so they are tested on the SDK in-process with a
tool that blocks.

Run with Debian's interpreter, which sees python3-grpcio and python3-protobuf:

    /usr/bin/python3 tests/python/test_calculator_worker.py

The source root is $ASSISTANTS_SOURCE_DIR, else two directories above this
file. No gateway binary is needed.
"""

import collections
import concurrent.futures
import importlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc
from google.protobuf import json_format

GOOGLEAPIS_DIR = "/usr/share/gocode/src/github.com/gogo/googleapis"
ERROR_DOMAIN = "assistants.gateway"
TOKEN = "test-registration-token"
# Short, so heartbeats and re-registration show up within a test.
HEARTBEAT_INTERVAL_MS = 100
LEASE_TTL_MS = 1000
# Waits are generous for a loaded machine; they end as soon as the awaited
# thing happens, so a passing run stays fast.
WAIT_SECONDS = 15
RPC_TIMEOUT_SECONDS = 10

SOURCE_DIR = os.environ.get("ASSISTANTS_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
WORKER_DIR = os.path.join(SOURCE_DIR, "tool_workers", "examples", "python")
RUN_SH = os.path.join(WORKER_DIR, "run.sh")

CALCULATOR_PARAMETERS = {
    "type": "object",
    "properties": {
        "expression": {
            "type": "string",
            "description": "An arithmetic expression such as 1000 * 237.5",
        },
    },
    "required": ["expression"],
}

# Filled in by setUpModule.
pb = {}
registry = None
stub_dir = None
token_file = None


def generate_stubs(out_dir):
    """The repository's stubs (the same script the workers use) and, when
    googleapis is installed, google.rpc to decode error details with."""
    subprocess.run([os.path.join(SOURCE_DIR, "scripts", "python-stubs.sh"),
                    out_dir], check=True)
    names = ["assistants.v1.tool_worker_pb2",
             "assistants.v1.tool_worker_pb2_grpc"]
    protoc = shutil.which("protoc")
    if protoc and os.path.isdir(GOOGLEAPIS_DIR):
        subprocess.run(
            [protoc, "-I", GOOGLEAPIS_DIR, "-I", "/usr/include",
             "--python_out=" + out_dir,
             "google/rpc/status.proto", "google/rpc/error_details.proto"],
            check=True)
        names += ["google.rpc.status_pb2", "google.rpc.error_details_pb2"]
    # `google` is a namespace package in Debian, so google.rpc from out_dir
    # joins the installed google.protobuf.
    sys.path.insert(0, out_dir)
    sys.path.insert(0, WORKER_DIR)  # the SDK, for the in-process tests
    for name in names:
        pb[name.rsplit(".", 1)[1]] = importlib.import_module(name)


class FakeRegistry:
    """ToolRegistryService that records requests, checks the bearer token and
    can forget a lease (as a restarted gateway does)."""

    def __init__(self, port=0):
        self.changed = threading.Condition()
        self.registrations = []  # (RegisterWorkerRequest, lease_id)
        self.heartbeats = []
        self.unregistrations = []
        self.authorizations = []  # (worker_id, authorization metadata)
        self._leases = {}  # worker_id -> live lease_id
        self._next_lease = 1
        self._forget = set()  # worker_ids whose next heartbeat gets NOT_FOUND

        grpc_module = pb["tool_worker_pb2_grpc"]
        fake = self

        class Servicer(grpc_module.ToolRegistryServiceServicer):
            def RegisterWorker(self, request, context):
                return fake.register(request, context)

            def Heartbeat(self, request, context):
                return fake.heartbeat(request, context)

            def UnregisterWorker(self, request, context):
                return fake.unregister(request, context)

        self.server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers=8))
        grpc_module.add_ToolRegistryServiceServicer_to_server(Servicer(),
                                                              self.server)
        self.address = "127.0.0.1:%d" % self.server.add_insecure_port(
            "127.0.0.1:%d" % port)
        self.server.start()

    def _authenticate(self, request, context):
        authorization = dict(context.invocation_metadata()).get("authorization")
        with self.changed:
            self.authorizations.append((request.worker_id, authorization))
        if authorization != "Bearer " + TOKEN:
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "bad registration token")

    def register(self, request, context):
        self._authenticate(request, context)
        with self.changed:
            lease_id = "lease-%d" % self._next_lease
            self._next_lease += 1
            self._leases[request.worker_id] = lease_id
            self.registrations.append((request, lease_id))
            self.changed.notify_all()
        return pb["tool_worker_pb2"].RegisterWorkerResponse(
            lease_id=lease_id, lease_ttl_ms=LEASE_TTL_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS)

    def heartbeat(self, request, context):
        self._authenticate(request, context)
        with self.changed:
            self.heartbeats.append(request)
            self.changed.notify_all()
            if request.worker_id in self._forget:
                self._forget.discard(request.worker_id)
                self._leases.pop(request.worker_id, None)
            live = self._leases.get(request.worker_id) == request.lease_id
        if not live:
            context.abort(grpc.StatusCode.NOT_FOUND, "lease not found")
        return pb["tool_worker_pb2"].HeartbeatResponse(
            lease_expires_at_ms=int(time.time() * 1000) + LEASE_TTL_MS)

    def unregister(self, request, context):
        self._authenticate(request, context)
        with self.changed:
            self.unregistrations.append(request)
            self._leases.pop(request.worker_id, None)
            self.changed.notify_all()
        return pb["tool_worker_pb2"].UnregisterWorkerResponse()

    def forget(self, worker_id):
        with self.changed:
            self._forget.add(worker_id)

    def wait_for(self, predicate):
        """Waits until predicate() (called under the lock) is true."""
        with self.changed:
            return self.changed.wait_for(predicate, timeout=WAIT_SECONDS)

    def registrations_of(self, worker_id):
        return [(r, lease) for r, lease in self.registrations
                if r.worker_id == worker_id]

    def heartbeats_of(self, worker_id):
        return [h for h in self.heartbeats if h.worker_id == worker_id]

    def unregistrations_of(self, worker_id):
        return [u for u in self.unregistrations if u.worker_id == worker_id]


class WorkerProcess:
    """The calculator worker started through run.sh, as a user would."""

    def __init__(self, *args):
        # A session of its own, so a hung worker can be killed with run.sh.
        self.process = subprocess.Popen(
            [RUN_SH] + list(args), stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.stderr_lines = []
        self.address = None
        self._listening = threading.Event()
        listening = self._listening

        # Read stderr for the process' whole life so it never blocks on a full
        # pipe; the "listening on" line gives the address.
        def drain():
            for line in self.process.stderr:
                self.stderr_lines.append(line)
                match = re.search(r" listening on (\S+:\d+)", line)
                if match and self.address is None:
                    self.address = match.group(1)
                    listening.set()
            listening.set()  # EOF: the process exited
        self.reader = threading.Thread(target=drain, daemon=True)
        self.reader.start()

    def wait_listening(self):
        """True once the worker printed its address (it registered first)."""
        self._listening.wait(WAIT_SECONDS)
        return self.address is not None

    def stderr(self):
        return "".join(self.stderr_lines)

    def wait(self):
        """The exit code; kills the process group if it hangs."""
        try:
            self.process.wait(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.reader.join(timeout=5)
        self.process.stderr.close()
        return self.process.returncode

    def stop(self):
        """SIGTERM, as an orchestrator stops it; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait()


def start_worker(worker_id, *extra):
    worker = WorkerProcess("--gateway", registry.address, "--token_file",
                           token_file, "--worker_id", worker_id,
                           "--lease_ttl_ms", str(LEASE_TTL_MS), *extra)
    if not worker.wait_listening():
        code = worker.stop()
        raise AssertionError("worker did not start (exit %s); stderr:\n%s" %
                             (code, worker.stderr()))
    return worker


def setUpModule():
    global registry, stub_dir, token_file
    stub_dir = tempfile.mkdtemp(prefix="assistants-py-worker-test-")
    generate_stubs(stub_dir)
    token_file = os.path.join(stub_dir, "token")
    with open(token_file, "w", encoding="utf-8") as file:
        file.write(TOKEN + "\n")  # the trailing newline is not part of it
    registry = FakeRegistry()


def tearDownModule():
    if registry is not None:
        registry.server.stop(None)
    shutil.rmtree(stub_dir, ignore_errors=True)


class InvokeMixin:
    """InvokeTool over `self.stub`, and the error details the SDK sends."""

    def invoke(self, arguments, tool_name="calculator", key="", **fields):
        request = pb["tool_worker_pb2"].InvokeToolRequest(
            tool_name=tool_name, arguments=arguments, idempotency_key=key,
            **fields)
        return self.stub.InvokeTool(request, timeout=RPC_TIMEOUT_SECONDS).output

    def invoke_error(self, arguments, tool_name="calculator", key=""):
        with self.assertRaises(grpc.RpcError) as raised:
            self.invoke(arguments, tool_name, key)
        return raised.exception

    def calculate(self, expression):
        return json.loads(self.invoke(json.dumps({"expression": expression})))

    def assertReason(self, error, reason):
        """The google.rpc.Status in grpc-status-details-bin holds one
        ErrorInfo with `reason` (None: no details at all). Skipped without
        googleapis to decode it."""
        trailers = dict(error.trailing_metadata() or ())
        if reason is None:
            self.assertNotIn("grpc-status-details-bin", trailers)
            return
        if "status_pb2" not in pb:
            return
        status = pb["status_pb2"].Status.FromString(
            trailers["grpc-status-details-bin"])
        self.assertEqual(status.code, error.code().value[0])
        self.assertEqual(status.message, error.details())
        self.assertEqual(len(status.details), 1, status)
        info = pb["error_details_pb2"].ErrorInfo()
        self.assertTrue(status.details[0].Unpack(info))
        self.assertEqual((info.reason, info.domain), (reason, ERROR_DOMAIN))


class CalculatorWorkerTest(InvokeMixin, unittest.TestCase):
    WORKER_ID = "calculator-test-1"

    @classmethod
    def setUpClass(cls):
        cls.worker = start_worker(cls.WORKER_ID)
        cls.channel = grpc.insecure_channel(cls.worker.address)
        cls.stub = pb["tool_worker_pb2_grpc"].ToolWorkerServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.worker.stop()

    def test_registration(self):
        registrations = registry.registrations_of(self.WORKER_ID)
        self.assertTrue(registrations)
        request, _ = registrations[0]
        # The default advertised endpoint is the listen host and bound port.
        self.assertEqual(request.endpoint, self.worker.address)
        self.assertEqual(request.lease_ttl_ms, LEASE_TTL_MS)
        self.assertEqual(len(request.tools), 1)
        tool = request.tools[0]
        self.assertEqual(tool.function.name, "calculator")
        self.assertEqual(tool.function.description,
                         "Evaluate an arithmetic expression and return the "
                         "result")
        self.assertEqual(json_format.MessageToDict(tool.function.parameters),
                         CALCULATOR_PARAMETERS)
        self.assertFalse(tool.function.HasField("strict"))
        self.assertTrue(tool.idempotent)
        self.assertEqual(tool.timeout_ms, 0)
        self.assertEqual(tool.max_concurrency, 0)
        # Every registry call carried the token from --token_file.
        self.assertEqual(
            {auth for worker_id, auth in registry.authorizations
             if worker_id == self.WORKER_ID}, {"Bearer " + TOKEN})
        self.assertEqual(
            sum(" listening on " in line for line in self.worker.stderr_lines),
            1, self.worker.stderr())

    def test_arithmetic(self):
        self.assertEqual(self.calculate("1000 * 237.5"),
                         {"expression": "1000 * 237.5", "result": 237500})
        self.assertEqual(self.calculate("2 + 3 * 4")["result"], 14)
        self.assertEqual(self.calculate("(2 + 3) * 4")["result"], 20)
        self.assertEqual(self.calculate("-2 ** 2")["result"], -4)
        self.assertEqual(self.calculate("7 / 2")["result"], 3.5)
        self.assertEqual(self.calculate("7 // 2 + 7 % 2")["result"], 4)

    def test_errors_are_outputs_the_model_can_read(self):
        for expression in ("1 / 0", "__import__('os')",
                           "__import__('os').system('touch /tmp/pwned')",
                           "x + 1", "1 +", "9 ** 9 ** 9", "1" * 1001):
            with self.subTest(expression=expression[:40]):
                output = self.calculate(expression)
                self.assertEqual(list(output), ["error"], output)
                self.assertTrue(output["error"])
        self.assertIn("zero", self.calculate("1 / 0")["error"])

    def test_invalid_arguments(self):
        for arguments in ("{not json", "[1, 2]", '"1 + 1"', "{}",
                          '{"expression": 42}'):
            with self.subTest(arguments=arguments):
                error = self.invoke_error(arguments)
                self.assertEqual(error.code(),
                                 grpc.StatusCode.INVALID_ARGUMENT,
                                 error.details())
        self.assertIn("arguments are not valid JSON",
                      self.invoke_error("{not json").details())
        # "" means no arguments: a missing expression, not bad JSON.
        self.assertNotIn("not valid JSON", self.invoke_error("").details())

    def test_unknown_tool(self):
        error = self.invoke_error("{}", tool_name="get_weather")
        self.assertEqual(error.code(), grpc.StatusCode.NOT_FOUND)
        self.assertIn("get_weather", error.details())

    def test_same_idempotency_key_gets_the_first_output(self):
        key = "run_dedupe:call_1"
        first = self.invoke(json.dumps({"expression": "6 * 7"}), key=key)
        # Different arguments under the same key prove the handler did not
        # run again.
        second = self.invoke(json.dumps({"expression": "1 + 1"}), key=key)
        self.assertEqual(first, second)
        self.assertEqual(json.loads(second)["result"], 42)
        other = self.invoke(json.dumps({"expression": "1 + 1"}),
                            key="run_dedupe:call_2")
        self.assertEqual(json.loads(other)["result"], 2)

    def test_heartbeats_and_registering_again_when_forgotten(self):
        def heartbeat_with(lease):
            return lambda: any(h.lease_id == lease for h in
                               registry.heartbeats_of(self.WORKER_ID))

        def registered():
            return len(registry.registrations_of(self.WORKER_ID))

        _, lease = registry.registrations_of(self.WORKER_ID)[0]
        self.assertTrue(registry.wait_for(heartbeat_with(lease)))

        before = registered()
        registry.forget(self.WORKER_ID)
        self.assertTrue(registry.wait_for(lambda: registered() > before),
                        "no registration after NOT_FOUND on Heartbeat")
        request, new_lease = registry.registrations_of(self.WORKER_ID)[-1]
        self.assertEqual(request.endpoint, self.worker.address)
        self.assertEqual(request.tools[0].function.name, "calculator")
        # Heartbeats go on with the new lease.
        self.assertTrue(registry.wait_for(heartbeat_with(new_lease)))
        self.assertEqual(self.calculate("1 + 1")["result"], 2)


class CalculatorWorkerLifecycleTest(InvokeMixin, unittest.TestCase):

    def test_sigterm_unregisters_and_exits_zero(self):
        worker = start_worker("calculator-test-2")
        try:
            with grpc.insecure_channel(worker.address) as channel:
                self.stub = pb["tool_worker_pb2_grpc"].ToolWorkerServiceStub(
                    channel)
                self.assertEqual(self.calculate("2 * 21")["result"], 42)
        finally:
            code = worker.stop()
        self.assertEqual(code, 0, worker.stderr())
        unregistrations = registry.unregistrations_of("calculator-test-2")
        self.assertEqual(len(unregistrations), 1, worker.stderr())
        _, lease = registry.registrations_of("calculator-test-2")[-1]
        self.assertEqual(unregistrations[0].lease_id, lease)

    def test_registration_waits_for_a_gateway_that_is_not_up_yet(self):
        # A free port nobody listens on yet (closed again before the worker
        # dials it).
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        worker = WorkerProcess("--gateway", "127.0.0.1:%d" % port,
                               "--token_file", token_file,
                               "--worker_id", "calculator-test-late")
        late_registry = None
        try:
            time.sleep(1.0)  # a few failed attempts
            self.assertIsNone(worker.process.poll(), worker.stderr())
            late_registry = FakeRegistry(port)
            self.assertTrue(late_registry.wait_for(
                lambda: late_registry.registrations), worker.stderr())
            self.assertTrue(worker.wait_listening(), worker.stderr())
        finally:
            self.assertEqual(worker.stop(), 0, worker.stderr())
            if late_registry is not None:
                late_registry.server.stop(None)

    def test_refused_registration_exits_one_with_the_gateway_message(self):
        bad_token = os.path.join(stub_dir, "bad-token")
        with open(bad_token, "w", encoding="utf-8") as file:
            file.write("wrong\n")
        worker = WorkerProcess("--gateway", registry.address, "--token_file",
                               bad_token, "--worker_id", "calculator-test-3")
        self.assertFalse(worker.wait_listening(), worker.stderr())
        self.assertEqual(worker.wait(), 1, worker.stderr())
        self.assertIn("bad registration token", worker.stderr())
        self.assertFalse(registry.registrations_of("calculator-test-3"))


class SdkTest(InvokeMixin, unittest.TestCase):
    """The SDK in-process, with tools the calculator cannot provide: one that
    blocks until released, ones that fail in each way."""

    DRAIN_TIMEOUTS = {"test_shutdown_cancels_calls_past_the_drain_timeout": 0.3}

    def setUp(self):
        sdk = importlib.import_module("assistants_worker")
        # The "broken" tool's traceback is expected; keep the output clean.
        logging.getLogger("assistants_worker").addHandler(logging.NullHandler())
        # One id per test, so one test's unregistration is not another's.
        self.worker_id = "sdk-" + self._testMethodName
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)
        self.calls = collections.Counter()  # handler runs by tool
        calls_lock = threading.Lock()

        def counted(handler):
            def run(arguments, context):
                with calls_lock:
                    self.calls[handler.__name__] += 1
                return handler(arguments, context)
            return run

        def slow(arguments, context):
            self.entered.release()
            self.release.wait(WAIT_SECONDS)
            return {"slow": arguments.get("n"), "run_id": context.run_id}

        def echo(arguments, context):
            return "as is: " + arguments["text"]  # a str is sent unchanged

        def broken(arguments, context):
            raise RuntimeError("secret=hunter2")

        def picky(arguments, context):
            raise sdk.ToolError(grpc.StatusCode.INVALID_ARGUMENT, "n too big")

        def busy(arguments, context):
            raise sdk.ToolError(grpc.StatusCode.UNAVAILABLE, "backend down")

        def declined(arguments, context):
            raise sdk.call_not_started("no capacity, try elsewhere")

        self.saw_cancel = threading.Event()

        def patient(arguments, context):
            # A long handler polls cancelled(), as the SDK asks.
            self.entered.release()
            deadline = time.monotonic() + WAIT_SECONDS
            while not context.cancelled() and time.monotonic() < deadline:
                time.sleep(0.01)
            if context.cancelled():
                self.saw_cancel.set()
            return "gave up"

        schema = {"type": "object", "properties": {}}
        self.worker = sdk.Worker(
            [sdk.Tool(handler.__name__, "A test tool", schema, counted(handler))
             for handler in (slow, echo, broken, picky, busy, declined,
                             patient)],
            gateway=registry.address, worker_id=self.worker_id, token=TOKEN,
            drain_timeout_s=self.DRAIN_TIMEOUTS.get(self._testMethodName,
                                                    WAIT_SECONDS))
        self.worker.start()
        self.channel = grpc.insecure_channel(self.worker.endpoint)
        self.stub = pb["tool_worker_pb2_grpc"].ToolWorkerServiceStub(
            self.channel)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)

    def tearDown(self):
        self.release.set()
        self.worker.shutdown()
        self.pool.shutdown()
        self.channel.close()

    def test_errors_on_the_wire(self):
        self.assertEqual(self.invoke('{"text": "hi"}', "echo"), "as is: hi")

        error = self.invoke_error("{}", "broken")
        self.assertEqual(error.code(), grpc.StatusCode.INTERNAL)
        self.assertIn("RuntimeError", error.details())
        self.assertNotIn("hunter2", error.details())
        self.assertReason(error, "TOOL_HANDLER_FAILED")

        error = self.invoke_error("{}", "picky")
        self.assertEqual(error.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(error.details(), "n too big")
        self.assertReason(error, None)

        error = self.invoke_error("{oops", "echo")
        self.assertEqual(error.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertReason(error, "INVALID_ARGUMENTS")

        error = self.invoke_error("{}", "nope")
        self.assertEqual(error.code(), grpc.StatusCode.NOT_FOUND)
        self.assertReason(error, "TOOL_NOT_FOUND")

        # A plain UNAVAILABLE is retried for idempotent tools only; a
        # handler's call_not_started() for any tool.
        error = self.invoke_error("{}", "busy")
        self.assertEqual(error.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertReason(error, None)
        error = self.invoke_error("{}", "declined")
        self.assertEqual(error.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(error.details(), "no capacity, try elsewhere")
        self.assertReason(error, "CALL_NOT_STARTED")

        # Still serving.
        self.assertEqual(self.invoke('{"text": "ok"}', "echo"), "as is: ok")

    def test_errors_are_remembered_except_unavailable(self):
        for tool in ("picky", "busy"):
            for _ in range(2):
                self.invoke_error("{}", tool, key="run_e:" + tool)
        self.assertEqual(self.calls["picky"], 1)
        self.assertEqual(self.calls["busy"], 2)

    def test_concurrent_duplicate_waits_for_the_first(self):
        first = self.pool.submit(self.invoke, '{"n": 1}', "slow", "run_1:c",
                                 run_id="run_1")
        self.assertTrue(self.entered.acquire(timeout=WAIT_SECONDS))
        second = self.pool.submit(self.invoke, '{"n": 2}', "slow", "run_1:c",
                                  run_id="run_1")
        time.sleep(0.2)  # let the duplicate arrive while the first runs
        self.release.set()
        self.assertEqual(first.result(WAIT_SECONDS),
                         second.result(WAIT_SECONDS))
        self.assertEqual(json.loads(first.result()),
                         {"slow": 1, "run_id": "run_1"})
        self.assertEqual(self.calls["slow"], 1)

    def test_shutdown_refuses_new_calls_and_drains(self):
        done = self.invoke('{"text": "before"}', "echo", key="run_s:done")
        in_flight = self.pool.submit(self.invoke, '{"n": 7}', "slow",
                                     "run_s:slow")
        self.assertTrue(self.entered.acquire(timeout=WAIT_SECONDS))
        stopping = self.pool.submit(self.worker.shutdown)
        self.assertTrue(registry.wait_for(
            lambda: registry.unregistrations_of(self.worker_id)))

        # New calls are refused once the worker drains (just after it
        # unregistered), without running the handler.
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                self.invoke('{"text": "x"}', "echo")
            except grpc.RpcError as error:
                refused = error
                break
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.01)
        self.assertEqual(refused.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertReason(refused, "CALL_NOT_STARTED")
        echoes = self.calls["echo"]
        self.assertEqual(self.invoke_error('{"text": "y"}', "echo",
                                           key="run_s:new").code(),
                         grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(self.calls["echo"], echoes)

        # A call this replica already answered gets that answer, not a
        # refusal that would let the gateway run it again elsewhere; one
        # still running gets that run's result.
        self.assertEqual(self.invoke('{"text": "after"}', "echo",
                                     key="run_s:done"), done)
        duplicate = self.pool.submit(self.invoke, '{"n": 8}', "slow",
                                     "run_s:slow")
        # The duplicate must be inside the worker before the first call ends
        # (after that the drained worker stops serving).
        deadline = time.monotonic() + WAIT_SECONDS
        while self.worker._in_flight < 2:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.01)

        # The call in flight still completes, then shutdown returns.
        self.assertFalse(stopping.done())
        self.release.set()
        self.assertEqual(json.loads(in_flight.result(WAIT_SECONDS))["slow"], 7)
        self.assertEqual(duplicate.result(WAIT_SECONDS), in_flight.result())
        stopping.result(WAIT_SECONDS)
        self.assertEqual(self.calls["slow"], 1)

    def test_shutdown_cancels_calls_past_the_drain_timeout(self):
        call = self.pool.submit(self.invoke, "{}", "patient")
        self.assertTrue(self.entered.acquire(timeout=WAIT_SECONDS))
        started = time.monotonic()
        self.worker.shutdown()
        # Returned once the cancelled handler did, well before it would have
        # given up by itself.
        self.assertTrue(self.saw_cancel.is_set())
        self.assertLess(time.monotonic() - started, WAIT_SECONDS / 2)
        with self.assertRaises(grpc.RpcError) as raised:
            call.result(WAIT_SECONDS)
        # gRPC's "Cancelling all calls": a plain UNAVAILABLE (the handler
        # ran), which the gateway retries for idempotent tools only.
        self.assertEqual(raised.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertReason(raised.exception, None)


if __name__ == "__main__":
    unittest.main(verbosity=2)
