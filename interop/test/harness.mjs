// Test harness: runs a real sockmq process on free 127.0.0.1 ports with its
// own temporary config, data directory and (optionally) password/ACL files.
//
//   const srv = await Sockmq.start({users: {alice: 'pw'}, acl: '...', allowAnonymous: false});
//   srv.mqttUrl / srv.wsMqttUrl / srv.httpPort
//   await srv.restart();   // SIGTERM, then start again on the same ports and data dir
//   await srv.close();     // stop and delete the temporary directory
//
// No fixed sleeps: readiness is polled (/healthz) with a deadline, and every
// wait in the suite goes through waitFor / Inbox / withTimeout below.

import {spawn, execFile} from 'node:child_process';
import {mkdtemp, rm, writeFile, mkdir, rename} from 'node:fs/promises';
import {existsSync} from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {promisify} from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
export const interopDir = path.resolve(here, '..');
export const repoDir = path.resolve(interopDir, '..');
export const artifactsDir = path.join(interopDir, 'artifacts');
export const sockmqBin = process.env.SOCKMQ_BIN || path.join(repoDir, 'bin', 'sockmq');

const HOST = '127.0.0.1';
const START_TIMEOUT_MS = 15000;
const STOP_TIMEOUT_MS = 8000;
const LOG_LIMIT = 512 * 1024;

// Every process started by this module, killed if the test process exits
// without stopping it (a failed assertion in a before hook, say).
const live = new Set();
function killLive() {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
}
process.on('exit', killLive);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    killLive();
    process.exit(128 + (sig === 'SIGINT' ? 2 : 15));
  });
}

/** A free TCP port on 127.0.0.1: listen on port 0, read the port, close. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, HOST, () => {
      const {port} = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export const sleepTick = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls fn (sync or async) every intervalMs until it returns a truthy value,
 * which is returned; throws with `what` after timeoutMs. Exceptions from fn
 * count as "not yet" and the last one is reported, except errors marked
 * `fatal`, which end the wait at once.
 */
export async function waitFor(fn, {timeout = 5000, interval = 25, what = 'condition'} = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      if (err && err.fatal) throw err; // fn says: stop polling, this will not get better
      last = err;
    }
    if (Date.now() >= deadline) {
      const why = last ? ` (last error: ${last.message})` : '';
      throw new Error(`timed out after ${timeout}ms waiting for ${what}${why}`);
    }
    await sleepTick(interval);
  }
}

/** Resolves/rejects with promise, or rejects after ms with a message naming what. */
export function withTimeout(promise, ms, what = 'operation') {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms}ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A queue of received items (messages, frames, events) that tests can wait
 * on: next(pred) resolves with the first not-yet-taken item matching pred,
 * including items that arrived before the call.
 */
export class Inbox {
  constructor(name = 'inbox') {
    this.name = name;
    this.items = [];
    this.taken = new Set();
    this.waiters = [];
  }

  push(item) {
    this.items.push(item);
    for (const w of [...this.waiters]) {
      if (this._tryTake(w)) this.waiters.splice(this.waiters.indexOf(w), 1);
    }
  }

  _tryTake(w) {
    for (let i = 0; i < this.items.length; i++) {
      if (this.taken.has(i)) continue;
      let ok = false;
      try { ok = w.pred(this.items[i]); } catch { ok = false; }
      if (ok) {
        this.taken.add(i);
        clearTimeout(w.timer);
        w.resolve(this.items[i]);
        return true;
      }
    }
    return false;
  }

  /** Waits for (and consumes) the next item for which pred returns true. */
  next(pred = () => true, timeout = 5000, what) {
    return new Promise((resolve, reject) => {
      const w = {pred, resolve};
      if (this._tryTake(w)) return;
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        const seen = this.items.map((x) => preview(x)).slice(-10).join('\n    ');
        reject(new Error(`${this.name}: timed out after ${timeout}ms waiting for ${what || 'an item'}; ` +
          `last items received:\n    ${seen || '(none)'}`));
      }, timeout);
      this.waiters.push(w);
    });
  }
}

