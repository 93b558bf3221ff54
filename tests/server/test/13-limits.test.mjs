// What one caller may cost: bounds on a sandbox's size and life, per-key quotas (count,
// disk) and request rate, and the slow-down after wrong keys. Each with its positive
// control.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { fileServer, api, assertError, createTenant, sleep } from '../lib/harness.mjs';

const server = await fileServer(after, {
  args: [
    '--max-sandbox-memory-mb', '1024', '--max-sandbox-cpu', '2', '--max-sandbox-lifetime-ms', '600000',
    '--max-sandboxes-per-key', '2', '--requests-per-second', '20', '--request-burst', '40',
    '--auth-failures-per-minute', '5',
    // Small disks, so the disk quota is reached long before the host's disk: a create
    // without diskMb gets (and counts) 256 MiB.
    '--max-disk-mb-per-key', '1000', '--default-disk-mb', '256',
  ],
});

/** GET `route` from the local address `from` (another loopback address than the tests'). */
function getFrom(from, route, key) {
  const url = new URL(server.url + route);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: url.hostname, port: url.port, path: url.pathname, localAddress: from, headers: { authorization: `Bearer ${key}` } },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

test('a sandbox larger or longer-lived than the server allows is a 400 naming the limit', async () => {
  const T = await createTenant(server, 'bounds');
  assertError(await api(server, 'POST', '/api/v1/sandboxes', { key: T.key, body: { memoryMb: 262144 } }), 400, 'bad_request', /\(1024\)/);
  assertError(await api(server, 'POST', '/api/v1/sandboxes', { key: T.key, body: { cpu: 64 } }), 400, 'bad_request', /\(2\)/);
  assertError(await api(server, 'POST', '/api/v1/sandboxes', { key: T.key, body: { timeoutMs: 600001 } }), 400, 'bad_request', /600000 ms/);
  assert.deepEqual((await api(server, 'GET', '/api/v1/sandboxes', { key: T.key })).body, [], 'nothing half-created');
  // Positive control: at the bounds it is created; its timeout can be extended up to the
  // lifetime, counted from its creation, and no further.
  const sb = await api(server, 'POST', '/api/v1/sandboxes', { key: T.key, body: { memoryMb: 1024, cpu: 2, timeoutMs: 60000 } });
  assert.equal(sb.status, 201, sb.text);
  try {
    const ok = await api(server, 'POST', `/api/v1/sandboxes/${sb.body.id}/timeout`, { key: T.key, body: { timeoutMs: 500000 } });
    assert.equal(ok.status, 200, ok.text);
    assertError(await api(server, 'POST', `/api/v1/sandboxes/${sb.body.id}/timeout`, { key: T.key, body: { timeoutMs: 600000 } }), 400, 'bad_request', /at most 600000 ms from its creation/);
  } finally {
    await api(server, 'DELETE', `/api/v1/sandboxes/${sb.body.id}`, { key: T.key });
  }
});

test('one key cannot take every slot: past its quota a create is a 429 with Retry-After, other keys still create', async () => {
  const A = await createTenant(server, 'quota-a');
  const B = await createTenant(server, 'quota-b');
  const tries = await Promise.all(Array.from({ length: 6 }, () => api(server, 'POST', '/api/v1/sandboxes', { key: A.key, body: {} })));
  const made = tries.filter((r) => r.status === 201).map((r) => r.body.id);
  try {
    assert.equal(made.length, 2, `a key with a quota of 2 created ${made.length}`);
    for (const r of tries.filter((r) => r.status !== 201)) {
      assertError(r, 429, 'rate_limited', /limit/);
      assert.ok(Number(r.headers.get('retry-after')) >= 1, 'Retry-After');
    }
    const b = await api(server, 'POST', '/api/v1/sandboxes', { key: B.key, body: {} });
    assert.equal(b.status, 201, b.text);
    made.push(b.body.id);
    await api(server, 'DELETE', `/api/v1/sandboxes/${b.body.id}`, { key: B.key });
    // Once one of A's ends, A creates again.
    assert.equal((await api(server, 'DELETE', `/api/v1/sandboxes/${made[0]}`, { key: A.key })).status, 204);
    const again = await api(server, 'POST', '/api/v1/sandboxes', { key: A.key, body: {} });
    assert.equal(again.status, 201, again.text);
    made.push(again.body.id);
  } finally {
    for (const id of made) {
      await api(server, 'DELETE', `/api/v1/sandboxes/${id}`, { key: A.key });
    }
  }
});

