// sandbox.files in a real sandbox of a real server (`$SANDSTREAM_BIN up`, default
// <repo>/target/debug/sandstream): the sandbox's default user `user`, root inside it, and
// its own filesystem. Fails, never skips, when the binary is missing.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Sandbox, FileNotFoundError, FileType, FilesystemEventType, PermissionError } from '@sandstream/sdk';
import { startServer } from '../helpers/server.mjs';

const MiB = 1024 * 1024;
const sha = (b) => createHash('sha256').update(b).digest('hex');
let server;
let sandbox;

after(async () => {
  await sandbox?.kill().catch(() => {});
  await server?.stop();
});

function need() {
  if (!sandbox) throw new Error('no sandbox: see the failure of "starts sandstream up and a sandbox"');
}

describe('sandbox.files', () => {
  it('starts sandstream up and a sandbox', { timeout: 11 * 60_000 }, async () => {
    server = await startServer();
    sandbox = await Sandbox.create({ apiKey: server.apiKey, apiUrl: server.apiUrl, requestTimeoutMs: 10 * 60_000, timeoutMs: 600_000 });
  });

  it('round-trips text and bytes; a relative path is in the home of the user', async () => {
    need();
    const info = await sandbox.files.write('notes/hello.txt', 'hello from the SDK\n');
    assert.equal(info.path, '/home/user/notes/hello.txt');
    assert.equal(await sandbox.files.read('/home/user/notes/hello.txt'), 'hello from the SDK\n');
    assert.equal((await sandbox.commands.run('cat notes/hello.txt')).stdout, 'hello from the SDK\n');
    const bytes = randomBytes(5 * MiB + 1);
    await sandbox.files.write('/tmp/r.bin', bytes);
    assert.equal(sha(await sandbox.files.read('/tmp/r.bin', { format: 'bytes' })), sha(bytes));
    assert.equal((await sandbox.commands.run('sha256sum /tmp/r.bin')).stdout.split(' ')[0], sha(bytes));
  });

  it('round-trips a 1 GiB stream byte-exact, as the sandbox sees it too', { timeout: 10 * 60_000 }, async () => {
    need();
    // Different bytes in each MiB (a random MiB with the MiB's number in front), made as
    // they are sent and hashed on the way.
    const size = 1024 * MiB;
    const seed = randomBytes(MiB);
    const sent = createHash('sha256');
    let made = 0;
    const source = new ReadableStream({
      pull(c) {
        if (made >= size) return c.close();
        const chunk = Buffer.from(seed);
        chunk.writeUInt32BE(made / MiB, 0);
        sent.update(chunk);
        made += MiB;
        c.enqueue(new Uint8Array(chunk));
      },
    });
    assert.equal((await sandbox.files.write('big.bin', source)).size, size);
    const want = sent.digest('hex');
    const inside = await sandbox.commands.run('sha256sum big.bin', { timeoutMs: 300_000 });
    assert.equal(inside.stdout, `${want}  big.bin\n`);
    const got = createHash('sha256');
    let n = 0;
    for await (const chunk of await sandbox.files.read('big.bin', { format: 'stream' })) {
      got.update(chunk);
      n += chunk.length;
    }
    assert.equal(n, size);
    assert.equal(got.digest('hex'), want);
    await sandbox.files.remove('big.bin');
  });

  it("writes as the user it names (stat -c %U): 'user' by default, root with user: 'root'", async () => {
    need();
    await sandbox.files.write('/tmp/mine', 'a');
    await sandbox.files.write('/tmp/roots', 'b', { user: 'root' });
    assert.equal((await sandbox.commands.run('stat -c %U /tmp/mine /tmp/roots')).stdout, 'user\nroot\n');
    await assert.rejects(sandbox.files.write('/etc/not-yours', 'x'), PermissionError);
    assert.equal((await sandbox.files.write('/etc/yours-as-root', 'x', { user: 'root' })).path, '/etc/yours-as-root');
  });

  it('a symlink to a root-only file: PermissionError for user, the contents for root', async () => {
    need();
    await sandbox.commands.run('echo secret > /root-only && chmod 600 /root-only && ln -sf /root-only /tmp/link', { user: 'root' });
    await assert.rejects(sandbox.files.read('/tmp/link'), PermissionError);
    assert.equal(await sandbox.files.read('/tmp/link', { user: 'root' }), 'secret\n');
  });

  it('list, exists, getInfo, makeDir, rename, remove', async () => {
    need();
    assert.equal(await sandbox.files.makeDir('/home/user/d/e'), true);
    assert.equal(await sandbox.files.makeDir('/home/user/d/e'), false);
    await sandbox.files.write('/home/user/d/e/f', '123');
    const listed = await sandbox.files.list('/home/user/d', { depth: 2 });
    assert.deepEqual(listed.map((e) => [e.path, e.type, e.owner]), [
      ['/home/user/d/e', FileType.DIR, 'user'],
      ['/home/user/d/e/f', FileType.FILE, 'user'],
    ]);
    assert.equal((await sandbox.files.getInfo('/home/user/d/e/f')).size, 3);
    await sandbox.files.rename('/home/user/d/e/f', '/home/user/d/g');
    assert.equal(await sandbox.files.exists('/home/user/d/e/f'), false);
    await sandbox.files.remove('/home/user/d');
    assert.equal(await sandbox.files.exists('/home/user/d'), false);
    await assert.rejects(sandbox.files.read('/home/user/d/g'), FileNotFoundError);
  });

  it('watchDir sees create, write, rename and remove made by a command, in order', async () => {
    need();
    await sandbox.files.makeDir('/home/user/w');
    const events = [];
    const handle = await sandbox.files.watchDir('/home/user/w', (e) => events.push(e));
    await sandbox.commands.run('cd /home/user/w && echo 1 > f && echo 2 >> f && mv f g && rm g');
    for (let i = 0; i < 200 && !events.some((e) => e.type === 'remove'); i++) await new Promise((r) => setTimeout(r, 50));
    // One WRITE per write session (`>`, then `>>`), but the kernel merges an event with an
    // identical one still unread before it: consecutive repeats count once.
    const seen = events.filter((e, i) => i === 0 || e.name !== events[i - 1].name || e.type !== events[i - 1].type);
    assert.deepEqual(seen, [
      { name: 'f', type: FilesystemEventType.CREATE },
      { name: 'f', type: FilesystemEventType.WRITE },
      { name: 'f', type: FilesystemEventType.RENAME },
      { name: 'g', type: FilesystemEventType.CREATE },
      { name: 'g', type: FilesystemEventType.REMOVE },
    ]);
    await handle.stop();
  });
});
