// Terminals over REST (issue 23, the playground's Terminal tab): the server's
// /api/v1/sandboxes/{id}/terminals routes open the user's login shell on a
// pseudo-terminal through the agent, take input and resizes, and stream its output as
// server-sent events from any byte offset. Typed input is answered (`echo $((6*7))` →
// 42), `stty size` follows a resize, a re-attach from an offset (by query or by
// `Last-Event-ID`) gets exactly the rest, the shell's exit is reported, another key is
// refused, bad sizes and input are 400/413, a sandbox runs at most 8 terminals (DELETE
// closes one) and 32 output streams.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileServer, api, assertError, createTenant, until } from '../lib/harness.mjs';

const server = await fileServer(after);
const { key } = await createTenant(server, 'terminal');
const other = await createTenant(server, 'terminal-other');

async function sandbox(t) {
  const c = await api(server, 'POST', '/api/v1/sandboxes', { key, body: {} });
  assert.equal(c.status, 201, c.text);
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${c.body.id}`, { key }));
  return c.body.id;
}

/** Output as the text a user reads: without escape sequences (bash turns bracketed
 * paste on and off around each line) and carriage returns. */
const plain = (bytes) =>
  bytes.toString('latin1').replace(/\x1b\[[0-?]*[ -\/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-Z\\-_]/g, '').replace(/\r/g, '');

const base = (id) => `/api/v1/sandboxes/${id}/terminals`;

async function open(id, body = { cols: 80, rows: 24 }, k = key) {
  return api(server, 'POST', base(id), { key: k, body });
}

const type = (id, tid, data, k = key) => api(server, 'POST', `${base(id)}/${tid}/input`, { key: k, body: { data } });
const resize = (id, tid, body, k = key) => api(server, 'POST', `${base(id)}/${tid}/resize`, { key: k, body });

/**
 * Follows `GET …/output`. An error answer resolves as {status, body}; a 200 as a reader
 * whose `bytes` grow with each `output` event (checked to start where the last ended),
 * with `until(text)` waiting for `text` in what arrived after `from`, and `exit` set by
 * the `exit` event.
 */
async function follow(id, tid, { offset, lastEventId, k = key } = {}) {
  const ctrl = new AbortController();
  const headers = { authorization: `Bearer ${k}` };
  if (lastEventId !== undefined) headers['last-event-id'] = String(lastEventId);
  const q = offset === undefined ? '' : `?offset=${offset}`;
  const res = await fetch(server.url + `${base(id)}/${tid}/output${q}`, { headers, signal: ctrl.signal });
  if (res.status !== 200) {
    const text = await res.text();
    return { status: res.status, headers: res.headers, text, body: JSON.parse(text) };
  }
  assert.match(res.headers.get('content-type'), /^text\/event-stream/);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  const f = {
    status: 200,
    start: null,
    next: null,
    bytes: Buffer.alloc(0),
    exit: null,
    end: null,
    close: () => ctrl.abort(),
    text: () => f.bytes.toString('latin1'),
    /** Reads events until `done()` is true (or the stream ends). */
    async read(done, what, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (!done()) {
        const cut = buffered.indexOf('\n\n');
        if (cut >= 0) {
          const block = buffered.slice(0, cut);
          buffered = buffered.slice(cut + 2);
          const fields = {};
          for (const line of block.split('\n')) if (!line.startsWith(':')) fields[line.slice(0, line.indexOf(':'))] = line.slice(line.indexOf(':') + 2);
          if (fields.event === 'output') {
            const data = JSON.parse(fields.data);
            const chunk = Buffer.from(data.data, 'base64');
            if (f.start === null) f.start = data.offset;
            else assert.equal(data.offset, f.next, 'each chunk starts where the one before ended');
            f.next = data.offset + chunk.length;
            assert.equal(fields.id, String(f.next), "an output event's id is the offset after it");
            f.bytes = Buffer.concat([f.bytes, chunk]);
          } else if (fields.event === 'exit') f.exit = JSON.parse(fields.data);
          else if (fields.event === 'end') f.end = JSON.parse(fields.data);
          continue;
        }
        if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms; output so far: ${JSON.stringify(f.text())}`);
        let timer;
        const chunk = await Promise.race([reader.read(), new Promise((r) => (timer = setTimeout(() => r('timeout'), 1000)))]);
        clearTimeout(timer);
        if (chunk === 'timeout') continue;
        if (chunk.done) {
          if (!done()) throw new Error(`the stream ended before ${what}; output: ${JSON.stringify(f.text())}`);
          return;
        }
        buffered += decoder.decode(chunk.value, { stream: true });
      }
    },
    /** Waits for `re` to match the output past byte `from`, as plain text (see `plain`). */
    until(re, from = 0) {
      return f.read(() => re.test(plain(f.bytes.subarray(from))), String(re));
    },
    ended() {
      return f.read(() => f.exit !== null || f.end !== null, 'the exit event');
    },
  };
  return f;
}

