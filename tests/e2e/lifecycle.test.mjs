// The life of a gateway with heartline installed, end to end with the real
// OpenClaw: a change of heartline's configuration, `openclaw plugins
// reload heartline`, a change to one Discord account (OpenClaw restarts
// the channel), a newer build of libheartline.so (from another path, then
// replaced where it is), and a restart of the gateway process. Through
// all but the restart no bot reconnects upstream (a new build takes the
// running engine's connections over, and the channel RESUMEs into it);
// a restart costs each bot one RESUME, never an IDENTIFY; every question,
// including those sent while the gateway was down, gets exactly one
// answer.
//
//   make all package && $NODE24 --test tests/e2e/lifecycle.test.mjs
//   (~4 minutes)
//
// Knobs (environment): E2E_BOTS (3), E2E_KEEP=1 keeps the run directory.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { startFake } from '../fake-discord/client.mjs';
import * as h from './harness.mjs';

const BOTS = Number(process.env.E2E_BOTS || 3);
const MODEL_DELAY_MS = 2000;
const ANSWER_MS = 120000;
const LOG_WAIT_MS = 90000;

const version = JSON.parse(fs.readFileSync(path.join(h.REPO_ROOT, 'manifest.json'), 'utf8')).version;
const TGZ = process.env.HEARTLINE_TGZ || path.join(h.REPO_ROOT, 'build', `heartline-openclaw-${version}.tgz`);
const LIBRARY = path.join(h.REPO_ROOT, 'build', 'libheartline.so');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const skip =
	h.toolchainMissing() ||
	(!fs.existsSync(TGZ) && `${TGZ} missing (make all package)`) ||
	(!fs.existsSync(LIBRARY) && `${LIBRARY} missing (make all)`);

const repliesTo = (record, q) =>
	record.messages.filter((m) => m.method === 'POST' && m.bot === q.bot && String(m.content ?? '').includes(q.tag));

// Polls the fake until every question has a reply; returns the record.
async function answered(fake, questions) {
	const deadline = Date.now() + ANSWER_MS;
	for (;;) {
		const record = await fake.record();
		const open = questions.filter((q) => !repliesTo(record, q).length);
		if (!open.length) return record;
		if (Date.now() > deadline) throw new Error(`unanswered: ${open.map((q) => q.tag).join(', ')}`);
		await sleep(1000);
	}
}

async function ask(fake, label) {
	const questions = [];
	for (let bot = 0; bot < BOTS; bot++) {
		const tag = `${label}-${Math.random().toString(36).slice(2, 8)}-b${bot}`;
		await fake.dm(bot, `please answer question ${tag}`);
		questions.push({ bot, tag });
	}
	return questions;
}

// Waits until the gateway's console has `count` lines matching re.
async function consoleLines(setup, re, count = 1) {
	const deadline = Date.now() + LOG_WAIT_MS;
	for (;;) {
		const lines = h.gatewayLog(setup).split('\n').filter((l) => re.test(l));
		if (lines.length >= count) return lines;
		if (Date.now() > deadline) throw new Error(`no ${re} in the gateway console:\n${h.tail(h.gatewayLog(setup), 30)}`);
		await sleep(500);
	}
}

// `openclaw plugins reload heartline`. Not spawnSync: a loop blocked for
// the ~10 s it takes would leave this process's kept-alive connections to
// the fake closed under it.
function reloadPlugin(setup) {
	return new Promise((resolve) => {
		const child = spawn(h.NODE24, [h.OPENCLAW_BIN, 'plugins', 'reload', 'heartline'], {
			cwd: setup.dir,
			env: h.baseEnv(setup),
			stdio: ['ignore', 'pipe', 'pipe'],
		});
		let stdout = '';
		child.stdout.on('data', (chunk) => (stdout += chunk));
		child.stderr.resume();
		child.on('exit', (status) => resolve({ status, stdout }));
	});
}

// What the fake saw since `since`.
function since(record, t) {
	const after = (list) => list.filter((e) => e.t > t);
	return {
		drops: after(record.drops).length,
		identifies: after(record.identifies).length + after(record.identify_rate_limited).length,
		resumes: after(record.resumes).filter((r) => r.ok).length,
		resumes_refused: after(record.resumes).filter((r) => !r.ok).length,
	};
}

