// The fake REST API under /api/v10 (other versions and plain /api are
// accepted the same way): the routes OpenClaw's Discord channel calls,
// with Discord's error bodies, rate-limit headers and 429s, and the side
// effects tests look for (messages dispatched back over the gateway,
// typing, reactions, nonce de-duplication), all written to the record.
//
// Each route names its rate-limit group and major parameter; a request
// to a route not in the table gets Discord's 404 and is recorded with
// route null, so missing routes show up in the record.

import { randomUUID } from "node:crypto";
import { INTENT } from "./gateway.mjs";
import { ApiError, parsePayload, readBody, sendEmpty, sendJson } from "./http-util.mjs";
import { snowflake } from "./ids.mjs";

const NONCE_WINDOW_MS = 5 * 60 * 1000;
const CONTENT_LIMIT = 2000;
const NONCE_LIMIT = 25;

// A handler's answer with a status other than 200 (204 is an undefined
// return).
class Answer {
  constructor(status, body) {
    this.status = status;
    this.body = body;
  }
}

const unknown = (what, code) => new ApiError(404, code, `Unknown ${what}`);
const missingAccess = () => new ApiError(403, 50001, "Missing Access");

function formError(field, code, message) {
  return new ApiError(400, 50035, "Invalid Form Body",
    { [field]: { _errors: [{ code, message }] } });
}

function compile(path) {
  const source = path.replace(/\./g, "\\.")
    .replace(/:(\w+)/g, (_, name) => `(?<${name}>[^/]+)`);
  return new RegExp(`^${source}$`);
}

export class Rest {
  constructor({ world, record, gateway, limiter, ports }) {
    this.world = world;
    this.record = record;
    this.gateway = gateway;
    this.limiter = limiter;
    this.ports = ports;
    this.nonces = new Map();
    this.faults = [];
    this.reactors = new Map();
    this.routes = this.routeTable().map(([method, path, handler, opts = {}]) => ({
      method, path, pattern: compile(path), handler: handler.bind(this),
      group: opts.group ?? `${method} ${path}`, major: opts.major ?? null,
      auth: opts.auth ?? true,
    }));
  }

  // [method, path, handler, { group, major, auth }]: group names the
  // rate-limit bucket (default: the route itself), major the parameter
  // that splits it, as Discord splits buckets by channel.
  routeTable() {
    const ch = { major: "channel" };
    const cmd = { group: "commands" };
    const msg = "/channels/:channel/messages/:message";
    const reaction = { ...ch, group: "reaction" };
    return [
      ["GET", "/gateway", this.getGateway, { auth: false }],
      ["GET", "/gateway/bot", this.getGatewayBot],
      ["GET", "/users/@me", this.getSelf],
      ["GET", "/users/@me/guilds", () => []],
      ["GET", "/users/@me/channels", this.listDmChannels],
      ["POST", "/users/@me/channels", this.openDm],
      ["GET", "/users/:user", this.getUser],
      ["GET", "/oauth2/applications/@me", this.getApplication],
      ["GET", "/applications/@me", this.getApplication],
      ["GET", "/applications/:app/commands", this.listCommands, cmd],
      ["POST", "/applications/:app/commands", this.createCommand, cmd],
      ["PUT", "/applications/:app/commands", this.overwriteCommands, cmd],
      ["GET", "/applications/:app/commands/:command", this.getCommand, cmd],
      ["PATCH", "/applications/:app/commands/:command", this.editCommand, cmd],
      ["DELETE", "/applications/:app/commands/:command", this.deleteCommand, cmd],
      ["GET", "/applications/:app/guilds/:guild/commands", this.guildCommands, cmd],
      ["PUT", "/applications/:app/guilds/:guild/commands", this.guildCommands, cmd],
      ["POST", "/applications/:app/guilds/:guild/commands", this.guildCommands, cmd],
      ["GET", "/channels/:channel", this.getChannel, ch],
      ["POST", "/channels/:channel/typing", this.typing, { ...ch, group: "typing" }],
      ["POST", "/channels/:channel/attachments", this.requestUploads, ch],
      ["GET", "/channels/:channel/pins", () => [], ch],
      ["PUT", "/channels/:channel/pins/:message", this.pin, ch],
      ["DELETE", "/channels/:channel/pins/:message", this.pin, ch],
      ["GET", "/channels/:channel/messages/pins", () => ({ items: [], has_more: false }), ch],
      ["PUT", "/channels/:channel/messages/pins/:message", this.pin, ch],
      ["DELETE", "/channels/:channel/messages/pins/:message", this.pin, ch],
      ["GET", "/channels/:channel/messages", this.listMessages, ch],
      ["POST", "/channels/:channel/messages", this.createMessage,
        { ...ch, group: "message-create" }],
      ["GET", msg, this.getMessage, ch],
      ["PATCH", msg, this.editMessage, { ...ch, group: "message-edit" }],
      ["DELETE", msg, this.deleteMessage, { ...ch, group: "message-delete" }],
      ["PUT", `${msg}/reactions/:emoji/@me`, this.addReaction, reaction],
      ["DELETE", `${msg}/reactions/:emoji/@me`, this.removeReaction, reaction],
      ["DELETE", `${msg}/reactions/:emoji/:user`, this.removeReaction, reaction],
      ["GET", `${msg}/reactions/:emoji`, this.listReactors, ch],
      ["DELETE", `${msg}/reactions`, this.clearReactions, reaction],
    ];
  }

