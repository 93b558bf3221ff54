// Output floods through the SDK while another sandbox hogs the CPU: each run ends at its
// maxOutputBytes with a clear error, the agent keeps exactly that many bytes, and no
// program is left running.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { Sandbox, CommandExitError } from '@sandstream/sdk';
import { startServer } from '../helpers/server.mjs';

const LIMIT = 256 << 10;
let server;
const created = [];

after(async () => {
  for (const sb of created) await sb.kill().catch(() => {});
  await server?.stop();
});

/** The command lines of `sandbox`'s processes running flood.py. */
async function floodsLeft(sandbox) {
  const r = await sandbox.commands.run("for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep 'fl[o]od.py' || true");
  return r.stdout.split('\n').filter(Boolean);
}

describe('output floods', () => {
  it('ten floods in a row beside a CPU hog: each stops at maxOutputBytes and leaves nothing running', { timeout: 10 * 60_000 }, async () => {
    server = await startServer();
    const opts = { apiKey: server.apiKey, apiUrl: server.apiUrl, requestTimeoutMs: 10 * 60_000, timeoutMs: 600_000 };
    const hogBox = await Sandbox.create(opts);
    created.push(hogBox);
    const box = await Sandbox.create(opts);
    created.push(box);
    const hog = await hogBox.commands.run('for i in 1 2 3; do (while :; do :; done) & done; wait', { background: true });
    await box.commands.run("printf 'while True: print(1)\\n' > flood.py");
    for (let i = 1; i <= 10; i++) {
      const t0 = Date.now();
      let stdout = '';
      const err = await box.commands
        .run('python3 -u flood.py', { maxOutputBytes: LIMIT, onStdout: (d) => (stdout += d) })
        .then((r) => assert.fail(`flood ${i} ended on its own: ${JSON.stringify(r).slice(0, 200)}`), (e) => e);
      assert.ok(err instanceof CommandExitError, `flood ${i}: ${err}`);
      assert.equal(err.outputLimitReached, true, `flood ${i}: ${err.message}`);
      assert.match(err.message, /maxOutputBytes/);
      assert.equal(err.stdout.length + err.stderr.length, LIMIT, `flood ${i}: kept ${err.stdout.length}+${err.stderr.length} bytes`);
      assert.equal(stdout, err.stdout, `flood ${i}: live output differs from the result`);
      assert.match(err.stdout.slice(0, 1000), /^(1\n)+/);
      assert.deepEqual(await floodsLeft(box), [], `flood ${i}: the program still runs`);
      console.log(`# flood ${i}: ${Date.now() - t0} ms`);
    }
    // Positive control: a command under the limit is untouched.
    const ok = await box.commands.run('head -c 1000 /dev/zero | tr "\\0" x', { maxOutputBytes: LIMIT });
    assert.equal(ok.stdout, 'x'.repeat(1000));
    await hog.kill();
  });
});
