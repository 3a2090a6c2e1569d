// ===========================================================================
// Fidelity test: fake-openai and the upstream providers against OpenAI's
// own OpenAPI description (../shared/reference/openai-openapi.subset.json).
//
//  * Every body, SSE event, chunk and error fake-openai produces for a set
//    of default and scripted scenarios, on both endpoints, streamed and
//    not, must validate against the schema the description names for it.
//    This is what keeps the fake from drifting away from the real API that
//    the rest of the suite trusts it to imitate.
//  * upstream-probe runs every scenario through both providers against the
//    fake; every request body the providers sent (as the fake recorded it)
//    must validate against CreateResponse / CreateChatCompletionRequest,
//    which is what keeps our providers from sending something the real API
//    would reject.
//
// A schema error prints the instance path, Ajv's message and the offending
// JSON. Known, documented gaps of the description are listed in
// KNOWN_NULL_AS_ABSENT and nowhere else.
//
// Inputs (run.sh sets them from CMake): FIDELITY_FAKE_BIN,
// FIDELITY_PROBE_BIN, FIDELITY_REFERENCE_DEFAULT, and the optional override
// FIDELITY_REFERENCE.
// ===========================================================================
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { FAKE_KEY, runProbe, startFake } from "./lib/fake.mjs";
import { OpenApi, formatErrors, referencePath } from "./lib/openapi.mjs";

// ---------------------------------------------------------------------------
// Set-up. A missing reference or binary fails the run with a clear message
// (never a skip).

let api;
let setupError = null;
try {
  api = new OpenApi(referencePath());
  for (const v of ["FIDELITY_FAKE_BIN", "FIDELITY_PROBE_BIN"]) {
    if (!process.env[v]) throw new Error(`${v} is not set (see run.sh)`);
  }
} catch (err) {
  setupError = err;
}

let fake;
before(async () => {
  if (setupError) return;
  fake = await startFake(process.env.FIDELITY_FAKE_BIN);
});
after(async () => {
  if (fake) await fake.stop();
});

test("reference and binaries are available", () => {
  if (setupError) {
    assert.fail(`fidelity set-up failed: ${setupError.message}`);
  }
  console.log(
    `fidelity: reference ${api.path}: ${Object.keys(api.doc.components.schemas).length} ` +
      `schemas, ${api.unionsRewritten} oneOf unions read as anyOf`,
  );
});

test("known null-as-absent gaps are backed by the reference's examples", (t) => {
  if (setupError) return t.skip("set-up failed");
  for (const gap of KNOWN_NULL_AS_ABSENT) {
    const [schema, path] = gap.evidence;
    const example = api.example(schema);
    assert.ok(example, `${gap.field}: ${schema} has no parseable x-oaiMeta example`);
    const value = path.reduce((node, key) => node?.[key], example);
    assert.equal(value, null,
      `${gap.field}: the ${schema} example no longer shows null at ${path.join(".")}; drop the gap`);
    // And the schema really rejects null there (else the gap is moot).
    const errors = api.validate(schema, example);
    assert.ok(errors.length > 0,
      `${gap.field}: ${schema} now accepts its own example; drop the gap`);
  }
});

// A validator that accepts everything (a $ref that failed to resolve, a
// dialect mix-up) would make every other test vacuous; these documents
// must be rejected.
test("validators reject known-bad documents", (t) => {
  if (setupError) return t.skip("set-up failed");
  const bad = [
    ["CreateResponse", { model: "gpt-4o-mini", input: 5 }],
    ["CreateResponse", { model: "gpt-4o-mini", input: [{ type: "function_call_output", call_id: "c" }] }],
    ["CreateChatCompletionRequest", { model: "gpt-4o-mini", messages: [] }],
    ["CreateChatCompletionRequest", { model: "gpt-4o-mini", messages: [{ role: "wizard", content: "hi" }] }],
    ["Response", { object: "response", status: "completed" }],
    ["ResponseTextDeltaEvent", {
      type: "response.output_text.delta", item_id: "m", output_index: 0,
      content_index: 0, delta: 1, sequence_number: 0, logprobs: [],
    }],
    ["CreateChatCompletionStreamResponse", { id: "c", object: "chat.completion.chunk", created: 1, model: "m",
      choices: [{ index: 0, delta: {}, finish_reason: "bogus" }] }],
    ["ErrorResponse", { error: { message: "m", type: "t" } }],
  ];
  for (const [name, doc] of bad) {
    assert.ok(api.validate(name, doc).length > 0, `${name} accepted ${JSON.stringify(doc)}`);
  }
});

// The schemas the description names for the two endpoints (checked once
// here so that a renamed schema is reported as such).
const RESPONSES = "/responses";
const CHAT = "/chat/completions";
function schemaNames() {
  const names = {
    responsesRequest: api.requestSchemaName(RESPONSES),
    responsesBody: api.responseSchemaName(RESPONSES, "application/json"),
    responsesEvent: api.responseSchemaName(RESPONSES, "text/event-stream"),
    chatRequest: api.requestSchemaName(CHAT),
    chatBody: api.responseSchemaName(CHAT, "application/json"),
    chatChunk: api.responseSchemaName(CHAT, "text/event-stream"),
    error: "ErrorResponse",
  };
  assert.deepEqual(names, {
    responsesRequest: "CreateResponse",
    responsesBody: "Response",
    responsesEvent: "ResponseStreamEvent",
    chatRequest: "CreateChatCompletionRequest",
    chatBody: "CreateChatCompletionResponse",
    chatChunk: "CreateChatCompletionStreamResponse",
    error: "ErrorResponse",
  });
  return names;
}

