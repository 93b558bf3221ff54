// Keys, tenant isolation and authentication (REST and socket.io).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  fileServer, api, exec, assertError, createTenant, connectClient, Client, waitExecution, logs, text, sleep, newKey, killLeftovers, runningContainers,
} from '../lib/harness.mjs';

const server = await fileServer(after);

test('admin creates tenant keys; GET /keys lists them without secrets', async () => {
  const r = await api(server, 'POST', '/api/v1/keys', { body: { name: 'listed' } });
  assert.equal(r.status, 201, r.text);
  assert.deepEqual(Object.keys(r.body).sort(), ['id', 'key', 'name']);
  assert.equal(r.body.name, 'listed');
  server.keys.add(r.body.key);
  const list = await api(server, 'GET', '/api/v1/keys');
  assert.equal(list.status, 200, list.text);
  const row = list.body.find((k) => k.id === r.body.id);
  assert.ok(row, list.text);
  assert.deepEqual(Object.keys(row).sort(), ['admin', 'createdAt', 'id', 'name', 'revoked']);
  assert.equal(row.admin, false);
  assert.equal(row.revoked, false);
  assert.equal(row.name, 'listed');
  assert.ok(!list.text.includes(r.body.key), 'GET /keys shows a secret');
  assert.ok(!list.text.includes(server.apiKey), 'GET /keys shows the admin key');
  assert.ok(list.body.some((k) => k.admin === true));
  // name is required
  assertError(await api(server, 'POST', '/api/v1/keys', { body: {} }), 400, 'bad_request');
});

test("tenant isolation: A's sandbox and execution are 404 for B, everywhere", async (t) => {
  const A = await createTenant(server, 'A');
  const B = await createTenant(server, 'B');
  const ran = await exec(server, { code: 'import time\nprint("secret-A", flush=True)\ntime.sleep(2)\n', language: 'python' }, { key: A.key });
  const sbA = ran.containerId;
  const exA = ran.executionId;
  const unknownSb = 'sb-0123456789';

  const b = (method, route, body) => api(server, method, route, { key: B.key, body });
  for (const [method, route, body] of [
    ['GET', `/api/v1/sandboxes/${sbA}`],
    ['GET', `/api/v1/sandboxes/${sbA}/connection`],
    ['POST', `/api/v1/sandboxes/${sbA}/timeout`, { timeoutMs: 60_000 }],
    ['DELETE', `/api/v1/sandboxes/${sbA}`],
    ['GET', `/api/v1/executions/${exA}`],
    ['GET', `/api/v1/executions/${exA}/logs?afterSeq=0`],
    ['POST', `/api/v1/executions/${exA}/cancel`],
  ]) {
    const res = await b(method, route, body);
    assertError(res, 404, 'not_found');
    assert.ok(!res.text.includes('secret-A'));
  }
  // Exactly as an unknown id answers (modulo the id in the message).
  const unknown = await b('GET', `/api/v1/sandboxes/${unknownSb}`);
  const other = await b('GET', `/api/v1/sandboxes/${sbA}`);
  assertError(unknown, 404, 'not_found');
  assert.equal(other.body.message.replace(sbA, 'ID'), unknown.body.message.replace(unknownSb, 'ID'));

  const bexec = await b('POST', '/api/sandbox/exec', { code: 'print("from B")', language: 'python', containerId: sbA });
  assertError(bexec, 404, 'not_found');
  const bList = await b('GET', '/api/v1/sandboxes');
  assert.equal(bList.status, 200);
  assert.deepEqual(bList.body, []);

  // A still has its sandbox running and its execution untouched.
  const aGet = await api(server, 'GET', `/api/v1/sandboxes/${sbA}`, { key: A.key });
  assert.equal(aGet.status, 200);
  assert.equal(aGet.body.state, 'running');
  const ex = await waitExecution(server, exA, { key: A.key });
  assert.equal(ex.status, 'success', 'B cancelled A\'s execution');
  assert.equal(text((await logs(server, exA, { key: A.key })).chunks), 'secret-A\n');

  // socket.io: B cannot join A's container nor resume A's execution.
  const bs = await connectClient(server, B.key);
  t.after(() => bs.close());
  const j = await bs.tryJoin(sbA);
  assert.equal(j.ev, 'error', `B joined A's container: ${JSON.stringify(j)}`);
  assert.equal(j.payload.code, 'not_found');
  assert.equal(typeof j.payload.message, 'string');
  const from = bs.events.length;
  bs.socket.emit('resume-execution', { executionId: exA, afterSeq: 0 });
  const err = await bs.waitEvent('error', () => true, { from, timeoutMs: 10_000 });
  assert.equal(err.code, 'not_found');
  // A runs again in its sandbox: B receives nothing.
  const again = await exec(server, { code: 'print("secret-A-2")', language: 'python', containerId: sbA }, { key: A.key });
  await waitExecution(server, again.executionId, { key: A.key });
  await sleep(500);
  const leaked = bs.events.filter((e) => e.ev.startsWith('execution-') || e.ev === 'container-joined');
  assert.deepEqual(leaked, [], `B received A's events: ${JSON.stringify(leaked)}`);

  // socketSessionId naming B's socket: A's events must not go to another tenant's socket.
  // (Refusing it as an unknown socket, 404, is fine too.)
  const third = await api(server, 'POST', '/api/sandbox/exec', {
    key: A.key,
    body: { code: 'print("secret-A-3")', language: 'python', containerId: sbA, socketSessionId: bs.socket.id },
  });
  if (third.status === 404) assertError(third, 404, 'not_found');
  else {
    assert.equal(third.status, 202, third.text);
    await waitExecution(server, third.body.data.executionId, { key: A.key });
    await sleep(500);
  }
  const leaked2 = bs.events.filter((e) => e.ev.startsWith('execution-'));
  assert.deepEqual(leaked2, [], `B's socket received A's events through socketSessionId: ${JSON.stringify(leaked2)}`);
});

