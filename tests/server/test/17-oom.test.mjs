// An out-of-memory kill in words: a program that goes past its sandbox's memory limit
// ends with exit code 137, status error, `oomKilled: true` and an `error` that names the
// limit, in the execution's JSON (GET /api/v1/executions/{id}) and in
// `execution-complete`, live and replayed. An ordinary failure, and a SIGKILL that is not
// the out-of-memory killer's (also 137), say none of that.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileServer, api, exec, connectClient, createTenant, logs, run, text, waitExecution } from '../lib/harness.mjs';

const server = await fileServer(after);
const { key } = await createTenant(server, 'oom');
const MEMORY_MB = 64;
const sb = await api(server, 'POST', '/api/v1/sandboxes', { key, body: { memoryMb: MEMORY_MB } });
assert.equal(sb.status, 201, sb.text);
assert.equal(sb.body.memoryMb, MEMORY_MB);
const containerId = sb.body.id;
// (fileServer's after hook deletes it with every other sandbox of this key.)

const OOM_ERROR = `the program was killed by the out-of-memory killer: the sandbox reached its memory limit of ${MEMORY_MB} MiB`;
// Python's own MemoryError never comes: the memory is there to take (no ulimit), until
// the cgroup's limit, where the kernel kills the program.
const HOG = ['print("allocating", flush=True)', 'kept = []', 'while True:', '    kept.append(b"x" * (8 << 20))'].join('\n');

/** The end as a user sees it, from the execution's JSON or a complete event. */
const end = (e) => ({ status: e.status, exitCode: e.exitCode, oomKilled: e.oomKilled, error: e.error });

test('a program past the memory limit: exit 137, oomKilled and the words, on REST and socket.io', async (t) => {
  const client = await connectClient(server, key);
  t.after(() => client.close());
  await client.join(containerId);
  const { executionId } = await exec(server, { code: HOG, language: 'python', containerId }, { key });
  const done = await client.waitEvent('execution-complete', (p) => p.executionId === executionId, { timeoutMs: 120_000 });
  const expected = { status: 'error', exitCode: 137, oomKilled: true, error: OOM_ERROR };
  assert.deepEqual(end(done), expected, JSON.stringify(done));

  const ex = await waitExecution(server, executionId, { key, timeoutMs: 20_000 });
  assert.deepEqual(end(ex), expected, JSON.stringify(ex));
  assert.equal(text((await logs(server, executionId, { key })).chunks, { type: 'stdout' }), 'allocating\n');

  // Replayed from the store to a client that was not there: the same end.
  const late = await connectClient(server, key);
  t.after(() => late.close());
  late.resume(executionId, 0);
  const replayed = await late.waitEvent('execution-complete', (p) => p.executionId === executionId, { timeoutMs: 30_000 });
  assert.deepEqual(end(replayed), expected, JSON.stringify(replayed));

  // Only the program was killed: the sandbox runs the next one.
  const next = await run(server, { code: 'print("still here")', language: 'python', containerId }, { key, timeoutMs: 30_000 });
  assert.equal(next.execution.status, 'success', JSON.stringify(next.execution));
  assert.equal(text(next.chunks, { type: 'stdout' }), 'still here\n');
});

test('an ordinary exit 1, and a SIGKILL that is not for memory (137 too), say nothing of memory', async (t) => {
  const client = await connectClient(server, key);
  t.after(() => client.close());
  await client.join(containerId);
  const programs = [
    { code: 'import sys\nprint("bye")\nsys.exit(1)', exitCode: 1 },
    { code: 'import os, signal\nprint("bye", flush=True)\nos.kill(os.getpid(), signal.SIGKILL)', exitCode: 137 },
  ];
  for (const { code, exitCode } of programs) {
    const { executionId } = await exec(server, { code, language: 'python', containerId }, { key });
    const done = await client.waitEvent('execution-complete', (p) => p.executionId === executionId, { timeoutMs: 60_000 });
    const ex = await waitExecution(server, executionId, { key, timeoutMs: 20_000 });
    const expected = { status: 'error', exitCode, oomKilled: false, error: null };
    assert.deepEqual(end(done), expected, JSON.stringify(done));
    assert.deepEqual(end(ex), expected, JSON.stringify(ex));
    assert.doesNotMatch(JSON.stringify([done, ex]), /memory/i);
    assert.equal(text((await logs(server, executionId, { key })).chunks, { type: 'stdout' }), 'bye\n');
  }
});
