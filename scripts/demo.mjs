#!/usr/bin/env node
// `make demo`: heartline in a real OpenClaw gateway, shown live, with no
// Discord account. Everything runs on 127.0.0.1:
//
//   fake Discord   tests/fake-discord/server.mjs, 5 bots, over TLS, a 10 s
//                  heartbeat and 1 s of grace (a late bot is cut off)
//   slow model     tests/e2e/slow-model.mjs, 20 s per answer
//   OpenClaw       the real gateway, heartline installed from the plugin
//                  tarball, its event loop frozen 15 s of every 60 s by
//                  tests/e2e/stall-preload.cjs
//
// The heartline columns come from the engine's own status snapshot,
// served at /_heartline/status on its local endpoint; it answers during
// the freezes too, since no JavaScript is involved.
//
// Each bot gets a DM every 45 s. Once, between two freezes, the fake
// Discord cuts every connection at the same instant (a network blip):
// heartline's reconnect coordinator spreads the bots' returns over its
// jitter window and resumes their sessions, and OpenClaw does not notice.
// Later the gateway is restarted: stopped with SIGTERM, as a service
// manager does, and started again with the same setup. Every bot gets a
// DM while it is down. heartline saved each bot's Discord session on disk,
// so the bots come back by RESUME, with no IDENTIFY, and Discord replays
// the DMs they missed, which then get answered.
// A table (redrawn every second on a
// terminal, periodic lines otherwise) shows what the fake Discord sees and
// what heartline logs; at the end a summary and a one-line verdict.
//
// Environment: DEMO_SECONDS (240) length of the live part; DEMO_KEEP=1
// keeps the run directory (gateway logs, config) and prints its path;
// DEMO_LIBRARY=/abs/libheartline.so loads that engine instead of the
// packaged one (the plugin's `library` setting).
// Exit status: 0 when the verdict is good, 1 when not, 130 on Ctrl-C.

import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as h from '../tests/e2e/harness.mjs';

const BOTS = 5;
const HEARTBEAT_MS = 10000;
const GRACE_MS = 1000;
const MODEL_MS = 20000;
const STALL_MS = 15000;
const STALL_PERIOD_MS = 60000;
const STALL_FIRST_MS = 20000; // after the bots are up, so the table shows them first
const DM_PERIOD_MS = 45000;
// No new round this close to the end: the answer needs the model's 20 s
// and maybe a stall.
const LAST_ROUND_MARGIN_MS = MODEL_MS + 5000;
// After the live part, how long to wait for answers still in flight.
const DRAIN_MS = MODEL_MS + STALL_MS + 25000;
const READY_TIMEOUT_MS = 240000;
const TICK_MS = 1000;
const PLAIN_STATUS_EVERY_MS = 30000;
// The scripted network blip: after the first freeze, clear of any freeze
// and of the heartbeat after it, early enough for the bots to come back
// (heartline's jitter window is 1-15 s) and for the restart after it.
const BLIP_FRACTION = 0.2;
const BLIP_CLEARANCE_MS = 5000;
const BLIP_SETTLE_MS = 30000;
// Drops the fake records within this long of the blip are the blip's.
const BLIP_WINDOW_MS = 2000;
// The scripted gateway restart, once the blip has settled. SIGTERM waits
// for a frozen event loop, so the stop begins well clear of the next
// freeze; the usual stop is allowed a minute before SIGKILL.
const RESTART_CLEARANCE_MS = 15000;
const STOP_TIMEOUT_MS = 60000;
// The gateway stays down this long after it exited, the DMs sent meanwhile.
const DOWN_MS = 5000;
// OpenClaw loads its plugins in ~30 s, then starts one Discord account
// every 10 s; plus a margin. The live part must hold the stop, the
// downtime and this.
const COMEBACK_MS = 30000 + 10000 * (BOTS - 1) + 25000;
const RESTART_NEEDS_MS = 10000 + DOWN_MS + COMEBACK_MS;
// Drops the fake records up to this long after the gateway exited are the
// restart's (one per bot: the connection the stop closed).
const RESTART_WINDOW_MS = 2000;

const SECONDS = Number(process.env.DEMO_SECONDS || 240);
const KEEP = Boolean(process.env.DEMO_KEEP);
const TTY = Boolean(process.stdout.isTTY);
const STOCK_NOTE = 'stock OpenClaw drops every bot at every freeze: tests/e2e/stock-baseline.test.mjs';

if (!Number.isFinite(SECONDS) || SECONDS < 10) {
	console.error(`DEMO_SECONDS=${process.env.DEMO_SECONDS}: give a number of seconds, at least 10`);
	process.exit(2);
}

// ------------------------------------------------------------ small helpers

