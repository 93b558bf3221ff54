// The user CLI against the real stack (issue 23): `sandstream sandbox create | list | kill`
// over REST and `sandstream exec` through the sandbox's agent: stdout and stderr apart and
// byte-exact, exit codes (0, 3, a signal, a timeout), a closed stdout, --cwd/--env/--user,
// -i, Ctrl-C reaching the command (and leaving an agent that never answers), a broken
// connection resumed without loss or duplicates, and the failures a user meets (an
// unknown or foreign sandbox, a wrong key, no server). `sandstream shell` on a real
// pseudo-terminal (lib/pty-drive.py, Python's termios): typing, the terminal's size and
// its resizes, Ctrl-C, the exit code and the terminal's settings restored (after `exit`
// and after SIGTERM), a cut connection resumed; and without a terminal.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { fileServer, api, createTenant, BIN, SB_ID } from '../lib/harness.mjs';

const server = await fileServer(after);
const { key } = await createTenant(server, 'cli');
const other = await createTenant(server, 'cli-other');

/**
 * Starts the CLI with `args` against `url` with key `k`; `input` (a Buffer or string) is
 * its stdin, which is closed either way. Returns {child, out(), done} where `done`
 * resolves {code, signal, stdout, stderr} (Buffers) and `out()` is the stdout so far.
 */
function start(args, { k = key, input, url = server.url } = {}) {
  const child = spawn(BIN, args, {
    env: { ...process.env, SANDSTREAM_API_URL: url, SANDSTREAM_API_KEY: k },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const stdout = [];
  const stderr = [];
  child.stdout.on('data', (d) => stdout.push(d));
  child.stderr.on('data', (d) => stderr.push(d));
  child.stdin.on('error', () => {});
  child.stdin.end(input);
  const done = new Promise((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr) })),
  );
  return { child, out: () => Buffer.concat(stdout).toString(), done };
}

/** Runs the CLI to its end: {code, stdout, stderr} with the outputs as text (`raw`: Buffers). */
async function cli(args, opts = {}) {
  const r = await start(args, opts).done;
  if (opts.raw) return r;
  return { code: r.code, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** Waits until `f()` is true, checking whenever the child writes. */
function whenOutput(run, f) {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (f(run.out())) {
        run.child.stdout.off('data', check);
        resolve();
      }
    };
    run.child.stdout.on('data', check);
    run.done.then((r) => reject(new Error(`the CLI ended first: ${r.code} ${r.stdout} ${r.stderr}`)));
    check();
  });
}

