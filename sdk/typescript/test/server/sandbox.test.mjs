// Sandbox-level tests against a real Sandstream server started by the harness
// (`$SANDSTREAM_BIN up`, default <repo>/target/debug/sandstream). They fail, never skip,
// when the binary is missing.
import { describe, it, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  Sandbox,
  AuthenticationError,
  CommandExitError,
  InvalidArgumentError,
  NotFoundError,
  TimeoutError,
} from '@sandstream/sdk';
import { createHash } from 'node:crypto';
import { startServer } from '../helpers/server.mjs';
import { startProxy } from '../helpers/proxy.mjs';

let server;
let opts;
let sandbox;
const created = [];

// Starting the server is a test of its own so that a missing or broken binary shows up as
// a failure with the reason, and every later test fails too (never skips).
function need() {
  if (!server) throw new Error('no Sandstream server: see the failure of "starts sandstream up"');
}

beforeEach(() => {
  if (server === undefined && startedOnce) need();
  startedOnce = true;
});

let startedOnce = false;

after(async () => {
  for (const sb of created) await sb.kill().catch(() => {});
  await server?.stop();
});

describe('Sandbox lifecycle', () => {
  it('starts sandstream up', { timeout: 11 * 60_000 }, async () => {
    const t0 = Date.now();
    server = await startServer();
    opts = { apiKey: server.apiKey, apiUrl: server.apiUrl };
    console.log(`# sandstream up ready at ${server.apiUrl} after ${Date.now() - t0} ms`);
  });

  it('creates a sandbox with envs, metadata and a timeout', { timeout: 11 * 60_000 }, async () => {
    const t0 = Date.now();
    // The first sandbox may wait for the default template to be built: a long request timeout.
    sandbox = await Sandbox.create({ ...opts, requestTimeoutMs: 10 * 60_000, timeoutMs: 120_000, envs: { SDK_FOO: 'bar baz' }, metadata: { suite: 'sdk-ts' } });
    created.push(sandbox);
    console.log(`# Sandbox.create took ${Date.now() - t0} ms`);
    assert.match(sandbox.id, /^sb-/);
    assert.equal(sandbox.sandboxId, sandbox.id);
    const info = await sandbox.getInfo();
    assert.equal(info.sandboxId, sandbox.id);
    assert.equal(info.template, 'default');
    assert.equal(info.state, 'running');
    assert.deepEqual(info.metadata, { suite: 'sdk-ts' });
    const left = info.endAt.getTime() - Date.now();
    assert.ok(left > 60_000 && left <= 121_000, `expires in ${left} ms`);
    const r = await sandbox.commands.run('echo "$SDK_FOO"');
    assert.equal(r.stdout, 'bar baz\n');
  });

  it("runs the seed's example with separate onStdout and onStderr", async () => {
    const out = [];
    const err = [];
    const r = await sandbox.commands.run('echo "hello from stdout"; echo "hello from stderr" >&2; echo done', {
      onStdout: (d) => out.push(d),
      onStderr: (d) => err.push(d),
      timeout: 10_000,
    });
    assert.deepEqual([r.exitCode, r.stdout, r.stderr], [0, 'hello from stdout\ndone\n', 'hello from stderr\n']);
    assert.equal(out.join(''), r.stdout);
    assert.equal(err.join(''), r.stderr);
  });

  it('cwd, envs, exit codes and the command timeout through a sandbox', async () => {
    const r = await sandbox.commands.run('pwd; echo "$A$B"', { cwd: '/tmp', envs: { A: 'x', B: 'y' } });
    assert.equal(r.stdout, '/tmp\nxy\n');
    await assert.rejects(sandbox.commands.run('echo bad >&2; exit 7'), (e) => e instanceof CommandExitError && e.exitCode === 7 && e.stderr === 'bad\n');
    await assert.rejects(sandbox.commands.run('sleep 10', { timeoutMs: 300 }), (e) => e instanceof TimeoutError && e.kind === 'command' && e.exitCode === 124);
  });

  it("runs as `user` by default and as root with user: 'root'; an unknown user is an InvalidArgumentError", async () => {
    const def = await sandbox.commands.run('whoami; id -u; echo "$HOME $USER"; pwd');
    assert.equal(def.stdout, 'user\n1000\n/home/user user\n/home/user\n');
    assert.equal((await sandbox.commands.run('whoami', { user: 'user' })).stdout, 'user\n');
    const root = await sandbox.commands.run('whoami; id -u; echo "$HOME $USER $LOGNAME"; pwd', { user: 'root' });
    assert.equal(root.stdout, 'root\n0\n/root root root\n/root\n');
    const bg = await sandbox.commands.run('whoami', { user: 'root', background: true });
    assert.equal((await bg.wait()).stdout, 'root\n');
    const listed = await sandbox.commands.list();
    assert.equal(listed.find((p) => p.id === bg.id)?.user, 'root');
    assert.equal(listed.find((p) => p.id === def.commandId)?.user, undefined);
    await assert.rejects(sandbox.commands.run('touch /tmp/ran-as-nobody-known', { user: 'nosuchuser' }), (e) => {
      assert.ok(e instanceof InvalidArgumentError, `${e}`);
      assert.equal(e.code, 'INVALID_ARGUMENT');
      assert.match(e.message, /unknown user nosuchuser/);
      return true;
    });
    await assert.rejects(sandbox.commands.run('true', { user: 'nosuchuser', background: true }), InvalidArgumentError);
    await assert.rejects(sandbox.commands.run('true', { user: '' }), (e) => e instanceof InvalidArgumentError && /user must be a non-empty/.test(e.message));
    const ran = await sandbox.commands.run('test -e /tmp/ran-as-nobody-known && echo ran || echo not-run');
    assert.equal(ran.stdout, 'not-run\n');
  });

  it('runs 10 concurrent commands', async () => {
    const rs = await Promise.all(Array.from({ length: 10 }, (_, i) => sandbox.commands.run(`sleep 0.3; echo ${i}`)));
    assert.deepEqual(rs.map((r) => r.stdout), Array.from({ length: 10 }, (_, i) => `${i}\n`));
  });

  it('a background command with wait() and kill()', async () => {
    const ok = await sandbox.commands.run('sleep 0.2; echo bg', { background: true });
    assert.equal((await ok.wait()).stdout, 'bg\n');
    const long = await sandbox.commands.run('echo start; sleep 60', { background: true });
    assert.ok((await sandbox.commands.list()).some((p) => p.id === long.id && p.running));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(await long.kill(), true);
    await assert.rejects(long.wait(), (e) => e instanceof CommandExitError && e.exitCode === 137 && e.stdout === 'start\n');
  });

  it('reports a command killed for going over memoryMb as oomKilled', async () => {
    const small = await Sandbox.create({ ...opts, memoryMb: 64, timeoutMs: 60_000 });
    created.push(small);
    // 256 MiB touched in a 64 MiB sandbox: the kernel's OOM killer ends python, not the sandbox.
    const hog = "python3 -c 'import sys; b = bytearray(256 << 20); print(len(b))'";
    const err = await small.commands.run(`echo before; ${hog}`).then(
      (r) => assert.fail(`the hog finished: ${JSON.stringify(r)}`),
      (e) => e,
    );
    assert.ok(err instanceof CommandExitError, `${err}`);
    assert.equal(err.oomKilled, true, err.message);
    assert.equal(err.exitCode, 137);
    assert.equal(err.stdout, 'before\n');
    assert.match(err.message, /memory limit \(out of memory, exit code 137\).*larger memoryMb/);
    const listed = (await small.commands.list()).find((p) => p.id === err.commandId);
    assert.equal(listed?.oomKilled, true);
    const fine = await small.commands.run('echo still here');
    assert.equal(fine.stdout, 'still here\n');
    assert.equal(fine.oomKilled, undefined);
  });

  it('lists it and connects to it by id', async () => {
    const list = await Sandbox.list(opts);
    const mine = list.find((s) => s.sandboxId === sandbox.id);
    assert.ok(mine, 'Sandbox.list() includes the sandbox');
    assert.deepEqual(mine.metadata, { suite: 'sdk-ts' });
    const again = await Sandbox.connect(sandbox.id, opts);
    try {
      assert.equal(again.id, sandbox.id);
      assert.equal((await again.commands.run('echo via-connect')).stdout, 'via-connect\n');
      const conn = await again.getConnectionInfo();
      assert.equal(typeof conn.host, 'string');
      assert.ok(conn.port > 0 && conn.token.length >= 16);
    } finally {
      again.close();
    }
    await assert.rejects(Sandbox.connect('sb-doesnotexist', opts), NotFoundError);
  });

  it('takes the API key and URL from SANDSTREAM_API_KEY / SANDSTREAM_API_URL', async () => {
    const saved = [process.env.SANDSTREAM_API_KEY, process.env.SANDSTREAM_API_URL];
    process.env.SANDSTREAM_API_KEY = server.apiKey;
    process.env.SANDSTREAM_API_URL = server.apiUrl;
    try {
      assert.ok((await Sandbox.list()).some((s) => s.sandboxId === sandbox.id));
    } finally {
      for (const [k, v] of [['SANDSTREAM_API_KEY', saved[0]], ['SANDSTREAM_API_URL', saved[1]]]) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it('setTimeout() moves the expiry', async () => {
    await sandbox.setTimeout(600_000);
    const left = (await sandbox.getInfo()).endAt.getTime() - Date.now();
    assert.ok(left > 590_000 && left <= 601_000, `expires in ${left} ms`);
  });

  it('refuses a wrong API key with AuthenticationError', async () => {
    const bad = { apiKey: 'sk-wrong', apiUrl: server.apiUrl };
    await assert.rejects(Sandbox.create(bad), (e) => {
      assert.ok(e instanceof AuthenticationError, e.stack);
      assert.equal(e.httpStatus, 401);
      assert.match(e.message, /refused the API key/);
      return true;
    });
    await assert.rejects(Sandbox.list(bad), AuthenticationError);
    await assert.rejects(Sandbox.connect(sandbox.id, bad), AuthenticationError);
  });

  it('resumes a command when the connection to the agent is cut (proxy killed and restarted)', async () => {
    const conn = await sandbox.getConnectionInfo();
    const proxy1 = await startProxy({ targetHost: conn.host, targetPort: conn.port });
    let proxy2;
    const viaProxy = await Sandbox.connect(sandbox.id, { ...opts, resolveAgentAddress: (i) => ({ ...i, host: '127.0.0.1', port: proxy1.port }) });
    const expected = Array.from({ length: 40 }, (_, i) => `line-${i + 1}\n`).join('') + Array.from({ length: 100000 }, (_, i) => `${i + 1}\n`).join('');
    let out = '';
    let cut = false;
    try {
      const r = await viaProxy.commands.run('for i in $(seq 1 40); do echo "line-$i"; sleep 0.05; done; seq 1 100000', {
        onStdout: (d) => {
          out += d;
          if (!cut && out.includes('line-10\n')) {
            cut = true;
            proxy1
              .kill()
              .then(() => new Promise((res) => setTimeout(res, 500)))
              .then(async () => {
                proxy2 = await startProxy({ port: proxy1.port, targetHost: conn.host, targetPort: conn.port });
              });
          }
        },
      });
      assert.ok(cut && proxy2);
      assert.equal(out, expected);
      assert.equal(r.stdout, expected);
    } finally {
      viaProxy.close();
      await proxy1.kill();
      await proxy2?.kill();
    }
  });

  it('unicode and binary output, 100 MB with bounded memory, and a wrong token through a sandbox', async () => {
    const text = await sandbox.commands.run("printf 'a\\xe2\\x82'; sleep 0.2; printf '\\xac 😀 ünï\\n'");
    assert.equal(text.stdout, 'a€ 😀 ünï\n');
    const chunks = [];
    let sum = '';
    await sandbox.commands.run("head -c 65536 /dev/urandom | tee bytes.bin; sha256sum bytes.bin >&2; rm bytes.bin", {
      onStdoutBytes: (b) => chunks.push(Buffer.from(b)),
      onStderr: (d) => (sum += d),
    });
    const got = Buffer.concat(chunks);
    assert.equal(got.length, 65536);
    assert.equal(createHash('sha256').update(got).digest('hex'), sum.split(' ')[0], 'binary output differs from what the sandbox wrote');

    const total = 100 * 1024 * 1024;
    let bytes = 0;
    global.gc?.();
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      const r = await sandbox.commands.run(`yes 0123456789abcdef0123456789abcde | head -c ${total}`, {
        onStdoutBytes: (b) => (bytes += b.length),
        collectOutput: false,
      });
      assert.equal(r.exitCode, 0);
    } finally {
      clearInterval(sample);
    }
    assert.equal(bytes, total);
    const growth = (Math.max(peak, process.memoryUsage().rss) - rss0) / 1048576;
    console.log(`# 100 MB through a sandbox: RSS grew by ${growth.toFixed(0)} MiB`);
    assert.ok(growth < 150, `RSS grew by ${growth.toFixed(0)} MiB while streaming 100 MB (bound 150 MiB)`);

    const wrong = await Sandbox.connect(sandbox.id, { ...opts, resolveAgentAddress: (i) => ({ ...i, token: `${i.token}x` }) });
    try {
      await assert.rejects(wrong.commands.run('touch /home/user/must-not-exist'), (e) => {
        assert.ok(e instanceof AuthenticationError, e.stack);
        assert.match(e.message, /refused the token/);
        return true;
      });
    } finally {
      wrong.close();
    }
    assert.equal((await sandbox.commands.run('test -e /home/user/must-not-exist && echo yes || echo no')).stdout, 'no\n');
  });

  it('kill() ends the sandbox', async () => {
    assert.equal(await sandbox.kill(), true);
    created.splice(created.indexOf(sandbox), 1);
    const list = await Sandbox.list(opts);
    assert.ok(!list.some((s) => s.sandboxId === sandbox.id), 'a killed sandbox is not listed');
    await assert.rejects(Sandbox.connect(sandbox.id, opts), NotFoundError);
  });
});