// ---------------------------------------------------------------------------
// Known gaps between the description and the live service: fields the
// schemas mark non-nullable that the service sends as null. The
// reference's README names chat chunks' finish_reason; the description's
// own examples show the other two. There, and only there, null is treated
// as "absent" (a required field may then be missing). Each entry names its
// evidence, which the first test re-checks against the reference, so the
// list cannot outlive the gap.
const RESPONSE_CARRIERS = [
  "ResponseStreamEvent",
  "ResponseCreatedEvent",
  "ResponseInProgressEvent",
  "ResponseCompletedEvent",
  "ResponseIncompleteEvent",
  "ResponseFailedEvent",
];
function inResponse(field) {
  const where = { Response: [[field]] };
  for (const name of RESPONSE_CARRIERS) where[name] = [["response", field]];
  return where;
}
const KNOWN_NULL_AS_ABSENT = [
  {
    field: "CreateChatCompletionStreamResponse choices[].finish_reason",
    // null in every chunk but the last (README; the schema's example).
    where: { CreateChatCompletionStreamResponse: [["choices", "*", "finish_reason"]] },
    evidence: ["CreateChatCompletionStreamResponse", ["choices", 0, "finish_reason"]],
  },
  {
    field: "Response.usage",
    // null until the response is done, and on failure.
    where: inResponse("usage"),
    evidence: ["ResponseInProgressEvent", ["response", "usage"]],
  },
  {
    field: "Response.user",
    // The deprecated end-user id, null when not given.
    where: inResponse("user"),
    evidence: ["ResponseCreatedEvent", ["response", "user"]],
  },
];

// The gap paths that apply to schema `name`.
function gapPaths(name) {
  return KNOWN_NULL_AS_ABSENT.flatMap((gap) => gap.where[name] ?? []);
}

// Removes the null values at `paths`; returns the JSON pointers of the
// objects they were removed from, with the key.
function dropKnownNulls(data, paths) {
  const dropped = [];
  for (const path of paths) {
    (function walk(node, i, pointer) {
      if (node === null || typeof node !== "object") return;
      const key = path[i];
      if (i === path.length - 1) {
        if (Object.hasOwn(node, key) && node[key] === null) {
          delete node[key];
          dropped.push({ pointer, key });
        }
        return;
      }
      const keys = key === "*" ? Object.keys(node) : [key];
      for (const k of keys) walk(node[k], i + 1, `${pointer}/${k}`);
    })(data, 0, "");
  }
  return dropped;
}

// ---------------------------------------------------------------------------
// Bookkeeping: per-group counts by schema and every failure, reported at the
// end of the group.

class Tally {
  constructor(group) {
    this.group = group;
    this.counts = new Map();
    this.failures = [];
  }

  // Validates `data` against schema `name`; unless `report` is false,
  // records a failure with the formatted errors. Returns the errors.
  check(name, data, label, { report = true } = {}) {
    let instance = data;
    let errors;
    const gaps = gapPaths(name);
    if (gaps.length > 0) {
      instance = structuredClone(data);
      const dropped = dropKnownNulls(instance, gaps);
      // Treating null as absent must not then fail "required".
      errors = api.validate(name, instance).filter(
        (e) =>
          !(
            e.keyword === "required" &&
            dropped.some(
              (d) =>
                d.pointer === e.instancePath &&
                d.key === e.params.missingProperty,
            )
          ),
      );
    } else {
      errors = api.validate(name, instance);
    }
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
    if (errors.length > 0 && report) {
      this.failures.push(
        `${label}: does not match ${name}\n${formatErrors(errors, data)}`,
      );
    }
    return errors;
  }

  count(what, n = 1) {
    this.counts.set(what, (this.counts.get(what) ?? 0) + n);
  }

  fail(label, message) {
    this.failures.push(`${label}: ${message}`);
  }

  expect(condition, label, message) {
    if (!condition) this.fail(label, message);
    return condition;
  }

  // Prints the summary line and fails the test with every failure.
  finish() {
    const counts = [...this.counts].map(([k, v]) => `${k}=${v}`).join(", ");
    const status = this.failures.length === 0 ? "ok" : "FAILED";
    console.log(
      `fidelity summary [${this.group}]: ${status}; validated ${counts}` +
        (this.failures.length ? `; ${this.failures.length} failure(s)` : ""),
    );
    if (this.failures.length > 0) {
      const report = this.failures.join("\n\n");
      assert.fail(`${this.group}: ${this.failures.length} failure(s)\n${report}`);
    }
  }
}

// ---------------------------------------------------------------------------
// Scenarios sent straight to the fake. Each has a request for each API it
// applies to (the part shared by streamed and non-streamed calls), an
// optional script step queued before each call, and semantic expectations
// on the reconstructed result.

const INSTRUCTIONS =
  "You are a data analyst agent. When given data or questions about data, " +
  "write and execute Python code to answer. Always show your work. If you " +
  "need to make calculations, use code_interpreter.";
const QUESTION =
  "What's the stock price of AAPL, and calculate what 1000 shares would be " +
  "worth?";