test('a tenant key on /api/v1/keys gets 403', async () => {
  const T = await createTenant(server, 'not-admin');
  assertError(await api(server, 'GET', '/api/v1/keys', { key: T.key }), 403, 'forbidden');
  assertError(await api(server, 'POST', '/api/v1/keys', { key: T.key, body: { name: 'x' } }), 403, 'forbidden');
  const list = await api(server, 'GET', '/api/v1/keys');
  const id = list.body.find((k) => k.admin).id;
  assertError(await api(server, 'DELETE', `/api/v1/keys/${id}`, { key: T.key }), 403, 'forbidden');
  assertError(await api(server, 'GET', '/api/v1/runners', { key: T.key }), 403, 'forbidden');
  // the admin key still works
  assert.equal((await api(server, 'GET', '/api/v1/keys')).status, 200);
});

test('a revoked key gets 401 at once, on REST and socket.io', async () => {
  const C = await createTenant(server, 'to-revoke');
  assert.equal((await api(server, 'GET', '/api/v1/sandboxes', { key: C.key })).status, 200);
  const live = await connectClient(server, C.key);
  live.close();
  const del = await api(server, 'DELETE', `/api/v1/keys/${C.id}`);
  assert.equal(del.status, 204, del.text);
  assert.equal(del.text, '');
  assertError(await api(server, 'GET', '/api/v1/sandboxes', { key: C.key }), 401, 'unauthorized');
  assertError(await api(server, 'POST', '/api/sandbox/exec', { key: C.key, body: { code: 'print(1)', language: 'python' } }), 401, 'unauthorized');
  const row = (await api(server, 'GET', '/api/v1/keys')).body.find((k) => k.id === C.id);
  assert.equal(row.revoked, true);
  const c = new Client(server.url, C.key);
  await assert.rejects(c.connected());
  c.close();
});

