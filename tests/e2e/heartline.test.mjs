// The end-to-end proof: the stall scenario of stock-baseline.test.mjs, but
// with heartline installed into the real OpenClaw gateway from its npm
// tarball, the way the README tells users to. The gateway gets no
// DISCORD_API_URL from this test; the plugin points the Discord channel at
// heartline's local endpoint, and heartline talks to the fake Discord over
// TLS. The event loop is blocked 15 s of every 60 s while the fake expects
// a heartbeat every 10 s (1 s grace): the stock client loses every bot at
// every stall, heartline must lose none.
//
//   make all package && $NODE24 --test tests/e2e/heartline.test.mjs
//   (~4.5 minutes)
//
// Knobs (environment): E2E_BOTS (3), E2E_ROUNDS (4), E2E_KEEP=1 keeps the
// run directory, HEARTLINE_TGZ (build/heartline-openclaw-<version>.tgz).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import zlib from 'node:zlib';
import { startFake } from '../fake-discord/client.mjs';
import * as h from './harness.mjs';

const BOTS = Number(process.env.E2E_BOTS || 3);
const ROUNDS = Number(process.env.E2E_ROUNDS || 4);
const HEARTBEAT_INTERVAL_MS = 10000;
const HEARTBEAT_GRACE_MS = 1000;
const MODEL_DELAY_MS = 20000;
const STALL_MS = 15000;
const STALL_PERIOD_MS = 60000;
const STALL_FIRST_MS = 10000; // after the bots are ready
const DM_PERIOD_MS = 45000;
// Time allowed after the last DM for its answer: model time, one stall and
// some slack. Nothing should need a reconnect here.
const DRAIN_MS = MODEL_DELAY_MS + STALL_MS + 35000;

function shimVersion() {
	const manifest = JSON.parse(fs.readFileSync(path.join(h.REPO_ROOT, 'manifest.json'), 'utf8'));
	return manifest.version;
}
const TGZ = process.env.HEARTLINE_TGZ || path.join(h.REPO_ROOT, 'build', `heartline-openclaw-${shimVersion()}.tgz`);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function readJsonl(file) {
	if (!fs.existsSync(file)) return [];
	return fs
		.readFileSync(file, 'utf8')
		.split('\n')
		.filter(Boolean)
		.map((l) => JSON.parse(l));
}

// A small valid PNG (a 16x16 gradient), so that whatever OpenClaw does to
// images on the way to the model has a real one to work with.
function testPng() {
	const w = 16;
	const rows = [];
	for (let y = 0; y < w; y++) {
		const row = [0]; // filter: none
		for (let x = 0; x < w; x++) row.push(x * 16, y * 16, 128);
		rows.push(Buffer.from(row));
	}
	const chunk = (type, data) => {
		const len = Buffer.alloc(4);
		len.writeUInt32BE(data.length);
		const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
		const crc = Buffer.alloc(4);
		crc.writeUInt32BE(zlib.crc32(body));
		return Buffer.concat([len, body, crc]);
	};
	const ihdr = Buffer.alloc(13);
	ihdr.writeUInt32BE(w, 0);
	ihdr.writeUInt32BE(w, 4);
	ihdr[8] = 8; // bit depth
	ihdr[9] = 2; // RGB
	return Buffer.concat([
		Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
		chunk('IHDR', ihdr),
		chunk('IDAT', zlib.deflateSync(Buffer.concat(rows))),
		chunk('IEND', Buffer.alloc(0)),
	]);
}

