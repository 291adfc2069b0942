// What the fake saw, kept for tests to assert on: one list per kind of
// event, each entry stamped with `t` (ms since the epoch). Served by
// GET /_fake/record and written to --record FILE on exit.

const KINDS = [
  "connects", "drops", "identifies", "identify_rate_limited", "resumes",
  "heartbeats", "typing", "messages", "nonce_dedup", "requests", "cdn", "ops",
  "inbound", "reactions", "rate_limited", "session_start_exhausted",
];

export class Record {
  constructor() {
    this.reset();
  }

  reset() {
    for (const kind of KINDS) this[kind] = [];
  }

  add(kind, entry) {
    this[kind].push({ ...entry, t: Date.now() });
  }

  toJSON() {
    return Object.fromEntries(KINDS.map((kind) => [kind, this[kind]]));
  }
}
