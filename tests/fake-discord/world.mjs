// The fake's Discord state, shared by the REST routes, the gateway and the
// control API: bots (each its own user and application, with the same id
// as Discord does for new apps), fake human users, DM channels, messages,
// application commands and the files the CDN serves.
//
// Object shapes follow Discord's v10 API documentation (user, application,
// channel, message and attachment objects).

import { createHmac } from "node:crypto";
import { botToken, discordTimestamp, hexId, snowflake, snowflakeTime }
  from "./ids.mjs";

export const CHANNEL_DM = 1;
const MESSAGE_DEFAULT = 0;
const MESSAGE_REPLY = 19;

// GATEWAY_PRESENCE_LIMITED | GATEWAY_GUILD_MEMBERS_LIMITED |
// GATEWAY_MESSAGE_CONTENT_LIMITED: what a bot in under 100 servers has once
// the privileged intents are switched on in the developer portal.
const APPLICATION_FLAGS = (1 << 13) | (1 << 15) | (1 << 19);
const CDN_SIGNATURE_KEY = hexId(16);
const CDN_LINK_LIFETIME_S = 24 * 3600;
const SESSION_START_TOTAL = 1000;
const SESSION_START_RESET_MS = 24 * 3600 * 1000;
const REAL_CDN = "https://cdn.discordapp.com";
const REAL_MEDIA_PROXY = "https://media.discordapp.net";

function publicUser(user) {
  return {
    id: user.id,
    username: user.username,
    avatar: null,
    discriminator: user.discriminator,
    public_flags: 0,
    flags: 0,
    ...(user.bot ? { bot: true } : {}),
    banner: null,
    accent_color: null,
    global_name: user.global_name,
    avatar_decoration_data: null,
    collectibles: null,
    banner_color: null,
    clan: null,
    primary_guild: null,
  };
}

function randomDiscriminator() {
  return String(1000 + Math.floor(Math.random() * 9000));
}

function imageSize(data, contentType) {
  if (!contentType?.startsWith("image/") || data.length < 24) return null;

  // PNG: the IHDR chunk comes first, width and height big-endian.
  if (data.readUInt32BE(0) === 0x89504e47) {
    return { width: data.readUInt32BE(16), height: data.readUInt32BE(20) };
  }
  // GIF: logical screen size, little-endian, right after the signature.
  if (data.toString("latin1", 0, 3) === "GIF") {
    return { width: data.readUInt16LE(6), height: data.readUInt16LE(8) };
  }
  return jpegSize(data);
}

function jpegSize(data) {
  if (data[0] !== 0xff || data[1] !== 0xd8) return null;

  for (let at = 2; at + 9 < data.length;) {
    if (data[at] !== 0xff) return null;
    const marker = data[at + 1];
    const length = data.readUInt16BE(at + 2);
    const isFrame = marker >= 0xc0 && marker <= 0xcf &&
      ![0xc4, 0xc8, 0xcc].includes(marker);
    if (isFrame) {
      return { height: data.readUInt16BE(at + 5), width: data.readUInt16BE(at + 7) };
    }
    at += 2 + length;
  }
  return null;
}

const CONTENT_TYPES = {
  png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif",
  webp: "image/webp", txt: "text/plain; charset=utf-8", json: "application/json",
  pdf: "application/pdf", ogg: "audio/ogg", mp3: "audio/mpeg", mp4: "video/mp4",
  wav: "audio/wav", md: "text/markdown; charset=utf-8",
};

export function guessContentType(filename) {
  const ext = filename.split(".").pop().toLowerCase();
  return CONTENT_TYPES[ext] ?? "application/octet-stream";
}

// Discord's CDN links are signed and expire: ex (expiry), is (issued) and
// hm (signature), hex encoded. The engine under test must keep them.
function signedQuery(path) {
  const issued = Math.floor(Date.now() / 1000);
  const expiry = issued + CDN_LINK_LIFETIME_S;
  const ex = expiry.toString(16);
  const is = issued.toString(16);
  const hm = createHmac("sha256", CDN_SIGNATURE_KEY)
    .update(`${path}${ex}${is}`).digest("hex");
  return `?ex=${ex}&is=${is}&hm=${hm}&`;
}