/** A sandbox of `key` made over REST, killed after the test. */
async function sandbox(t) {
  const c = await api(server, 'POST', '/api/v1/sandboxes', { key, body: { timeoutMs: 600_000 } });
  assert.equal(c.status, 201, c.text);
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${c.body.id}`, { key }));
  return c.body.id;
}

test('sandbox create prints the id that list shows; kill removes it and exec then fails clearly', async () => {
  const made = await cli(['sandbox', 'create', '--timeout', '600', '--memory-mb', '256', '--env', 'FOO=bar baz', '--metadata', 'who=e2e']);
  assert.equal(made.code, 0, made.stderr);
  assert.equal(made.stderr, '');
  assert.match(made.stdout, /^sb-[0-9a-f]{10}\n$/);
  const id = made.stdout.trim();
  assert.match(id, SB_ID);

  const table = await cli(['sandbox', 'list']);
  assert.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trimEnd().split('\n');
  assert.match(lines[0], /^ID +TEMPLATE +STATE +CPU +MEMORY +CREATED +EXPIRES$/);
  const row = lines.find((l) => l.startsWith(`${id} `));
  assert.ok(row, table.stdout);
  assert.match(row, new RegExp(`^${id} +default +running +2\\.0 +256 MiB +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d +\\d{4}-`));
  const json = await cli(['sandbox', 'list', '--json']);
  assert.equal(json.code, 0, json.stderr);
  const listed = JSON.parse(json.stdout).find((s) => s.sandboxId === id);
  assert.deepEqual([listed.memoryMb, listed.envs, listed.metadata, listed.state], [256, { FOO: 'bar baz' }, { who: 'e2e' }, 'running']);
  const env = await cli(['exec', id, '--', 'echo "$FOO"']);
  assert.deepEqual(env, { code: 0, stdout: 'bar baz\n', stderr: '' });

  const killed = await cli(['sandbox', 'kill', id, 'sb-0000000000']);
  assert.equal(killed.code, 1);
  assert.equal(killed.stdout, `${id}\n`);
  assert.match(killed.stderr, /^sandstream: kill sb-0000000000: 404 Not Found: sandbox sb-0000000000 not found\n/);
  const after = await cli(['sandbox', 'list', '--json']);
  assert.equal(after.code, 0, after.stderr);
  assert.ok(!JSON.parse(after.stdout).some((s) => s.sandboxId === id), after.stdout);
  assert.ok(!(await cli(['sandbox', 'list'])).stdout.includes(id));
  const late = await cli(['exec', id, '--', 'true']);
  assert.deepEqual(late, { code: 125, stdout: '', stderr: `sandstream: 409 Conflict: sandbox ${id} is killed\n` });
  // Killing it again is no error.
  assert.deepEqual(await cli(['sandbox', 'kill', id]), { code: 0, stdout: `${id}\n`, stderr: '' });

  const bad = await cli(['sandbox', 'create', '--template', 'no-such-template']);
  assert.equal(bad.code, 1);
  assert.equal(bad.stdout, '');
  assert.match(bad.stderr, /^sandstream: create a sandbox: 400 Bad Request: template "no-such-template" does not exist/);
  assert.equal(bad.stderr.split('\n').length, 2, bad.stderr);
});

test('exec: stdout and stderr apart and byte-exact, exit codes passed through', async (t) => {
  const id = await sandbox(t);
  // A byte that is not UTF-8 on each stream, and no trailing newline.
  const bytes = await cli(['exec', id, '--', "printf 'o\\377x'; printf 'e\\376y' >&2; printf 'z'; exit 3"], { raw: true });
  assert.equal(bytes.code, 3, bytes.stderr.toString());
  assert.deepEqual(bytes.stdout, Buffer.from([0x6f, 0xff, 0x78, 0x7a]));
  assert.deepEqual(bytes.stderr, Buffer.from([0x65, 0xfe, 0x79]));

  assert.deepEqual(await cli(['exec', id, '--', 'true']), { code: 0, stdout: '', stderr: '' });
  assert.deepEqual(await cli(['exec', id, '--', 'echo $HOME | wc -c']), { code: 0, stdout: '11\n', stderr: '' });
  // Several arguments reach the program as they are.
  assert.deepEqual(await cli(['exec', id, '--', 'printf', '%s\\n', 'a b', "it's", '$HOME']), {
    code: 0,
    stdout: "a b\nit's\n$HOME\n",
    stderr: '',
  });
  // A signal: 128 + N, as a shell says it.
  assert.deepEqual(await cli(['exec', id, '--', 'kill -KILL $$']), { code: 137, stdout: '', stderr: '' });
  const timed = await cli(['exec', '--timeout', '1', id, '--', 'echo started; sleep 30']);
  assert.equal(timed.code, 124);
  assert.equal(timed.stdout, 'started\n');
  assert.match(timed.stderr, /^sandstream: timed out after 1000 ms/);
  // Much output, in order, nothing lost.
  const many = await cli(['exec', id, '--', 'seq 1 200000; echo done >&2']);
  assert.equal(many.code, 0, many.stderr);
  assert.equal(many.stdout, Array.from({ length: 200000 }, (_, i) => `${i + 1}\n`).join(''));
  assert.equal(many.stderr, 'done\n');
});

test('a closed stdout stops the command as a local pipeline would: SIGPIPE, 141', async (t) => {
  const id = await sandbox(t);
  const run = start(['exec', id, '--', 'yes']);
  await new Promise((r) => run.child.stdout.once('data', r));
  run.child.stdout.destroy();
  const r = await run.done;
  assert.equal(r.code, 141, r.stderr.toString());
  assert.equal(r.stderr.toString(), '');
});

test('exec: --cwd, --env and --user; a wrong one runs nothing and exits 125', async (t) => {
  const id = await sandbox(t);
  const r = await cli(['exec', '--cwd', '/tmp', '--env', 'A=b', '--env', 'C=d e', '--user', 'root', id, '--', 'pwd; echo "$A/$C"; id -un']);
  assert.deepEqual(r, { code: 0, stdout: '/tmp\nb/d e\nroot\n', stderr: '' });
  assert.deepEqual(await cli(['exec', id, '--', 'id -un; pwd']), { code: 0, stdout: 'user\n/home/user\n', stderr: '' });
  assert.deepEqual(await cli(['exec', '-u', 'nobody-here', id, '--', 'touch /tmp/ran']), {
    code: 125,
    stdout: '',
    stderr: 'sandstream: unknown user nobody-here\n',
  });
  assert.deepEqual(await cli(['exec', '-w', '/nope', id, '--', 'touch /tmp/ran']), {
    code: 125,
    stdout: '',
    stderr: 'sandstream: cwd /nope does not exist\n',
  });
  assert.deepEqual(await cli(['exec', id, '--', 'ls /tmp/ran']), {
    code: 2,
    stdout: '',
    stderr: "ls: cannot access '/tmp/ran': No such file or directory\n",
  });
});

test('exec -i pipes stdin through; without it the command reads nothing', async (t) => {
  const id = await sandbox(t);
  assert.deepEqual(await cli(['exec', '-i', id, '--', 'wc -l'], { input: 'x\ny' }), { code: 0, stdout: '1\n', stderr: '' });
  const data = randomBytes(3 << 20);
  const sum = await cli(['exec', '--interactive', id, '--', 'sha256sum; wc -c'], { input: data });
  assert.deepEqual(sum, { code: 0, stdout: `${createHash('sha256').update(data).digest('hex')}  -\n0\n`, stderr: '' });
  assert.deepEqual(await cli(['exec', id, '--', 'wc -c'], { input: 'not forwarded' }), { code: 0, stdout: '0\n', stderr: '' });
});

test('Ctrl-C reaches the command, which decides; a second one kills it', async (t) => {
  const id = await sandbox(t);
  const one = start(['exec', id, '--', 'trap "echo got INT; exit 7" INT; echo ready; sleep 60']);
  await whenOutput(one, (o) => o === 'ready\n');
  one.child.kill('SIGINT');
  const r = await one.done;
  assert.equal(r.code, 7, r.stderr.toString());
  assert.equal(r.stdout.toString(), 'ready\ngot INT\n');
  assert.equal(r.stderr.toString(), '');

  const two = start(['exec', id, '--', 'trap "echo got INT" INT; echo ready; while :; do sleep 0.1; done']);
  await whenOutput(two, (o) => o === 'ready\n');
  two.child.kill('SIGINT');
  await whenOutput(two, (o) => o === 'ready\ngot INT\n');
  two.child.kill('SIGINT');
  const r2 = await two.done;
  assert.equal(r2.code, 137, r2.stderr.toString());
  assert.equal(r2.stdout.toString(), 'ready\ngot INT\n');

  // A command that does not handle SIGINT dies of it: 130.
  const three = start(['exec', id, '--', 'echo ready; sleep 60']);
  await whenOutput(three, (o) => o === 'ready\n');
  three.child.kill('SIGINT');
  assert.equal((await three.done).code, 130);
});

/**
 * The server behind a front that answers `GET …/connection` with 127.0.0.1:`port`
 * instead of the agent's address; resolves the front's URL.
 */
async function front(t, port) {
  const srv = http.createServer(async (req, res) => {
    const r = await fetch(server.url + req.url, { method: req.method, headers: { authorization: req.headers.authorization } });
    let body = await r.text();
    if (r.ok && req.url.endsWith('/connection')) body = JSON.stringify({ ...JSON.parse(body), host: '127.0.0.1', port });
    res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' }).end(body);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => srv.close());
  return `http://127.0.0.1:${srv.address().port}`;
}

