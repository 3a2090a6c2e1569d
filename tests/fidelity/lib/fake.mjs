// ===========================================================================
// Driving fake-openai and upstream-probe from the test: process start-up,
// the /_fake control API, plain HTTP calls, and SSE parsing.
// ===========================================================================
import { spawn } from "node:child_process";

export const FAKE_KEY = "sk-fake";

// Starts `bin --listen=127.0.0.1:0` and resolves once it printed its port.
export function startFake(bin) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ["--listen=127.0.0.1:0"], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`fake-openai did not start within 10s: ${stderr}`));
    }, 10_000);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run fake-openai (${bin}): ${err.message}`));
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`fake-openai exited with ${code}: ${stderr}`));
    });
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
      const m = /fake-openai listening on 127\.0\.0\.1:(\d+)/.exec(stderr);
      if (!m) return;
      clearTimeout(timer);
      child.removeAllListeners("exit");
      resolve(new Fake(child, Number(m[1])));
    });
  });
}

export class Fake {
  constructor(child, port) {
    this.child = child;
    this.port = port;
    this.origin = `http://127.0.0.1:${port}`;
    this.baseUrl = `${this.origin}/v1`;
  }

  async stop() {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.kill("SIGTERM");
    await exited;
  }

  async control(method, path, body) {
    const res = await fetch(`${this.origin}${path}`, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return JSON.parse(text);
  }

  // Queues scripted steps; each serves the next API request.
  script(...steps) {
    return this.control("POST", "/_fake/script", { responses: steps });
  }

  clearScript() {
    return this.control("DELETE", "/_fake/script");
  }

  async requests() {
    return (await this.control("GET", "/_fake/requests")).requests;
  }

  clearRequests() {
    return this.control("DELETE", "/_fake/requests");
  }

  // POST `body` to an API path ("/responses"). Streams are read to the end
  // (the fake's are finite) and split into SSE events.
  async post(path, body, { key = FAKE_KEY } = {}) {
    const headers = { "content-type": "application/json" };
    if (key !== null) headers.authorization = `Bearer ${key}`;
    const res = await fetch(`${this.baseUrl}${path}`, {
      method: "POST",
      headers,
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await res.text();
    const contentType = res.headers.get("content-type") ?? "";
    const out = { status: res.status, headers: res.headers, contentType, text };
    if (contentType.startsWith("text/event-stream")) {
      out.events = parseSse(text);
    } else {
      try {
        out.json = JSON.parse(text);
      } catch {
        out.json = undefined;
      }
    }
    return out;
  }
}

// Splits an event-stream body into {event, data} messages (the WHATWG
// rules that matter here: "field: value" lines, multi-line data joined by
// "\n", comment lines ignored, messages separated by a blank line).
export function parseSse(text) {
  const events = [];
  for (const block of text.replace(/\r\n?/g, "\n").split("\n\n")) {
    if (block.trim() === "") continue;
    let event = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      if (field === "data") data.push(value);
    }
    events.push({ event, data: data.join("\n") });
  }
  return events;
}

// Runs upstream-probe; resolves with its exit code and parsed stdout lines.
export function runProbe(bin, args, timeoutMs = 60_000) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stderr += c));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run upstream-probe (${bin}): ${err.message}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const lines = [];
      const bad = [];
      for (const line of stdout.split("\n")) {
        if (line === "") continue;
        try {
          lines.push(JSON.parse(line));
        } catch {
          bad.push(line);
        }
      }
      resolve({ code, signal, lines, bad, stdout, stderr });
    });
  });
}