const bold = (s) => (TTY ? `\x1b[1m${s}\x1b[0m` : s);
const green = (s) => (TTY ? `\x1b[32m${s}\x1b[0m` : s);
const red = (s) => (TTY ? `\x1b[31m${s}\x1b[0m` : s);
const yellow = (s) => (TTY ? `\x1b[33m${s}\x1b[0m` : s);
const dim = (s) => (TTY ? `\x1b[2m${s}\x1b[0m` : s);
// A string without its colour codes, and its visible width.
const plain = (s) => s.replace(/\x1b\[[0-9;]*m/g, '');
const width = (s) => plain(s).length;
const pad = (s, n) => s + ' '.repeat(Math.max(0, n - width(s)));
const lpad = (s, n) => ' '.repeat(Math.max(0, n - width(s))) + s;
const secs = (ms) => `${Math.round(ms / 1000)} s`;
const clock = (ms) => {
	const s = Math.max(0, Math.round(ms / 1000));
	return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
};
const say = (line = '') => process.stdout.write(line + '\n');

class Interrupted extends Error {}

let stopping = false; // Ctrl-C (or SIGTERM) seen
const wakers = new Set();
function pause(ms) {
	return new Promise((resolve) => {
		const done = () => {
			clearTimeout(t);
			wakers.delete(done);
			resolve();
		};
		const t = setTimeout(done, ms);
		wakers.add(done);
	});
}
function checkStop() {
	if (stopping) throw new Interrupted();
}

// Same hash heartline uses to name a bot in its logs (sha256, 4 bytes).
const tokenHash = (token) => crypto.createHash('sha256').update(token).digest('hex').slice(0, 8);

// ---------------------------------------------------------------- processes

const procs = { fake: null, model: null, gw: null };
let runDir = null;
let restartTask = null; // the scripted restart, while it runs

function groupAlive(pid) {
	try {
		process.kill(-pid, 0);
		return true;
	} catch {
		return false;
	}
}

// Last resort, synchronous: nothing we started may outlive us.
function killAllNow() {
	for (const p of [procs.gw, procs.model, procs.fake]) {
		if (!p?.pid) continue;
		try {
			process.kill(-p.pid, 'SIGKILL');
		} catch {}
	}
}
process.on('exit', killAllNow);

// PIDs of every descendant of pid, from /proc. Some of the gateway's
// helpers (its spawn broker) run in a process group of their own, so
// stopping the gateway's group alone could miss them.
function descendants(pid) {
	const children = new Map();
	for (const name of fs.readdirSync('/proc')) {
		if (!/^\d+$/.test(name)) continue;
		try {
			const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
			const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
			if (!children.has(ppid)) children.set(ppid, []);
			children.get(ppid).push(Number(name));
		} catch {}
	}
	const out = [];
	const walk = (p) => {
		for (const c of children.get(p) ?? []) {
			out.push(c);
			walk(c);
		}
	};
	walk(pid);
	return out;
}

function alive(pid) {
	try {
		process.kill(pid, 0);
		return true;
	} catch {
		return false;
	}
}

// Stops a gateway the usual way (SIGTERM to its process group, SIGKILL
// after timeoutMs), then whatever of its helpers is left.
async function stopGatewayAll(gw, timeoutMs) {
	const helpers = gw.exited ? [] : descendants(gw.pid);
	await h.stopGateway(gw, { timeoutMs });
	// Helpers get a moment to follow their parent, then SIGTERM, SIGKILL.
	for (let i = 0; i < 30 && helpers.some(alive); i++) {
		if (i === 10 || i === 20) for (const pid of helpers.filter(alive)) {
			try {
				process.kill(pid, i === 10 ? 'SIGTERM' : 'SIGKILL');
			} catch {}
		}
		await new Promise((r) => setTimeout(r, 100));
	}
	return gw.exited;
}

let cleaning = null;
function cleanup() {
	cleaning ??= (async () => {
		// A restart under way finishes its stop first (it knows the old
		// gateway's helpers) and starts nothing new once this began.
		await restartTask?.catch(() => {});
		if (procs.gw) await stopGatewayAll(procs.gw, 10000);
		if (procs.model) await procs.model.stop();
		if (procs.fake) await procs.fake.stop();
		const left = [procs.gw, procs.model, procs.fake].filter((p) => p?.pid && groupAlive(p.pid));
		for (const p of left) {
			try {
				process.kill(-p.pid, 'SIGKILL');
			} catch {}
		}
		if (runDir && !KEEP) await fsp.rm(runDir, { recursive: true, force: true });
		return left.length;
	})();
	return cleaning;
}

function onSignal(sig) {
	if (stopping) {
		// A second Ctrl-C: no more patience.
		say(`\n${sig} again: killing everything now`);
		killAllNow();
		process.exit(130);
	}
	stopping = true;
	for (const w of [...wakers]) w();
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => onSignal(sig));

// --------------------------------------------------------------- fake API

async function fakeGet(route) {
	const res = await fetch(`${procs.fake.info.http_origin}/_fake${route}`, { signal: AbortSignal.timeout(5000) });
	if (!res.ok) throw new Error(`fake Discord ${route}: HTTP ${res.status}`);
	return res.json();
}

async function fakeDm(bot, content) {
	const res = await fetch(`${procs.fake.info.http_origin}/_fake/bots/${bot}/dm`, {
		method: 'POST',
		headers: { 'content-type': 'application/json' },
		body: JSON.stringify({ content }),
		signal: AbortSignal.timeout(5000),
	});
	if (!res.ok) throw new Error(`fake Discord DM to bot${bot}: HTTP ${res.status}`);
	return res.json();
}

// --------------------------------------------------------- what we watch

const view = {
	t0: null, // live part starts (stalls armed)
	record: null, // the fake's record, last fetched
	state: null, // the fake's connection state, last fetched
	stalls: [], // {key, n, start, end}; n counts across gateway restarts
	armedAt: null,
	questions: [], // {bot, round, tag, sentAt, down}; down: sent while the gateway was down
	rounds: 0,
	engine: [], // per bot: {state, since, upResumes, localResumes, localIdentifies}
	engineStarted: null,
	shimFailed: null,
	events: [], // {at, text}
	seen: { drops: 0, messages: 0, identifies: 0, resumes: 0, requests: 0 },
	lastPlain: 0,
	blip: null, // {at, dropped, back: Map(bot -> {after, how})}
	// The gateway restart: {phase: stopping|down|starting|back|incomplete,
	// stopAt, exitAt, exit, startAt, backAt, back: Map(bot -> {after, how}),
	// dms, sessionsFound}
	restart: null,
	origin: null, // heartline's local endpoint, from its log
	status: null, // heartline's status snapshot, last fetched
};

// Moves `at` past every freeze window it falls in: from `before` ahead of
// a freeze's start to the heartbeat after its end.
function clearOfFreezes(at, before, seconds) {
	for (let start = STALL_FIRST_MS; start < seconds * 1000; start += STALL_PERIOD_MS) {
		const quietFrom = start - before;
		const quietTo = start + STALL_MS + HEARTBEAT_MS + GRACE_MS;
		if (at >= quietFrom && at < quietTo) at = quietTo;
	}
	return at;
}

// When, after the live part starts, the blip and the restart come; null
// when the live part is too short for one.
function plan(seconds) {
	let blip = clearOfFreezes(seconds * 1000 * BLIP_FRACTION, BLIP_CLEARANCE_MS, seconds);
	if (blip + BLIP_SETTLE_MS > seconds * 1000) return { blip: null, restart: null };
	const restart = clearOfFreezes(blip + BLIP_SETTLE_MS, RESTART_CLEARANCE_MS, seconds);
	return { blip, restart: restart + RESTART_NEEDS_MS <= seconds * 1000 ? restart : null };
}
const { blip: BLIP_AT_MS, restart: RESTART_AT_MS } = plan(SECONDS);
// The shortest DEMO_SECONDS with a restart, to say so when it is shorter.
const RESTART_MIN_SECONDS = (() => {
	let s = 10;
	while (s < 3600 && plan(s).restart === null) s += 10;
	return s;
})();

// A drop the fake recorded as part of the scripted blip.
const blipDrop = (d) => view.blip !== null && d.reason === 'server_drop' && d.t >= view.blip.at - 100 && d.t <= view.blip.at + BLIP_WINDOW_MS;

// A drop the gateway's stop caused: between the SIGTERM and shortly after
// the process exited, and only the first of each bot there, the session
// the stop closed. Any other drop in that window is a real one.
function restartDrop(d) {
	const r = view.restart;
	if (!r) return false;
	const inWindow = (x) => x.t >= r.stopAt - 100 && x.t <= (r.exitAt ?? Infinity) + RESTART_WINDOW_MS;
	if (!inWindow(d)) return false;
	const first = (view.record?.drops ?? []).find((x) => x.bot === d.bot && inWindow(x));
	return first !== undefined && first.conn === d.conn && first.t === d.t;
}

// Drops the script caused on purpose; they do not count against the verdict.
const expectedDrop = (d) => blipDrop(d) || restartDrop(d);

function event(text) {
	const at = Date.now();
	view.events.push({ at, text });
	if (view.events.length > 200) view.events.shift();
	if (!TTY && view.t0) say(`[${clock(at - view.t0)}] ${text}`);
}

// The gateway's JSON log, read incrementally: heartline's own lines (the
// shim forwards them as "[heartline] ...").
let logOffset = 0;
let logRest = '';
let botByHash = new Map();
function readGatewayLog(setup) {
	let fd;
	try {
		fd = fs.openSync(setup.logFile, 'r');
	} catch {
		return;
	}
	try {
		const size = fs.fstatSync(fd).size;
		// A log started anew (rotated by a restarted gateway): read it all.
		if (size < logOffset) {
			logOffset = 0;
			logRest = '';
		}
		if (size <= logOffset) return;
		const buf = Buffer.alloc(size - logOffset);
		fs.readSync(fd, buf, 0, buf.length, logOffset);
		logOffset = size;
		const text = logRest + buf.toString('utf8');
		const lines = text.split('\n');
		logRest = lines.pop();
		for (const line of lines) engineLine(line);
	} finally {
		fs.closeSync(fd);
	}
}

function engineLine(raw) {
	const i = raw.indexOf('[heartline] ');
	if (i < 0) return;
	let text = raw;
	try {
		const rec = JSON.parse(raw);
		text = Object.values(rec).find((v) => typeof v === 'string' && v.includes('[heartline] ')) ?? raw;
	} catch {}
	const msg = text.slice(text.indexOf('[heartline] ') + 12);
	const origin = /(?:origin=|listening at )(http:\/\/127\.0\.0\.1:\d+)/.exec(msg);
	if (origin) view.origin ??= origin[1];
	if (/stays on the built-in transport/.test(msg)) view.shimFailed = msg;
	if (/^engine .* listening at/.test(msg) || /^engine started/.test(msg)) view.engineStarted ??= Date.now();
	const found = /^session checkpoints loaded resumable=(\d+)/.exec(msg);
	if (found && view.restart) {
		view.restart.sessionsFound = Number(found[1]);
		event(`heartline found ${found[1]} saved Discord session${found[1] === '1' ? '' : 's'} on disk; each bot resumes its own once OpenClaw starts it`);
	}
	const m = /\bbot=([0-9a-f]{8})\b/.exec(msg);
	if (!m || !botByHash.has(m[1])) return;
	const b = botByHash.get(m[1]);
	const e = view.engine[b];
	// The stop closes every session on purpose: the restart's own events
	// say so, and the table shows the gateway down, whatever the old
	// process logged last.
	const stopped = view.restart?.phase === 'stopping' || view.restart?.phase === 'down';
	const quiet = !view.t0 || stopped;
	const set = (state) => {
		if (stopped) return;
		e.state = state;
		e.since = Date.now();
	};
	if (/^upstream ready/.test(msg)) set('ready');
	else if (/^session restored from checkpoint/.test(msg)) set('resuming');
	else if (/^upstream resumed/.test(msg)) {
		set('ready');
		e.upResumes++;
	} else if (/^upstream identify/.test(msg)) set('identifying');
	else if (/^upstream (disconnected|zombie|connect failed|connection failed|lookup failed|asked to reconnect)/.test(msg)) {
		set('reconnecting');
		const retry = /\bretry_ms=(\d+)/.exec(msg);
		const code = /\bcode=(\d+)/.exec(msg);
		if (quiet) return;
		const how = code && code[1] !== '0' ? `close code ${code[1]}` : 'connection cut';
		if (/^upstream disconnected/.test(msg) && retry)
			event(`heartline: bot${b} lost its Discord connection (${how}), reconnecting in ${(Number(retry[1]) / 1000).toFixed(1)} s`);
		else event(`heartline: bot${b} ${msg.replace(/ bot=[0-9a-f]{8}/, '')}`);
	} else if (/^upstream session lost/.test(msg)) {
		set('identifying');
		if (!quiet) event(`heartline: bot${b} lost its Discord session, identifying again`);
	} else if (/^upstream closed with fatal code/.test(msg)) {
		set('failed');
		event(`heartline: bot${b} ${msg.replace(/ bot=[0-9a-f]{8}/, '')}`);
	} else if (/^downstream resumed/.test(msg)) e.localResumes++;
	else if (/^downstream identify/.test(msg)) e.localIdentifies++;
}

function readStallLog(file) {
	let text = '';
	try {
		text = fs.readFileSync(file, 'utf8');
	} catch {
		return;
	}
	// Each gateway process numbers its own stalls; a restart starts again
	// at 1, so they are told apart by pid and numbered here in order.
	const byKey = new Map();
	for (const line of text.split('\n')) {
		if (!line.trim()) continue;
		let e;
		try {
			e = JSON.parse(line);
		} catch {
			continue;
		}
		const key = `${e.pid}:${e.n}`;
		if (e.event === 'armed') view.armedAt = e.at;
		if (e.event === 'stall_start') byKey.set(key, { key, n: 0, start: e.at, end: null });
		if (e.event === 'stall_end' && byKey.has(key)) byKey.get(key).end = e.at;
	}
	const before = view.stalls;
	view.stalls = [...byKey.values()].sort((a, b) => a.start - b.start);
	view.stalls.forEach((s, i) => (s.n = i + 1));
	for (const s of view.stalls) {
		const old = before.find((x) => x.key === s.key);
		if (!old) event(`freeze ${s.n} began: OpenClaw's event loop is blocked for ${secs(STALL_MS)}`);
		if (s.end && !old?.end) event(`freeze ${s.n} ended after ${((s.end - s.start) / 1000).toFixed(1)} s`);
	}
}

// Replies are the bots' messages that carry a question's tag.
function repliesTo(q) {
	return (view.record?.messages ?? []).filter((m) => m.bot === q.bot && m.method !== 'PATCH' && m.method !== 'DELETE' && String(m.content ?? '').includes(q.tag));
}

function noteRecordEvents() {
	const r = view.record;
	if (!r) return;
	for (const d of r.drops.slice(view.seen.drops)) {
		if (d.bot !== null && d.bot !== undefined && !expectedDrop(d)) event(red(`Discord cut bot${d.bot} off (${d.reason}, code ${d.code})`));
	}
	view.seen.drops = r.drops.length;
	for (const m of r.messages.slice(view.seen.messages)) {
		const q = view.questions.find((x) => x.bot === m.bot && String(m.content ?? '').includes(x.tag));
		if (q && m.method === 'POST') {
			const n = repliesTo(q).length;
			const down = q.down ? ', sent while the gateway was down,' : '';
			event(n > 1 ? red(`bot${m.bot} answered question ${q.round + 1} AGAIN (${n} replies)`) : `bot${m.bot} answered question ${q.round + 1}${down} after ${secs(m.t - q.sentAt)}`);
		}
	}
	view.seen.messages = r.messages.length;
	if (view.t0) {
		for (const e of r.identifies.slice(view.seen.identifies)) {
			if (e.t >= view.t0 && e.bot !== null) {
				event(yellow(`bot${e.bot} sent a new IDENTIFY (its session was lost)`));
				blipReturn(e.bot, e.t, 'IDENTIFY');
				restartReturn(e.bot, e.t, 'IDENTIFY');
			}
		}
	}
	view.seen.identifies = r.identifies.length;
	for (const e of r.resumes.slice(view.seen.resumes)) {
		if (e.ok && e.bot !== null && e.bot !== undefined) {
			blipReturn(e.bot, e.t, 'RESUME');
			restartReturn(e.bot, e.t, 'RESUME');
		}
	}
	view.seen.resumes = r.resumes.length;
	for (const q of r.requests.slice(view.seen.requests)) {
		if (q.route === 'POST /channels/:channel/messages' && q.status >= 400) event(red(`bot${q.bot} tried to reply, Discord refused the message (HTTP ${q.status})`));
	}
	view.seen.requests = r.requests.length;
}

// A bot's first session after the blip: how long it took and how.
function blipReturn(bot, t, how) {
	const blip = view.blip;
	if (!blip || t < blip.at || blip.back.has(bot)) return;
	blip.back.set(bot, { after: t - blip.at, how });
	event(`bot${bot} is back on Discord ${((t - blip.at) / 1000).toFixed(1)} s after the blip (${how})`);
	if (blip.back.size === blip.dropped) {
		const s = blipFigures();
		event(green(`all ${blip.dropped} bots back: first after ${s.first} s, last after ${s.last} s; ${s.resumes} RESUMEs, ${s.identifies} IDENTIFYs`));
	}
}

// A bot's first session after the gateway started again.
function restartReturn(bot, t, how) {
	const r = view.restart;
	if (!r?.startAt || t < r.startAt || r.back.has(bot)) return;
	r.back.set(bot, { after: t - r.startAt, how });
	const after = ((t - r.startAt) / 1000).toFixed(1);
	if (how === 'RESUME') event(`bot${bot} back by RESUME ${after} s after the restart: its old session goes on, Discord replays what it missed`);
	else event(red(`bot${bot} back by a new IDENTIFY ${after} s after the restart: its saved session was not used`));
	if (r.back.size === BOTS) {
		const f = restartFigures();
		r.phase = 'back';
		r.backAt = t;
		event((f.identifies ? red : green)(`all ${BOTS} bots back ${secs(t - r.startAt)} after the restart: ${f.resumes} RESUMEs, ${f.identifies} IDENTIFYs`));
	}
}

function restartFigures() {
	const r = view.restart;
	const rec = view.record ?? {};
	const since = (list) => (list ?? []).filter((e) => e.t >= r.stopAt && e.bot !== null && e.bot !== undefined);
	const back = [...r.back.values()];
	const times = back.map((x) => x.after);
	// Across the restart: the DMs sent while the gateway was down, those
	// since, and any still unanswered when it stopped.
	const across = view.questions.filter((q) => q.sentAt >= r.stopAt || !repliesTo(q).some((m) => m.t < r.stopAt));
	// A copy posted after the stop of any answer, older ones included
	// (a reply resent from the journal would show here).
	let duplicated = 0;
	for (const q of view.questions) {
		const all = repliesTo(q);
		const after = all.filter((m) => m.t >= r.stopAt).length;
		if (all.length > 1 && after) duplicated += Math.min(after, all.length - 1);
	}
	const down = view.questions.filter((q) => q.down);
	return {
		first: times.length ? (Math.min(...times) / 1000).toFixed(1) : '-',
		last: times.length ? (Math.max(...times) / 1000).toFixed(1) : '-',
		identifies: since(rec.identifies).length + since(rec.identify_rate_limited).length,
		resumes: since(rec.resumes).filter((e) => e.ok).length,
		refused: since(rec.resumes).filter((e) => !e.ok).length,
		across,
		duplicated,
		down,
		downAnswered: down.filter((q) => repliesTo(q).length > 0).length,
	};
}

function blipFigures() {
	const back = [...view.blip.back.values()];
	const times = back.map((x) => x.after);
	return {
		first: times.length ? (Math.min(...times) / 1000).toFixed(1) : '-',
		last: times.length ? (Math.max(...times) / 1000).toFixed(1) : '-',
		resumes: back.filter((x) => x.how === 'RESUME').length,
		identifies: back.filter((x) => x.how === 'IDENTIFY').length,
	};
}

// The scripted restart, run beside the live loop so the table goes on:
// stop the gateway, DM every bot while it is down, start it again the same
// way. The bots' return is read from the fake's record (restartReturn).
async function restartGateway(gwOptions, tag) {
	const r = {
		phase: 'stopping',
		stopAt: Date.now(),
		exitAt: null,
		exit: null,
		forced: false,
		startAt: null,
		backAt: null,
		back: new Map(),
		dms: 0,
		sessionsFound: null,
	};
	view.restart = r;
	// The old engine's status endpoint goes away with it.
	view.origin = null;
	view.status = null;
	event(yellow(bold('gateway stopping for a restart')) + ": SIGTERM, as a service manager sends it; heartline saves every bot's session");
	const old = procs.gw;
	r.exit = await stopGatewayAll(old, STOP_TIMEOUT_MS);
	r.exitAt = old.exited?.at ?? Date.now();
	r.forced = old.exited?.signal === 'SIGKILL';
	r.phase = 'down';
	for (const e of view.engine) {
		e.state = 'gateway down';
		e.since = r.exitAt;
	}
	event(`gateway stopped ${((r.exitAt - r.stopAt) / 1000).toFixed(1)} s after the SIGTERM` +
		(r.forced ? red(' (killed: it did not stop within a minute)') : '') + '; every bot is off Discord now');
	// The freezes are armed again once every bot is back, as at the first start.
	fs.rmSync(gwOptions.env.STALL_ARM_FILE, { force: true });
	if (stopping || cleaning) return;
	const round = view.rounds++;
	for (let b = 0; b < BOTS; b++) {
		const q = { bot: b, round, tag: `demo-${tag}-q${round + 1}-bot${b}`, sentAt: Date.now(), down: true };
		await fakeDm(b, `hello bot${b}, this is question ${round + 1}, sent while your gateway is down (${q.tag})`);
		view.questions.push(q);
		r.dms++;
	}
	event(`gateway down: ${r.dms} DMs sent meanwhile (question ${round + 1}); Discord keeps them in each bot's session`);
	await pause(r.exitAt + DOWN_MS - Date.now());
	if (stopping || cleaning) return;
	view.engineStarted = null;
	for (const e of view.engine) {
		e.state = 'restarting';
		e.since = Date.now();
	}
	procs.gw = h.startGateway(old.setup, gwOptions);
	r.startAt = procs.gw.startedAt;
	r.phase = 'starting';
	event(`gateway starting again after ${secs(r.startAt - r.exitAt)} down, same setup: it loads its plugins (~30 s), then starts one bot every 10 s`);
}

// The stop waits for a quiet moment: no answer in flight (what SIGTERM
// does to a model run is OpenClaw's business, not the transport's), no
// freeze now or due within RESTART_CLEARANCE_MS, and the heartbeat after
// the last freeze done, so its drops are told apart.
function restartClear(now) {
	if (view.questions.some((q) => !repliesTo(q).length && now - q.sentAt < DRAIN_MS)) return false;
	if (view.stalls.some((s) => !s.end)) return false;
	const last = view.stalls.at(-1);
	if (last && now < last.end + HEARTBEAT_MS + GRACE_MS) return false;
	const next = last ? last.start + STALL_PERIOD_MS : (view.armedAt ?? view.t0) + STALL_FIRST_MS;
	return next - now >= RESTART_CLEARANCE_MS;
}

async function fakeBlip() {
	const res = await fetch(`${procs.fake.info.http_origin}/_fake/drop-all`, { method: 'POST', signal: AbortSignal.timeout(5000) });
	if (!res.ok) throw new Error(`fake Discord drop-all: HTTP ${res.status}`);
	return (await res.json()).dropped;
}

async function poll(setup, stallLog) {
	try {
		const [record, state] = await Promise.all([fakeGet('/record'), fakeGet('/state')]);
		view.record = record;
		view.state = state;
	} catch (err) {
		if (!stopping && procs.fake?.child.exitCode !== null) throw new Error(`the fake Discord stopped: ${err.message}`);
	}
	readGatewayLog(setup);
	readStallLog(stallLog);
	noteRecordEvents();
	const origin = view.origin;
	if (origin) {
		try {
			const res = await fetch(`${origin}/_heartline/status`, { signal: AbortSignal.timeout(2000) });
			// Not when the gateway went down meanwhile: then the snapshot is stale.
			if (res.ok && view.origin === origin) view.status = await res.json();
		} catch {
			// The gateway may be on its way down; keep the last snapshot.
		}
	}
}

// heartline's own view of bot b, from its status snapshot.
function engineStatus(b) {
	const hash = procs.fake ? tokenHash(procs.fake.info.bots[b].token) : null;
	return view.status?.bots?.find((x) => x.token_hash === hash) ?? null;
}

// ------------------------------------------------------------ per-bot view

function botFigures(b) {
	const r = view.record ?? { drops: [], identifies: [], resumes: [], heartbeats: [], typing: [], messages: [] };
	const mine = (list) => list.filter((e) => e.bot === b);
	const beats = mine(r.heartbeats);
	const drops = mine(r.drops).filter((d) => !expectedDrop(d));
	const asked = view.questions.filter((q) => q.bot === b);
	let answered = 0;
	let duplicated = 0;
	for (const q of asked) {
		const n = repliesTo(q).length;
		if (n > 0) answered++;
		if (n > 1) duplicated += n - 1;
	}
	const finished = view.stalls.filter((s) => s.end);
	// A stall is survived when Discord did not cut the bot off during it
	// or in the heartbeat interval right after it.
	const survived = finished.filter((s) => !drops.some((d) => d.t >= s.start && d.t <= s.end + HEARTBEAT_MS + GRACE_MS)).length;
	const live = view.state?.bots?.[b]?.live_connections ?? 0;
	return {
		bot: b,
		live,
		engine: view.engine[b],
		status: engineStatus(b),
		lastBeat: beats.at(-1) ?? null,
		maxLate: beats.length ? Math.max(...beats.map((x) => x.late_ms ?? 0)) : null,
		drops: drops.length,
		identifies: mine(r.identifies).length,
		resumes: mine(r.resumes).length,
		typing: mine(r.typing).length,
		asked: asked.length,
		answered,
		duplicated,
		survived,
		finishedStalls: finished.length,
	};
}

function stallNow(now) {
	const cur = view.stalls.find((s) => !s.end);
	if (cur) return { frozen: true, text: red(bold(`FROZEN`)) + ` for ${secs(now - cur.start)} of ${secs(STALL_MS)} (freeze ${cur.n}): no JavaScript runs in OpenClaw, heartline's threads keep heartbeating` };
	const done = view.stalls.filter((s) => s.end).length;
	const last = view.stalls.at(-1);
	let next = null;
	// A restarted gateway arms its freezes anew, the first STALL_FIRST_MS on.
	if (view.armedAt && (!last || view.armedAt > last.start)) next = view.armedAt + STALL_FIRST_MS - now;
	else if (last) next = last.start + STALL_PERIOD_MS - now;
	// Restarted but not armed again yet: no freeze is due.
	if (view.restart && !(view.armedAt > view.restart.stopAt)) next = null;
	const nextText = next === null ? '' : `next freeze in ${secs(Math.max(0, next))}, `;
	return { frozen: false, text: green('running') + dim(` (${nextText}${done} so far)`) };
}

// The gateway's line of the table: its event loop, or where the restart is.
function gatewayText(now) {
	const r = view.restart;
	switch (r?.phase) {
		case 'stopping':
			return `OpenClaw gateway: ${yellow(bold('STOPPING'))} for a restart, SIGTERM sent ${secs(now - r.stopAt)} ago; heartline saves each bot's session`;
		case 'down':
			return `OpenClaw gateway: ${yellow(bold('DOWN'))} for a restart, ${secs(now - r.exitAt)} so far; ${r.dms} DMs sent meanwhile`;
		case 'starting':
			return `OpenClaw gateway: ${yellow(bold('STARTING AGAIN'))}, ${secs(now - r.startAt)} since start; ${r.back.size}/${BOTS} bots back by RESUME (one every 10 s)`;
		default:
			return `OpenClaw's event loop: ${stallNow(now).text}`;
	}
}

// The restart is under way: from the SIGTERM until every bot is back.
const restarting = () => ['stopping', 'down', 'starting'].includes(view.restart?.phase);

function linkText(f) {
	if (f.engine.state === 'failed' || f.status?.state === 'fatal') return red('failed');
	if (f.live > 0) return green('connected');
	// Off Discord for the restart is expected; it is back by RESUME soon.
	return restarting() ? yellow('down') : red('down');
}

function engineText(f) {
	const phase = view.restart?.phase;
	if (phase === 'stopping') return yellow('stopping');
	if (phase === 'down') return yellow('gateway down');
	const state = f.status?.state ?? f.engine.state;
	switch (state) {
		case 'ready':
			return green('ready');
		case 'backoff':
		case 'connecting':
		case 'reconnecting':
		case 'identifying':
		case 'resuming':
			return yellow(state);
		case 'restarting':
			return yellow('not yet back');
		case 'failed':
		case 'fatal':
		case 'blocked':
			return red(state);
		default:
			return dim(state);
	}
}

// Heartbeat round trip as heartline measured it upstream, in whole ms: on
// loopback it is often under one, reported as 0.
function rttText(f) {
	if (!f.status) return dim('-');
	if (f.status.heartbeat_rtt_ms > 0) return `${f.status.heartbeat_rtt_ms} ms`;
	const beaten = f.status.state === 'ready' && f.lastBeat && f.lastBeat.t > (view.restart?.startAt ?? 0);
	return beaten ? '<1 ms' : dim('-');
}

function beatText(f, now) {
	if (!f.lastBeat) return dim('none yet');
	const ago = Math.max(0, Math.round((now - f.lastBeat.t) / 1000));
	const gap = (f.lastBeat.gap_ms / 1000).toFixed(1);
	return `${gap} s gap, ${ago} s ago`;
}

const COLS = [
	['bot', 5],
	['Discord sees', 13],
	['heartline', 13],
	['last heartbeat', 20],
	['hb RTT', 7],
	['drops', 6],
	['IDENTIFYs', 10],
	['typing', 7],
	['replies', 8],
];

function tableLines(now) {
	const head = COLS.map(([name, w], i) => (i >= 4 ? lpad(name, w) : pad(name, w))).join(' ');
	const lines = [bold(head)];
	for (let b = 0; b < BOTS; b++) {
		const f = botFigures(b);
		const cells = [
			`bot${b}`,
			linkText(f),
			engineText(f),
			beatText(f, now),
			rttText(f),
			f.drops ? red(String(f.drops)) : String(f.drops),
			f.identifies > 1 ? yellow(String(f.identifies)) : String(f.identifies),
			String(f.typing),
			`${f.answered}/${f.asked}`,
		];
		lines.push(cells.map((c, i) => (i >= 4 ? lpad(c, COLS[i][1]) : pad(c, COLS[i][1]))).join(' '));
	}
	return lines;
}

function questionsLine(now, live) {
	const asked = view.questions.length;
	let answered = 0;
	for (const q of view.questions) if (repliesTo(q).length) answered++;
	let next = '';
	if (live.hold && live.nextRoundAt) next = ', next DMs once the bots are back from the restart';
	else if (live.nextRoundAt && live.nextRoundAt > now) next = `, next DMs in ${secs(live.nextRoundAt - now)}`;
	return `Questions: ${asked} sent, ${answered} answered, ${asked - answered} in flight${next}`;
}

let drawn = 0;
function render(now, live) {
	const elapsed = now - view.t0;
	const phase = live.draining
		? yellow(`time is up, waiting up to ${secs(DRAIN_MS)} for the answers still in flight`)
		: `live ${clock(elapsed)} of ${clock(SECONDS * 1000)}`;
	const lines = [
		`${bold('heartline demo')} · ${phase} ${dim('(Ctrl-C stops)')}`,
		gatewayText(now),
		questionsLine(now, live),
		'',
		...tableLines(now),
		'',
		dim('Recent events:'),
	];
	const recent = view.events.slice(-6);
	for (const e of recent) lines.push(dim(`  ${clock(e.at - view.t0)} `) + e.text);
	for (let i = recent.length; i < 6; i++) lines.push('');
	const cols = process.stdout.columns || 120;
	const out = lines.map((l) => (width(l) > cols - 1 ? l.replace(/\x1b\[[0-9;]*m/g, '').slice(0, cols - 2) + '…' : l));
	let s = '';
	if (drawn) s += `\x1b[${drawn}F`;
	s += out.map((l) => `\x1b[2K${l}`).join('\n') + '\n';
	process.stdout.write(s);
	drawn = out.length;
}

function plainStatus(now, live) {
	const figs = Array.from({ length: BOTS }, (_, b) => botFigures(b));
	const up = figs.filter((f) => f.live > 0).length;
	const drops = figs.reduce((a, f) => a + f.drops, 0);
	const ids = figs.reduce((a, f) => a + f.identifies, 0);
	const st = stallNow(now);
	const loop = restarting() ? `gateway ${view.restart.phase === 'starting' ? 'starting again' : view.restart.phase} for a restart` : st.frozen ? 'event loop FROZEN' : 'event loop running';
	say(`[${clock(now - view.t0)}] status: ${up}/${BOTS} bots connected to Discord, ${drops} drops, ${ids} IDENTIFYs, ${loop}; ${questionsLine(now, live)}`);
	for (const f of figs) {
		const link = f.live ? 'connected' : restarting() ? 'down for the restart' : 'DOWN';
		say(`    bot${f.bot}: ${link}, heartline ${plain(engineText(f))}, last heartbeat ${beatText(f, now)}, round trip ${rttText(f)}, typing ${f.typing}, replies ${f.answered}/${f.asked}`);
	}
}

// ---------------------------------------------------------------- summary

function summary(endedBy, interrupted) {
	// Stopped early, a question asked less than a drain period ago may
	// still be answered: it is in flight, not lost.
	const now = Date.now();
	// So is a DM sent while the gateway was down, until its bot is back.
	const waiting = (q) => q.down && !view.restart?.back.has(q.bot);
	const inFlight = (q) => interrupted && (now - q.sentAt < DRAIN_MS || waiting(q)) && repliesTo(q).length === 0;
	const pending = view.questions.filter(inFlight);
	const figs = Array.from({ length: BOTS }, (_, b) => {
		const f = botFigures(b);
		f.pending = pending.filter((q) => q.bot === b).length;
		return f;
	});
	const stallsDone = view.stalls.filter((s) => s.end).length;
	const cols = [
		['', 6],
		['asked', 6],
		['replied', 8],
		['lost', 5],
		['twice', 6],
		['drops', 6],
		['IDENTIFYs', 10],
		['max hb late', 12],
		['stalls survived', 16],
	];
	const row = (cells) => cells.map((c, i) => (i === 0 ? pad(c, cols[i][1]) : lpad(c, cols[i][1]))).join(' ');
	const late = (ms) => (ms === null ? '-' : `${ms} ms`);
	const lines = [];
	lines.push('');
	lines.push(bold(`Summary (${endedBy})`));
	lines.push(dim('  asked/replied: DMs sent and answered · lost: never answered · twice: extra copies of an answer'));
	lines.push(dim('  drops: connections the fake Discord cut or saw close, those of the scripted blip and restart aside · max hb late: latest heartbeat vs the 10 s interval'));
	lines.push(bold(row(cols.map(([n]) => n))));
	const tot = { asked: 0, answered: 0, lost: 0, dup: 0, drops: 0, ids: 0, late: null };
	for (const f of figs) {
		const lost = f.asked - f.answered - f.pending;
		tot.asked += f.asked;
		tot.answered += f.answered;
		tot.lost += lost;
		tot.dup += f.duplicated;
		tot.drops += f.drops;
		tot.ids += f.identifies;
		if (f.maxLate !== null) tot.late = Math.max(tot.late ?? -Infinity, f.maxLate);
		lines.push(row([`bot${f.bot}`, String(f.asked), String(f.answered), String(lost), String(f.duplicated), String(f.drops), String(f.identifies), late(f.maxLate), `${f.survived}/${stallsDone}`]));
	}
	// A stall counts for the total when no bot was cut off around it.
	const allDrops = (view.record?.drops ?? []).filter((d) => d.bot !== null && d.bot !== undefined && !expectedDrop(d));
	const survivedAll = view.stalls.filter((s) => s.end && !allDrops.some((d) => d.t >= s.start && d.t <= s.end + HEARTBEAT_MS + GRACE_MS)).length;
	lines.push(bold(row(['total', String(tot.asked), String(tot.answered), String(tot.lost), String(tot.dup), String(tot.drops), String(tot.ids), late(tot.late), `${survivedAll}/${stallsDone}`])));

	if (view.blip) {
		const s = blipFigures();
		lines.push('');
		lines.push(`Scripted blip at ${clock(view.blip.at - view.t0)}: Discord cut all ${view.blip.dropped} connections at once.`);
		lines.push(`  ${view.blip.back.size} of ${view.blip.dropped} bots back, the first after ${s.first} s and the last after ${s.last} s`);
		lines.push(`  (spread by heartline's reconnect coordinator); ${s.resumes} by RESUME, ${s.identifies} by a new IDENTIFY.`);
	}
	const r = view.restart;
	const rs = r ? restartFigures() : null;
	const rsLost = rs ? rs.across.filter((q) => !repliesTo(q).length && !inFlight(q)).length : 0;
	const downLost = rs ? rs.down.filter((q) => !repliesTo(q).length && !inFlight(q)).length : 0;
	if (r) {
		lines.push('');
		const stopped = r.exitAt ? `it stopped ${((r.exitAt - r.stopAt) / 1000).toFixed(1)} s after the SIGTERM${r.forced ? ' (killed after a minute)' : ''}` : 'it was still stopping';
		const down = r.startAt ? `and was down ${((r.startAt - r.exitAt) / 1000).toFixed(1)} s before it started again` : 'and did not start again';
		lines.push(`Gateway restart at ${clock(r.stopAt - view.t0)}: ${stopped}, ${down}.`);
		if (r.startAt) {
			const spread = r.back.size ? `, the first ${rs.first} s and the last ${rs.last} s after the start (OpenClaw starts one bot every 10 s)` : '';
			lines.push(`  ${r.back.size} of ${BOTS} bots back${spread};`);
			lines.push(`  ${rs.resumes} RESUMEs and ${rs.identifies} IDENTIFYs since the restart${rs.refused ? `, ${rs.refused} RESUMEs refused` : ''}.`);
		}
		lines.push(`  DMs sent while it was down: ${rs.down.length}, answered ${rs.downAnswered}. Across the restart: lost replies ${rsLost}, duplicated replies ${rs.duplicated}.`);
	} else if (RESTART_AT_MS === null) {
		lines.push('');
		lines.push(dim(`No gateway restart: the live part was too short (DEMO_SECONDS=${RESTART_MIN_SECONDS} or more shows one).`));
	}
	if (pending.length) lines.push(dim(`  (${pending.length} question${pending.length === 1 ? ' was' : 's were'} still in flight when stopped; not counted as lost)`));
	const problems = [];
	const dropped = figs.filter((f) => f.drops > 0);
	if (dropped.length) problems.push(`${dropped.length} of ${BOTS} bots were cut off by Discord (${tot.drops} drops)`);
	const reIdent = figs.filter((f) => f.identifies > 1);
	if (reIdent.length) problems.push(`${reIdent.length} bots had to IDENTIFY again (session lost)`);
	const never = figs.filter((f) => f.identifies === 0);
	if (never.length) problems.push(`${never.map((f) => `bot${f.bot}`).join(', ')} never identified`);
	if (tot.lost) {
		// Say why when the fake refused the bots' messages.
		const refused = (view.record?.requests ?? []).filter((q) => q.route === 'POST /channels/:channel/messages' && q.status >= 400);
		const codes = [...new Set(refused.map((q) => q.status))].join(', ');
		const why = refused.length ? ` (the bots tried; Discord refused ${refused.length} message POSTs with HTTP ${codes})` : '';
		problems.push(`${tot.lost} of ${tot.asked} questions got no reply${why}`);
	}
	if (tot.dup) problems.push(`${tot.dup} replies were sent twice`);
	if (view.shimFailed) problems.push(`heartline did not load: ${view.shimFailed}`);
	if (stallsDone === 0) problems.push('no freeze finished, the run was too short to show anything');
	if (view.blip && view.blip.back.size < view.blip.dropped) problems.push(`only ${view.blip.back.size} of ${view.blip.dropped} bots came back after the blip`);
	if (view.blip && blipFigures().identifies) problems.push(`${blipFigures().identifies} bots needed a new IDENTIFY after the blip instead of resuming`);
	if (RESTART_AT_MS !== null && !r && !interrupted) problems.push('the gateway restart never came (no quiet moment for it before the end)');
	if (r && !interrupted && r.back.size < BOTS) problems.push(`only ${r.back.size} of ${BOTS} bots came back after the gateway restart`);
	if (rs?.identifies) problems.push(`${rs.identifies} IDENTIFYs after the gateway restart (a saved session was not resumed)`);
	if (downLost) problems.push(`${downLost} of ${rs.down.length} DMs sent while the gateway was down got no reply`);
	const ok = problems.length === 0;
	let verdict;
	if (ok) {
		verdict = green(bold(`Verdict: every bot stayed connected through ${stallsDone} stall${stallsDone === 1 ? '' : 's'}`)) +
			` of ${secs(STALL_MS)}: no drop, no new IDENTIFY, ${tot.answered} of ${tot.asked - pending.length} questions answered, none twice` +
			(view.blip ? `; after the blip every bot resumed within ${blipFigures().last} s` : '') +
			(r && r.back.size === BOTS ? `; after the gateway restart every bot came back by RESUME, 0 IDENTIFYs, and the ${rs.downAnswered} DMs sent while it was down were answered once` : '') +
			(interrupted ? ' (stopped early)' : '') + '.';
	} else {
		verdict = red(bold('Verdict: ')) + red(problems.join('; ') + '.');
	}
	lines.push('');
	lines.push(verdict);
	if (ok) lines.push(dim(`(For comparison, ${STOCK_NOTE}.)`));
	return { text: lines.join('\n'), ok };
}

// ------------------------------------------------------------------- main

async function main() {
	const started = Date.now();
	say(bold('heartline demo: five Discord bots on one OpenClaw gateway that keeps freezing'));
	say(`OpenClaw's JavaScript event loop is blocked for ${secs(STALL_MS)} of every minute, as on a busy gateway.`);
	say(`Discord here is a local fake that cuts off any bot whose heartbeat (every ${secs(HEARTBEAT_MS)}) is more than ${secs(GRACE_MS)} late,`);
	say(`and the model takes ${secs(MODEL_MS)} per answer. With heartline the heartbeats come from its own threads, so no bot`);
	say('should drop and every DM should be answered once. Later the gateway is restarted while people keep writing:');
	say('heartline saves each bot\'s Discord session on disk, so the bots should come back by RESUME, with no IDENTIFY,');
	say('and the DMs sent while it was down should be answered. Everything stays on 127.0.0.1; no Discord token needed.');
	say('');

	const problem = h.toolchainMissing();
	if (problem) throw new Error(`${problem}; \`make demo\` runs it for you`);
	const tgz = findTarball();

	runDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'heartline-demo-'));
	const stallLog = path.join(runDir, 'stall.jsonl');
	const armFile = path.join(runDir, 'stall.arm');
	const step = (n, text) => say(`${dim(`[${n}/5]`)} ${text}`);

	step(1, `starting the fake Discord (${BOTS} bots, heartbeat every ${secs(HEARTBEAT_MS)}, ${secs(GRACE_MS)} of grace, TLS)`);
	procs.fake = await h.startJsonProcess(
		h.paths.fakeDiscord,
		['--bots', String(BOTS), '--heartbeat-interval', String(HEARTBEAT_MS), '--heartbeat-grace', String(GRACE_MS)],
		{ stderrFile: path.join(runDir, 'fake-discord.err') },
	);
	const fake = procs.fake.info;
	botByHash = new Map(fake.bots.map((b, i) => [tokenHash(b.token), i]));
	view.engine = fake.bots.map(() => ({ state: 'waiting', since: Date.now(), upResumes: 0, localResumes: 0, localIdentifies: 0 }));
	checkStop();

	step(2, `starting the slow model (answers after ${secs(MODEL_MS)})`);
	procs.model = await h.startJsonProcess(h.paths.slowModel, ['--delay-ms', String(MODEL_MS), '--log', path.join(runDir, 'model.jsonl')], {
		stderrFile: path.join(runDir, 'model.err'),
	});
	checkStop();

	const templateReady = fs.existsSync(path.join(h.HEARTLINE_CACHE, `e2e-openclaw-${h.OPENCLAW_VERSION}`, 'READY'));
	if (!templateReady) {
		step(3, `first run: installing OpenClaw's Discord plugin (${h.DISCORD_PLUGIN_SPEC}) into ${h.HEARTLINE_CACHE}`);
		say('      this downloads it with npm and takes about a minute, only this once');
	} else {
		step(3, 'preparing a fresh OpenClaw state directory');
	}
	const setup = await h.createGatewayDir({
		dir: path.join(runDir, 'openclaw'),
		bots: fake.bots,
		modelBaseUrl: `http://127.0.0.1:${procs.model.info.port}/v1`,
	});
	checkStop();
	say(`      installing heartline the README way: openclaw plugins install npm-pack:${path.relative(process.cwd(), tgz)}`);
	const t = Date.now();
	h.installPlugin(setup, tgz);
	checkStop();
	say(dim(`      installed in ${secs(Date.now() - t)}`));
	const config = h.readConfig(setup);
	config.meta ??= { lastTouchedVersion: h.OPENCLAW_VERSION };
	config.plugins.entries.heartline = {
		...(config.plugins.entries.heartline ?? {}),
		enabled: true,
		config: {
			api_base: `${fake.https_origin}/api/v10`,
			cdn_base: fake.https_origin,
			media_base: fake.https_origin,
			ca_file: fake.ca_file,
			// To try another build of the engine without repacking.
			...(process.env.DEMO_LIBRARY ? { library: path.resolve(process.env.DEMO_LIBRARY) } : {}),
		},
	};
	h.writeConfig(setup, config);

	step(4, `starting the OpenClaw gateway; it loads its plugins (~30 s), then starts one bot every 10 s`);
	// Should heartline not load, the Discord channel would fall back to
	// this address: a closed loopback port, never the real Discord.
	const nowhere = `http://127.0.0.1:${await h.freePort()}/api/v10`;
	// Kept for the restart, which starts the gateway again the same way.
	const gwOptions = {
		preload: h.paths.stallPreload,
		env: {
			DISCORD_API_URL: nowhere,
			STALL_MS: String(STALL_MS),
			STALL_PERIOD_MS: String(STALL_PERIOD_MS),
			STALL_FIRST_MS: String(STALL_FIRST_MS),
			STALL_ARM_FILE: armFile,
			STALL_LOG: stallLog,
			STALL_ONLY_ARGV: 'gateway',
		},
	};
	procs.gw = h.startGateway(setup, gwOptions);
	await waitForBots(setup, stallLog);
	say(dim(`      all ${BOTS} bots connected ${secs(Date.now() - procs.gw.startedAt)} after the gateway started`));

	step(5, `live for ${clock(SECONDS * 1000)}: a DM to every bot every ${secs(DM_PERIOD_MS)}, the first freeze in ${secs(STALL_FIRST_MS)}` +
		(BLIP_AT_MS === null ? '' : `, a network blip at ${clock(BLIP_AT_MS)}`) +
		(RESTART_AT_MS === null ? '' : `, a gateway restart soon after ${clock(RESTART_AT_MS)} (once no answer is due)`));
	if (RESTART_AT_MS === null) say(dim(`      (no gateway restart: it needs DEMO_SECONDS=${RESTART_MIN_SECONDS} or more)`));
	say('');
	view.t0 = Date.now();
	fs.writeFileSync(armFile, `${view.t0}\n`);
	const endedBy = await live(setup, stallLog, gwOptions);

	say('');
	say(dim('stopping the gateway, the model and the fake Discord...'));
	const left = await cleanup();
	say(dim(left ? `had to force-kill ${left} process group(s)` : 'all stopped, nothing left running'));
	if (KEEP) say(`run directory kept: ${runDir} (gateway log: openclaw/openclaw.log)`);
	const s = summary(endedBy, stopping);
	say(s.text);
	say(dim(`total run time ${clock(Date.now() - started)}`));
	return s.ok ? 0 : 1;
}