test('a terminal answers what is typed, follows a resize, resumes from any offset and reports its exit', async (t) => {
  const id = await sandbox(t);
  const opened = await open(id);
  assert.equal(opened.status, 201, opened.text);
  assert.deepEqual(Object.keys(opened.body).sort(), ['cols', 'id', 'pid', 'rows']);
  assert.equal(opened.body.cols, 80);
  assert.equal(opened.body.rows, 24);
  assert.ok(Number.isInteger(opened.body.pid) && opened.body.pid > 0, opened.text);
  const tid = opened.body.id;

  const live = await follow(id, tid);
  assert.equal(live.status, 200);
  t.after(() => live.close());
  let r = await type(id, tid, 'echo $((6*7))\r');
  assert.equal(r.status, 204, r.text);
  // The terminal echoes the line as typed, then the shell prints the answer on its own line.
  await live.until(/\n42\n/);
  assert.match(plain(live.bytes), /\$ echo \$\(\(6\*7\)\)\n42\n/);
  assert.equal(live.start, 0);

  r = await resize(id, tid, { cols: 100, rows: 30 });
  assert.equal(r.status, 204, r.text);
  let mark = live.bytes.length;
  await type(id, tid, 'stty size\r');
  await live.until(/\n30 100\n/, mark);

  // Input in many requests arrives whole and in order.
  mark = live.bytes.length;
  for (const part of ['ec', 'ho ', 'in-', 'or', 'der']) assert.equal((await type(id, tid, part)).status, 204);
  await type(id, tid, '\r');
  await live.until(/\nin-order\n/, mark);

  // A second reader from the middle gets exactly what followed that offset, live output included.
  const middle = Math.floor(live.bytes.length / 2);
  const resumed = await follow(id, tid, { offset: middle });
  t.after(() => resumed.close());
  mark = live.bytes.length;
  await type(id, tid, 'echo later-$((1+1))\r');
  await live.until(/\nlater-2\n/, mark);
  await resumed.until(/\nlater-2\n/);
  assert.equal(resumed.start, middle);

  // The shell exits: its exit status ends every stream, and each has every byte once.
  await type(id, tid, 'exit 3\r');
  await live.ended();
  await resumed.ended();
  assert.deepEqual(live.exit, { exitCode: 3, status: 'exited' });
  assert.deepEqual(resumed.exit, live.exit);
  assert.ok(live.bytes.subarray(middle).equals(resumed.bytes), 'the re-attach got exactly the rest');
  const again = await follow(id, tid, { lastEventId: live.next - 5, offset: 0 });
  await again.ended();
  assert.equal(again.start, live.next - 5, 'Last-Event-ID wins over offset');
  assert.ok(again.bytes.equals(live.bytes.subarray(live.next - 5)));
  assert.deepEqual(again.exit, live.exit);
  const whole = await follow(id, tid, { offset: 0 });
  await whole.ended();
  assert.ok(whole.bytes.equals(live.bytes), 'a re-attach from 0 replays everything');
  const atEnd = await follow(id, tid, { offset: live.next });
  await atEnd.ended();
  assert.equal(atEnd.bytes.length, 0);

  // An ended terminal takes no input or resize; an offset past its output is a 416.
  assertError(await type(id, tid, 'x'), 409, 'conflict', `terminal ${tid} has ended: its shell exited`);
  assertError(await resize(id, tid, { cols: 10, rows: 10 }), 409, 'conflict', `terminal ${tid} has ended: its shell exited`);
  const past = await follow(id, tid, { offset: live.next + 1 });
  assertError(past, 416, 'range_not_satisfiable', /offset \d+ is past the \d+ bytes/);
});