// Waits for the shim's verdict in the gateway's console output: the engine
// is listening, or the shim fell back to the stock transport. Discord
// accounts start well after plugin registration, so a failed shim is seen
// before any bot could reach for the real Discord.
async function waitForShim(gw, timeoutMs) {
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		const out = h.gatewayLog(gw.setup);
		const ok = out.match(/\[heartline\] engine \S+ listening at (http:\/\/127\.0\.0\.1:\d+)/);
		if (ok) return ok[1];
		const bad = out.match(/\[heartline\] .*stays on the built-in transport/);
		if (bad) throw new Error(`the heartline plugin did not take over: ${bad[0]}`);
		if (gw.exited) throw new Error(`gateway exited (${JSON.stringify(gw.exited)}):\n${h.tail(out, 40)}`);
		if (Date.now() > deadline) throw new Error(`no word from the heartline plugin within ${timeoutMs} ms:\n${h.tail(out, 40)}`);
		await sleep(250);
	}
}

const skip =
	h.toolchainMissing() ||
	(!fs.existsSync(h.paths.fakeDiscord) && 'fake Discord missing') ||
	(!fs.existsSync(TGZ) && `${TGZ} missing (make all package)`);

test('heartline keeps every bot connected and answers every DM through event-loop stalls', { skip, timeout: 480000 }, async (t) => {
	const started = Date.now();
	const cleanup = [];
	t.after(async () => {
		for (const fn of cleanup.reverse()) {
			try {
				await fn();
			} catch (err) {
				console.error('cleanup:', err);
			}
		}
	});

	await h.ensureTemplate({ log: (m) => t.diagnostic(m) });

	// Attachment URLs keep the fake's default, Discord's real CDN hosts:
	// heartline rewrites them to its local origin and proxies them to
	// cdn_base / media_base.
	const fake = await startFake({
		bots: BOTS,
		heartbeatInterval: HEARTBEAT_INTERVAL_MS,
		heartbeatGrace: HEARTBEAT_GRACE_MS,
	});
	cleanup.push(() => fake.stop());

	const setupDir = fs.mkdtempSync(path.join(process.env.TMPDIR || '/tmp', 'heartline-e2e-hl-'));
	const modelLog = path.join(setupDir, 'model.jsonl');
	const stallLog = path.join(setupDir, 'stall.jsonl');
	const armFile = path.join(setupDir, 'stall.arm');
	const model = await h.startJsonProcess(h.paths.slowModel, ['--delay-ms', String(MODEL_DELAY_MS), '--log', modelLog]);
	cleanup.push(() => model.stop());

	// No discordApiUrl: the gateway process must get DISCORD_API_URL from
	// the plugin, not from us.
	const setup = await h.createGatewayDir({
		dir: setupDir,
		bots: fake.info.bots,
		modelBaseUrl: `http://127.0.0.1:${model.info.port}/v1`,
	});
	if (!process.env.E2E_KEEP) cleanup.push(() => h.removeGatewayDir(setup));
	else t.diagnostic(`run directory: ${setup.dir}`);

	// The README way: install the tarball, then configure the plugin.
	const installStarted = Date.now();
	const install = h.installPlugin(setup, TGZ);
	const installMs = Date.now() - installStarted;
	t.diagnostic(`plugin installed in ${installMs} ms: ${h.tail(install.stdout.trim(), 3)}`);
	const config = h.readConfig(setup);
	assert.equal(config.plugins?.entries?.heartline?.enabled, true, 'the install enabled the heartline plugin');
	config.plugins.entries.heartline.config = {
		api_base: `${fake.info.https_origin}/api/v10`,
		cdn_base: fake.info.https_origin,
		media_base: fake.info.https_origin,
		ca_file: fake.info.ca_file,
	};
	h.writeConfig(setup, config);

	const gw = h.startGateway(setup, {
		preload: h.paths.stallPreload,
		env: {
			STALL_MS: String(STALL_MS),
			STALL_PERIOD_MS: String(STALL_PERIOD_MS),
			STALL_FIRST_MS: String(STALL_FIRST_MS),
			STALL_ARM_FILE: armFile,
			STALL_LOG: stallLog,
			STALL_ONLY_ARGV: 'gateway',
		},
	});
	// A gateway with runs in flight can take long to stop; 20 s, then KILL.
	cleanup.push(() => h.stopGateway(gw));
	// The environment the gateway process started with.
	let gatewayEnvHadApiUrl = null;
	try {
		gatewayEnvHadApiUrl = fs.readFileSync(`/proc/${gw.pid}/environ`, 'latin1').split('\0').some((v) => v.startsWith('DISCORD_API_URL='));
	} catch {}

	const localOrigin = await waitForShim(gw, 120000);
	t.diagnostic(`heartline listening at ${localOrigin}`);
	const ready = await h.waitForBots(gw, { fakeOrigin: fake.info.http_origin, timeoutMs: 180000 });
	t.diagnostic(`${BOTS} bots ready ${ready.ms} ms after gateway start`);
	// The record is kept from the start: IDENTIFYs and drops count over the
	// whole run, startup included.
	const t0 = Date.now();
	fs.writeFileSync(armFile, `${t0}\n`);

	const runTag = Math.random().toString(36).slice(2, 8);
	const questions = [];
	const png = testPng();
	let imageTag = null;
	for (let round = 0; round < ROUNDS; round++) {
		const due = t0 + round * DM_PERIOD_MS;
		if (Date.now() < due) await sleep(due - Date.now());
		for (let bot = 0; bot < BOTS; bot++) {
			const tag = `q${runTag}-r${round}-b${bot}`;
			let attachments;
			if (round === 0 && bot === 0) {
				imageTag = tag;
				attachments = [{ filename: 'gradient.png', content_type: 'image/png', data_base64: png.toString('base64') }];
			}
			await fake.dm(bot, `please answer question ${tag}`, attachments);
			questions.push({ bot, tag, sentAt: Date.now() });
		}
	}

	const deadline = Date.now() + DRAIN_MS;
	let record;
	// Replies are message creates (an edit of one would carry its tag too).
	const replyOf = (q) =>
		record.messages.filter((m) => m.method === 'POST' && String(m.content ?? '').includes(q.tag));
	for (;;) {
		record = await fake.record();
		if (questions.every((q) => replyOf(q).length > 0) || Date.now() > deadline) break;
		await sleep(1000);
	}
	// A duplicate would come a little after the first copy (a retried POST):
	// give it a moment, then take the final record.
	await sleep(3000);
	record = await fake.record();
	const scenarioMs = Date.now() - t0;

	const modelRequests = readJsonl(modelLog).filter((e) => e.event === 'request');
	const stalls = readJsonl(stallLog).filter((e) => e.event === 'stall_end');
	const lateness = record.heartbeats.map((b) => b.late_ms ?? 0);
	const identifiesPerBot = {};
	for (const e of [...record.identifies, ...record.identify_rate_limited]) identifiesPerBot[e.bot] = (identifiesPerBot[e.bot] ?? 0) + 1;
	const latencies = questions
		.map((q) => {
			const m = replyOf(q).find((x) => x.bot === q.bot);
			return m ? m.t - q.sentAt : null;
		})
		.filter((x) => x !== null);
	const imageRequests = modelRequests.filter((r) => JSON.stringify(r.body).includes(imageTag));
	const imageDataUrl = imageRequests.some((r) =>
		(r.body.messages ?? []).some(
			(m) =>
				Array.isArray(m.content) &&
				m.content.some((p) => p?.type === 'image_url' && String(p.image_url?.url ?? '').startsWith('data:image/'))
		)
	);
	const logText = (() => {
		try {
			return fs.readFileSync(setup.logFile, 'utf8');
		} catch {
			return '';
		}
	})();
	const consoleText = h.gatewayLog(setup);
	const heartlineLines = consoleText.split('\n').filter((l) => l.includes('[heartline]'));

	const figures = {
		bots: BOTS,
		questions: questions.length,
		answered: questions.filter((q) => replyOf(q).length > 0).length,
		reply_messages: questions.reduce((n, q) => n + replyOf(q).length, 0),
		all_bot_messages: record.messages.length,
		drops: record.drops.length,
		drop_reasons: [...new Set(record.drops.map((d) => d.reason))],
		identifies: record.identifies.length,
		identifies_refused: record.identify_rate_limited.length,
		resumes: record.resumes.length,
		connects: record.connects.length,
		typing_calls: record.typing.length,
		cdn_fetches: record.cdn.length,
		stalls: stalls.length,
		heartbeats: record.heartbeats.length,
		max_heartbeat_late_ms: lateness.length ? Math.max(...lateness) : null,
		max_reply_latency_ms: latencies.length ? Math.max(...latencies) : null,
		model_requests: modelRequests.length,
		image_to_model: imageDataUrl,
		heartline_log_lines: heartlineLines.length,
		install_ms: installMs,
		ready_ms: ready.ms,
		scenario_ms: scenarioMs,
		total_ms: Date.now() - started,
	};
	console.log(`heartline figures: ${JSON.stringify(figures)}`);
	t.diagnostic(JSON.stringify(figures));
	if (record.drops.length) t.diagnostic(`drops: ${JSON.stringify(record.drops.slice(0, 10))}`);

	// Every check is evaluated, so one run shows everything that is wrong.
	const failed = [];
	const check = (ok, what, detail) => {
		if (!ok) failed.push(detail === undefined ? what : `${what}: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`);
	};
	check(stalls.length >= 2, 'the stall preload ran at least twice', `${stalls.length} stalls`);
	check(!gatewayEnvHadApiUrl, 'the gateway process started without DISCORD_API_URL');

	// Every question exactly one reply, from the bot that was asked.
	const missing = questions.filter((q) => replyOf(q).length === 0).map((q) => q.tag);
	check(missing.length === 0, 'every question got an answer', missing);
	const duplicated = questions.filter((q) => replyOf(q).length > 1).map((q) => `${q.tag} x${replyOf(q).length}`);
	check(duplicated.length === 0, 'no question got more than one answer', duplicated);
	const wrongBot = questions.filter((q) => replyOf(q).some((m) => m.bot !== q.bot)).map((q) => q.tag);
	check(wrongBot.length === 0, 'every answer came from the bot that was asked', wrongBot);

	// The upstream never noticed the stalls.
	check(record.drops.length === 0, 'the fake saw no dropped connections', record.drops.slice(0, 5));
	const expectedIdentifies = Object.fromEntries(fake.info.bots.map((_, i) => [i, 1]));
	check(
		JSON.stringify(identifiesPerBot) === JSON.stringify(expectedIdentifies),
		'exactly one IDENTIFY per bot over the whole run',
		identifiesPerBot
	);

	// The image the human sent, with a real CDN URL, reached the model.
	check(imageRequests.length > 0, 'the model was asked about the image DM', imageTag);
	check(imageDataUrl, 'the image reached the model as an image_url data: URL');

	// heartline's own records reach the gateway's logs.
	check(/\[heartline\] engine started/.test(consoleText), 'engine records in the gateway console');
	check(/\[heartline\] engine started/.test(logText), 'engine records in the gateway log file');

	if (failed.length) {
		// Evidence for whoever reads the failure: failed REST calls as the
		// fake saw them, and the gateway's complaints.
		const restErrors = record.requests.filter((r) => r.status >= 400).map((r) => `${r.method} ${r.path} -> ${r.status}`);
		t.diagnostic(`REST errors at the fake (${restErrors.length}): ${JSON.stringify([...new Set(restErrors)].slice(0, 10))}`);
		const complaints = consoleText.split('\n').filter((l) => /failed|error|\[heartline\] .*(warn|error|lost|drop)/i.test(l));
		t.diagnostic(`gateway complaints (${complaints.length}):\n${complaints.slice(0, 15).join('\n')}`);
	}
	assert.deepEqual(failed, [], 'heartline end-to-end checks');
});
