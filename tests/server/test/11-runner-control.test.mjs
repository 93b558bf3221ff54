// The runner's own control API (API.md, "Runners"), called directly as the server
// does: bad creates leave nothing, the process limit holds against a fork loop, the
// time to live is enforced by the runner itself (also across a restart), and the
// server's timeout changes reach the runner.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import {
  startServer, runnerControl, runningContainers, agentExecute, api, cleanupSandboxes, killLeftovers, tmpRoot, newKey, until, sleep, SB_ID,
} from '../lib/harness.mjs';

const root = tmpRoot();
const apiKey = newKey('admin');
let server = await startServer({ root, apiKey });
after(async () => {
  await cleanupSandboxes(server);
  const runner = runnerControl(server);
  for (const sb of (await runner.call('GET', '/sandboxes')).body ?? []) await runner.call('DELETE', `/sandboxes/${sb.id}`);
  await killLeftovers(server);
  await server.stop();
});

const DEFAULT = { template: 'default', cpuMillis: 1000, memoryMb: 256 };

const containers = () => runningContainers(server);

/** A sandbox cgroup's pids.max (cgroup v2 or v1). */
function pidsMax(id) {
  const v2 = `/sys/fs/cgroup/sandstream/${id}/pids.max`;
  return readFileSync(existsSync(v2) ? v2 : `/sys/fs/cgroup/pids/sandstream/${id}/pids.max`, 'utf8').trim();
}

/** Whether sandbox `id` has neither a runc container (running or stopped) nor a netns. */
const removed = (id) => !execFileSync('runc', ['list', '-q'], { encoding: 'utf8' }).split('\n').includes(id)
  && !execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes(id);

const recordPath = (id) => path.join(server.dataDir, 'runner', 'records', `${id}.json`);

test('the control API refuses a missing or wrong secret, and bad creates leave nothing behind', async () => {
  const runner = runnerControl(server);
  for (const token of [null, 'wrong']) {
    const r = await runner.call('POST', '/sandboxes', DEFAULT, { token });
    assert.equal(r.status, 401, r.text);
    assert.equal(r.body.code, 'unauthorized');
  }
  const before = containers();
  const bad = [
    [{ pids: 7 }, 'pids must be between 8 and 32768, got 7'],
    [{ pids: 40_000 }, 'pids must be between 8 and 32768, got 40000'],
    [{ timeoutMs: 999 }, 'timeoutMs must be between 1000 and 86400000, got 999'],
    [{ metadata: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) }, /^metadata: at most 64 entries/],
    [{ template: 'nope' }, /nope/],
  ];
  for (const [extra, message] of bad) {
    const r = await runner.call('POST', '/sandboxes', { ...DEFAULT, ...extra });
    assert.equal(r.status, 400, `${JSON.stringify(extra)}: ${r.text}`);
    assert.equal(r.body.code, 'bad_request');
    if (typeof message === 'string') assert.equal(r.body.message, message);
    else assert.match(r.body.message, message);
  }
  assert.deepEqual((await runner.call('GET', '/sandboxes')).body, []);
  assert.deepEqual(containers(), before);
  const r = await runner.call('GET', '/sandboxes/sb-0123456789');
  assert.equal(r.status, 404, r.text);
  assert.equal(r.body.code, 'not_found');
});

test('a process limit of 32 stops a fork loop inside the sandbox', async () => {
  const runner = runnerControl(server);
  const c = await runner.call('POST', '/sandboxes', { ...DEFAULT, pids: 32 });
  assert.equal(c.status, 201, c.text);
  const sb = c.body;
  assert.match(sb.id, SB_ID);
  assert.equal(pidsMax(sb.id), '32');
  // Forks children that sleep until the limit refuses one; prints how many it got and
  // the errno (11, EAGAIN) of the refusal.
  const loop = [
    'import os, time',
    'n = 0',
    'for i in range(200):',
    '    try:',
    '        pid = os.fork()',
    '    except OSError as e:',
    '        print(n, e.errno)',
    '        break',
    '    if pid == 0:',
    '        time.sleep(5)',
    '        os._exit(0)',
    '    n += 1',
    'else:',
    '    print(n, 0)',
  ].join('\n');
  const r = await agentExecute(sb, `python3 -c '${loop}'`);
  assert.equal(r.exitCode, 0, r.stderr);
  const [forked, errno] = r.stdout.trim().split(' ').map(Number);
  assert.equal(errno, 11, `the fork loop was not refused: ${r.stdout}`);
  // 32 in all: the agent, its shell, python and the children (the agent's threads count too).
  assert.ok(forked > 0 && forked < 32, `forked ${forked} children under pids.max 32`);
  // The agent still serves once the children are gone.
  await until(async () => (await agentExecute(sb, 'echo alive')).stdout === 'alive\n', { timeoutMs: 20_000, what: 'the agent answering again' });
  assert.equal((await runner.call('DELETE', `/sandboxes/${sb.id}`)).status, 204);
});