test('an agent that never answers does not hold the terminal: a second Ctrl-C stops waiting (130)', async (t) => {
  const id = await sandbox(t);
  // Takes connections and never says a word.
  const held = new Set();
  let accepted;
  const gotOne = new Promise((r) => (accepted = r));
  const mute = net.createServer((sock) => {
    held.add(sock);
    sock.on('error', () => {});
    accepted();
  });
  await new Promise((r) => mute.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const sock of held) sock.destroy();
    mute.close();
  });
  const run = start(['exec', id, '--', 'true'], { url: await front(t, mute.address().port) });
  await gotOne;
  // Ctrl-C again and again (signals sent close together may arrive as one) until it ends.
  const presses = setInterval(() => run.child.kill('SIGINT'), 250);
  const r = await run.done;
  clearInterval(presses);
  assert.equal(r.code, 130, r.stderr.toString());
  assert.equal(r.stdout.toString(), '');
  assert.equal(r.stderr.toString(), `sandstream: stopped waiting; the command may still run in sandbox ${id}\n`);
});

/**
 * Sandbox `id`'s agent behind a TCP relay this test can cut, and the server behind a
 * front that points the CLI at the relay: {url, cut(), cuts(), connections()}.
 */
async function relayed(t, id) {
  const conn = await api(server, 'GET', `/api/v1/sandboxes/${id}/connection`, { key });
  assert.equal(conn.status, 200, conn.text);
  const pairs = new Set();
  let connections = 0;
  const relay = net.createServer((down) => {
    connections += 1;
    const up = net.connect(conn.body.port, conn.body.host);
    const pair = [down, up];
    pairs.add(pair);
    down.pipe(up);
    up.pipe(down);
    const drop = () => {
      down.destroy();
      up.destroy();
      pairs.delete(pair);
    };
    down.on('error', drop).on('close', drop);
    up.on('error', drop).on('close', drop);
  });
  await new Promise((r) => relay.listen(0, '127.0.0.1', r));
  t.after(() => relay.close());
  let cuts = 0;
  const cut = () => {
    for (const [down, up] of pairs) {
      down.destroy();
      up.destroy();
    }
    pairs.clear();
    cuts += 1;
  };
  return { url: await front(t, relay.address().port), cut, cuts: () => cuts, connections: () => connections };
}

