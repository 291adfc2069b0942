// Blocks the main Node event loop on purpose, to reproduce a gateway that
// is busy (a large synchronous parse, a slow plugin, GC pressure) while
// its Discord connections wait for heartbeats.
//
// Load it into a process with NODE_OPTIONS="--require /abs/stall-preload.cjs".
// Environment (all optional):
//   STALL_MS         length of each stall in ms            (default 15000)
//   STALL_PERIOD_MS  time from one stall start to the next (default 60000)
//   STALL_FIRST_MS   delay before the first stall          (default STALL_PERIOD_MS)
//   STALL_LOG        file that gets one JSON line per stall start and end
//   STALL_ARM_FILE   if set, stalls are armed only once this file exists
//                    (polled every 200 ms); STALL_FIRST_MS then counts
//                    from arming instead of from process start, so a test
//                    can start stalling once its bots are connected
//   STALL_ONLY_ARGV  run only when process.argv contains this word, so that
//                    child processes spawned with the same NODE_OPTIONS
//                    (for example `openclaw gateway` re-executing itself or
//                    running npm) are left alone; e.g. "gateway"
//
// Each stall is a synchronous busy-wait on the main thread: no timer, I/O
// callback or microtask runs until it ends. Worker threads are not touched.
'use strict';

const { isMainThread } = require('node:worker_threads');
const fs = require('node:fs');

function envNumber(name, fallback) {
	const raw = process.env[name];
	if (raw === undefined || raw === '') return fallback;
	const n = Number(raw);
	if (!Number.isFinite(n) || n < 0) throw new Error(`stall-preload: ${name}=${raw} is not a number >= 0`);
	return n;
}

function argvMatches(word) {
	if (!word) return true;
	return process.argv.slice(1).some((a) => a === word);
}

if (isMainThread && argvMatches(process.env.STALL_ONLY_ARGV)) {
	const stallMs = envNumber('STALL_MS', 15000);
	const periodMs = envNumber('STALL_PERIOD_MS', 60000);
	const firstMs = envNumber('STALL_FIRST_MS', periodMs);
	const logFile = process.env.STALL_LOG || '';
	let n = 0;

	const record = (obj) => {
		if (!logFile) return;
		try {
			fs.appendFileSync(logFile, JSON.stringify({ pid: process.pid, ...obj }) + '\n');
		} catch {
			// A missing log must never change the stall itself.
		}
	};

	const stall = () => {
		const index = ++n;
		const start = Date.now();
		record({ event: 'stall_start', n: index, at: start, ms: stallMs });
		const until = process.hrtime.bigint() + BigInt(Math.round(stallMs * 1e6));
		// Spin: deliberately no sleep, no Atomics.wait, nothing that yields.
		let spins = 0;
		while (process.hrtime.bigint() < until) spins++;
		const end = Date.now();
		record({ event: 'stall_end', n: index, at: end, took_ms: end - start, spins });
	};

	const schedule = (delay) => {
		const t = setTimeout(() => {
			const started = Date.now();
			stall();
			// Keep the period measured from stall start to stall start.
			schedule(Math.max(0, periodMs - (Date.now() - started)));
		}, delay);
		// The stall timer alone must not keep a finished process alive.
		t.unref();
	};

	const arm = () => {
		record({ event: 'armed', at: Date.now(), stall_ms: stallMs, period_ms: periodMs, first_ms: firstMs, argv: process.argv.slice(1, 4) });
		schedule(firstMs);
	};
	const armFile = process.env.STALL_ARM_FILE || '';
	if (stallMs > 0 && periodMs > 0) {
		if (!armFile) arm();
		else {
			const poll = setInterval(() => {
				if (!fs.existsSync(armFile)) return;
				clearInterval(poll);
				arm();
			}, 200);
			poll.unref();
		}
	}
}
