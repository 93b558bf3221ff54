// Restart on the same data dir: sandboxes, executions and logs survive; a running
// execution completes afterwards with every line exactly once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  connectClient, chunkView, startServer, cleanupSandboxes, killLeftovers, sleep, assertError, tmpRoot, newKey, api, exec, run, waitExecution, logs, text, assertContiguous, until, createTenant,
} from '../lib/harness.mjs';

const root = tmpRoot();
const apiKey = newKey('admin');
// Each execution keeps at most this much output (the last test crosses it).
const OUTPUT_LIMIT = 300_000;
const args = ['--max-output-bytes', String(OUTPUT_LIMIT)];
let server = await startServer({ root, apiKey, args });
const allKeys = new Set([apiKey]);
after(async () => {
  for (const k of allKeys) server.keys.add(k);
  await cleanupSandboxes(server);
  await sleep(300);
  const leftovers = await killLeftovers(server);
  if (leftovers.length) console.error(`[e2e] sandboxes still running after DELETE (server bug), killed through the runner: ${leftovers}`);
  await server.stop();
});
let survivor; // a sandbox created before the first restart
let doomed; // another one, deleted after the restart

async function restart() {
  for (const k of server.keys) allKeys.add(k);
  const stopped = await server.stop();
  assert.ok(stopped.code === 0 || stopped.signal === 'SIGTERM', `server exit: ${JSON.stringify(stopped)}`);
  server = await startServer({ root, apiKey, args });
  for (const k of allKeys) server.keys.add(k);
}

const LINES = 40;
const EXPECTED = Array.from({ length: LINES }, (_, i) => `line ${i + 1}\n`).join('');
const SLOW = `import time\nfor i in range(1, ${LINES + 1}):\n    print(f"line {i}", flush=True)\n    time.sleep(0.2)\n`;

test('sandboxes, executions and logs survive a restart; running executions finish exactly once', async () => {
  const { key } = await createTenant(server, 'restart');
  allKeys.add(key);
  const first = await run(server, { code: 'open("/home/user/before.txt", "w").write("kept")\nprint("before restart")', language: 'python' }, { key });
  assert.equal(first.execution.status, 'success');
  const containerId = first.data.containerId;
  survivor = { key, containerId };
  const sbBefore = (await api(server, 'GET', `/api/v1/sandboxes/${containerId}`, { key })).body;

  // A second sandbox runs a slow program across the restart.
  const slow = await exec(server, { code: SLOW, language: 'python' }, { key });
  doomed = { key, containerId: slow.containerId };
  await until(async () => (await logs(server, slow.executionId, { key })).chunks.length >= 6, { what: 'slow program output', timeoutMs: 30_000 });

  await restart();

  // The tenant key and both sandboxes are still there and running.
  const list = await until(
    async () => {
      const l = await api(server, 'GET', '/api/v1/sandboxes', { key });
      assert.equal(l.status, 200, l.text);
      return l.body.length === 2 && l.body.every((s) => s.state === 'running') ? l.body : null;
    },
    { timeoutMs: 30_000, what: 'both sandboxes running after the restart' },
  );
  const sbAfter = list.find((s) => s.id === containerId);
  assert.ok(sbAfter);
  assert.deepEqual({ ...sbAfter, state: undefined }, { ...sbBefore, state: undefined });

  // The old execution and its logs.
  const oldEx = await api(server, 'GET', `/api/v1/executions/${first.data.executionId}`, { key });
  assert.equal(oldEx.status, 200, oldEx.text);
  assert.deepEqual(oldEx.body, first.execution);
  const oldLogs = await logs(server, first.data.executionId, { key });
  assert.deepEqual(oldLogs.chunks, first.chunks);
  assert.equal(oldLogs.complete, true);

  // The execution that was running finishes with every line exactly once.
  const ex = await waitExecution(server, slow.executionId, { key, timeoutMs: 60_000 });
  assert.equal(ex.status, 'success', JSON.stringify(ex));
  assert.equal(ex.exitCode, 0);
  const l = await logs(server, slow.executionId, { key });
  assert.equal(l.complete, true);
  assertContiguous(l.chunks, 'across the restart');
  assert.equal(text(l.chunks, { type: 'stdout', phase: 'run' }), EXPECTED);
  assert.equal(text(l.chunks, { type: 'stderr' }), '');

  // socket.io on the restarted server replays the cross-restart execution.
  const client = await connectClient(server, key);
  try {
    client.resume(slow.executionId, 0);
    const done = await client.waitEvent('execution-complete', (p) => p.executionId === slow.executionId, { timeoutMs: 15_000 });
    assert.equal(done.status, 'success');
    assert.equal(done.exitCode, 0);
    assert.deepEqual(client.outputs(slow.executionId).map(chunkView), l.chunks);
  } finally {
    client.close();
  }

  // A new exec in the old sandbox works and sees the file written before the restart.
  const again = await run(server, { code: 'print(open("/home/user/before.txt").read())', language: 'python', containerId }, { key });
  assert.equal(again.execution.status, 'success', JSON.stringify(again));
  assert.equal(text(again.chunks, { type: 'stdout' }), 'kept\n');
});

