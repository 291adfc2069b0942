// The end-to-end scenario on the stock transport, without heartline: the
// real OpenClaw gateway talks straight to the fake Discord
// (DISCORD_API_URL), its event loop is blocked 15 s of every 60 s, the
// model takes 20 s per answer, and each bot gets a DM every 45 s. The fake
// heartbeats every 10 s with 1 s of grace, so every stall makes every bot
// miss a heartbeat: the fake must record drops. That is what lets the same
// scenario tell heartline (no drops) from the stock client.
//
//   $NODE24 --test tests/e2e/stock-baseline.test.mjs     (~4.5 minutes)
//
// Knobs (environment): E2E_BOTS (3), E2E_ROUNDS (4), E2E_KEEP=1 keeps the
// run directory for inspection.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
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
// Time allowed after the last DM for its answer: model time, one stall,
// a reconnect and a resume replay.
const DRAIN_MS = MODEL_DELAY_MS + STALL_MS + 35000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function readJsonl(file) {
	if (!fs.existsSync(file)) return [];
	return fs
		.readFileSync(file, 'utf8')
		.split('\n')
		.filter(Boolean)
		.map((l) => JSON.parse(l));
}

const skip = h.toolchainMissing() || (!fs.existsSync(h.paths.fakeDiscord) && 'fake Discord missing');

test('stock OpenClaw Discord transport drops connections during event-loop stalls', { skip, timeout: 420000 }, async (t) => {
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

	const fake = await startFake({
		bots: BOTS,
		heartbeatInterval: HEARTBEAT_INTERVAL_MS,
		heartbeatGrace: HEARTBEAT_GRACE_MS,
		// Attachment URLs on the fake's own origin: with DISCORD_API_URL set
		// the stock channel fetches media only from the REST origin.
		attachmentOrigin: 'self',
	});
	cleanup.push(() => fake.stop());

	const setupDir = fs.mkdtempSync(path.join(process.env.TMPDIR || '/tmp', 'heartline-e2e-'));
	const modelLog = path.join(setupDir, 'model.jsonl');
	const stallLog = path.join(setupDir, 'stall.jsonl');
	const armFile = path.join(setupDir, 'stall.arm');
	const model = await h.startJsonProcess(h.paths.slowModel, ['--delay-ms', String(MODEL_DELAY_MS), '--log', modelLog]);
	cleanup.push(() => model.stop());

	const setup = await h.createGatewayDir({
		dir: setupDir,
		bots: fake.info.bots,
		discordApiUrl: `${fake.info.http_origin}/api/v10`,
		modelBaseUrl: `http://127.0.0.1:${model.info.port}/v1`,
	});
	if (!process.env.E2E_KEEP) cleanup.push(() => h.removeGatewayDir(setup));
	else t.diagnostic(`run directory: ${setup.dir}`);

	const gw = h.startGateway(setup, {
		preload: h.paths.stallPreload,
		env: {
			STALL_MS: String(STALL_MS),
			STALL_PERIOD_MS: String(STALL_PERIOD_MS),
			STALL_FIRST_MS: String(STALL_FIRST_MS),
			STALL_ARM_FILE: armFile,
			STALL_LOG: stallLog,
			// The gateway only; its helper processes get the same NODE_OPTIONS.
			STALL_ONLY_ARGV: 'gateway',
		},
	});
	cleanup.push(() => h.stopGateway(gw));

	const ready = await h.waitForBots(gw, { fakeOrigin: fake.info.http_origin, timeoutMs: 180000 });
	t.diagnostic(`${BOTS} bots ready ${ready.ms} ms after gateway start`);
	await fake.resetRecord();
	const t0 = Date.now();
	fs.writeFileSync(armFile, `${t0}\n`);

	// Questions: every bot, every DM_PERIOD_MS, each with a unique tag.
	const runTag = Math.random().toString(36).slice(2, 8);
	const questions = [];
	for (let round = 0; round < ROUNDS; round++) {
		const due = t0 + round * DM_PERIOD_MS;
		if (Date.now() < due) await sleep(due - Date.now());
		for (let bot = 0; bot < BOTS; bot++) {
			const tag = `q${runTag}-r${round}-b${bot}`;
			await fake.dm(bot, `please answer question ${tag}`);
			questions.push({ bot, tag, sentAt: Date.now() });
		}
	}

	// Wait for every answer or the drain deadline.
	const deadline = Date.now() + DRAIN_MS;
	let record;
	const answered = () =>
		questions.filter((q) => record.messages.some((m) => m.bot === q.bot && String(m.content ?? '').includes(q.tag)));
	for (;;) {
		record = await fake.record();
		if (answered().length === questions.length || Date.now() > deadline) break;
		await sleep(1000);
	}
	const runMs = Date.now() - t0;

	const replies = record.messages.filter((m) => questions.some((q) => String(m.content ?? '').includes(q.tag)));
	const latencies = questions
		.map((q) => {
			const m = record.messages.find((x) => x.bot === q.bot && String(x.content ?? '').includes(q.tag));
			return m ? m.t - q.sentAt : null;
		})
		.filter((x) => x !== null);
	const lateness = record.heartbeats.map((b) => b.late_ms ?? 0);
	const stalls = readJsonl(stallLog).filter((e) => e.event === 'stall_end');
	const modelRequests = readJsonl(modelLog).filter((e) => e.event === 'request');
	const figures = {
		bots: BOTS,
		questions: questions.length,
		answered: answered().length,
		reply_messages: replies.length,
		all_bot_messages: record.messages.length,
		drops: record.drops.length,
		drop_reasons: [...new Set(record.drops.map((d) => d.reason))],
		identifies: record.identifies.length,
		resumes: record.resumes.length,
		connects: record.connects.length,
		typing_calls: record.typing.length,
		stalls: stalls.length,
		max_heartbeat_late_ms: lateness.length ? Math.max(...lateness) : null,
		max_reply_latency_ms: latencies.length ? Math.max(...latencies) : null,
		model_requests: modelRequests.length,
		scenario_ms: runMs,
		total_ms: Date.now() - started,
	};
	console.log(`stock-baseline figures: ${JSON.stringify(figures)}`);
	t.diagnostic(JSON.stringify(figures));

	assert.ok(stalls.length >= 2, `the stall preload ran (${stalls.length} stalls)`);
	assert.ok(record.drops.length > 0, 'the fake saw dropped connections on the stock transport');
	const missing = questions.filter((q) => !answered().includes(q)).map((q) => q.tag);
	assert.deepEqual(missing, [], 'every question got an answer');
});
