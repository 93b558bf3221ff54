// The OpenAPI document describes what the server really answers (issue 21): every route
// is called, in success and error cases, and each answer is validated against the
// document's schema for its status (Ajv, JSON Schema 2020-12); then TypeScript types are
// generated from the document (openapi-typescript) and the real answers must type-check
// against them (tsc --strict), as a generated client would need.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileServer, api, createTenant, runnerControl, until, SB_ID } from '../lib/harness.mjs';
import { openapiChecker, typecheckAgainst } from '../lib/openapi.mjs';

const server = await fileServer(after);
const docAnswer = await api(server, 'GET', '/api/openapi.json');
assert.equal(docAnswer.status, 200, docAnswer.text);
const doc = docAnswer.body;
const oa = openapiChecker(doc);

/** Calls a route (`route` is its template; `params` fill it) and checks the answer. */
async function call(method, route, { params = {}, query = '', body, raw, key, headers } = {}) {
  let p = route;
  for (const [k, v] of Object.entries(params)) p = p.replace(`{${k}}`, encodeURIComponent(v));
  if (body !== undefined && raw === undefined) oa.request(method, route, body);
  const res = await api(server, method, p + query, { body, raw, key, headers });
  return oa.response(method, route, res);
}

/** Real answers, kept for the TypeScript check: [operation's response type, body]. */
const samples = [];
const keep = (tsType, res) => {
  samples.push([tsType, res.body]);
  return res;
};

