// sandbox.pty in a real sandbox of a real server (`$SANDSTREAM_BIN up`): the sandbox's own
// /dev/pts, its login shell, full-screen programs, and a second client taking the terminal
// over by pid. Fails, never skips, when the binary is missing.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { Sandbox, CommandExitError } from '@sandstream/sdk';
import { startServer } from '../helpers/server.mjs';

let server;
let sandbox;

after(async () => {
  await sandbox?.kill().catch(() => {});
  await server?.stop();
});

function need() {
  if (!sandbox) throw new Error('no sandbox: see the failure of "starts sandstream up and a sandbox"');
}

/** Collects a terminal's output; `until(text)` waits until it appears after `from` (30 s at most). */
function screen() {
  const s = { bytes: [], text: '', waiting: new Set() };
  s.onData = (d) => {
    s.bytes.push(Buffer.from(d));
    s.text += Buffer.from(d).toString('utf8');
    for (const w of [...s.waiting]) if (s.text.indexOf(w.want, w.from) >= 0) (s.waiting.delete(w), w.resolve());
  };
  s.until = (want, from = 0) =>
    s.text.indexOf(want, from) >= 0
      ? Promise.resolve()
      : new Promise((resolve, reject) => {
          const w = { want, from, resolve };
          s.waiting.add(w);
          setTimeout(() => reject(new Error(`no ${JSON.stringify(want)} in ${JSON.stringify(s.text.slice(from))}`)), 30_000).unref();
        });
  return s;
}

describe('sandbox.pty in a real sandbox', () => {
  it('starts sandstream up and a sandbox', { timeout: 11 * 60_000 }, async () => {
    server = await startServer();
    sandbox = await Sandbox.create({ apiKey: server.apiKey, apiUrl: server.apiUrl, requestTimeoutMs: 10 * 60_000, timeoutMs: 600_000 });
  });

  it("opens the user's login shell: 42, tput cols follows a resize, top runs full-screen and quits", async () => {
    need();
    const s = screen();
    const term = await sandbox.pty.create({ cols: 80, rows: 24, onData: s.onData, timeoutMs: 0 });
    await term.sendInput('echo $((6*7)); id -un; tty\n');
    // Bash answers after the echoed line (and its bracketed-paste switch, an escape sequence).
    await s.until('\r42\r\nuser\r\n/dev/pts/');
    await term.sendInput('tput cols; tput lines\n');
    await s.until('\r80\r\n24\r\n');
    await term.resize({ cols: 120, rows: 40 });
    let mark = s.text.length;
    await term.sendInput('tput cols; tput lines\n');
    await s.until('\r120\r\n40\r\n', mark);
    // A full-screen program: top draws its screen (the alternate screen, then its header),
    // and `q` gives the shell back.
    mark = s.text.length;
    await term.sendInput('top\n');
    await s.until('load average', mark);
    await s.until('PID USER', mark);
    // Typed ahead while top runs, a line would be top's input (and flushed when it
    // restores the terminal), as on any terminal: wait for the prompt first.
    const drawn = s.text.length;
    await term.sendInput('q');
    await s.until('$ ', drawn);
    await term.sendInput('echo top-quit-$?\n');
    await s.until('top-quit-0\r\n', mark);
    await term.sendInput('exit 0\n');
    assert.equal((await term.wait()).exitCode, 0);
  });

  it("a sandbox's terminals are bounded (64): past them a clear error, and freeing one lets the next open", async () => {
    need();
    // A program in the sandbox takes every pseudo-terminal it can and holds them.
    const hog = await sandbox.commands.run(
      `python3 -c 'import os, sys, time
fds = []
try:
    while True: fds.append(os.openpty())
except OSError as e: print(len(fds), e.strerror, flush=True)
sys.stdin.read()'`,
      { background: true, stdin: true },
    );
    while (!hog.stdout.includes('\n')) await new Promise((r) => setTimeout(r, 20));
    assert.equal(hog.stdout, '64 No space left on device\n');
    await assert.rejects(sandbox.pty.create({ cols: 80, rows: 24 }), (e) => e.code === 'RESOURCE_EXHAUSTED' && /no pseudo-terminal is left in this sandbox/.test(e.message));
    await hog.closeStdin();
    await hog.wait();
    const s = screen();
    const term = await sandbox.pty.create({ cols: 80, rows: 24, cmd: 'echo opened', onData: s.onData });
    await s.until('opened\r\n');
    assert.equal((await term.wait()).exitCode, 0);
  });

  it('runs top -b -n1 and a login shell as root; another client takes a terminal over by pid without loss', async () => {
    need();
    const s = screen();
    const term = await sandbox.pty.create({ cols: 100, rows: 30, user: 'root', onData: s.onData, timeoutMs: 0 });
    await term.sendInput('id -u; top -b -n1 | head -3; for i in $(seq 1 300); do echo n-$i; done\n');
    await s.until('\r0\r\ntop - ');
    await s.until('Tasks:');
    await s.until('n-300\r\n');
    const seen = term.offset;
    term.disconnect();
    // A second client of the same sandbox, as a reloaded page would be.
    const other = await Sandbox.connect(sandbox.sandboxId, { apiKey: server.apiKey, apiUrl: server.apiUrl });
    const later = screen();
    const again = await other.pty.connect(term.pid, { offset: seen, onData: later.onData });
    await again.sendInput('echo again-$((40+2)); exit 9\n');
    await later.until('again-42\r\n');
    await assert.rejects(again.wait(), (e) => e instanceof CommandExitError && e.exitCode === 9);
    const replay = screen();
    const whole = await other.pty.connect(term.pid, { onData: replay.onData });
    await assert.rejects(whole.wait(), (e) => e instanceof CommandExitError && e.exitCode === 9);
    assert.deepEqual(Buffer.concat(replay.bytes), Buffer.concat([...s.bytes, ...later.bytes]));
    assert.equal(replay.text.split('n-150\r\n').length - 1, 1, 'n-150 once');
  });
});
