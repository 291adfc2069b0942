// The control API under /_fake/ (JSON over HTTP, both ports): lets tests
// read and reset the record, make a fake human DM a bot, push any
// dispatch, send gateway ops, close, drop or zombify a bot's connections,
// and inject REST 429s.

import { INTENT } from "./gateway.mjs";
import { ApiError, parseJson, readBody, sendJson } from "./http-util.mjs";

export class Control {
  constructor({ world, record, gateway, limiter, rest }) {
    this.world = world;
    this.rest = rest;
    this.record = record;
    this.gateway = gateway;
    this.limiter = limiter;
    this.routes = [
      ["GET", /^\/record$/, () => this.record.toJSON()],
      ["POST", /^\/reset-record$/, () => this.resetRecord()],
      ["GET", /^\/bots$/, () => this.listBots()],
      ["GET", /^\/state$/, () => this.state()],
      ["POST", /^\/drop-all$/, () => ({ dropped: this.gateway.dropAll() })],
      ["POST", /^\/ratelimit$/, (body) => this.addRateLimit(body)],
      ["DELETE", /^\/ratelimit$/, () => this.clearRateLimits()],
      ["POST", /^\/fault$/, (body) => this.rest.addFault(body)],
      ["DELETE", /^\/fault$/, () => this.rest.clearFaults()],
      ["POST", /^\/bots\/(\d+)\/dm$/, (body, bot) => this.dm(bot, body)],
      ["POST", /^\/bots\/(\d+)\/dispatch$/, (body, bot) => this.dispatch(bot, body)],
      ["POST", /^\/bots\/(\d+)\/op$/, (body, bot) => this.op(bot, body)],
      ["POST", /^\/bots\/(\d+)\/close$/, (body, bot) => this.close(bot, body)],
      ["POST", /^\/bots\/(\d+)\/zombie$/, (body, bot) => this.zombie(bot, body)],
      ["POST", /^\/bots\/(\d+)\/drop$/, (body, bot) => this.drop(bot)],
    ];
  }

  async handle(req, res) {
    try {
      const path = new URL(req.url, "http://fake").pathname.replace(/^\/_fake/, "");
      const body = parseJson(await readBody(req));
      for (const [method, pattern, run] of this.routes) {
        const m = pattern.exec(path);
        if (!m || method !== req.method) continue;
        const bot = m[1] === undefined ? null : this.bot(m[1]);
        sendJson(res, 200, await run(body, bot));
        return;
      }
      sendJson(res, 404, { error: `no control route ${req.method} ${path}` });
    } catch (err) {
      const status = err instanceof ApiError ? err.status : 500;
      sendJson(res, status, { error: err.message });
    }
  }

  bot(index) {
    const bot = this.world.bots[Number(index)];
    if (!bot) throw new ApiError(404, 0, `no bot ${index}`);
    return bot;
  }

  resetRecord() {
    this.record.reset();
    return { ok: true };
  }

  listBots() {
    return this.world.bots.map((bot) => ({
      index: bot.index,
      token: bot.token,
      user_id: bot.user.id,
      application_id: bot.user.id,
      username: bot.user.username,
      zombie: bot.zombie,
      revoked: bot.revoked,
      session_start_limit: this.world.sessionStartLimit(bot),
      ...this.gateway.botSummary(bot.index),
    }));
  }

  state() {
    return {
      connections: this.gateway.conns.size,
      bots: this.world.bots.map((bot) => {
        const summary = this.gateway.botSummary(bot.index);
        return {
          index: bot.index,
          user_id: bot.user.id,
          live_connections: summary.live_connections,
          live_sessions: summary.sessions.filter((s) => s.live).length,
          resumable_sessions: summary.sessions.length,
        };
      }),
    };
  }

  addRateLimit(body) {
    this.limiter.addInjection(body);
    return { ok: true, pending: this.limiter.injections.length };
  }

  clearRateLimits() {
    this.limiter.clearInjections();
    return { ok: true };
  }

  // A fake human writes to bot `bot` in their DM channel.
  dm(bot, { content = "", attachments = [], user }) {
    const human = user ? this.world.human(user) : this.world.defaultHuman;
    const channel = this.world.dmChannel(bot, human);
    const stored = attachments.map((file) => this.world.storeAttachment(channel.id, {
      filename: file.filename,
      contentType: file.content_type,
      data: Buffer.from(file.data_base64 ?? "", "base64"),
    }));
    const message = this.world.createMessage(channel, human, {
      content, attachments: stored,
    });
    const sessions = this.gateway.dispatch(bot.index, "MESSAGE_CREATE", message,
      INTENT.DIRECT_MESSAGES);

    this.record.add("inbound", { bot: bot.index, user_id: bot.user.id,
      channel: channel.id, id: message.id, author_id: human.id, content, sessions });
    return { message_id: message.id, channel_id: channel.id, user_id: human.id,
      sessions, message };
  }

  // One event ({ t, d }), or several ({ events: [{ t, d }, ...] }) written
  // one after another in one go, as Discord's bursts come.
  dispatch(bot, { t, d, events }) {
    const list = events ?? [{ t, d }];
    if (!Array.isArray(list) || list.some((e) => typeof e?.t !== "string")) {
      throw new ApiError(400, 0, "t must be an event name");
    }
    let sessions = 0;
    for (const e of list) sessions = this.gateway.dispatch(bot.index, e.t, e.d ?? null);
    return { sessions };
  }

  op(bot, { op, d }) {
    if (!Number.isInteger(op)) throw new ApiError(400, 0, "op must be an integer");
    return { connections: this.gateway.sendOp(bot.index, op, d) };
  }

  close(bot, { code = 4000 }) {
    if (!closeFrameCode(code)) {
      throw new ApiError(400, 0, `${code} cannot be sent in a close frame; use /drop`);
    }
    return { connections: this.gateway.closeBot(bot.index, code) };
  }

  zombie(bot, { on = true }) {
    bot.zombie = Boolean(on);
    return { zombie: bot.zombie };
  }

  drop(bot) {
    return { connections: this.gateway.dropBot(bot.index) };
  }
}

// Codes a close frame may carry (RFC 6455 section 7.4).
function closeFrameCode(code) {
  return (code >= 3000 && code <= 4999) ||
    [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]
      .includes(code);
}