test('revoking a key closes its socket.io connections, saying why, and kills its sandboxes; other tenants keep theirs', async () => {
  const D = await createTenant(server, 'revoked-while-connected');
  const E = await createTenant(server, 'stays-connected');
  const sb = await api(server, 'POST', '/api/v1/sandboxes', { key: D.key, body: {} });
  assert.equal(sb.status, 201, sb.text);
  const open = await connectClient(server, D.key);
  const other = await connectClient(server, E.key);
  try {
    await open.join(sb.body.id);
    const del = await api(server, 'DELETE', `/api/v1/keys/${D.id}`);
    assert.equal(del.status, 204, del.text);
    await open.waitEvent('disconnect', () => true, { timeoutMs: 10_000 });
    const told = open.events.find((e) => e.ev === 'error');
    assert.deepEqual(told?.payload, { code: 'unauthorized', message: 'the API key of this connection was revoked' });
    assert.equal(open.events.find((e) => e.ev === 'disconnect').payload.reason, 'io server disconnect');
    assert.equal(open.socket.connected, false);
    // Another tenant's connection is untouched and still served.
    assert.equal(other.socket.connected, true);
    assert.ok(!other.events.some((e) => e.ev === 'disconnect'), other.summary());
    const sb2 = await api(server, 'POST', '/api/v1/sandboxes', { key: E.key, body: {} });
    assert.equal(sb2.status, 201, sb2.text);
    assert.deepEqual(await other.join(sb2.body.id), { containerId: sb2.body.id });
    // The revoked tenant's sandbox is gone (the answer came after its kill); the other
    // tenant's runs on.
    const running = runningContainers(server);
    assert.ok(!running.includes(sb.body.id), `the revoked key's sandbox ${sb.body.id} still runs`);
    assert.ok(running.includes(sb2.body.id), `the other tenant's sandbox ${sb2.body.id} is not running: ${running}`);
  } finally {
    open.close();
    other.close();
    // Had the revoke left it, no key could delete it: the runner kills it (and the
    // assertion above has failed).
    await killLeftovers(server, [sb.body.id]);
  }
});

test('wrong or missing key → 401 JSON; X-API-Key works; socket.io refuses a wrong key', async () => {
  const wrong = newKey('wrong');
  assertError(await api(server, 'GET', '/api/v1/sandboxes', { key: wrong }), 401, 'unauthorized');
  assertError(await api(server, 'GET', '/api/v1/sandboxes', { key: wrong, auth: 'header' }), 401, 'unauthorized');
  assertError(await api(server, 'GET', '/api/v1/sandboxes', { key: null }), 401, 'unauthorized');
  assertError(await api(server, 'POST', '/api/sandbox/exec', { key: null, body: { code: 'print(1)', language: 'python' } }), 401, 'unauthorized');
  assertError(await api(server, 'GET', '/api/v1/executions/exec_x', { key: wrong }), 401, 'unauthorized');
  assertError(await api(server, 'GET', '/api/v1/sandboxes', { key: null, headers: { authorization: 'Basic Zm9vOmJhcg==' } }), 401, 'unauthorized');

  const T = await createTenant(server, 'x-api-key');
  const viaHeader = await api(server, 'GET', '/api/v1/sandboxes', { key: T.key, auth: 'header' });
  assert.equal(viaHeader.status, 200, viaHeader.text);
  assert.deepEqual(viaHeader.body, []);
  const adminViaHeader = await api(server, 'GET', '/api/v1/keys', { auth: 'header' });
  assert.equal(adminViaHeader.status, 200);

  for (const token of [wrong, undefined, '']) {
    const c = new Client(server.url, token);
    await assert.rejects(c.connected(), undefined, `socket.io accepted token ${JSON.stringify(token)}`);
    assert.ok(c.events.some((e) => e.ev === 'connect_error'));
    c.close();
  }
  // the Authorization header works for socket.io too (node client: extraHeaders)
  const h = new Client(server.url, undefined, { extraHeaders: { authorization: `Bearer ${T.key}` }, transports: ['polling'] });
  await h.connected();
  h.close();
  const hw = new Client(server.url, undefined, { extraHeaders: { authorization: `Bearer ${wrong}` }, transports: ['polling'] });
  await assert.rejects(hw.connected());
  hw.close();
});
