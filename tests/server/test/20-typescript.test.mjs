// TypeScript through the exec API runs as `tsc && node` would (issue 21): the request's
// .ts files are type-checked as one program, a type error ends the run with tsc's exit
// code (2) and tsc's own message on stderr before anything runs, and a program may
// import its other files. SANDSTREAM_BACKEND=docker runs it on that backend.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileServer, api, run, text, createTenant } from '../lib/harness.mjs';

const server = await fileServer(after);
const { key } = await createTenant(server, 'typescript');

const UTIL = [
  'export interface Reading { sensor: string; celsius: number }',
  'export function describe(r: Reading): string {',
  '  return `${r.sensor}: ${r.celsius.toFixed(1)} °C`;',
  '}',
].join('\n');

/** Runs `body` through the exec API; its sandbox is deleted after the test. */
async function runTs(t, body) {
  const r = await run(server, { language: 'typescript', ...body }, { key });
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${r.data.containerId}`, { key }));
  return r;
}

test("a type error fails the run with tsc's message and exit code, and nothing runs", async (t) => {
  const r = await runTs(t, { code: 'const x: = 5;\nconsole.log("ran", x);\n' });
  assert.equal(r.execution.status, 'error', JSON.stringify(r));
  assert.equal(r.execution.exitCode, 2);
  assert.equal(text(r.chunks, { type: 'stderr' }), 'main.ts(1,10): error TS1110: Type expected.\n');
  assert.equal(text(r.chunks, { type: 'stdout' }), '');
});

test("the check spans the program's files: a value that breaks util.ts's type is refused", async (t) => {
  const code = [
    "import { describe, type Reading } from './util';",
    "const r: Reading = { sensor: 'kitchen', celsius: '21' };",
    'console.log(describe(r));',
  ].join('\n');
  const r = await runTs(t, { code, files: { 'util.ts': UTIL } });
  assert.equal(r.execution.exitCode, 2, JSON.stringify(r));
  assert.equal(
    text(r.chunks, { type: 'stderr' }),
    "main.ts(2,41): error TS2322: Type 'string' is not assignable to type 'number'.\n",
  );
  assert.equal(text(r.chunks, { type: 'stdout' }), '');
});

test('a two-file program: main.ts imports a typed function from util.ts and runs', async (t) => {
  const code = [
    "import { describe, type Reading } from './util';",
    "import * as helpers from './lib/helpers';",
    "const readings: Reading[] = [{ sensor: 'kitchen', celsius: 21.25 }, { sensor: 'attic', celsius: -3 }];",
    'for (const r of readings) console.log(describe(r));',
    'console.log(helpers.total(readings.map((r) => r.celsius)));',
  ].join('\n');
  const helpers = 'export const total = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);\n';
  const r = await runTs(t, { code, files: { 'util.ts': UTIL, 'lib/helpers.ts': helpers } });
  assert.equal(r.execution.status, 'success', JSON.stringify(r));
  assert.equal(r.execution.exitCode, 0);
  assert.equal(text(r.chunks, { type: 'stdout' }), 'kitchen: 21.3 °C\nattic: -3.0 °C\n18.25\n');
  assert.equal(text(r.chunks, { type: 'stderr' }), '');
});

test("Node.js's globals and modules type-check, with ES module syntax and top-level code", async (t) => {
  const code = [
    "import { join } from 'node:path';",
    "import os = require('node:os');",
    "const fs = require('fs') as typeof import('fs');",
    'export const answer: number = 42;',
    "setTimeout(() => console.log('timer', answer), 5);",
    "console.log(join('a', 'b'), typeof os.cpus, typeof fs.readFileSync, process.argv.length, require.main === module);",
    "process.stderr.write('to stderr\\n');",
  ].join('\n');
  const r = await runTs(t, { code });
  assert.equal(r.execution.status, 'success', JSON.stringify(r));
  assert.equal(text(r.chunks, { type: 'stdout' }), 'a/b function function 2 true\ntimer 42\n');
  assert.equal(text(r.chunks, { type: 'stderr' }), 'to stderr\n');
});

test("runs start from the default template's TypeScript snapshot", async (t) => {
  const r = await runTs(t, { code: "console.log(process.execArgv.join(' '));\n" });
  assert.equal(r.execution.status, 'success', JSON.stringify(r));
  assert.equal(text(r.chunks, { type: 'stdout' }), '--snapshot-blob /usr/local/lib/sandstream/typescript.blob\n');
});

test('top-level await is refused with a clear word, not a crash', async (t) => {
  const r = await runTs(t, { code: "export {};\nawait Promise.resolve(1);\nconsole.log('ran');\n" });
  assert.equal(r.execution.exitCode, 2, JSON.stringify(r));
  const stderr = text(r.chunks, { type: 'stderr' });
  assert.match(stderr, /^main\.ts\(2,1\): error TS1378: Top-level 'await' expressions are only allowed when/);
  assert.match(stderr, /\nsandstream: top-level await is not supported: TypeScript programs run as CommonJS modules; wrap the code in an async function\n$/);
  assert.equal(text(r.chunks, { type: 'stdout' }), '');
});

test('a runtime error points at the TypeScript line that threw', async (t) => {
  const code = 'function fail(n: number): never {\n  throw new Error(`boom ${n}`);\n}\nfail(7);\n';
  const r = await runTs(t, { code });
  assert.equal(r.execution.exitCode, 1, JSON.stringify(r));
  assert.match(text(r.chunks, { type: 'stderr' }), /Error: boom 7\n\s+at fail \(\/home\/user\/main\.ts:2:9\)/);
});
