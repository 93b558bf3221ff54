// stdout and stderr keep the order the program wrote them in, everywhere: the live
// socket.io viewer, a client that joined late and replayed, and the REST log read page
// by page all show 1,000 alternating flushed lines in program order (issue 21).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  fileServer, api, connectClient, exec, assertContiguous, chunkView, waitExecution, createTenant,
} from '../lib/harness.mjs';

const server = await fileServer(after);

const PAIRS = 1000;
// Each line written and flushed on its own; a pause halfway lets a client join mid-run.
const PROGRAM = `import sys, time
for i in range(${PAIRS}):
    sys.stdout.write(f"out {i}\\n"); sys.stdout.flush()
    sys.stderr.write(f"err {i}\\n"); sys.stderr.flush()
    if i == ${PAIRS / 2 - 1}:
        time.sleep(1)
`;
const IN_ORDER = Array.from({ length: PAIRS }, (_, i) => `out ${i}\nerr ${i}\n`).join('');

/** The run phase's output, both streams, in seq order. */
function merged(chunks) {
  return chunks.filter((c) => c.phase === 'run').map((c) => c.data).join('');
}

/** Asserts `got` is the program's order, naming the first line that differs. */
function assertInOrder(got, what) {
  if (got === IN_ORDER) return;
  const [g, w] = [got.split('\n'), IN_ORDER.split('\n')];
  const at = g.findIndex((l, i) => l !== w[i]);
  assert.fail(`${what}: line ${at} is ${JSON.stringify(g.slice(at - 1, at + 3))}, want ${JSON.stringify(w.slice(at - 1, at + 3))}`);
}

/** The whole stored log, read `limit` chunks per page. */
async function pagedLogs(id, key, limit) {
  const all = [];
  let pages = 0;
  for (;;) {
    const r = await api(server, 'GET', `/api/v1/executions/${id}/logs?afterSeq=${all.at(-1)?.seq ?? 0}&limit=${limit}`, { key });
    assert.equal(r.status, 200, r.text);
    pages++;
    all.push(...r.body.chunks);
    if (r.body.complete) return { chunks: all, pages };
    assert.equal(r.body.chunks.length, limit, 'a page short of the limit is the last one');
  }
}

test('1,000 alternating flushed stdout/stderr lines arrive in program order live, late and over REST', async (t) => {
  const { key } = await createTenant(server, 'order');
  const r = await api(server, 'POST', '/api/v1/sandboxes', { key, body: {} });
  assert.equal(r.status, 201, r.text);
  const containerId = r.body.id;
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${containerId}`, { key }));

  const live = await connectClient(server, key);
  t.after(() => live.close());
  await live.join(containerId);
  const { executionId } = await exec(server, { code: PROGRAM, language: 'python', containerId }, { key });

  // A second client arrives once the live one has seen output, and replays from the start.
  await live.waitUntil(() => live.lastKept(executionId) >= 1, { timeoutMs: 60_000, what: 'first chunk' });
  const late = await connectClient(server, key);
  t.after(() => late.close());
  await late.join(containerId);
  late.resume(executionId, 0);

  const ex = await waitExecution(server, executionId, { key, timeoutMs: 120_000 });
  assert.equal(ex.status, 'success', JSON.stringify(ex));
  for (const c of [live, late]) await c.waitEvent('execution-complete', (p) => p.executionId === executionId, { timeoutMs: 15_000 });

  const stored = await pagedLogs(executionId, key, 25);
  assertContiguous(stored.chunks, 'stored log');
  // Positive control: each stream alone is whole either way.
  const only = (type) => stored.chunks.filter((c) => c.phase === 'run' && c.type === type).map((c) => c.data).join('');
  assert.equal(only('stdout'), Array.from({ length: PAIRS }, (_, i) => `out ${i}\n`).join(''));
  assert.equal(only('stderr'), Array.from({ length: PAIRS }, (_, i) => `err ${i}\n`).join(''));
  assertInOrder(merged(stored.chunks), `REST, ${stored.pages} pages of 25`);
  assert.ok(stored.pages > 1, `the log was read in pages (${stored.pages})`);
  // Every chunk is one stream's: a stdout chunk holds only "out" lines.
  for (const c of stored.chunks) assert.match(c.data, c.type === 'stdout' ? /^(out \d+\n)+$/ : /^(err \d+\n)+$/, `chunk ${c.seq}`);

  for (const [name, c] of [['live viewer', live], ['late joiner', late]]) {
    const kept = c.kept(executionId);
    assertContiguous(kept, name);
    assertInOrder(merged(kept), name);
    assert.deepEqual(kept.map(chunkView), stored.chunks, `${name}: the same chunks as the stored log`);
  }
});
