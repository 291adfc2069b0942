// A host process for the journal's crash tests: it loads libheartline.so
// into itself with koffi, as OpenClaw does, and sends replies through it
// (three at a time, numbered from FIRST) until it is killed. Each reply's
// fate goes to stdout as it happens ("sent N", "acked N STATUS"), and the
// engine's log records as "log JSON". With FIRST = -1 it sends no reply:
// it shows the bot's token once (GET /users/@me) and then idles, which is
// what makes the engine send what its journal still holds.
//
//   node crash-host.mjs CONFIG_JSON TOKEN CHANNEL FIRST [COUNT]
import { startEngine } from "./engine.mjs";

const [config, token, channel, firstArg, countArg] = process.argv.slice(2);
const first = Number(firstArg);
const last = countArg === undefined ? Infinity : first + Number(countArg);
const engine = startEngine(JSON.parse(config));
const headers = { authorization: `Bot ${token}`, "content-type": "application/json" };
const say = (line) => process.stdout.write(`${line}\n`);

let seen = 0;
setInterval(() => {
  const logs = engine.logs();
  for (; seen < logs.length; seen++) say(`log ${JSON.stringify(logs[seen])}`);
}, 100);
say(`origin ${engine.origin}`);

async function reply(n) {
  say(`sent ${n}`);
  try {
    const res = await fetch(`${engine.origin}/api/v10/channels/${channel}/messages`, {
      method: "POST", headers, body: JSON.stringify({ content: `reply ${n}` }),
    });
    await res.arrayBuffer();
    say(`acked ${n} ${res.status}`);
  } catch (err) {
    say(`failed ${n} ${err.message}`);
  }
}

if (first < 0) {
  const res = await fetch(`${engine.origin}/api/v10/users/@me`, { headers });
  say(`shown ${res.status}`);
} else {
  let next = first;
  const worker = async () => {
    while (next < last) await reply(next++);
  };
  await Promise.all([worker(), worker(), worker()]);
  say("done");
}
