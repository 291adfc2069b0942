// fake-discord: a Discord stand-in on loopback for heartline's tests and
// demo. It serves the REST API (/api/v10/...), the gateway WebSocket (path
// "/", v10 JSON), a CDN (/attachments/...) and a control API (/_fake/...)
// on two ports with one shared state: plain http/ws on 127.0.0.1, and
// https/wss with a test CA (for "localhost" and 127.0.0.1).
//
// Usage:
//   node tests/fake-discord/server.mjs [options]
//     --bots N                     bots to create (3)
//     --heartbeat-interval MS      sent in HELLO (41250)
//     --heartbeat-grace MS         a heartbeat later than interval + grace
//                                  drops the connection without a close
//                                  frame; the session stays resumable (5000)
//     --resume-window MS           resumable time after a connection ends
//                                  (180000)
//     --identify-interval MS       one IDENTIFY per interval per (token,
//                                  shard % max_concurrency); more get op 9
//                                  d:false (5000)
//     --max-concurrency N          /gateway/bot session_start_limit (1)
//     --shards N                   /gateway/bot shards (1)
//     --session-start-remaining N  daily IDENTIFY budget per bot (1000). As
//                                  Discord documents, an IDENTIFY with none
//                                  left ends all the bot's sessions and
//                                  resets its token: close 4004 there and on
//                                  every later IDENTIFY, REST answers 401.
//     --rest-limit N|discord       requests per bucket per window (1000), or
//                                  "discord" for Discord-like per-route
//                                  limits plus the 50/s global limit
//     --rest-window MS             bucket window for --rest-limit N (5000)
//     --attachment-origin self|URL origin of attachment urls in dispatches;
//                                  default Discord's real CDN hosts
//     --tls-dir DIR                where ca.pem/ca.key/server.pem/server.key
//                                  are made or reused (default: a fresh
//                                  temporary directory, removed on exit)
//     --http-port P, --https-port P  (0: any free port)
//     --record FILE                write the record there as JSON on exit
//
// On start it prints one JSON line to stdout and nothing else ever (logs go
// to stderr): {"http_port", "https_port", "ca_file", "http_origin",
// "https_origin", "bots": [{token, user_id, application_id, username}],
// "human": {user_id, username}} (the default human who sends DMs).
// SIGTERM or SIGINT: write --record, close everything, exit 0.
//
// Control API (JSON): GET /_fake/record, POST /_fake/reset-record,
// GET /_fake/bots, GET /_fake/state, POST /_fake/bots/:i/dm {content,
// attachments?:[{filename, content_type, data_base64}], user?},
// POST /_fake/bots/:i/dispatch {t, d} or {events: [{t, d}, ...]} (sent
// one after another in one go), POST /_fake/bots/:i/op {op, d?},
// POST /_fake/bots/:i/close {code}, POST /_fake/bots/:i/zombie {on},
// POST /_fake/bots/:i/drop, POST /_fake/drop-all, POST /_fake/ratelimit
// {route, count, retry_after, global, scope, bot?}, DELETE /_fake/ratelimit,
// POST /_fake/fault {route, count, status, after, delay_ms}: the next count
// requests on route wait delay_ms, then fail with status (500), after
// doing their work when `after` is true (a reply lost on the way back);
// status null: only the delay. DELETE /_fake/fault forgets those not used.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { serveCdn } from "./cdn.mjs";
import { Control } from "./control.mjs";
import { Gateway } from "./gateway.mjs";
import { sendJson } from "./http-util.mjs";
import { RateLimiter } from "./ratelimit.mjs";
import { Record } from "./record.mjs";
import { Rest } from "./rest.mjs";
import { ensureCertificates } from "./tls.mjs";
import { World } from "./world.mjs";

const NUMBER_OPTIONS = {
  "bots": 3,
  "heartbeat-interval": 41250,
  "heartbeat-grace": 5000,
  "resume-window": 180000,
  "identify-interval": 5000,
  "max-concurrency": 1,
  "shards": 1,
  "session-start-remaining": 1000,
  "rest-window": 5000,
  "http-port": 0,
  "https-port": 0,
};
const STRING_OPTIONS = ["tls-dir", "record", "rest-limit", "attachment-origin"];