  // ---- request pipeline ----

  async handle(req, res, scheme) {
    const url = new URL(req.url, "http://fake");
    const path = url.pathname.replace(/^\/api(\/v\d+)?/, "") || "/";
    const entry = { method: req.method, path, bot: null, user_id: null,
      route: null, status: 0 };

    try {
      const { status, body, headers } = await this.answer(req, url, path, scheme, entry);
      entry.status = status;
      if (body === undefined) sendEmpty(res, status, headers);
      else sendJson(res, status, body, headers);
    } catch (err) {
      if (!(err instanceof ApiError)) console.error("fake-discord: REST error", err);
      const apiError = err instanceof ApiError ? err
        : new ApiError(500, 0, "500: Internal Server Error");
      entry.status = apiError.status;
      sendJson(res, apiError.status, apiError.body, err.headers ?? {});
    }
    this.record.add("requests", entry);
  }

  // The next rule.count requests on rule.route wait rule.delay_ms, then
  // fail with rule.status; with rule.after they do their work first. A
  // status of null only delays them.
  addFault({ route, count = 1, status = 500, after = false, delay_ms = 0 }) {
    if (typeof route !== "string") throw new ApiError(400, 0, "fault: route needed");
    this.faults.push({ route, count, status, after, delayMs: delay_ms });
    return { ok: true, pending: this.faults.length };
  }

  clearFaults() {
    const cleared = this.faults.length;
    this.faults = [];
    return { ok: true, cleared };
  }

  takeFault(route) {
    const fault = this.faults.find((f) => f.route === route && f.count > 0);
    if (!fault) return null;
    if (--fault.count === 0) this.faults.splice(this.faults.indexOf(fault), 1);
    return fault;
  }

  async answer(req, url, path, scheme, entry) {
    const raw = await readBody(req);
    const found = this.match(req.method, path);
    if (!found) throw new ApiError(404, 0, "404: Not Found");
    const { route, params } = found;
    entry.route = `${route.method} ${route.path}`;
    const fault = this.takeFault(entry.route);
    if (fault) {
      if (fault.status !== null) entry.fault = fault.status;
      if (fault.delayMs) await new Promise((r) => setTimeout(r, fault.delayMs));
      if (fault.status === null) return this.work(req, url, path, route, params, scheme, raw, entry);
      if (!fault.after) throw new ApiError(fault.status, 0, `${fault.status}: injected fault`);
      if (route.auth) entry.bot = this.authenticate(req).index;
      await this.work(req, url, path, route, params, scheme, raw, entry).catch(() => {});
      throw new ApiError(fault.status, 0, `${fault.status}: injected fault`);
    }
    return this.work(req, url, path, route, params, scheme, raw, entry);
  }

