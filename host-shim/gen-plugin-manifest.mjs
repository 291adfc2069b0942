#!/usr/bin/env node
/*
 * gen-plugin-manifest.mjs - derives the OpenClaw plugin's metadata from
 * the repository's manifest.json, the one place where the plugin's id,
 * version, ABI version and config schema are written down.
 *
 *   node host-shim/gen-plugin-manifest.mjs          write the files
 *   node host-shim/gen-plugin-manifest.mjs --check  fail if out of step
 *
 * It writes host-shim/openclaw.plugin.json (generated, not committed) and
 * brings the version, description and `heartline` block of the committed
 * host-shim/package.json in step. It also refuses a manifest whose ABI
 * version differs from HL_ABI_VERSION in include/heartline.h, or whose
 * version differs from the engine's HL_VERSION in plugin/internal.h.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const shimDir = path.dirname(fileURLToPath(import.meta.url));
const repoDir = path.dirname(shimDir);
const files = {
  manifest: path.join(repoDir, 'manifest.json'),
  header: path.join(repoDir, 'include', 'heartline.h'),
  internal: path.join(repoDir, 'plugin', 'internal.h'),
  plugin: path.join(shimDir, 'openclaw.plugin.json'),
  pkg: path.join(shimDir, 'package.json'),
};

function fail(message) {
  process.stderr.write(`gen-plugin-manifest: ${message}\n`);
  process.exit(1);
}

function readJson(file) {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    fail(`${path.relative(repoDir, file)}: ${err.message}`);
  }
}

function toText(value) {
  return `${JSON.stringify(value, null, 2)}\n`;
}

// The fields OpenClaw reads without running plugin code. The engine must
// be up before the Discord accounts start, hence activation at startup.
function pluginManifest(m) {
  return {
    id: m.id,
    name: m.name,
    description: m.description,
    version: m.version,
    categories: m.categories,
    activation: { onStartup: true },
    configSchema: m.configSchema,
    uiHints: m.uiHints,
  };
}

// package.json keeps its hand-written parts (files, dependencies, the
// openclaw block); only what manifest.json owns is replaced. The shim
// reads the `heartline` block at run time for the ABI it was built for
// and for the config keys it keeps to itself.
function packageJson(m, pkg) {
  return {
    ...pkg,
    version: m.version,
    description: m.description,
    heartline: { abi: m.abi, hostKeys: m.hostKeys },
  };
}

function headerAbi() {
  const text = fs.readFileSync(files.header, 'utf8');
  const found = /#define\s+HL_ABI_VERSION\s+(\d+)/.exec(text);
  if (!found)
    fail('include/heartline.h does not define HL_ABI_VERSION');
  return Number(found[1]);
}

// The version the engine reports from hl_version(), when it is written
// down as a literal; null when it is not (built from elsewhere).
function engineVersion() {
  if (!fs.existsSync(files.internal))
    return null;
  const text = fs.readFileSync(files.internal, 'utf8');
  const found = /#define\s+HL_VERSION\s+"([^"]*)"/.exec(text);
  return found ? found[1] : null;
}

function validate(m) {
  for (const key of ['id', 'name', 'version', 'description'])
    if (typeof m[key] !== 'string' || m[key] === '')
      fail(`manifest.json: "${key}" must be a non-empty string`);
  if (!Number.isInteger(m.abi))
    fail('manifest.json: "abi" must be an integer');
  if (m.configSchema?.type !== 'object')
    fail('manifest.json: "configSchema" must be an object schema');

  const props = m.configSchema.properties ?? {};
  for (const key of m.hostKeys ?? [])
    if (!(key in props))
      fail(`manifest.json: host key "${key}" is not in configSchema`);

  const abi = headerAbi();
  if (abi !== m.abi)
    fail(`manifest.json abi ${m.abi} != HL_ABI_VERSION ${abi}`);

  const version = engineVersion();
  if (version !== null && version !== m.version)
    fail(`manifest.json version ${m.version} != HL_VERSION ${version} ` +
      'in plugin/internal.h');
}

function main() {
  const check = process.argv.includes('--check');
  const m = readJson(files.manifest);
  validate(m);

  // Only the committed file is checked, and rewritten only when it
  // changes. The generated one is always written, last, so that make sees
  // it newer than everything it is made from.
  const outputs = [
    [files.pkg, toText(packageJson(m, readJson(files.pkg))), true],
    [files.plugin, toText(pluginManifest(m)), false],
  ];

  let stale = 0;
  for (const [file, text, committed] of outputs) {
    const old = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
    if (check && !committed)
      continue;
    if (old === text && committed)
      continue;
    if (check) {
      process.stderr.write(`${path.relative(repoDir, file)} is out of ` +
        'step with manifest.json\n');
      stale++;
      continue;
    }
    fs.writeFileSync(file, text);
  }
  if (stale > 0)
    fail('run `make plugin-manifest`');
}

main();
