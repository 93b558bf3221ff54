// SSH on port 2222 against the real stack (issue 23), with Debian's stock OpenSSH
// clients: passwords from `POST …/ssh-access` (sshpass types them), public keys given at
// create, `ssh` with remote commands and their exit codes, `ssh -tt`, a 100 MB `scp`
// round trip, `sftp` both ways, `sandstream ssh`; wrong, expired, revoked and other
// sandboxes' credentials refused (and logged by the agent); SSH off; bad input; and
// local port forwarding, which reaches the sandbox's own services and nothing of the
// host or of other sandboxes. One test repeats the essentials on the Docker backend.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileServer, api, assertError, createTenant, agentExecute, until, sleep, BIN } from '../lib/harness.mjs';

const server = await fileServer(after);
const { key } = await createTenant(server, 'ssh');
const other = await createTenant(server, 'ssh-other');
const work = mkdtempSync(path.join(os.tmpdir(), 'sandstream-ssh-'));
after(() => rmSync(work, { recursive: true, force: true }));

// Every sandbox has a new host key: nothing to pin, and nothing written to ~/.ssh.
const OPTS = ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'ConnectTimeout=10'];
const PASSWORD_ONLY = ['-o', 'PreferredAuthentications=password', '-o', 'PubkeyAuthentication=no', '-o', 'NumberOfPasswordPrompts=1'];

/** Runs `cmd args` to its end: {code, stdout, stderr} (text; `raw`: stdout a Buffer). */
function run(cmd, args, { env = {}, input, raw, timeoutMs = 120_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const out = [];
    const err = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    child.stdin.on('error', () => {});
    child.stdin.end(input);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')}: no end within ${timeoutMs} ms; stderr ${Buffer.concat(err)}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out);
      resolve({ code, stdout: raw ? stdout : stdout.toString(), stderr: Buffer.concat(err).toString() });
    });
  });
}

/** `ssh` (or `scp`/`sftp` with `tool`) to `access` ({host, port, username, password}) with a password. */
function withPassword(access, args, { tool = 'ssh', password = access.password, ...opts } = {}) {
  const port = tool === 'ssh' ? ['-p', String(access.port)] : ['-P', String(access.port)];
  return run('sshpass', ['-e', tool, ...OPTS, ...PASSWORD_ONLY, ...port, ...args], { ...opts, env: { SSHPASS: password } });
}

/** `ssh` with the private key file `identity` only. */
function withKey(ssh, identity, args, opts) {
  const keyOnly = ['-o', 'IdentitiesOnly=yes', '-o', 'PasswordAuthentication=no', '-o', 'KbdInteractiveAuthentication=no', '-o', 'BatchMode=yes'];
  return run('ssh', [...OPTS, ...keyOnly, '-i', identity, '-p', String(ssh.port), ...args], opts);
}

/** A sandbox of `k` made over REST with `body`, killed after the test; returns {id, conn}. */
async function sandbox(t, body = {}, k = key) {
  const c = await api(server, 'POST', '/api/v1/sandboxes', { key: k, body: { timeoutMs: 600_000, ...body } });
  assert.equal(c.status, 201, c.text);
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${c.body.id}`, { key: k }));
  const conn = await api(server, 'GET', `/api/v1/sandboxes/${c.body.id}/connection`, { key: k });
  assert.equal(conn.status, 200, conn.text);
  return { id: c.body.id, conn: conn.body };
}

async function access(id, body, k = key) {
  const a = await api(server, 'POST', `/api/v1/sandboxes/${id}/ssh-access`, { key: k, body });
  assert.equal(a.status, 201, a.text);
  return a.body;
}

/** A new ed25519 key pair in `work`: {identity (the private key's file), publicKey (its line)}. */
async function keyPair(name) {
  const identity = path.join(work, name);
  const made = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${name}@test`, '-f', identity]);
  assert.equal(made.code, 0, made.stderr);
  return { identity, publicKey: readFileSync(`${identity}.pub`, 'utf8').trim() };
}

