// Benchmark of interactive terminals. Prints numbers; asserts nothing but that each echo
// arrived.
//
//   node bench/pty.mjs [--samples N] [--opens N] [--docker]
//
// Starts `$SANDSTREAM_BIN up` (as the tests do) and creates a sandbox, then measures:
// 1. open to prompt: `sandbox.pty.create()` of bash until its prompt arrives (--opens,
//    default 30);
// 2. keystroke echo: in that bash (readline echoes each key), the time from
//    `sendInput()` of one key to the first output byte it caused, alternating `x` and
//    Backspace so the line stays short (--samples, default 1000);
// 3. the same keystroke echo through the server's REST terminal routes (POST input, the
//    echo read from the SSE output stream), as the playground's Terminal tab does;
// 4. SSH connect to prompt: `ssh -tt … user@HOST` of bash (with a fresh ed25519 key, given
//    as `sshKeys` to a second sandbox made over REST) on a local pseudo-terminal (Python's
//    pty module drives it as a user's terminal would), from spawn until bash's prompt
//    arrives (--opens, default 30); the same with a password from `POST …/ssh-access`
//    through sshpass;
// 5. with --docker, open to prompt and keystroke echo through `docker exec -it C bash` on a
//    local pseudo-terminal (driven as in 4), in a running container of the template
//    (--docker-image IMAGE, default the newest `sandstream-template:*` image).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sandbox } from '@sandstream/sdk';
import { startServer } from '../test/helpers/server.mjs';
import { args, load, opt, pct } from './common.mjs';

const samples = Number(opt('samples', 1000));
const opens = Number(opt('opens', 30));
const BASH = "PS1='$ ' exec bash --norc --noprofile -i";

const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
const latency = (label, v) => {
  v.sort((a, b) => a - b);
  console.log(`${label} (${v.length} samples): p50 ${pct(v, 50).toFixed(2)} ms, p99 ${pct(v, 99).toFixed(2)} ms, max ${v[v.length - 1].toFixed(2)} ms`);
};

/** A terminal's output: `until(text)` waits for text, `next()` for the next bytes. */
function feed() {
  const f = { text: '', waiter: null, pending: null };
  f.onData = (d) => {
    f.text += Buffer.from(d).toString('utf8');
    const p = f.pending;
    f.pending = null;
    p?.();
    const w = f.waiter;
    if (w && f.text.includes(w.want)) {
      f.waiter = null;
      w.resolve();
    }
  };
  f.until = (want) => (f.text.includes(want) ? Promise.resolve() : new Promise((resolve) => (f.waiter = { want, resolve })));
  f.next = () => new Promise((resolve) => (f.pending = resolve));
  return f;
}

// The REST part posts a key per request, far past the default 100 requests a second per
// key (the playground sends a paste as one request): the rate limit is off here.
const server = await startServer({ extraArgs: ['--requests-per-second', '0'] });
const sandbox = await Sandbox.create({ apiKey: server.apiKey, apiUrl: server.apiUrl, requestTimeoutMs: 600_000, timeoutMs: 3_600_000 });
console.log(`pty benchmark: node ${process.version}, ${cpus().length} CPUs, sandbox ${sandbox.id} of a local \`sandstream up\`, load average ${load()}`);

try {
  // 1. Open to prompt (the connection to the agent is open already, as in an app).
  await sandbox.commands.run('true');
  const open = [];
  for (let i = 0; i < opens + 3; i++) {
    const f = feed();
    const t0 = process.hrtime.bigint();
    const term = await sandbox.pty.create({ cols: 80, rows: 24, cmd: BASH, onData: f.onData, timeoutMs: 0 });
    await f.until('$ ');
    if (i >= 3) open.push(ms(t0));
    await term.kill();
    await term.wait().catch(() => {});
  }
  latency('SDK pty.create of bash to its prompt', open);

  // 2. Keystroke echo.
  const f = feed();
  const term = await sandbox.pty.create({ cols: 80, rows: 24, cmd: BASH, onData: f.onData, timeoutMs: 0 });
  await f.until('$ ');
  const echo = [];
  for (let i = 0; i < samples + 50; i++) {
    const key = i % 2 === 0 ? 'x' : '\x7f';
    const arrived = f.next();
    const t0 = process.hrtime.bigint();
    await term.sendInput(key);
    await arrived;
    if (i >= 50) echo.push(ms(t0));
  }
  latency('SDK pty keystroke echo (sendInput to the echoed byte)', echo);
  await term.kill();

  // 3. The same keystroke echo through the server's terminal routes (what the
  // playground uses): one POST per key, the echo read from the SSE output stream.
  await restEcho();

  // 4. SSH connect to prompt (before docker, so a docker failure does not hide it).
  await sshConnect();

  if (args.includes('--docker')) dockerSideBySide();
} finally {
  await sandbox.kill().catch(() => {});
  await server.stop();
}

