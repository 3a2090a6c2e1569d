// ===========================================================================
// OpenAI's OpenAPI description as a set of compiled JSON Schema validators.
//
// The reference file is an OpenAPI 3.1 document, whose schemas are JSON
// Schema 2020-12, so it is compiled with Ajv's 2020 dialect. The whole
// document is added once under an $id, and every schema is referenced as
// "<id>#/components/schemas/<Name>", which makes the document's own
// "#/components/schemas/..." references resolve exactly as written.
// ===========================================================================
import fs from "node:fs";

import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const DOC_ID = "https://openai.local/openapi.json";

// Vendor extensions and OpenAPI-only keywords of OpenAI's description. They
// carry no validation meaning; registering them as annotations documents
// that we saw them (rather than relying on strict: false to skip silently).
const ANNOTATION_KEYWORDS = [
  "x-oaiMeta",
  "x-oaiTypeLabel",
  "x-oaiExpandable",
  "x-oaiSupportedSDKs",
  "x-oai-beta",
  "x-stainless-const",
  "x-stainless-skip",
  "discriminator",
  "example",
  "dataDescription",
  "beta",
];

// Where the reference lives: FIDELITY_REFERENCE (a manual override) wins
// over the path CMake passes (FIDELITY_REFERENCE_DEFAULT). A missing file is
// an error, never a skip: a fidelity test that silently does nothing would
// hide exactly the drift it exists to catch.
export function referencePath() {
  const override = process.env.FIDELITY_REFERENCE;
  const path = override || process.env.FIDELITY_REFERENCE_DEFAULT;
  if (!path) {
    throw new Error(
      "no OpenAPI reference given: set FIDELITY_REFERENCE to " +
        "openai-openapi.subset.json (CMake passes " +
        "${CMAKE_SOURCE_DIR}/../shared/reference/openai-openapi.subset.json)",
    );
  }
  if (!fs.existsSync(path)) {
    throw new Error(
      `the OpenAPI reference ${path} does not exist` +
        (override ? " (from FIDELITY_REFERENCE)" : "") +
        "; the fidelity test needs OpenAI's description at " +
        "../shared/reference/openai-openapi.subset.json relative to the " +
        "repository root, or FIDELITY_REFERENCE=path",
    );
  }
  return path;
}

// OpenAPI 3.1 left $recursiveRef (2019-09) in two filter schemas; the 2020
// dialect replaced it with $dynamicRef and Ajv would ignore it. Rewriting
// it to a plain $ref to the enclosing component keeps those schemas
// checked instead of silently accepting anything.
function rewriteRecursiveRefs(schemas) {
  for (const [name, schema] of Object.entries(schemas)) {
    if (!schema || schema.$recursiveAnchor !== true) continue;
    delete schema.$recursiveAnchor;
    (function walk(node) {
      if (Array.isArray(node)) return node.forEach(walk);
      if (!node || typeof node !== "object") return;
      if (node.$recursiveRef === "#") {
        delete node.$recursiveRef;
        node.$ref = `#/components/schemas/${name}`;
      }
      Object.values(node).forEach(walk);
    })(schema);
  }
}

// OpenAI's description uses oneOf for tagged unions, as its SDK generator
// reads them: "one of these shapes", selected by the `discriminator`
// (usually `type`). Several unions have members that overlap, which JSON
// Schema's exclusive oneOf then rejects: the canonical input item
// {"type":"message","role":"user","content":[{"type":"input_text",...}]}
// matches both EasyInputMessage and Item/InputMessage of InputItem, whose
// discriminator cannot tell them apart either. The union reading is anyOf;
// every member's own constraints still apply.
function oneOfAsUnion(schemas) {
  let rewritten = 0;
  (function walk(node) {
    if (Array.isArray(node)) return node.forEach(walk);
    if (!node || typeof node !== "object") return;
    if (Array.isArray(node.oneOf)) {
      if (node.anyOf) {
        // Both present: keep the two conditions as an allOf.
        node.allOf = [...(node.allOf ?? []), { anyOf: node.oneOf }];
      } else {
        node.anyOf = node.oneOf;
      }
      delete node.oneOf;
      ++rewritten;
    }
    Object.values(node).forEach(walk);
  })(schemas);
  return rewritten;
}

export class OpenApi {
  constructor(path) {
    this.path = path;
    this.doc = JSON.parse(fs.readFileSync(path, "utf8"));
    if (!this.doc.openapi || !this.doc.components?.schemas) {
      throw new Error(`${path} is not an OpenAPI document with schemas`);
    }
    rewriteRecursiveRefs(this.doc.components.schemas);
    this.unionsRewritten = oneOfAsUnion(this.doc.components.schemas);
    this.ajv = new Ajv2020({
      strict: false,
      allErrors: true,
      // One compiled function per schema name; bodies are small.
      code: { optimize: 1 },
    });
    addFormats(this.ajv);
    // OpenAI's timestamps: Unix seconds.
    this.ajv.addFormat("unixtime", {
      type: "number",
      validate: (x) => Number.isFinite(x) && x >= 0,
    });
    for (const keyword of ANNOTATION_KEYWORDS) {
      if (!this.ajv.getKeyword(keyword)) this.ajv.addKeyword(keyword);
    }
    this.ajv.addSchema({ ...this.doc, $id: DOC_ID });
    this.validators = new Map();
  }

