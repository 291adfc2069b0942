// The benchmark's minimal Discord gateway client, used downstream of
// heartline and straight against the fake alike so that both sides of a
// comparison run the same code. It IDENTIFYs, heartbeats on a timer and
// counts dispatches; unlike the test suite's client it keeps no frames,
// so its memory stays flat under traffic.

import WebSocket from "ws";

export class BenchClient {
  // url: ws(s)://host:port; opts: { shard, ca, onDispatch(frame, at) }
  constructor(url, token, opts = {}) {
    this.url = url;
    this.token = token;
    this.shard = opts.shard ?? null;
    this.ca = opts.ca ?? null;
    this.onDispatch = opts.onDispatch ?? null;
    this.ready = false;
    this.seq = null;
    this.dispatches = 0;
    this.messages = 0;
    this.closed = null;
    this.invalidSessions = 0;
    this.lastAt = 0;
    // Once true, frames are counted without being parsed.
    this.countOnly = false;
  }

  open() {
    const options = this.ca ? { ca: this.ca } : {};
    this.ws = new WebSocket(`${this.url}/?v=10&encoding=json`, options);
    this.ws.on("message", (data) => this.receive(data));
    this.ws.on("close", (code) => {
      this.closed = code;
      clearInterval(this.timer);
    });
    this.ws.on("error", (err) => {
      this.error = err.message;
    });
    return this;
  }

  receive(data) {
    const at = performance.now();
    this.messages += 1;
    this.lastAt = at;
    if (this.countOnly) return;
    const frame = JSON.parse(data.toString());
    if (frame.s != null) this.seq = frame.s;
    if (frame.op === 10) return this.hello(frame.d.heartbeat_interval);
    if (frame.op === 9) this.invalidSessions += 1;
    if (frame.op !== 0) return;
    this.dispatches += 1;
    if (frame.t === "READY" || frame.t === "RESUMED") this.ready = true;
    this.onDispatch?.(frame, at);
  }

  hello(interval) {
    clearInterval(this.timer);
    this.timer = setInterval(() => this.send({ op: 1, d: this.seq }), interval);
    this.send({
      op: 2,
      d: {
        token: this.token,
        intents: 1 << 12,
        properties: { os: "linux", browser: "heartline-bench", device: "heartline-bench" },
        ...(this.shard ? { shard: this.shard } : {}),
      },
    });
  }

  send(payload) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(payload));
  }

  close(code = 4000) {
    clearInterval(this.timer);
    if (this.closed !== null) return Promise.resolve();
    return new Promise((resolve) => {
      this.ws.once("close", resolve);
      this.ws.close(code);
    });
  }
}

// Opens clients for every token, at most `parallel` handshakes at a time,
// and resolves once all are READY (or rejects after timeoutMs).
export async function connectAll(url, tokens, { parallel = 50, timeoutMs = 120000, ...opts } = {}) {
  const clients = [];
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < tokens.length; i += parallel) {
    const batch = tokens.slice(i, i + parallel).map((token) =>
      new BenchClient(url, token, opts).open());
    clients.push(...batch);
    while (!batch.every((c) => c.ready)) {
      if (Date.now() > deadline) {
        const failed = clients.find((c) => !c.ready);
        throw new Error(`only ${clients.filter((c) => c.ready).length} of ${tokens.length} ` +
          `clients READY at ${url}` + (failed?.error ? ` (${failed.error})` : "") +
          (failed?.closed ? ` (closed ${failed.closed})` : ""));
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return clients;
}
