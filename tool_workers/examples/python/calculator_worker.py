#!/usr/bin/python3
"""The `calculator` tool worker, in Python.

Evaluates arithmetic expressions such as "1000 * 237.5" for the model, with
a small evaluator over Python's `ast` (never eval): numbers, + - * / // % **,
unary + and -, and parentheses. Expressions the calculator cannot evaluate
(bad syntax, names, calls, division by zero, results too large) give a normal
output {"error": "..."} the model can read and recover from, as the seed
tutorial recommends; arguments without an "expression" string are
INVALID_ARGUMENT.

    tool_workers/examples/python/run.sh --gateway 127.0.0.1:50051 \
        --token_file /path/to/registration-token

Flags (and their environment defaults) are assistants_worker's.
"""

import ast
import math
import operator
import sys

import grpc

from assistants_worker import Tool, ToolError, Worker, worker_options_from_flags

PROGRAM = "calculator-worker"
MAX_EXPRESSION_CHARS = 1000
# Integers beyond this many bits (about 300 digits) are refused: Python's
# unbounded integers would otherwise let "9**9**9" burn CPU and memory.
MAX_INT_BITS = 1024

PARAMETERS = {
    "type": "object",
    "properties": {
        "expression": {
            "type": "string",
            "description": "An arithmetic expression such as 1000 * 237.5",
        },
    },
    "required": ["expression"],
}

BINARY_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
UNARY_OPERATORS = {ast.UAdd: operator.pos, ast.USub: operator.neg}


class CalculationError(Exception):
    """An expression the calculator cannot evaluate; the message is for the
    model."""


def _check_number(value):
    """Keeps every intermediate result a finite real of bounded size."""
    if isinstance(value, complex):
        # e.g. (-8) ** 0.5
        raise CalculationError("the result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculationError("the result is too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculationError("the result is too large")
    return value


def _power(base, exponent):
    # Refuse before computing: the size of an integer power is known up front.
    if (isinstance(base, int) and isinstance(exponent, int) and exponent > 0
            and abs(base) > 1
            and (abs(base).bit_length() - 1) * exponent > MAX_INT_BITS):
        raise CalculationError("the result is too large")
    return base ** exponent


def _evaluate(node):
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant):
        # bool is an int subclass; True + 1 is not arithmetic the model meant.
        if type(node.value) not in (int, float):
            raise CalculationError("only numbers are allowed, not %r" %
                                   (node.value,))
        return _check_number(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY_OPERATORS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            return _check_number(_power(left, right))
        return _check_number(BINARY_OPERATORS[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY_OPERATORS:
        return UNARY_OPERATORS[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.Name):
        raise CalculationError("unknown name %r: only numbers are allowed" %
                               node.id)
    if isinstance(node, ast.Call):
        raise CalculationError("function calls are not allowed")
    raise CalculationError("unsupported syntax (%s): use numbers, + - * / // "
                           "%% ** and parentheses" % type(node).__name__)


def calculate(expression: str):
    """The value of an arithmetic expression; raises CalculationError."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculationError("the expression is longer than %d characters" %
                               MAX_EXPRESSION_CHARS)
    if not expression.strip():
        raise CalculationError("the expression is empty")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError) as error:  # ValueError: NUL bytes
        raise CalculationError("invalid expression: %s" %
                               getattr(error, "msg", error)) from None
    try:
        value = _evaluate(tree)
    except ZeroDivisionError:
        raise CalculationError("division by zero") from None
    except (OverflowError, MemoryError):
        raise CalculationError("the result is too large") from None
    except RecursionError:  # e.g. a thousand unary minus signs
        raise CalculationError("the expression is nested too deeply") from None
    # 1000 * 237.5 reads better as 237500 than 237500.0; only floats that an
    # int represents exactly are converted.
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    return value


def calculator(arguments, context):
    expression = arguments.get("expression")
    if not isinstance(expression, str):
        raise ToolError(grpc.StatusCode.INVALID_ARGUMENT,
                        '"expression" must be a string')
    try:
        return {"expression": expression, "result": calculate(expression)}
    except CalculationError as error:
        return {"error": str(error)}


CALCULATOR = Tool(
    name="calculator",
    description="Evaluate an arithmetic expression and return the result",
    parameters=PARAMETERS,
    handler=calculator,
    # Pure computation: running it twice is harmless.
    idempotent=True)


def main():
    options = worker_options_from_flags(description=__doc__.split("\n\n")[0])
    return Worker([CALCULATOR], **options).serve_until_signal(PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