test('a broken connection to the agent resumes from the bytes already written', async (t) => {
  const id = await sandbox(t);
  const { url, cut, cuts } = await relayed(t, id);

  const run = start(
    ['exec', id, '--', 'seq 1 5000; echo err1 >&2; echo mark; sleep 2; seq 5001 9000; echo err2 >&2; echo mark2; sleep 2; echo end; exit 5'],
    { url },
  );
  await whenOutput(run, (o) => o.endsWith('mark\n'));
  cut();
  await whenOutput(run, (o) => o.endsWith('mark2\n'));
  cut();
  const r = await run.done;
  assert.equal(cuts(), 2);
  assert.equal(r.code, 5, r.stderr.toString());
  const seq = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => `${a + i}\n`).join('');
  assert.equal(r.stdout.toString(), `${seq(1, 5000)}mark\n${seq(5001, 9000)}mark2\nend\n`);
  assert.equal(r.stderr.toString(), 'err1\nerr2\n');
});

test("another key's sandbox is refused; a wrong key and no server exit 1 with one line", async (t) => {
  const id = await sandbox(t);
  const foreign = await cli(['exec', id, '--', 'touch /tmp/foreign'], { k: other.key });
  assert.deepEqual(foreign, { code: 125, stdout: '', stderr: `sandstream: 404 Not Found: sandbox ${id} not found\n` });
  const kill = await cli(['sandbox', 'kill', id], { k: other.key });
  assert.equal(kill.code, 1);
  assert.match(kill.stderr, new RegExp(`^sandstream: kill ${id}: 404 Not Found: sandbox ${id} not found\n`));
  assert.ok(!(await cli(['sandbox', 'list'], { k: other.key })).stdout.includes(id));
  assert.ok((await cli(['sandbox', 'list'])).stdout.includes(id));
  assert.deepEqual(await cli(['exec', id, '--', 'ls /tmp/foreign']), {
    code: 2,
    stdout: '',
    stderr: "ls: cannot access '/tmp/foreign': No such file or directory\n",
  });

  const wrong = await cli(['sandbox', 'list'], { k: 'not-a-key' });
  assert.deepEqual(wrong, { code: 1, stdout: '', stderr: 'sandstream: list sandboxes: 401 Unauthorized: unknown or revoked API key\n' });
  const wrongExec = await cli(['exec', id, '--', 'true'], { k: 'not-a-key' });
  assert.deepEqual(wrongExec, { code: 125, stdout: '', stderr: 'sandstream: 401 Unauthorized: unknown or revoked API key\n' });
  const down = await cli(['sandbox', 'create'], { url: 'http://127.0.0.1:9' });
  assert.equal(down.code, 1);
  assert.match(down.stderr, /^sandstream: create a sandbox: reach http:\/\/127\.0\.0\.1:9: .*Connection refused.*\n$/);
});

