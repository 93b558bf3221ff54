// stdout/stderr separation, exit codes, stdin, timeout, cancel, execution REST, reuse.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  fileServer, api, exec, run, text, logs, waitExecution, assertContiguous, createTenant, until, SB_ID,
} from '../lib/harness.mjs';

const server = await fileServer(after);
const { key } = await createTenant(server, 'semantics');
// One sandbox for the whole file (reuse is itself under test below).
const sb = await api(server, 'POST', '/api/v1/sandboxes', { key, body: {} });
assert.equal(sb.status, 201, sb.text);
const containerId = sb.body.id;
// (fileServer's after hook deletes it with every other sandbox of this key.)

const EXEC_KEYS = ['containerId', 'createdAt', 'durationMs', 'exitCode', 'finishedAt', 'id', 'language', 'phase', 'status'];

test('stdout and stderr are separate streams; exit code 3 → status error', async () => {
  const code = [
    'import sys',
    'print("out1", flush=True)',
    'print("err1", file=sys.stderr, flush=True)',
    'print("out2", flush=True)',
    'sys.stderr.write("err2\\n")',
    'sys.exit(3)',
  ].join('\n');
  const r = await run(server, { code, language: 'python', containerId }, { key });
  assert.equal(r.data.containerId, containerId);
  assert.equal(r.execution.status, 'error');
  assert.equal(r.execution.exitCode, 3);
  assert.equal(r.complete, true);
  assertContiguous(r.chunks);
  assert.equal(text(r.chunks, { type: 'stdout' }), 'out1\nout2\n');
  assert.equal(text(r.chunks, { type: 'stderr' }), 'err1\nerr2\n');
  for (const c of r.chunks) assert.deepEqual(Object.keys(c).sort(), ['data', 'phase', 'seq', 'type']);
});

test('stdin from the request is read by the program', async () => {
  const code = 'import sys\ndata = sys.stdin.read()\nprint(repr(data))\nprint(data.upper(), end="")\n';
  const r = await run(server, { code, language: 'python', containerId, stdin: 'hello\nwörld' }, { key });
  assert.equal(r.execution.status, 'success', JSON.stringify(r));
  assert.equal(text(r.chunks, { type: 'stdout' }), "'hello\\nwörld'\nHELLO\nWÖRLD");
});

test('without stdin the program reads end-of-file at once', async () => {
  const r = await run(server, { code: 'import sys\nprint(len(sys.stdin.read()))', language: 'python', containerId }, { key, timeoutMs: 30_000 });
  assert.equal(r.execution.status, 'success', JSON.stringify(r));
  assert.equal(text(r.chunks, { type: 'stdout' }), '0\n');
});

test('timeout: an infinite loop with timeout 2000 ends with status timeout, exit 124', async () => {
  const started = Date.now();
  const r = await run(server, { code: 'print("spin", flush=True)\nwhile True:\n    pass\n', language: 'python', containerId, timeout: 2000 }, { key, timeoutMs: 30_000 });
  const took = Date.now() - started;
  assert.equal(r.execution.status, 'timeout', JSON.stringify(r.execution));
  assert.equal(r.execution.exitCode, 124);
  assert.ok(r.execution.durationMs >= 1900 && r.execution.durationMs < 10_000, `durationMs ${r.execution.durationMs}`);
  assert.ok(took < 15_000, `took ${took} ms`);
  assert.equal(text(r.chunks, { type: 'stdout' }), 'spin\n');
  // The loop is really gone: the sandbox answers the next run promptly.
  const next = await run(server, { code: 'print("next")', language: 'python', containerId }, { key, timeoutMs: 20_000 });
  assert.equal(text(next.chunks, { type: 'stdout' }), 'next\n');
});

test('cancel: POST /cancel → 202 execution, then status cancelled, exit 130; GET execution while running', async () => {
  const code = 'import time\nprint("started", flush=True)\ntime.sleep(60)\nprint("never")\n';
  const { executionId } = await exec(server, { code, language: 'python', containerId }, { key });
  await until(async () => text((await logs(server, executionId, { key })).chunks).includes('started'), { what: 'started', timeoutMs: 30_000 });

  const running = await api(server, 'GET', `/api/v1/executions/${executionId}`, { key });
  assert.equal(running.status, 200);
  assert.deepEqual(Object.keys(running.body).filter((k) => k !== 'error').sort(), EXEC_KEYS);
  assert.equal(running.body.id, executionId);
  assert.equal(running.body.containerId, containerId);
  assert.equal(running.body.language, 'python');
  assert.equal(running.body.status, 'running');
  assert.equal(running.body.phase, 'run');
  assert.equal(running.body.exitCode, null);
  assert.equal(running.body.finishedAt, null);
  assert.equal(running.body.durationMs, null);
  assert.ok(!Number.isNaN(Date.parse(running.body.createdAt)));
  const runningLogs = await logs(server, executionId, { key });
  assert.equal(runningLogs.complete, false);

  const c = await api(server, 'POST', `/api/v1/executions/${executionId}/cancel`, { key });
  assert.equal(c.status, 202, c.text);
  assert.equal(c.body.id, executionId);
  const ex = await waitExecution(server, executionId, { key, timeoutMs: 20_000 });
  assert.equal(ex.status, 'cancelled');
  assert.equal(ex.exitCode, 130);
  assert.equal(typeof ex.durationMs, 'number');
  assert.ok(ex.durationMs < 30_000);
  assert.ok(Date.parse(ex.finishedAt) >= Date.parse(ex.createdAt));
  const l = await logs(server, executionId, { key });
  assert.equal(l.complete, true);
  assert.equal(text(l.chunks, { type: 'stdout' }), 'started\n');
});