async function restEcho() {
  const base = `${server.apiUrl}/api/v1/sandboxes/${sandbox.id}/terminals`;
  const headers = { authorization: `Bearer ${server.apiKey}`, 'content-type': 'application/json' };
  const opened = await fetch(base, { method: 'POST', headers, body: JSON.stringify({ cols: 80, rows: 24 }) });
  if (opened.status !== 201) throw new Error(`open a terminal: ${opened.status} ${await opened.text()}`);
  const { id } = await opened.json();
  const out = await fetch(`${base}/${id}/output`, { headers });
  const reader = out.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let text = '';
  let pending = null;
  // Reads SSE events; each `output` event's bytes are appended to `text`.
  const pump = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const event = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (!event.includes('event: output')) continue;
        const data = event.split('\n').find((l) => l.startsWith('data:'));
        text += Buffer.from(JSON.parse(data.slice(5)).data, 'base64').toString('utf8');
        const p = pending;
        pending = null;
        p?.();
      }
    }
  })();
  // Awaited at the end; a stream that breaks earlier shows as a stalled sample, not a crash.
  pump.catch(() => {});
  const next = () => new Promise((resolve) => (pending = resolve));
  const type = async (data) => {
    const r = await fetch(`${base}/${id}/input`, { method: 'POST', headers, body: JSON.stringify({ data }) });
    if (r.status !== 204) throw new Error(`input: ${r.status} ${await r.text()}`);
  };
  while (!text.includes('$ ')) await next();
  const echo = [];
  for (let i = 0; i < samples + 50; i++) {
    const arrived = next();
    const t0 = process.hrtime.bigint();
    await type(i % 2 === 0 ? 'x' : '\x7f');
    await arrived;
    if (i >= 50) echo.push(ms(t0));
  }
  latency('REST terminal keystroke echo (POST input to the echoed byte on the SSE stream)', echo);
  await fetch(`${base}/${id}`, { method: 'DELETE', headers });
  await reader.cancel().catch(() => {});
  await pump.catch(() => {});
}

async function sshConnect() {
  const headers = { authorization: `Bearer ${server.apiKey}`, 'content-type': 'application/json' };
  const api = async (method, path, body, want) => {
    const r = await fetch(`${server.apiUrl}/api/v1${path}`, { method, headers, body: body && JSON.stringify(body) });
    if (r.status !== want) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
    return r.status === 204 ? null : r.json();
  };
  const dir = mkdtempSync(join(tmpdir(), 'sandstream-bench-ssh-'));
  let id;
  try {
    const key = join(dir, 'id_ed25519');
    const kg = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'pty-bench', '-f', key], { encoding: 'utf8' });
    if (kg.status !== 0) throw new Error(`ssh-keygen: ${kg.error ?? kg.stderr.trim()}`);
    const pub = readFileSync(`${key}.pub`, 'utf8').trim();
    ({ id } = await api('POST', '/sandboxes', { timeoutMs: 3_600_000, sshKeys: [pub] }, 201));
    const { ssh } = await api('GET', `/sandboxes/${id}/connection`, undefined, 200);
    if (!ssh) throw new Error(`sandbox ${id} has no ssh endpoint in its connection`);
    const common = ['-tt', '-p', String(ssh.port), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR'];
    const withKey = ['ssh', ...common, '-i', key, '-o', 'IdentitiesOnly=yes', `user@${ssh.host}`, BASH];
    latency(`ssh connect to prompt (key, ${ssh.host}:${ssh.port})`, openToPrompt(withKey));
    // A password credential, typed by sshpass (-e: from $SSHPASS, not the command line).
    const access = await api('POST', `/sandboxes/${id}/ssh-access`, {}, 201);
    const withPassword = ['sshpass', '-e', 'ssh', ...common, '-o', 'PubkeyAuthentication=no', '-o', 'PreferredAuthentications=password,keyboard-interactive', `${access.username}@${access.host}`, BASH];
    latency('ssh connect to prompt (password through sshpass)', openToPrompt(withPassword, { SSHPASS: access.password }));
  } finally {
    if (id) await api('DELETE', `/sandboxes/${id}`, undefined, 204).catch((e) => console.error(`cleanup: ${e.message}`));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Milliseconds from spawning argv on a local pseudo-terminal until '$ ' arrives, --opens times. */
function openToPrompt(argv, env = {}) {
  const r = spawnSync('python3', ['-c', promptDriver(), JSON.stringify(argv), String(opens)], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 30 * 60_000,
  });
  if (r.status !== 0) throw new Error(`the pty driver of ${argv[0]} failed: ${r.error ?? r.stderr}`);
  return JSON.parse(r.stdout);
}