const STOCK_PARAMETERS = {
  type: "object",
  properties: {
    ticker: { type: "string", description: "Stock ticker symbol, e.g. AAPL" },
  },
  required: ["ticker"],
};
const STOCK_TOOL = {
  type: "function",
  name: "get_stock_price",
  description: "Get the current stock price for a given ticker symbol.",
  parameters: STOCK_PARAMETERS,
  strict: false,
};
const STOCK_TOOL_CHAT = {
  type: "function",
  function: {
    name: "get_stock_price",
    description: "Get the current stock price for a given ticker symbol.",
    parameters: STOCK_PARAMETERS,
  },
};
const QUOTE_SCHEMA = {
  type: "object",
  properties: { ticker: { type: "string" }, price: { type: "number" } },
  required: ["ticker", "price"],
  additionalProperties: false,
};
const LONG_TEXT =
  "Apple's share price moves with earnings, product cycles and the wider " +
  "market, so any single quote is only a snapshot of a long story.";

// What a turn produced, in one shape for both APIs and both modes.
//   { status, finish, text, refusal, calls: [{name, arguments}],
//     codeCalls: [{code, outputs}] }
function fromResponse(r) {
  const out = {
    status: r.status,
    finish: r.incomplete_details?.reason ?? null,
    text: "",
    refusal: "",
    calls: [],
    codeCalls: [],
  };
  for (const item of r.output ?? []) {
    if (item.type === "message") {
      for (const part of item.content ?? []) {
        if (part.type === "output_text") out.text += part.text;
        if (part.type === "refusal") out.refusal += part.refusal;
      }
    } else if (item.type === "function_call") {
      out.calls.push({ name: item.name, arguments: item.arguments });
    } else if (item.type === "code_interpreter_call") {
      out.codeCalls.push({ code: item.code, outputs: item.outputs });
    }
  }
  return out;
}

function fromChatMessage(choice) {
  return {
    status: "completed",
    finish: choice.finish_reason,
    text: choice.message.content ?? "",
    refusal: choice.message.refusal ?? "",
    calls: (choice.message.tool_calls ?? []).map((c) => ({
      name: c.function.name,
      arguments: c.function.arguments,
    })),
    codeCalls: [],
  };
}

const SCENARIOS = [
  {
    name: "plain text",
    responses: { input: "Say hello in five words." },
    chat: { messages: [{ role: "user", content: "Say hello in five words." }] },
    expect: (r) => r.text.length > 0 && r.calls.length === 0,
  },
  {
    name: "function call (seed, default model)",
    responses: {
      instructions: INSTRUCTIONS,
      input: [{ role: "user", content: QUESTION }],
      tools: [STOCK_TOOL],
    },
    chat: {
      messages: [
        { role: "system", content: INSTRUCTIONS },
        { role: "user", content: QUESTION },
      ],
      tools: [STOCK_TOOL_CHAT],
    },
    expect: (r) =>
      r.calls.length === 1 &&
      r.calls[0].name === "get_stock_price" &&
      r.calls[0].arguments.includes("AAPL"),
  },
  {
    name: "function outputs -> text answer (seed, default model)",
    responses: {
      instructions: INSTRUCTIONS,
      input: [
        { role: "user", content: QUESTION },
        {
          type: "function_call",
          call_id: "call_fid_1",
          name: "get_stock_price",
          arguments: '{"ticker":"AAPL"}',
        },
        {
          type: "function_call_output",
          call_id: "call_fid_1",
          output: '{"price": 237.5, "currency": "USD"}',
        },
      ],
      tools: [STOCK_TOOL],
    },
    chat: {
      messages: [
        { role: "system", content: INSTRUCTIONS },
        { role: "user", content: QUESTION },
        {
          role: "assistant",
          content: null,
          tool_calls: [
            {
              id: "call_fid_1",
              type: "function",
              function: { name: "get_stock_price", arguments: '{"ticker":"AAPL"}' },
            },
          ],
        },
        {
          role: "tool",
          tool_call_id: "call_fid_1",
          content: '{"price": 237.5, "currency": "USD"}',
        },
      ],
      tools: [STOCK_TOOL_CHAT],
    },
    expect: (r) => r.text.includes("237") && r.calls.length === 0,
  },
  {
    name: "parallel function calls (scripted)",
    script: {
      tool_calls: [
        { name: "get_stock_price", arguments: { ticker: "AAPL" } },
        { name: "get_stock_price", arguments: { ticker: "MSFT" } },
      ],
    },
    responses: {
      input: "Prices of AAPL and MSFT?",
      tools: [STOCK_TOOL],
      parallel_tool_calls: true,
    },
    chat: {
      messages: [{ role: "user", content: "Prices of AAPL and MSFT?" }],
      tools: [STOCK_TOOL_CHAT],
      parallel_tool_calls: true,
    },
    expect: (r) =>
      r.calls.length === 2 &&
      r.calls.every((c) => c.name === "get_stock_price"),
  },
  {
    name: "code_interpreter with include outputs (default model)",
    responses: {
      instructions: INSTRUCTIONS,
      input: "Calculate 1000 * 237.5 with Python.",
      tools: [{ type: "code_interpreter", container: { type: "auto" } }],
      include: ["code_interpreter_call.outputs"],
    },
    expect: (r) =>
      r.codeCalls.length === 1 &&
      Array.isArray(r.codeCalls[0].outputs) &&
      r.codeCalls[0].outputs.some((o) => o.type === "logs"),
  },
  {
    name: "code_interpreter without include (scripted)",
    script: {
      code_interpreter: { code: "print(1000 * 237.5)", logs: "237500.0\n" },
      text: "It is 237,500.",
    },
    responses: {
      input: "Calculate 1000 * 237.5 with Python.",
      tools: [{ type: "code_interpreter", container: { type: "auto" } }],
    },
    expect: (r) => r.codeCalls.length === 1 && r.text.includes("237"),
  },
  {
    name: "refusal (scripted)",
    script: { refusal: "I'm sorry, but I can't help with that." },
    responses: { input: "Help me with something bad." },
    chat: {
      messages: [{ role: "user", content: "Help me with something bad." }],
    },
    expect: (r) => r.refusal.includes("sorry") && r.text === "",
  },
  {
    name: "incomplete: max_output_tokens (scripted)",
    script: { text: LONG_TEXT, tokens: 40 },
    responses: { input: "Tell me about Apple.", max_output_tokens: 16 },
    chat: {
      messages: [{ role: "user", content: "Tell me about Apple." }],
      max_completion_tokens: 16,
    },
    expect: (r, kind) =>
      kind === "chat"
        ? r.finish === "length"
        : r.status === "incomplete" && r.finish === "max_output_tokens",
  },
  {
    name: "incomplete: content_filter (scripted)",
    script: { text: "Partial answer", finish: "content_filter" },
    responses: { input: "Tell me about Apple." },
    chat: { messages: [{ role: "user", content: "Tell me about Apple." }] },
    expect: (r, kind) =>
      kind === "chat"
        ? r.finish === "content_filter"
        : r.status === "incomplete" && r.finish === "content_filter",
  },
  {
    name: "structured output: json_schema",
    responses: {
      input: "An example stock quote for AAPL.",
      text: {
        format: {
          type: "json_schema",
          name: "stock_quote",
          schema: QUOTE_SCHEMA,
          strict: true,
        },
      },
    },
    chat: {
      messages: [{ role: "user", content: "An example stock quote for AAPL." }],
      response_format: {
        type: "json_schema",
        json_schema: { name: "stock_quote", schema: QUOTE_SCHEMA, strict: true },
      },
    },
    expect: (r) => {
      try {
        const quote = JSON.parse(r.text);
        return typeof quote.ticker === "string" && typeof quote.price === "number";
      } catch {
        return false;
      }
    },
  },
  {
    name: "usage chunk: stream_options.include_usage",
    chatStreamOnly: true,
    chat: {
      messages: [{ role: "user", content: "Say hello." }],
      stream_options: { include_usage: true },
    },
    expect: (r) => r.text.length > 0 && r.usage != null,
  },
  {
    name: "failed (scripted)",
    script: {
      text: "never finished",
      failed: { code: "server_error", message: "The model failed." },
    },
    failed: true,
    responses: { input: "Hello?" },
    chat: { messages: [{ role: "user", content: "Hello?" }] },
  },
];