function findTarball() {
	const build = path.join(h.REPO_ROOT, 'build');
	let names = [];
	try {
		names = fs.readdirSync(build).filter((n) => /^heartline-openclaw-.*\.tgz$/.test(n));
	} catch {}
	if (!names.length) throw new Error('no build/heartline-openclaw-*.tgz: run `make package` (or just `make demo`)');
	names.sort((a, b) => fs.statSync(path.join(build, b)).mtimeMs - fs.statSync(path.join(build, a)).mtimeMs);
	return path.join(build, names[0]);
}

async function waitForBots(setup, stallLog) {
	const gw = procs.gw;
	const deadline = Date.now() + READY_TIMEOUT_MS;
	let lastSaid = '';
	let engineSaid = false;
	for (;;) {
		checkStop();
		if (gw.exited) throw new Error(`the gateway exited (${JSON.stringify(gw.exited)}) before the bots were up:\n${h.tail(h.gatewayLog(setup), 30)}`);
		await poll(setup, stallLog).catch(() => {});
		if (view.shimFailed) throw new Error(`heartline did not load in the gateway: ${view.shimFailed}`);
		if (view.engineStarted && !engineSaid) {
			engineSaid = true;
			say(dim(`      heartline's engine is running inside the gateway (${secs(view.engineStarted - gw.startedAt)} after start)`));
		}
		const live = view.state?.bots?.filter((b) => b.live_sessions > 0).length ?? 0;
		const msg = `      ${live}/${BOTS} bots connected to the fake Discord through heartline`;
		if (live >= BOTS) return;
		if (msg !== lastSaid) {
			say(dim(`${msg} (${secs(Date.now() - gw.startedAt)})`));
			lastSaid = msg;
		}
		if (Date.now() > deadline) throw new Error(`only ${live} of ${BOTS} bots came up within ${secs(READY_TIMEOUT_MS)}:\n${h.tail(h.gatewayLog(setup), 30)}`);
		await pause(1000);
	}
}

