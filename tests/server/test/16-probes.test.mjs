// What probes and scrapers see (issue 21): GET /metrics is Prometheus text whose counters
// move by what the test did, /readyz is ready with `up`'s runner, /version is JSON, and a
// path the server does not have is a JSON 404 (it used to be the page's HTML with 200),
// while `/` and the page's built files are still the page.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileServer, api, assertError, run, text, tmpRoot, until, REPO } from '../lib/harness.mjs';

// A page of our own, so the test knows its files byte for byte whether or not web/ is built.
const root = tmpRoot();
const webDir = path.join(root, 'web');
const INDEX = '<!doctype html><title>probe page</title><p>the page</p>\n';
const ASSET = 'console.log("probe asset");\n';
mkdirSync(path.join(webDir, 'assets'), { recursive: true });
writeFileSync(path.join(webDir, 'index.html'), INDEX);
writeFileSync(path.join(webDir, 'assets', 'app-1.js'), ASSET);

const server = await fileServer(after, { root, args: ['--web-dir', webDir] });

// ------------------------------------------------------------ a strict text-format parser

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const NUMBER = /^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN)$/;

/** A number of the format (Go's ParseFloat spellings: `+Inf`, `-Inf`, `NaN`). */
const num = (v) => (v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v));

/** `k="v",k2="v2"` → {k: v, k2: v2}, with the format's escapes; throws on anything else. */
function parseLabels(s, line) {
  const labels = {};
  let i = 0;
  while (i < s.length) {
    const eq = s.indexOf('=', i);
    assert.ok(eq > i, `label without a name: ${line}`);
    const key = s.slice(i, eq);
    assert.match(key, LABEL, `bad label name: ${line}`);
    assert.equal(s[eq + 1], '"', `label value not quoted: ${line}`);
    let v = '';
    let j = eq + 2;
    for (;;) {
      assert.ok(j < s.length, `unterminated label value: ${line}`);
      const c = s[j];
      if (c === '"') break;
      if (c === '\\') {
        const n = s[j + 1];
        assert.ok(n === '\\' || n === '"' || n === 'n', `bad escape \\${n}: ${line}`);
        v += n === 'n' ? '\n' : n;
        j += 2;
      } else {
        assert.notEqual(c, '\n', `raw newline in a label value: ${line}`);
        v += c;
        j += 1;
      }
    }
    assert.ok(!(key in labels), `label ${key} twice: ${line}`);
    labels[key] = v;
    i = j + 1;
    if (i < s.length) {
      assert.equal(s[i], ',', `labels not separated by commas: ${line}`);
      i += 1;
    }
  }
  return labels;
}

/**
 * Parses an exposition strictly: every line is `# HELP`, `# TYPE` or a sample
 * `name{labels} value`; every family has HELP then TYPE before its samples, once, with
 * its samples together; counters end in `_total`; histograms' buckets are cumulative
 * per series, end in `le="+Inf"`, and `_count` equals that bucket. Returns
 * Map(family → {type, help, samples: [{name, labels, value}]}).
 */
