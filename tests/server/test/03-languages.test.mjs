// JavaScript with an npm dependency, and TypeScript.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileServer, api, run, logs, text, assertContiguous, createTenant } from '../lib/harness.mjs';

const server = await fileServer(after);
const { key } = await createTenant(server, 'languages');

test('javascript with package.json: npm install phase, then the program uses the package', async (t) => {
  const pkg = JSON.stringify({ name: 'e2e-app', version: '1.0.0', private: true, dependencies: { 'left-pad': '1.3.0' } });
  const code = [
    "const leftPad = require('left-pad');",
    "console.log(leftPad('7', 3, '0'));",
    "console.log(require('left-pad/package.json').version);",
    "console.error('to stderr');",
  ].join('\n');
  const r = await run(server, { code, language: 'javascript', files: { 'package.json': pkg } }, { key, timeoutMs: 180_000 });
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${r.data.containerId}`, { key }));
  assert.equal(r.execution.status, 'success', JSON.stringify({ execution: r.execution, chunks: r.chunks }));
  assert.equal(r.execution.exitCode, 0);
  assert.equal(r.execution.language, 'javascript');
  assertContiguous(r.chunks);
  assert.ok(r.chunks.some((c) => c.phase === 'install'), 'no install output');
  const firstRun = r.chunks.findIndex((c) => c.phase === 'run');
  assert.ok(r.chunks.slice(firstRun).every((c) => c.phase === 'run'));
  assert.match(text(r.chunks, { phase: 'install' }), /added 1 package|up to date/);
  assert.equal(text(r.chunks, { phase: 'run', type: 'stdout' }), '007\n1.3.0\n');
  assert.equal(text(r.chunks, { phase: 'run', type: 'stderr' }), 'to stderr\n');
});

test('javascript without package.json: no install phase', async (t) => {
  const r = await run(server, { code: 'console.log([1, 2, 3].map((x) => x * 2).join(","))', language: 'javascript' }, { key });
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${r.data.containerId}`, { key }));
  assert.equal(r.execution.status, 'success', JSON.stringify(r));
  assert.deepEqual([...new Set(r.chunks.map((c) => c.phase))], ['run']);
  assert.equal(text(r.chunks, { type: 'stdout' }), '2,4,6\n');
});

test('javascript that writes 1 MiB and calls process.exit() at once loses nothing', async (t) => {
  // Node.js leaves what a pipe does not take queued in the process, and process.exit()
  // drops it (all but 64 KiB under docker run); the agent's preload makes writes block.
  const code = "process.stdout.write('x'.repeat(1 << 20)); process.stderr.write('e'.repeat(100000)); process.exit(5);";
  const r = await run(server, { code, language: 'javascript' }, { key });
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${r.data.containerId}`, { key }));
  assert.equal(r.execution.exitCode, 5, JSON.stringify(r.execution));
  const chunks = [...r.chunks];
  for (let page = r; !page.complete;) {
    page = await logs(server, r.data.executionId, { key, afterSeq: chunks.at(-1).seq });
    chunks.push(...page.chunks);
  }
  assertContiguous(chunks);
  const out = text(chunks, { phase: 'run', type: 'stdout' });
  const err = text(chunks, { phase: 'run', type: 'stderr' });
  assert.equal(out.length, 1 << 20, 'every stdout byte written before process.exit()');
  assert.match(out, /^x+$/);
  assert.equal(err, 'e'.repeat(100000));
});

test('typescript with type annotations runs', async (t) => {
  const code = [
    'interface Point { x: number; y: number }',
    'function add(a: Point, b: Point): Point { return { x: a.x + b.x, y: a.y + b.y }; }',
    'const p: Point = add({ x: 40, y: 1 }, { x: 2, y: 1 });',
    'enum Color { Red = "red" }',
    'const xs: Array<number> = [p.x, p.y];',
    'console.log(`answer ${xs[0]} ${xs[1]} ${Color.Red}`);',
  ].join('\n');
  const r = await run(server, { code, language: 'typescript' }, { key });
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${r.data.containerId}`, { key }));
  assert.equal(r.execution.status, 'success', JSON.stringify(r));
  assert.equal(r.execution.exitCode, 0);
  assert.equal(r.execution.language, 'typescript');
  assert.equal(text(r.chunks, { type: 'stdout', phase: 'run' }), 'answer 42 2 red\n');
  assert.equal(text(r.chunks, { type: 'stderr' }), '');
});

test('python: a failed install ends with status error and the program does not run', async (t) => {
  const r = await run(
    server,
    { code: 'print("must not run")', language: 'python', files: { 'requirements.txt': 'this-package-does-not-exist-sandstream-e2e==0.0.1' } },
    { key, timeoutMs: 180_000 },
  );
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${r.data.containerId}`, { key }));
  assert.equal(r.execution.status, 'error', JSON.stringify(r.execution));
  assert.notEqual(r.execution.exitCode, 0);
  assert.equal(r.execution.phase, 'install');
  assert.ok(r.chunks.every((c) => c.phase === 'install'), 'run-phase output after a failed install');
  assert.ok(!text(r.chunks).includes('must not run'));
});

test('timeout bounds the install phase too', async (t) => {
  const r = await run(
    server,
    { code: 'print("must not run")', language: 'python', files: { 'requirements.txt': 'six==1.16.0' }, timeout: 1000 },
    { key, timeoutMs: 60_000 },
  );
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${r.data.containerId}`, { key }));
  assert.equal(r.execution.status, 'timeout', JSON.stringify(r.execution));
  assert.equal(r.execution.exitCode, 124);
  assert.equal(r.execution.phase, 'install');
  assert.ok(r.execution.durationMs < 10_000, `durationMs ${r.execution.durationMs}`);
  assert.ok(!text(r.chunks).includes('must not run'));
});
