// Harness for the Sandstream server end-to-end tests: starts the real binary
// (`sandstream up`) on a fresh data dir, speaks REST and socket.io to it, and
// cleans up the sandboxes the tests created.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, createWriteStream, mkdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '../../..');
export const BIN = process.env.SANDSTREAM_BIN ?? path.join(REPO, 'target/debug/sandstream');
export const PROTO = path.join(REPO, 'proto/sandstream/agent/v1/agent.proto');
export const API_MD = path.join(REPO, 'API.md');

export const debug = (...a) => process.env.E2E_DEBUG && console.error('[e2e]', ...a);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const SB_ID = /^sb-[0-9a-f]{10}$/;

const agentProto = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
const { ExecService } = grpc.loadPackageDefinition(agentProto).sandstream.agent.v1;

/**
 * Runs ExecService.Execute on a sandbox's agent over a connection of its own (closed at
 * the end); resolves {stdout, stderr, exitCode, ended} or rejects with the gRPC error.
 * `timeoutMs` is the command's timeout (the call's deadline is 10 s later); `user` who it
 * runs as (the request's `user`; unset: the sandbox's default user).
 */
export function agentExecute({ host, port, token }, command, env = {}, { timeoutMs = 20_000, user = '' } = {}) {
  const client = new ExecService(`${host}:${port}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  return new Promise((resolve, reject) => {
    const out = { stdout: '', stderr: '', exitCode: null, ended: false };
    const call = client.Execute({ command, cwd: '', env, timeout: timeoutMs, user }, md, { deadline: Date.now() + timeoutMs + 10_000 });
    call.on('data', (m) => {
      if (m.line) out[m.channel === 'STDERR' ? 'stderr' : 'stdout'] += m.line;
      if (m.end) {
        out.ended = true;
        out.exitCode = m.exit_code;
      }
    });
    call.on('error', (e) => {
      client.close();
      reject(e);
    });
    call.on('end', () => {
      client.close();
      resolve(out);
    });
  });
}

/** A fresh random API key. */
export function newKey(prefix = 'e2e') {
  return `${prefix}-${randomBytes(16).toString('hex')}`;
}

const roots = new Set();
// Each test file runs in its own process: its servers' directories (data dirs with the
// spools, up to hundreds of MB, and the logs) go when it exits, unless a test failed
// (then the logs are wanted) or SANDSTREAM_E2E_KEEP=1.
process.on('exit', (code) => {
  if (code !== 0 || process.env.SANDSTREAM_E2E_KEEP === '1') {
    if (roots.size) console.error(`[e2e] kept for inspection: ${[...roots].join(' ')}`);
    return;
  }
  for (const root of roots) {
    try {
      rmSync(root, { recursive: true, force: true });
    } catch (e) {
      console.error(`[e2e] could not remove ${root}: ${e.message}`);
    }
  }
});

/** A fresh temporary directory for one server (data dir and logs), removed at exit. */
export function tmpRoot() {
  const root = mkdtempSync(path.join(os.tmpdir(), 'sandstream-e2e-'));
  roots.add(root);
  return root;
}

/**
 * Starts `sandstream up` and resolves once it printed "Sandstream ready at URL".
 * The first start on a host may build the default template (minutes).
 */
export async function startServer({ root = tmpRoot(), apiKey = newKey('admin'), args = [], readyTimeoutMs = 10 * 60_000 } = {}) {
  const dataDir = path.join(root, 'data');
  mkdirSync(dataDir, { recursive: true });
  const n = (startServer.count = (startServer.count ?? 0) + 1);
  const logPath = path.join(root, `server-${n}.log`);
  const log = createWriteStream(logPath);
  const child = spawn(
    BIN,
    ['up', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--heartbeat-timeout-ms', '3000', ...args],
    { env: { ...process.env, SANDSTREAM_API_KEY: apiKey }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let url;
  let runnerUrl;
  let partial = '';
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  // Ready once stdout says so and the log (stderr, another pipe) has named the runner's
  // control API.
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server not ready after ${readyTimeoutMs} ms; log ${logPath}`)), readyTimeoutMs);
    const check = () => {
      if (url && runnerUrl) {
        clearTimeout(timer);
        resolve(url);
      }
    };
    child.stdout.on('data', (d) => {
      log.write(d);
      stdout += d.toString();
      const m = /Sandstream ready at (http:\/\/\S+)/.exec(stdout);
      if (m) url = m[1].replace(/\/$/, '');
      check();
    });
    child.stderr.on('data', (d) => {
      log.write(d);
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop();
      for (const line of lines) {
        const m = /runner ready control=(http:\/\/\S+)/.exec(line);
        if (m) runnerUrl = m[1];
      }
      check();
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`server exited before ready (code ${code}, signal ${signal}); log ${logPath}`));
    });
  });
  await ready;
  const server = {
    url,
    root,
    dataDir,
    apiKey,
    logPath,
    child,
    keys: new Set([apiKey]),
    /** The control API of the runner this `up` started. */
    runnerUrl,
    get stdout() {
      return stdout;
    },
    /** SIGTERM and wait for the exit (SIGKILL after 30 s). */
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const r = await exited;
      clearTimeout(t);
      log.end();
      return r;
    },
    exited,
  };
  return server;
}