async function live(setup, stallLog, gwOptions) {
	const state = { nextRoundAt: view.t0, draining: false, held: false, restartError: null };
	const end = view.t0 + SECONDS * 1000;
	const tag = crypto.randomBytes(3).toString('hex');
	if (!TTY) say(`(not a terminal: printing events as they happen and a status every ${secs(PLAIN_STATUS_EVERY_MS)})`);
	for (;;) {
		if (stopping) return 'stopped by Ctrl-C';
		if (state.restartError) throw state.restartError;
		const now = Date.now();
		const r = view.restart;
		const gwAway = r?.phase === 'stopping' || r?.phase === 'down';
		if (procs.gw.exited && !gwAway) throw new Error(`the gateway exited unexpectedly (${JSON.stringify(procs.gw.exited)}):\n${h.tail(h.gatewayLog(setup), 30)}`);
		const restartDue = RESTART_AT_MS !== null && now >= view.t0 + RESTART_AT_MS;
		// From when the restart is due until the bots are back, the DMs
		// sent while the gateway is down are the only ones.
		const hold = restartDue && !state.draining && (!r || restarting());
		state.hold = hold;
		if (!state.draining && state.nextRoundAt !== null && now >= state.nextRoundAt && hold) state.held = true;
		else if (!state.draining && state.nextRoundAt !== null && now >= state.nextRoundAt) {
			const round = view.rounds++;
			for (let b = 0; b < BOTS; b++) {
				const q = { bot: b, round, tag: `demo-${tag}-q${round + 1}-bot${b}`, sentAt: Date.now() };
				await fakeDm(b, `hello bot${b}, this is question ${round + 1} (${q.tag})`);
				view.questions.push(q);
			}
			event(`a human sent question ${round + 1} to each of the ${BOTS} bots`);
			// A round held back by the restart starts the rhythm anew.
			const next = (state.held ? now : state.nextRoundAt) + DM_PERIOD_MS;
			state.held = false;
			state.nextRoundAt = next + LAST_ROUND_MARGIN_MS <= end ? next : null;
		}
		if (restartDue && !r && !state.draining && restartClear(now)) {
			restartTask = restartGateway(gwOptions, tag);
			restartTask.catch((err) => (state.restartError = err));
		}
		if (r?.phase === 'starting' && view.engineStarted && !r.engineSaid) {
			r.engineSaid = true;
			event(`heartline's engine is running again inside the new gateway (${secs(view.engineStarted - r.startAt)} after its start)`);
		}
		if (r?.phase === 'starting' && now > r.startAt + READY_TIMEOUT_MS) {
			r.phase = 'incomplete';
			event(red(`only ${r.back.size} of ${BOTS} bots came back within ${secs(READY_TIMEOUT_MS)} of the restart`));
		}
		if ((r?.phase === 'back' || r?.phase === 'incomplete') && !r.rearmedAt) {
			r.rearmedAt = now;
			fs.writeFileSync(gwOptions.env.STALL_ARM_FILE, `${now}\n`);
			event(`the freezes go on: the next in ${secs(STALL_FIRST_MS)}, then every ${secs(STALL_PERIOD_MS)}, as after the first start`);
		}
		if (BLIP_AT_MS !== null && !view.blip && now >= view.t0 + BLIP_AT_MS) {
			const at = Date.now();
			const dropped = await fakeBlip();
			view.blip = { at, dropped, back: new Map() };
			event(yellow(bold(`network blip: the fake Discord cut all ${dropped} bot connections at once`)));
		}
		await poll(setup, stallLog);
		const after = Date.now();
		if (!state.draining && after >= end) {
			const open = view.questions.filter((q) => !repliesTo(q).length).length;
			if (!open) return 'live part over';
			state.draining = true;
			state.drainEnd = after + DRAIN_MS;
			event(`time is up; waiting for ${open} answer${open === 1 ? '' : 's'} still in flight`);
		}
		if (state.draining) {
			const open = view.questions.filter((q) => !repliesTo(q).length).length;
			if (!open) return 'live part over, all answers in';
			if (after >= state.drainEnd) return `live part over; gave up waiting for ${open} answers`;
		}
		if (TTY) render(after, state);
		else if (after - view.lastPlain >= PLAIN_STATUS_EVERY_MS) {
			view.lastPlain = after;
			plainStatus(after, state);
		}
		await pause(TICK_MS - (Date.now() % TICK_MS));
	}
}

let code = 1;
try {
	code = await main();
} catch (err) {
	if (err instanceof Interrupted) {
		say('\nstopped by Ctrl-C before the live part');
	} else {
		say('');
		say(red(`demo failed: ${err.message}`));
		if (runDir) {
			// Keep the evidence when something broke.
			say(`run directory kept for inspection: ${runDir}`);
			runDir = null;
		}
	}
	const left = await cleanup();
	say(dim(left ? `had to force-kill ${left} process group(s)` : 'all stopped, nothing left running'));
	code = err instanceof Interrupted ? 130 : 1;
}
if (stopping && code !== 130) code = 130;
process.exit(code);