/** The lines of sandbox `id`'s agent log (in the runtime's state under the data dir). */
function agentLog(id) {
  const find = (dir, depth) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory() && e.name === id && statSync(path.join(p, 'agent.log'), { throwIfNoEntry: false })) return path.join(p, 'agent.log');
      if (e.isDirectory() && depth > 0) {
        const found = find(p, depth - 1);
        if (found) return found;
      }
    }
    return null;
  };
  const file = find(server.dataDir, 4);
  assert.ok(file, `no agent.log of ${id} under ${server.dataDir}`);
  return readFileSync(file, 'utf8');
}

const REFUSED = /Permission denied/;

test('a password from ssh-access runs commands as user with their exit codes, on a terminal with -tt, and as root when asked', async (t) => {
  const { id, conn } = await sandbox(t);
  assert.deepEqual(Object.keys(conn.ssh).sort(), ['host', 'port']);
  assert.equal(conn.ssh.host, conn.host);
  assert.notEqual(conn.ssh.port, conn.port);

  const a = await access(id);
  assert.equal(a.username, 'user');
  assert.equal(a.host, conn.ssh.host);
  assert.equal(a.port, conn.ssh.port);
  assert.equal(a.command, `ssh -p ${a.port} user@${a.host}`);
  assert.match(a.password, /^[0-9a-f]{32}$/);
  // Default lifetime one hour, here capped by the sandbox's 10 minutes.
  const sb = (await api(server, 'GET', `/api/v1/sandboxes/${id}`, { key })).body;
  assert.equal(a.expiresAt, sb.expiresAt);
  const hour = await api(server, 'POST', '/api/v1/sandboxes', { key, body: { timeoutMs: 7_200_000 } });
  t.after(() => api(server, 'DELETE', `/api/v1/sandboxes/${hour.body.id}`, { key }));
  const long = await access(hour.body.id);
  const lifetime = Date.parse(long.expiresAt) - Date.now();
  assert.ok(lifetime > 3_500_000 && lifetime <= 3_600_000, `default lifetime ${lifetime} ms`);

  const r = await withPassword(a, [`user@${a.host}`, 'id -un; echo "err" >&2; exit 3']);
  assert.equal(r.stdout, 'user\n');
  assert.equal(r.stderr, 'err\n', 'stderr apart, as SSH extended data');
  assert.equal(r.code, 3);

  const tty = await withPassword(a, ['-tt', `user@${a.host}`, 'tty; echo "cols=$(tput cols 2>/dev/null || stty size)"']);
  assert.equal(tty.code, 0, tty.stderr);
  assert.match(tty.stdout, /^\/dev\/pts\/\d+\r\n/);
  const notty = await withPassword(a, [`user@${a.host}`, 'tty']);
  assert.equal(notty.stdout, 'not a tty\n', 'no terminal unless asked for');

  // An interactive login shell fed from stdin: it runs what it reads and exits with it.
  const shell = await withPassword(a, ['-tt', `user@${a.host}`], { input: 'echo $((6*7)); exit 7\n' });
  assert.equal(shell.code, 7, shell.stderr);
  assert.match(shell.stdout, /\r42\r\n/);

  const root = await access(id, { user: 'root' });
  assert.equal(root.username, 'root');
  const asRoot = await withPassword(root, [`root@${root.host}`, 'id -u; cat /.sandstream/token | wc -c']);
  assert.equal(asRoot.code, 0, asRoot.stderr);
  assert.equal(asRoot.stdout.split('\n')[0], '0');
  // user's password is not root's.
  const mixed = await withPassword(a, [`root@${a.host}`, 'true']);
  assert.equal(mixed.code, 255);
  assert.match(mixed.stderr, REFUSED);
});