export function preview(x) {
  try {
    const s = typeof x === 'string' ? x : JSON.stringify(x, (k, v) =>
      (v && v.type === 'Buffer' && Array.isArray(v.data)) ? `<Buffer ${Buffer.from(v.data).toString('hex')}>` : v);
    return s && s.length > 300 ? s.slice(0, 300) + '…' : s;
  } catch {
    return String(x);
  }
}

/**
 * Cleanup stack for one test: register closers with add(); run() calls them
 * in reverse order, each bounded in time, never throwing.
 */
export class Cleanup {
  constructor() { this.fns = []; }
  add(fn) { this.fns.push(fn); return fn; }
  async run() {
    while (this.fns.length) {
      const fn = this.fns.pop();
      try { await withTimeout(Promise.resolve().then(fn), 5000, 'cleanup'); } catch { /* best effort */ }
    }
  }
}

/** A plain GET without keep-alive: resolves {status, headers, body}. */
export function httpGet(url, timeout = 2000) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, {agent: false, timeout}, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({status: res.statusCode, headers: res.headers, body}));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timeout after ${timeout}ms`)));
    req.on('error', reject);
  });
}

/** Writes a mosquitto-compatible password file with `sockmq passwd -b`. */
export async function writePasswordFile(file, users) {
  let first = true;
  for (const [user, pass] of Object.entries(users)) {
    const args = ['passwd', ...(first ? ['-c'] : []), '-b', file, user, pass];
    await promisify(execFile)(sockmqBin, args, {timeout: 10000});
    first = false;
  }
}

function yamlString(s) { return JSON.stringify(String(s)); }

/** A sockmq process. Use Sockmq.start(); see the file comment. */
export class Sockmq {
  /**
   * @param {object} opts
   * @param {Record<string,string>} [opts.users] password file contents (user → password)
   * @param {string} [opts.acl] ACL file contents (mosquitto syntax)
   * @param {boolean} [opts.allowAnonymous] auth.allow_anonymous (left unset when undefined)
   * @param {string} [opts.name] label used in log file names
   * @param {string} [opts.extraYaml] appended verbatim to config.yaml
   * @param {number} [opts.startTimeout] ms to wait for /healthz (cluster nodes need longer)
   * @param {boolean} [opts.bridge] fail unless /socketcluster/ is served (see requireBridge)
   * @param {string[]} [opts.allowedOrigins] listeners.http.allowed_origins: origins of the
   *   web pages (other than the listener's own) that may open /mqtt and /socketcluster/
   */
  constructor(opts = {}) {
    this.opts = opts;
    this.name = opts.name || 'sockmq';
    this.child = null;
    this.log = '';
    this.exited = null;
    this.starts = 0;
  }

  static async start(opts = {}) {
    const s = await Sockmq._start(opts);
    if (opts.bridge) {
      try {
        await requireBridge(s);
      } catch (err) {
        await s.close();
        throw err;
      }
    }
    return s;
  }

  static async _start(opts) {
    if (!existsSync(sockmqBin)) {
      throw new Error(`${sockmqBin} not found: build it first (make -C interop test does: go build -o bin/sockmq ./cmd/sockmq)`);
    }
    const s = new Sockmq(opts);
    s.dir = await mkdtemp(path.join(os.tmpdir(), 'sockmq-interop-'));
    s.dataDir = path.join(s.dir, 'data');
    await mkdir(s.dataDir);
    if (opts.users) {
      s.passwordFile = path.join(s.dir, 'passwd');
      await writePasswordFile(s.passwordFile, opts.users);
    }
    if (opts.acl != null) {
      s.aclFile = path.join(s.dir, 'acl');
      await writeFile(s.aclFile, opts.acl);
    }
    // Ports are picked free and then handed to sockmq; another process could
    // take one in between, so a start that fails to listen is retried on new ports.
    for (let attempt = 1; ; attempt++) {
      s.mqttPort = await freePort();
      s.httpPort = await freePort();
      await s._writeConfig();
      try {
        await s._spawnAndWait();
        return s;
      } catch (err) {
        const bindFailure = /address already in use|bind/i.test(s.log);
        await s.stop().catch(() => {});
        if (!bindFailure || attempt >= 3) {
          await s.close();
          throw err;
        }
      }
    }
  }

  get host() { return HOST; }
  get mqttUrl() { return `mqtt://${HOST}:${this.mqttPort}`; }
  get wsMqttUrl() { return `ws://${HOST}:${this.httpPort}/mqtt`; }
  get httpUrl() { return `http://${HOST}:${this.httpPort}`; }
  get scUrl() { return `ws://${HOST}:${this.httpPort}/socketcluster/`; }

  async _writeConfig() {
    const o = this.opts;
    let y = '';
    y += 'listeners:\n';
    y += `  mqtt:\n    address: ${yamlString(`${HOST}:${this.mqttPort}`)}\n`;
    y += `  http:\n    address: ${yamlString(`${HOST}:${this.httpPort}`)}\n`;
    if (o.allowedOrigins) y += `    allowed_origins: [${o.allowedOrigins.map(yamlString).join(', ')}]\n`;
    y += 'persistence:\n';
    y += `  data_dir: ${yamlString(this.dataDir)}\n`;
    y += '  sync: false\n';
    y += 'logging:\n';
    y += `  level: ${process.env.SOCKMQ_LOG_LEVEL || 'debug'}\n`;
    y += '  format: text\n';
    const auth = [];
    if (this.passwordFile) auth.push(`  password_file: ${yamlString(this.passwordFile)}`);
    if (this.aclFile) auth.push(`  acl_file: ${yamlString(this.aclFile)}`);
    if (o.allowAnonymous !== undefined) auth.push(`  allow_anonymous: ${o.allowAnonymous ? 'true' : 'false'}`);
    if (auth.length) y += 'auth:\n' + auth.join('\n') + '\n';
    if (o.extraYaml) y += o.extraYaml + '\n';
    this.configFile = path.join(this.dir, 'config.yaml');
    await writeFile(this.configFile, y);
  }

  _appendLog(chunk) {
    this.log += chunk;
    if (this.log.length > LOG_LIMIT) this.log = this.log.slice(-LOG_LIMIT);
  }

  async _spawnAndWait() {
    this.starts++;
    this._appendLog(`--- start #${this.starts}: ${sockmqBin} serve -c ${this.configFile}\n`);
    const child = spawn(sockmqBin, ['serve', '-c', this.configFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: this.dir,
    });
    this.child = child;
    live.add(child);
    child.stdout.setEncoding('utf8').on('data', (d) => this._appendLog(d));
    child.stderr.setEncoding('utf8').on('data', (d) => this._appendLog(d));
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        live.delete(child);
        this._appendLog(`--- exited code=${code} signal=${signal}\n`);
        resolve({code, signal});
      });
      child.on('error', (err) => { // spawn failed: there will be no 'exit'
        live.delete(child);
        this._appendLog(`--- spawn failed: ${err.message}\n`);
        resolve({code: null, signal: null, error: err});
      });
    });
    let gone = null;
    this.exited.then((r) => { gone = r; });
    await waitFor(async () => {
      if (gone) throw Object.assign(new Error(`sockmq exited during start (code=${gone.code} signal=${gone.signal})`), {fatal: true});
      const res = await httpGet(`${this.httpUrl}/healthz`, 1000);
      return res.status === 200;
    }, {timeout: this.opts.startTimeout || START_TIMEOUT_MS, interval: 30, what: `sockmq /healthz on ${this.httpUrl}`}).catch((err) => {
      throw new Error(`${err.message}\n--- sockmq log ---\n${this.logTail(60)}`);
    });
  }

  /** SIGTERM, then SIGKILL after timeoutMs. Resolves with {code, signal}. */
  async stop(timeoutMs = STOP_TIMEOUT_MS) {
    const child = this.child;
    if (!child) return null;
    this.child = null;
    if (child.exitCode !== null || child.signalCode !== null) return this.exited;
    child.kill('SIGTERM');
    let timer;
    const killed = new Promise((resolve) => {
      timer = setTimeout(() => {
        this._appendLog(`--- no exit ${timeoutMs}ms after SIGTERM: SIGKILL\n`);
        child.kill('SIGKILL');
        resolve();
      }, timeoutMs);
    });
    await Promise.race([this.exited, killed]);
    clearTimeout(timer);
    return this.exited;
  }

  /** Stops the process and starts it again on the same ports and data dir. */
  async restart() {
    const r = await this.stop();
    await this._spawnAndWait();
    return r;
  }

  /** Starts the process again after stop() (same ports, config and data dir). */
  async startAgain() {
    await this._spawnAndWait();
  }

  /** Sends SIGHUP: sockmq reloads its password and ACL files. */
  hup() {
    if (!this.running) throw new Error('sockmq is not running');
    this.child.kill('SIGHUP');
  }

  /** Replaces the ACL file's contents (call hup() to reload at once). */
  async setAcl(text) {
    if (!this.aclFile) throw new Error('started without an ACL file');
    const tmp = `${this.aclFile}.tmp`;
    await writeFile(tmp, text);
    await rename(tmp, this.aclFile);
  }

  /** True while the process runs. */
  get running() {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  logTail(lines = 40) {
    return this.log.split('\n').slice(-lines - 1).join('\n');
  }

  async _saveLog() {
    try {
      await mkdir(artifactsDir, {recursive: true});
      await writeFile(path.join(artifactsDir, `${this.name}.log`), this.log);
    } catch { /* artifacts are best effort */ }
  }

  /** Stops the process, keeps its log in artifacts/ and removes the temp dir. */
  async close() {
    await this.stop();
    await this._saveLog();
    if (this.dir && !process.env.SOCKMQ_KEEP_TMP) await rm(this.dir, {recursive: true, force: true});
  }

  /**
   * Wraps a test function so that a failure carries the tail of sockmq's log
   * and the test's clients are cleaned up: fn(t, cleanup).
   */
  guard(fn) {
    return async (t) => {
      const cleanup = new Cleanup();
      try {
        await fn(t, cleanup);
      } catch (err) {
        if (err && typeof err === 'object' && !err.sockmqLog) {
          err.sockmqLog = true;
          annotate(err, `--- sockmq log (${this.name}) tail ---\n${this.logTail(30)}`);
        }
        throw err;
      } finally {
        await cleanup.run();
      }
    };
  }
}

/**
 * Appends text to an error's message and to its already formatted stack
 * (node prints the stack, which V8 or a library may have built already).
 */
export function annotate(err, text) {
  try {
    const before = String(err.message);
    const stack = err.stack; // format it (V8 does so lazily) before changing the message
    err.message = `${before}\n${text}`;
    if (typeof stack === 'string') {
      err.stack = stack;
      const i = err.stack.indexOf(before);
      err.stack = i >= 0
        ? err.stack.slice(0, i + before.length) + `\n${text}` + err.stack.slice(i + before.length)
        : `${err.stack}\n${text}`;
    }
  } catch { /* frozen error: leave it */ }
  return err;
}

/**
 * Throws unless the process serves the SocketCluster bridge at
 * /socketcluster/ (a plain GET there is refused as a bad WebSocket upgrade,
 * not 404), so that SC suites fail at once with a clear reason.
 */
export async function requireBridge(srv) {
  const res = await httpGet(`${srv.httpUrl}/socketcluster/`, 2000);
  if (res.status === 404) {
    throw new Error(`sockmq does not serve the SocketCluster bridge: GET ${srv.httpUrl}/socketcluster/ → 404 ` +
      '(is bridge/ wired into cmd/sockmq?)');
  }
}
