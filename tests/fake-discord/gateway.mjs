// The fake gateway: Discord's WebSocket protocol (v10, JSON, no
// compression) on path "/" of both ports.
//
// A connection gets HELLO, must heartbeat within interval + grace (else it
// is dropped abruptly, as Discord drops zombies, and its session stays
// resumable), then IDENTIFYs (READY) or RESUMEs (replay + RESUMED).
// Sessions outlive their connection for --resume-window. Every dispatch is
// numbered per session and kept for replay. The control API reaches in
// through sendOp / closeBot / dropBot / dropAll and bot.zombie.

import { WebSocketServer } from "ws";
import { sessionId } from "./ids.mjs";

const OP = {
  DISPATCH: 0, HEARTBEAT: 1, IDENTIFY: 2, PRESENCE_UPDATE: 3,
  VOICE_STATE_UPDATE: 4, RESUME: 6, RECONNECT: 7, REQUEST_GUILD_MEMBERS: 8,
  INVALID_SESSION: 9, HELLO: 10, HEARTBEAT_ACK: 11,
  REQUEST_SOUNDBOARD_SOUNDS: 31,
};
const AFTER_AUTH_OPS = new Set([
  OP.PRESENCE_UPDATE, OP.VOICE_STATE_UPDATE, OP.REQUEST_GUILD_MEMBERS,
  OP.REQUEST_SOUNDBOARD_SOUNDS,
]);

const CLOSE = {
  UNKNOWN_OPCODE: 4001, DECODE_ERROR: 4002, NOT_AUTHENTICATED: 4003,
  AUTHENTICATION_FAILED: 4004, ALREADY_AUTHENTICATED: 4005,
  INVALID_SEQ: 4007, RATE_LIMITED: 4008, INVALID_SHARD: 4010,
  INVALID_API_VERSION: 4012, INVALID_INTENTS: 4013,
};
// Close codes after which Discord will not let the session be resumed.
const SESSION_ENDING_CODES = new Set([1000, 1001, 4004, 4007, 4009, 4010,
  4011, 4012, 4013, 4014]);

// Every intent bit Discord defines (0-16, 20, 21, 24, 25).
const KNOWN_INTENTS = 0x1ffff | (1 << 20) | (1 << 21) | (1 << 24) | (1 << 25);
export const INTENT = {
  DIRECT_MESSAGES: 1 << 12,
  DIRECT_MESSAGE_REACTIONS: 1 << 13,
  DIRECT_MESSAGE_TYPING: 1 << 14,
};

const PAYLOAD_LIMIT = 4096;
const SEND_LIMIT = 120;
const SEND_WINDOW_MS = 60000;
const REPLAY_LIMIT = 10000;
const TRACE = ["[\"gateway-prd-fake-1\",{\"micros\":1200}]"];

export class Gateway {
  constructor({ world, record, options }) {
    this.world = world;
    this.record = record;
    this.options = options;
    this.wss = new WebSocketServer({ noServer: true, maxPayload: 1 << 20 });
    this.sessions = new Map();
    this.conns = new Set();
    this.nextConnId = 1;
    this.lastIdentify = new Map();
  }

  // ---- connections ----