// The request body for a scenario, API and mode.
function requestFor(scenario, kind, stream) {
  const model = "gpt-4o-mini";
  return { model, ...scenario[kind], stream };
}

// Scenario x API x mode, in a stable order.
function cases(kind, stream) {
  return SCENARIOS.filter(
    (s) => s[kind] && !(s.chatStreamOnly && (!stream || kind !== "chat")),
  );
}

async function send(path, body, script) {
  await fake.clearScript();
  if (script) await fake.script(script);
  return fake.post(path, body);
}

// ---------------------------------------------------------------------------
// Group 0: the test's own requests must be valid, or the rest proves little.

test("the test's own requests are valid requests", (t) => {
  if (setupError) return t.skip("set-up failed");
  const names = schemaNames();
  const tally = new Tally("own requests");
  for (const stream of [false, true]) {
    for (const s of cases("responses", stream)) {
      const label = `responses ${s.name} stream=${stream}`;
      tally.check(names.responsesRequest, requestFor(s, "responses", stream), label);
      checkDeclared(tally, names.responsesRequest, requestFor(s, "responses", stream), label);
    }
    for (const s of cases("chat", stream)) {
      const label = `chat ${s.name} stream=${stream}`;
      tally.check(names.chatRequest, requestFor(s, "chat", stream), label);
      checkDeclared(tally, names.chatRequest, requestFor(s, "chat", stream), label);
    }
  }
  tally.finish();
});

// ---------------------------------------------------------------------------
// Group 1: Responses API, non-streamed.

test("fake /v1/responses bodies match Response", async (t) => {
  if (setupError) return t.skip("set-up failed");
  const names = schemaNames();
  const tally = new Tally("responses non-stream");
  for (const s of cases("responses", false)) {
    const label = `responses ${s.name}`;
    const res = await send(RESPONSES, requestFor(s, "responses", false), s.script);
    if (s.failed) {
      // A non-streamed failure surfaces as an HTTP error.
      tally.expect(res.status >= 500, label, `want a 5xx, got ${res.status}`);
      tally.check(names.error, res.json, `${label} (error body)`);
      continue;
    }
    if (!tally.expect(res.status === 200, label, `HTTP ${res.status}: ${res.text}`)) continue;
    tally.expect(res.contentType.startsWith("application/json"), label, `content-type ${res.contentType}`);
    tally.check(names.responsesBody, res.json, label);
    tally.expect(res.json.object === "response", label, "object is not 'response'");
    tally.expect(res.json.usage && typeof res.json.usage === "object", label, "a finished response without usage");
    if (s.expect) {
      tally.expect(s.expect(fromResponse(res.json), "responses"), label,
        `unexpected result ${JSON.stringify(fromResponse(res.json))}`);
    }
  }
  tally.finish();
});

