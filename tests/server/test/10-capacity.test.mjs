// --capacity: a full host answers 503 no_capacity and creates nothing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileServer, api, assertError, createTenant } from '../lib/harness.mjs';

const server = await fileServer(after, { args: ['--capacity', '1'] });

test('beyond --capacity, POST /sandboxes and exec answer 503 no_capacity; DELETE frees the slot', async () => {
  const { key } = await createTenant(server, 'capacity');
  const one = await api(server, 'POST', '/api/v1/sandboxes', { key, body: {} });
  assert.equal(one.status, 201, one.text);
  assertError(await api(server, 'POST', '/api/v1/sandboxes', { key, body: {} }), 503, 'no_capacity');
  assertError(await api(server, 'POST', '/api/sandbox/exec', { key, body: { code: 'print(1)', language: 'python' } }), 503, 'no_capacity');
  const list = await api(server, 'GET', '/api/v1/sandboxes', { key });
  assert.deepEqual(list.body.map((s) => s.id), [one.body.id]);
  // exec in the existing sandbox still works
  const ok = await api(server, 'POST', '/api/sandbox/exec', { key, body: { code: 'print(1)', language: 'python', containerId: one.body.id } });
  assert.equal(ok.status, 202, ok.text);
  assert.equal((await api(server, 'DELETE', `/api/v1/sandboxes/${one.body.id}`, { key })).status, 204);
  const two = await api(server, 'POST', '/api/v1/sandboxes', { key, body: {} });
  assert.equal(two.status, 201, two.text);
});
