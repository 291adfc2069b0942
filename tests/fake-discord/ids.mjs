// Identifiers shaped like Discord's: snowflakes, bot tokens, session ids,
// and the ISO timestamps Discord derives from a snowflake.
//
// Snowflakes are built from the wall clock (Discord epoch) plus an
// increment, so every run of the fake hands out ids no run has used before.

import { randomBytes } from "node:crypto";

const DISCORD_EPOCH_MS = 1420070400000n;
const WORKER_ID = 1n;
const PROCESS_ID = BigInt(process.pid & 0x1f);

let lastMs = 0n;
let increment = 0n;

export function snowflake() {
  let ms = BigInt(Date.now()) - DISCORD_EPOCH_MS;

  if (ms <= lastMs) {
    ms = lastMs;
    increment += 1n;
    if (increment > 0xfffn) {
      ms += 1n;
      increment = 0n;
    }
  } else {
    increment = 0n;
  }
  lastMs = ms;

  return ((ms << 22n) | (WORKER_ID << 17n) | (PROCESS_ID << 12n) | increment)
    .toString();
}

export function snowflakeTime(id) {
  return Number((BigInt(id) >> 22n) + DISCORD_EPOCH_MS);
}

// Discord writes timestamps with microseconds and an explicit offset.
export function discordTimestamp(ms = Date.now()) {
  return new Date(ms).toISOString().replace("Z", "000+00:00");
}

// base64(user id) without padding, a short time part and an HMAC-like tail.
export function botToken(userId) {
  const head = Buffer.from(userId).toString("base64").replace(/=+$/, "");
  const time = randomBytes(4).toString("base64url").slice(0, 6);
  const mac = randomBytes(27).toString("base64url");
  return `${head}.${time}.${mac}`;
}

export function sessionId() {
  return randomBytes(16).toString("hex");
}

export function hexId(bytes) {
  return randomBytes(bytes).toString("hex");
}