  async work(req, url, path, route, params, scheme, raw, entry) {
    const bot = route.auth ? this.authenticate(req) : null;
    entry.bot = bot?.index ?? null;
    entry.user_id = bot?.user.id ?? null;

    let headers = {};
    if (bot) {
      const check = this.limiter.check(bot.index, `${req.method} ${path}`,
        route.group, params[route.major]);
      headers = check.headers;
      if (check.limited) return this.rateLimited(bot, entry, check);
    }

    try {
      const payload = await parsePayload(raw, req.headers["content-type"]);
      const ctx = { bot, params, query: url.searchParams, scheme, req, ...payload };
      const result = await route.handler(ctx);
      if (result === undefined) return { status: 204, headers };
      if (result instanceof Answer) return { status: result.status, body: result.body, headers };
      return { status: 200, body: result, headers };
    } catch (err) {
      err.headers = headers;
      throw err;
    }
  }

  match(method, path) {
    for (const route of this.routes) {
      if (route.method !== method) continue;
      const m = route.pattern.exec(path);
      if (m) return { route, params: decodeParams(m.groups ?? {}) };
    }
    return null;
  }

  authenticate(req) {
    const header = req.headers.authorization ?? "";
    const bot = header.startsWith("Bot ") ? this.world.botByToken(header.slice(4)) : null;
    if (!bot) throw new ApiError(401, 0, "401: Unauthorized");
    return bot;
  }

  rateLimited(bot, entry, { limited, headers }) {
    this.record.add("rate_limited", { bot: bot.index, user_id: bot.user.id,
      route: entry.route, path: entry.path, ...limited });
    return {
      status: 429,
      headers,
      body: {
        message: "You are being rate limited.",
        retry_after: limited.retryAfter,
        global: limited.global,
      },
    };
  }

  // ---- gateway, users, application ----

  gatewayUrl(scheme) {
    return scheme === "https"
      ? `wss://localhost:${this.ports.https}`
      : `ws://127.0.0.1:${this.ports.http}`;
  }

  getGateway({ scheme }) {
    return { url: this.gatewayUrl(scheme) };
  }

  getGatewayBot({ bot, scheme }) {
    return {
      url: this.gatewayUrl(scheme),
      shards: this.world.shards,
      session_start_limit: this.world.sessionStartLimit(bot),
    };
  }

  getSelf({ bot }) {
    return this.world.selfUser(bot);
  }

  getUser({ params }) {
    const user = this.world.users.get(params.user);
    if (!user) throw unknown("User", 10013);
    return this.world.userObject(user);
  }

  getApplication({ bot }) {
    return this.world.application(bot);
  }

  listDmChannels({ bot }) {
    return [...this.world.channels.values()]
      .filter((c) => c.botIndex === bot.index)
      .map((c) => this.world.channelObject(c));
  }

  openDm({ bot, json }) {
    const id = String(json.recipient_id ?? "");
    if (!/^\d{15,21}$/.test(id)) {
      throw formError("recipient_id", "NUMBER_TYPE_COERCE", `Value "${id}" is not snowflake.`);
    }
    const user = this.world.users.get(id);
    if (user?.bot) throw new ApiError(400, 50007, "Cannot send messages to this user");
    const channel = this.world.dmChannel(bot, user ?? this.world.human({ id }));
    return this.world.channelObject(channel);
  }

  // ---- application commands ----

  ownApplication({ bot, params }) {
    if (params.app === bot.user.id) return bot;
    if (this.world.bots.some((b) => b.user.id === params.app)) throw missingAccess();
    throw unknown("Application", 10002);
  }

  commandObject(bot, fields, existing) {
    return {
      type: 1,
      description: "",
      default_member_permissions: null,
      dm_permission: true,
      contexts: null,
      integration_types: [0],
      nsfw: false,
      ...fields,
      id: existing?.id ?? snowflake(),
      application_id: bot.user.id,
      version: snowflake(),
    };
  }

  findCommand(bot, fields) {
    const type = fields.type ?? 1;
    return [...bot.commands.values()]
      .find((c) => c.name === fields.name && c.type === type);
  }

  listCommands(ctx) {
    return [...this.ownApplication(ctx).commands.values()];
  }

  getCommand(ctx) {
    const command = this.ownApplication(ctx).commands.get(ctx.params.command);
    if (!command) throw unknown("application command", 10063);
    return command;
  }