test('scp moves 100 MB both ways byte-exact, and sftp puts and gets', async (t) => {
  const { id } = await sandbox(t, { diskMb: 1024 });
  const a = await access(id);
  const up = path.join(work, 'big.bin');
  const data = randomBytes(100_000_000);
  writeFileSync(up, data);
  const sha = createHash('sha256').update(data).digest('hex');
  const put = await withPassword(a, [up, `user@${a.host}:/home/user/big.bin`], { tool: 'scp' });
  assert.equal(put.code, 0, put.stderr);
  // What arrived, as the sandbox sees it.
  const inside = await withPassword(a, [`user@${a.host}`, 'sha256sum /home/user/big.bin; stat -c %U /home/user/big.bin']);
  assert.equal(inside.stdout, `${sha}  /home/user/big.bin\nuser\n`);
  const down = path.join(work, 'big.back');
  const get = await withPassword(a, [`user@${a.host}:/home/user/big.bin`, down], { tool: 'scp' });
  assert.equal(get.code, 0, get.stderr);
  assert.equal(createHash('sha256').update(readFileSync(down)).digest('hex'), sha);
  rmSync(up);
  rmSync(down);

  const small = path.join(work, 'hello.txt');
  writeFileSync(small, 'hello over sftp\n');
  const made = await withPassword(a, [`user@${a.host}`, 'echo made inside > /tmp/inside.txt']);
  assert.equal(made.code, 0, made.stderr);
  // Commands on stdin (`-b` would forbid the password prompt).
  const commands = `put ${small} /tmp/hello.txt\nget /tmp/inside.txt ${path.join(work, 'inside.txt')}\nls -1 /tmp\n`;
  const sftp = await withPassword(a, [`user@${a.host}`], { tool: 'sftp', input: commands });
  assert.equal(sftp.code, 0, sftp.stderr);
  assert.match(sftp.stdout, /\/tmp\/hello\.txt/);
  assert.equal(readFileSync(path.join(work, 'inside.txt'), 'utf8'), 'made inside\n');
  const cat = await withPassword(a, [`user@${a.host}`, 'cat /tmp/hello.txt']);
  assert.equal(cat.stdout, 'hello over sftp\n');
});

test('a public key given at create logs in as user for the sandbox\'s life, and survives a revoke of the passwords', async (t) => {
  const mine = await keyPair('mine');
  const stranger = await keyPair('stranger');
  const { id, conn } = await sandbox(t, { sshKeys: [mine.publicKey] });
  const r = await withKey(conn.ssh, mine.identity, [`user@${conn.ssh.host}`, 'id -un; exit 5']);
  assert.equal(r.stdout, 'user\n', r.stderr);
  assert.equal(r.code, 5);
  // Another key, and the right key for root: refused.
  const wrongKey = await withKey(conn.ssh, stranger.identity, [`user@${conn.ssh.host}`, 'true']);
  assert.equal(wrongKey.code, 255);
  assert.match(wrongKey.stderr, REFUSED);
  const asRoot = await withKey(conn.ssh, mine.identity, [`root@${conn.ssh.host}`, 'true']);
  assert.equal(asRoot.code, 255);

  const a = await access(id);
  assert.equal((await withPassword(a, [`user@${a.host}`, 'echo pw'])).stdout, 'pw\n');
  const revoked = await api(server, 'DELETE', `/api/v1/sandboxes/${id}/ssh-access`, { key });
  assert.equal(revoked.status, 204, revoked.text);
  const after = await withPassword(a, [`user@${a.host}`, 'echo pw']);
  assert.equal(after.code, 255, 'a revoked password is refused at once');
  assert.match(after.stderr, REFUSED);
  const still = await withKey(conn.ssh, mine.identity, [`user@${conn.ssh.host}`, 'echo key']);
  assert.equal(still.stdout, 'key\n', still.stderr);
  // A new password works again after the revoke.
  const b = await access(id);
  assert.equal((await withPassword(b, [`user@${b.host}`, 'echo again'])).stdout, 'again\n');
});

