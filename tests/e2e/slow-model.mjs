#!/usr/bin/env node
// A deliberately slow OpenAI-compatible chat-completions server for the
// end-to-end tests. It binds 127.0.0.1 on an ephemeral port, prints
// {"port":N} on stdout, and answers every chat request after --delay-ms
// with text that names the user's question, so a test can pair each
// question with its reply. Every request body is appended to --log as one
// JSON line.
//
//   node slow-model.mjs [--delay-ms 20000] [--log FILE] [--port 0]
//                       [--model ID]
//
// Routes: GET /v1/models, POST /v1/chat/completions (stream or not).
// The same routes without the /v1 prefix are accepted too.

import http from 'node:http';
import fs from 'node:fs';

function parseArgs(argv) {
	const opts = { delayMs: 20000, log: null, port: 0, model: 'slow-model' };
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		const next = () => {
			if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
			return argv[++i];
		};
		if (a === '--delay-ms') opts.delayMs = Number(next());
		else if (a === '--log') opts.log = next();
		else if (a === '--port') opts.port = Number(next());
		else if (a === '--model') opts.model = next();
		else throw new Error(`unknown argument ${a}`);
	}
	if (!Number.isFinite(opts.delayMs) || opts.delayMs < 0)
		throw new Error('--delay-ms must be a number >= 0');
	return opts;
}

// Text of one chat message: a plain string or an array of content parts.
function messageText(msg) {
	if (!msg) return '';
	const c = msg.content;
	if (typeof c === 'string') return c;
	if (Array.isArray(c))
		return c
			.filter((p) => p && (p.type === 'text' || p.type === 'input_text'))
			.map((p) => p.text ?? '')
			.join('\n');
	return '';
}

function countImages(messages) {
	let n = 0;
	for (const m of messages ?? []) {
		if (!Array.isArray(m?.content)) continue;
		for (const p of m.content)
			if (p && (p.type === 'image_url' || p.type === 'input_image' || p.type === 'image'))
				n++;
	}
	return n;
}

// The user's words in OpenClaw's request: the last user message that is
// not OpenClaw's internal-context block, minus the envelope OpenClaw wraps
// around it ("[date] Conversation info: ..." with a fenced JSON block
// before, "Runtime: ..." after, "[discord attachment ...]" notes).
// Returns the last remaining line, at most 300 characters.
function questionOf(body) {
	const msgs = Array.isArray(body?.messages) ? body.messages : [];
	const texts = msgs
		.filter((m) => m?.role === 'user')
		.map(messageText)
		.filter((t) => t && !t.trimStart().startsWith('<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>'));
	const text = texts.length ? texts[texts.length - 1] : '';
	const kept = [];
	let fenced = false;
	for (const raw of text.split('\n')) {
		const line = raw.trim();
		if (line.startsWith('```')) {
			fenced = !fenced;
			continue;
		}
		if (fenced || !line) continue;
		if (/^\[[^\]]*\]\s*Conversation info:/.test(line)) continue;
		if (/^Runtime: /.test(line)) continue;
		if (/^\[(discord|media|image|attachment)[^\]]*\]$/i.test(line)) continue;
		if (/^<<<.*>>>$/.test(line)) continue;
		kept.push(line);
	}
	const q = kept.length ? kept[kept.length - 1] : '';
	return q.length > 300 ? q.slice(0, 300) : q;
}

function readBody(req) {
	return new Promise((resolve, reject) => {
		const chunks = [];
		req.on('data', (c) => chunks.push(c));
		req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
		req.on('error', reject);
	});
}

function sendJson(res, status, obj) {
	const data = JSON.stringify(obj);
	res.writeHead(status, {
		'content-type': 'application/json',
		'content-length': Buffer.byteLength(data),
	});
	res.end(data);
}

export function startSlowModel(opts) {
	const o = { delayMs: 20000, log: null, port: 0, model: 'slow-model', ...opts };
	let seq = 0;
	const logLine = (obj) => {
		if (o.log) fs.appendFileSync(o.log, JSON.stringify(obj) + '\n');
	};

	const server = http.createServer(async (req, res) => {
		const url = new URL(req.url, 'http://127.0.0.1');
		const path = url.pathname.replace(/^\/v1(?=\/)/, '');
		try {
			if (req.method === 'GET' && path === '/models') {
				sendJson(res, 200, {
					object: 'list',
					data: [{ id: o.model, object: 'model', created: 0, owned_by: 'heartline-tests' }],
				});
				return;
			}
			if (req.method !== 'POST' || path !== '/chat/completions') {
				sendJson(res, 404, { error: { message: `no route ${req.method} ${url.pathname}` } });
				return;
			}
			const raw = await readBody(req);
			let body;
			try {
				body = JSON.parse(raw);
			} catch {
				sendJson(res, 400, { error: { message: 'body is not JSON' } });
				return;
			}
			const id = ++seq;
			const question = questionOf(body);
			const received = Date.now();
			logLine({ id, at: received, event: 'request', images: countImages(body.messages), question, body });

			let aborted = false;
			res.on('close', () => {
				if (!res.writableFinished) {
					aborted = true;
					logLine({ id, at: Date.now(), event: 'aborted' });
				}
			});
			await new Promise((r) => setTimeout(r, o.delayMs));
			if (aborted) return;

			const text = `answer to: ${question}`;
			const model = body.model ?? o.model;
			const created = Math.floor(Date.now() / 1000);
			const cid = `chatcmpl-slow-${id}`;
			const usage = { prompt_tokens: 10, completion_tokens: 10, total_tokens: 20 };
			if (body.stream) {
				res.writeHead(200, {
					'content-type': 'text/event-stream',
					'cache-control': 'no-cache',
					connection: 'keep-alive',
				});
				const chunk = (delta, finish) =>
					`data: ${JSON.stringify({
						id: cid,
						object: 'chat.completion.chunk',
						created,
						model,
						choices: [{ index: 0, delta, finish_reason: finish }],
					})}\n\n`;
				res.write(chunk({ role: 'assistant', content: '' }, null));
				// Two content pieces, so streaming consumers see a real stream.
				const half = Math.ceil(text.length / 2);
				res.write(chunk({ content: text.slice(0, half) }, null));
				res.write(chunk({ content: text.slice(half) }, null));
				res.write(chunk({}, 'stop'));
				if (body.stream_options?.include_usage)
					res.write(
						`data: ${JSON.stringify({ id: cid, object: 'chat.completion.chunk', created, model, choices: [], usage })}\n\n`
					);
				res.end('data: [DONE]\n\n');
			} else {
				sendJson(res, 200, {
					id: cid,
					object: 'chat.completion',
					created,
					model,
					choices: [
						{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' },
					],
					usage,
				});
			}
			logLine({ id, at: Date.now(), event: 'answered', text });
		} catch (err) {
			if (!res.headersSent) sendJson(res, 500, { error: { message: String(err) } });
			else res.end();
		}
	});

	return new Promise((resolve, reject) => {
		server.once('error', reject);
		server.listen(o.port, '127.0.0.1', () => resolve(server));
	});
}

const isMain = process.argv[1] && import.meta.url === new URL(`file://${fs.realpathSync(process.argv[1])}`).href;
if (isMain) {
	let opts;
	try {
		opts = parseArgs(process.argv.slice(2));
	} catch (err) {
		process.stderr.write(`slow-model: ${err.message}\n`);
		process.exit(2);
	}
	const server = await startSlowModel(opts);
	process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
	const stop = () => server.close(() => process.exit(0));
	process.on('SIGTERM', stop);
	process.on('SIGINT', stop);
}