export class World {
  constructor({ bots, sessionStartRemaining, shards, maxConcurrency }) {
    this.shards = shards;
    this.maxConcurrency = maxConcurrency;
    this.attachmentOrigin = null;
    this.users = new Map();
    this.channels = new Map();
    this.files = new Map();
    this.uploads = new Map();
    this.bots = [];
    for (let i = 0; i < bots; i++) this.bots.push(this.makeBot(i, sessionStartRemaining));
    this.defaultHuman = this.human({ username: "alice", global_name: "Alice" });
  }

  makeBot(index, sessionStartRemaining) {
    const id = snowflake();
    const user = {
      id, username: `bot${index + 1}`, global_name: null,
      discriminator: randomDiscriminator(), bot: true,
    };
    this.users.set(id, user);
    return {
      index, user, token: botToken(id), revoked: false, zombie: false,
      commands: new Map(), guildCommands: new Map(),
      verifyKey: hexId(32),
      sessionStart: {
        total: Math.max(SESSION_START_TOTAL, sessionStartRemaining),
        remaining: sessionStartRemaining,
        // A bot that has already spent some of today's starts is inside
        // a running window, as on Discord.
        resetAt: sessionStartRemaining < SESSION_START_TOTAL
          ? Date.now() + SESSION_START_RESET_MS : 0,
      },
    };
  }

  botByToken(token) {
    const bot = this.bots.find((b) => b.token === token);
    return bot && !bot.revoked ? bot : null;
  }

  // `spec` is a username, or an object with id/username/global_name.
  human(spec = {}) {
    const wanted = typeof spec === "string" ? { username: spec } : spec;
    const known = [...this.users.values()].find((u) => !u.bot &&
      ((wanted.id && u.id === wanted.id) ||
       (!wanted.id && wanted.username && u.username === wanted.username)));
    if (known) return known;

    const id = wanted.id ?? snowflake();
    const username = wanted.username ?? `user${id.slice(-6)}`;
    const user = {
      id, username, global_name: wanted.global_name ?? username,
      discriminator: "0", bot: false,
    };
    this.users.set(id, user);
    return user;
  }

  userObject(user) {
    return publicUser(user);
  }

  // GET /users/@me as a bot sees it.
  selfUser(bot) {
    return {
      ...publicUser(bot.user),
      mfa_enabled: false, locale: "en-US", premium_type: 0,
      email: null, verified: true, bio: "",
    };
  }

  application(bot) {
    const owner = this.defaultHuman;
    return {
      id: bot.user.id,
      name: bot.user.username,
      icon: null,
      description: "",
      summary: "",
      type: null,
      hook: true,
      bot_public: false,
      bot_require_code_grant: false,
      verify_key: bot.verifyKey,
      flags: APPLICATION_FLAGS,
      owner: publicUser(owner),
      team: null,
      bot: publicUser(bot.user),
      approximate_guild_count: 0,
      approximate_user_install_count: 0,
      redirect_uris: [],
      interactions_endpoint_url: null,
      integration_types_config: { 0: {} },
    };
  }

  applicationFlags() {
    return APPLICATION_FLAGS;
  }

  sessionStartLimit(bot) {
    this.refreshSessionStart(bot);
    const { total, remaining, resetAt } = bot.sessionStart;
    return {
      total,
      remaining,
      reset_after: resetAt ? Math.max(0, resetAt - Date.now()) : 0,
      max_concurrency: this.maxConcurrency,
    };
  }

  refreshSessionStart(bot) {
    const start = bot.sessionStart;
    if (start.resetAt && Date.now() >= start.resetAt) {
      start.remaining = start.total;
      start.resetAt = 0;
    }
  }

  // Counts one IDENTIFY against the daily budget; false when none is left.
  takeSessionStart(bot) {
    this.refreshSessionStart(bot);
    const start = bot.sessionStart;
    if (start.remaining <= 0) return false;
    if (!start.resetAt) start.resetAt = Date.now() + SESSION_START_RESET_MS;
    start.remaining -= 1;
    return true;
  }

