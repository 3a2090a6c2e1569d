#!/usr/bin/python3
"""The seed tutorial's agent over the gateway's gRPC API, in Python.

The "Data Analyst" assistant with code_interpreter and get_stock_price, the
tutorial's question, and the run streamed and printed as the tutorial's
AgentStreamHandler prints it; function calls are answered with the
tutorial's local function while the stream stays open. Only stubs generated
from proto/ are used (run.sh generates them):

    examples/python/run.sh [--target HOST:PORT] [--model MODEL]

Runs under Debian's /usr/bin/python3 with python3-grpcio and python3-protobuf.
"""

import argparse
import json
import os
import sys

import grpc

from assistants.v1 import assistant_pb2
from assistants.v1 import assistant_pb2_grpc
from assistants.v1 import common_pb2
from assistants.v1 import message_pb2
from assistants.v1 import run_pb2
from assistants.v1 import run_service_pb2
from assistants.v1 import run_service_pb2_grpc
from assistants.v1 import thread_pb2

INSTRUCTIONS = (
    "You are a data analyst agent. When given data or questions about data, "
    "write and execute Python code to answer. Always show your work. "
    "If you need to make calculations, use code_interpreter."
)
QUESTION = ("What's the stock price of AAPL, and calculate what 1000 shares "
            "would be worth?")
GET_STOCK_PRICE_PARAMETERS = {
    "type": "object",
    "properties": {
        "ticker": {
            "type": "string",
            "description": "Stock ticker symbol, e.g. AAPL"
        }
    },
    "required": ["ticker"]
}


def fetch_stock_price(ticker: str) -> float:
    """Stub -- replace with a real API call (e.g., yfinance, Alpha Vantage)."""
    prices = {"AAPL": 237.50, "GOOGL": 191.30, "MSFT": 452.80}
    return prices.get(ticker, 0.0)


def handle_tool_calls(run):
    """Executes the run's function calls: the tutorial's handle_tool_calls,
    returning the SubmitToolOutputs request instead of sending it."""
    tool_outputs = []
    for tool_call in run.required_action.submit_tool_outputs.tool_calls:
        function_name = tool_call.function.name
        arguments = json.loads(tool_call.function.arguments)
        if function_name == "get_stock_price":
            result = fetch_stock_price(arguments["ticker"])
            output = json.dumps({"price": result, "currency": "USD"})
        else:
            output = json.dumps(
                {"error": f"Unknown function: {function_name}"})
        tool_outputs.append(run_service_pb2.ToolOutput(
            tool_call_id=tool_call.id, output=output))
    return run_service_pb2.SubmitToolOutputsRequest(
        thread_id=run.thread_id, run_id=run.id, tool_outputs=tool_outputs)


class AgentStreamHandler:
    """The tutorial's handler. OpenAI's SDK derived these callbacks from the
    stream; RunEvents carries the same events under OpenAI's names, so the
    derivation is short: a text part or a tool call is "created" by its
    first delta."""

    def __init__(self):
        self.text_parts = set()   # (message id, content index)
        self.tool_calls = set()   # (step id, tool call index)

    def on_text_created(self):
        print("\nassistant > ", end="", flush=True)

    def on_text_delta(self, value):
        print(value, end="", flush=True)

    def on_tool_call_created(self, tool_call_type):
        print(f"\n[calling {tool_call_type}]", flush=True)

    def on_tool_call_delta(self, delta):
        if delta.WhichOneof("call") == "code_interpreter":
            if delta.code_interpreter.input:
                print(delta.code_interpreter.input, end="", flush=True)

    def on_event(self, event):
        if event.event == "thread.message.delta":
            delta = event.message_delta
            for part in delta.delta.content:
                if (delta.id, part.index) not in self.text_parts:
                    self.text_parts.add((delta.id, part.index))
                    self.on_text_created()
                if part.WhichOneof("content") == "text":
                    self.on_text_delta(part.text.value)
        elif event.event == "thread.run.step.delta":
            delta = event.step_delta
            for call in delta.delta.tool_calls:
                if (delta.id, call.index) not in self.tool_calls:
                    self.tool_calls.add((delta.id, call.index))
                    # The oneof field set is OpenAI's tool call `type`.
                    call_type = call.WhichOneof("call") or "function"
                    self.on_tool_call_created(call_type)
                self.on_tool_call_delta(call)


def run_agent(channel, model):
    assistants = assistant_pb2_grpc.AssistantServiceStub(channel)
    runs = run_service_pb2_grpc.RunServiceStub(channel)

    # client.beta.assistants.create(...): a tool is a oneof whose field name
    # is OpenAI's "type".
    function = common_pb2.FunctionDefinition(
        name="get_stock_price",
        description="Get the current stock price for a given ticker symbol.")
    function.parameters.update(GET_STOCK_PRICE_PARAMETERS)
    tools = [
        common_pb2.Tool(code_interpreter=common_pb2.CodeInterpreterTool()),
        common_pb2.Tool(function=common_pb2.FunctionTool(function=function)),
    ]
    assistant = assistants.CreateAssistant(
        assistant_pb2.CreateAssistantRequest(name="Data Analyst",
                                             instructions=INSTRUCTIONS,
                                             model=model,
                                             tools=tools)).assistant
    print(f"Assistant ID: {assistant.id}")

    # threads.create + messages.create + runs.stream in one call: the run is
    # created and streamed from its first event, so nothing can be missed.
    request = run_service_pb2.RunEventsRequest(
        create_thread_and_run=run_service_pb2.CreateThreadAndRunRequest(
            thread=thread_pb2.CreateThreadRequest(messages=[
                message_pb2.MessageInput(role=message_pb2.MESSAGE_ROLE_USER,
                                         text=QUESTION)
            ]),
            options=run_service_pb2.RunOptions(assistant_id=assistant.id)))
    handler = AgentStreamHandler()
    run = None
    for response in runs.RunEvents(request):  # ends after the "done" event
        event = response.event
        handler.on_event(event)
        if event.WhichOneof("data") == "run":
            run = event.run
        if event.event == "thread.run.requires_action":
            # Answer on the side; the same stream carries the rest of the run.
            runs.SubmitToolOutputs(handle_tool_calls(event.run))
    print()
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target",
        default=os.environ.get("ASSISTANTS_TARGET") or "127.0.0.1:50051",
        help="gateway address (default $ASSISTANTS_TARGET, else "
        "127.0.0.1:50051)")
    parser.add_argument("--model", default="gpt-4o")
    args = parser.parse_args()
    with grpc.insecure_channel(args.target) as channel:
        try:
            run = run_agent(channel, args.model)
        except grpc.RpcError as error:
            print(f"error: {error.code().name}: {error.details()}",
                  file=sys.stderr)
            return 1
    if run is None:
        print("The stream ended without a run", file=sys.stderr)
        return 1
    if run.status != run_pb2.RUN_STATUS_COMPLETED:
        # As the seed's wait_for_run reports it.
        print(f"Run ended with status: {run_pb2.RunStatus.Name(run.status)}"
              f" - {run.last_error.code} {run.last_error.message}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
