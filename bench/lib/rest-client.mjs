// A keep-alive REST client for the benchmark: the same code sends
// requests straight to the fake (https, its CA) and through heartline
// (loopback http), and times each one.

import http from "node:http";
import https from "node:https";

export class RestClient {
  // base: origin + "/api/v10"; ca: the fake's CA for an https base.
  constructor(base, { ca = null, sockets = 32 } = {}) {
    this.url = new URL(base);
    this.tls = this.url.protocol === "https:";
    const Agent = this.tls ? https.Agent : http.Agent;
    this.agent = new Agent({ keepAlive: true, maxSockets: sockets, ...(ca ? { ca } : {}) });
    this.module = this.tls ? https : http;
  }

  // Resolves with { status, ms, body } (body as text).
  request(method, path, token, body) {
    const data = body === undefined ? null : JSON.stringify(body);
    const started = performance.now();
    return new Promise((resolve, reject) => {
      const req = this.module.request({
        host: this.url.hostname, port: this.url.port, method, agent: this.agent,
        path: `${this.url.pathname}${path}`,
        headers: {
          authorization: `Bot ${token}`,
          ...(data ? { "content-type": "application/json",
            "content-length": Buffer.byteLength(data) } : {}),
        },
      }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c) => { text += c; });
        res.on("end", () => resolve({ status: res.statusCode, ms: performance.now() - started,
          body: text }));
      });
      req.on("error", reject);
      req.end(data ?? undefined);
    });
  }

  close() {
    this.agent.destroy();
  }
}

// Sequential requests, alternating between the clients in batches, until
// each has made `count`; returns every latency per client label, and the
// number of answers that were not 2xx.
export async function alternate(clients, count, batch, send) {
  const ms = Object.fromEntries(Object.keys(clients).map((k) => [k, []]));
  const errors = Object.fromEntries(Object.keys(clients).map((k) => [k, 0]));
  let i = 0;
  while (Object.values(ms).some((list) => list.length < count)) {
    for (const [label, client] of Object.entries(clients)) {
      for (let j = 0; j < batch && ms[label].length < count; j++) {
        const answer = await send(client, i++);
        if (answer.status >= 300) errors[label] += 1;
        else ms[label].push(answer.ms);
      }
    }
  }
  return { ms, errors };
}

// `parallel` requests in flight for `durationMs`; returns requests a
// second that got a 2xx, and how many did not.
export async function blast(client, durationMs, parallel, send) {
  let ok = 0;
  let failed = 0;
  let i = 0;
  const started = performance.now();
  const end = Date.now() + durationMs;
  const worker = async () => {
    while (Date.now() < end) {
      const answer = await send(client, i++);
      if (answer.status >= 300) failed += 1;
      else ok += 1;
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return { per_s: ok / ((performance.now() - started) / 1000), ok, failed };
}
