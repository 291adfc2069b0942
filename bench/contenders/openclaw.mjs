// Contender "openclaw": the Discord gateway client that ships in the npm
// package @openclaw/discord (the GatewayPlugin that OpenClaw's channel
// runs, built by its own createDiscordGatewayPlugin), driven standalone
// with one plugin per bot and a stand-in for the Carbon client that only
// counts dispatches. It reaches the fake the way the channel reaches
// heartline: through DISCORD_API_URL, REST and gateway on loopback http/ws.
//
// The package exports the factory only from a bundled chunk with a
// generated name and a one-letter export, so both are looked up in the
// installed files rather than written here.
//
// One change to its behaviour: its IDENTIFY limiter is shared by the
// whole process and keyed by shard id alone, so every bot of a process
// waits 5 s after the previous one (N bots take 5N s to come up). A
// bot's first IDENTIFY skips that queue so a run of 1000 bots can start;
// every later IDENTIFY (after a lost session) goes through it as shipped.

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const CHUNKS = join(process.env.OPENCLAW_DIR ?? "",
  "node_modules/@openclaw/discord/dist/.setup");
const PARALLEL_CONNECTS = 50;

// The chunk that defines createDiscordGatewayPlugin, and the name it is
// exported under.
export function findFactory() {
  for (const file of readdirSync(CHUNKS)) {
    if (!file.endsWith(".mjs")) continue;
    const text = readFileSync(join(CHUNKS, file), "utf8");
    const m = /createDiscordGatewayPlugin as (\w+)\b/.exec(text);
    if (m && text.includes("function createDiscordGatewayPlugin(")) {
      return { path: join(CHUNKS, file), name: m[1] };
    }
  }
  throw new Error(`no createDiscordGatewayPlugin export under ${CHUNKS}`);
}

function firstIdentifyUnqueued(plugin) {
  const queued = plugin.identifyWithConcurrency;
  let first = true;
  plugin.identifyWithConcurrency = async function (socket) {
    if (!first) return queued.call(this, socket);
    first = false;
    if (socket === this.ws && socket?.readyState === 1) this.identify();
  };
}

export async function load({ fake, tokens }) {
  process.env.DISCORD_API_URL = `${fake.http_origin}/api/v10`;
  const factory = findFactory();
  const createPlugin = (await import(factory.path))[factory.name];
  const counters = { dispatches: 0, errors: 0 };
  const ready = new Set();
  const runtime = { log() {}, error() {} };

  const plugins = tokens.map((token, i) => {
    const plugin = createPlugin({ discordConfig: {}, runtime });
    plugin.emitter.on("error", () => { counters.errors += 1; });
    plugin.emitter.on("warning", () => {});
    firstIdentifyUnqueued(plugin);
    const client = {
      options: { token },
      getPlugin: () => undefined,
      handleInteraction: async () => {},
      async dispatchGatewayEvent(t) {
        counters.dispatches += 1;
        if (t === "READY" || t === "RESUMED") ready.add(i);
      },
    };
    return { plugin, client };
  });

  return {
    async connect() {
      for (let i = 0; i < plugins.length; i += PARALLEL_CONNECTS) {
        const batch = plugins.slice(i, i + PARALLEL_CONNECTS);
        await Promise.all(batch.map(({ plugin, client }) => plugin.registerClient(client)));
        const indexes = batch.map((_, j) => i + j);
        while (!indexes.every((k) => ready.has(k))) await new Promise((r) => setTimeout(r, 20));
      }
    },
    ready: () => plugins.filter(({ plugin }, i) => ready.has(i) && plugin.isConnected).length,
    dispatches: () => counters.dispatches,
    async stop() {
      for (const { plugin } of plugins) plugin.disconnect();
    },
  };
}