function readOptions() {
  const { values } = parseArgs({
    options: Object.fromEntries([
      ...Object.keys(NUMBER_OPTIONS).map((name) => [name, { type: "string" }]),
      ...STRING_OPTIONS.map((name) => [name, { type: "string" }]),
    ]),
  });
  const options = { ...values };
  for (const [name, fallback] of Object.entries(NUMBER_OPTIONS)) {
    const value = values[name] === undefined ? fallback : Number(values[name]);
    if (!Number.isInteger(value) || value < 0) {
      throw new Error(`--${name} needs a non-negative integer`);
    }
    options[name] = value;
  }
  const restLimit = options["rest-limit"] ?? "1000";
  if (restLimit !== "discord" && !(Number(restLimit) > 0)) {
    throw new Error("--rest-limit needs a positive number or \"discord\"");
  }
  options["rest-limit"] = restLimit;
  return options;
}

function listen(server, port) {
  return new Promise((done, fail) => {
    server.once("error", fail);
    server.listen(port, "127.0.0.1", () => done(server.address().port));
  });
}

function route({ rest, control, world, record }, req, res, scheme) {
  const path = new URL(req.url, "http://fake").pathname;
  if (path === "/api" || path.startsWith("/api/")) return rest.handle(req, res, scheme);
  if (path.startsWith("/_fake/")) return control.handle(req, res);
  if (path.startsWith("/_upload/")) return rest.upload(req, res);
  if (/^\/(ephemeral-)?attachments\//.test(path)) return serveCdn(world, record, req, res);
  return sendJson(res, 404, { message: "404: Not Found", code: 0 });
}

async function main() {
  const options = readOptions();
  const ownTlsDir = options["tls-dir"] === undefined;
  const tlsDir = resolve(options["tls-dir"] ?? mkdtempSync(join(tmpdir(), "fake-discord-tls-")));
  const tls = ensureCertificates(tlsDir);

  const record = new Record();
  const world = new World({
    bots: options.bots,
    sessionStartRemaining: options["session-start-remaining"],
    shards: options.shards,
    maxConcurrency: Math.max(1, options["max-concurrency"]),
  });
  const gateway = new Gateway({ world, record, options: {
    heartbeatInterval: options["heartbeat-interval"],
    heartbeatGrace: options["heartbeat-grace"],
    resumeWindow: options["resume-window"],
    identifyInterval: options["identify-interval"],
  } });
  const limiter = new RateLimiter({
    restLimit: options["rest-limit"], restWindowMs: options["rest-window"],
  });
  const ports = { http: 0, https: 0 };
  const rest = new Rest({ world, record, gateway, limiter, ports });
  const control = new Control({ world, record, gateway, limiter, rest });
  const parts = { rest, control, world, record };

  const serve = (scheme) => (req, res) => {
    Promise.resolve(route(parts, req, res, scheme)).catch((err) => {
      console.error("fake-discord: request failed", err);
      if (!res.headersSent) sendJson(res, 500, { message: "500: Internal Server Error", code: 0 });
    });
  };
  const plain = http.createServer(serve("http"));
  const secure = https.createServer({ key: tls.key, cert: tls.cert }, serve("https"));
  plain.on("upgrade", (req, socket, head) => gateway.handleUpgrade(req, socket, head, "ws"));
  secure.on("upgrade", (req, socket, head) => gateway.handleUpgrade(req, socket, head, "wss"));

  ports.http = await listen(plain, options["http-port"]);
  ports.https = await listen(secure, options["https-port"]);
  const httpOrigin = `http://127.0.0.1:${ports.http}`;
  const attachmentOrigin = options["attachment-origin"];
  if (attachmentOrigin) {
    world.attachmentOrigin = attachmentOrigin === "self" ? httpOrigin : attachmentOrigin;
  }

  const stop = () => {
    if (options.record) writeFileSync(options.record, JSON.stringify(record.toJSON(), null, 1));
    gateway.shutdown();
    for (const server of [plain, secure]) {
      server.close();
      server.closeAllConnections();
    }
    if (ownTlsDir) rmSync(tlsDir, { recursive: true, force: true });
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);

  process.stdout.write(`${JSON.stringify({
    http_port: ports.http,
    https_port: ports.https,
    ca_file: tls.caFile,
    http_origin: httpOrigin,
    https_origin: `https://localhost:${ports.https}`,
    bots: world.bots.map((bot) => ({
      token: bot.token, user_id: bot.user.id, application_id: bot.user.id,
      username: bot.user.username,
    })),
    human: { user_id: world.defaultHuman.id, username: world.defaultHuman.username },
  })}\n`);
  console.error(`fake-discord: listening on ${httpOrigin} and https://localhost:${ports.https}`);
}

main().catch((err) => {
  console.error(`fake-discord: ${err.message}`);
  process.exit(1);
});
