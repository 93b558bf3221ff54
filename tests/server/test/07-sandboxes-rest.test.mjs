// Sandboxes REST, the connection info (checked with a real gRPC call to the agent),
// timeouts and TTL, DELETE.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import grpc from '@grpc/grpc-js';
import {
  fileServer, api, assertError, createTenant, until, SB_ID, text, agentExecute, exec, waitExecution, logs,
} from '../lib/harness.mjs';

const server = await fileServer(after);
const { key } = await createTenant(server, 'sandboxes');

const SANDBOX_KEYS = ['cpu', 'createdAt', 'envs', 'expiresAt', 'id', 'memoryMb', 'metadata', 'runnerId', 'sandboxId', 'state', 'template'];

/** The CPU quota of a sandbox's cgroup (oci backend, cgroup v1 or v2): "QUOTA per PERIOD". */
function cpuLimit(id) {
  const v2 = `/sys/fs/cgroup/sandstream/${id}/cpu.max`;
  if (existsSync(v2)) return readFileSync(v2, 'utf8').trim().replace(' ', ' per ');
  const v1 = (f) => readFileSync(`/sys/fs/cgroup/cpu/sandstream/${id}/${f}`, 'utf8').trim();
  return `${v1('cpu.cfs_quota_us')} per ${v1('cpu.cfs_period_us')}`;
}

test('create with envs/metadata/timeoutMs, list, get, connection → working agent', async () => {
  const body = { cpu: 0.5, memoryMb: 256, timeoutMs: 120_000, envs: { FOO: 'bar baz', GREETING: 'hé' }, metadata: { user: 'alice', purpose: 'e2e' } };
  const t0 = Date.now();
  const c = await api(server, 'POST', '/api/v1/sandboxes', { key, body });
  assert.equal(c.status, 201, c.text);
  const sb = c.body;
  assert.deepEqual(Object.keys(sb).sort(), SANDBOX_KEYS);
  assert.match(sb.id, SB_ID);
  assert.equal(sb.sandboxId, sb.id, '`sandboxId` is the one name; `id` is kept beside it');
  assert.equal(sb.template, 'default');
  assert.equal(sb.state, 'running');
  assert.equal(sb.cpu, 0.5);
  assert.equal(sb.memoryMb, 256);
  assert.deepEqual(sb.envs, body.envs);
  assert.deepEqual(sb.metadata, body.metadata);
  assert.match(sb.runnerId, /^rn-/);
  const created = Date.parse(sb.createdAt);
  assert.ok(Math.abs(created - t0) < 5000, `createdAt ${sb.createdAt}`);
  assert.equal(Date.parse(sb.expiresAt) - created, 120_000, `expiresAt ${sb.expiresAt} createdAt ${sb.createdAt}`);

  const list = await api(server, 'GET', '/api/v1/sandboxes', { key });
  assert.equal(list.status, 200);
  assert.deepEqual(list.body.filter((s) => s.id === sb.id), [sb]);
  const get = await api(server, 'GET', `/api/v1/sandboxes/${sb.id}`, { key });
  assert.equal(get.status, 200);
  assert.deepEqual(get.body, sb);

  const conn = await api(server, 'GET', `/api/v1/sandboxes/${sb.id}/connection`, { key });
  assert.equal(conn.status, 200, conn.text);
  assert.deepEqual(Object.keys(conn.body).sort(), ['host', 'port', 'ssh', 'token']);
  assert.deepEqual(Object.keys(conn.body.ssh).sort(), ['host', 'port']);
  assert.equal(typeof conn.body.host, 'string');
  assert.ok(Number.isInteger(conn.body.port) && conn.body.port > 0);
  assert.ok(conn.body.token.length >= 16);

  const r = await agentExecute(conn.body, 'printf "%s|%s" "$FOO" "$GREETING"; echo oops >&2; exit 7');
  assert.equal(r.stdout, 'bar baz|hé');
  assert.equal(r.stderr, 'oops\n');
  assert.equal(r.ended, true);
  assert.equal(r.exitCode, 7);

  // A wrong token is refused with UNAUTHENTICATED and nothing runs.
  await assert.rejects(agentExecute({ ...conn.body, token: `${conn.body.token}x` }, 'touch /home/user/pwned'), (e) => e.code === grpc.status.UNAUTHENTICATED);
  const check = await agentExecute(conn.body, 'test -e /home/user/pwned && echo yes || echo no');
  assert.equal(check.stdout, 'no\n');

  // The token opens this sandbox only.
  const other = await api(server, 'POST', '/api/v1/sandboxes', { key, body: {} });
  assert.equal(other.status, 201);
  // Without options: E2B's default sandbox, 2 cores and 512 MiB, enforced by its cgroup.
  assert.equal(other.body.cpu, 2);
  assert.equal(other.body.memoryMb, 512);
  assert.equal(cpuLimit(other.body.id), '200000 per 100000');
  const otherConn = (await api(server, 'GET', `/api/v1/sandboxes/${other.body.id}/connection`, { key })).body;
  await assert.rejects(agentExecute({ ...otherConn, token: conn.body.token }, 'true'), (e) => e.code === grpc.status.UNAUTHENTICATED);
  assert.equal((await api(server, 'DELETE', `/api/v1/sandboxes/${other.body.id}`, { key })).status, 204);
  assert.equal((await api(server, 'DELETE', `/api/v1/sandboxes/${sb.id}`, { key })).status, 204);
});

