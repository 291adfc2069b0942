// Test certificates for the fake's https/wss port, made with the openssl
// CLI: a CA (ca.pem, ca.key) and a server certificate it signs
// (server.pem, server.key) for DNS:localhost and IP:127.0.0.1. Files
// already in the directory are reused, so several runs can share one CA.

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync }
  from "node:fs";
import { join } from "node:path";

const LOCK_WAIT_MS = 20000;

function openssl(args, cwd) {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

function makeCa(dir) {
  openssl([
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
    "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "3650",
    "-subj", "/CN=heartline fake-discord test CA",
    "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ], dir);
}

function makeServerCert(dir, caDir = dir, altNames = "DNS:localhost,IP:127.0.0.1") {
  writeFileSync(join(dir, "server.ext"), [
    `subjectAltName=${altNames}`,
    "basicConstraints=CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    "extendedKeyUsage=serverAuth",
    "",
  ].join("\n"));
  openssl([
    "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
    "-nodes", "-keyout", "server.key", "-out", "server.csr",
    "-subj", "/CN=localhost",
  ], dir);
  openssl([
    "x509", "-req", "-in", "server.csr", "-CA", join(caDir, "ca.pem"),
    "-CAkey", join(caDir, "ca.key"), "-CAserial", join(dir, "ca.srl"),
    "-CAcreateserial", "-out", "server.pem", "-days", "825",
    "-extfile", "server.ext",
  ], dir);
}

// A directory used as a lock keeps two fakes starting together from
// writing a CA and a server certificate that do not match.
function withLock(dir, fn) {
  const lock = join(dir, ".lock");
  const deadline = Date.now() + LOCK_WAIT_MS;

  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (err) {
      if (err.code !== "EEXIST" || Date.now() > deadline) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    }
  }
  try {
    return fn();
  } finally {
    rmdirSync(lock);
  }
}

export function ensureCertificates(dir) {
  mkdirSync(dir, { recursive: true });

  withLock(dir, () => {
    if (!existsSync(join(dir, "ca.pem"))) makeCa(dir);
    if (!existsSync(join(dir, "server.pem"))) makeServerCert(dir);
  });

  return {
    caFile: join(dir, "ca.pem"),
    key: readFileSync(join(dir, "server.key")),
    cert: readFileSync(join(dir, "server.pem")),
  };
}

// A server certificate for other names (altNames, as in subjectAltName),
// signed in dir by the CA that ensureCertificates made in caDir.
export function certificateFor(caDir, dir, altNames) {
  mkdirSync(dir, { recursive: true });
  makeServerCert(dir, caDir, altNames);
  return { key: readFileSync(join(dir, "server.key")), cert: readFileSync(join(dir, "server.pem")) };
}
