// Command-layer tests against a real sandstream-agent spawned on this machine.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  AgentClient,
  AuthenticationError,
  CommandExitError,
  ConnectionError,
  InvalidArgumentError,
  NotFoundError,
  SandboxError,
  TimeoutError,
} from '@sandstream/sdk';
import { startAgent } from '../helpers/agent.mjs';
import { startProxy } from '../helpers/proxy.mjs';

let agent;
let client;

before(async () => {
  agent = await startAgent();
  client = new AgentClient(agent.info);
});

after(async () => {
  client?.close();
  await agent?.stop();
});

describe('commands.run', () => {
  it("runs the seed's example with separate onStdout and onStderr", async () => {
    const out = [];
    const err = [];
    const result = await client.commands.run('echo "hello from stdout"; echo "hello from stderr" >&2; echo done', {
      onStdout: (d) => out.push(d),
      onStderr: (d) => err.push(d),
      timeout: 10_000,
    });
    assert.equal(result.exitCode, 0);
    assert.equal(result.stdout, 'hello from stdout\ndone\n');
    assert.equal(result.stderr, 'hello from stderr\n');
    assert.equal(out.join(''), 'hello from stdout\ndone\n');
    assert.equal(err.join(''), 'hello from stderr\n');
    assert.equal(result.status, 'exited');
    assert.match(result.commandId, /^[0-9a-f-]{36}$/);
  });

  it('honours cwd and envs', async () => {
    const r = await client.commands.run('pwd; echo "$GREETING-$OTHER"', { cwd: '/usr', envs: { GREETING: 'hi there', OTHER: 'x=y' } });
    assert.equal(r.stdout, '/usr\nhi there-x=y\n');
    const rel = await client.commands.run('mkdir -p sub && cd sub && pwd');
    assert.equal(rel.stdout, `${agent.dir}/sub\n`);
    const r2 = await client.commands.run('pwd', { cwd: 'sub' });
    assert.equal(r2.stdout, `${agent.dir}/sub\n`);
  });

  it('rejects a missing cwd with InvalidArgumentError and runs nothing', async () => {
    await assert.rejects(client.commands.run('touch should-not-exist', { cwd: '/does/not/exist' }), (e) => {
      assert.ok(e instanceof InvalidArgumentError);
      assert.ok(e instanceof SandboxError);
      assert.match(e.message, /cwd \/does\/not\/exist does not exist/);
      return true;
    });
  });

  it('runs as the user it names; an unknown user is an InvalidArgumentError and runs nothing', async () => {
    await assert.rejects(client.commands.run(`touch ${agent.dir}/ran`, { user: 'no-such-user-xyz' }), (e) => {
      assert.ok(e instanceof InvalidArgumentError, `${e}`);
      assert.equal(e.code, 'INVALID_ARGUMENT');
      assert.equal(e.message, 'running the command: unknown user no-such-user-xyz');
      return true;
    });
    assert.equal((await client.commands.run(`test -e ${agent.dir}/ran || echo not-run`)).stdout, 'not-run\n');
    // Switching users needs the agent to be root, as it is in a sandbox.
    if (process.getuid?.() !== 0) return;
    const root = await client.commands.run('whoami; id -u; echo "$HOME $USER"', { user: 'root' });
    assert.equal(root.stdout, 'root\n0\n/root root\n');
    // nobody's home (/nonexistent) is no directory: it starts in /.
    const nobody = await client.commands.run('whoami; id -u; pwd', { user: 'nobody' });
    assert.equal(nobody.stdout, 'nobody\n65534\n/\n');
    assert.equal((await client.commands.run('id -u', { user: '65534' })).stdout, '65534\n');
  });

  it('throws CommandExitError with exitCode, stdout and stderr on a non-zero exit', async () => {
    await assert.rejects(client.commands.run('echo out; echo err >&2; exit 3'), (e) => {
      assert.ok(e instanceof CommandExitError);
      assert.ok(e instanceof SandboxError);
      assert.equal(e.exitCode, 3);
      assert.equal(e.stdout, 'out\n');
      assert.equal(e.stderr, 'err\n');
      assert.equal(e.status, 'exited');
      assert.match(e.message, /exited with code 3; last stderr line: err/);
      return true;
    });
    await assert.rejects(client.commands.run('no-such-command-xyz'), (e) => e instanceof CommandExitError && e.exitCode === 127 && /not found/.test(e.stderr));
    await assert.rejects(client.commands.run('kill -TERM $$'), (e) => {
      assert.ok(e instanceof CommandExitError);
      assert.equal(e.exitCode, 143);
      assert.equal(e.status, 'signaled');
      assert.equal(e.signal, 15);
      return true;
    });
  });

  it('kills a command at its timeout: TimeoutError of kind "command" with the output so far', async () => {
    const t0 = Date.now();
    await assert.rejects(client.commands.run('echo started; sleep 10; echo never', { timeout: 500 }), (e) => {
      assert.ok(e instanceof TimeoutError);
      assert.equal(e.kind, 'command');
      assert.equal(e.exitCode, 124);
      assert.equal(e.stdout, 'started\n');
      assert.match(e.message, /ran longer than its timeout of 500 ms/);
      return true;
    });
    const took = Date.now() - t0;
    assert.ok(took >= 450 && took < 5_000, `took ${took} ms`);
    // timeoutMs (E2B's name) is the same option
    await assert.rejects(client.commands.run('sleep 10', { timeoutMs: 200 }), (e) => e instanceof TimeoutError && e.kind === 'command');
  });

  it('a short request timeout does not limit how long a command runs', async () => {
    const c = new AgentClient(agent.info, { requestTimeoutMs: 300 });
    try {
      const r = await c.commands.run('sleep 1; echo slept');
      assert.equal(r.stdout, 'slept\n');
    } finally {
      c.close();
    }
  });

  it('writes stdin', async () => {
    const r = await client.commands.run('cat; echo; wc -c', { stdin: 'line one\nline two' });
    assert.equal(r.stdout, 'line one\nline two\n0\n');
    const r2 = await client.commands.run('wc -c', { stdin: new Uint8Array([0, 1, 2, 255]) });
    assert.equal(r2.stdout.trim(), '4');
  });

  it('runs 10 concurrent commands over one HTTP/2 connection', async () => {
    const proxy = await startProxy({ targetPort: agent.port });
    const c = new AgentClient({ ...agent.info, port: proxy.port });
    try {
      const seen = Array.from({ length: 10 }, () => '');
      const t0 = Date.now();
      const results = await Promise.all(
        seen.map((_, i) =>
          c.commands.run(`for j in 1 2 3; do echo "cmd${i}-$j"; sleep 0.2; done; echo "e${i}" >&2`, {
            onStdout: (d) => (seen[i] += d),
          }),
        ),
      );
      const took = Date.now() - t0;
      results.forEach((r, i) => {
        assert.equal(r.stdout, `cmd${i}-1\ncmd${i}-2\ncmd${i}-3\n`);
        assert.equal(r.stderr, `e${i}\n`);
        assert.equal(seen[i], r.stdout);
      });
      assert.ok(took < 3_000, `10 commands of 0.6 s each took ${took} ms: they did not run concurrently`);
      assert.equal(new Set(results.map((r) => r.commandId)).size, 10);
      assert.equal(proxy.connections, 1, 'all commands share one TCP (HTTP/2) connection');
    } finally {
      c.close();
      await proxy.kill();
    }
  });

  it('decodes UTF-8 split across chunks without breaking characters', async () => {
    const out = [];
    // "€" is e2 82 ac; "😀" is f0 9f 98 80. Each is split across two writes with a pause.
    const r = await client.commands.run(
      "printf 'a\\xe2\\x82'; sleep 0.3; printf '\\xac b \\xf0\\x9f'; sleep 0.3; printf '\\x98\\x80 ünï\\n'",
      { onStdout: (d) => out.push(d) },
    );
    assert.equal(r.stdout, 'a€ b 😀 ünï\n');
    assert.equal(out.join(''), 'a€ b 😀 ünï\n');
    assert.ok(out.length >= 2, `expected several chunks, got ${JSON.stringify(out)}`);
    for (const chunk of out) assert.ok(!chunk.includes('\uFFFD'), `a chunk holds a broken character: ${JSON.stringify(out)}`);
    // Invalid bytes become U+FFFD, they do not throw.
    const bad = await client.commands.run("printf 'x\\xffy'");
    assert.equal(bad.stdout, 'x\uFFFDy');
  });

  it('delivers binary output byte-exact through onStdoutBytes', async () => {
    const all = Buffer.alloc(256 * 64);
    for (let i = 0; i < all.length; i++) all[i] = i % 256;
    // Every byte value 0..255, 64 times over.
    const chunks2 = [];
    const r = await client.commands.run(
      "i=0; while [ $i -lt 256 ]; do printf \"\\\\$(printf '%03o' $i)\"; i=$((i+1)); done > all-bytes.bin; for j in $(seq 64); do cat all-bytes.bin; done; rm all-bytes.bin",
      { onStdoutBytes: (b) => chunks2.push(Buffer.from(b)) },
    );
    const got = Buffer.concat(chunks2);
    assert.equal(got.length, all.length);
    assert.ok(got.equals(all), 'binary output differs');
    assert.equal(r.exitCode, 0);
  });

  it('streams 100 MB with bounded memory', async () => {
    const total = 100 * 1024 * 1024;
    let bytes = 0;
    let chars = 0;
    let peakRss = 0;
    let peakHeap = 0;
    global.gc?.();
    const rss0 = process.memoryUsage().rss;
    const sample = setInterval(() => {
      const m = process.memoryUsage();
      peakRss = Math.max(peakRss, m.rss);
      peakHeap = Math.max(peakHeap, m.heapUsed);
    }, 20);
    try {
      const r = await client.commands.run(`yes 0123456789abcdef0123456789abcde | head -c ${total}`, {
        onStdout: (d) => (chars += d.length),
        onStdoutBytes: (b) => (bytes += b.length),
        collectOutput: false,
      });
      assert.equal(r.exitCode, 0);
      assert.equal(r.stdout, '');
    } finally {
      clearInterval(sample);
    }
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    assert.equal(bytes, total);
    assert.equal(chars, total);
    const growth = (peakRss - rss0) / 1024 / 1024;
    console.log(`# 100 MB: rss before ${(rss0 / 1048576).toFixed(0)} MiB, peak ${(peakRss / 1048576).toFixed(0)} MiB (+${growth.toFixed(0)}), peak heap ${(peakHeap / 1048576).toFixed(0)} MiB`);
    assert.ok(growth < 150, `RSS grew by ${growth.toFixed(0)} MiB while streaming 100 MB (bound 150 MiB)`);
    assert.ok(peakHeap < 200 * 1024 * 1024, `heap peaked at ${(peakHeap / 1048576).toFixed(0)} MiB`);
  });

  it('rejects run() with the error a callback throws', async () => {
    const boom = new Error('callback failed');
    await assert.rejects(
      client.commands.run('echo a; sleep 0.2; echo b', {
        onStdout: () => {
          throw boom;
        },
      }),
      (e) => e === boom,
    );
  });

  it('refuses a wrong token with AuthenticationError and runs nothing', async () => {
    const bad = new AgentClient({ ...agent.info, token: 'wrong-token-0123456789' });
    try {
      await assert.rejects(bad.commands.run(`touch ${agent.dir}/must-not-exist`), (e) => {
        assert.ok(e instanceof AuthenticationError);
        assert.equal(e.code, 'UNAUTHENTICATED');
        assert.match(e.message, /refused the token/);
        return true;
      });
      await assert.rejects(bad.commands.list(), AuthenticationError);
      const r = await client.commands.run(`test -e ${agent.dir}/must-not-exist && echo yes || echo no`);
      assert.equal(r.stdout, 'no\n');
    } finally {
      bad.close();
    }
  });

  it('fails clearly when the agent is unreachable', async () => {
    const c = new AgentClient({ host: '127.0.0.1', port: 1, token: agent.token }, { requestTimeoutMs: 2_000 });
    try {
      await assert.rejects(c.commands.list(), (e) => {
        assert.ok(e instanceof ConnectionError || e instanceof TimeoutError, e.stack);
        assert.match(e.message, /127\.0\.0\.1:1/);
        return true;
      });
    } finally {
      c.close();
    }
  });
});