test('after a restart, DELETE of a sandbox from before the restart really kills it', async () => {
  assert.ok(doomed, 'needs the sandbox of the first test');
  const d = await api(server, 'DELETE', `/api/v1/sandboxes/${doomed.containerId}`, { key: doomed.key });
  assert.equal(d.status, 204, d.text);
  const g = await api(server, 'GET', `/api/v1/sandboxes/${doomed.containerId}`, { key: doomed.key });
  assert.equal(g.body.state, 'killed');
  await sleep(500);
  const stillRunning = await killLeftovers(server, [doomed.containerId]);
  assert.deepEqual(stillRunning, [], 'DELETE answered 204 but the container still runs (the test killed it through the runner)');
});

test('after a restart, sandboxes can be created, used and killed', async () => {
  const { key } = await createTenant(server, 'after-restart');
  allKeys.add(key);
  const c = await api(server, 'POST', '/api/v1/sandboxes', { key, body: {} });
  assert.equal(c.status, 201, `POST /api/v1/sandboxes after a restart: ${c.status} ${c.text}`);
  const r = await run(server, { code: 'print("new")', language: 'python' }, { key });
  assert.equal(text(r.chunks, { type: 'stdout' }), 'new\n');
  // DELETE really kills: the agent of a deleted sandbox is gone.
  const d = await api(server, 'DELETE', `/api/v1/sandboxes/${c.body.id}`, { key });
  assert.equal(d.status, 204);
  await sleep(500);
  const stillRunning = await killLeftovers(server, [c.body.id]);
  assert.deepEqual(stillRunning, [], 'DELETE answered 204 but the container still runs');
});

test('an execution started just before SIGTERM completes after the restart', async () => {
  assert.ok(survivor, 'needs the sandbox of the first test');
  const { key, containerId } = survivor;
  const slow = await exec(server, { code: SLOW, language: 'python', containerId }, { key });
  await until(async () => (await logs(server, slow.executionId, { key })).chunks.length >= 1, { what: 'first output', timeoutMs: 30_000 });
  await restart();
  const ex = await waitExecution(server, slow.executionId, { key, timeoutMs: 60_000 });
  assert.equal(ex.status, 'success', JSON.stringify(ex));
  const l = await logs(server, slow.executionId, { key });
  assertContiguous(l.chunks);
  assert.equal(text(l.chunks, { type: 'stdout' }), EXPECTED);
});

test('the output limit counts what an execution stored before a restart', async () => {
  assert.ok(survivor, 'needs the sandbox of the first test');
  const { key, containerId } = survivor;
  const go = `/home/user/go-${Date.now()}`;
  // 200,000 bytes, then (once the file appears) 200,000 more, then a long sleep.
  const code = [
    'import os, sys, time',
    'sys.stdout.write(("a" * 99 + "\\n") * 2000); sys.stdout.flush()',
    `while not os.path.exists(${JSON.stringify(go)}): time.sleep(0.05)`,
    'sys.stdout.write(("b" * 99 + "\\n") * 2000); sys.stdout.flush()',
    'time.sleep(30)',
  ].join('\n');
  const flood = await exec(server, { code, language: 'python', containerId, timeout: 60_000 }, { key });
  await until(async () => text((await logs(server, flood.executionId, { key })).chunks).length === 200_000, { what: 'the first 200,000 bytes stored', timeoutMs: 30_000 });
  await restart();
  // The second half comes only now, to the restarted server.
  const poke = await run(server, { code: `open(${JSON.stringify(go)}, "w").close()`, language: 'python', containerId }, { key });
  assert.equal(poke.execution.status, 'success', JSON.stringify(poke));
  const ex = await waitExecution(server, flood.executionId, { key, timeoutMs: 30_000 });
  assert.equal(ex.status, 'error', JSON.stringify(ex));
  assert.equal(ex.exitCode, 137, JSON.stringify(ex));
  const l = await logs(server, flood.executionId, { key });
  assertContiguous(l.chunks);
  const stdout = text(l.chunks, { type: 'stdout' });
  assert.equal(stdout.length, OUTPUT_LIMIT, 'stdout kept across the restart');
  assert.ok(stdout === ('a'.repeat(99) + '\n').repeat(2000) + ('b'.repeat(99) + '\n').repeat(1000), 'stdout is not the first 300,000 bytes');
  assert.equal(
    text(l.chunks, { type: 'stderr' }),
    `\n[sandstream: output cut: the execution's output reached the server's limit of ${OUTPUT_LIMIT} bytes (--max-output-bytes), so the program was stopped]\n`,
  );
});
