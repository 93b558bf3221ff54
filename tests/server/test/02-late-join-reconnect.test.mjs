// Late join and reconnect: resume-execution gives a client everything exactly once
// (shown in seq order, each once, as API.md describes).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  fileServer, api, connectClient, exec, assertContiguous, chunkView, text, logs, waitExecution, createTenant, sleep, until,
} from '../lib/harness.mjs';

const server = await fileServer(after);

const COUNT = 200;
const EXPECTED = Array.from({ length: COUNT }, (_, i) => `${i + 1}\n`).join('');
const PROGRAM = `import time\nfor i in range(1, ${COUNT + 1}):\n    print(i, flush=True)\n    time.sleep(0.02)\n`;

async function newSandbox(key) {
  const r = await api(server, 'POST', '/api/v1/sandboxes', { key, body: {} });
  assert.equal(r.status, 201, r.text);
  return r.body.id;
}

function stdoutOf(chunks) {
  return text(chunks, { type: 'stdout', phase: 'run' });
}

test('late join mid-run and reconnect mid-run both get every chunk once, in order', async (t) => {
  const { key } = await createTenant(server, 'late-join');
  const containerId = await newSandbox(key);
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${containerId}`, { key }));

  // `first` is in the room from the start; `flaky` too, but drops its connection mid-run.
  const first = await connectClient(server, key);
  const flaky = await connectClient(server, key);
  t.after(() => {
    first.close();
    flaky.close();
  });
  await first.join(containerId);
  await flaky.join(containerId);

  const { executionId } = await exec(server, { code: PROGRAM, language: 'python', containerId }, { key });

  // Mid-run: flaky disconnects, keeping what it has.
  await flaky.waitUntil(() => flaky.lastKept(executionId) >= 60, { timeoutMs: 60_000, what: 'seq 60 on flaky' });
  flaky.socket.disconnect();
  const keptAtDisconnect = flaky.lastKept(executionId);

  // Mid-run: a late client connects, joins, resumes from 0.
  await first.waitUntil(() => first.lastKept(executionId) >= 120, { timeoutMs: 60_000, what: 'seq 120 on first' });
  const late = await connectClient(server, key);
  t.after(() => late.close());
  await late.join(containerId);
  late.resume(executionId, 0);

  // flaky comes back, joins again and resumes from the last seq it kept.
  await sleep(300);
  flaky.socket.connect();
  await flaky.connected();
  await flaky.join(containerId);
  flaky.resume(executionId, flaky.lastKept(executionId));

  const ex = await waitExecution(server, executionId, { key, timeoutMs: 60_000 });
  assert.equal(ex.status, 'success');
  for (const c of [first, late, flaky]) {
    await c.waitEvent('execution-complete', (p) => p.executionId === executionId, { timeoutMs: 15_000 });
  }
  const stored = await logs(server, executionId, { key });
  assert.equal(stored.complete, true);
  assert.equal(stdoutOf(stored.chunks), EXPECTED, 'stored log');
  assertContiguous(stored.chunks, 'stored log');

  for (const [name, c] of [['first', first], ['late', late], ['flaky', flaky]]) {
    const kept = c.kept(executionId);
    const raw = c.outputs(executionId).map((x) => x.seq);
    assertContiguous(kept, `${name}: kept seqs; raw arrival order: ${raw.join(',')}`);
    assert.equal(stdoutOf(kept), EXPECTED, `${name}: output`);
    assert.deepEqual(kept.map(chunkView), stored.chunks, `${name}: chunks differ from the stored log`);
  }
  assert.ok(keptAtDisconnect < stored.chunks.length, 'flaky did not disconnect mid-run');
});

test('after resume, live events arrive once (not once per room)', async (t) => {
  const { key } = await createTenant(server, 'dup');
  const containerId = await newSandbox(key);
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${containerId}`, { key }));
  const c = await connectClient(server, key);
  t.after(() => c.close());
  await c.join(containerId);
  const code = 'import time\nfor i in range(8):\n    print(f"tick {i}", flush=True)\n    time.sleep(0.25)\n';
  const { executionId } = await exec(server, { code, language: 'python', containerId }, { key });
  await c.waitUntil(() => c.lastKept(executionId) >= 2, { what: 'seq 2' });
  c.resume(executionId, c.lastKept(executionId));
  await c.waitEvent('execution-complete', (p) => p.executionId === executionId, { timeoutMs: 30_000 });
  await sleep(500);
  const kept = c.kept(executionId);
  assertContiguous(kept);
  assert.equal(stdoutOf(kept), Array.from({ length: 8 }, (_, i) => `tick ${i}\n`).join(''));
  // The replay covered what existed at resume time; chunks produced a second later
  // (the program runs 2 s) are live only and must arrive exactly once.
  const raw = c.outputs(executionId).map((x) => x.seq);
  const last = kept[kept.length - 1].seq;
  const timesLast = raw.filter((s) => s === last).length;
  assert.equal(timesLast, 1, `the last chunk (seq ${last}) arrived ${timesLast} times; raw arrivals: ${raw.join(',')}`);
  assert.equal(c.completes(executionId).length, 1, `execution-complete arrived ${c.completes(executionId).length} times`);
});