// argv on a pseudo-terminal of this machine, as a user's terminal runs it: three warm-up
// opens, then the time from fork to the prompt of each; `exit` ends each and is awaited.
function promptDriver() {
  return String.raw`
import json, os, pty, sys, time
argv, opens = json.loads(sys.argv[1]), int(sys.argv[2])
def until(fd, want):
    buf = b''
    while want not in buf:
        try:
            b = os.read(fd, 65536)
        except OSError:
            b = b''
        if not b:
            sys.exit('no prompt; the terminal showed: %r' % buf[-2000:])
        buf += b
open_ms = []
for i in range(opens + 3):
    t0 = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    until(fd, b'$ ')
    if i >= 3:
        open_ms.append((time.perf_counter() - t0) * 1000)
    os.write(fd, b'exit\n')
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass
    os.waitpid(pid, 0)
    os.close(fd)
print(json.dumps(open_ms))
`;
}

function dockerSideBySide() {
  const docker = (argv) => {
    const r = spawnSync('docker', argv, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`docker ${argv.join(' ')}: ${r.error ?? r.stderr.trim()}`);
    return r.stdout;
  };
  const image =
    opt('docker-image', undefined) ??
    docker(['images', '--format', '{{.Repository}}:{{.Tag}}', 'sandstream-template']).trim().split('\n').find(Boolean);
  if (!image) throw new Error('--docker: no image; pass --docker-image IMAGE (or run the docker backend once)');
  const container = docker(['run', '-d', '--rm', '--network', 'none', image, 'sleep', 'infinity']).trim();
  try {
    const argv = ['docker', 'exec', '-it', '-e', 'PS1=$ ', container, 'bash', '--norc', '--noprofile', '-i'];
    latency(`docker exec -it C bash to its prompt (${image})`, openToPrompt(argv));
    const r = spawnSync('python3', ['-c', echoDriver(), JSON.stringify(argv), String(samples)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`the docker exec -it driver failed: ${r.stderr}`);
    const echo = JSON.parse(r.stdout);
    latency('docker exec -it keystroke echo (write to the echoed byte)', echo);
  } finally {
    docker(['rm', '-f', container]);
  }
}

// Keystroke echo of argv (`docker exec -it`) on a pseudo-terminal of this machine, as a
// user's terminal runs it.
function echoDriver() {
  return String.raw`
import json, os, pty, sys, time
argv, samples = json.loads(sys.argv[1]), int(sys.argv[2])
def until(fd, want):
    buf = b''
    while want not in buf:
        buf += os.read(fd, 65536)
def stop(pid, fd):
    os.write(fd, b'exit\n')
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass
    os.waitpid(pid, 0)
    os.close(fd)
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
until(fd, b'$ ')
echo = []
for i in range(samples + 50):
    key = b'x' if i % 2 == 0 else b'\x7f'
    t0 = time.perf_counter()
    os.write(fd, key)
    os.read(fd, 65536)
    if i >= 50:
        echo.append((time.perf_counter() - t0) * 1000)
stop(pid, fd)
print(json.dumps(echo))
`;
}