/**
 * `sandstream` with `args` on a real pseudo-terminal of `cols` x `rows` (lib/pty-drive.py):
 * {type(text), resize(cols, rows), mode(), pid(), out(), since(), until(re), done} where
 * `until(re)` waits for output written after the last `since()` to match `re`, and
 * `done` resolves the driver's exit event {exit, signal, restored}.
 */
function onPty(args, cols, rows, { url = server.url } = {}) {
  const child = spawn('python3', [fileURLToPath(new URL('../lib/pty-drive.py', import.meta.url)), String(cols), String(rows), BIN, ...args], {
    env: { ...process.env, SANDSTREAM_API_URL: url, SANDSTREAM_API_KEY: key, TERM: 'xterm-256color' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let mark = 0;
  let waiters = [];
  const events = [];
  let eventWaiters = [];
  let errText = '';
  child.stdout.on('data', (d) => {
    out += d.toString('latin1');
    waiters = waiters.filter((w) => !w());
  });
  child.stderr.on('data', (d) => {
    errText += d.toString();
    const lines = errText.split('\n');
    errText = lines.pop();
    for (const line of lines) {
      let e;
      try {
        e = JSON.parse(line);
      } catch {
        e = { noise: line };
      }
      events.push(e);
      eventWaiters = eventWaiters.filter((w) => !w());
    }
  });
  const closed = new Promise((resolve) => child.on('close', resolve));
  const event = (f) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const e = events.find(f);
        if (e) resolve(e);
        return Boolean(e);
      };
      if (!check()) eventWaiters.push(check);
      closed.then(() => check() || reject(new Error(`the driver ended first: ${JSON.stringify(events)} ${out}`)));
    });
  const send = (c) => child.stdin.write(`${JSON.stringify(c)}\n`);
  return {
    type: (text) => send({ type: text }),
    resize: (c, r) => send({ resize: [c, r] }),
    mode: async () => {
      const n = events.length;
      send({ mode: true });
      return (await event((e, i) => i >= n && e.mode)).mode;
    },
    pid: async () => (await event((e) => e.pid)).pid,
    out: () => out,
    since: () => {
      mark = out.length;
    },
    until: (re) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const m = out.slice(mark).match(re);
          if (m) resolve(m);
          return Boolean(m);
        };
        if (!check()) waiters.push(check);
        const fail = (why) => reject(new Error(`${why} ${re}: …${JSON.stringify(out.slice(mark).slice(-2000))} ${JSON.stringify(events)}`));
        closed.then(() => check() || fail('the CLI ended before'));
        // A hang fails with what came instead of stalling the run.
        setTimeout(() => check() || fail('nothing matched in 60 s:'), 60_000).unref();
      }),
    done: event((e) => 'exit' in e).finally(() => child.stdin.end()),
  };
}