// ---------------------------------------------------------------------------
// Group 2: Responses API, event streams.

const TERMINAL = new Set(["response.completed", "response.incomplete", "response.failed"]);

// Stream-level rules the schemas cannot express: SSE framing, ordering,
// numbering, and that deltas add up to their done events.
function checkResponsesStream(tally, eventSchemas, names, events, label) {
  const parsed = [];
  events.forEach((e, i) => {
    let data;
    try {
      data = JSON.parse(e.data);
    } catch {
      tally.fail(label, `event ${i} is not JSON: ${e.data.slice(0, 200)}`);
      return;
    }
    parsed.push(data);
    const where = `${label} event ${i} (${data.type})`;
    // The union's errors list every member's complaint; the member named by
    // `type` says precisely what is wrong, so report that one.
    const specific = eventSchemas.get(data.type);
    const unionErrors = tally.check(names.responsesEvent, data, where, { report: !specific });
    if (tally.expect(specific, where, `type '${data.type}' is not in ${names.responsesEvent}`)) {
      const errors = tally.check(specific, data, `${where} [member of ${names.responsesEvent}]`);
      if (unionErrors.length > 0 && errors.length === 0) {
        tally.fail(where, `matches ${specific} but not ${names.responsesEvent}\n${formatErrors(unionErrors, data)}`);
      }
    }
    tally.expect(e.event === data.type, where, `SSE event name '${e.event}' differs from data.type`);
    tally.expect(data.sequence_number === i, where,
      `sequence_number ${data.sequence_number}, want ${i} (from 0, +1 per event)`);
  });
  if (parsed.length === 0) return null;
  tally.expect(parsed[0].type === "response.created", label, `first event is ${parsed[0].type}`);
  tally.expect(parsed[1]?.type === "response.in_progress", label, `second event is ${parsed[1]?.type}`);
  const last = parsed[parsed.length - 1];
  tally.expect(TERMINAL.has(last.type), label, `last event is ${last.type}, not a terminal event`);
  tally.expect(parsed.filter((e) => TERMINAL.has(e.type)).length === 1, label, "more than one terminal event");
  const ids = new Set(parsed.filter((e) => e.response).map((e) => e.response.id));
  tally.expect(ids.size === 1, label, `events carry ${ids.size} response ids`);
  if (last.type !== "response.failed") {
    tally.expect(last.response?.usage && typeof last.response.usage === "object", label,
      `${last.type} without usage`);
  }

  // Deltas concatenate to the done value, per item.
  const text = new Map();
  const args = new Map();
  const added = [];
  const done = [];
  for (const e of parsed) {
    if (e.type === "response.output_text.delta" || e.type === "response.refusal.delta") {
      text.set(e.item_id, (text.get(e.item_id) ?? "") + e.delta);
    } else if (e.type === "response.output_text.done") {
      tally.expect((text.get(e.item_id) ?? "") === e.text, label,
        `output_text deltas of ${e.item_id} do not add up to its done text`);
    } else if (e.type === "response.refusal.done") {
      tally.expect((text.get(e.item_id) ?? "") === e.refusal, label, `refusal deltas of ${e.item_id} do not add up`);
    } else if (e.type === "response.function_call_arguments.delta") {
      args.set(e.item_id, (args.get(e.item_id) ?? "") + e.delta);
    } else if (e.type === "response.function_call_arguments.done") {
      tally.expect((args.get(e.item_id) ?? "") === e.arguments, label, `argument deltas of ${e.item_id} do not add up`);
    } else if (e.type === "response.output_item.added") {
      added.push(e.output_index);
    } else if (e.type === "response.output_item.done") {
      done.push(e.output_index);
    }
  }
  tally.expect(added.every((v, i) => v === i), label, `output_item.added indices ${added}`);
  if (last.type !== "response.failed") {
    tally.expect(JSON.stringify(added) === JSON.stringify(done), label, `added ${added} vs done ${done}`);
    tally.expect(last.response.output.length === done.length, label,
      `final output has ${last.response.output.length} items, ${done.length} were streamed`);
  }
  tally.count("responses events", parsed.length);
  return last;
}

test("fake /v1/responses streams match ResponseStreamEvent", async (t) => {
  if (setupError) return t.skip("set-up failed");
  const names = schemaNames();
  const eventSchemas = api.streamEventSchemas(names.responsesEvent);
  const tally = new Tally("responses stream");
  for (const s of cases("responses", true)) {
    const label = `responses stream ${s.name}`;
    const res = await send(RESPONSES, requestFor(s, "responses", true), s.script);
    if (!tally.expect(res.status === 200, label, `HTTP ${res.status}: ${res.text}`)) continue;
    if (!tally.expect(res.events, label, `content-type ${res.contentType}, not an event stream`)) continue;
    const last = checkResponsesStream(tally, eventSchemas, names, res.events, label);
    if (!last) continue;
    if (s.failed) {
      tally.expect(last.type === "response.failed", label, `ends with ${last.type}`);
      tally.expect(last.response.error?.code, label, "response.failed without error.code");
      continue;
    }
    if (s.expect) {
      const result = fromResponse(last.response);
      tally.expect(s.expect(result, "responses"), label, `unexpected result ${JSON.stringify(result)}`);
    }
  }
  tally.finish();
});

// ---------------------------------------------------------------------------
// Group 3: Chat Completions, non-streamed.