test('the runner kills a sandbox at the end of its time to live, after an extension', async () => {
  const runner = runnerControl(server);
  const t0 = Date.now();
  const c = await runner.call('POST', '/sandboxes', { ...DEFAULT, timeoutMs: 2000, metadata: { owner: 'e2e' } });
  assert.equal(c.status, 201, c.text);
  const sb = c.body;
  assert.deepEqual(sb.metadata, { owner: 'e2e' });
  assert.ok(sb.expiresAt >= t0 + 2000 && sb.expiresAt <= Date.now() + 2000, `expiresAt ${sb.expiresAt}, t0 ${t0}`);
  assert.deepEqual((await runner.call('GET', `/sandboxes/${sb.id}`)).body, sb);
  assert.deepEqual(JSON.parse(readFileSync(recordPath(sb.id), 'utf8')), { expiresAt: sb.expiresAt, metadata: { owner: 'e2e' } });

  const bad = await runner.call('POST', `/sandboxes/${sb.id}/timeout`, { timeoutMs: 0 });
  assert.equal(bad.status, 400, bad.text);
  const t1 = Date.now();
  const ext = await runner.call('POST', `/sandboxes/${sb.id}/timeout`, { timeoutMs: 5000 });
  assert.equal(ext.status, 200, ext.text);
  assert.ok(ext.body.expiresAt >= t1 + 5000, `extended to ${ext.body.expiresAt}, asked at ${t1}`);
  // Past the first deadline it still runs.
  await sleep(Math.max(0, sb.expiresAt + 1500 - Date.now()));
  assert.equal((await agentExecute(sb, 'echo still')).stdout, 'still\n');
  assert.ok(containers().includes(sb.id));

  await until(async () => (await runner.call('GET', `/sandboxes/${sb.id}`)).status === 404, {
    timeoutMs: 15_000, intervalMs: 100, what: 'the runner dropping the expired sandbox',
  });
  const gone = Date.now();
  assert.ok(gone >= ext.body.expiresAt, `killed at ${gone}, before its deadline ${ext.body.expiresAt}`);
  // The runner unlists a sandbox before its container is gone: wait for that too.
  await until(() => !containers().includes(sb.id), { timeoutMs: 10_000, intervalMs: 100, what: 'the expired container removed' });
  assert.ok(!existsSync(recordPath(sb.id)), 'its record is left');
  await assert.rejects(agentExecute(sb, 'true'));
  assert.match(readFileSync(server.logPath, 'utf8'), new RegExp(`sandbox reached its time to live; killing it sandbox_id=${sb.id}`));
});

test("a sandbox's time to live survives a runner restart", async () => {
  let runner = runnerControl(server);
  const c = await runner.call('POST', '/sandboxes', { ...DEFAULT, timeoutMs: 12_000, metadata: { kept: 'yes' } });
  assert.equal(c.status, 201, c.text);
  const sb = c.body;
  const stopped = await server.stop();
  assert.ok(stopped.code === 0 || stopped.signal === 'SIGTERM', `server exit: ${JSON.stringify(stopped)}`);
  server = await startServer({ root, apiKey });
  runner = runnerControl(server);
  const g = await runner.call('GET', `/sandboxes/${sb.id}`);
  assert.equal(g.status, 200, g.text);
  assert.equal(g.body.expiresAt, sb.expiresAt);
  assert.deepEqual(g.body.metadata, { kept: 'yes' });
  assert.equal((await agentExecute(g.body, 'echo back')).stdout, 'back\n');
  // The server never knew this sandbox and would remove it 30 s after seeing it; the
  // runner's deadline comes first.
  await until(async () => (await runner.call('GET', `/sandboxes/${sb.id}`)).status === 404, {
    timeoutMs: 25_000, intervalMs: 100, what: 'the expired sandbox removed after the restart',
  });
  assert.ok(Date.now() >= sb.expiresAt);
  await until(() => !containers().includes(sb.id), { timeoutMs: 10_000, intervalMs: 100, what: 'the expired container removed' });
  const log = readFileSync(server.logPath, 'utf8');
  assert.match(log, new RegExp(`sandbox reached its time to live; killing it sandbox_id=${sb.id}`));
});