  // ---- channels ----

  dmChannel(bot, human) {
    for (const channel of this.channels.values()) {
      if (channel.botIndex === bot.index && channel.recipient.id === human.id) {
        return channel;
      }
    }
    const channel = {
      id: snowflake(), type: CHANNEL_DM, botIndex: bot.index,
      recipient: human, messages: [],
    };
    this.channels.set(channel.id, channel);
    return channel;
  }

  channelFor(bot, channelId) {
    const channel = this.channels.get(channelId);
    if (!channel) return { error: "unknown" };
    if (channel.botIndex !== bot.index) return { error: "access" };
    return { channel };
  }

  channelObject(channel) {
    const last = channel.messages.at(-1);
    return {
      id: channel.id,
      type: channel.type,
      last_message_id: last?.id ?? null,
      flags: 0,
      recipients: [publicUser(channel.recipient)],
    };
  }

  // ---- messages ----

  findMessage(channel, messageId) {
    return channel.messages.find((m) => m.id === messageId) ?? null;
  }

  mentionsIn(content) {
    const ids = [...(content ?? "").matchAll(/<@!?(\d+)>/g)].map((m) => m[1]);
    return [...new Set(ids)]
      .map((id) => this.users.get(id))
      .filter(Boolean)
      .map(publicUser);
  }

  // `fields` holds what the author sent: content, embeds, components,
  // attachments (already stored), nonce, flags, tts, message_reference.
  createMessage(channel, author, fields) {
    const id = snowflake();
    const reference = fields.message_reference ?? null;
    const referenced = reference?.message_id
      ? this.findMessage(channel, reference.message_id) : null;

    const message = {
      type: reference ? MESSAGE_REPLY : MESSAGE_DEFAULT,
      content: fields.content ?? "",
      mentions: this.mentionsIn(fields.content),
      mention_roles: [],
      attachments: fields.attachments ?? [],
      embeds: fields.embeds ?? [],
      timestamp: discordTimestamp(snowflakeTime(id)),
      edited_timestamp: null,
      flags: fields.flags ?? 0,
      components: fields.components ?? [],
      id,
      channel_id: channel.id,
      author: publicUser(author),
      pinned: false,
      mention_everyone: false,
      tts: Boolean(fields.tts),
      ...(fields.nonce !== undefined ? { nonce: fields.nonce } : {}),
      ...(reference ? {
        message_reference: {
          type: 0, channel_id: channel.id, message_id: reference.message_id,
        },
        referenced_message: referenced,
      } : {}),
    };
    channel.messages.push(message);
    return message;
  }

  editMessage(message, fields) {
    for (const key of ["content", "embeds", "components", "flags"]) {
      if (fields[key] !== undefined) message[key] = fields[key];
    }
    if (fields.content !== undefined) message.mentions = this.mentionsIn(fields.content);
    if (fields.attachments !== undefined) message.attachments = fields.attachments;
    message.edited_timestamp = discordTimestamp();
    return message;
  }

  deleteMessage(channel, message) {
    channel.messages = channel.messages.filter((m) => m !== message);
  }

  // ---- files (served by the CDN routes) ----

  // Like Discord, characters a URL path would need escaped become "_".
  storeAttachment(channelId, { filename: rawName, contentType, data }) {
    const id = snowflake();
    const filename = (rawName || "unknown").replace(/[^A-Za-z0-9._-]/g, "_");
    const type = contentType || guessContentType(filename);
    const path = `/attachments/${channelId}/${id}/${filename}`;
    this.files.set(path, { data, contentType: type });

    const query = signedQuery(path);
    const cdn = this.attachmentOrigin ?? REAL_CDN;
    const media = this.attachmentOrigin ?? REAL_MEDIA_PROXY;
    return {
      id,
      filename,
      size: data.length,
      url: `${cdn}${path}${query}`,
      proxy_url: `${media}${path}${query}`,
      content_type: type,
      ...imageSize(data, type),
    };
  }

  file(path) {
    return this.files.get(path.replace(/^\/ephemeral-attachments\//, "/attachments/"))
      ?? null;
  }
}
