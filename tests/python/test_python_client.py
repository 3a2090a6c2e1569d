#!/usr/bin/python3
"""Contract test from a second language: drives the real assistants-gateway
binary through Python stubs generated from the public protos.

It proves that the .proto files alone are enough for a non-C++ client (the
stubs are generated here, not shipped), and that the rich error model
(google.rpc.Status in the grpc-status-details-bin trailer, with an ErrorInfo
and a BadRequest) decodes with stock tooling.

Run with Debian's interpreter, which sees python3-grpcio and python3-protobuf:

    /usr/bin/python3 tests/python/test_python_client.py [GATEWAY_BINARY]

The gateway binary is the first argument, else $ASSISTANTS_GATEWAY_BIN, else
<source root>/build/service/assistants-gateway. The source root (for the
protos) is $ASSISTANTS_SOURCE_DIR, else two directories above this file.
"""

import glob
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest

import grpc

GOOGLEAPIS_DIR = "/usr/share/gocode/src/github.com/gogo/googleapis"
ERROR_DOMAIN = "assistants.gateway"
STARTUP_TIMEOUT_SECONDS = 30
RPC_TIMEOUT_SECONDS = 10

SOURCE_DIR = os.environ.get("ASSISTANTS_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))

# Filled in by setUpModule: the generated modules and the running gateway.
pb = {}
gateway = None


def generate_stubs(out_dir):
    """Generates the Python messages and gRPC stubs into out_dir."""
    protoc = shutil.which("protoc")
    plugin = shutil.which("grpc_python_plugin")
    if not protoc or not plugin:
        raise RuntimeError("protoc and grpc_python_plugin must be on PATH")
    proto_dir = os.path.join(SOURCE_DIR, "proto")
    assistants_protos = sorted(
        os.path.relpath(p, proto_dir)
        for p in glob.glob(os.path.join(proto_dir, "assistants", "v1", "*.proto")))
    subprocess.run(
        [protoc, "-I", proto_dir, "-I", "/usr/include",
         "--python_out=" + out_dir, "--grpc_python_out=" + out_dir,
         "--plugin=protoc-gen-grpc_python=" + plugin] + assistants_protos,
        check=True)
    subprocess.run(
        [protoc, "-I", GOOGLEAPIS_DIR, "-I", "/usr/include",
         "--python_out=" + out_dir,
         "google/rpc/status.proto", "google/rpc/error_details.proto"],
        check=True)


def import_stubs(out_dir):
    """Imports the generated modules. `google` is a namespace package in
    Debian, so google.rpc from out_dir joins the installed google.protobuf."""
    sys.path.insert(0, out_dir)
    for name in ("assistants.v1.common_pb2", "assistants.v1.assistant_pb2",
                 "assistants.v1.assistant_pb2_grpc", "assistants.v1.thread_pb2",
                 "assistants.v1.thread_pb2_grpc", "assistants.v1.message_pb2",
                 "assistants.v1.message_pb2_grpc", "google.rpc.status_pb2",
                 "google.rpc.error_details_pb2"):
        pb[name.rsplit(".", 1)[1]] = importlib.import_module(name)


class Gateway:
    """A running assistants-gateway child process on a free port."""

    def __init__(self, binary):
        self.process = subprocess.Popen(
            [binary, "--listen=127.0.0.1:0", "--db=:memory:"],
            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.stderr_lines = []
        self.address = None
        ready = threading.Event()
        # Keep reading stderr for the whole life of the process so it never
        # blocks on a full pipe; the first "listening on" line gives the port.
        def drain():
            for line in self.process.stderr:
                self.stderr_lines.append(line)
                match = re.search(r"listening on (\S+:\d+)", line)
                if match and self.address is None:
                    self.address = match.group(1)
                    ready.set()
            ready.set()  # EOF: the process exited.
        self.reader = threading.Thread(target=drain, daemon=True)
        self.reader.start()
        if not ready.wait(STARTUP_TIMEOUT_SECONDS) or self.address is None:
            self.stop()
            raise RuntimeError("gateway did not start; stderr:\n" +
                               "".join(self.stderr_lines))

    def stop(self):
        """Stops the gateway with SIGTERM (SIGKILL if it hangs) and returns
        its exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(timeout=5)
        return self.process.returncode


def setUpModule():
    global gateway
    binary = os.environ.get("ASSISTANTS_GATEWAY_BIN") or os.path.join(
        SOURCE_DIR, "build", "service", "assistants-gateway")
    stub_dir = tempfile.mkdtemp(prefix="assistants-py-stubs-")
    try:
        generate_stubs(stub_dir)
        import_stubs(stub_dir)
    finally:
        # Modules are loaded now; the files are no longer needed.
        shutil.rmtree(stub_dir, ignore_errors=True)
    gateway = Gateway(binary)


def tearDownModule():
    if gateway is None:
        return
    code = gateway.stop()
    if code != 0:
        raise AssertionError("gateway exited with %d on SIGTERM; stderr:\n%s" %
                             (code, "".join(gateway.stderr_lines)))


class GatewayClientTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.grpc = grpc
        cls.channel = grpc.insecure_channel(gateway.address)
        grpc.channel_ready_future(cls.channel).result(
            timeout=STARTUP_TIMEOUT_SECONDS)
        cls.assistants = pb["assistant_pb2_grpc"].AssistantServiceStub(
            cls.channel)
        cls.threads = pb["thread_pb2_grpc"].ThreadServiceStub(cls.channel)
        cls.messages = pb["message_pb2_grpc"].MessageServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()

    # Helpers -----------------------------------------------------------------

    def create_assistant(self, **overrides):
        """Creates the stock-analyst assistant; `overrides` replace or add
        CreateAssistantRequest fields."""
        common = pb["common_pb2"]
        function = common.FunctionDefinition(
            name="get_stock_price",
            description="Latest price of a stock, by ticker symbol")
        function.parameters.update({
            "type": "object",
            "properties": {"symbol": {"type": "string"}},
            "required": ["symbol"],
        })
        fields = dict(
            model="gpt-4o", name="Data Analyst",
            instructions="Answer questions about stocks.",
            tools=[
                common.Tool(code_interpreter=common.CodeInterpreterTool()),
                common.Tool(function=common.FunctionTool(function=function)),
            ],
            metadata={"team": "finance"})
        fields.update(overrides)
        request = pb["assistant_pb2"].CreateAssistantRequest(**fields)
        return self.assistants.CreateAssistant(
            request, timeout=RPC_TIMEOUT_SECONDS).assistant

    def rpc_error(self, call, request):
        """Makes a call expected to fail and returns the grpc.RpcError."""
        with self.assertRaises(self.grpc.RpcError) as raised:
            call(request, timeout=RPC_TIMEOUT_SECONDS)
        return raised.exception

    def decode_details(self, error):
        """Decodes grpc-status-details-bin into (Status, [ErrorInfo],
        [BadRequest])."""
        trailers = dict(error.trailing_metadata() or ())
        self.assertIn("grpc-status-details-bin", trailers)
        status = pb["status_pb2"].Status.FromString(
            trailers["grpc-status-details-bin"])
        details = pb["error_details_pb2"]
        infos, bad_requests = [], []
        for any_detail in status.details:
            if any_detail.Is(details.ErrorInfo.DESCRIPTOR):
                info = details.ErrorInfo()
                any_detail.Unpack(info)
                infos.append(info)
            elif any_detail.Is(details.BadRequest.DESCRIPTOR):
                bad_request = details.BadRequest()
                any_detail.Unpack(bad_request)
                bad_requests.append(bad_request)
        return status, infos, bad_requests

    # Tests -------------------------------------------------------------------

    def test_assistant_create_get_list_update(self):
        created = self.create_assistant(temperature=0.25)
        self.assertTrue(created.id.startswith("asst_"), created.id)
        self.assertEqual(created.object, "assistant")
        self.assertEqual(created.name, "Data Analyst")
        self.assertEqual(created.model, "gpt-4o")
        self.assertAlmostEqual(created.temperature, 0.25)
        self.assertEqual(len(created.tools), 2)
        self.assertEqual(created.tools[0].WhichOneof("tool"), "code_interpreter")
        function = created.tools[1].function.function
        self.assertEqual(function.name, "get_stock_price")
        self.assertEqual(function.parameters["type"], "object")
        self.assertEqual(list(function.parameters["required"]), ["symbol"])

        assistant_pb2 = pb["assistant_pb2"]
        got = self.assistants.GetAssistant(
            assistant_pb2.GetAssistantRequest(assistant_id=created.id),
            timeout=RPC_TIMEOUT_SECONDS).assistant
        self.assertEqual(got, created)

        second = self.create_assistant(name="Second")
        listed = self.assistants.ListAssistants(
            assistant_pb2.ListAssistantsRequest(
                options=pb["common_pb2"].ListOptions(
                    order=pb["common_pb2"].LIST_ORDER_ASC, limit=100)),
            timeout=RPC_TIMEOUT_SECONDS)
        self.assertEqual(listed.object, "list")
        ids = [a.id for a in listed.data]
        self.assertIn(created.id, ids)
        self.assertIn(second.id, ids)
        self.assertLess(ids.index(created.id), ids.index(second.id))
        self.assertEqual(listed.first_id, ids[0])
        self.assertEqual(listed.last_id, ids[-1])

        # Metadata is replaced whole; fields not in the request are kept.
        updated = self.assistants.UpdateAssistant(
            assistant_pb2.UpdateAssistantRequest(
                assistant_id=created.id, metadata={"tier": "gold"}),
            timeout=RPC_TIMEOUT_SECONDS).assistant
        self.assertEqual(dict(updated.metadata), {"tier": "gold"})
        self.assertEqual(updated.name, "Data Analyst")
        self.assertEqual(len(updated.tools), 2)
        got = self.assistants.GetAssistant(
            assistant_pb2.GetAssistantRequest(assistant_id=created.id),
            timeout=RPC_TIMEOUT_SECONDS).assistant
        self.assertEqual(got, updated)

    def test_thread_with_messages(self):
        message_pb2 = pb["message_pb2"]
        thread = self.threads.CreateThread(
            pb["thread_pb2"].CreateThreadRequest(
                messages=[message_pb2.MessageInput(
                    role=message_pb2.MESSAGE_ROLE_USER,
                    text="What did ACME close at?")],
                metadata={"customer": "c-42"}),
            timeout=RPC_TIMEOUT_SECONDS).thread
        self.assertTrue(thread.id.startswith("thread_"), thread.id)
        self.assertEqual(dict(thread.metadata), {"customer": "c-42"})

        added = self.messages.CreateMessage(
            message_pb2.CreateMessageRequest(
                thread_id=thread.id,
                message=message_pb2.MessageInput(
                    role=message_pb2.MESSAGE_ROLE_ASSISTANT,
                    text="ACME closed at 12.30.")),
            timeout=RPC_TIMEOUT_SECONDS).message
        self.assertEqual(added.thread_id, thread.id)
        self.assertEqual(added.object, "thread.message")

        def list_messages(order, limit=0):
            return self.messages.ListMessages(
                message_pb2.ListMessagesRequest(
                    thread_id=thread.id,
                    options=pb["common_pb2"].ListOptions(order=order,
                                                         limit=limit)),
                timeout=RPC_TIMEOUT_SECONDS)

        ascending = list_messages(pb["common_pb2"].LIST_ORDER_ASC)
        self.assertEqual(
            [(m.role, m.content[0].text.value) for m in ascending.data],
            [(message_pb2.MESSAGE_ROLE_USER, "What did ACME close at?"),
             (message_pb2.MESSAGE_ROLE_ASSISTANT, "ACME closed at 12.30.")])
        self.assertEqual(ascending.data[1], added)
        self.assertFalse(ascending.has_more)

        # UNSPECIFIED order means newest first, as in OpenAI.
        default_order = list_messages(pb["common_pb2"].LIST_ORDER_UNSPECIFIED)
        self.assertEqual(list(default_order.data), list(reversed(ascending.data)))

        first_page = list_messages(pb["common_pb2"].LIST_ORDER_ASC, limit=1)
        self.assertEqual([m.id for m in first_page.data], [ascending.data[0].id])
        self.assertTrue(first_page.has_more)

    def test_validation_error_carries_error_info_and_bad_request(self):
        request = pb["assistant_pb2"].CreateAssistantRequest(
            model="gpt-4o", temperature=3.0)
        error = self.rpc_error(self.assistants.CreateAssistant, request)
        self.assertEqual(error.code(), self.grpc.StatusCode.INVALID_ARGUMENT,
                         error.details())
        status, infos, bad_requests = self.decode_details(error)
        self.assertEqual(status.code, self.grpc.StatusCode.INVALID_ARGUMENT.value[0])
        self.assertEqual(len(infos), 1, status)
        self.assertTrue(infos[0].reason)
        self.assertRegex(infos[0].reason, r"^[A-Z][A-Z0-9_]*$")
        self.assertEqual(infos[0].domain, ERROR_DOMAIN)
        self.assertEqual(infos[0].metadata["field"], "temperature")
        self.assertEqual(len(bad_requests), 1, status)
        self.assertIn("temperature",
                      [v.field for v in bad_requests[0].field_violations])

    def test_not_found_names_the_id(self):
        missing = "asst_doesNotExist0000000000"
        error = self.rpc_error(
            self.assistants.GetAssistant,
            pb["assistant_pb2"].GetAssistantRequest(assistant_id=missing))
        self.assertEqual(error.code(), self.grpc.StatusCode.NOT_FOUND)
        _, infos, _ = self.decode_details(error)
        self.assertEqual(len(infos), 1)
        self.assertEqual(infos[0].reason, "ASSISTANT_NOT_FOUND")
        self.assertEqual(infos[0].metadata["assistant_id"], missing)


if __name__ == "__main__":
    # An optional first argument is the gateway binary; unittest gets the rest.
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        os.environ["ASSISTANTS_GATEWAY_BIN"] = sys.argv.pop(1)
    unittest.main(verbosity=2)