test('resume after completion replays everything then execution-complete', async (t) => {
  const { key } = await createTenant(server, 'resume-done');
  const c = await connectClient(server, key);
  t.after(() => c.close());
  const { executionId, containerId } = await exec(server, { code: 'print("a")\nprint("b")\n', language: 'python' }, { key });
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${containerId}`, { key }));
  await waitExecution(server, executionId, { key });
  const stored = await logs(server, executionId, { key });
  c.resume(executionId, 0);
  const done = await c.waitEvent('execution-complete', (p) => p.executionId === executionId, { timeoutMs: 15_000 });
  assert.equal(done.status, 'success');
  assert.equal(done.exitCode, 0);
  assert.deepEqual(c.outputs(executionId).map(chunkView), stored.chunks);
  // complete comes after the replayed chunks
  const evs = c.events.filter((e) => e.payload?.executionId === executionId).map((e) => e.ev);
  assert.equal(evs[evs.length - 1], 'execution-complete');
  assert.equal(stdoutOf(stored.chunks), 'a\nb\n');
  // resume from the middle replays only the tail
  const from = stored.chunks[0].seq;
  const c2 = await connectClient(server, key);
  t.after(() => c2.close());
  c2.resume(executionId, from);
  await c2.waitEvent('execution-complete', (p) => p.executionId === executionId, { timeoutMs: 15_000 });
  assert.deepEqual(c2.outputs(executionId).map(chunkView), stored.chunks.filter((x) => x.seq > from));
});

test('late join with a pause between container-joined and resume (API.md procedure) still gets everything once', async (t) => {
  // API.md: "A client that joins late or reconnects: join the room first, then
  // resume-execution from the last seq it kept (0 for everything)", and clients drop a
  // chunk whose seq is not greater than the last one kept. A client whose resume is sent
  // 300 ms after its join (a slow page, a busy event loop) must still end up with 1..N.
  const { key } = await createTenant(server, 'late-join-pause');
  const containerId = await newSandbox(key);
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${containerId}`, { key }));
  const { executionId } = await exec(server, { code: PROGRAM, language: 'python', containerId }, { key });
  await until(async () => (await logs(server, executionId, { key })).chunks.length >= 40, { what: '40 chunks stored', timeoutMs: 30_000 });
  const late = await connectClient(server, key);
  t.after(() => late.close());
  await late.join(containerId);
  await sleep(300);
  late.resume(executionId, 0);
  await late.waitEvent('execution-complete', (p) => p.executionId === executionId, { timeoutMs: 60_000 });
  const stored = await logs(server, executionId, { key });
  const kept = late.kept(executionId);
  const raw = late.outputs(executionId).map((x) => x.seq);
  assertContiguous(kept, `raw arrival order (first 80): ${raw.slice(0, 80).join(',')}`);
  assert.deepEqual(kept.map(chunkView), stored.chunks);
});

test('a replay longer than the socket send buffer arrives complete, then execution-complete', async (t) => {
  // The server queues at most 1024 packets per socket; a replay of thousands of chunks
  // must wait for room instead of dropping the rest.
  const { key } = await createTenant(server, 'long-replay');
  const n = 2000;
  const code = `import sys, time\nfor i in range(1, ${n + 1}):\n    print(i, flush=True)\n    time.sleep(0.001)\n`;
  const { executionId, containerId } = await exec(server, { code, language: 'python' }, { key });
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${containerId}`, { key }));
  await waitExecution(server, executionId, { key, timeoutMs: 60_000 });
  const stored = [];
  for (let after = 0; ; ) {
    const page = await logs(server, executionId, { key, afterSeq: after });
    stored.push(...page.chunks);
    if (page.chunks.length === 0 || page.complete) break;
    after = page.chunks[page.chunks.length - 1].seq;
  }
  assert.ok(stored.length > 1100, `the program must produce more chunks than the buffer holds; got ${stored.length}`);
  const c = await connectClient(server, key);
  t.after(() => c.close());
  c.resume(executionId, 0);
  await c.waitEvent('execution-complete', (p) => p.executionId === executionId, { timeoutMs: 60_000 });
  const kept = c.kept(executionId);
  assert.equal(kept.length, stored.length, 'every stored chunk is replayed');
  assert.equal(stdoutOf(kept), Array.from({ length: n }, (_, i) => `${i + 1}\n`).join(''));
});