test("another key's sandbox is a 404 on every route; bad sizes, input and offsets are refused", async (t) => {
  const id = await sandbox(t);
  const opened = await open(id, { cols: 40, rows: 10 });
  assert.equal(opened.status, 201, opened.text);
  const tid = opened.body.id;
  const notFound = `sandbox ${id} not found`;
  assertError(await open(id, { cols: 80, rows: 24 }, other.key), 404, 'not_found', notFound);
  assertError(await follow(id, tid, { k: other.key }), 404, 'not_found', notFound);
  assertError(await type(id, tid, 'echo hi\r', other.key), 404, 'not_found', notFound);
  assertError(await resize(id, tid, { cols: 80, rows: 24 }, other.key), 404, 'not_found', notFound);
  assertError(await api(server, 'POST', base(id), { key: null, body: { cols: 80, rows: 24 } }), 401, 'unauthorized');

  const bound = /^cols and rows must each be between 1 and 10000, got /;
  for (const size of [{ cols: 0, rows: 24 }, { cols: 80, rows: 0 }, { cols: 10001, rows: 24 }, { cols: 80, rows: 4294967297 }]) {
    assertError(await open(id, size), 400, 'bad_request', bound);
    assertError(await resize(id, tid, size), 400, 'bad_request', bound);
  }
  for (const body of [{ cols: -1, rows: 24 }, { cols: 1.5, rows: 24 }, { cols: '80', rows: 24 }, { rows: 24 }, { cols: 80, rows: 24, shell: 'sh' }]) {
    assertError(await open(id, body), 400, 'bad_request');
    assertError(await resize(id, tid, body), 400, 'bad_request');
  }
  assertError(await api(server, 'POST', base(id), { key, raw: '{"cols":' }), 400, 'bad_request');
  assertError(await open(id, { cols: 80, rows: 24, user: 'nobody-here' }), 400, 'bad_request', /unknown user/);

  assertError(await type(id, tid, ''), 400, 'bad_request', 'data must not be empty');
  assertError(await type(id, tid, 'x'.repeat(65537)), 413, 'too_large', /65537 bytes of input in one request; send at most 65536/);
  assertError(await api(server, 'POST', `${base(id)}/${tid}/input`, { key, body: { data: 5 } }), 400, 'bad_request');
  const unknown = 'cmd-does-not-exist';
  assertError(await type(id, unknown, 'x'), 404, 'not_found', `no terminal ${unknown} in sandbox ${id}`);
  assertError(await resize(id, unknown, { cols: 80, rows: 24 }), 404, 'not_found', `no terminal ${unknown} in sandbox ${id}`);
  assertError(await follow(id, unknown), 404, 'not_found', `no terminal ${unknown} in sandbox ${id}`);
  assertError(await follow(id, tid, { offset: 'x' }), 400, 'bad_request', /^query: /);
  assertError(await follow(id, tid, { lastEventId: 'x' }), 400, 'bad_request', /Last-Event-ID/);

  // After all that, the terminal still answers, at the largest size.
  assert.equal((await resize(id, tid, { cols: 10000, rows: 10000 })).status, 204);
  const live = await follow(id, tid);
  t.after(() => live.close());
  await type(id, tid, 'stty size\r');
  await live.until(/\n10000 10000\n/);
});

test('a sandbox runs at most 8 terminals, even opened at once, a closed one frees its place, and 32 output streams', async (t) => {
  const id = await sandbox(t);
  // Nine opens at once: eight shells start, the ninth is refused.
  const answers = await Promise.all(Array.from({ length: 9 }, () => open(id, { cols: 80, rows: 24 })));
  const made = answers.filter((r) => r.status === 201);
  assert.equal(made.length, 8, answers.map((r) => r.status).join(' '));
  assertError(answers.find((r) => r.status !== 201), 409, 'conflict', `sandbox ${id} has 8 terminals running, the most it may have (8); exit or close one first`);
  const tids = made.map((r) => r.body.id);
  assertError(await open(id), 409, 'conflict');
  // One that exited frees its place.
  const f = await follow(id, tids[0]);
  await type(id, tids[0], 'exit\r');
  await f.ended();
  assert.equal(f.exit.status, 'exited');
  const r = await open(id);
  assert.equal(r.status, 201, r.text);
  // So does one closed with DELETE: its shell is killed, and its stream says so.
  assertError(await open(id), 409, 'conflict');
  const killed = await follow(id, tids[2]);
  assertError(await api(server, 'DELETE', `${base(id)}/${tids[2]}`, { key: other.key }), 404, 'not_found', `sandbox ${id} not found`);
  assert.equal((await api(server, 'DELETE', `${base(id)}/${tids[2]}`, { key })).status, 204);
  await killed.ended();
  assert.deepEqual(killed.exit, { exitCode: 137, status: 'signaled', signal: 9, error: 'killed by signal 9 (SIGKILL)' });
  assertError(await api(server, 'DELETE', `${base(id)}/${tids[2]}`, { key }), 409, 'conflict', `terminal ${tids[2]} has ended: its shell exited`);
  assertError(await api(server, 'DELETE', `${base(id)}/${tids[0]}`, { key }), 409, 'conflict');
  assertError(await api(server, 'DELETE', `${base(id)}/no-such`, { key }), 404, 'not_found', `no terminal no-such in sandbox ${id}`);
  assert.equal((await open(id)).status, 201);

  // Output streams: 32 at once per sandbox; one closed frees its place. (A stream of a
  // terminal that ended ends by itself, so only running ones are followed.)
  const alive = [tids[1], ...tids.slice(3)];
  const streams = [];
  t.after(() => streams.forEach((s) => s.close()));
  for (let i = 0; i < 32; i++) {
    const s = await follow(id, alive[i % alive.length]);
    assert.equal(s.status, 200, s.text);
    streams.push(s);
  }
  assertError(await follow(id, tids[1]), 503, 'no_capacity', `sandbox ${id} has 32 terminal output streams open, the most it may; close one`);
  streams.pop().close();
  await until(async () => {
    const s = await follow(id, tids[1]);
    if (s.status !== 200) return false;
    streams.push(s);
    return true;
  }, { what: 'a stream after one was closed', timeoutMs: 60_000 });
});
