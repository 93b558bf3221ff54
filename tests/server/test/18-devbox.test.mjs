// The default template as a machine to work in (issue 21): commands run as `user` with a
// passwd entry and a home, `pip install` and `npm install -g` work without flags (from
// the registries, through the sandbox's own egress), and the usual tools are there; what
// belongs to root stays root's. Each sandbox is made through the REST API and driven
// through its agent, as the SDK does. SANDSTREAM_BACKEND=docker runs it on that backend.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileServer, api, createTenant, agentExecute } from '../lib/harness.mjs';

const server = await fileServer(after);
const { key } = await createTenant(server, 'devbox');

/** Runs `command` in the sandbox whose connection is `conn`, to its end (installs from a registry get longer). */
const sh = (conn, command, timeoutMs = 30_000) => agentExecute(conn, command, {}, { timeoutMs });

/** A fresh default-template sandbox and its agent connection; deleted after the test. */
async function sandbox(t) {
  const c = await api(server, 'POST', '/api/v1/sandboxes', { key, body: {} });
  assert.equal(c.status, 201, c.text);
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${c.body.id}`, { key }));
  assert.equal(c.body.template, 'default');
  const conn = await api(server, 'GET', `/api/v1/sandboxes/${c.body.id}/connection`, { key });
  assert.equal(conn.status, 200, conn.text);
  return conn.body;
}

test('commands run as `user`, uid 1000, with a passwd entry, a home and its variables', async (t) => {
  const conn = await sandbox(t);
  const r = await sh(conn, 'whoami; id -u; id -gn; echo "$HOME $USER $LOGNAME"; pwd; getent passwd user; touch ~/mine && stat -c %U ~/mine');
  assert.deepEqual(r, {
    stdout: 'user\n1000\nuser\n/home/user user user\n/home/user\nuser:x:1000:1000::/home/user:/bin/bash\nuser\n',
    stderr: '',
    exitCode: 0,
    ended: true,
  });
});

test('pip install without flags, then python3 imports the package from /usr/local', async (t) => {
  const conn = await sandbox(t);
  // Not in the template: the import fails first (the control), succeeds after the install.
  const before = await sh(conn, 'python3 -c "import six"');
  assert.notEqual(before.exitCode, 0);
  assert.match(before.stderr, /ModuleNotFoundError: No module named 'six'/);
  const install = await sh(conn, 'pip install six', 180_000);
  assert.equal(install.exitCode, 0, JSON.stringify(install));
  assert.doesNotMatch(install.stdout + install.stderr, /externally-managed-environment|Defaulting to user installation/);
  const r = await sh(conn, 'python3 -c "import six; print(six.__version__); print(six.__file__)"');
  assert.equal(r.exitCode, 0, JSON.stringify(r));
  const [version, file] = r.stdout.trim().split('\n');
  assert.match(version, /^\d+\.\d+\.\d+$/);
  assert.match(file, /^\/usr\/local\/lib\/python3\.\d+\/dist-packages\/six\.py$/);
  // `pip`, `python` and `python3` are one environment.
  const same = await sh(conn, 'python3 -c "import sys; print(\'%d.%d\' % sys.version_info[:2])"; pip --version; python -c "import six"');
  assert.equal(same.exitCode, 0, JSON.stringify(same));
  const [py, pip] = same.stdout.trim().split('\n');
  assert.ok(pip.endsWith(`(python ${py})`), `pip ${pip} is not python3's (${py})`);
});

test('npm install -g without flags, then the command runs and node can require it', async (t) => {
  const conn = await sandbox(t);
  const before = await sh(conn, 'cowsay hi');
  assert.equal(before.exitCode, 127, JSON.stringify(before));
  const install = await sh(conn, 'npm install -g cowsay', 180_000);
  assert.equal(install.exitCode, 0, JSON.stringify(install));
  assert.doesNotMatch(install.stderr, /EACCES/);
  const r = await sh(conn, 'cowsay hi');
  assert.equal(r.exitCode, 0, JSON.stringify(r));
  assert.match(r.stdout, /< hi >/);
  assert.match(r.stdout, /\(oo\)/);
  const req = await sh(conn, `node -e "console.log(require('cowsay').say({ text: 'moo' }).includes('< moo >'))"`);
  assert.deepEqual([req.stdout, req.exitCode], ['true\n', 0], req.stderr);
});

test('Node.js is 22 or newer, with npm and tsc', async (t) => {
  const conn = await sandbox(t);
  const r = await sh(conn, 'node --version; npm --version; tsc --version');
  assert.equal(r.exitCode, 0, JSON.stringify(r));
  const [node, npm, tsc] = r.stdout.trim().split('\n');
  const major = Number(/^v(\d+)\./.exec(node)?.[1]);
  assert.ok(major >= 22, `node ${node}`);
  assert.match(npm, /^\d+\.\d+\.\d+$/);
  assert.match(tsc, /^Version 5\.\d+\.\d+$/);
});

test('git, curl, wget, ps, free, jq, make, unzip and less are there', async (t) => {
  const conn = await sandbox(t);
  const tools = ['git --version', 'curl --version', 'wget --version', 'ps aux', 'free -m', 'jq --version', 'make --version', 'unzip -v', 'less --version'];
  const failed = [];
  for (const cmd of tools) {
    const r = await sh(conn, cmd);
    if (r.exitCode !== 0 || r.stdout === '') failed.push(`${cmd}: exit ${r.exitCode} ${r.stderr.trim()}`);
  }
  assert.deepEqual(failed, []);
  // ps sees the agent and this command, and jq does its job.
  const r = await sh(conn, `ps -eo comm | grep -c . ; echo '{"a":[1,2]}' | jq -c '.a | map(. * 21)'`);
  assert.equal(r.exitCode, 0, JSON.stringify(r));
  assert.ok(Number(r.stdout.split('\n')[0]) >= 3, r.stdout);
  assert.equal(r.stdout.split('\n')[1], '[21,42]');
});

test('gcc and g++ compile programs that run', async (t) => {
  const conn = await sandbox(t);
  const c = 'cat > hello.c <<\'EOF\'\n#include <stdio.h>\nint main(void) { printf("c says %d\\n", 6 * 7); return 0; }\nEOF\n';
  const cc = 'cat > hello.cc <<\'EOF\'\n#include <iostream>\nint main() { std::cout << "c++ says " << 6 * 7 << std::endl; }\nEOF\n';
  const r = await sh(conn, `${c}${cc}gcc -O2 -o hello hello.c && ./hello && g++ -o hellocc hello.cc && ./hellocc`, 120_000);
  assert.deepEqual([r.stdout, r.exitCode], ['c says 42\nc++ says 42\n', 0], r.stderr);
});

test("what is root's stays out of reach: /etc/shadow, /usr/bin; /usr/local and the home are the user's", async (t) => {
  const conn = await sandbox(t);
  const shadow = await sh(conn, 'cat /etc/shadow');
  assert.notEqual(shadow.exitCode, 0);
  assert.match(shadow.stderr, /Permission denied/);
  const bin = await sh(conn, 'touch /usr/bin/x');
  assert.notEqual(bin.exitCode, 0);
  assert.match(bin.stderr, /Permission denied/);
  const pkgs = await sh(conn, 'touch /usr/lib/python3/dist-packages/x');
  assert.match(pkgs.stderr, /Permission denied/);
  // Positive control: the same writes where the user may make them succeed.
  const ok = await sh(conn, 'touch /usr/local/bin/x ~/x && echo written');
  assert.deepEqual([ok.stdout, ok.exitCode], ['written\n', 0], ok.stderr);
});