test('a wrong password, an expired one and another sandbox\'s are refused, and the agent logs each refusal', async (t) => {
  const [one, two] = [await sandbox(t), await sandbox(t)];
  const a = await access(one.id);
  const b = await access(two.id);
  const wrong = await withPassword(a, [`user@${a.host}`, 'true'], { password: 'x'.repeat(32) });
  assert.equal(wrong.code, 255);
  assert.match(wrong.stderr, REFUSED);
  // Sandbox two's password, at sandbox one's port: refused there; it works at its own.
  const foreign = await withPassword({ ...b, port: a.port }, [`user@${a.host}`, 'true']);
  assert.equal(foreign.code, 255);
  assert.match(foreign.stderr, REFUSED);
  assert.equal((await withPassword(b, [`user@${b.host}`, 'echo two'])).stdout, 'two\n');

  const short = await access(one.id, { timeoutMs: 1000 });
  const left = Date.parse(short.expiresAt) - Date.now();
  assert.ok(left <= 1000, `expires in ${left} ms`);
  await sleep(Math.max(0, left) + 200);
  const expired = await withPassword(short, [`user@${short.host}`, 'true']);
  assert.equal(expired.code, 255, 'an expired password is refused');
  assert.match(expired.stderr, REFUSED);
  // Positive control: the first password still works.
  assert.equal((await withPassword(a, [`user@${a.host}`, 'echo ok'])).stdout, 'ok\n');

  await until(() => (agentLog(one.id).match(/ssh login refused/g) ?? []).length >= 3, { what: 'three refusals in the agent log' });
  assert.match(agentLog(one.id), /ssh login refused.*user="user".*how="password"/);
});

