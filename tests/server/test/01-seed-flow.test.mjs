// Design note 000's flow: POST /api/sandbox/exec, join-container, execution-output,
// execution-complete; plus resume-execution for what the client missed, and
// socketSessionId delivery.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  fileServer, api, connectClient, SB_ID, assertContiguous, chunkView, text, logs, waitExecution, createTenant,
} from '../lib/harness.mjs';

const server = await fileServer(after);

const ACCEPTED_MESSAGE = 'Execution started. Connect to WebSocket for real-time logs.';

test('seed 000 flow: python with requirements.txt, join after 202, resume from 0', async (t) => {
  const tenant = await createTenant(server, 'seed-flow');
  const key = tenant.key;
  const client = await connectClient(server, key);
  t.after(() => client.close());

  const code = [
    'import six, sys',
    'print("six", six.__version__)',
    'for i in range(3):',
    '    print(f"line {i}")',
    'print("done", six.PY3)',
  ].join('\n');
  const res = await api(server, 'POST', '/api/sandbox/exec', {
    key,
    body: { code, language: 'python', files: { 'requirements.txt': 'six==1.16.0' } },
  });
  assert.equal(res.status, 202, res.text);
  assert.deepEqual(Object.keys(res.body).sort(), ['data', 'status']);
  assert.equal(res.body.status, 'accepted');
  assert.deepEqual(Object.keys(res.body.data).sort(), ['containerId', 'executionId', 'message', 'sandboxId']);
  assert.equal(res.body.data.sandboxId, res.body.data.containerId);
  const { containerId, executionId, message } = res.body.data;
  assert.match(containerId, SB_ID);
  assert.equal(typeof executionId, 'string');
  assert.ok(executionId.length > 0);
  assert.equal(message, ACCEPTED_MESSAGE);
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${containerId}`, { key }));

  // The 202 came before the run: pip has not finished yet.
  const early = await api(server, 'GET', `/api/v1/executions/${executionId}`, { key });
  assert.equal(early.status, 200, early.text);
  assert.equal(early.body.status, 'running', `execution already finished at 202 time: ${early.text}`);

  // The sandbox was created and is listed.
  const list = await api(server, 'GET', '/api/v1/sandboxes', { key });
  assert.deepEqual(list.body.map((s) => s.id), [containerId]);

  const joined = await client.join(containerId);
  assert.deepEqual(joined, { containerId });
  client.resume(executionId, 0);
  const done = await client.waitEvent('execution-complete', (p) => p.executionId === executionId, { timeoutMs: 180_000 });
  assert.equal(done.exitCode, 0, JSON.stringify(done));
  assert.equal(done.status, 'success', JSON.stringify(done));
  assert.equal(done.containerId, containerId);
  assert.equal(typeof done.timestamp, 'string');
  assert.equal(typeof done.durationMs, 'number');

  const kept = client.kept(executionId);
  assertContiguous(kept, `kept by the client; raw arrivals: ${client.outputs(executionId).map((c) => c.seq).join(',')}`);
  for (const c of kept) {
    assert.equal(c.containerId, containerId);
    assert.ok(c.type === 'stdout' || c.type === 'stderr', JSON.stringify(c));
    assert.ok(c.phase === 'install' || c.phase === 'run', JSON.stringify(c));
  }
  // install chunks all come before run chunks
  const firstRun = kept.findIndex((c) => c.phase === 'run');
  assert.ok(firstRun > 0, 'no install output before the run output');
  assert.ok(kept.slice(firstRun).every((c) => c.phase === 'run'), 'install output after run output');
  const install = text(kept, { phase: 'install' });
  assert.match(install, /six==1\.16\.0|six-1\.16\.0/, `pip output: ${install}`);
  assert.match(install, /Successfully installed six-1\.16\.0|Requirement already satisfied: six==1\.16\.0/, install);
  assert.equal(text(kept, { phase: 'run', type: 'stdout' }), 'six 1.16.0\nline 0\nline 1\nline 2\ndone True\n');
  assert.equal(text(kept, { phase: 'run', type: 'stderr' }), '');

  // execution-phase events that arrived are in order install → run, and run arrived.
  // (Duplicates are checked by 02's "live events arrive once after resume"; here only
  // the order: the install phase may have started before the client joined.)
  const phases = client.phases(executionId).map((p) => p.phase).filter((p, i, a) => p !== a[i - 1]);
  assert.ok(phases.includes('run'), `phases: ${phases}`);
  assert.deepEqual(phases, phases.includes('install') ? ['install', 'run'] : ['run']);

  // The stored log is exactly what the socket delivered.
  const stored = await logs(server, executionId, { key });
  assert.equal(stored.complete, true);
  assert.deepEqual(stored.chunks, kept.map(chunkView));

  const ex = await waitExecution(server, executionId, { key });
  assert.equal(ex.status, 'success');
  assert.equal(ex.exitCode, 0);
  assert.equal(ex.language, 'python');
  assert.equal(ex.containerId, containerId);
});

test('socketSessionId: events go to that socket without join, not to the room', async (t) => {
  const tenant = await createTenant(server, 'session-id');
  const key = tenant.key;
  const sb = await api(server, 'POST', '/api/v1/sandboxes', { key, body: {} });
  assert.equal(sb.status, 201, sb.text);
  const containerId = sb.body.id;
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${containerId}`, { key }));

  const owner = await connectClient(server, key);
  const bystander = await connectClient(server, key);
  t.after(() => {
    owner.close();
    bystander.close();
  });
  await bystander.join(containerId);

  const code = 'import sys\nprint("to the session")\nprint("oops", file=sys.stderr)\nprint("bye")\n';
  const res = await api(server, 'POST', '/api/sandbox/exec', {
    key,
    body: { code, language: 'python', containerId, socketSessionId: owner.socket.id },
  });
  assert.equal(res.status, 202, res.text);
  assert.equal(res.body.data.containerId, containerId);
  const { executionId } = res.body.data;

  const done = await owner.waitEvent('execution-complete', (p) => p.executionId === executionId, { timeoutMs: 60_000 });
  assert.equal(done.status, 'success');
  assert.equal(done.exitCode, 0);
  const got = owner.outputs(executionId);
  assertContiguous(got, 'live delivery to socketSessionId');
  assert.equal(text(got, { type: 'stdout' }), 'to the session\nbye\n');
  assert.equal(text(got, { type: 'stderr' }), 'oops\n');
  assert.deepEqual(owner.phases(executionId).map((p) => p.phase), ['run']);
  assert.deepEqual((await logs(server, executionId, { key })).chunks, got.map(chunkView));

  // The room member saw none of it.
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(bystander.outputs(executionId).length, 0, 'the room got output addressed to a session');
  assert.equal(bystander.completes(executionId).length, 0, 'the room got execution-complete addressed to a session');
});