describe('background commands', () => {
  it('returns a handle at once; wait() gives the result', async () => {
    const out = [];
    const t0 = Date.now();
    const h = await client.commands.run('sleep 0.5; echo finished; echo warn >&2', { background: true, onStdout: (d) => out.push(d) });
    assert.ok(Date.now() - t0 < 400, 'run() with background: true waited for the command');
    assert.match(h.id, /^[0-9a-f-]{36}$/);
    assert.ok(h.pid > 0);
    assert.equal(h.exitCode, undefined);
    const r = await h.wait();
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, 'finished\n');
    assert.equal(r.stderr, 'warn\n');
    assert.equal(out.join(''), 'finished\n');
    assert.equal(h.exitCode, 0);
    assert.equal(h.stdout, 'finished\n');
  });

  it('kill() ends it; wait() rejects with CommandExitError (signal 9)', async () => {
    const h = await client.commands.run('echo before; sleep 30; echo after', { background: true });
    const listed = await client.commands.list();
    const mine = listed.find((p) => p.id === h.id);
    assert.ok(mine, 'commands.list() shows the background command');
    assert.equal(mine.running, true);
    assert.equal(mine.command, 'echo before; sleep 30; echo after');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(await h.kill(), true);
    await assert.rejects(h.wait(), (e) => {
      assert.ok(e instanceof CommandExitError);
      assert.equal(e.exitCode, 137);
      assert.equal(e.signal, 9);
      assert.equal(e.stdout, 'before\n');
      return true;
    });
    assert.equal(await h.kill(), false, 'killing an ended command answers false');
    const after = (await client.commands.list()).find((p) => p.id === h.id);
    assert.equal(after.running, false);
    assert.equal(after.status, 'signaled');
  });

  it('sendStdin() and closeStdin()', async () => {
    const h = await client.commands.run('while read l; do echo "got:$l"; done; echo eof', { background: true, stdin: true });
    await h.sendStdin('one\n');
    await h.sendStdin(new TextEncoder().encode('two\n'));
    await h.closeStdin();
    const r = await h.wait();
    assert.equal(r.stdout, 'got:one\ngot:two\neof\n');
  });

  it('commands.connect(id) re-attaches and replays the output from the start', async () => {
    const h = await client.commands.run('for i in 1 2 3 4 5; do echo "n$i"; sleep 0.2; done', { background: true });
    await new Promise((r) => setTimeout(r, 450));
    h.disconnect();
    await assert.rejects(h.wait(), /stopped following/);
    const other = new AgentClient(agent.info);
    try {
      const out = [];
      const again = await other.commands.connect(h.id, { onStdout: (d) => out.push(d) });
      const r = await again.wait();
      assert.equal(r.stdout, 'n1\nn2\nn3\nn4\nn5\n');
      assert.equal(out.join(''), 'n1\nn2\nn3\nn4\nn5\n');
      // From an offset: only what follows it.
      const tail = await other.commands.connect(h.id, { stdoutOffset: 9 });
      assert.equal((await tail.wait()).stdout, 'n4\nn5\n');
    } finally {
      other.close();
    }
    await assert.rejects(client.commands.connect('00000000-0000-0000-0000-000000000000'), NotFoundError);
  });
});