test('sandstream ssh logs in with a fresh password: a command\'s output and exit code, and --help', async (t) => {
  const { id } = await sandbox(t);
  const env = { SANDSTREAM_API_URL: server.url, SANDSTREAM_API_KEY: key };
  const r = await run(BIN, ['ssh', id, '--', 'id -un; echo oops >&2; exit 3'], { env });
  assert.equal(r.stdout, 'user\n');
  assert.equal(r.stderr, 'oops\n');
  assert.equal(r.code, 3);
  const root = await run(BIN, ['ssh', '--user', 'root', id, '--', 'id -u'], { env });
  assert.equal(root.stdout, '0\n', root.stderr);
  const foreign = await run(BIN, ['ssh', id, '--', 'true'], { env: { ...env, SANDSTREAM_API_KEY: other.key } });
  assert.equal(foreign.code, 1);
  assert.match(foreign.stderr, new RegExp(`404 Not Found: sandbox ${id} not found`));
  const help = await run(BIN, ['ssh', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Log in to a sandbox with OpenSSH/);
  assert.match(help.stdout, /--user/);
});

test('SSH off, malformed keys, bad users and lifetimes, and another key\'s sandbox are clear refusals', async (t) => {
  const off = await sandbox(t, { ssh: false });
  assert.equal(off.conn.ssh, null);
  assertError(await api(server, 'POST', `/api/v1/sandboxes/${off.id}/ssh-access`, { key }), 409, 'conflict', /created with ssh off/);
  assertError(await api(server, 'DELETE', `/api/v1/sandboxes/${off.id}/ssh-access`, { key }), 409, 'conflict', /created with ssh off/);

  const before = (await api(server, 'GET', '/api/v1/sandboxes', { key })).body.length;
  const refuse = async (body, pattern) => {
    const r = await api(server, 'POST', '/api/v1/sandboxes', { key, body });
    assertError(r, 400, 'bad_request', pattern);
  };
  await refuse({ ssh: false, sshKeys: [(await keyPair('k-off')).publicKey] }, /sshKeys need SSH/);
  await refuse({ sshKeys: ['ssh-ed25519'] }, /not an OpenSSH public key/);
  await refuse({ sshKeys: ['not a key at all'] }, /not an OpenSSH public key/);
  await refuse({ sshKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGl4\nkey root 0 x'] }, /one line/);
  await refuse({ sshKeys: Array(17).fill('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGl4b2VzdGVzdA') }, /at most 16 keys/);
  assert.equal((await api(server, 'GET', '/api/v1/sandboxes', { key })).body.length, before, 'nothing was created');

  const { id } = await sandbox(t);
  const post = (body, k = key) => api(server, 'POST', `/api/v1/sandboxes/${id}/ssh-access`, { key: k, body });
  assertError(await post({ user: 'admin' }), 400, 'bad_request', /user must be one of/);
  assertError(await post({ timeoutMs: 10 }), 400, 'bad_request', /timeoutMs must be between 1000 and 86400000/);
  assertError(await post({ ttl: 5 }), 400, 'bad_request', /unknown field/);
  assertError(await post({}, other.key), 404, 'not_found', new RegExp(`sandbox ${id} not found`));
  assertError(await api(server, 'DELETE', `/api/v1/sandboxes/${id}/ssh-access`, { key: other.key }), 404, 'not_found');
  assertError(await api(server, 'POST', '/api/v1/sandboxes/sb-0000000000/ssh-access', { key }), 404, 'not_found');
  await api(server, 'DELETE', `/api/v1/sandboxes/${id}`, { key });
  assertError(await post({}), 409, 'conflict', /is killed/);
});

/** A TCP listener on `host` that records whether anything connected. */
async function listener(host) {
  const seen = [];
  const sockets = new Set();
  const srv = net.createServer((s) => {
    seen.push(s.remoteAddress);
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.end('HOST-SECRET\n');
  });
  await new Promise((resolve) => srv.listen(0, host, resolve));
  const close = () => {
    const closed = new Promise((r) => srv.close(r));
    for (const s of sockets) s.destroy();
    return closed;
  };
  return { port: srv.address().port, seen, close };
}

/** Connects to 127.0.0.1:`port`, writes a line, returns what came back before the close. */
function through(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const got = [];
    s.on('connect', () => s.write('probe\n'));
    s.on('data', (d) => got.push(d));
    s.on('error', () => {});
    s.setTimeout(5000, () => s.destroy());
    s.on('close', () => resolve(Buffer.concat(got).toString()));
  });
}

/** A free port on this host's loopback. */
async function freePort() {
  const l = await listener('127.0.0.1');
  await l.close();
  return l.port;
}

test('local forwarding reaches the sandbox\'s own services and nothing of the host or of other sandboxes', async (t) => {
  const { id, conn } = await sandbox(t);
  const neighbour = await sandbox(t);
  const a = await access(id);
  // A service inside the sandbox, on its loopback.
  // In the background, detached: the call returns at once (a call left waiting on a killed
  // sandbox's agent would wait for its whole timeout).
  const service = "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 8000)); s.listen()\nwhile True:\n  c,_=s.accept(); c.sendall(b'INSIDE\\n'); c.close()";
  await agentExecute(conn, `setsid python3 -c "${service}" </dev/null >/dev/null 2>&1 &`);
  await until(async () => (await agentExecute(conn, 'exec 3<>/dev/tcp/127.0.0.1/8000 && cat <&3')).stdout === 'INSIDE\n', { what: 'the service inside' });
  const gateway = (await agentExecute(conn, "awk '$2==\"00000000\"{print $3}' /proc/net/route")).stdout.trim();
  const hostSide = gateway.match(/../g).reverse().map((h) => parseInt(h, 16)).join('.');
  const hostIp = conn.host;
  const listeners = { loopback: await listener('127.0.0.1'), any: await listener('0.0.0.0') };
  t.after(() => Promise.all(Object.values(listeners).map((l) => l.close())));
  const serverPort = Number(new URL(server.url).port);
  const targets = [
    ['the positive control: the service inside', '127.0.0.1', 8000],
    ["the host's loopback listener", '127.0.0.1', listeners.loopback.port],
    ["the host's listener on its own address", hostIp, listeners.any.port],
    ["the host's listener on the sandbox link's host side", hostSide, listeners.any.port],
    ['the server itself', hostIp, serverPort],
    ["another sandbox's agent through its published port", hostIp, neighbour.conn.port],
    ["another sandbox's SSH through its published port", hostIp, neighbour.conn.ssh.port],
  ];
  const forwards = [];
  for (const [, host, port] of targets) forwards.push([await freePort(), host, port]);
  // One ssh holding every forward, with a command that keeps it open until it is killed.
  const args = ['sshpass', '-e', 'ssh', ...OPTS, ...PASSWORD_ONLY, '-p', String(a.port), '-o', 'ExitOnForwardFailure=yes'];
  for (const [local, host, port] of forwards) args.push('-L', `127.0.0.1:${local}:${host}:${port}`);
  args.push(`user@${a.host}`, 'echo up; sleep 600');
  // Its own process group: sshpass and the ssh it starts are killed together (a killed
  // sandbox sends no reset, so an ssh left behind would hold this file's pipes open).
  const ssh = spawn(args[0], args.slice(1), { env: { ...process.env, SSHPASS: a.password }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const stop = () => {
    try {
      process.kill(-ssh.pid, 'SIGKILL');
    } catch {}
  };
  t.after(stop);
  await new Promise((resolve, reject) => {
    ssh.stdout.on('data', (d) => d.toString().includes('up') && resolve());
    ssh.on('close', (code) => reject(new Error(`ssh ended with ${code}`)));
  });
  // Side by side: a dropped connection attempt only ends at the 5 s cut.
  const answers = await Promise.all(forwards.map(([local]) => through(local)));
  assert.equal(answers[0], 'INSIDE\n', 'forwarding works: the positive control');
  for (let i = 1; i < targets.length; i++) {
    assert.ok(!answers[i].includes('HOST-SECRET') && answers[i] === '', `${targets[i][0]} (${targets[i][1]}:${targets[i][2]}) answered: ${JSON.stringify(answers[i])}`);
  }
  assert.deepEqual(listeners.loopback.seen, [], "nothing reached the host's loopback listener");
  assert.deepEqual(listeners.any.seen, [], "nothing reached the host's listener");
  // The host itself reaches its listener (the probe could have succeeded).
  assert.equal(await through(listeners.loopback.port), 'HOST-SECRET\n');
  stop();
});

test('docker: the SSH port is published and a password and a key work', async (t) => {
  const docker = await fileServer((fn) => t.after(fn), { args: ['--backend', 'docker'] });
  const mine = await keyPair('docker');
  const c = await api(docker, 'POST', '/api/v1/sandboxes', { body: { timeoutMs: 300_000, sshKeys: [mine.publicKey] } });
  assert.equal(c.status, 201, c.text);
  const conn = (await api(docker, 'GET', `/api/v1/sandboxes/${c.body.id}/connection`)).body;
  assert.ok(conn.ssh && conn.ssh.port !== conn.port, JSON.stringify(conn));
  const a = (await api(docker, 'POST', `/api/v1/sandboxes/${c.body.id}/ssh-access`)).body;
  const r = await withPassword(a, [`user@${a.host}`, 'id -un; exit 3']);
  assert.equal(r.stdout, 'user\n', r.stderr);
  assert.equal(r.code, 3);
  const k = await withKey(conn.ssh, mine.identity, ['-tt', `user@${conn.ssh.host}`, 'tty']);
  assert.match(k.stdout, /^\/dev\/pts\/\d+\r\n$/, k.stderr);
  const wrong = await withPassword(a, [`user@${a.host}`, 'true'], { password: 'y'.repeat(32) });
  assert.equal(wrong.code, 255);
  assert.match(wrong.stderr, REFUSED);
});