test("the server's timeout reaches the runner: create and extend", async () => {
  const runner = runnerControl(server);
  const c = await api(server, 'POST', '/api/v1/sandboxes', { body: { timeoutMs: 60_000, metadata: { via: 'server' } } });
  assert.equal(c.status, 201, c.text);
  const id = c.body.id;
  const onRunner = (await runner.call('GET', `/sandboxes/${id}`)).body;
  const serverExpiry = Date.parse(c.body.expiresAt);
  assert.ok(Math.abs(onRunner.expiresAt - serverExpiry) < 1000, `runner ${onRunner.expiresAt}, server ${serverExpiry}`);
  assert.deepEqual(onRunner.metadata, { via: 'server' });
  const t = await api(server, 'POST', `/api/v1/sandboxes/${id}/timeout`, { body: { timeoutMs: 600_000 } });
  assert.equal(t.status, 200, t.text);
  const extended = (await runner.call('GET', `/sandboxes/${id}`)).body;
  assert.ok(Math.abs(extended.expiresAt - Date.parse(t.body.expiresAt)) < 1000, `runner ${extended.expiresAt}, server ${t.body.expiresAt}`);
  assert.ok(extended.expiresAt > onRunner.expiresAt + 500_000);
  assert.equal((await api(server, 'DELETE', `/api/v1/sandboxes/${id}`)).status, 204);
  assert.equal((await runner.call('GET', `/sandboxes/${id}`)).status, 404);
});

test('a sandbox whose agent dies is removed by the runner, and the server marks it killed', async () => {
  const runner = runnerControl(server);
  const c = await api(server, 'POST', '/api/v1/sandboxes', { body: {} });
  assert.equal(c.status, 201, c.text);
  const id = c.body.id;
  assert.equal((await runner.call('GET', `/sandboxes/${id}`)).status, 200);
  execFileSync('runc', ['kill', id, 'KILL']);
  await until(async () => (await runner.call('GET', `/sandboxes/${id}`)).status === 404, {
    timeoutMs: 10_000, intervalMs: 100, what: 'the dead sandbox unlisted',
  });
  await until(() => removed(id), { timeoutMs: 10_000, what: "the dead sandbox's container and netns removed" });
  assert.equal(existsSync(recordPath(id)), false, 'its record removed');
  assert.match(readFileSync(server.logPath, 'utf8'), new RegExp(`sandbox's agent is no longer running; removing the sandbox sandbox_id=${id}`));
  // The next heartbeats leave it out; the server stops calling it running.
  await until(async () => (await api(server, 'GET', `/api/v1/sandboxes/${id}`)).body?.state !== 'running', {
    timeoutMs: 60_000, intervalMs: 250, what: 'the server no longer calling it running',
  });
  const g = await api(server, 'GET', `/api/v1/sandboxes/${id}`);
  assert.ok(g.status === 404 || g.body.state === 'killed', `${g.status} ${g.text}`);
});

test('a pooled sandbox that died is never handed out: it is removed and a live one is made', async () => {
  const pooled = await startServer({ root: tmpRoot(), apiKey: newKey('admin'), args: ['--warm-pool', '1'] });
  try {
    const runner = runnerControl(pooled);
    // Nothing is listed, so the one container is the pool's.
    await until(() => runningContainers(pooled).length === 1, { timeoutMs: 60_000, what: 'the warm pool filled' });
    const [dead] = runningContainers(pooled);
    execFileSync('runc', ['kill', dead, 'KILL']);
    await until(() => !runningContainers(pooled).includes(dead), { timeoutMs: 10_000, what: 'the pooled agent dead' });
    // Exactly what the pool serves: the default template with default limits.
    const c = await runner.call('POST', '/sandboxes', { template: 'default', cpuMillis: 2000, memoryMb: 512 });
    assert.equal(c.status, 201, c.text);
    assert.notEqual(c.body.id, dead);
    assert.equal((await agentExecute(c.body, 'echo alive')).stdout, 'alive\n');
    assert.deepEqual((await runner.call('GET', '/sandboxes')).body.map((s) => s.id), [c.body.id]);
    await until(() => removed(dead), { timeoutMs: 10_000, what: 'the dead pooled sandbox removed' });
    assert.match(readFileSync(pooled.logPath, 'utf8'), new RegExp(`a pooled sandbox's agent does not answer; removing it sandbox_id=${dead}`));
    assert.equal((await runner.call('DELETE', `/sandboxes/${c.body.id}`)).status, 204);
  } finally {
    await killLeftovers(pooled);
    await pooled.stop();
  }
});