  // Discord treats a POST with an existing name as an update (200).
  createCommand(ctx) {
    const bot = this.ownApplication(ctx);
    if (!ctx.json.name) throw formError("name", "BASE_TYPE_REQUIRED", "This field is required");
    const existing = this.findCommand(bot, ctx.json);
    const command = this.commandObject(bot, ctx.json, existing);
    bot.commands.set(command.id, command);
    return new Answer(existing ? 200 : 201, command);
  }

  overwriteCommands(ctx) {
    const bot = this.ownApplication(ctx);
    if (!Array.isArray(ctx.json)) throw new ApiError(400, 50035, "Invalid Form Body");
    const next = ctx.json.map((fields) =>
      this.commandObject(bot, fields, this.findCommand(bot, fields)));
    bot.commands = new Map(next.map((c) => [c.id, c]));
    return next;
  }

  editCommand(ctx) {
    const bot = this.ownApplication(ctx);
    const current = this.getCommand(ctx);
    const command = this.commandObject(bot, { ...current, ...ctx.json }, current);
    bot.commands.set(command.id, command);
    return command;
  }

  deleteCommand(ctx) {
    this.getCommand(ctx);
    this.ownApplication(ctx).commands.delete(ctx.params.command);
  }

  // The fake's bots are in no guild.
  guildCommands(ctx) {
    this.ownApplication(ctx);
    throw missingAccess();
  }

  // ---- channels ----

  channel({ bot, params }) {
    const { channel, error } = this.world.channelFor(bot, params.channel);
    if (error === "unknown") throw unknown("Channel", 10003);
    if (error) throw missingAccess();
    return channel;
  }

  message(ctx) {
    const channel = this.channel(ctx);
    const message = this.world.findMessage(channel, ctx.params.message);
    if (!message) throw unknown("Message", 10008);
    return { channel, message };
  }

  getChannel(ctx) {
    return this.world.channelObject(this.channel(ctx));
  }

  typing(ctx) {
    const channel = this.channel(ctx);
    this.record.add("typing", { bot: ctx.bot.index, user_id: ctx.bot.user.id,
      channel: channel.id });
    this.gateway.dispatch(ctx.bot.index, "TYPING_START", {
      channel_id: channel.id, user_id: ctx.bot.user.id,
      timestamp: Math.floor(Date.now() / 1000),
    }, INTENT.DIRECT_MESSAGE_TYPING);
  }

  pin(ctx) {
    this.message(ctx);
  }

  // Cloud upload: hands out URLs on this fake's own origin (PUT /_upload/).
  requestUploads(ctx) {
    this.channel(ctx);
    const files = Array.isArray(ctx.json.files) ? ctx.json.files : [];
    const host = ctx.req.headers.host;
    return {
      attachments: files.map((file) => {
        const uploadFilename = `${randomUUID()}/${file.filename ?? "file"}`;
        this.world.uploads.set(uploadFilename, null);
        return {
          id: file.id ?? "0",
          upload_url: `${ctx.scheme}://${host}/_upload/${uploadFilename}`,
          upload_filename: uploadFilename,
        };
      }),
    };
  }

  // ---- messages ----

  listMessages(ctx) {
    const channel = this.channel(ctx);
    const limit = Math.min(100, Math.max(1, Number(ctx.query.get("limit") ?? 50)));
    const before = ctx.query.get("before");
    const after = ctx.query.get("after");
    const newestFirst = [...channel.messages].reverse();

    if (after) {
      return newestFirst.filter((m) => BigInt(m.id) > BigInt(after)).slice(-limit);
    }
    return newestFirst
      .filter((m) => !before || BigInt(m.id) < BigInt(before))
      .slice(0, limit);
  }

  getMessage(ctx) {
    return this.message(ctx).message;
  }

