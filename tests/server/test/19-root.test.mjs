// Root inside the sandbox (issue 21): commands run as `user` unless the request names
// another user (the agent's `ExecuteRequest.user`, the SDK's `user` option, E2B-style);
// `user: 'root'` runs as uid 0, and `sudo` works for `user` without a password. Root
// inside is root of the sandbox's own user namespace, never root on the host (the
// isolation tests check that side). Each sandbox is made through the REST API and driven
// through its agent, as the SDK does. SANDSTREAM_BACKEND=docker runs it on that backend.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileServer, api, createTenant, agentExecute } from '../lib/harness.mjs';

const server = await fileServer(after);
const { key } = await createTenant(server, 'root');

// sudo needs the sandbox's user namespace (no_new_privs keeps setuid binaries inert
// without it) and the template's sudo; apt-get also needs the offered apt sources. Until
// those changes are in, these tests are reported as to-do instead of failing the run.
// Remove this marker once they are: the tests must then pass.

/** Runs `command` to its end, as `user` when given (else the sandbox's default user). */
const sh = (conn, command, { user, timeoutMs = 30_000 } = {}) => agentExecute(conn, command, {}, { timeoutMs, user });

/** A fresh default-template sandbox and its agent connection; deleted after the test. */
async function sandbox(t) {
  const c = await api(server, 'POST', '/api/v1/sandboxes', { key, body: {} });
  assert.equal(c.status, 201, c.text);
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${c.body.id}`, { key }));
  const conn = await api(server, 'GET', `/api/v1/sandboxes/${c.body.id}/connection`, { key });
  assert.equal(conn.status, 200, conn.text);
  return conn.body;
}

test('commands run as `user` by default and as root when the request says so', async (t) => {
  const conn = await sandbox(t);
  const def = await sh(conn, 'whoami; id -u; echo "$HOME $USER $LOGNAME"; pwd');
  assert.deepEqual(def, { stdout: 'user\n1000\n/home/user user user\n/home/user\n', stderr: '', exitCode: 0, ended: true });
  const named = await sh(conn, 'whoami; id -u', { user: 'user' });
  assert.deepEqual([named.stdout, named.exitCode], ['user\n1000\n', 0], named.stderr);
  const root = await sh(conn, 'whoami; id -u; id -g; echo "$HOME $USER $LOGNAME"; pwd', { user: 'root' });
  assert.deepEqual(root, { stdout: 'root\n0\n0\n/root root root\n/root\n', stderr: '', exitCode: 0, ended: true });
  // What root writes is root's; what `user` writes stays `user`'s.
  const owners = await sh(conn, 'touch /tmp/by-root && stat -c %U /tmp/by-root', { user: 'root' });
  assert.deepEqual([owners.stdout, owners.exitCode], ['root\n', 0], owners.stderr);
  const mine = await sh(conn, 'touch /tmp/by-user && stat -c %U /tmp/by-user /tmp/by-root');
  assert.deepEqual([mine.stdout, mine.exitCode], ['user\nroot\n', 0], mine.stderr);
});

test('an unknown user is refused by name and runs nothing', async (t) => {
  const conn = await sandbox(t);
  await assert.rejects(sh(conn, 'touch /tmp/ran', { user: 'nosuchuser' }), (e) => {
    assert.equal(e.code, 3, `${e.code} ${e.details}`); // INVALID_ARGUMENT
    assert.equal(e.details, 'unknown user nosuchuser');
    return true;
  });
  const ran = await sh(conn, 'test -e /tmp/ran && echo ran || echo not-run');
  assert.equal(ran.stdout, 'not-run\n');
});

test('sudo works for `user` without a password', async (t) => {
  const conn = await sandbox(t);
  const r = await sh(conn, 'sudo -n id -u');
  console.log(`# sudo -n id -u: ${JSON.stringify(r)}`);
  assert.deepEqual([r.stdout, r.exitCode], ['0\n', 0], r.stderr);
});

test('sudo apt-get installs a package that `user` then runs', async (t) => {
  const conn = await sandbox(t);
  const before = await sh(conn, 'tree --version');
  assert.equal(before.exitCode, 127, JSON.stringify(before));
  const install = await sh(conn, 'sudo -n apt-get update && sudo -n apt-get install -y tree', { timeoutMs: 300_000 });
  console.log(`# sudo apt-get: exit ${install.exitCode}, stderr tail: ${install.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  assert.equal(install.exitCode, 0, install.stderr);
  const r = await sh(conn, 'tree --version');
  assert.deepEqual([r.exitCode, /^tree v\d+\.\d+/.test(r.stdout)], [0, true], JSON.stringify(r));
});
