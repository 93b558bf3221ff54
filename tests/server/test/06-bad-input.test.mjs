// Bad input: every refusal is {status:"error", code, message} with the right status,
// and nothing is half-created.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileServer, api, assertError, createTenant } from '../lib/harness.mjs';

const server = await fileServer(after);
const { key } = await createTenant(server, 'bad-input');
const MISSING = 'Missing required parameters: code and language';
const MiB = 1024 * 1024;

async function assertNoSandbox() {
  const r = await api(server, 'GET', '/api/v1/sandboxes', { key });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.body, [], `a refused request left sandboxes behind: ${r.text}`);
}

const execCase = (name, body, status, code, message) =>
  test(`exec: ${name} → ${status} ${code}`, async () => {
    const res = await api(server, 'POST', '/api/sandbox/exec', { key, body });
    assertError(res, status, code, message);
    await assertNoSandbox();
  });

execCase('missing language', { code: 'print(1)' }, 400, 'bad_request', MISSING);
execCase('missing code', { language: 'python' }, 400, 'bad_request', MISSING);
execCase('empty body object', {}, 400, 'bad_request', MISSING);
execCase('empty code string (note 000: !code)', { code: '', language: 'python' }, 400, 'bad_request', MISSING);
execCase('code not a string', { code: 42, language: 'python' }, 400, 'bad_request');
execCase('unknown language', { code: 'puts 1', language: 'ruby' }, 400, 'bad_request', (m) => {
  for (const l of ['python', 'javascript', 'typescript']) assert.ok(m.includes(l), `message does not name ${l}: ${m}`);
});
execCase('code over 1 MiB', { code: `# ${'x'.repeat(MiB)}\nprint(1)`, language: 'python' }, 413, 'too_large');
execCase('files over 1 MiB', { code: 'print(1)', language: 'python', files: { 'big.txt': 'y'.repeat(MiB + 10) } }, 413, 'too_large');
execCase(
  '101 files',
  { code: 'print(1)', language: 'python', files: Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`f${i}.txt`, 'x'])) },
  413,
  'too_large',
  '101 files; the limit is 100',
);
execCase('unknown containerId', { code: 'print(1)', language: 'python', containerId: 'sb-00000000ff' }, 404, 'not_found');
execCase('malformed containerId', { code: 'print(1)', language: 'python', containerId: '../../etc' }, 404, 'not_found');
execCase('file name "../x"', { code: 'print(1)', language: 'python', files: { '../x': 'a' } }, 400, 'bad_request');
execCase('file name "a/../../x"', { code: 'print(1)', language: 'python', files: { 'a/../../x': 'a' } }, 400, 'bad_request');
execCase('absolute file name', { code: 'print(1)', language: 'python', files: { '/etc/evil': 'a' } }, 400, 'bad_request');
execCase('empty file name', { code: 'print(1)', language: 'python', files: { '': 'a' } }, 400, 'bad_request');
execCase('negative timeout', { code: 'print(1)', language: 'python', timeout: -5 }, 400, 'bad_request');
execCase('files not an object', { code: 'print(1)', language: 'python', files: ['requirements.txt'] }, 400, 'bad_request');

test('exec: malformed JSON → 400 bad_request', async () => {
  for (const raw of ['{bad', '{"code": "print(1)", "language": "python"', '', 'null', '[1,2]']) {
    const res = await api(server, 'POST', '/api/sandbox/exec', { key, raw });
    assertError(res, 400, 'bad_request');
  }
  await assertNoSandbox();
});

test('exec: exactly 1 MiB of code is accepted only up to the limit (boundary)', async () => {
  // over by one byte → 413
  const res = await api(server, 'POST', '/api/sandbox/exec', { key, body: { code: 'x'.repeat(MiB + 1), language: 'python' } });
  assertError(res, 413, 'too_large');
  await assertNoSandbox();
});

const sandboxCase = (name, body) =>
  test(`sandboxes: ${name} → 400`, async () => {
    const res = await api(server, 'POST', '/api/v1/sandboxes', { key, body });
    assertError(res, 400, 'bad_request');
    await assertNoSandbox();
  });

sandboxCase('cpu -1', { cpu: -1 });
sandboxCase('cpu 0', { cpu: 0 });
sandboxCase('memoryMb 1', { memoryMb: 1 });
sandboxCase('unknown field', { flavour: 'large' });
sandboxCase('unknown template', { template: 'no-such-template' });
sandboxCase('envs not strings', { envs: { A: 1 } });
sandboxCase('metadata not strings', { metadata: { user: { nested: true } } });
sandboxCase('timeoutMs negative', { timeoutMs: -1 });

test('sandboxes: malformed JSON → 400', async () => {
  assertError(await api(server, 'POST', '/api/v1/sandboxes', { key, raw: '{"cpu":' }), 400, 'bad_request');
  await assertNoSandbox();
});

test('unknown /api routes → 404 JSON', async () => {
  for (const [method, route] of [
    ['GET', '/api/nope'],
    ['POST', '/api/v2/sandboxes'],
    ['GET', '/api/v1/sandboxes/sb-0123456789/nope'],
  ]) {
    assertError(await api(server, method, route, { key }), 404, 'not_found');
  }
  assertError(await api(server, 'GET', '/api/v1/sandboxes/sb-0123456789', { key }), 404, 'not_found');
  assertError(await api(server, 'GET', '/api/v1/executions/exec_0000', { key }), 404, 'not_found');
  assertError(await api(server, 'GET', '/api/v1/executions/exec_0000/logs?afterSeq=0', { key }), 404, 'not_found');
  assertError(await api(server, 'POST', '/api/v1/executions/exec_0000/cancel', { key }), 404, 'not_found');
});

test('wrong method on a known route → JSON error', async () => {
  const res = await api(server, 'PUT', '/api/v1/sandboxes', { key, body: {} });
  assert.ok(res.status === 405 || res.status === 404, `status ${res.status}`);
  assert.equal(res.body?.status, 'error', res.text);
  assert.equal(typeof res.body?.code, 'string', res.text);
  assert.equal(typeof res.body?.message, 'string', res.text);
});