describe('merged output (onOutput, output)', () => {
  // Each echo is one write, flushed: stdout and stderr alternate 1,000 times.
  const alternate = 'for i in $(seq 0 999); do echo "out $i"; echo "err $i" >&2; done';
  const inOrder = Array.from({ length: 1000 }, (_, i) => `out ${i}\nerr ${i}\n`).join('');

  it('gives 1,000 alternating stdout and stderr lines in the order the program wrote them', async () => {
    const parts = [];
    const r = await client.commands.run(alternate, { onOutput: (data, stream) => parts.push([stream, data]) });
    assert.equal(parts.map(([, d]) => d).join(''), inOrder);
    // Each piece is labelled with its stream.
    for (const [stream, data] of parts) assert.match(data, stream === 'stdout' ? /^(out \d+\n)+$/ : /^(err \d+\n)+$/);
    assert.equal(r.output, inOrder);
    // Positive control: the separate streams are as before.
    assert.equal(r.stdout, Array.from({ length: 1000 }, (_, i) => `out ${i}\n`).join(''));
    assert.equal(r.stderr, Array.from({ length: 1000 }, (_, i) => `err ${i}\n`).join(''));
    // A failed command carries it too; without collecting there is none.
    await assert.rejects(client.commands.run('echo a; echo b >&2; echo c; exit 4'), (e) => e instanceof CommandExitError && e.output === 'a\nb\nc\n');
    const none = await client.commands.run('echo a; echo b >&2', { collectOutput: false });
    assert.equal(none.output, '');
  });

  it('keeps the order across a dropped connection (resumed from both offsets)', async () => {
    const proxy1 = await startProxy({ targetPort: agent.port });
    const c = new AgentClient({ ...agent.info, port: proxy1.port });
    let proxy2;
    try {
      let merged = '';
      let cut = false;
      const r = await c.commands.run(`${alternate.replace('done', 'sleep 0.001; done')}`, {
        onOutput: (d) => {
          merged += d;
          if (!cut && merged.includes('err 300\n')) {
            cut = true;
            proxy1
              .kill()
              .then(() => new Promise((res) => setTimeout(res, 300)))
              .then(async () => {
                proxy2 = await startProxy({ port: proxy1.port, targetPort: agent.port });
              });
          }
        },
      });
      assert.ok(cut && proxy2, 'the connection was cut and came back');
      assert.equal(merged, inOrder);
      assert.equal(r.output, inOrder);
    } finally {
      c.close();
      await proxy1.kill();
      await proxy2?.kill();
    }
  });
});