/** One REST call. Returns {status, headers, text, body} (body: parsed JSON or undefined). */
export async function api(server, method, route, { key = server.apiKey, body, raw, headers = {}, auth = 'bearer' } = {}) {
  const h = { ...headers };
  if (key !== null && key !== undefined) {
    if (auth === 'bearer') h.authorization = `Bearer ${key}`;
    else h['x-api-key'] = key;
  }
  let payload;
  if (raw !== undefined) {
    payload = raw;
    h['content-type'] ??= 'application/json';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    h['content-type'] = 'application/json';
  }
  return answer(await fetch(server.url + route, { method, headers: h, body: payload }));
}

/** A fetch response as {status, headers, text, body} (body: parsed JSON or undefined). */
async function answer(res) {
  const text = await res.text();
  let body;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  return { status: res.status, headers: res.headers, text, body };
}

/** Asserts an error answer: the status and the JSON shape {status:"error", code, message}. */
export function assertError(res, status, code, messageCheck) {
  const ctx = `answer ${res.status} ${res.text}`;
  assert.equal(res.status, status, ctx);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/, ctx);
  assert.ok(res.body && typeof res.body === 'object', ctx);
  assert.deepEqual(Object.keys(res.body).sort(), ['code', 'message', 'status'], ctx);
  assert.equal(res.body.status, 'error', ctx);
  assert.equal(res.body.code, code, ctx);
  assert.equal(typeof res.body.message, 'string', ctx);
  assert.ok(res.body.message.length > 0, ctx);
  if (typeof messageCheck === 'string') assert.equal(res.body.message, messageCheck, ctx);
  else if (messageCheck instanceof RegExp) assert.match(res.body.message, messageCheck, ctx);
  else if (typeof messageCheck === 'function') messageCheck(res.body.message);
}

/** Creates a tenant key with the admin key; returns {id, name, key}. */
export async function createTenant(server, name) {
  const r = await api(server, 'POST', '/api/v1/keys', { body: { name } });
  assert.equal(r.status, 201, r.text);
  server.keys.add(r.body.key);
  return r.body;
}

/** POST /api/sandbox/exec expecting 202; returns the data {containerId, executionId, message}. */
export async function exec(server, body, { key = server.apiKey } = {}) {
  const r = await api(server, 'POST', '/api/sandbox/exec', { key, body });
  assert.equal(r.status, 202, `exec answered ${r.status} ${r.text}`);
  server.keys.add(key);
  return r.body.data;
}

/** Polls GET /api/v1/executions/{id} until it is no longer running. */
export async function waitExecution(server, id, { key = server.apiKey, timeoutMs = 120_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await api(server, 'GET', `/api/v1/executions/${id}`, { key });
    assert.equal(r.status, 200, r.text);
    if (r.body.status !== 'running') return r.body;
    if (Date.now() > deadline) throw new Error(`execution ${id} still running after ${timeoutMs} ms: ${r.text}`);
    await sleep(150);
  }
}

/** GET /logs?afterSeq=N */
export async function logs(server, id, { key = server.apiKey, afterSeq = 0 } = {}) {
  const r = await api(server, 'GET', `/api/v1/executions/${id}/logs?afterSeq=${afterSeq}`, { key });
  assert.equal(r.status, 200, r.text);
  return r.body;
}

/** Concatenates chunk data filtered by type and phase. */
export function text(chunks, { type, phase } = {}) {
  return chunks
    .filter((c) => (type === undefined || c.type === type) && (phase === undefined || c.phase === phase))
    .map((c) => c.data)
    .join('');
}

/** Asserts that chunks are numbered exactly 1..N in order. */
export function assertContiguous(chunks, ctx = '') {
  const seqs = chunks.map((c) => c.seq);
  const expected = seqs.map((_, i) => i + 1);
  assert.deepEqual(seqs, expected, `seqs not exactly 1..N ${ctx}`);
}

