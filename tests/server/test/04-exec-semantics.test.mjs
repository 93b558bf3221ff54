// stdout/stderr separation, exit codes, stdin, timeout, cancel, execution REST, reuse.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  fileServer, api, exec, run, text, logs, waitExecution, assertContiguous, createTenant, until, SB_ID, connectClient,
} from '../lib/harness.mjs';

// The output limit of every execution in this file: above the largest output the other
// tests print (190 kB), and one byte into an "é" of the flood below.
const OUTPUT_LIMIT = 300_001;
const server = await fileServer(after, { args: ['--max-output-bytes', String(OUTPUT_LIMIT)] });
const { key } = await createTenant(server, 'semantics');
// One sandbox for the whole file (reuse is itself under test below).
const sb = await api(server, 'POST', '/api/v1/sandboxes', { key, body: {} });
assert.equal(sb.status, 201, sb.text);
const containerId = sb.body.id;
// (fileServer's after hook deletes it with every other sandbox of this key.)

const EXEC_KEYS = ['containerId', 'createdAt', 'durationMs', 'exitCode', 'finishedAt', 'id', 'language', 'oomKilled', 'phase', 'sandboxId', 'status'];

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

test('output limit: a flood is kept up to --max-output-bytes, cut with a note on stderr, and the program is stopped', async (t) => {
  const client = await connectClient(server, key);
  t.after(() => client.close());
  await client.join(containerId);
  // Endless 11-byte lines; the limit falls inside the "é" of line 27272.
  const code = 'import sys\ni = 0\nwhile True:\n    sys.stdout.write(f"{i:08d}\u00e9\\n")\n    i += 1\n';
  const { executionId } = await exec(server, { code, language: 'python', containerId, timeout: 60_000 }, { key });
  const done = await client.waitEvent('execution-complete', (p) => p.executionId === executionId, { timeoutMs: 60_000 });
  const why = `the execution's output reached the server's limit of ${OUTPUT_LIMIT} bytes (--max-output-bytes), so the program was stopped`;
  // Stopped by the server (SIGKILL: 137), well before its own 60 s timeout.
  assert.equal(done.status, 'error', JSON.stringify(done));
  assert.equal(done.exitCode, 137, JSON.stringify(done));
  assert.equal(done.error, why);
  assert.ok(done.durationMs < 30_000, `durationMs ${done.durationMs}`);
  const ex = await waitExecution(server, executionId, { key });
  assert.equal(ex.status, 'error');
  assert.equal(ex.exitCode, 137);

  // Stored: the first bytes of the flood up to the limit, less the half character, then the note.
  const l = await logs(server, executionId, { key });
  assert.equal(l.complete, true);
  assertContiguous(l.chunks);
  const lines = [];
  for (let i = 0; i * 11 < OUTPUT_LIMIT + 40; i++) lines.push(`${String(i).padStart(8, '0')}\u00e9\n`);
  const bytes = Buffer.from(lines.join(''));
  assert.equal(bytes[OUTPUT_LIMIT - 1], 0xc3, 'the limit falls between the two bytes of an é');
  const want = bytes.subarray(0, OUTPUT_LIMIT - 1).toString();
  const stdout = text(l.chunks, { type: 'stdout' });
  assert.equal(Buffer.byteLength(stdout), OUTPUT_LIMIT - 1);
  assert.ok(stdout === want, `stdout is not the flood's first ${OUTPUT_LIMIT - 1} bytes; it ends ${JSON.stringify(stdout.slice(-30))}`);
  assert.equal(text(l.chunks, { type: 'stderr' }), `\n[sandstream: output cut: ${why}]\n`);
  assert.equal(l.chunks.at(-1).type, 'stderr', 'the note is the last chunk');

  // Live: the same chunks reached the socket.io client (resumed where it missed any).
  client.resume(executionId, client.lastKept(executionId));
  await client.waitUntil(() => client.lastKept(executionId) === l.chunks.length, { what: 'every chunk live or resumed' });
  assert.deepEqual(client.kept(executionId).map((c) => [c.seq, c.type, c.data]), l.chunks.map((c) => [c.seq, c.type, c.data]));

  // The flood is really gone: no other main.py runs in the sandbox.
  const ps = await run(server, {
    code: 'import os\nfor p in os.listdir("/proc"):\n    if p.isdigit() and int(p) != os.getpid():\n        try: c = open(f"/proc/{p}/cmdline", "rb").read()\n        except OSError: continue\n        if b"main.py" in c: print(p, c)\nprint("checked")\n',
    language: 'python', containerId,
  }, { key, timeoutMs: 30_000 });
  assert.equal(ps.execution.status, 'success', JSON.stringify(ps));
  assert.equal(text(ps.chunks, { type: 'stdout' }), 'checked\n');
});

test('files: 100 are written before the program runs; the timeout also bounds the writing', async () => {
  const files = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`many/f${i}.txt`, `content ${i}`]));
  const code = 'import os\nnames = sorted(os.listdir("many"), key=lambda n: int(n[1:-4]))\nprint(len(names), names[0], names[-1], open("many/f99.txt").read())\n';
  const r = await run(server, { code, language: 'python', containerId, files }, { key });
  assert.equal(r.execution.status, 'success', JSON.stringify(r));
  assert.equal(text(r.chunks, { type: 'stdout' }), '100 f0.txt f99.txt content 99\n');

  // A timeout that passes while the files are written ends the execution there: the
  // rest are not written, and the program does not run.
  const late = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`late/f${i}.txt`, 'x']));
  const t = await run(server, { code: 'print("ran")', language: 'python', containerId, files: late, timeout: 1 }, { key });
  assert.equal(t.execution.status, 'timeout', JSON.stringify(t.execution));
  assert.equal(t.execution.exitCode, 124);
  assert.equal(text(t.chunks), '');
  const count = await run(server, { code: 'import os\nprint(len(os.listdir("late")) if os.path.isdir("late") else 0)', language: 'python', containerId }, { key });
  const written = Number(text(count.chunks, { type: 'stdout' }));
  assert.ok(written < 100, `all ${written} files were written past the timeout`);
});
