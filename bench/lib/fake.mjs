// The benchmark's use of the fake Discord (tests/fake-discord): starting
// it, the part of its startup info that hosts need, and a paced driver
// for its control API (dispatching events to bots).

import http from "node:http";
import { startFake } from "../../tests/fake-discord/client.mjs";

export { startFake };

// What a host needs to reach the fake: its origins and CA.
export function origins(fake) {
  const { http_origin, https_origin, ca_file } = fake.info;
  return { http_origin, https_origin, ca_file };
}

// A keep-alive client for the fake's control API, with a bound on the
// requests in flight.
export class Control {
  constructor(fake, { parallel = 32 } = {}) {
    this.origin = new URL(fake.info.http_origin);
    this.agent = new http.Agent({ keepAlive: true, maxSockets: parallel });
    this.parallel = parallel;
  }

  post(path, body) {
    const data = JSON.stringify(body ?? {});
    return new Promise((resolve, reject) => {
      const req = http.request({
        host: this.origin.hostname, port: this.origin.port, path: `/_fake${path}`,
        method: "POST", agent: this.agent,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(data) },
      }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c) => { text += c; });
        res.on("end", () => (res.statusCode === 200 ? resolve(JSON.parse(text))
          : reject(new Error(`fake ${path}: ${res.statusCode} ${text}`))));
      });
      req.on("error", reject);
      req.end(data);
    });
  }

  dispatch(bot, t, d) {
    return this.post(`/bots/${bot}/dispatch`, { t, d });
  }

  // Runs make(i) for i = 0..count-1 with at most `parallel` in flight.
  async many(count, make) {
    let next = 0;
    const worker = async () => {
      while (next < count) await make(next++);
    };
    await Promise.all(Array.from({ length: Math.min(this.parallel, count) }, worker));
  }

  // Runs make(i) over and over, `parallel` at a time, until `endAt`
  // (ms since the epoch); resolves with how many ran.
  async until(endAt, make) {
    let next = 0;
    const worker = async () => {
      while (Date.now() < endAt) await make(next++);
    };
    await Promise.all(Array.from({ length: this.parallel }, worker));
    return next;
  }

  close() {
    this.agent.destroy();
  }
}

// A MESSAGE_CREATE of about a kilobyte, as a DM from a human, tagged
// with `tag` so that a receiver can match it.
export function messageEvent(tag, channelId = "1100000000000000001") {
  return {
    id: String(1200000000000000000n + BigInt(tag)),
    channel_id: channelId,
    author: { id: "1000000000000000042", username: "bench-human", global_name: "Bench Human",
      avatar: null, discriminator: "0", public_flags: 0 },
    content: `bench ${tag} ${"lorem ipsum dolor sit amet ".repeat(24)}`,
    timestamp: new Date().toISOString(),
    edited_timestamp: null, tts: false, mention_everyone: false, mentions: [],
    mention_roles: [], attachments: [], embeds: [], pinned: false, type: 0,
    nonce: String(tag), bench_tag: tag,
  };
}
