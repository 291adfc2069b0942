/*
 * index.js - heartline's OpenClaw plugin: glue between the gateway and
 * libheartline.so, nothing more.
 *
 * In the `full` registration mode it loads the library through koffi,
 * starts an engine (a local Discord endpoint on 127.0.0.1), points the
 * Discord channel at it through DISCORD_API_URL, forwards the engine's
 * log records to the gateway's logger, and registers a service whose
 * stop() lets the engine go. Every other mode does nothing, and so does
 * evaluating this module: the top level has no side effects.
 *
 * The engine outlives a plugin reload. Its handle lives on globalThis,
 * which survives the fresh evaluation of this module, so register()
 * running again keeps a running engine whose configuration is unchanged
 * instead of reconnecting every bot upstream. The service's stop() only
 * releases the engine; it ends when no registration takes it back within
 * a grace period, or when the process exits. A newer build of the library
 * (another `library` path) is loaded beside the running one and takes its
 * engine's sessions over: the upstream connections go on as they are.
 *
 * Every call into the library returns at once (the ABI's promise; a
 * handover to a new build waits up to 3 s for HTTP requests in progress),
 * and the library never calls back, so nothing here can stall its threads.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { definePluginEntry } from 'openclaw/plugin-sdk/plugin-entry';

const PLUGIN_ID = 'heartline';
const STATE_KEY = Symbol.for('heartline.openclaw.state');
const SERVICE_ID = 'heartline-engine';
const ENV_NAME = 'DISCORD_API_URL';
const LOG_POLL_MS = 250;
const LOG_DRAINS_PER_TICK = 16;
const LOG_BUF_BYTES = 64 * 1024;
const ERR_BUF_BYTES = 1024;
const STATUS_BUF_BYTES = 64 * 1024;
const RELEASE_GRACE_MS = 30 * 1000;

// The state shared by every evaluation of this module in one process.
function sharedState() {
  globalThis[STATE_KEY] ??= {
    koffi: null,    // one koffi per process, however many reloads
    libs: new Map(), // build (see buildOf) -> bound ABI functions
    loaded: new Set(), // every library path handed to the loader
    engine: null,   // { lib, handle, key, origin, config }
    env: null,      // { had, value } of DISCORD_API_URL before ours
    logger: null,   // the logger of the newest registration
    owner: null,    // token of the registration that may stop the engine
    timer: null,    // log pump
    release: null,  // grace timer between a stop() and the next register
    exitHook: false,
  };
  return globalThis[STATE_KEY];
}

// The package's own metadata: the ABI it was built for and the config
// keys that are the shim's, not the engine's (see manifest.json).
function readPackageMeta(rootDir) {
  const file = path.join(rootDir, 'package.json');
  const meta = JSON.parse(fs.readFileSync(file, 'utf8')).heartline;
  if (!meta || !Number.isInteger(meta.abi))
    throw new Error(`${file} has no heartline.abi`);
  return { abi: meta.abi, hostKeys: meta.hostKeys ?? [] };
}

function loadKoffi(state, rootDir) {
  if (!state.koffi)
    state.koffi = createRequire(path.join(rootDir, 'package.json'))('koffi');
  return state.koffi;
}

// Which build of the library is at libPath now: the path and the file's
// identity, so that a file replaced in place (a plugin upgraded where it
// was installed) is a new build.
function buildOf(libPath) {
  let st;
  try {
    st = fs.statSync(libPath);
  } catch (err) {
    throw new Error(`cannot load ${libPath}: ${err.message}`);
  }
  return `${libPath}@${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
}

// A private copy of libPath, beside it (where it may be mapped, unlike a
// tmpfs mounted noexec) or else in the temporary directory.
function privateCopy(libPath) {
  const name = `.${path.basename(libPath)}.${process.pid}.${Date.now()}`;
  for (const dir of [path.dirname(libPath), os.tmpdir()]) {
    const file = path.join(dir, name);
    try {
      fs.copyFileSync(libPath, file);
      return file;
    } catch {
      fs.rmSync(file, { force: true });
    }
  }
  throw new Error('no directory to copy it to');
}

// Loads libPath. The dynamic loader hands out a library already loaded
// from a path again, whatever the file there now, so a new build at the
// path of one loaded before is loaded from a private copy (removed once
// mapped).
function loadLibrary(state, rootDir, libPath) {
  const koffi = loadKoffi(state, rootDir);
  state.loaded ??= new Set();
  const seen = state.loaded.has(libPath) || state.libs.has(libPath);
  let file = libPath;
  try {
    if (seen)
      file = privateCopy(libPath);
    state.loaded.add(libPath);
    return koffi.load(file);
  } catch (err) {
    throw new Error(`cannot load ${libPath}: ${err.message}`);
  } finally {
    if (file !== libPath)
      fs.rmSync(file, { force: true });
  }
}

// Binds the ABI of the build at libPath, once its ABI version is the one
// this plugin was built for. Handles are koffi pointers (BigInt or null);
// buffers go in as `void *` so the library writes into memory that JS
// owns.
function checkedLibrary(state, rootDir, libPath, abi) {
  const build = buildOf(libPath);
  const known = state.libs.get(build);
  if (known)
    return known;

  const so = loadLibrary(state, rootDir, libPath);
  const found = so.func('hl_abi_version', 'int', [])();
  if (found !== abi)
    throw new Error(`${libPath} has ABI ${found}, this plugin needs ${abi}`);
  const lib = {
    libPath,
    build,
    version: so.func('hl_version', 'const char *', []),
    start: so.func('hl_start', 'void *',
      ['const char *', 'void *', 'size_t']),
    stop: so.func('hl_stop', 'void', ['void *']),
    reconfigure: so.func('hl_reconfigure', 'int',
      ['void *', 'const char *', 'void *', 'size_t']),
    status: so.func('hl_status', 'size_t', ['void *', 'void *', 'size_t']),
    drain: so.func('hl_logs_drain', 'size_t',
      ['void *', 'void *', 'size_t']),
    handoverVersion: so.func('hl_handover_version', 'int', []),
    detach: so.func('hl_detach', 'void *', ['void *', 'void *', 'size_t']),
    attach: so.func('hl_attach', 'void *',
      ['const char *', 'void *', 'void *', 'size_t']),
    closeHandover: so.func('hl_handover_close', 'void', ['void *']),
  };
  state.libs.set(build, lib);
  return lib;
}

// Text written by the library into buf, up to its NUL or its length.
function cString(buf, length) {
  const end = buf.indexOf(0);
  const stop = end < 0 ? length : Math.min(end, length);
  return buf.toString('utf8', 0, stop);
}

// A key that is equal for two configurations that mean the same to the
// same build.
function configKey(build, config) {
  const sorted = Object.keys(config).sort()
    .map((name) => [name, config[name]]);
  return JSON.stringify([build, sorted]);
}

// The engine's configuration: the plugin's, less the keys only this shim
// reads, with the reply journal under OpenClaw's state directory unless
// the operator chose another place.
function engineConfig(api, hostKeys) {
  const config = { ...(api.pluginConfig ?? {}) };
  for (const key of hostKeys)
    delete config[key];
  if (config.state_dir === undefined) {
    const stateDir = api.runtime?.state?.resolveStateDir?.(process.env) ??
      process.env.OPENCLAW_STATE_DIR;
    if (typeof stateDir === 'string' && stateDir)
      config.state_dir = path.join(stateDir, PLUGIN_ID);
  }
  return config;
}

function resolveLibrary(rootDir, pluginConfig) {
  const override = pluginConfig?.library;
  if (override === undefined)
    return path.join(rootDir, 'lib', 'libheartline.so');
  if (!path.isAbsolute(override))
    throw new Error(`library must be an absolute path: ${override}`);
  return override;
}

// ------------------------------------------------------------- the env var

function pointChannelAt(state, origin) {
  if (!state.env) {
    const had = Object.hasOwn(process.env, ENV_NAME);
    state.env = { had, value: process.env[ENV_NAME] };
  }
  process.env[ENV_NAME] = `${origin}/api/v10`;
}

function restoreEnv(state) {
  if (!state.env)
    return;
  if (state.env.had)
    process.env[ENV_NAME] = state.env.value;
  else
    delete process.env[ENV_NAME];
  state.env = null;
}

// ------------------------------------------------------------------- logs

function forwardRecord(logger, line) {
  let record;
  try {
    record = JSON.parse(line);
  } catch {
    logger.warn(`[${PLUGIN_ID}] unparsable log record: ${line}`);
    return;
  }

  const text = `[${PLUGIN_ID}] ${record.msg}`;
  switch (record.level) {
  case 'debug':
    logger.debug?.(text);
    break;
  case 'warn':
    logger.warn(text);
    break;
  case 'error':
    logger.error(text);
    break;
  default:
    logger.info(text);
  }
}

// Moves whatever the engine buffered to the gateway's logger. Bounded per
// tick so a flood of records cannot hold the event loop.
function drainLogs(state) {
  const engine = state.engine;
  if (!engine || !state.logger)
    return;

  const buf = state.logBuf ??= Buffer.alloc(LOG_BUF_BYTES);
  for (let i = 0; i < LOG_DRAINS_PER_TICK; i++) {
    const n = Number(engine.lib.drain(engine.handle, buf, buf.length));
    if (n === 0)
      break;
    for (const line of cString(buf, n).split('\n'))
      if (line !== '')
        forwardRecord(state.logger, line);
  }
}

function startLogPump(state) {
  clearInterval(state.timer);
  state.timer = setInterval(() => drainLogs(state), LOG_POLL_MS);
  state.timer.unref();
}

// ----------------------------------------------------------------- engine

// config, listening where engine does unless it names its own port: the
// channel's WebSocket URL was fixed when its accounts started.
function withPort(config, engine) {
  if (config.listen_port !== undefined)
    return config;
  return { ...config, listen_port: Number(new URL(engine.origin).port) };
}

// Starts an engine of lib, or with a handover, one that goes on with the
// sessions of the engine that made it. An error with `taken` set means
// the handover was used up all the same.
function startEngine(lib, config, handover = null) {
  const err = Buffer.alloc(ERR_BUF_BYTES);
  const text = JSON.stringify(config);
  const handle = handover
    ? lib.attach(text, handover, err, err.length)
    : lib.start(text, err, err.length);
  if (!handle)
    throw new Error(`engine did not start: ${cString(err, err.length)}`);

  const engine = { lib, handle, key: configKey(lib.build, config) };
  engine.origin = statusOrigin(engine);
  if (!engine.origin) {
    lib.stop(handle);
    throw Object.assign(new Error('engine reported no origin'),
      { taken: true });
  }
  engine.config = withPort(config, engine);
  return engine;
}

// The engine's origin, from the status snapshot that hl_start publishes
// before it returns.
function statusOrigin(engine) {
  try {
    const origin = JSON.parse(readStatus(engine)).origin;
    return typeof origin === 'string' ? origin : undefined;
  } catch {
    return undefined;
  }
}

function readStatus(engine) {
  let buf = Buffer.alloc(STATUS_BUF_BYTES);
  for (;;) {
    const n = Number(engine.lib.status(engine.handle, buf, buf.length));
    if (n < buf.length)
      return buf.toString('utf8', 0, n);
    buf = Buffer.alloc(n + 1);
  }
}

// Ends the engine, after one last drain so its final records are seen.
function stopEngine(state) {
  const engine = state.engine;
  if (!engine)
    return;

  drainLogs(state);
  clearInterval(state.timer);
  clearTimeout(state.release);
  state.timer = null;
  state.release = null;
  state.engine = null;
  state.owner = null;
  restoreEnv(state);
  engine.lib.stop(engine.handle);
}

// Hands a new configuration to the running engine. Returns true when the
// engine took it, false when only a new engine can (a changed port,
// upstream base or state directory); throws when it is not valid, and
// the running engine goes on as it was.
function reconfigure(state, api, config, key) {
  const engine = state.engine;
  const err = Buffer.alloc(ERR_BUF_BYTES);
  const rc = engine.lib.reconfigure(engine.handle, JSON.stringify(config),
    err, err.length);
  const why = cString(err, err.length);
  if (rc < 0)
    throw new Error(`configuration refused, engine unchanged: ${why}`);
  if (rc > 0) {
    api.logger.info(`[${PLUGIN_ID}] ${why}: restarting the engine`);
    return false;
  }
  engine.key = key;
  api.logger.info(`[${PLUGIN_ID}] configuration applied to the running ` +
    `engine at ${engine.origin}`);
  return true;
}

// A newer build takes the running engine's sessions over, in this
// process and without a reconnect upstream (the channel RESUMEs into it).
// Both builds must agree on the state version; else it is refused and the
// running engine stays. A handover the new build refuses goes back to
// the build that made it.
function handOver(state, old, lib, config) {
  const theirs = lib.handoverVersion();
  const ours = typeof old.lib.handoverVersion === 'function'
    ? old.lib.handoverVersion() : 'none';
  if (ours !== theirs)
    throw new Error(`${lib.libPath} takes sessions of state version ` +
      `${theirs}, the running engine hands over ${ours}: restart the ` +
      'gateway to load it');

  drainLogs(state);
  const err = Buffer.alloc(ERR_BUF_BYTES);
  const handover = old.lib.detach(old.handle, err, err.length);
  if (!handover)
    throw new Error('the running engine kept its sessions: ' +
      cString(err, err.length));
  const next = withPort(config, old);
  try {
    return startEngine(lib, next, handover);
  } catch (refused) {
    if (refused.taken) {
      state.engine = null;
      restoreEnv(state);
      throw refused;
    }
    // The running build, with the configuration it had just taken.
    try {
      state.engine = startEngine(old.lib, next, handover);
      state.engine.key = configKey(old.lib.build, config);
    } catch (lost) {
      if (!lost.taken)
        old.lib.closeHandover?.(handover);
      state.engine = null;
      restoreEnv(state);
      throw new Error(`${refused.message}; and the running build could ` +
        `not take its sessions back: ${lost.message}`);
    }
    throw refused;
  }
}

// Keeps a running engine whose configuration is unchanged, changes its
// configuration in place, hands it over to a new build, or replaces it.
// Returns the engine, or throws with a message for the operator; a
// running engine then runs on.
function ensureEngine(state, api, meta) {
  const libPath = resolveLibrary(api.rootDir, api.pluginConfig);
  const build = buildOf(libPath);
  const config = engineConfig(api, meta.hostKeys);
  const key = configKey(build, config);
  const old = state.engine;

  if (old?.key === key) {
    api.logger.info(`[${PLUGIN_ID}] keeping the running engine ` +
      `at ${old.origin}`);
    return old;
  }
  // The running engine takes the configuration, or says that a key only
  // a new engine takes has changed (rc 1).
  const sameKeys = old &&
    reconfigure(state, api, config, configKey(old.lib.build, config));
  if (sameKeys && old.lib.build === build)
    return old;
  const lib = checkedLibrary(state, api.rootDir, libPath, meta.abi);
  let how = '';
  if (sameKeys) {
    state.engine = handOver(state, old, lib, config);
    how = ', sessions taken over from the running engine';
  } else if (old) {
    // The channel keeps the WebSocket URL it started with, so the new
    // engine takes the old one's port; the sessions it checkpointed on
    // stop are RESUMEd, not identified anew.
    stopEngine(state);
    try {
      state.engine = startEngine(lib, withPort(config, old));
    } catch (err) {
      // Back to what ran before, on its port, from its checkpoints.
      state.engine = startEngine(old.lib, old.config);
      state.engine.key = old.key;
      pointChannelAt(state, state.engine.origin);
      throw err;
    }
  } else {
    state.engine = startEngine(lib, config);
  }
  state.engine.key = key;
  const version = state.engine.lib.version();
  api.logger.info(`[${PLUGIN_ID}] engine ${version} listening ` +
    `at ${state.engine.origin}${how}`);
  return state.engine;
}

// ------------------------------------------------------------ registration

function registerFull(api) {
  const state = sharedState();
  state.logger = api.logger;
  clearTimeout(state.release);
  state.release = null;

  let engine;
  try {
    engine = ensureEngine(state, api, readPackageMeta(api.rootDir));
  } catch (err) {
    engine = state.engine;
    if (!engine) {
      // The channel keeps talking to Discord directly.
      api.logger.error(`[${PLUGIN_ID}] ${err.message}; Discord traffic ` +
        'stays on the built-in transport');
      return;
    }
    api.logger.error(`[${PLUGIN_ID}] ${err.message}; the running engine ` +
      `at ${engine.origin} stays`);
  }
  pointChannelAt(state, engine.origin);
  startLogPump(state);
  stopOnExit(state);

  // Only the newest registration may release the engine: an older one's
  // stop() must not end an engine that was handed over to a newer one.
  const token = {};
  state.owner = token;

  api.registerService({
    id: SERVICE_ID,
    start() {},
    stop() {
      if (state.owner !== token)
        return;
      state.owner = null;
      releaseEngine(state, api.logger);
    },
  });
}

// A reload runs the old service's stop() first and the new register()
// right after, so stopping at once would reconnect every bot on every
// reload. The engine is kept for a grace period instead: register()
// reclaims it, or the timer ends it (the plugin was disabled).
function releaseEngine(state, logger) {
  clearTimeout(state.release);
  state.release = setTimeout(() => {
    state.release = null;
    if (state.owner !== null || !state.engine)
      return;
    logger.info(`[${PLUGIN_ID}] no registration took the engine over: ` +
      'stopping it');
    stopEngine(state);
  }, RELEASE_GRACE_MS);
  state.release.unref();
}

// On gateway shutdown the grace timer never fires (it does not hold the
// process up); stop the engine as the process exits, so upstream sessions
// are closed with a resumable code rather than cut. Installed once per
// process, whatever the number of reloads.
function stopOnExit(state) {
  if (state.exitHook)
    return;
  state.exitHook = true;
  process.once('exit', () => stopEngine(state));
}

// Name, description and version come from openclaw.plugin.json, which is
// generated from manifest.json; repeating them here would let them drift.
export default definePluginEntry({
  id: PLUGIN_ID,
  register(api) {
    if (api.registrationMode !== 'full')
      return;
    registerFull(api);
  },
});

// For tests and diagnostics in the same process: the running engine's
// status, or null.
export function heartlineStatus() {
  const engine = globalThis[STATE_KEY]?.engine;
  return engine ? JSON.parse(readStatus(engine)) : null;
}