  createMessage(ctx) {
    const { bot, json } = ctx;
    const channel = this.channel(ctx);
    const nonce = checkNonce(json.nonce);

    const nonceKey = `${bot.index}:${channel.id}:${nonce}`;
    const earlier = nonce !== undefined && json.enforce_nonce ? this.nonces.get(nonceKey) : null;
    if (earlier && Date.now() - earlier.at < NONCE_WINDOW_MS) {
      this.record.add("nonce_dedup", { bot: bot.index, user_id: bot.user.id,
        channel: channel.id, id: earlier.message.id, nonce });
      return earlier.message;
    }

    const attachments = this.attachmentsFrom(channel, ctx, []);
    checkContent(json, attachments);
    const message = this.world.createMessage(channel, bot.user, {
      ...json, attachments, nonce,
      message_reference: this.replyTarget(channel, json.message_reference),
    });
    if (nonce !== undefined) this.nonces.set(nonceKey, { message, at: Date.now() });

    this.recordMessage(ctx, message, "POST");
    this.gateway.dispatch(bot.index, "MESSAGE_CREATE", message, INTENT.DIRECT_MESSAGES);
    return message;
  }

  // A reply to a message that is not there fails, unless the sender said
  // fail_if_not_exists: false; then it is sent as a plain message.
  replyTarget(channel, reference) {
    if (!reference?.message_id) return undefined;
    if (this.world.findMessage(channel, String(reference.message_id))) return reference;
    if (reference.fail_if_not_exists === false) return undefined;
    throw formError("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message");
  }

  editMessage(ctx) {
    const { channel, message } = this.message(ctx);
    if (message.author.id !== ctx.bot.user.id) {
      throw new ApiError(403, 50005, "Cannot edit a message authored by another user");
    }
    if (ctx.json.content !== undefined && String(ctx.json.content).length > CONTENT_LIMIT) {
      throw formError("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.");
    }

    const fields = { ...ctx.json };
    if (ctx.json.attachments !== undefined || ctx.files.length > 0) {
      fields.attachments = this.attachmentsFrom(channel, ctx, message.attachments);
    }
    this.world.editMessage(message, fields);
    this.recordMessage(ctx, message, "PATCH");
    this.gateway.dispatch(ctx.bot.index, "MESSAGE_UPDATE", message, INTENT.DIRECT_MESSAGES);
    return message;
  }

  deleteMessage(ctx) {
    const { channel, message } = this.message(ctx);
    if (message.author.id !== ctx.bot.user.id) {
      throw new ApiError(403, 50003, "Cannot execute action on a DM channel");
    }
    this.world.deleteMessage(channel, message);
    this.recordMessage(ctx, message, "DELETE");
    this.gateway.dispatch(ctx.bot.index, "MESSAGE_DELETE",
      { id: message.id, channel_id: channel.id }, INTENT.DIRECT_MESSAGES);
  }

  recordMessage(ctx, message, method) {
    this.record.add("messages", {
      bot: ctx.bot.index, user_id: ctx.bot.user.id, channel: message.channel_id,
      id: message.id, content: message.content, nonce: message.nonce ?? null,
      method, encoding: ctx.multipart ? "multipart" : "json",
      attachments: message.attachments.map(({ id, filename, size, content_type }) =>
        ({ id, filename, size, content_type })),
    });
  }

  // Builds the attachment list of a create or edit: attachments kept from
  // `existing` (listed by id), files of this request (files[n] matched to
  // attachments[].id = n) and cloud uploads (uploaded_filename).
  attachmentsFrom(channel, { json, files }, existing) {
    const listed = Array.isArray(json.attachments) ? json.attachments : [];
    const kept = existing.filter((a) => listed.some((l) => String(l.id) === a.id));
    const added = files.map((file, index) => {
      const slot = /^files\[(\d+)\]$/.exec(file.field)?.[1] ?? String(index);
      const meta = listed.find((l) => String(l.id) === slot) ?? {};
      return this.store(channel, meta, file.filename, file.contentType, file.data);
    });
    const uploaded = listed.filter((l) => l.uploaded_filename).map((l) => {
      const data = this.world.uploads.get(l.uploaded_filename);
      if (!data) throw formError("attachments", "ATTACHMENT_NOT_FOUND", "Unknown upload");
      return this.store(channel, l, l.filename, null, data);
    });
    return [...kept, ...added, ...uploaded];
  }

  store(channel, meta, filename, contentType, data) {
    const attachment = this.world.storeAttachment(channel.id, {
      filename: meta.filename ?? filename, contentType, data,
    });
    for (const key of ["description", "duration_secs", "waveform"]) {
      if (meta[key] !== undefined) attachment[key] = meta[key];
    }
    return attachment;
  }