test('a key past its disk quota gets 429 naming the limit, even from parallel creates; nothing is half-created', async () => {
  const T = await createTenant(server, 'disk-quota');
  const made = [];
  const create = async (body) => {
    const r = await api(server, 'POST', '/api/v1/sandboxes', { key: T.key, body });
    if (r.status === 201) made.push(r.body.id);
    return r;
  };
  try {
    // Six parallel creates of 600 MiB against 1000 MiB: one fits (the count quota, 2,
    // would let two through).
    const tries = await Promise.all(Array.from({ length: 6 }, () => create({ diskMb: 600 })));
    assert.equal(made.length, 1, `${made.length} sandboxes of 600 MiB created within a 1000 MiB quota`);
    for (const r of tries.filter((r) => r.status !== 201)) {
      assertError(r, 429, 'rate_limited', /this key's sandboxes have \d+ MiB of disk; another 600 MiB would pass its limit of 1000 MiB/);
      assert.ok(Number(r.headers.get('retry-after')) >= 1, 'Retry-After');
    }
    assertError(await create({ diskMb: 500 }), 429, 'rate_limited', /have 600 MiB of disk; another 500 MiB would pass its limit of 1000 MiB/);
    // Larger than the whole quota: it can never fit, so a 400, not a 429 to retry.
    assertError(await create({ diskMb: 2000 }), 400, 'bad_request', /diskMb 2000 is more than one key may have in all on this server \(1000 MiB\)/);
    const listed = (await api(server, 'GET', '/api/v1/sandboxes', { key: T.key })).body.map((s) => s.id);
    assert.deepEqual(listed, made, 'a refused create left a sandbox');

    // Positive control: what fits is created. Without diskMb a sandbox counts as the
    // runner's default disk (256 MiB): 600 + 256 fit.
    assert.equal((await create({})).status, 201);
    assert.equal((await api(server, 'DELETE', `/api/v1/sandboxes/${made.shift()}`, { key: T.key })).status, 204);
    // Its 600 MiB are free again; the default-disk sandbox still counts its 256.
    assertError(await create({ diskMb: 800 }), 429, 'rate_limited', /have 256 MiB of disk; another 800 MiB/);
    const full = await create({ diskMb: 744 });
    assert.equal(full.status, 201, `exactly at the quota: ${full.text}`);
  } finally {
    for (const id of made) await api(server, 'DELETE', `/api/v1/sandboxes/${id}`, { key: T.key });
  }
});

test('a key past its request rate gets 429 with Retry-After, then is served again', async () => {
  const T = await createTenant(server, 'rate');
  const answers = await Promise.all(Array.from({ length: 120 }, () => api(server, 'GET', '/api/v1/sandboxes', { key: T.key })));
  const limited = answers.filter((r) => r.status === 429);
  assert.ok(limited.length > 0, 'no request was limited');
  assert.ok(answers.filter((r) => r.status === 200).length >= 40, 'the burst was not served');
  assertError(limited[0], 429, 'rate_limited', /requests per second/);
  const wait = Number(limited[0].headers.get('retry-after'));
  assert.ok(wait >= 1 && wait <= 5, `Retry-After ${wait}`);
  await sleep(wait * 1000);
  assert.equal((await api(server, 'GET', '/api/v1/sandboxes', { key: T.key })).status, 200);
});

// Last in this file: it locks the tests' own address out for a minute.
test('an address that sends too many wrong keys is refused for a while; other addresses are not', async () => {
  const T = await createTenant(server, 'lockout');
  for (let i = 0; i < 5; i++) {
    assertError(await api(server, 'GET', '/api/v1/sandboxes', { key: `ss_wrong_${i}` }), 401, 'unauthorized');
  }
  const locked = await api(server, 'GET', '/api/v1/sandboxes', { key: 'ss_wrong_again' });
  assertError(locked, 429, 'rate_limited', /too many wrong API keys/);
  assert.ok(Number(locked.headers.get('retry-after')) >= 1);
  // Even a right key from that address waits: a guesser learns nothing from it.
  assertError(await api(server, 'GET', '/api/v1/sandboxes', { key: T.key }), 429, 'rate_limited');
  // Positive control: the right key from another address is served.
  const other = await getFrom('127.0.0.2', '/api/v1/sandboxes', T.key);
  assert.equal(other.status, 200, other.text);
});