describe('recovery after a dropped connection', () => {
  const script = 'for i in $(seq 1 60); do echo "line-$i"; echo "err-$i" >&2; sleep 0.05; done; seq 1 200000';
  const expectedOut = Array.from({ length: 60 }, (_, i) => `line-${i + 1}\n`).join('') +
    Array.from({ length: 200000 }, (_, i) => `${i + 1}\n`).join('');
  const expectedErr = Array.from({ length: 60 }, (_, i) => `err-${i + 1}\n`).join('');

  it('resumes from the last offsets when the proxy is killed and restarted: every byte exactly once', async () => {
    const proxy1 = await startProxy({ targetPort: agent.port });
    const c = new AgentClient({ ...agent.info, port: proxy1.port });
    let out = '';
    let err = '';
    let proxy2;
    try {
      let cut = false;
      const running = c.commands.run(script, {
        onStdout: (d) => {
          out += d;
          if (!cut && out.includes('line-20\n')) {
            cut = true;
            // Kill the proxy mid-stream, then start it again on the same port.
            proxy1
              .kill()
              .then(() => new Promise((r) => setTimeout(r, 500)))
              .then(async () => {
                proxy2 = await startProxy({ port: proxy1.port, targetPort: agent.port });
              });
          }
        },
        onStderr: (d) => (err += d),
      });
      const r = await running;
      assert.ok(cut, 'the proxy was cut');
      assert.ok(proxy2, 'the proxy was restarted');
      assert.equal(r.exitCode, 0);
      assert.equal(out.length, expectedOut.length);
      assert.equal(out, expectedOut);
      assert.equal(err, expectedErr);
      assert.equal(r.stdout, expectedOut);
      assert.equal(r.stderr, expectedErr);
      assert.ok(proxy2.connections >= 1, 'the SDK reconnected through the restarted proxy');
    } finally {
      c.close();
      await proxy1.kill();
      await proxy2?.kill();
    }
  });

  it('fetches the connection info again when reconnecting to the old address fails', async () => {
    const proxyA = await startProxy({ targetPort: agent.port });
    let proxyB;
    let fetches = 0;
    const c = new AgentClient(async () => {
      fetches++;
      if (fetches === 1) return { ...agent.info, port: proxyA.port };
      proxyB ??= await startProxy({ targetPort: agent.port });
      return { ...agent.info, port: proxyB.port };
    });
    let out = '';
    let err = '';
    try {
      let cut = false;
      const r = await c.commands.run(script, {
        onStdout: (d) => {
          out += d;
          if (!cut && out.includes('line-10\n')) {
            cut = true;
            proxyA.kill(); // and never comes back: the SDK must ask for a new address
          }
        },
        onStderr: (d) => (err += d),
      });
      assert.equal(r.exitCode, 0);
      assert.equal(out, expectedOut);
      assert.equal(err, expectedErr);
      assert.ok(fetches >= 2, `connection info fetched ${fetches} times`);
      assert.ok(proxyB.connections >= 1);
    } finally {
      c.close();
      await proxyA.kill();
      await proxyB?.kill();
    }
  });

  it('notices a frozen connection (proxy stopped, nothing closed) by keepalive and resumes', async () => {
    const proxy = await startProxy({ targetPort: agent.port });
    const c = new AgentClient({ ...agent.info, port: proxy.port }, { keepaliveTimeMs: 1_000, keepaliveTimeoutMs: 1_000 });
    let out = '';
    let frozen = false;
    try {
      const r = await c.commands.run('for i in $(seq 1 80); do echo "f$i"; sleep 0.05; done', {
        onStdout: (d) => {
          out += d;
          if (!frozen && out.includes('f10\n')) {
            frozen = true;
            proxy.child.kill('SIGSTOP'); // the TCP connection stays open but carries nothing
            setTimeout(() => proxy.child.kill('SIGCONT'), 3_500);
          }
        },
      });
      assert.ok(frozen);
      assert.equal(out, Array.from({ length: 80 }, (_, i) => `f${i + 1}\n`).join(''));
      assert.equal(r.stdout, out);
      assert.ok(proxy.connections >= 2, `expected a new connection after the frozen one, saw ${proxy.connections}`);
    } finally {
      c.close();
      proxy.child.kill('SIGCONT');
      await proxy.kill();
    }
  });

  it('gives up after recoveryTimeoutMs with a ConnectionError that says what to do', async () => {
    const proxy = await startProxy({ targetPort: agent.port });
    const c = new AgentClient({ ...agent.info, port: proxy.port }, { recoveryTimeoutMs: 1_500 });
    let cutAt = 0;
    try {
      await assert.rejects(
        c.commands.run('for i in $(seq 1 100); do echo "x$i"; sleep 0.05; done', {
          onStdout: (d) => {
            if (!cutAt && d.includes('x5')) {
              cutAt = Date.now();
              proxy.kill();
            }
          },
        }),
        (e) => {
          assert.ok(e instanceof ConnectionError, e.stack);
          assert.match(e.message, /could not resume within recoveryTimeoutMs \(1500 ms\)/);
          assert.match(e.message, /commands\.connect\('[0-9a-f-]{36}'\)/);
          return true;
        },
      );
      const took = Date.now() - cutAt;
      assert.ok(took >= 1_400 && took < 6_000, `gave up after ${took} ms`);
    } finally {
      c.close();
      await proxy.kill();
    }
  });
});
