// sandbox.pty against a real sandstream-agent spawned on this machine: typing, resizing,
// Ctrl-C, a dropped connection and a reconnect by pid, without loss or duplicates.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { AgentClient, CommandExitError, InvalidArgumentError, NotFoundError } from '@sandstream/sdk';
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

/** A bash without start-up files and with a known prompt. */
const BASH = "PS1='$ ' exec bash --norc --noprofile -i";

/** Collects a terminal's output; `until(text)` waits until it appears (30 s at most). */
function screen() {
  const s = { bytes: [], text: '' };
  s.onData = (d) => {
    s.bytes.push(Buffer.from(d));
    s.text += Buffer.from(d).toString('utf8');
    for (const w of [...s.waiting]) if (s.text.includes(w.want)) (s.waiting.delete(w), w.resolve());
  };
  s.waiting = new Set();
  s.until = (want) =>
    s.text.includes(want)
      ? Promise.resolve()
      : new Promise((resolve, reject) => {
          const w = { want, resolve };
          s.waiting.add(w);
          setTimeout(() => reject(new Error(`no ${JSON.stringify(want)} in ${JSON.stringify(s.text)}`)), 30_000).unref();
        });
  return s;
}

describe('sandbox.pty', () => {
  it('runs bash: typed input gives 42, and the exit code comes back', async () => {
    const s = screen();
    const term = await client.pty.create({ cols: 80, rows: 24, cmd: BASH, onData: s.onData });
    assert.ok(term.pid > 0);
    await term.sendInput('echo $((6*7))\n');
    await s.until('\r42\r\n');
    await term.sendInput('tty; echo TERM=$TERM\n');
    await s.until('/dev/pts/');
    await s.until('TERM=xterm-256color\r\n');
    await term.sendInput('exit 3\n');
    await assert.rejects(term.wait(), (e) => e instanceof CommandExitError && e.exitCode === 3);
    assert.equal(term.exitCode, 3);
    assert.equal(term.offset, Buffer.concat(s.bytes).length);
  });

  it('follows a resize: SIGWINCH reaches the program and stty size answers the new size', async () => {
    const s = screen();
    const cmd = "trap 'echo winch $(stty size)' WINCH; echo start $(stty size); while :; do sleep 0.05; done";
    const term = await client.pty.create({ cols: 100, rows: 30, cmd, onData: s.onData });
    await s.until('start 30 100\r\n');
    await term.resize({ cols: 132, rows: 50 });
    await s.until('winch 50 132\r\n');
    await client.pty.resize(term.pid, { cols: 90, rows: 20 });
    await s.until('winch 20 90\r\n');
    const listed = (await client.commands.list()).find((c) => c.pid === term.pid);
    assert.deepEqual(listed.pty, { cols: 90, rows: 20 });
    assert.equal(await client.pty.kill(term.pid), true);
    await assert.rejects(term.wait(), (e) => e instanceof CommandExitError && e.signal === 9);
    assert.equal(await client.pty.kill(term.pid), false);
  });

  it('Ctrl-C interrupts the foreground program; bash lives on', async () => {
    const s = screen();
    const term = await client.pty.create({ cols: 80, rows: 24, cmd: BASH, onData: s.onData });
    await term.sendInput('sleep 100\n');
    await s.until('sleep 100\r\n');
    await new Promise((r) => setTimeout(r, 300));
    await term.sendInput('\x03');
    await s.until('^C');
    await term.sendInput('echo after $?; exit\n');
    await s.until('after 130\r\n');
    assert.equal((await term.wait()).exitCode, 0);
  });

  it('resumes through a dropped connection, and connect(pid) picks up at an offset, each byte once', async () => {
    const proxy1 = await startProxy({ targetPort: agent.port });
    const c = new AgentClient({ ...agent.info, port: proxy1.port });
    let proxy2;
    try {
      const s = screen();
      const term = await c.pty.create({ cols: 80, rows: 24, cmd: BASH, onData: s.onData, timeoutMs: 0 });
      await term.sendInput('for i in $(seq 1 400); do echo line-$i; sleep 0.002; done\n');
      await s.until('line-100\r\n');
      // The connection dies mid-output and comes back: the handle resumes on its own.
      await proxy1.kill();
      assert.ok(!s.text.includes('line-400\r\n'), 'the connection was cut mid-output');
      await new Promise((r) => setTimeout(r, 300));
      proxy2 = await startProxy({ port: proxy1.port, targetPort: agent.port });
      await s.until('line-400\r\n');
      for (const i of [1, 100, 101, 250, 400]) assert.equal(s.text.split(`line-${i}\r\n`).length - 1, 1, `line-${i}`);
      // Another client, as after a page reload: from an offset, then live.
      term.disconnect();
      const seen = term.offset;
      const later = screen();
      const again = await client.pty.connect(term.pid, { offset: seen, onData: later.onData });
      await again.sendInput('echo back-$((2+3)); exit 7\n');
      await later.until('back-5\r\n');
      await assert.rejects(again.wait(), (e) => e instanceof CommandExitError && e.exitCode === 7);
      // What the two handles got, joined at the offset, is exactly the whole output.
      const replay = screen();
      const all = await client.pty.connect(term.pid, { onData: replay.onData });
      await assert.rejects(all.wait(), (e) => e instanceof CommandExitError);
      assert.deepEqual(Buffer.concat(replay.bytes), Buffer.concat([Buffer.concat(s.bytes).subarray(0, seen), ...later.bytes]));
    } finally {
      c.close();
      await proxy1.kill();
      await proxy2?.kill();
    }
  });

  it('refuses bad sizes, a bad timeout and an unknown pid with clear errors', async () => {
    for (const size of [{ cols: 0, rows: 24 }, { cols: 80, rows: 10_001 }, { cols: 80.5, rows: 24 }, { cols: 80 }]) {
      await assert.rejects(client.pty.create({ ...size }), (e) => e instanceof InvalidArgumentError && /cols and rows must be whole numbers from 1 to 10000/.test(e.message));
    }
    await assert.rejects(client.pty.create({ cols: 80, rows: 24, timeoutMs: -1 }), InvalidArgumentError);
    await assert.rejects(client.pty.connect(999_999), (e) => e instanceof NotFoundError && /no terminal with pid 999999/.test(e.message));
    assert.equal(await client.pty.kill(999_999), false);
    // A command on pipes is no terminal: the agent refuses to resize it.
    const piped = await client.commands.run('sleep 5', { background: true });
    await assert.rejects(client.commands.connection.unary('ResizePty', { commandId: piped.id, size: { cols: 80, rows: 24 } }, 'resizing'), /does not run on a terminal/);
    await piped.kill();
  });

  it('ends at its default timeout of 60 s unless told otherwise (the agent kills it)', async () => {
    const s = screen();
    const term = await client.pty.create({ cols: 80, rows: 24, cmd: 'sleep 30', timeoutMs: 200, onData: s.onData });
    await assert.rejects(term.wait(), (e) => e.name === 'TimeoutError');
  });
});
