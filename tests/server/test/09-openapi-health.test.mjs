// GET /api/openapi.json covers every route of API.md; /healthz; the playground token.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileServer, api, API_MD } from '../lib/harness.mjs';

// The routing check below calls every route of API.md with a wrong key: more than the
// default 20 wrong keys a minute from one address, after which the address gets 429s.
const server = await fileServer(after, { args: ['--auth-failures-per-minute', '1000'] });

/** Method+path pairs of the server's routes named in API.md (runner control routes excluded). */
function routesOfApiMd() {
  const md = readFileSync(API_MD, 'utf8');
  const pairs = new Set();
  for (const m of md.matchAll(/`(GET|POST|PUT|PATCH|DELETE) (\/[^`\s]*)`/g)) {
    const p = m[2].split('?')[0];
    if (p.startsWith('/api/') || p === '/healthz') pairs.add(`${m[1]} ${p}`);
  }
  return [...pairs].sort();
}

test('GET /api/openapi.json lists every route of API.md', async () => {
  const expected = routesOfApiMd();
  // Guard against a vacuous pass if API.md's format changes.
  for (const must of [
    'POST /api/sandbox/exec',
    'POST /api/v1/sandboxes',
    'GET /api/v1/sandboxes',
    'GET /api/v1/sandboxes/{id}',
    'DELETE /api/v1/sandboxes/{id}',
    'POST /api/v1/sandboxes/{id}/timeout',
    'GET /api/v1/sandboxes/{id}/connection',
    'GET /api/v1/executions/{id}',
    'GET /api/v1/executions/{id}/logs',
    'POST /api/v1/executions/{id}/cancel',
    'POST /api/v1/keys',
    'GET /api/v1/keys',
    'DELETE /api/v1/keys/{id}',
    'POST /api/v1/runners',
    'POST /api/v1/runners/{id}/heartbeat',
    'GET /api/v1/runners',
    'GET /api/openapi.json',
    'GET /healthz',
  ]) {
    assert.ok(expected.includes(must), `API.md parse lost ${must}: ${expected}`);
  }
  const r = await api(server, 'GET', '/api/openapi.json');
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
  assert.match(r.body.openapi, /^3\./);
  const served = new Set();
  for (const [p, ops] of Object.entries(r.body.paths)) {
    for (const method of Object.keys(ops)) {
      if (['get', 'post', 'put', 'patch', 'delete'].includes(method)) served.add(`${method.toUpperCase()} ${p}`);
    }
  }
  const missing = expected.filter((x) => !served.has(x));
  assert.deepEqual(missing, [], `routes of API.md missing from openapi.json`);
  // and every documented path is really routed (not the JSON 404 of unknown routes)
  for (const pair of expected) {
    const [method, p] = pair.split(' ');
    const res = await api(server, method, p.replace('{id}', 'zz-unknown'), { key: 'not-a-key', body: method === 'GET' || method === 'DELETE' ? undefined : {} });
    assert.ok(!(res.status === 404 && /no route/i.test(res.body?.message ?? '')), `${pair} is not routed: ${res.text}`);
  }
});

test('GET /healthz is 200 without a key', async () => {
  const r = await fetch(`${server.url}/healthz`);
  assert.equal(r.status, 200);
  assert.equal((await r.text()).trim(), 'ok');
});

test('the playground URL sets a session cookie once; the cookie authenticates REST', async () => {
  const m = /Open the playground: (http:\/\/\S+)/.exec(server.stdout);
  assert.ok(m, `no playground line in: ${server.stdout}`);
  const first = await fetch(m[1], { redirect: 'manual' });
  assert.ok(first.status >= 300 && first.status < 400, `status ${first.status}`);
  assert.equal(first.headers.get('location'), '/');
  const setCookie = first.headers.get('set-cookie') ?? '';
  assert.match(setCookie, /^sandstream_session=[^;]+/);
  assert.match(setCookie, /HttpOnly/i);
  assert.match(setCookie, /SameSite=Strict/i);
  const cookie = setCookie.split(';')[0];
  const list = await api(server, 'GET', '/api/v1/sandboxes', { key: null, headers: { cookie } });
  assert.equal(list.status, 200, list.text);
  // used once: a second visit does not log in again
  const second = await fetch(m[1], { redirect: 'manual' });
  assert.ok(!(second.headers.get('set-cookie') ?? '').startsWith('sandstream_session='), 'the one-time token worked twice');
});
