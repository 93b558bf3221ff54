// sandbox.files against a real sandstream-agent spawned on this machine. The agent runs
// its default user as nobody (--run-as 65534:65534), as a sandbox runs `user`, so that the
// `user` option and the kernel's permission checks are real. Needs root (to switch users).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  AgentClient,
  FileNotFoundError,
  FileType,
  FilesystemEventType,
  InvalidArgumentError,
  PermissionError,
} from '@sandstream/sdk';
import { startAgent } from '../helpers/agent.mjs';
import { startProxy } from '../helpers/proxy.mjs';

const MiB = 1024 * 1024;
// The large round trip: 1 GiB unless SANDSTREAM_FILES_LARGE_MIB says otherwise.
const LARGE_MIB = Number(process.env.SANDSTREAM_FILES_LARGE_MIB ?? 1024);
const NOBODY = 65534;
let agent;
let client;
let dir; // world-writable, for the default user (nobody)

before(async () => {
  if (process.getuid?.() !== 0) throw new Error('the files tests against a real agent need root (they switch users); run them as root');
  agent = await startAgent({ args: ['--run-as', `${NOBODY}:${NOBODY}`] });
  chmodSync(agent.dir, 0o755);
  dir = join(agent.dir, 'files');
  mkdirSync(dir, { mode: 0o777 });
  chmodSync(dir, 0o777);
  client = new AgentClient(agent.info);
});

after(async () => {
  client?.close();
  await agent?.stop();
});

const sha = (b) => createHash('sha256').update(b).digest('hex');
const sh = async (cmd, opts = {}) => (await client.commands.run(cmd, { user: 'root', ...opts })).stdout;