  handleUpgrade(req, socket, head, scheme) {
    const url = new URL(req.url, "http://fake");
    if (url.pathname !== "/") {
      socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.open(ws, `${scheme}://${req.headers.host}`, url.searchParams);
    });
  }

  open(ws, origin, query) {
    const conn = {
      id: this.nextConnId++, ws, origin, bot: null, session: null,
      lastBeatAt: Date.now(), deadline: null, sends: [], end: null,
      errored: false, connectEntry: null,
    };
    this.conns.add(conn);
    this.record.add("connects", { bot: null, user_id: null, conn: conn.id });
    conn.connectEntry = this.record.connects.at(-1);

    ws.on("message", (data) => this.receive(conn, data));
    ws.on("close", (code) => this.closed(conn, code));
    ws.on("error", () => { conn.errored = true; });

    const refusal = this.refuseQuery(query);
    if (refusal) {
      console.error(`fake-discord: gateway refused: ${refusal.reason}`);
      this.end(conn, "server_close", refusal.code, refusal.reason);
      return;
    }
    this.send(conn, {
      op: OP.HELLO, d: { heartbeat_interval: this.options.heartbeatInterval,
        _trace: TRACE }, s: null, t: null,
    });
    this.armDeadline(conn);
  }

  refuseQuery(query) {
    const version = query.get("v");
    if (version !== null && version !== "10") {
      return { code: CLOSE.INVALID_API_VERSION, reason: "Invalid API version" };
    }
    const encoding = query.get("encoding");
    if (encoding !== null && encoding !== "json") {
      return { code: CLOSE.DECODE_ERROR, reason: "fake: only encoding=json" };
    }
    if (query.get("compress")) {
      return { code: CLOSE.DECODE_ERROR, reason: "fake: no transport compression" };
    }
    return null;
  }

  armDeadline(conn) {
    clearTimeout(conn.deadline);
    const limit = this.options.heartbeatInterval + this.options.heartbeatGrace;
    conn.deadline = setTimeout(() => {
      this.end(conn, "heartbeat_timeout", 1006);
    }, limit);
  }

  send(conn, payload) {
    if (conn.ws.readyState === conn.ws.OPEN) conn.ws.send(JSON.stringify(payload));
  }

  // Ends a connection from the server side. Without `closeReason` the
  // socket is cut without a close frame, as Discord does with zombies.
  end(conn, reason, code, closeReason) {
    if (conn.end) return;
    conn.end = { reason, code };
    if (closeReason === undefined) conn.ws.terminate();
    else conn.ws.close(code, closeReason);
  }

  closed(conn, receivedCode) {
    clearTimeout(conn.deadline);
    this.conns.delete(conn);

    const reason = conn.end?.reason ?? (conn.errored ? "socket_error" : "client_close");
    const code = conn.end?.code ?? receivedCode;
    this.record.add("drops", { ...this.who(conn), conn: conn.id, code, reason });

    const session = conn.session;
    if (!session || session.conn !== conn) return;
    session.conn = null;
    session.endedAt = Date.now();
    // A client closing with 1000/1001 ends its session; server-side
    // closes have already decided (closeBot, op 9).
    if (reason === "client_close" && (code === 1000 || code === 1001)) {
      session.valid = false;
    }
  }

  who(conn) {
    return { bot: conn.bot?.index ?? null, user_id: conn.bot?.user.id ?? null };
  }

  // ---- receiving ----

  receive(conn, data) {
    if (conn.end) return;
    if (data.length > PAYLOAD_LIMIT) {
      this.end(conn, "server_close", CLOSE.DECODE_ERROR, "Payload too large");
      return;
    }

    let payload;
    try {
      payload = JSON.parse(data.toString("utf8"));
    } catch {
      this.end(conn, "server_close", CLOSE.DECODE_ERROR, "Decode error");
      return;
    }
    this.record.add("ops", { ...this.who(conn), conn: conn.id, op: payload?.op });

    // Heartbeats are exempt here so short test intervals never trip it.
    if (payload?.op !== OP.HEARTBEAT && this.overSendLimit(conn)) {
      this.end(conn, "server_close", CLOSE.RATE_LIMITED, "Rate limited");
      return;
    }
    this.handle(conn, payload ?? {});
  }

  overSendLimit(conn) {
    const now = Date.now();
    conn.sends = conn.sends.filter((t) => t > now - SEND_WINDOW_MS);
    conn.sends.push(now);
    return conn.sends.length > SEND_LIMIT;
  }

  handle(conn, { op, d }) {
    if (op === OP.HEARTBEAT) return this.heartbeat(conn);
    if (op === OP.IDENTIFY) return this.identify(conn, d);
    if (op === OP.RESUME) return this.resume(conn, d);
    if (!AFTER_AUTH_OPS.has(op)) {
      return this.end(conn, "server_close", CLOSE.UNKNOWN_OPCODE, "Unknown opcode");
    }
    if (!conn.session) {
      this.end(conn, "server_close", CLOSE.NOT_AUTHENTICATED, "Not authenticated");
    }
  }

  heartbeat(conn) {
    const now = Date.now();
    const gap = now - conn.lastBeatAt;
    this.record.add("heartbeats", {
      ...this.who(conn), conn: conn.id, gap_ms: gap,
      late_ms: gap - this.options.heartbeatInterval,
    });
    conn.lastBeatAt = now;
    this.armDeadline(conn);
    if (!conn.bot?.zombie) this.send(conn, { op: OP.HEARTBEAT_ACK, d: null });
  }

  // ---- IDENTIFY ----

  identify(conn, d) {
    if (conn.session) {
      return this.end(conn, "server_close", CLOSE.ALREADY_AUTHENTICATED, "Already authenticated");
    }
    const bot = this.world.botByToken(d?.token);
    if (!bot) {
      return this.end(conn, "server_close", CLOSE.AUTHENTICATION_FAILED, "Authentication failed");
    }
    const shard = d.shard ?? [0, 1];
    if (!validShard(shard)) {
      return this.end(conn, "server_close", CLOSE.INVALID_SHARD, "Invalid shard");
    }
    if (!Number.isInteger(d.intents) || (d.intents & ~KNOWN_INTENTS) !== 0) {
      return this.end(conn, "server_close", CLOSE.INVALID_INTENTS, "Invalid intent(s)");
    }

    const bucket = `${bot.index}:${shard[0] % this.world.maxConcurrency}`;
    const last = this.lastIdentify.get(bucket);
    if (last !== undefined && Date.now() - last < this.options.identifyInterval) {
      this.record.add("identify_rate_limited", { bot: bot.index, user_id: bot.user.id,
        conn: conn.id, shard });
      return this.send(conn, { op: OP.INVALID_SESSION, d: false });
    }
    if (!this.world.takeSessionStart(bot)) return this.exhaustSessionStarts(bot, conn);
    this.lastIdentify.set(bucket, Date.now());

    const session = this.openSession(conn, bot, d);
    this.record.add("identifies", { ...this.who(conn), conn: conn.id, shard });
    this.sendEvent(session, "READY", this.readyData(bot, session));
  }

  // Discord's documented answer to the daily IDENTIFY budget running out:
  // every session of the bot ends and its token is reset, so this token
  // now fails (REST 401, gateway 4004) until the fake restarts.
  exhaustSessionStarts(bot, conn) {
    this.record.add("session_start_exhausted", { bot: bot.index, user_id: bot.user.id,
      conn: conn.id });
    bot.revoked = true;
    for (const other of this.liveConns(bot.index)) {
      other.session.valid = false;
      this.end(other, "server_close", CLOSE.AUTHENTICATION_FAILED, "Authentication failed");
    }
    conn.bot = bot;
    this.end(conn, "server_close", CLOSE.AUTHENTICATION_FAILED, "Authentication failed");
  }

  openSession(conn, bot, d) {
    const session = {
      id: sessionId(), bot, seq: 0, events: [], intents: d.intents,
      shard: d.shard ?? null, conn, endedAt: null, valid: true,
    };
    this.sessions.set(session.id, session);
    this.attach(conn, session);
    return session;
  }

  attach(conn, session) {
    conn.bot = session.bot;
    conn.session = session;
    session.conn = conn;
    session.endedAt = null;
    Object.assign(conn.connectEntry, this.who(conn));
  }

  readyData(bot, session) {
    return {
      v: 10,
      user_settings: {},
      user: this.world.selfUser(bot),
      guilds: [],
      guild_join_requests: [],
      relationships: [],
      private_channels: [],
      presences: [],
      session_id: session.id,
      session_type: "normal",
      resume_gateway_url: session.conn.origin,
      ...(session.shard ? { shard: session.shard } : {}),
      application: { id: bot.user.id, flags: this.world.applicationFlags() },
      geo_ordered_rtc_regions: ["fake-local"],
      _trace: TRACE,
    };
  }

  // ---- RESUME ----

  resume(conn, d) {
    if (conn.session) {
      return this.end(conn, "server_close", CLOSE.ALREADY_AUTHENTICATED, "Already authenticated");
    }
    const bot = this.world.botByToken(d?.token);
    if (!bot) {
      return this.end(conn, "server_close", CLOSE.AUTHENTICATION_FAILED, "Authentication failed");
    }

    const session = this.sessions.get(d.session_id);
    const seq = d.seq ?? 0;
    if (session?.bot === bot && this.resumable(session) && seq > session.seq) {
      return this.end(conn, "server_close", CLOSE.INVALID_SEQ, "Invalid seq");
    }
    const firstKept = session?.events[0]?.s ?? 1;
    if (session?.bot !== bot || !this.resumable(session) || seq < firstKept - 1) {
      this.record.add("resumes", { bot: bot.index, user_id: bot.user.id, conn: conn.id,
        ok: false, replayed: 0, seq });
      return this.send(conn, { op: OP.INVALID_SESSION, d: false });
    }

    if (session.conn) this.end(session.conn, "superseded", 1006);
    this.attach(conn, session);
    const missed = session.events.filter((event) => event.s > seq);
    for (const event of missed) this.send(conn, event);
    this.sendEvent(session, "RESUMED", { _trace: TRACE });
    this.record.add("resumes", { ...this.who(conn), conn: conn.id, ok: true,
      replayed: missed.length, seq });
  }

  resumable(session) {
    if (!session.valid) return false;
    if (session.conn) return true;
    return Date.now() - session.endedAt <= this.options.resumeWindow;
  }

  // ---- dispatching ----

  sendEvent(session, t, d) {
    session.seq += 1;
    const event = { op: OP.DISPATCH, t, s: session.seq, d: structuredClone(d) };
    session.events.push(event);
    if (session.events.length > REPLAY_LIMIT) session.events.shift();
    if (session.conn) this.send(session.conn, event);
  }

  // Sends an event to every session of the bot that is live or still
  // resumable (kept for its replay) and asked for `intent`. Returns how
  // many sessions got it.
  dispatch(botIndex, t, d, intent = 0) {
    let reached = 0;
    for (const session of this.sessions.values()) {
      if (!this.resumable(session)) {
        this.sessions.delete(session.id);
        continue;
      }
      if (session.bot.index !== botIndex) continue;
      if (intent && !(session.intents & intent)) continue;
      this.sendEvent(session, t, d);
      reached += 1;
    }
    return reached;
  }

  // ---- control ----

  liveConns(botIndex) {
    return [...this.conns].filter((c) => c.session && c.bot.index === botIndex && !c.end);
  }

  sendOp(botIndex, op, d) {
    const conns = this.liveConns(botIndex);
    for (const conn of conns) {
      if (op === OP.INVALID_SESSION && !d) conn.session.valid = false;
      const payload = op === OP.INVALID_SESSION ? Boolean(d) : (d ?? null);
      this.send(conn, { op, d: payload, s: null, t: null });
    }
    return conns.length;
  }

  closeBot(botIndex, code) {
    const conns = this.liveConns(botIndex);
    for (const conn of conns) {
      if (SESSION_ENDING_CODES.has(code)) conn.session.valid = false;
      this.end(conn, "server_close", code, "fake: closed on request");
    }
    return conns.length;
  }

  dropBot(botIndex) {
    const conns = this.liveConns(botIndex);
    for (const conn of conns) this.end(conn, "server_drop", 1006);
    return conns.length;
  }

  dropAll() {
    const conns = [...this.conns].filter((c) => !c.end);
    for (const conn of conns) this.end(conn, "server_drop", 1006);
    return conns.length;
  }

  botSummary(botIndex) {
    const sessions = [...this.sessions.values()]
      .filter((s) => s.bot.index === botIndex && this.resumable(s))
      .map((s) => ({
        session_id: s.id, seq: s.seq, live: Boolean(s.conn),
        conn: s.conn?.id ?? null, ended_at: s.endedAt,
      }));
    return { live_connections: this.liveConns(botIndex).length, sessions };
  }

  shutdown() {
    for (const conn of this.conns) this.end(conn, "server_drop", 1006);
  }
}

function validShard(shard) {
  return Array.isArray(shard) && shard.length === 2 &&
    Number.isInteger(shard[0]) && Number.isInteger(shard[1]) &&
    shard[1] >= 1 && shard[0] >= 0 && shard[0] < shard[1];
}