test("fake /v1/chat/completions bodies match CreateChatCompletionResponse", async (t) => {
  if (setupError) return t.skip("set-up failed");
  const names = schemaNames();
  const tally = new Tally("chat non-stream");
  for (const s of cases("chat", false)) {
    const label = `chat ${s.name}`;
    const res = await send(CHAT, requestFor(s, "chat", false), s.script);
    if (s.failed) {
      tally.expect(res.status >= 500, label, `want a 5xx, got ${res.status}`);
      tally.check(names.error, res.json, `${label} (error body)`);
      continue;
    }
    if (!tally.expect(res.status === 200, label, `HTTP ${res.status}: ${res.text}`)) continue;
    tally.check(names.chatBody, res.json, label);
    tally.expect(res.json.object === "chat.completion", label, "object is not 'chat.completion'");
    if (s.expect) {
      const result = fromChatMessage(res.json.choices[0]);
      tally.expect(s.expect(result, "chat"), label, `unexpected result ${JSON.stringify(result)}`);
    }
  }
  tally.finish();
});

// ---------------------------------------------------------------------------
// Group 4: Chat Completions, chunk streams.

// Checks one chunk stream; returns the reconstructed result.
function checkChatStream(tally, names, events, label, includeUsage, failed) {
  const last = events[events.length - 1];
  if (!failed) {
    tally.expect(last?.data === "[DONE]", label, `does not end with data: [DONE] (last: ${last?.data?.slice(0, 100)})`);
  }
  tally.expect(events.filter((e) => e.data === "[DONE]").length <= 1, label, "more than one [DONE]");
  const chunks = [];
  const result = { status: "completed", finish: null, text: "", refusal: "", calls: [], codeCalls: [], usage: null };
  const calls = new Map();
  events.forEach((e, i) => {
    if (e.data === "[DONE]") return;
    const where = `${label} chunk ${i}`;
    tally.expect(e.event === null, where, `has an SSE event name '${e.event}'`);
    let data;
    try {
      data = JSON.parse(e.data);
    } catch {
      tally.fail(where, `not JSON: ${e.data.slice(0, 200)}`);
      return;
    }
    if (data.error) {
      // A mid-stream failure: an error object, not a chunk.
      tally.check(names.error, data, `${where} (error)`);
      result.status = "failed";
      return;
    }
    tally.check(names.chatChunk, data, where);
    chunks.push(data);
    for (const choice of data.choices ?? []) {
      const d = choice.delta ?? {};
      if (typeof d.content === "string") result.text += d.content;
      if (typeof d.refusal === "string") result.refusal += d.refusal;
      for (const tc of d.tool_calls ?? []) {
        const call = calls.get(tc.index) ?? { name: "", arguments: "" };
        if (tc.function?.name) call.name = tc.function.name;
        call.arguments += tc.function?.arguments ?? "";
        calls.set(tc.index, call);
      }
      if (choice.finish_reason != null) result.finish = choice.finish_reason;
    }
    if (data.usage != null) result.usage = data.usage;
  });
  result.calls = [...calls.keys()].sort((a, b) => a - b).map((k) => calls.get(k));
  tally.count("chat chunks", chunks.length);
  if (chunks.length === 0) return result;

  for (const key of ["id", "created", "model", "system_fingerprint"]) {
    tally.expect(new Set(chunks.map((c) => c[key])).size === 1, label, `chunks disagree on ${key}`);
  }
  tally.expect(chunks.every((c) => c.object === "chat.completion.chunk"), label, "object is not chat.completion.chunk");
  const withChoices = chunks.filter((c) => c.choices.length > 0);
  const finishes = withChoices.map((c) => c.choices[0].finish_reason);
  if (!failed) {
    tally.expect(finishes[finishes.length - 1] != null, label, "the last chunk with choices has no finish_reason");
    tally.expect(finishes.slice(0, -1).every((f) => f === null), label,
      `finish_reason before the last chunk: ${JSON.stringify(finishes)}`);
  }
  if (includeUsage && !failed) {
    const final = chunks[chunks.length - 1];
    tally.expect(final.choices.length === 0 && final.usage, label,
      "include_usage: the last chunk is not {choices: [], usage}");
    tally.expect(chunks.slice(0, -1).every((c) => c.usage === null), label,
      "include_usage: usage is not null before the last chunk");
  } else if (!includeUsage) {
    tally.expect(chunks.every((c) => c.usage == null), label, "usage sent without stream_options.include_usage");
  }
  return result;
}

test("fake /v1/chat/completions streams match CreateChatCompletionStreamResponse", async (t) => {
  if (setupError) return t.skip("set-up failed");
  const names = schemaNames();
  const tally = new Tally("chat stream");
  for (const s of cases("chat", true)) {
    const label = `chat stream ${s.name}`;
    const body = requestFor(s, "chat", true);
    const res = await send(CHAT, body, s.script);
    if (!tally.expect(res.status === 200, label, `HTTP ${res.status}: ${res.text}`)) continue;
    if (!tally.expect(res.events, label, `content-type ${res.contentType}, not an event stream`)) continue;
    const includeUsage = body.stream_options?.include_usage === true;
    const result = checkChatStream(tally, names, res.events, label, includeUsage, s.failed);
    if (s.failed) {
      tally.expect(result.status === "failed", label, "no error object in a failed stream");
    } else if (s.expect) {
      tally.expect(s.expect(result, "chat"), label, `unexpected result ${JSON.stringify(result)}`);
    }
  }
  tally.finish();
});

