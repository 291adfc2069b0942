// A host process for the session-restart tests: it loads libheartline.so
// with koffi, as OpenClaw does, connects one downstream gateway client
// for TOKEN and prints every frame it receives as "frame JSON", and the
// engine's log records as "log JSON", until it is killed.
//
//   node gateway-host.mjs CONFIG_JSON TOKEN
import { GatewayClient, startEngine } from "./engine.mjs";

const [config, token] = process.argv.slice(2);
const engine = startEngine(JSON.parse(config));
const say = (line) => process.stdout.write(`${line}\n`);
say(`origin ${engine.origin}`);

const client = new GatewayClient(engine.origin.replace("http:", "ws:"), token);
let shown = 0;
setInterval(() => {
  for (; shown < client.frames.length; shown++)
    say(`frame ${JSON.stringify(client.frames[shown])}`);
  for (const record of engine.logs().splice(0)) say(`log ${JSON.stringify(record)}`);
}, 50);
client.identify();
process.on("SIGTERM", () => {
  engine.stop();
  process.exit(0);
});