/** Runs an exec to the end; returns {data, execution, chunks, complete}. */
export async function run(server, body, { key = server.apiKey, timeoutMs = 120_000 } = {}) {
  const data = await exec(server, body, { key });
  const execution = await waitExecution(server, data.executionId, { key, timeoutMs });
  const l = await logs(server, data.executionId, { key });
  return { data, execution, chunks: l.chunks, complete: l.complete };
}

/** Polls until fn() returns a truthy value. */
export async function until(fn, { timeoutMs = 30_000, intervalMs = 150, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** DELETEs every sandbox of every key the server has seen (best effort). */
export async function cleanupSandboxes(server) {
  for (const key of server.keys) {
    try {
      const r = await api(server, 'GET', '/api/v1/sandboxes', { key });
      if (r.status !== 200 || !Array.isArray(r.body)) continue;
      for (const sb of r.body) await api(server, 'DELETE', `/api/v1/sandboxes/${sb.id}`, { key });
    } catch {
      /* best effort */
    }
  }
}

/**
 * The control API of the runner `sandstream up` started, with the runner secret from the
 * data dir. `call(method, route, body, {token})` resolves as `api` does.
 */
export function runnerControl(server) {
  const url = server.runnerUrl;
  const secret = readFileSync(path.join(server.dataDir, 'runner-secret'), 'utf8').trim();
  const call = async (method, route, body, { token = secret } = {}) => {
    const headers = token === null ? {} : { authorization: `Bearer ${token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    return answer(await fetch(url + route, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) }));
  };
  return { url, secret, call };
}

/** The ids of the runc containers (not stopped) whose bundle lies in this server's data dir, sorted. */
export function runningContainers(server) {
  const list = JSON.parse(execFileSync('runc', ['list', '--format', 'json'], { encoding: 'utf8' }) || '[]') ?? [];
  return list.filter((c) => c.bundle?.startsWith(server.dataDir + path.sep) && c.status !== 'stopped').map((c) => c.id).sort();
}

/**
 * Last resort, for server bugs that leave sandboxes running after DELETE: kills the
 * runc containers whose bundle lies in this server's data dir through this server's
 * own runner control API (its URL is in the log, its secret in the data dir).
 * Only `onlyIds` when given. Returns the ids it had to kill.
 */
export async function killLeftovers(server, onlyIds) {
  let mine;
  try {
    mine = runningContainers(server).filter((id) => !onlyIds || onlyIds.includes(id));
  } catch {
    return [];
  }
  if (mine.length === 0 || server.child.exitCode !== null || server.child.signalCode !== null) return mine;
  const runner = runnerControl(server);
  for (const id of mine) {
    try {
      await runner.call('DELETE', `/sandboxes/${id}`);
    } catch {
      /* best effort */
    }
  }
  return mine;
}

/**
 * One server per test file: `const server = await fileServer(after)` at module top
 * level; the `after` hook kills every sandbox of every key it saw, then stops it.
 */
export async function fileServer(after, opts) {
  const server = await startServer(opts);
  after(async () => {
    const t0 = Date.now();
    await cleanupSandboxes(server);
    await sleep(300);
    const leftovers = await killLeftovers(server);
    if (leftovers.length) console.error(`[e2e] sandboxes still running after DELETE (server bug), killed through the runner: ${leftovers}`);
    const t1 = Date.now();
    await server.stop();
    debug(`cleanup ${t1 - t0} ms, stop ${Date.now() - t1} ms (log ${server.logPath})`);
  });
  return server;
}

// ---------------------------------------------------------------- socket.io

/**
 * A socket.io client that records every event it receives, in arrival order.
 * `kept(executionId)` applies API.md's rule: chunks are shown in seq order, each once; a
 * chunk past a gap is held until the gap is filled.
 */
export class Client {
  constructor(url, token, opts = {}) {
    this.events = [];
    this.waiters = [];
    this.socket = io(url, {
      auth: token === undefined ? undefined : { token },
      forceNew: true,
      reconnection: false,
      timeout: 10_000,
      ...opts,
    });
    for (const ev of ['container-joined', 'execution-output', 'execution-phase', 'execution-complete', 'error']) {
      this.socket.on(ev, (payload) => this.record(ev, payload));
    }
    this.socket.on('connect', () => this.record('connect', { id: this.socket.id }));
    this.socket.on('disconnect', (reason) => this.record('disconnect', { reason }));
    this.socket.on('connect_error', (err) => this.record('connect_error', { message: err.message }));
  }

  record(ev, payload) {
    this.events.push({ ev, payload, at: Date.now() });
    this.waiters = this.waiters.filter((w) => !w.check());
  }

  /** Resolves with the first recorded event (from index `from`) matching; rejects on timeout. */
  waitEvent(ev, pred = () => true, { timeoutMs = 60_000, from = 0 } = {}) {
    return new Promise((resolve, reject) => {
      const w = {
        check: () => {
          const hit = this.events.slice(from).find((e) => e.ev === ev && pred(e.payload));
          if (hit) {
            clearTimeout(w.timer);
            resolve(hit.payload);
            return true;
          }
          return false;
        },
      };
      if (w.check()) return;
      w.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`no ${ev} event within ${timeoutMs} ms; got: ${this.summary()}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /** Resolves when pred() (on this client) becomes true. */
  waitUntil(pred, { timeoutMs = 60_000, what = 'condition' } = {}) {
    return new Promise((resolve, reject) => {
      const w = {
        check: () => {
          if (pred()) {
            clearTimeout(w.timer);
            resolve();
            return true;
          }
          return false;
        },
      };
      if (w.check()) return;
      w.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`timed out waiting for ${what}; got: ${this.summary()}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  connected() {
    if (this.socket.connected) return Promise.resolve(this.socket.id);
    return new Promise((resolve, reject) => {
      const ok = () => {
        this.socket.off('connect_error', bad);
        resolve(this.socket.id);
      };
      const bad = (err) => {
        this.socket.off('connect', ok);
        reject(err);
      };
      this.socket.once('connect', ok);
      this.socket.once('connect_error', bad);
    });
  }

  /** Emits join-container and waits for container-joined (rejects on an error event). */
  async join(containerId, { timeoutMs = 15_000 } = {}) {
    const from = this.events.length;
    this.socket.emit('join-container', containerId);
    let hit;
    await this.waitUntil(
      () => {
        hit = this.events
          .slice(from)
          .find((e) => (e.ev === 'container-joined' && e.payload?.containerId === containerId) || e.ev === 'error');
        return !!hit;
      },
      { timeoutMs, what: `container-joined ${containerId}` },
    );
    if (hit.ev === 'error') throw new Error(`join-container refused: ${JSON.stringify(hit.payload)}`);
    return hit.payload;
  }

  /** Emits join-container and resolves with the first container-joined or error payload after it. */
  async tryJoin(containerId, { timeoutMs = 15_000 } = {}) {
    const from = this.events.length;
    this.socket.emit('join-container', containerId);
    let hit;
    await this.waitUntil(
      () => {
        hit = this.events.slice(from).find((e) => e.ev === 'container-joined' || e.ev === 'error');
        return !!hit;
      },
      { timeoutMs, what: `an answer to join-container ${containerId}` },
    );
    return hit;
  }

  resume(executionId, afterSeq) {
    this.socket.emit('resume-execution', { executionId, afterSeq });
  }

  outputs(executionId) {
    return this.events.filter((e) => e.ev === 'execution-output' && e.payload.executionId === executionId).map((e) => e.payload);
  }

  completes(executionId) {
    return this.events.filter((e) => e.ev === 'execution-complete' && e.payload.executionId === executionId).map((e) => e.payload);
  }

  phases(executionId) {
    return this.events.filter((e) => e.ev === 'execution-phase' && e.payload.executionId === executionId).map((e) => e.payload);
  }

  errors() {
    return this.events.filter((e) => e.ev === 'error').map((e) => e.payload);
  }

  /**
   * The chunks shown under API.md's rule: a chunk with seq = last + 1 is shown (then any
   * held chunks that follow it), a larger seq is held until the gap is filled, and a seq
   * not larger than last is a duplicate and dropped.
   */
  kept(executionId) {
    let last = 0;
    const out = [];
    const held = new Map();
    for (const c of this.outputs(executionId)) {
      if (c.seq <= last) continue;
      held.set(c.seq, c);
      while (held.has(last + 1)) {
        out.push(held.get(last + 1));
        held.delete(last + 1);
        last += 1;
      }
    }
    return out;
  }

  lastKept(executionId) {
    const k = this.kept(executionId);
    return k.length ? k[k.length - 1].seq : 0;
  }

  summary() {
    const counts = {};
    for (const e of this.events) counts[e.ev] = (counts[e.ev] ?? 0) + 1;
    const tail = this.events.slice(-5).map((e) => `${e.ev}:${JSON.stringify(e.payload).slice(0, 160)}`);
    return `${JSON.stringify(counts)} last: ${tail.join(' | ')}`;
  }

  close() {
    this.socket.disconnect();
  }
}

/** Connects a Client and waits for the connection. */
export async function connectClient(server, token = server.apiKey, opts = {}) {
  const c = new Client(server.url, token, opts);
  await c.connected();
  return c;
}

/** Chunk fields as stored/replayed, for comparing socket chunks with GET logs. */
export function chunkView(c) {
  return { seq: c.seq, type: c.type, phase: c.phase, data: c.data };
}
