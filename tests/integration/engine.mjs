// Test-side host for libheartline.so: loads it with koffi in this Node
// process (as the OpenClaw shim does), so that blocking this process's
// main thread is a real host stall. Also a minimal downstream gateway
// client, the part of a Discord library that the tests need.
import koffi from "koffi";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const LIBRARY = process.env.HEARTLINE_LIBRARY ||
  join(ROOT, "build", "libheartline.so");

const abis = new Map();
function load(library = LIBRARY) {
  if (abis.has(library)) return abis.get(library);
  const lib = koffi.load(library);
  const abi = {
    start: lib.func("void *hl_start(const char *cfg, void *err, size_t len)"),
    stop: lib.func("void hl_stop(void *engine)"),
    status: lib.func("size_t hl_status(void *engine, void *buf, size_t len)"),
    drain: lib.func("size_t hl_logs_drain(void *engine, void *buf, size_t len)"),
    reconfigure: lib.func("int hl_reconfigure(void *engine, const char *cfg, void *err, size_t len)"),
    handoverVersion: lib.func("int hl_handover_version(void)"),
    detach: lib.func("void *hl_detach(void *engine, void *err, size_t len)"),
    attach: lib.func("void *hl_attach(const char *cfg, void *handover, void *err, size_t len)"),
    closeHandover: lib.func("void hl_handover_close(void *handover)"),
  };
  abis.set(library, abi);
  return abi;
}

// Ends a handover no engine took (see hl_handover_close).
export function closeHandover(handover, library = LIBRARY) {
  load(library).closeHandover(handover);
}

const cText = (buf) => buf.toString("utf8").replace(/\0.*$/s, "");

// An engine of `library` (this build unless named), started from config,
// or from config and a handover when one is given.
export function startEngine(config, { library = LIBRARY, handover = null } = {}) {
  const abi = load(library);
  const { start, stop, status, drain, reconfigure } = abi;
  const err = Buffer.alloc(512);
  const handle = handover
    ? abi.attach(JSON.stringify(config), handover, err, err.length)
    : start(JSON.stringify(config), err, err.length);
  if (!handle) throw new Error(cText(err));
  const logs = [];
  let stopped = false;
  const engine = {
    status() {
      let buf = Buffer.alloc(16384);
      let n = Number(status(handle, buf, buf.length));
      if (n >= buf.length) {
        buf = Buffer.alloc(n + 1);
        n = Number(status(handle, buf, buf.length));
      }
      return JSON.parse(buf.subarray(0, n).toString("utf8"));
    },
    logs() {
      const buf = Buffer.alloc(65536);
      for (;;) {
        const n = Number(drain(handle, buf, buf.length));
        if (n === 0) break;
        for (const line of buf.subarray(0, n).toString("utf8").split("\n")) {
          if (line) logs.push(JSON.parse(line));
        }
      }
      return logs;
    },
    // { rc, error }: 0 taken, 1 needs a new engine, -1 not valid.
    reconfigure(cfg) {
      const buf = Buffer.alloc(512);
      const rc = reconfigure(handle, JSON.stringify(cfg), buf, buf.length);
      return { rc, error: cText(buf) };
    },
    // Ends this engine, its sessions kept for startEngine(..., { handover }).
    detach() {
      engine.logs();
      const buf = Buffer.alloc(512);
      const handover = abi.detach(handle, buf, buf.length);
      if (!handover) throw new Error(cText(buf));
      stopped = true;
      return handover;
    },
    handoverVersion: () => abi.handoverVersion(),
    stop() {
      if (stopped) return;
      stopped = true;
      engine.logs();
      stop(handle);
    },
  };
  engine.origin = engine.status().origin;
  return engine;
}

// The engine configuration that points it at a fake Discord over TLS.
export function configFor(fake, extra = {}) {
  const https = fake.info.https_origin;
  return {
    api_base: `${https}/api/v10`,
    cdn_base: https,
    media_base: https,
    ca_file: fake.info.ca_file,
    ...extra,
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(what, check, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

// Blocks this thread, as a busy model or plugin blocks OpenClaw's loop.
export function busyWait(ms) {
  const end = Date.now() + ms;
  while (Date.now() < end);
}

// A downstream gateway client: IDENTIFY or RESUME, heartbeats, and every
// frame it received, in order.
export class GatewayClient {
  constructor(url, token) {
    this.url = url;
    this.token = token;
    this.frames = [];
    this.seq = null;
    this.sessionId = null;
    this.closed = null;
  }

  open() {
    this.ws = new WebSocket(`${this.url}/?v=10&encoding=json`);
    this.frames = [];
    this.closed = null;
    this.ws.on("message", (data) => {
      const frame = JSON.parse(data.toString());
      this.frames.push(frame);
      if (frame.s != null) this.seq = frame.s;
      if (frame.t === "READY") this.sessionId = frame.d.session_id;
      if (frame.op === 10) this.onHello(frame.d.heartbeat_interval);
    });
    this.ws.on("close", (code) => {
      this.closed = code;
      clearInterval(this.timer);
    });
    this.ws.on("error", () => {});
    return this;
  }

  onHello(interval) {
    this.timer = setInterval(() => this.send({ op: 1, d: this.seq }), interval);
    if (this.resumeWith) {
      this.send({ op: 6, d: { token: this.token, ...this.resumeWith } });
      this.resumeWith = null;
    } else {
      this.send({
        op: 2,
        d: { token: this.token, intents: 46603,
             properties: { os: "linux", browser: "test", device: "test" },
             ...(this.shard ? { shard: this.shard } : {}) },
      });
    }
  }

  identify() {
    return this.open();
  }

  resume() {
    this.resumeWith = { session_id: this.sessionId, seq: this.seq };
    return this.open();
  }

  send(payload) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(payload));
  }

  dispatches(t) {
    return this.frames.filter((f) => f.op === 0 && (!t || f.t === t));
  }

  close(code = 4000) {
    clearInterval(this.timer);
    this.ws.close(code);
    return new Promise((r) => (this.closed !== null ? r() : this.ws.once("close", r)));
  }
}