// ---------------------------------------------------------------------------
// Group 5: error bodies, from the fake's own validation and scripted.

test("fake error bodies match ErrorResponse", async (t) => {
  if (setupError) return t.skip("set-up failed");
  const names = schemaNames();
  const tally = new Tally("errors");
  const retryAfter = api.responseHeaders(RESPONSES, "429")["Retry-After"]?.schema;
  const bodies = {
    [RESPONSES]: { model: "gpt-4o-mini", input: "Hello" },
    [CHAT]: { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }] },
  };
  const errorCases = [
    { name: "401 no key", status: 401, key: null },
    { name: "401 wrong key", status: 401, key: "sk-wrong-key-123456" },
    { name: "400 missing model", status: 400, body: (b) => ({ ...b, model: undefined }) },
    { name: "400 temperature out of range", status: 400, body: (b) => ({ ...b, temperature: 3 }) },
    { name: "400 unknown parameter", status: 400, body: (b) => ({ ...b, bogus_parameter: 1 }) },
    { name: "400 not JSON", status: 400, raw: "{not json" },
    { name: "400 scripted", status: 400, script: { status: 400 } },
    { name: "404 scripted model_not_found", status: 404, script: { status: 404 } },
    { name: "429 scripted with Retry-After", status: 429, script: { status: 429, retry_after: 2 } },
    { name: "429 insufficient_quota", status: 429, script: { status: 429, error: { code: "insufficient_quota" } } },
    { name: "500 scripted", status: 500, script: { status: 500 } },
    { name: "503 scripted", status: 503, script: { status: 503 } },
  ];
  for (const path of [RESPONSES, CHAT]) {
    for (const stream of [false, true]) {
      for (const c of errorCases) {
        const label = `${path} stream=${stream} ${c.name}`;
        await fake.clearScript();
        if (c.script) await fake.script(c.script);
        const body = c.raw ?? (c.body ? c.body({ ...bodies[path], stream }) : { ...bodies[path], stream });
        const res = await fake.post(path, body, { key: c.key === undefined ? FAKE_KEY : c.key });
        tally.expect(res.status === c.status, label, `HTTP ${res.status}, want ${c.status}: ${res.text}`);
        tally.expect(res.contentType.startsWith("application/json"), label, `content-type ${res.contentType}`);
        tally.check(names.error, res.json, label);
        if (c.status === 429 && c.script?.retry_after !== undefined && retryAfter) {
          const header = res.headers.get("retry-after");
          const value = Number(header);
          tally.count("Retry-After headers");
          tally.expect(
            header !== null && Number.isInteger(value) && value >= (retryAfter.minimum ?? 0),
            label, `Retry-After '${header}' is not an integer >= ${retryAfter.minimum} as the spec declares`);
        }
      }
    }
  }
  await fake.clearScript();
  tally.finish();
});

// Top-level properties a schema declares, through $ref and allOf. The
// request schemas leave additionalProperties open, but the real API answers
// an undeclared parameter with 400 "Unknown parameter", so a request must
// not carry one.
function declaredProperties(schema, seen = new Set()) {
  const out = new Set();
  if (!schema) return out;
  const ref = OpenApi.refName(schema);
  if (ref) {
    if (seen.has(ref)) return out;
    seen.add(ref);
    return declaredProperties(api.schema(ref), seen);
  }
  for (const key of Object.keys(schema.properties ?? {})) out.add(key);
  for (const member of schema.allOf ?? []) {
    for (const key of declaredProperties(member, seen)) out.add(key);
  }
  return out;
}

function checkDeclared(tally, name, body, label) {
  const declared = declaredProperties(api.schema(name));
  const unknown = Object.keys(body).filter((k) => !declared.has(k));
  tally.count(`${name} parameter sets`);
  tally.expect(unknown.length === 0, label, `parameters ${name} does not declare: ${unknown.join(", ")}`);
}

// ---------------------------------------------------------------------------
// Group 6: upstream-probe drives both providers against the fake; the
// requests they sent must be valid requests.

const PROBE_SCENARIOS = {
  seed: (events) => {
    const done = events.filter((e) => e.type === "tool_call_done");
    return (
      done.length === 1 &&
      done[0].name === "get_stock_price" &&
      done[0].text.includes("AAPL") &&
      finishReason(events) === "tool_calls"
    );
  },
  tool_outputs: (events) => textOf(events).includes("237") && finishReason(events) === "stop",
  text: (events) => textOf(events).length > 0 && finishReason(events) === "stop",
  code_interpreter: (events, kind) => {
    if (kind === "chat") {
      // Chat Completions has no hosted tools; the provider leaves
      // code_interpreter out and the model answers in text.
      return textOf(events).length > 0 && !events.some((e) => e.type.startsWith("code_interpreter"));
    }
    const done = events.filter((e) => e.type === "code_interpreter_done");
    return (
      done.length === 1 &&
      done[0].outputs.some((o) => o.type === "logs" && o.logs.includes("237500")) &&
      finishReason(events) === "stop"
    );
  },
  json_schema: (events) => {
    try {
      const quote = JSON.parse(textOf(events));
      return typeof quote.ticker === "string" && typeof quote.price === "number";
    } catch {
      return false;
    }
  },
};

function textOf(events) {
  return events.filter((e) => e.type === "text_delta").map((e) => e.text).join("");
}

