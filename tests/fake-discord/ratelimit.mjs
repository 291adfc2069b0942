// REST rate limits as Discord advertises and enforces them: a bucket per
// (bot, route group, major parameter) with X-RateLimit-* headers on every
// answer, a real 429 when a bucket is spent before its reset, and 429s
// injected on demand through the control API.
//
// By default every bucket is generous (--rest-limit per --rest-window) so
// tests are never limited by accident; --rest-limit discord switches to
// per-route values close to Discord's, plus the 50 requests/s global limit.

import { createHash } from "node:crypto";

const DISCORD_LIMITS = {
  "message-create": { limit: 5, windowMs: 5000 },
  "message-edit": { limit: 5, windowMs: 5000 },
  "message-delete": { limit: 5, windowMs: 1000 },
  typing: { limit: 5, windowMs: 5000 },
  reaction: { limit: 1, windowMs: 250 },
  commands: { limit: 5, windowMs: 20000 },
  default: { limit: 50, windowMs: 1000 },
};
const GLOBAL_LIMIT_PER_S = 50;

function seconds(ms) {
  return Math.max(0, ms / 1000);
}

function bucketHash(group) {
  return createHash("sha1").update(`fake-discord:${group}`).digest("hex")
    .slice(0, 32);
}

// "POST /channels/:id/messages" matches by shape, any other string is a
// regular expression tested against "METHOD /path".
function routeMatcher(route) {
  if (!route) return () => true;
  if (/^[A-Z]+ \/[\w@:./-]*$/.test(route)) {
    const source = route.replace(/\./g, "\\.").replace(/:\w+/g, "[^/]+");
    const pattern = new RegExp(`^${source}$`);
    return (line) => pattern.test(line);
  }
  const pattern = new RegExp(route);
  return (line) => pattern.test(line);
}

export class RateLimiter {
  constructor({ restLimit, restWindowMs }) {
    this.discordMode = restLimit === "discord";
    this.limit = Number(restLimit);
    this.windowMs = restWindowMs;
    this.buckets = new Map();
    this.globalWindows = new Map();
    this.globalBlocks = new Map();
    this.injections = [];
  }

  limitsFor(group) {
    if (!this.discordMode) return { limit: this.limit, windowMs: this.windowMs };
    return DISCORD_LIMITS[group] ?? DISCORD_LIMITS.default;
  }

  bucket(botIndex, group, major) {
    const key = `${botIndex}:${group}:${major ?? ""}`;
    let bucket = this.buckets.get(key);
    if (!bucket) {
      bucket = { group, remaining: 0, resetAt: 0 };
      this.buckets.set(key, bucket);
    }
    const { limit, windowMs } = this.limitsFor(group);
    const now = Date.now();
    if (now >= bucket.resetAt) {
      bucket.remaining = limit;
      bucket.resetAt = now + windowMs;
    }
    return bucket;
  }

  headers(bucket) {
    const now = Date.now();
    const resetAt = bucket.resetAt;
    return {
      "X-RateLimit-Limit": String(this.limitsFor(bucket.group).limit),
      "X-RateLimit-Remaining": String(bucket.remaining),
      "X-RateLimit-Reset": (resetAt / 1000).toFixed(3),
      "X-RateLimit-Reset-After": seconds(resetAt - now).toFixed(3),
      "X-RateLimit-Bucket": bucketHash(bucket.group),
    };
  }

  addInjection(rule) {
    this.injections.push({
      route: rule.route ?? null,
      matches: routeMatcher(rule.route),
      bot: rule.bot ?? null,
      count: rule.count ?? 1,
      retryAfter: rule.retry_after ?? 1,
      global: Boolean(rule.global),
      scope: rule.scope ?? (rule.global ? "global" : "user"),
    });
  }

  clearInjections() {
    this.injections = [];
  }

  takeInjection(botIndex, line) {
    const rule = this.injections.find((r) => r.count > 0 &&
      (r.bot === null || r.bot === botIndex) && r.matches(line));
    if (!rule) return null;
    rule.count -= 1;
    this.injections = this.injections.filter((r) => r.count > 0);
    return rule;
  }

  globalExceeded(botIndex) {
    const now = Date.now();
    const times = (this.globalWindows.get(botIndex) ?? []).filter((t) => t > now - 1000);
    this.globalWindows.set(botIndex, times);
    if (times.length >= GLOBAL_LIMIT_PER_S) return seconds(times[0] + 1000 - now);
    times.push(now);
    return null;
  }

  // Decides one request: { limited: null, headers } to go ahead, or
  // { limited: {retryAfter, global, scope, injected}, headers } for a 429.
  check(botIndex, line, group, major) {
    const bucket = this.bucket(botIndex, group, major);
    const now = Date.now();
    const rule = this.takeInjection(botIndex, line);

    if (rule) {
      const until = now + rule.retryAfter * 1000;
      if (rule.global) {
        this.blockGlobal(botIndex, until);
      } else {
        bucket.resetAt = until;
        bucket.remaining = 0;
      }
      return this.limited(bucket, rule.retryAfter, rule.global, rule.scope, true);
    }

    const globalWait = this.globalWait(botIndex);
    if (globalWait !== null) return this.limited(bucket, globalWait, true, "global", false);

    if (bucket.remaining <= 0) {
      return this.limited(bucket, seconds(bucket.resetAt - now), false, "user", false);
    }

    bucket.remaining -= 1;
    return { limited: null, headers: this.headers(bucket) };
  }

  blockGlobal(botIndex, until) {
    this.globalBlocks.set(botIndex, Math.max(this.globalBlocks.get(botIndex) ?? 0, until));
  }

  globalWait(botIndex) {
    const until = this.globalBlocks.get(botIndex) ?? 0;
    if (until > Date.now()) return seconds(until - Date.now());
    return this.discordMode ? this.globalExceeded(botIndex) : null;
  }

  limited(bucket, retryAfter, global, scope, injected) {
    const headers = {
      ...(global ? {} : this.headers(bucket)),
      "Retry-After": String(Math.ceil(retryAfter)),
      "X-RateLimit-Scope": scope,
      ...(global ? { "X-RateLimit-Global": "true" } : {}),
    };
    return {
      limited: { retryAfter: Number(retryAfter.toFixed(3)), global, scope, injected },
      headers,
    };
  }
}
