// Contender "heartline": the engine loaded into this Node process with
// koffi, as the OpenClaw plugin loads it, and one downstream gateway
// client per bot in the same process. When this process's main thread is
// stalled, the clients stall with it; the engine's threads do not.

import { startEngine } from "../../tests/integration/engine.mjs";
import { connectAll } from "../lib/gateway-client.mjs";

// The engine configuration that points it at the fake: over TLS, as
// heartline talks to Discord, or with `plain` over http/ws, as the other
// contenders here talk to the fake.
export function engineConfig(fake, { plain = false, ...extra } = {}) {
  const origin = plain ? fake.http_origin : fake.https_origin;
  return {
    api_base: `${origin}/api/v10`,
    cdn_base: origin,
    media_base: origin,
    ...(plain ? {} : { ca_file: fake.ca_file }),
    log_level: "warn",
    ...extra,
  };
}

export async function load({ fake, tokens, engine: extra = {} }) {
  const engine = startEngine(engineConfig(fake, extra));
  const drain = setInterval(() => engine.logs().splice(0), 1000);
  let clients = [];
  return {
    origin: engine.origin,
    async connect() {
      clients = await connectAll(engine.origin.replace("http:", "ws:"), tokens);
    },
    ready: () => clients.filter((c) => c.ready && c.closed === null).length,
    dispatches: () => clients.reduce((sum, c) => sum + c.dispatches, 0),
    status: () => engine.status(),
    async stop() {
      clearInterval(drain);
      await Promise.all(clients.map((c) => c.close()));
      engine.stop();
    },
  };
}