function parsePrometheus(body) {
  assert.ok(body.endsWith('\n'), 'the exposition does not end with a newline');
  const families = new Map();
  let open = null; // the family whose samples are being read
  let help = null; // a HELP waiting for its TYPE
  for (const line of body.slice(0, -1).split('\n')) {
    if (line.startsWith('# HELP ')) {
      const m = /^# HELP (\S+) (.+)$/.exec(line);
      assert.ok(m, `bad HELP line: ${line}`);
      assert.match(m[1], NAME, line);
      assert.equal(help, null, `HELP without TYPE before: ${line}`);
      help = { name: m[1], text: m[2] };
      continue;
    }
    if (line.startsWith('# TYPE ')) {
      const m = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
      assert.ok(m, `bad TYPE line: ${line}`);
      assert.equal(help?.name, m[1], `TYPE without its HELP: ${line}`);
      assert.ok(!families.has(m[1]), `family ${m[1]} twice`);
      if (m[2] === 'counter') assert.match(m[1], /_total$/, `counter not named _total: ${m[1]}`);
      open = { type: m[2], help: help.text, samples: [] };
      families.set(m[1], open);
      help = null;
      continue;
    }
    assert.ok(!line.startsWith('#'), `unexpected comment: ${line}`);
    assert.ok(line.length > 0, 'empty line in the exposition');
    const m = /^([^{\s]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `bad sample line: ${JSON.stringify(line)}`);
    const [, name, rawLabels, value] = m;
    assert.match(name, NAME, line);
    assert.match(value, NUMBER, `bad value: ${line}`);
    assert.ok(open, `sample before any family: ${line}`);
    const family = [...families.keys()].at(-1);
    const suffixes = open.type === 'histogram' ? ['_bucket', '_sum', '_count'] : [''];
    assert.ok(suffixes.some((s) => name === family + s), `sample ${name} outside its family (open: ${family}): ${line}`);
    open.samples.push({ name, labels: rawLabels === undefined ? {} : parseLabels(rawLabels, line), value: num(value) });
  }
  assert.equal(help, null, 'HELP without TYPE at the end');
  for (const [name, f] of families) if (f.type === 'histogram') checkHistogram(name, f.samples);
  return families;
}

function checkHistogram(name, samples) {
  const series = new Map();
  const key = (labels) => JSON.stringify(Object.entries(labels).filter(([k]) => k !== 'le').sort());
  for (const s of samples) {
    if (!series.has(key(s.labels))) series.set(key(s.labels), { buckets: [], sum: null, count: null });
    const one = series.get(key(s.labels));
    if (s.name === `${name}_bucket`) {
      assert.ok('le' in s.labels, `${name} bucket without le`);
      one.buckets.push(s);
    } else if (s.name === `${name}_sum`) one.sum = s.value;
    else one.count = s.value;
  }
  for (const [labels, { buckets, sum, count }] of series) {
    const ctx = `${name}${labels}`;
    assert.ok(buckets.length > 0, `${ctx}: no buckets`);
    assert.equal(buckets.at(-1).labels.le, '+Inf', `${ctx}: buckets do not end in +Inf`);
    for (let i = 1; i < buckets.length; i++) {
      assert.match(buckets[i].labels.le, NUMBER, `${ctx}: bad le`);
      assert.ok(num(buckets[i].labels.le) > num(buckets[i - 1].labels.le), `${ctx}: le not increasing`);
      assert.ok(buckets[i].value >= buckets[i - 1].value, `${ctx}: buckets not cumulative`);
    }
    assert.notEqual(sum, null, `${ctx}: no _sum`);
    assert.equal(count, buckets.at(-1).value, `${ctx}: _count is not the +Inf bucket`);
  }
}

/** The value of `family`'s sample `name` (default: the family) whose labels are `labels`; 0 when absent. */
function value(families, family, labels = {}, name = family) {
  const f = families.get(family);
  assert.ok(f, `no family ${family}`);
  const hit = f.samples.find((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === JSON.stringify(Object.entries(labels).sort()));
  return hit ? hit.value : 0;
}

async function scrape() {
  const r = await fetch(`${server.url}/metrics`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  const body = await r.text();
  return { body, families: parsePrometheus(body) };
}

// ------------------------------------------------------------------------------- tests

test('the parser refuses what is not the text format (the checks can fail)', () => {
  const ok = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 2\n';
  assert.equal(value(parsePrometheus(ok), 'a_total', { x: '1' }), 2);
  for (const bad of [
    '<!doctype html><title>Sandstream</title>\n', // what /metrics answered before
    'a_total 1\n', // no HELP/TYPE
    '# TYPE a_total counter\na_total 1\n', // TYPE without HELP
    '# HELP a_total A.\n# TYPE a_total counter\na_total{x=1} 2\n', // unquoted
    '# HELP h H.\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 0\nh_count 1\n', // not cumulative
    '# HELP h H.\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 0\nh_count 1\n', // no +Inf
  ]) {
    assert.throws(() => parsePrometheus(bad), undefined, bad);
  }
});

test('GET /metrics counts the create, the execution, its bytes and the requests by route template', async (t) => {
  const before = (await scrape()).families;
  const created = await api(server, 'POST', '/api/v1/sandboxes', { body: {} });
  assert.equal(created.status, 201, created.text);
  const sandboxId = created.body.id;
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${sandboxId}`));

  const line = 'probe-'.repeat(100); // 600 bytes, printed 3 times with newlines
  const code = `for _ in range(3):\n    print(${JSON.stringify(line)})`;
  const { data, execution, chunks } = await run(server, { code, language: 'python', containerId: sandboxId });
  assert.equal(execution.status, 'success', JSON.stringify(execution));
  const printed = Buffer.byteLength(text(chunks, { type: 'stdout', phase: 'run' }));
  assert.equal(printed, 3 * (line.length + 1));

  const { body, families: after } = await scrape();
  const moved = (family, labels) => value(after, family, labels) - value(before, family, labels);
  assert.equal(moved('sandstream_sandbox_creates_total', { outcome: 'success' }), 1);
  assert.equal(
    value(after, 'sandstream_sandbox_create_duration_seconds', {}, 'sandstream_sandbox_create_duration_seconds_count') -
      value(before, 'sandstream_sandbox_create_duration_seconds', {}, 'sandstream_sandbox_create_duration_seconds_count'),
    1,
  );
  assert.equal(moved('sandstream_executions_total', { outcome: 'success' }), 1);
  assert.equal(moved('sandstream_executions_total', { outcome: 'error' }), 0);
  assert.ok(moved('sandstream_streamed_bytes_total', { stream: 'stdout' }) >= printed, 'stdout bytes counted');
  assert.equal(moved('sandstream_http_requests_total', { method: 'POST', route: '/api/v1/sandboxes', status: '201' }), 1);
  assert.equal(moved('sandstream_http_requests_total', { method: 'POST', route: '/api/sandbox/exec', status: '202' }), 1);
  // The polls of this execution, each under its template, never under its id.
  assert.ok(value(after, 'sandstream_http_requests_total', { method: 'GET', route: '/api/v1/executions/{id}', status: '200' }) >= 1);
  assert.ok(value(after, 'sandstream_sandboxes', { state: 'running' }) >= 1);
  assert.ok(value(after, 'sandstream_runners_alive') >= 1);

  // Every route label is a template of the route table (the OpenAPI paths), `page` or `unmatched`.
  const openapi = await api(server, 'GET', '/api/openapi.json');
  const templates = new Set([...Object.keys(openapi.body.paths), 'page', 'unmatched']);
  for (const family of ['sandstream_http_requests_total', 'sandstream_http_request_duration_seconds']) {
    for (const s of after.get(family).samples) assert.ok(templates.has(s.labels.route), `route label ${s.labels.route}`);
  }
  for (const secret of [sandboxId, data.executionId, server.apiKey]) {
    assert.ok(!body.includes(secret), `${secret} appears in /metrics`);
  }
});

test('runner heartbeats are counted', async () => {
  const first = value((await scrape()).families, 'sandstream_runner_heartbeats_total');
  await until(async () => value((await scrape()).families, 'sandstream_runner_heartbeats_total') > first, { what: 'a heartbeat' });
});

test('GET /readyz is ready with the runner of `up`; /healthz is unchanged', async () => {
  const r = await api(server, 'GET', '/readyz', { key: null });
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
  assert.deepEqual(r.body, { status: 'ready' });
  const h = await fetch(`${server.url}/healthz`);
  assert.equal(h.status, 200);
  assert.equal(await h.text(), 'ok\n');
});

test('GET /version is the workspace version and the commit (null when not built in)', async () => {
  const r = await api(server, 'GET', '/version', { key: null });
  assert.equal(r.status, 200, r.text);
  const version = /^\[workspace\.package\][^[]*?^version = "([^"]+)"/ms.exec(readFileSync(path.join(REPO, 'Cargo.toml'), 'utf8'))[1];
  assert.deepEqual(Object.keys(r.body).sort(), ['commit', 'version']);
  assert.equal(r.body.version, version);
  assert.ok(r.body.commit === null || /^[0-9a-f]{7,40}$/.test(r.body.commit), r.text);
});

test('paths the server does not have are JSON 404s; the page and its files are still served', async () => {
  for (const p of ['/no-such-page', '/metrics/x', '/readyz/x', '/assets/missing.js', '/api/v1/nothing']) {
    const r = await api(server, 'GET', p, { key: null });
    assertError(r, 404, 'not_found', `no route GET ${p}`);
  }
  assertError(await api(server, 'POST', '/no-such-page', { key: null, body: {} }), 404, 'not_found', 'no route POST /no-such-page');
  // Positive control: the page is the page.
  for (const [p, body, type] of [['/', INDEX, /^text\/html/], ['/index.html', INDEX, /^text\/html/], ['/assets/app-1.js', ASSET, /javascript/]]) {
    const r = await fetch(server.url + p);
    assert.equal(r.status, 200, p);
    assert.match(r.headers.get('content-type') ?? '', type, p);
    assert.equal(await r.text(), body, p);
  }
});