test('GET /logs?afterSeq=N returns only later chunks; finished execution fields', async () => {
  const code = 'import time\nfor i in range(5):\n    print(i, flush=True)\n    time.sleep(0.1)\n';
  const r = await run(server, { code, language: 'python', containerId }, { key });
  assert.deepEqual(Object.keys(r.execution).filter((k) => k !== 'error').sort(), EXEC_KEYS);
  assert.equal(r.execution.status, 'success');
  assert.equal(r.execution.exitCode, 0);
  assert.equal(r.execution.phase, 'run');
  assert.equal(typeof r.execution.durationMs, 'number');
  assert.ok(Date.parse(r.execution.finishedAt) >= Date.parse(r.execution.createdAt));
  assert.ok(r.chunks.length >= 2, `chunks: ${JSON.stringify(r.chunks)}`);
  assertContiguous(r.chunks);
  assert.equal(text(r.chunks, { type: 'stdout' }), '0\n1\n2\n3\n4\n');
  const n = r.chunks.length;
  const tail = await logs(server, r.data.executionId, { key, afterSeq: 1 });
  assert.deepEqual(tail.chunks, r.chunks.slice(1));
  assert.equal(tail.complete, true);
  const none = await logs(server, r.data.executionId, { key, afterSeq: n });
  assert.deepEqual(none.chunks, []);
  assert.equal(none.complete, true);
});

test('reuse: a second exec with the same containerId runs in the same sandbox', async () => {
  const before = await api(server, 'GET', '/api/v1/sandboxes', { key });
  const token = `tok-${Date.now()}`;
  const w = await run(server, { code: `open("/home/user/state.txt", "w").write("${token}")\nprint("written")`, language: 'python', containerId }, { key });
  assert.equal(w.execution.status, 'success', JSON.stringify(w));
  assert.equal(w.data.containerId, containerId);
  const r = await run(server, { code: 'import os\nprint(open("state.txt").read())\nprint(os.getcwd())', language: 'python', containerId }, { key });
  assert.equal(r.data.containerId, containerId);
  assert.equal(r.execution.containerId, containerId);
  assert.equal(text(r.chunks, { type: 'stdout' }), `${token}\n/home/user\n`);
  // a javascript run in the same sandbox sees it too
  const j = await run(server, { code: "console.log(require('fs').readFileSync('/home/user/state.txt', 'utf8'))", language: 'javascript', containerId }, { key });
  assert.equal(text(j.chunks, { type: 'stdout' }), `${token}\n`);
  const afterList = await api(server, 'GET', '/api/v1/sandboxes', { key });
  assert.deepEqual(afterList.body.map((s) => s.id), before.body.map((s) => s.id));
  assert.deepEqual(afterList.body.map((s) => s.id), [containerId]);
  assert.match(containerId, SB_ID);
});

test('UTF-8: a character split across writes is never broken; invalid bytes become U+FFFD', async () => {
  const code = [
    'import sys, time',
    'out = sys.stdout.buffer',
    'out.write(b"caf\\xc3"); out.flush(); time.sleep(0.3)',
    'out.write(b"\\xa9 \\xe2\\x82"); out.flush(); time.sleep(0.3)',
    'out.write(b"\\xac \\xf0\\x9f"); out.flush(); time.sleep(0.3)',
    'out.write(b"\\x98\\x80\\n"); out.flush()',
    'sys.stderr.buffer.write(b"bad \\xff\\xfe end\\n"); sys.stderr.flush()',
  ].join('\n');
  const r = await run(server, { code, language: 'python', containerId }, { key });
  assert.equal(r.execution.status, 'success', JSON.stringify(r));
  assertContiguous(r.chunks);
  for (const c of r.chunks) assert.ok(!c.data.includes('\uFFFD') || c.type === 'stderr', `broken character in ${JSON.stringify(c)}`);
  assert.equal(text(r.chunks, { type: 'stdout' }), 'café € 😀\n');
  assert.equal(text(r.chunks, { type: 'stderr' }), 'bad \uFFFD\uFFFD end\n');
});

test('output from javascript and large output arrive complete and in order', async () => {
  const code = "let s = ''; for (let i = 0; i < 20000; i++) s += `row ${i}\\n`; process.stdout.write(s); console.error('done');";
  const r = await run(server, { code, language: 'javascript', containerId }, { key });
  assert.equal(r.execution.status, 'success', JSON.stringify(r.execution));
  assertContiguous(r.chunks);
  const expected = Array.from({ length: 20000 }, (_, i) => `row ${i}\n`).join('');
  assert.equal(text(r.chunks, { type: 'stdout' }), expected);
  assert.equal(text(r.chunks, { type: 'stderr' }), 'done\n');
});
