// Attacks on the control plane by a hostile tenant or host user, each with its positive
// control: the legitimate path still works.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import {
  fileServer, api, assertError, createTenant, connectClient, exec, waitExecution, agentExecute, sleep,
} from '../lib/harness.mjs';

const CAPACITY = 6;
const server = await fileServer(after, { args: ['--capacity', String(CAPACITY)] });

test('socketSessionId must name a socket of the caller: a forged room name of another tenant is refused', async (t) => {
  const A = await createTenant(server, 'room-a');
  const B = await createTenant(server, 'room-b');
  const sbA = (await api(server, 'POST', '/api/v1/sandboxes', { key: A.key, body: {} })).body.id;
  const sbB = (await api(server, 'POST', '/api/v1/sandboxes', { key: B.key, body: {} })).body.id;
  assert.ok(sbA && sbB);
  // A watches its sandbox's room.
  const viewer = await connectClient(server, A.key);
  t.after(() => viewer.close());
  const joined = await viewer.tryJoin(sbA);
  assert.equal(joined.ev, 'container-joined', JSON.stringify(joined));
  // B runs in its own sandbox, naming A's room as the receiver.
  for (const forged of [`container-${sbA}`, 'container-' + sbA.toUpperCase(), sbA, 'not-a-socket']) {
    const r = await api(server, 'POST', '/api/sandbox/exec', {
      key: B.key,
      body: { code: 'print("from-B")', language: 'python', containerId: sbB, socketSessionId: forged },
    });
    assertError(r, 404, 'not_found', /socket .* not found/);
  }
  // A's socket id, named by B: also refused.
  assertError(await api(server, 'POST', '/api/sandbox/exec', {
    key: B.key,
    body: { code: 'print("from-B")', language: 'python', containerId: sbB, socketSessionId: viewer.socket.id },
  }), 404, 'not_found');
  await sleep(500);
  const leaked = viewer.events.filter((e) => e.ev.startsWith('execution-'));
  assert.deepEqual(leaked, [], `A's viewers received B's events: ${JSON.stringify(leaked)}`);

  // Positive control: B names its own socket and receives its output there.
  const own = await connectClient(server, B.key);
  t.after(() => own.close());
  const ok = await exec(server, { code: 'print("to-own-socket")', language: 'python', containerId: sbB, socketSessionId: own.socket.id }, { key: B.key });
  const done = await own.waitEvent('execution-complete', (p) => p.executionId === ok.executionId, { timeoutMs: 60_000 });
  assert.equal(done.status, 'success');
  const out = own.events.filter((e) => e.ev === 'execution-output' && e.payload.executionId === ok.executionId).map((e) => e.payload.data).join('');
  assert.equal(out, 'to-own-socket\n');
  for (const [key, id] of [[A.key, sbA], [B.key, sbB]]) {
    assert.equal((await api(server, 'DELETE', `/api/v1/sandboxes/${id}`, { key })).status, 204);
  }
});

test('capacity holds under concurrency: 4x capacity parallel creates make at most capacity sandboxes', async () => {
  const T = await createTenant(server, 'capacity-race');
  const answers = await Promise.all(
    Array.from({ length: 4 * CAPACITY }, () => api(server, 'POST', '/api/v1/sandboxes', { key: T.key, body: {} })),
  );
  const created = answers.filter((r) => r.status === 201).map((r) => r.body.id);
  for (const r of answers.filter((r) => r.status !== 201)) assertError(r, 503, 'no_capacity');
  const listed = (await api(server, 'GET', '/api/v1/sandboxes', { key: T.key })).body.map((s) => s.id);
  // The runner's own view: what it runs, whoever asked.
  try {
    assert.ok(created.length <= CAPACITY, `${created.length} sandboxes created with --capacity ${CAPACITY}`);
    assert.equal(created.length, CAPACITY, 'every slot should be used');
    assert.deepEqual([...listed].sort(), [...created].sort());
    // Positive control: once one is deleted, a create succeeds again.
    assert.equal((await api(server, 'DELETE', `/api/v1/sandboxes/${created.pop()}`, { key: T.key })).status, 204);
    const again = await api(server, 'POST', '/api/v1/sandboxes', { key: T.key, body: {} });
    assert.equal(again.status, 201, again.text);
    created.push(again.body.id);
  } finally {
    await Promise.all(listed.concat(created).map((id) => api(server, 'DELETE', `/api/v1/sandboxes/${id}`, { key: T.key })));
  }
});

test('the data dir is private to the server user and the database holds no working agent token', async () => {
  const T = await createTenant(server, 'token-at-rest');
  const sb = (await api(server, 'POST', '/api/v1/sandboxes', { key: T.key, body: {} })).body;
  try {
    const conn = (await api(server, 'GET', `/api/v1/sandboxes/${sb.id}/connection`, { key: T.key })).body;
    assert.match(conn.token, /^[0-9a-f]{16,}$/);
    // Positive control: the token from /connection opens the agent.
    const out = await agentExecute(conn, 'echo agent-ok');
    assert.equal(out.stdout, 'agent-ok\n');
    // Every file and dir of the data dir, and the dir itself, is for the owner only.
    const mode = (p) => statSync(p).mode & 0o777;
    assert.equal(mode(server.dataDir), 0o700, 'data dir mode');
    for (const name of readdirSync(server.dataDir)) {
      const p = path.join(server.dataDir, name);
      const st = statSync(p);
      assert.equal(st.mode & 0o077, 0, `${name} is ${(st.mode & 0o777).toString(8)}: readable by others`);
    }
    // The database and its WAL hold neither the token nor its hex text.
    await sleep(200);
    for (const name of readdirSync(server.dataDir).filter((n) => n.startsWith('sandstream.db'))) {
      const bytes = readFileSync(path.join(server.dataDir, name));
      assert.equal(bytes.indexOf(Buffer.from(conn.token)), -1, `${name} holds the agent token in plain text`);
    }
  } finally {
    await api(server, 'DELETE', `/api/v1/sandboxes/${sb.id}`, { key: T.key });
  }
});