test('exec programs see the sandbox envs', async () => {
  const c = await api(server, 'POST', '/api/v1/sandboxes', { key, body: { envs: { FOO: 'from-envs' } } });
  assert.equal(c.status, 201);
  const { run } = await import('../lib/harness.mjs');
  const r = await run(server, { code: 'import os\nprint(os.environ.get("FOO"))', language: 'python', containerId: c.body.id }, { key });
  assert.equal(text(r.chunks, { type: 'stdout' }), 'from-envs\n');
  assert.equal((await api(server, 'DELETE', `/api/v1/sandboxes/${c.body.id}`, { key })).status, 204);
});

test('POST /timeout extends expiresAt', async () => {
  const c = await api(server, 'POST', '/api/v1/sandboxes', { key, body: { timeoutMs: 60_000 } });
  assert.equal(c.status, 201);
  const t0 = Date.now();
  const r = await api(server, 'POST', `/api/v1/sandboxes/${c.body.id}/timeout`, { key, body: { timeoutMs: 600_000 } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.id, c.body.id);
  assert.equal(r.body.state, 'running');
  const exp = Date.parse(r.body.expiresAt);
  assert.ok(exp > Date.parse(c.body.expiresAt));
  assert.ok(Math.abs(exp - (t0 + 600_000)) < 5000, `expiresAt ${r.body.expiresAt}`);
  assert.deepEqual((await api(server, 'GET', `/api/v1/sandboxes/${c.body.id}`, { key })).body, r.body);
  assertError(await api(server, 'POST', `/api/v1/sandboxes/${c.body.id}/timeout`, { key, body: {} }), 400, 'bad_request');
  assertError(await api(server, 'POST', `/api/v1/sandboxes/${c.body.id}/timeout`, { key, body: { timeoutMs: -1 } }), 400, 'bad_request');
  assert.equal((await api(server, 'DELETE', `/api/v1/sandboxes/${c.body.id}`, { key })).status, 204);
});

test('a sandbox created with timeoutMs 3000 is killed after its TTL', async () => {
  const c = await api(server, 'POST', '/api/v1/sandboxes', { key, body: { timeoutMs: 3000 } });
  assert.equal(c.status, 201);
  const id = c.body.id;
  const conn = (await api(server, 'GET', `/api/v1/sandboxes/${id}/connection`, { key })).body;
  await until(
    async () => {
      const g = await api(server, 'GET', `/api/v1/sandboxes/${id}`, { key });
      return (g.status === 200 && g.body.state === 'killed') || g.status === 404;
    },
    { timeoutMs: 30_000, intervalMs: 500, what: `sandbox ${id} killed after its TTL` },
  );
  const list = await api(server, 'GET', '/api/v1/sandboxes', { key });
  assert.ok(!list.body.some((s) => s.id === id), 'an expired sandbox is still listed');
  // its agent is really gone
  await assert.rejects(agentExecute(conn, 'true'));
});

test('DELETE → 204, then GET shows killed, the list omits it, exec and connection → 409', async () => {
  const c = await api(server, 'POST', '/api/v1/sandboxes', { key, body: {} });
  assert.equal(c.status, 201);
  const id = c.body.id;
  const conn = (await api(server, 'GET', `/api/v1/sandboxes/${id}/connection`, { key })).body;
  const d = await api(server, 'DELETE', `/api/v1/sandboxes/${id}`, { key });
  assert.equal(d.status, 204, d.text);
  assert.equal(d.text, '');
  const g = await api(server, 'GET', `/api/v1/sandboxes/${id}`, { key });
  assert.equal(g.status, 200, g.text);
  assert.equal(g.body.state, 'killed');
  const list = await api(server, 'GET', '/api/v1/sandboxes', { key });
  assert.ok(!list.body.some((s) => s.id === id));
  assertError(await api(server, 'POST', '/api/sandbox/exec', { key, body: { code: 'print(1)', language: 'python', containerId: id } }), 409, 'conflict');
  assertError(await api(server, 'GET', `/api/v1/sandboxes/${id}/connection`, { key }), 409, 'conflict');
  await assert.rejects(agentExecute(conn, 'true'));
});

test('an execution ends at once when its sandbox is killed, by DELETE or at its TTL, and says so', async () => {
  const program = 'import time\nprint("started", flush=True)\ntime.sleep(120)\n';
  const deleted = await api(server, 'POST', '/api/v1/sandboxes', { key, body: {} });
  const expiring = await api(server, 'POST', '/api/v1/sandboxes', { key, body: { timeoutMs: 5000 } });
  assert.equal(deleted.status, 201, deleted.text);
  assert.equal(expiring.status, 201, expiring.text);
  const runs = [];
  for (const sb of [deleted.body, expiring.body]) {
    const { executionId } = await exec(server, { code: program, language: 'python', containerId: sb.id, timeout: 200_000 }, { key });
    runs.push({ sb, executionId });
  }
  for (const { executionId } of runs) {
    await until(async () => text((await logs(server, executionId, { key })).chunks) === 'started\n', { what: 'started', timeoutMs: 30_000 });
  }
  const d = await api(server, 'DELETE', `/api/v1/sandboxes/${deleted.body.id}`, { key });
  assert.equal(d.status, 204, d.text);
  // Well before the 30 s the server keeps trying to reach an agent that went away.
  for (const { sb, executionId } of runs) {
    const ex = await waitExecution(server, executionId, { key, timeoutMs: 20_000 });
    assert.equal(ex.status, 'error', JSON.stringify(ex));
    assert.equal(ex.error, `sandbox ${sb.id} was killed while the execution ran`);
    const l = await logs(server, executionId, { key });
    assert.equal(l.complete, true);
    assert.equal(text(l.chunks, { type: 'stdout' }), 'started\n');
  }
});