describe('files against a real agent', () => {
  it('round-trips text and random binary bytes', async () => {
    const text = 'héllo wörld\n€ and 🎉\n';
    const t = await client.files.write(`${dir}/hello.txt`, text);
    assert.equal(t.path, `${dir}/hello.txt`);
    assert.equal(t.name, 'hello.txt');
    assert.equal(t.type, FileType.FILE);
    assert.equal(t.size, Buffer.byteLength(text));
    assert.equal(await client.files.read(`${dir}/hello.txt`), text);
    assert.equal(await sh(`cat ${dir}/hello.txt`), text);

    const bytes = randomBytes(3 * MiB + 17);
    await client.files.write(`${dir}/random.bin`, bytes);
    const back = await client.files.read(`${dir}/random.bin`, { format: 'bytes' });
    assert.ok(back instanceof Uint8Array);
    assert.equal(sha(back), sha(bytes));
    assert.equal((await sh(`sha256sum ${dir}/random.bin`)).split(' ')[0], sha(bytes));
    const blob = await client.files.read(`${dir}/random.bin`, { format: 'blob' });
    assert.equal(sha(Buffer.from(await blob.arrayBuffer())), sha(bytes));

    // An empty file, and parents created on the way.
    const e = await client.files.write(`${dir}/new/sub/empty`, new Uint8Array(0));
    assert.equal(e.size, 0);
    assert.equal(await client.files.read(`${dir}/new/sub/empty`), '');
    // Replacing a file.
    await client.files.write(`${dir}/hello.txt`, 'short');
    assert.equal(await client.files.read(`${dir}/hello.txt`), 'short');
  });

  it(`round-trips a ${LARGE_MIB} MiB stream byte-exact with this process's memory far under the file size`, { timeout: 10 * 60_000 }, async () => {
    const size = LARGE_MIB * MiB;
    const piece = 64 * 1024;
    // Deterministic pseudo-random data, made as it is sent and hashed on the way.
    const seed = randomBytes(32);
    const sent = createHash('sha256');
    let made = 0;
    const source = new ReadableStream({
      pull(c) {
        if (made >= size) return c.close();
        const block = createHash('sha512').update(seed).update(String(made)).digest();
        const chunk = Buffer.alloc(piece);
        for (let i = 0; i < piece; i += block.length) block.copy(chunk, i);
        sent.update(chunk);
        made += piece;
        c.enqueue(new Uint8Array(chunk));
      },
    });
    global.gc?.();
    const base = process.memoryUsage();
    let peakRss = base.rss;
    let peakAb = base.arrayBuffers;
    const sample = setInterval(() => {
      const m = process.memoryUsage();
      peakRss = Math.max(peakRss, m.rss);
      peakAb = Math.max(peakAb, m.arrayBuffers);
    }, 20);
    try {
      const info = await client.files.write(`${dir}/big.bin`, source);
      assert.equal(info.size, size);
      const stream = await client.files.read(`${dir}/big.bin`, { format: 'stream' });
      const got = createHash('sha256');
      let n = 0;
      for await (const chunk of stream) {
        got.update(chunk);
        n += chunk.length;
      }
      assert.equal(n, size);
      assert.equal(got.digest('hex'), sent.digest('hex'));
    } finally {
      clearInterval(sample);
    }
    const grewRss = (peakRss - base.rss) / MiB;
    const grewAb = (peakAb - base.arrayBuffers) / MiB;
    console.log(`# ${LARGE_MIB} MiB round trip: rss grew by at most ${grewRss.toFixed(1)} MiB, arrayBuffers by at most ${grewAb.toFixed(1)} MiB`);
    assert.ok(grewAb < 96, `arrayBuffers grew by ${grewAb.toFixed(1)} MiB`);
    assert.ok(grewRss < 160, `rss grew by ${grewRss.toFixed(1)} MiB`);
    await client.commands.run(`rm ${dir}/big.bin`, { user: 'root' });
  });

  it('resumes a streamed read after the connection is cut, byte-exact', { timeout: 120_000 }, async () => {
    // Larger than what can be in flight (16 MiB HTTP/2 window, 16 messages buffered) when the cut comes.
    const bytes = randomBytes(96 * MiB);
    await client.files.write(`${dir}/resume.bin`, bytes);
    const proxy1 = await startProxy({ targetHost: agent.host, targetPort: agent.port });
    let proxy2;
    const via = new AgentClient({ ...agent.info, port: proxy1.port });
    try {
      const stream = await via.files.read(`${dir}/resume.bin`, { format: 'stream' });
      const got = [];
      let n = 0;
      for await (const chunk of stream) {
        got.push(Buffer.from(chunk));
        n += chunk.length;
        if (!proxy2 && n >= 8 * MiB) {
          await proxy1.kill();
          proxy2 = await startProxy({ port: proxy1.port, targetHost: agent.host, targetPort: agent.port });
        }
      }
      assert.ok(proxy2 && proxy2.connections >= 1, 'the read went on through a second connection');
      assert.equal(n, bytes.length);
      assert.equal(sha(Buffer.concat(got)), sha(bytes));
    } finally {
      via.close();
      await proxy1.kill();
      await proxy2?.kill();
    }
  });

  it('lists to a depth, with entries as ls shows them', async () => {
    const d = `${dir}/tree`;
    await sh(`mkdir -p ${d}/a/b && printf 12345 > ${d}/a/f && touch ${d}/top && ln -s top ${d}/link && chmod 640 ${d}/top && chown -R ${NOBODY}:${NOBODY} ${d}`);
    const one = await client.files.list(d);
    assert.deepEqual(one.map((e) => [e.name, e.type]), [['a', 'dir'], ['link', 'symlink'], ['top', 'file']]);
    const top = one.find((e) => e.name === 'top');
    assert.equal(top.path, `${d}/top`);
    assert.equal(top.mode, 0o640);
    assert.equal(top.permissions, '-rw-r-----');
    assert.equal(top.owner, 'nobody');
    assert.ok(top.modifiedTime instanceof Date && Math.abs(top.modifiedTime.getTime() - Date.now()) < 3_600_000);
    const link = one.find((e) => e.name === 'link');
    assert.equal(link.symlinkTarget, 'top');
    const two = await client.files.list(d, { depth: 2 });
    assert.deepEqual(two.map((e) => e.path.slice(d.length + 1)), ['a', 'a/b', 'a/f', 'link', 'top']);
    assert.equal(two.find((e) => e.name === 'f').size, 5);
    await assert.rejects(client.files.list(`${d}/nope`), FileNotFoundError);
    await assert.rejects(client.files.list(`${d}/top`), (e) => e instanceof InvalidArgumentError && e.code === 'FAILED_PRECONDITION');
  });

  it('exists, getInfo, makeDir, rename and remove', async () => {
    const d = `${dir}/ops`;
    assert.equal(await client.files.exists(d), false);
    assert.equal(await client.files.makeDir(`${d}/x/y`), true);
    assert.equal(await client.files.makeDir(`${d}/x/y`), false);
    assert.equal(await client.files.exists(`${d}/x/y`), true);
    const info = await client.files.getInfo(`${d}/x`);
    assert.equal(info.type, FileType.DIR);
    assert.equal(info.permissions, 'drwxr-xr-x');
    await client.files.write(`${d}/x/f.txt`, 'data');
    const moved = await client.files.rename(`${d}/x/f.txt`, `${d}/z/g.txt`);
    assert.equal(moved.path, `${d}/z/g.txt`);
    assert.equal(await client.files.exists(`${d}/x/f.txt`), false);
    assert.equal(await client.files.read(`${d}/z/g.txt`), 'data');
    await assert.rejects(client.files.remove(`${d}/x`, { recursive: false }), (e) => e instanceof InvalidArgumentError && e.code === 'FAILED_PRECONDITION');
    await client.files.remove(`${d}/x`);
    assert.equal(await client.files.exists(`${d}/x`), false);
    await client.files.remove(`${d}/z/g.txt`);
    await assert.rejects(client.files.remove(`${d}/z/g.txt`), FileNotFoundError);
    await assert.rejects(client.files.getInfo(`${d}/nope`), (e) => {
      assert.ok(e instanceof FileNotFoundError);
      assert.match(e.message, new RegExp(`^files\\.getInfo: ${d}/nope: `));
      return true;
    });
  });

  it('reads a symlink to a root-only file: PermissionError as the default user, the contents as root', async () => {
    const secret = join(agent.dir, 'secret.txt');
    writeFileSync(secret, 'for root only\n', { mode: 0o600 });
    chownSync(secret, 0, 0);
    symlinkSync(secret, `${dir}/to-secret`);
    await assert.rejects(client.files.read(`${dir}/to-secret`), (e) => {
      assert.ok(e instanceof PermissionError, `${e}`);
      assert.equal(e.code, 'PERMISSION_DENIED');
      return true;
    });
    await assert.rejects(client.files.read(`${dir}/to-secret`, { format: 'stream' }), PermissionError);
    assert.equal(await client.files.read(`${dir}/to-secret`, { user: 'root' }), 'for root only\n');
    // The link itself is described, not followed.
    const link = await client.files.getInfo(`${dir}/to-secret`);
    assert.deepEqual([link.type, link.symlinkTarget], [FileType.SYMLINK, secret]);
  });

  it('writes as the user it names: root-owned with user root, the default user otherwise', async () => {
    await client.files.write(`${dir}/by-root.txt`, 'r', { user: 'root', mode: 0o600 });
    await client.files.write(`${dir}/by-default.txt`, 'd');
    assert.equal(await sh(`stat -c '%U %a' ${dir}/by-root.txt ${dir}/by-default.txt`), 'root 600\nnobody 644\n');
    await assert.rejects(client.files.write(`${agent.dir}/not-mine.txt`, 'x'), PermissionError);
    assert.equal(await client.files.exists(`${agent.dir}/not-mine.txt`, { user: 'root' }), false);
  });

  it('watchDir sees a command\'s create, write, rename and remove in order; stop() ends it', async () => {
    const d = `${dir}/watched`;
    await client.files.makeDir(d);
    const events = [];
    let exited;
    const exit = new Promise((r) => (exited = r));
    const handle = await client.files.watchDir(d, (e) => events.push(e), { onExit: (err) => exited(err ?? 'stopped') });
    await client.commands.run(`cd ${d} && echo one > f && echo two >> f && mv f g && rm g`);
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
    assert.equal(await exit, 'stopped');
    const before = events.length;
    await client.commands.run(`touch ${d}/after-stop`);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(events.length, before);
  });

  it('watchDir of a missing directory rejects with FileNotFoundError; removing the watched one ends the watch', async () => {
    await assert.rejects(client.files.watchDir(`${dir}/no-such-dir`, () => {}), FileNotFoundError);
    await client.files.makeDir(`${dir}/goes-away`);
    let onExit;
    const exit = new Promise((resolve) => (onExit = resolve));
    await client.files.watchDir(`${dir}/goes-away`, () => {}, { onExit });
    await client.files.remove(`${dir}/goes-away`);
    const err = await exit;
    assert.equal(err?.code, 'watch_ended', `${err}`);
    assert.match(err.message, /goes-away ended: the directory was removed or moved/);
  });
});