function finishReason(events) {
  return events.find((e) => e.type === "finished")?.finish_reason;
}

function probeArgs(kind, scenario, extra = []) {
  return [
    `--api=${kind}`,
    `--scenario=${scenario}`,
    `--base_url=${fake.baseUrl}`,
    `--api_key=${FAKE_KEY}`,
    "--timeout_s=20",
    ...extra,
  ];
}

test("upstream-probe: both providers send valid requests", async (t) => {
  if (setupError) return t.skip("set-up failed");
  const names = schemaNames();
  const tally = new Tally("providers");
  const probe = process.env.FIDELITY_PROBE_BIN;
  await fake.clearScript();
  await fake.clearRequests();
  const runs = [];
  for (const kind of ["responses", "chat"]) {
    for (const [scenario, expect] of Object.entries(PROBE_SCENARIOS)) {
      const label = `probe --api=${kind} --scenario=${scenario}`;
      const run = await runProbe(probe, probeArgs(kind, scenario));
      runs.push({ kind, scenario });
      tally.count("probe runs");
      const events = run.lines.filter((l) => typeof l.type === "string");
      const last = run.lines[run.lines.length - 1];
      const output = `\n    stdout: ${run.stdout.slice(0, 2000)}\n    stderr: ${run.stderr.slice(0, 1000)}`;
      tally.expect(run.code === 0, label, `exit ${run.code ?? run.signal}${output}`);
      tally.expect(run.bad.length === 0, label, `non-JSON stdout lines: ${run.bad.join(" | ")}`);
      tally.expect(last?.done === true, label, `last line is not {"done":true}${output}`);
      tally.expect(events.some((e) => e.type === "usage"), label, `no usage event${output}`);
      tally.expect(expect(events, kind), label, `unexpected events${output}`);
    }
  }

  // What the providers actually put on the wire, as the fake recorded it.
  const recorded = (await fake.requests()).filter((r) => r.path.startsWith("/v1/"));
  tally.expect(recorded.length === runs.length, "recorded requests",
    `${recorded.length} API requests recorded for ${runs.length} probe runs`);
  recorded.forEach((r, i) => {
    const run = runs[i] ?? { kind: "?", scenario: "?" };
    const label = `request ${i} ${r.method} ${r.path} (${run.kind} ${run.scenario})`;
    const isChat = r.path === `/v1${CHAT}`;
    tally.expect(r.path === `/v1${isChat ? CHAT : RESPONSES}` && r.method === "POST", label, "unexpected endpoint");
    tally.expect(r.authorized === true, label, "not authorized with the configured key");
    tally.expect(r.response_status === 200, label, `the fake answered ${r.response_status}`);
    tally.expect((r.headers["content-type"] ?? "").startsWith("application/json"), label,
      `content-type ${r.headers["content-type"]}`);
    if (!tally.expect(r.body && typeof r.body === "object", label, `body is not JSON: ${r.raw_body}`)) return;
    tally.check(isChat ? names.chatRequest : names.responsesRequest, r.body, label);
    checkDeclared(tally, isChat ? names.chatRequest : names.responsesRequest, r.body, label);
    tally.expect(r.body.stream === true, label, "the provider did not ask for a stream");
    if (isChat) {
      const hosted = (r.body.tools ?? []).filter((tool) => tool.type !== "function");
      tally.expect(hosted.length === 0, label, `hosted tools sent to Chat Completions: ${JSON.stringify(hosted)}`);
    } else {
      tally.expect(r.body.store === false, label, "Responses request without store=false");
    }
  });
  tally.finish();
});

test("upstream-probe: turn errors exit 1 with an error line", async (t) => {
  if (setupError) return t.skip("set-up failed");
  const tally = new Tally("probe errors");
  const probe = process.env.FIDELITY_PROBE_BIN;
  for (const kind of ["responses", "chat"]) {
    // The upstream rejecting the key is the gateway's misconfiguration.
    let run = await runProbe(probe, probeArgs(kind, "text", ["--api_key=sk-wrong-key-123456"]));
    let last = run.lines[run.lines.length - 1];
    let label = `probe --api=${kind} wrong key`;
    tally.expect(run.code === 1, label, `exit ${run.code}, want 1`);
    tally.expect(last?.error?.reason === "UPSTREAM_AUTH_FAILED" && last.error.code === "INTERNAL", label,
      `last line ${JSON.stringify(last)}`);

    // A non-retryable 400 from the upstream.
    await fake.clearScript();
    await fake.script({ status: 400 });
    run = await runProbe(probe, probeArgs(kind, "text"));
    last = run.lines[run.lines.length - 1];
    label = `probe --api=${kind} scripted 400`;
    tally.expect(run.code === 1, label, `exit ${run.code}, want 1`);
    const e = last?.error;
    tally.expect(e && ["code", "reason", "message", "run_error_code"].every((k) => typeof e[k] === "string") &&
      e.code !== "" && e.run_error_code !== "", label, `last line ${JSON.stringify(last)}`);
    tally.count("probe error runs", 2);
  }
  // Usage errors exit 2 before any request.
  const usage = await runProbe(probe, ["--api=soap"]);
  tally.expect(usage.code === 2, "probe --api=soap", `exit ${usage.code}, want 2`);
  const unknown = await runProbe(probe, ["--no_such_flag=1"]);
  tally.expect(unknown.code === 2, "probe --no_such_flag", `exit ${unknown.code}, want 2`);
  await fake.clearScript();
  tally.finish();
});