test('every route answers what the OpenAPI document says, in success and error cases', async () => {
  // ---- keys (admin)
  const admin = server.apiKey;
  const made = await call('POST', '/api/v1/keys', { body: { name: 'openapi tenant' } });
  assert.equal(made.status, 201, made.text);
  keep(`paths['/api/v1/keys']['post']['responses'][201]['content']['application/json']`, made);
  const tenant = made.body.key;
  server.keys.add(tenant);
  const other = await createTenant(server, 'openapi other');
  assert.equal((await call('POST', '/api/v1/keys', { body: { name: '' } })).status, 400);
  assert.equal((await call('POST', '/api/v1/keys', { body: { name: 'x' }, key: null })).status, 401);
  assert.equal((await call('POST', '/api/v1/keys', { body: { name: 'x' }, key: tenant })).status, 403);
  const keys = keep(`paths['/api/v1/keys']['get']['responses'][200]['content']['application/json']`, await call('GET', '/api/v1/keys'));
  assert.equal(keys.status, 200);
  assert.equal((await call('GET', '/api/v1/keys', { key: tenant })).status, 403);

  // ---- sandboxes
  const created = await call('POST', '/api/v1/sandboxes', { key: tenant, body: { metadata: { purpose: 'openapi' } } });
  assert.equal(created.status, 201, created.text);
  keep(`paths['/api/v1/sandboxes']['post']['responses'][201]['content']['application/json']`, created);
  const sb = created.body.sandboxId;
  assert.match(sb, SB_ID);
  assert.equal(created.body.id, sb, 'the deprecated `id` is kept beside `sandboxId`');
  assert.equal((await call('POST', '/api/v1/sandboxes', { key: tenant, body: { cpu: 1000 } })).status, 400);
  assert.equal((await call('POST', '/api/v1/sandboxes', { key: null, body: {} })).status, 401);

  const listed = keep(`paths['/api/v1/sandboxes']['get']['responses'][200]['content']['application/json']`, await call('GET', '/api/v1/sandboxes', { key: tenant }));
  assert.deepEqual(listed.body.map((s) => s.sandboxId), [sb]);
  assert.equal((await call('GET', '/api/v1/sandboxes', { key: 'ss_not_a_key' })).status, 401);
  const got = keep(`paths['/api/v1/sandboxes/{id}']['get']['responses'][200]['content']['application/json']`, await call('GET', '/api/v1/sandboxes/{id}', { key: tenant, params: { id: sb } }));
  assert.equal(got.status, 200);
  assert.equal((await call('GET', '/api/v1/sandboxes/{id}', { key: other.key, params: { id: sb } })).status, 404);
  const extended = await call('POST', '/api/v1/sandboxes/{id}/timeout', { key: tenant, params: { id: sb }, body: { timeoutMs: 120_000 } });
  assert.equal(extended.status, 200, extended.text);
  assert.equal((await call('POST', '/api/v1/sandboxes/{id}/timeout', { key: tenant, params: { id: sb }, body: { timeoutMs: 0 } })).status, 400);
  assert.equal((await call('POST', '/api/v1/sandboxes/{id}/timeout', { key: tenant, params: { id: 'sb-0000000000' }, body: { timeoutMs: 1000 } })).status, 404);
  const conn = keep(`paths['/api/v1/sandboxes/{id}/connection']['get']['responses'][200]['content']['application/json']`, await call('GET', '/api/v1/sandboxes/{id}/connection', { key: tenant, params: { id: sb } }));
  assert.equal(conn.status, 200);
  assert.equal((await call('GET', '/api/v1/sandboxes/{id}/connection', { key: tenant, params: { id: 'sb-0000000000' } })).status, 404);
  const ssh = keep(`paths['/api/v1/sandboxes/{id}/ssh-access']['post']['responses'][201]['content']['application/json']`, await call('POST', '/api/v1/sandboxes/{id}/ssh-access', { key: tenant, params: { id: sb }, body: { user: 'root', timeoutMs: 60_000 } }));
  assert.equal(ssh.status, 201, ssh.text);
  assert.equal((await call('POST', '/api/v1/sandboxes/{id}/ssh-access', { key: tenant, params: { id: sb }, body: { user: 'nobody' } })).status, 400);
  assert.equal((await call('POST', '/api/v1/sandboxes/{id}/ssh-access', { key: tenant, params: { id: 'sb-0000000000' } })).status, 404);
  assert.equal((await call('DELETE', '/api/v1/sandboxes/{id}/ssh-access', { key: tenant, params: { id: sb } })).status, 204);
  assert.equal((await call('DELETE', '/api/v1/sandboxes/{id}/ssh-access', { key: tenant, params: { id: 'sb-0000000000' } })).status, 404);
  const templates = keep(`paths['/api/v1/templates']['get']['responses'][200]['content']['application/json']`, await call('GET', '/api/v1/templates', { key: tenant }));
  assert.ok(templates.body.some((t) => t.name === 'default'), templates.text);
  assert.equal((await call('GET', '/api/v1/templates', { key: null })).status, 401);

  // ---- exec and executions
  const accepted = await call('POST', '/api/sandbox/exec', { key: tenant, body: { code: 'print("hi")', language: 'python', sandboxId: sb } });
  assert.equal(accepted.status, 202, accepted.text);
  keep(`paths['/api/sandbox/exec']['post']['responses'][202]['content']['application/json']`, accepted);
  assert.equal(accepted.body.data.sandboxId, sb);
  assert.equal(accepted.body.data.containerId, sb, "note 000's `containerId` names the same sandbox");
  const execId = accepted.body.data.executionId;
  assert.equal((await call('POST', '/api/sandbox/exec', { key: tenant, body: { language: 'python' } })).status, 400);
  const differ = await call('POST', '/api/sandbox/exec', { key: tenant, body: { code: '1', language: 'python', sandboxId: sb, containerId: 'sb-0000000000' } });
  assert.equal(differ.status, 400, differ.text);
  assert.match(differ.body.message, /containerId .* and sandboxId .* differ/);
  assert.equal((await call('POST', '/api/sandbox/exec', { key: tenant, body: { code: '1', language: 'python', containerId: 'sb-0000000000' } })).status, 404);
  assert.equal((await call('POST', '/api/sandbox/exec', { key: null, body: { code: '1', language: 'python' } })).status, 401);

  const done = await until(async () => {
    const r = await call('GET', '/api/v1/executions/{id}', { key: tenant, params: { id: execId } });
    assert.equal(r.status, 200, r.text);
    return r.body.status !== 'running' && r;
  }, { timeoutMs: 120_000, what: 'the execution to end' });
  keep(`paths['/api/v1/executions/{id}']['get']['responses'][200]['content']['application/json']`, done);
  assert.equal(done.body.status, 'success', done.text);
  assert.equal(done.body.sandboxId, sb);
  assert.equal((await call('GET', '/api/v1/executions/{id}', { key: other.key, params: { id: execId } })).status, 404);
  const page = keep(`paths['/api/v1/executions/{id}/logs']['get']['responses'][200]['content']['application/json']`, await call('GET', '/api/v1/executions/{id}/logs', { key: tenant, params: { id: execId }, query: '?afterSeq=0&limit=100' }));
  assert.equal(page.status, 200);
  assert.ok(page.body.chunks.some((c) => c.data.includes('hi')), page.text);
  assert.equal((await call('GET', '/api/v1/executions/{id}/logs', { key: tenant, params: { id: execId }, query: '?afterSeq=x' })).status, 400);
  assert.equal((await call('POST', '/api/v1/executions/{id}/cancel', { key: tenant, params: { id: execId } })).status, 409);
  const long = await call('POST', '/api/sandbox/exec', { key: tenant, body: { code: 'import time\ntime.sleep(60)', language: 'python', containerId: sb } });
  assert.equal(long.status, 202, long.text);
  const cancelled = keep(`paths['/api/v1/executions/{id}/cancel']['post']['responses'][202]['content']['application/json']`, await call('POST', '/api/v1/executions/{id}/cancel', { key: tenant, params: { id: long.body.data.executionId } }));
  assert.equal(cancelled.status, 202, cancelled.text);
  assert.equal((await call('POST', '/api/v1/executions/{id}/cancel', { key: tenant, params: { id: 'exec_0000000000000000' } })).status, 404);

  // ---- files (issue 22): raw bytes both ways, JSON entries, the agent's errors
  const octet = { 'content-type': 'application/octet-stream' };
  const written = keep(`paths['/api/v1/sandboxes/{id}/files']['put']['responses'][201]['content']['application/json']`, await call('PUT', '/api/v1/sandboxes/{id}/files', { key: tenant, params: { id: sb }, query: '?path=docs/a.txt', raw: 'hello files', headers: octet }));
  assert.equal(written.status, 201, written.text);
  const rewritten = await call('PUT', '/api/v1/sandboxes/{id}/files', { key: tenant, params: { id: sb }, query: '?path=docs/a.txt&mode=0600', raw: 'hello files', headers: octet });
  assert.equal(rewritten.status, 200, rewritten.text);
  assert.equal((await call('PUT', '/api/v1/sandboxes/{id}/files', { key: tenant, params: { id: sb }, query: '?path=docs/a.txt&mode=9', raw: 'x', headers: octet })).status, 400);
  assert.equal((await call('PUT', '/api/v1/sandboxes/{id}/files', { key: other.key, params: { id: sb }, query: '?path=x', raw: 'x', headers: octet })).status, 404);
  const read = await call('GET', '/api/v1/sandboxes/{id}/files', { key: tenant, params: { id: sb }, query: '?path=docs/a.txt' });
  assert.deepEqual([read.status, read.text], [200, 'hello files']);
  const part = await call('GET', '/api/v1/sandboxes/{id}/files', { key: tenant, params: { id: sb }, query: '?path=docs/a.txt', headers: { range: 'bytes=-5' } });
  assert.deepEqual([part.status, part.text], [206, 'files']);
  assert.equal((await call('GET', '/api/v1/sandboxes/{id}/files', { key: tenant, params: { id: sb }, query: '?path=docs/a.txt', headers: { range: 'bytes=99-' } })).status, 416);
  assert.equal((await call('GET', '/api/v1/sandboxes/{id}/files', { key: tenant, params: { id: sb }, query: '?path=docs' })).status, 400);
  const listing = keep(`paths['/api/v1/sandboxes/{id}/files/list']['get']['responses'][200]['content']['application/json']`, await call('GET', '/api/v1/sandboxes/{id}/files/list', { key: tenant, params: { id: sb }, query: '?path=docs&depth=2' }));
  assert.deepEqual(listing.body.entries.map((e) => e.name), ['a.txt']);
  assert.equal((await call('GET', '/api/v1/sandboxes/{id}/files/list', { key: tenant, params: { id: sb }, query: '?path=docs&depth=0' })).status, 400);
  const stat = keep(`paths['/api/v1/sandboxes/{id}/files/stat']['get']['responses'][200]['content']['application/json']`, await call('GET', '/api/v1/sandboxes/{id}/files/stat', { key: tenant, params: { id: sb }, query: '?path=docs/a.txt' }));
  assert.equal(stat.body.mode, 0o600, stat.text);
  assert.equal((await call('GET', '/api/v1/sandboxes/{id}/files/stat', { key: tenant, params: { id: sb }, query: '?path=nope' })).status, 404);
  const dir = keep(`paths['/api/v1/sandboxes/{id}/files/mkdir']['post']['responses'][201]['content']['application/json']`, await call('POST', '/api/v1/sandboxes/{id}/files/mkdir', { key: tenant, params: { id: sb }, body: { path: 'docs/sub', mode: '0700' } }));
  assert.equal(dir.status, 201, dir.text);
  assert.equal((await call('POST', '/api/v1/sandboxes/{id}/files/mkdir', { key: tenant, params: { id: sb }, body: { path: 'docs/a.txt' } })).status, 409);
  const moved = keep(`paths['/api/v1/sandboxes/{id}/files/move']['post']['responses'][200]['content']['application/json']`, await call('POST', '/api/v1/sandboxes/{id}/files/move', { key: tenant, params: { id: sb }, body: { source: 'docs/a.txt', destination: 'docs/sub/b.txt' } }));
  assert.equal(moved.status, 200, moved.text);
  assert.equal((await call('POST', '/api/v1/sandboxes/{id}/files/move', { key: tenant, params: { id: sb }, body: { source: 'docs/a.txt', destination: 'c' } })).status, 404);
  assert.equal((await call('DELETE', '/api/v1/sandboxes/{id}/files', { key: tenant, params: { id: sb }, query: '?path=docs' })).status, 409);
  // A watch of docs: its answer (200, the watch in place) comes at once, its body ends
  // when docs is removed below.
  const watchRoute = '/api/v1/sandboxes/{id}/files/watch';
  const watch = await fetch(`${server.url}/api/v1/sandboxes/${sb}/files/watch?path=docs&recursive=true`, { headers: { authorization: `Bearer ${tenant}` } });
  assert.equal(watch.status, 200);
  assert.equal((await call('GET', watchRoute, { key: tenant, params: { id: sb }, query: '?path=nope' })).status, 404);
  assert.equal((await call('GET', watchRoute, { key: other.key, params: { id: sb }, query: '?path=docs' })).status, 404);
  assert.equal((await call('DELETE', '/api/v1/sandboxes/{id}/files', { key: tenant, params: { id: sb }, query: '?path=docs&recursive=true' })).status, 204);
  const events = await watch.text();
  assert.match(events, /event: end\ndata: \{"reason":"closed","message":"the agent ended the watch"\}\n\n$/, events);
  oa.response('GET', watchRoute, { status: watch.status, headers: watch.headers, text: events });

  // ---- terminals: one opened, resized, typed into; its output read to its exit
  const termRoute = '/api/v1/sandboxes/{id}/terminals';
  const term = keep(`paths['${termRoute}']['post']['responses'][201]['content']['application/json']`, await call('POST', termRoute, { key: tenant, params: { id: sb }, body: { cols: 80, rows: 24 } }));
  assert.equal(term.status, 201, term.text);
  assert.equal((await call('POST', termRoute, { key: tenant, params: { id: sb }, body: { cols: 0, rows: 24 } })).status, 400);
  const tparams = { id: sb, tid: term.body.id };
  assert.equal((await call('POST', `${termRoute}/{tid}/resize`, { key: tenant, params: tparams, body: { cols: 100, rows: 30 } })).status, 204);
  assert.equal((await call('POST', `${termRoute}/{tid}/resize`, { key: tenant, params: tparams, body: { cols: 100, rows: 10001 } })).status, 400);
  assert.equal((await call('POST', `${termRoute}/{tid}/input`, { key: tenant, params: tparams, body: { data: '' } })).status, 400);
  assert.equal((await call('POST', `${termRoute}/{tid}/input`, { key: tenant, params: tparams, body: { data: 'exit 5\r' } })).status, 204);
  const outRoute = `${termRoute}/{tid}/output`;
  const out = await fetch(`${server.url}/api/v1/sandboxes/${sb}/terminals/${term.body.id}/output`, { headers: { authorization: `Bearer ${tenant}` } });
  assert.equal(out.status, 200);
  const outText = await out.text();
  assert.match(outText, /event: exit\ndata: \{"exitCode":5,"status":"exited"\}\n\n$/, outText);
  oa.response('GET', outRoute, { status: out.status, headers: out.headers, text: outText });
  assert.equal((await call('GET', outRoute, { key: other.key, params: tparams })).status, 404);
  const second = await call('POST', termRoute, { key: tenant, params: { id: sb }, body: { cols: 80, rows: 24 } });
  assert.equal(second.status, 201, second.text);
  assert.equal((await call('DELETE', `${termRoute}/{tid}`, { key: tenant, params: { id: sb, tid: second.body.id } })).status, 204);
  assert.equal((await call('DELETE', `${termRoute}/{tid}`, { key: tenant, params: tparams })).status, 409);

  // ---- kill, and what a killed sandbox answers
  assert.equal((await call('DELETE', '/api/v1/sandboxes/{id}', { key: tenant, params: { id: sb } })).status, 204);
  assert.equal((await call('DELETE', '/api/v1/sandboxes/{id}', { key: other.key, params: { id: sb } })).status, 404);
  assert.equal((await call('GET', '/api/v1/sandboxes/{id}/connection', { key: tenant, params: { id: sb } })).status, 409);
  assert.equal((await call('GET', '/api/v1/sandboxes/{id}/files/stat', { key: tenant, params: { id: sb }, query: '?path=x' })).status, 409);
  assert.equal((await call('POST', '/api/v1/sandboxes/{id}/timeout', { key: tenant, params: { id: sb }, body: { timeoutMs: 1000 } })).status, 409);
  assert.equal((await call('POST', '/api/v1/sandboxes/{id}/ssh-access', { key: tenant, params: { id: sb } })).status, 409);
  assert.equal((await call('DELETE', '/api/v1/sandboxes/{id}/ssh-access', { key: tenant, params: { id: sb } })).status, 409);
  assert.equal((await call('POST', '/api/sandbox/exec', { key: tenant, body: { code: '1', language: 'python', sandboxId: sb } })).status, 409);

  // ---- login links and sessions
  const link = keep(`paths['/api/v1/login-links']['post']['responses'][201]['content']['application/json']`, await call('POST', '/api/v1/login-links', { key: tenant }));
  assert.equal(link.status, 201, link.text);
  assert.equal((await call('POST', '/api/v1/login-links', { key: admin, body: { keyId: other.id } })).status, 201);
  assert.equal((await call('POST', '/api/v1/login-links', { key: tenant, body: { keyId: other.id } })).status, 403);
  assert.equal((await call('POST', '/api/v1/login-links', { key: admin, body: { keyId: 'key_0000000000000000' } })).status, 404);
  assert.equal((await call('POST', '/api/v1/login-links', { key: tenant, raw: '{"keyId":' })).status, 400);
  const session = keep(`paths['/api/v1/session']['post']['responses'][201]['content']['application/json']`, await call('POST', '/api/v1/session', { key: tenant }));
  assert.equal(session.status, 201, session.text);
  assert.match(session.headers.get('set-cookie') ?? '', /^sandstream_session=/);
  assert.equal((await call('POST', '/api/v1/session', { key: 'ss_not_a_key' })).status, 401);
  const cookie = (session.headers.get('set-cookie') ?? '').split(';')[0];
  assert.equal((await call('DELETE', '/api/v1/session', { key: null, headers: { cookie } })).status, 204);

  // ---- runners: the admin's list, and the routes a runner calls (a runner of a template
  // nobody asks for, so no sandbox is ever placed on it)
  const runners = keep(`paths['/api/v1/runners']['get']['responses'][200]['content']['application/json']`, await call('GET', '/api/v1/runners'));
  assert.equal(runners.status, 200);
  assert.equal((await call('GET', '/api/v1/runners', { key: tenant })).status, 403);
  const { secret } = runnerControl(server);
  const registration = {
    name: 'openapi-fake', controlUrl: 'http://127.0.0.1:9', advertiseHost: '127.0.0.1', capacity: 1, backend: 'oci', templates: ['openapi-only'],
  };
  const registered = keep(`paths['/api/v1/runners']['post']['responses'][201]['content']['application/json']`, await call('POST', '/api/v1/runners', { key: secret, body: registration }));
  assert.equal(registered.status, 201, registered.text);
  assert.equal((await call('POST', '/api/v1/runners', { key: secret, body: { ...registration, controlUrl: 'ftp://127.0.0.1' } })).status, 400);
  assert.equal((await call('POST', '/api/v1/runners', { key: admin, body: registration })).status, 401);
  const beat = { sandboxes: [], templates: ['openapi-only'], takenAt: Date.now() };
  const reply = keep(`paths['/api/v1/runners/{id}/heartbeat']['post']['responses'][200]['content']['application/json']`, await call('POST', '/api/v1/runners/{id}/heartbeat', { key: secret, params: { id: registered.body.id }, body: beat }));
  assert.equal(reply.status, 200, reply.text);
  assert.equal((await call('POST', '/api/v1/runners/{id}/heartbeat', { key: secret, params: { id: 'rn-nobody' }, body: beat })).status, 404);

  // ---- revoking keys
  assert.equal((await call('DELETE', '/api/v1/keys/{id}', { params: { id: other.id } })).status, 204);
  assert.equal((await call('DELETE', '/api/v1/keys/{id}', { params: { id: 'key_0000000000000000' } })).status, 404);
  const me = keys.body.find((k) => k.admin);
  assert.equal((await call('DELETE', '/api/v1/keys/{id}', { params: { id: me.id } })).status, 400);
  assert.equal((await call('DELETE', '/api/v1/keys/{id}', { key: tenant, params: { id: other.id } })).status, 403);

  // ---- public routes
  keep(`paths['/api/openapi.json']['get']['responses'][200]['content']['application/json']`, await call('GET', '/api/openapi.json', { key: null }));
  assert.equal((await call('GET', '/healthz', { key: null })).status, 200);
  keep(`paths['/readyz']['get']['responses'][200]['content']['application/json']`, await call('GET', '/readyz', { key: null }));
  assert.equal((await call('GET', '/metrics', { key: null })).status, 200);
  keep(`paths['/version']['get']['responses'][200]['content']['application/json']`, await call('GET', '/version', { key: null }));

  // Every operation was answered with a success, and every one that needs credentials
  // with an error too.
  const seen = [...oa.seen];
  for (const [route, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const mine = seen.filter((s) => s.startsWith(`${method.toUpperCase()} ${route} `)).map((s) => Number(s.split(' ')[2]));
      assert.ok(mine.some((s) => s < 300), `${method} ${route}: no success checked (${mine})`);
      if (op.security.length > 0) assert.ok(mine.some((s) => s >= 400), `${method} ${route}: no error checked (${mine})`);
    }
  }
  assert.equal(Object.values(doc.paths).flatMap(Object.keys).length, 40);
});

test('TypeScript types generated from the document accept the real answers', async () => {
  assert.ok(samples.length >= 24, `only ${samples.length} answers kept`);
  const program = [
    "import type { paths } from './api';",
    ...samples.map(([type, body], i) => `export const answer${i}: ${type} = ${JSON.stringify(body)};`),
    // A generated client reads a sandbox by its one name.
    "export const name = (s: paths['/api/v1/sandboxes/{id}']['get']['responses'][200]['content']['application/json']): string => s.sandboxId;",
    '',
  ].join('\n');
  await typecheckAgainst(doc, program);
  // The check has teeth: a field the document does not have is refused.
  await assert.rejects(
    typecheckAgainst(doc, `import type { components } from './api';\nexport const x: components['schemas']['Version'] = { version: '1', commit: null, extra: 1 };\n`),
    /extra/,
  );
});
