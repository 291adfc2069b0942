// Contenders "djs-simple" and "djs-worker": @discordjs/ws from npm, one
// WebSocketManager per bot (a manager holds one token), pointed at the
// fake: REST through @discordjs/rest at the fake's http origin, gateway at
// the ws URL the fake's /gateway/bot returns. The simple strategy runs the
// shard on this process's main thread; the worker strategy runs it on a
// worker thread of its own, one per manager.

import { REST } from "@discordjs/rest";
import { WebSocketManager, WebSocketShardEvents, WorkerShardingStrategy }
  from "@discordjs/ws";

const INTENTS = 1 << 12; // DIRECT_MESSAGES
const PARALLEL_CONNECTS = 50;

function manager(fake, token, worker, counters) {
  const rest = new REST({ api: `${fake.http_origin}/api`, version: "10" }).setToken(token);
  // The default session store is one per process, keyed by shard id: with
  // one manager per bot every bot is shard 0, so each needs its own.
  const sessions = new Map();
  const m = new WebSocketManager({
    token,
    intents: INTENTS,
    rest,
    retrieveSessionInfo: (id) => sessions.get(id) ?? null,
    updateSessionInfo: (id, info) => (info ? sessions.set(id, info) : sessions.delete(id)),
    ...(worker ? { buildStrategy: (mgr) => new WorkerShardingStrategy(mgr, { shardsPerWorker: "all" }) } : {}),
  });
  m.on(WebSocketShardEvents.Dispatch, () => { counters.dispatches += 1; });
  m.on(WebSocketShardEvents.Error, () => { counters.errors += 1; });
  return m;
}

export function loader(worker) {
  return async ({ fake, tokens }) => {
    const counters = { dispatches: 0, errors: 0 };
    const managers = tokens.map((token) => manager(fake, token, worker, counters));
    const ready = new Set();
    managers.forEach((m, i) => {
      m.on(WebSocketShardEvents.Ready, () => ready.add(i));
      m.on(WebSocketShardEvents.Resumed, () => ready.add(i));
      m.on(WebSocketShardEvents.Closed, () => ready.delete(i));
    });
    return {
      async connect() {
        for (let i = 0; i < managers.length; i += PARALLEL_CONNECTS) {
          await Promise.all(managers.slice(i, i + PARALLEL_CONNECTS).map((m) => m.connect()));
        }
      },
      ready: () => ready.size,
      dispatches: () => counters.dispatches,
      async stop() {
        await Promise.allSettled(managers.map((m) => m.destroy({ reason: "bench over" })));
      },
    };
  };
}