  // ---- reactions ----

  addReaction(ctx) {
    this.react(ctx, "add", "MESSAGE_REACTION_ADD");
  }

  removeReaction(ctx) {
    this.react(ctx, "remove", "MESSAGE_REACTION_REMOVE");
  }

  // Reactions are kept per message id, by emoji as the route spells it
  // ("👀" or "name:id"), as the set of users who reacted.
  react(ctx, op, event) {
    const { channel, message } = this.message(ctx);
    const emoji = ctx.params.emoji;
    const userId = ctx.params.user ?? ctx.bot.user.id;
    const byEmoji = this.reactors.get(message.id) ?? new Map();
    const users = byEmoji.get(emoji) ?? new Set();
    if (op === "add") users.add(userId);
    else users.delete(userId);
    byEmoji.set(emoji, users);
    this.reactors.set(message.id, byEmoji);
    summarizeReactions(message, byEmoji, ctx.bot.user.id);

    this.record.add("reactions", { bot: ctx.bot.index, user_id: ctx.bot.user.id,
      channel: channel.id, message: message.id, emoji, op });
    this.gateway.dispatch(ctx.bot.index, event, {
      user_id: userId, type: 0, message_id: message.id, channel_id: channel.id,
      emoji: parseEmoji(emoji), burst: false,
      ...(op === "add" ? { message_author_id: message.author.id } : {}),
    }, INTENT.DIRECT_MESSAGE_REACTIONS);
  }

  listReactors(ctx) {
    const { message } = this.message(ctx);
    const users = this.reactors.get(message.id)?.get(ctx.params.emoji) ?? new Set();
    return [...users].map((id) => this.world.users.get(id))
      .filter(Boolean).map((u) => this.world.userObject(u));
  }

  clearReactions(ctx) {
    const { message } = this.message(ctx);
    this.reactors.delete(message.id);
    summarizeReactions(message, new Map(), ctx.bot.user.id);
  }

  // ---- uploads (outside /api) ----

  async upload(req, res) {
    const key = decodeURIComponent(new URL(req.url, "http://fake").pathname
      .replace(/^\/_upload\//, ""));
    const data = await readBody(req);
    if (req.method !== "PUT" || !this.world.uploads.has(key)) {
      sendJson(res, 404, { message: "404: Not Found", code: 0 });
      return;
    }
    this.world.uploads.set(key, data);
    sendEmpty(res, 200);
  }
}

function decodeParams(groups) {
  return Object.fromEntries(Object.entries(groups)
    .map(([name, value]) => [name, decodeURIComponent(value)]));
}

function checkNonce(nonce) {
  if (nonce === undefined || nonce === null) return undefined;
  const ok = (typeof nonce === "string" && nonce.length <= NONCE_LIMIT) ||
    Number.isInteger(nonce);
  if (!ok) throw formError("nonce", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.");
  return nonce;
}

function checkContent(json, attachments) {
  const content = json.content ?? "";
  if (typeof content !== "string" || content.length > CONTENT_LIMIT) {
    throw formError("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.");
  }
  const empty = !content && !json.embeds?.length && attachments.length === 0 &&
    !json.sticker_ids?.length && !json.components?.length && !json.poll;
  if (empty) throw new ApiError(400, 50006, "Cannot send an empty message");
}

// "👀" or "name:id" (custom emoji), as the route carries it.
function parseEmoji(text) {
  const custom = /^(?<name>[\w~]+):(?<id>\d+)$/.exec(text);
  if (custom) return { id: custom.groups.id, name: custom.groups.name };
  return { id: null, name: text };
}

function summarizeReactions(message, byEmoji, selfId) {
  const reactions = [...byEmoji.entries()]
    .filter(([, users]) => users.size > 0)
    .map(([emoji, users]) => ({
      emoji: parseEmoji(emoji),
      count: users.size,
      count_details: { burst: 0, normal: users.size },
      burst_colors: [],
      me: users.has(selfId),
      me_burst: false,
      burst_me: false,
      burst_count: 0,
    }));
  if (reactions.length) message.reactions = reactions;
  else delete message.reactions;
}