test('config change, plugin reload, new build and restart: no IDENTIFY, every question answered once', { skip, timeout: 600000 }, async (t) => {
	const cleanup = [];
	t.after(async () => {
		for (const fn of cleanup.reverse()) await fn().catch((err) => console.error('cleanup:', err));
	});
	await h.ensureTemplate({ log: (m) => t.diagnostic(m) });

	const fake = await startFake({ bots: BOTS, heartbeatInterval: 10000, heartbeatGrace: 1000 });
	cleanup.push(() => fake.stop());
	const dir = fs.mkdtempSync(path.join(process.env.TMPDIR || '/tmp', 'heartline-e2e-life-'));
	const model = await h.startJsonProcess(h.paths.slowModel, ['--delay-ms', String(MODEL_DELAY_MS)]);
	cleanup.push(() => model.stop());
	const setup = await h.createGatewayDir({ dir, bots: fake.info.bots, modelBaseUrl: `http://127.0.0.1:${model.info.port}/v1` });
	if (!process.env.E2E_KEEP) cleanup.push(() => h.removeGatewayDir(setup));
	else t.diagnostic(`run directory: ${setup.dir}`);

	h.installPlugin(setup, TGZ);
	const engineConfig = {
		api_base: `${fake.info.https_origin}/api/v10`,
		cdn_base: fake.info.https_origin,
		media_base: fake.info.https_origin,
		ca_file: fake.info.ca_file,
	};
	const configure = (extra) => {
		const config = h.readConfig(setup);
		config.plugins.entries.heartline.config = { ...engineConfig, ...extra };
		h.writeConfig(setup, config);
	};
	configure({});

	const questions = [];
	const figures = { bots: BOTS };

	// First run: every bot IDENTIFYs once and answers.
	let gw = h.startGateway(setup);
	cleanup.push(() => h.stopGateway(gw));
	await h.waitForBots(gw, { fakeOrigin: fake.info.http_origin, timeoutMs: 180000 });
	const [listening] = await consoleLines(setup, /\[heartline\] engine \S+ listening at/);
	const origin = listening.match(/listening at (\S+)/)[1];
	questions.push(...(await ask(fake, 'first')));
	await answered(fake, questions);
	figures.identifies_first_run = (await fake.record()).identifies.length;

	// A new typing period: the running engine takes it.
	let mark = Date.now();
	configure({ typing_interval_ms: 8000 });
	await consoleLines(setup, /\[heartline\] configuration applied to the running engine/);
	questions.push(...(await ask(fake, 'config')));
	await answered(fake, questions);
	figures.config_change = since(await fake.record(), mark);

	// The plugin reloaded: the engine is kept.
	mark = Date.now();
	const reload = await reloadPlugin(setup);
	t.diagnostic(`plugins reload: exit ${reload.status}: ${h.tail(reload.stdout.trim(), 3)}`);
	await consoleLines(setup, /\[heartline\] keeping the running engine/);
	questions.push(...(await ask(fake, 'reload')));
	await answered(fake, questions);
	figures.plugin_reload = since(await fake.record(), mark);

	// A change to one Discord account: OpenClaw restarts its channel, and
	// the accounts IDENTIFY again, locally; upstream nothing happens.
	mark = Date.now();
	const joinedBefore = h.gatewayLog(setup).split('\n').filter((l) => /downstream identify .*joined=1/.test(l)).length;
	const accountConfig = h.readConfig(setup);
	accountConfig.channels.discord.accounts.bot1.name = 'renamed bot';
	h.writeConfig(setup, accountConfig);
	await consoleLines(setup, /\[heartline\] downstream identify .*joined=1/, joinedBefore + 1);
	questions.push(...(await ask(fake, 'account')));
	await answered(fake, questions);
	figures.account_restart = since(await fake.record(), mark);
	// OpenClaw starts the accounts 10 s apart: let them all come back.
	const joined = () => h.gatewayLog(setup).split('\n').filter((l) => /downstream identify .*joined=1/.test(l)).length;
	for (let n = joined(), still = 0; still < 15 && Date.now() - mark < 90000; still++) {
		await sleep(1000);
		if (joined() !== n) [n, still] = [joined(), 0];
	}
	figures.account_restart.channel_identifies = joined() - joinedBefore;

	// A newer build of the library, from another path: a new engine on the
	// same port, on the same upstream connections.
	mark = Date.now();
	const next = path.join(dir, 'next', 'libheartline.so');
	fs.mkdirSync(path.dirname(next));
	fs.copyFileSync(LIBRARY, next);
	configure({ typing_interval_ms: 8000, library: next });
	const relistened = await consoleLines(setup, /\[heartline\] engine \S+ listening at/, 2);
	questions.push(...(await ask(fake, 'upgrade')));
	await answered(fake, questions);
	figures.new_build = since(await fake.record(), mark);
	figures.new_build.same_origin = relistened[1].includes(origin);
	assert.match(relistened[1], /sessions taken over from the running engine/);
	const upgradeLog = h.gatewayLog(setup).split('\n').slice(h.gatewayLog(setup).split('\n').indexOf(relistened[1]));
	figures.new_build.channel_resumed = upgradeLog.filter((l) => /\[heartline\] downstream resumed/.test(l)).length;
	figures.new_build.channel_refused = upgradeLog.filter((l) => /\[heartline\] downstream resume refused/.test(l)).length;

	// The build replaced where it is installed (as an upgrade of the
	// plugin in place would), then the plugin reloaded: the file at that
	// path is a new build, loaded beside the running one.
	mark = Date.now();
	fs.copyFileSync(LIBRARY, `${next}.new`);
	fs.renameSync(`${next}.new`, next);
	const upgrade = await reloadPlugin(setup);
	t.diagnostic(`plugins reload after the upgrade in place: exit ${upgrade.status}`);
	const inPlace = await consoleLines(setup, /\[heartline\] engine \S+ listening at/, 3);
	questions.push(...(await ask(fake, 'inplace')));
	await answered(fake, questions);
	figures.in_place = since(await fake.record(), mark);
	assert.match(inPlace[2], /sessions taken over from the running engine/);

	// The gateway goes down the usual way (SIGTERM); people keep writing.
	mark = Date.now();
	await h.stopGateway(gw, { timeoutMs: 60000 });
	questions.push(...(await ask(fake, 'down')));
	gw = h.startGateway(setup);
	await answered(fake, questions);
	figures.restart = since(await fake.record(), mark);
	figures.restart.back_and_answered_ms = Date.now() - mark;

	await sleep(3000); // a duplicate answer would show up now
	const last = await fake.record();
	figures.questions = questions.length;
	figures.duplicates = questions.filter((q) => repliesTo(last, q).length > 1).map((q) => q.tag);
	console.log(`lifecycle figures: ${JSON.stringify(figures)}`);

	assert.equal(figures.identifies_first_run, BOTS, 'one IDENTIFY per bot in the first run');
	assert.deepEqual(figures.config_change, { drops: 0, identifies: 0, resumes: 0, resumes_refused: 0 }, 'a config change reconnects nothing');
	assert.deepEqual(figures.plugin_reload, { drops: 0, identifies: 0, resumes: 0, resumes_refused: 0 }, 'a plugin reload reconnects nothing');
	assert.deepEqual(
		{ ...figures.account_restart, channel_identifies: undefined },
		{ drops: 0, identifies: 0, resumes: 0, resumes_refused: 0, channel_identifies: undefined },
		'an account restarted by OpenClaw costs nothing upstream'
	);
	assert.ok(figures.new_build.same_origin, 'the new build listens where the old one did');
	assert.deepEqual(
		{ ...figures.new_build, same_origin: undefined, channel_resumed: undefined, channel_refused: undefined },
		{ drops: 0, identifies: 0, resumes: 0, resumes_refused: 0, same_origin: undefined, channel_resumed: undefined, channel_refused: undefined },
		'a new build reconnects nothing upstream'
	);
	assert.equal(figures.new_build.channel_resumed, BOTS, 'the channel RESUMEd into the new build');
	assert.deepEqual(figures.in_place, { drops: 0, identifies: 0, resumes: 0, resumes_refused: 0 },
		'a build replaced in place reconnects nothing upstream');
	assert.equal(figures.new_build.channel_refused, 0, 'no RESUME of the channel refused');
	assert.equal(figures.restart.identifies, 0, 'no IDENTIFY after the restart');
	assert.equal(figures.restart.resumes, BOTS, 'every bot RESUMEd after the restart');
	assert.deepEqual(figures.duplicates, [], 'no question answered twice');
	assert.match(h.gatewayLog(setup), /\[heartline\] session restored from checkpoint/);

	const stateDir = path.join(setup.stateDir, 'heartline');
	const files = fs.readdirSync(stateDir);
	assert.ok(files.some((f) => f.startsWith('session-')), `checkpoints in ${stateDir}: ${files}`);
	for (const f of files) {
		const bytes = fs.readFileSync(path.join(stateDir, f));
		for (const bot of fake.info.bots) assert.ok(!bytes.includes(bot.token), `a bot token in ${f}`);
	}
	for (const line of h.gatewayLog(setup).split('\n'))
		for (const bot of fake.info.bots) assert.ok(!line.includes(bot.token), 'a bot token in the gateway log');
});