test('shell: a login shell on a real terminal: typing, its size and resizes, Ctrl-C, exit code, the terminal restored', { timeout: 120_000 }, async (t) => {
  const id = await sandbox(t);
  const sh = onPty(['shell', id], 100, 30);
  sh.type('echo $((6*7))\r');
  await sh.until(/\r42\r\n/);
  // Raw mode here: the keys go to the sandbox, not to this terminal's line editing.
  assert.deepEqual(await sh.mode(), { echo: false, icanon: false, isig: false, opost: false });

  sh.since();
  sh.type('stty size; echo "$TERM"\r');
  await sh.until(/\r30 100\r\nxterm-256color\r\n/);

  // A resize reaches the program in the foreground as SIGWINCH, with the new size.
  sh.since();
  sh.type(`sh -c 'trap "stty size; exit 0" WINCH; echo waiting; while :; do sleep 0.1; done'\r`);
  await sh.until(/\rwaiting\r\n/);
  sh.resize(120, 40);
  await sh.until(/\n40 120\r\n/);

  // Ctrl-C is a byte that the sandbox's terminal turns into SIGINT for its foreground job.
  sh.since();
  sh.type('sleep 1000; echo not-interrupted\r');
  await sh.until(/sleep 1000; echo not-interrupted\r\n/);
  sh.type('\x03');
  sh.type('echo after-$((1+1))\r');
  await sh.until(/\rafter-2\r\n/);
  assert.doesNotMatch(sh.out(), /[\r\n]not-interrupted/);

  sh.type('exit 4\r');
  const end = await sh.done;
  assert.deepEqual(end, { exit: 4, signal: null, restored: true });
});

test('shell without a terminal: stdin typed as it comes, the session lasts until the shell exits; CMD; failures exit 125', async (t) => {
  const id = await sandbox(t);
  const r = await cli(['shell', id], { input: 'echo hi\nexit 2\n' });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stdout, /\rhi\r\n/);
  assert.equal(r.stderr, '');
  // A command instead of the shell, on a terminal of the default size, as another user.
  const cmd = await cli(['shell', '--user', 'root', '--env', 'A=b c', id, '--', 'tty; stty size; id -un; echo "$A"; exit 3']);
  assert.equal(cmd.code, 3, cmd.stderr);
  assert.match(cmd.stdout, /^\/dev\/pts\/\d+\r\n24 80\r\nroot\r\nb c\r\n$/);
  assert.deepEqual(await cli(['shell', '-u', 'nobody-here', id]), { code: 125, stdout: '', stderr: 'sandstream: unknown user nobody-here\n' });
  assert.deepEqual(await cli(['shell', 'sb-0000000000']), {
    code: 125,
    stdout: '',
    stderr: 'sandstream: 404 Not Found: sandbox sb-0000000000 not found\n',
  });
});

test('shell: SIGTERM hangs the shell up and leaves the terminal as it was', { timeout: 120_000 }, async (t) => {
  const id = await sandbox(t);
  const sh = onPty(['shell', id], 80, 24);
  sh.type('echo ready-$((1+1))\r');
  await sh.until(/\rready-2\r\n/);
  process.kill(await sh.pid(), 'SIGTERM');
  assert.deepEqual(await sh.done, { exit: 143, signal: null, restored: true });
});

test('shell: a broken connection resumes the terminal from the bytes already written', { timeout: 120_000 }, async (t) => {
  const id = await sandbox(t);
  const { url, cut, connections } = await relayed(t, id);
  const sh = onPty(['shell', id], 80, 24, { url });
  sh.type('seq 1 3000; echo mark-$((1+1))\r');
  await sh.until(/\nmark-2\r\n/);
  const before = connections();
  cut();
  sh.since();
  sh.type('seq 3001 6000; echo mark-$((2+2))\r');
  await sh.until(/\nmark-4\r\n/);
  cut();
  sh.type('exit 5\r');
  assert.deepEqual(await sh.done, { exit: 5, signal: null, restored: true });
  assert.ok(connections() > before, 'the CLI connected again');
  // Each line of seq's once, in order: nothing lost or repeated across the cuts.
  const numbers = sh
    .out()
    .split('\n')
    .map((l) => l.replace(/\r$/, '').split('\r').pop())
    .filter((l) => /^\d+$/.test(l));
  assert.deepEqual(numbers, Array.from({ length: 6000 }, (_, i) => String(i + 1)));
});