  has(name) {
    return Object.hasOwn(this.doc.components.schemas, name);
  }

  schema(name) {
    return this.doc.components.schemas[name];
  }

  // The compiled validator of components.schemas[name].
  validator(name) {
    let v = this.validators.get(name);
    if (!v) {
      if (!this.has(name)) {
        throw new Error(`the reference has no schema named ${name}`);
      }
      v = this.ajv.getSchema(`${DOC_ID}#/components/schemas/${name}`);
      this.validators.set(name, v);
    }
    return v;
  }

  // Validates `data` against schema `name`: [] or a list of Ajv errors.
  validate(name, data) {
    const v = this.validator(name);
    return v(data) ? [] : [...v.errors];
  }

  // The JSON example a schema's x-oaiMeta carries (the first object when
  // it shows several, as the chunk stream example does), or undefined.
  example(name) {
    const text = this.schema(name)?.["x-oaiMeta"]?.example;
    if (typeof text !== "string") return undefined;
    const first = text.trim().split(/\n\s*\n/)[0];
    try {
      return JSON.parse(first);
    } catch {
      return undefined;
    }
  }

  // The schema name behind a $ref such as "#/components/schemas/Response".
  static refName(schema) {
    const ref = schema?.$ref;
    const prefix = "#/components/schemas/";
    return typeof ref === "string" && ref.startsWith(prefix)
      ? ref.slice(prefix.length)
      : null;
  }

  // What the description says an operation takes and returns, so the test
  // checks the schemas the spec names rather than names we guessed.
  requestSchemaName(path, method = "post") {
    const op = this.doc.paths?.[path]?.[method];
    return OpenApi.refName(
      op?.requestBody?.content?.["application/json"]?.schema,
    );
  }

  responseSchemaName(path, contentType, status = "200", method = "post") {
    const op = this.doc.paths?.[path]?.[method];
    return OpenApi.refName(op?.responses?.[status]?.content?.[contentType]?.schema);
  }

  // Response headers the description declares for an error status, e.g.
  // Retry-After on 429 (through components.responses).
  responseHeaders(path, status, method = "post") {
    let response = this.doc.paths?.[path]?.[method]?.responses?.[status];
    const prefix = "#/components/responses/";
    if (response?.$ref?.startsWith(prefix)) {
      response = this.doc.components.responses?.[
        response.$ref.slice(prefix.length)
      ];
    }
    return response?.headers ?? {};
  }

  // "response.output_text.delta" -> "ResponseTextDeltaEvent", from the
  // members of the ResponseStreamEvent union and the single value each
  // allows for `type`.
  streamEventSchemas(unionName) {
    const byType = new Map();
    const union = this.schema(unionName);
    for (const member of union?.anyOf ?? union?.oneOf ?? []) {
      const name = OpenApi.refName(member);
      const type = name && this.schema(name)?.properties?.type;
      const values = type?.enum ?? (type?.const ? [type.const] : []);
      for (const value of values) byType.set(value, name);
    }
    return byType;
  }
}

// ---------------------------------------------------------------------------
// Error reporting.

// The value at a JSON pointer ("/choices/0/delta").
export function atPointer(data, pointer) {
  if (!pointer) return data;
  let node = data;
  for (const raw of pointer.split("/").slice(1)) {
    const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    if (node === null || typeof node !== "object") return undefined;
    node = node[key];
  }
  return node;
}

function clip(text, max) {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} chars)`;
}

// Human-readable Ajv errors: instancePath, message and the offending JSON.
// Union schemas (anyOf) report one error per member; the list is capped so a
// single bad output item does not bury the rest of the report.
export function formatErrors(errors, data, max = 12) {
  const lines = [];
  for (const e of errors.slice(0, max)) {
    const where = e.instancePath || "(root)";
    const params = JSON.stringify(e.params);
    const value = JSON.stringify(atPointer(data, e.instancePath));
    lines.push(
      `    at ${where}: ${e.message} ${params} [schema ${e.schemaPath}]\n` +
        `      offending: ${clip(value ?? "undefined", 400)}`,
    );
  }
  if (errors.length > max) lines.push(`    … ${errors.length - max} more`);
  lines.push(`    document: ${clip(JSON.stringify(data), 1500)}`);
  return lines.join("\n");
}
