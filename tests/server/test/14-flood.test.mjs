// Output floods through /api/sandbox/exec while another sandbox hogs the CPU: every run
// ends at the output limit with its message, never as an error while its program runs,
// and leaves no program behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileServer, api, exec, waitExecution, logs, agentExecute } from '../lib/harness.mjs';

const LIMIT = 1 << 20;

/** The command lines of the sandbox's processes that run main.py. */
async function programsLeft(conn) {
  const out = await agentExecute(conn, "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep 'mai[n].py' || true");
  return out.stdout.split('\n').filter(Boolean);
}

// The same on both backends: the output cap is the agent's and the server's, but how a
// program's processes are found and killed, and how the agent's port is reached, are not.
for (const backend of ['oci', 'docker']) {
  test(`${backend}: ten floods in a row, with a CPU hog beside them: each ends at the limit and leaves nothing running`, async (t) => {
    // Stopped (its sandboxes removed first) when this test ends, before the next backend's.
    const server = await fileServer((fn) => t.after(fn), { args: ['--backend', backend, '--max-output-bytes', String(LIMIT)] });
    await floods(server);
  });
}

async function floods(server) {
  const hogBox = (await api(server, 'POST', '/api/v1/sandboxes', { body: { timeoutMs: 600000 } })).body;
  const box = (await api(server, 'POST', '/api/v1/sandboxes', { body: { timeoutMs: 600000 } })).body;
  try {
    // The hog: one busy loop per core, in its own sandbox, for the whole test.
    const hog = await exec(server, {
      containerId: hogBox.id, language: 'python', timeout: 600000,
      code: 'import multiprocessing as m\ndef spin():\n    while True: pass\nfor _ in range(2): m.Process(target=spin).start()\nspin()\n',
    });
    const conn = (await api(server, 'GET', `/api/v1/sandboxes/${box.id}/connection`)).body;
    for (let i = 1; i <= 10; i++) {
      const started = Date.now();
      const run = await exec(server, { containerId: box.id, language: 'python', code: 'while True: print(1)', timeout: 120000 });
      const ex = await waitExecution(server, run.executionId, { timeoutMs: 120000 });
      const ctx = `flood ${i}: ${JSON.stringify(ex)}`;
      // Ended by the limit, saying so; not by a broken stream, not by its timeout.
      assert.equal(ex.status, 'error', ctx);
      assert.match(ex.error ?? '', /output reached the server's limit of 1048576 bytes/, ctx);
      let stdout = '';
      for (let after = 0; ;) {
        const page = await logs(server, run.executionId, { afterSeq: after });
        stdout += page.chunks.filter((c) => c.type === 'stdout').map((c) => c.data).join('');
        if (page.complete || page.chunks.length === 0) break;
        after = page.chunks.at(-1).seq;
      }
      assert.equal(stdout.length, LIMIT, `${ctx}: kept ${stdout.length} bytes of stdout`);
      assert.ok(/^(1\n)*1?\n?$/.test(stdout.slice(0, 4096)), `${ctx}: unexpected bytes`);
      assert.deepEqual(await programsLeft(conn), [], `${ctx}: the program still runs`);
      console.error(`flood ${i}: ${Date.now() - started} ms`);
    }
    // The hog really ran the whole time (positive control for the load).
    assert.equal((await api(server, 'GET', `/api/v1/executions/${hog.executionId}`)).body.status, 'running');
    await api(server, 'POST', `/api/v1/executions/${hog.executionId}/cancel`);
  } finally {
    await api(server, 'DELETE', `/api/v1/sandboxes/${hogBox.id}`);
    await api(server, 'DELETE', `/api/v1/sandboxes/${box.id}`);
  }
}
