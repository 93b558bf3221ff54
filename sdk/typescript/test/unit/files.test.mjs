// Unit tests of sandbox.files: the SDK's own logic (chunking, entry conversion, error
// mapping, resuming a read, the watch's event order) against a scripted FileService on
// a local grpc-js server. The real agent is tested in test/agent/files.test.mjs.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import {
  AgentClient,
  ConnectionError,
  FileExistsError,
  FileNotFoundError,
  FileType,
  FilesystemEventType,
  InvalidArgumentError,
  NotEnoughSpaceError,
  NotFoundError,
  PermissionError,
  SandboxError,
  TimeoutError,
} from '@sandstream/sdk';
import { chunksOf, CHUNK_BYTES } from '../../dist/esm/files-write.js';
import { permissions } from '../../dist/esm/files-types.js';

const MiB = 1024 * 1024;
const sha = (b) => createHash('sha256').update(b).digest('hex');

describe('permissions', () => {
  it("prints modes as ls -l does, with setuid, setgid and sticky", () => {
    assert.equal(permissions(FileType.FILE, 0o644), '-rw-r--r--');
    assert.equal(permissions(FileType.DIR, 0o755), 'drwxr-xr-x');
    assert.equal(permissions(FileType.SYMLINK, 0o777), 'lrwxrwxrwx');
    assert.equal(permissions(FileType.DIR, 0o1777), 'drwxrwxrwt');
    assert.equal(permissions(FileType.FILE, 0o4755), '-rwsr-xr-x');
    assert.equal(permissions(FileType.FILE, 0o2644), '-rw-r-Sr--');
    assert.equal(permissions(FileType.DIR, 0o1700), 'drwx-----T');
    assert.equal(permissions(FileType.OTHER, 0), '?---------');
  });
});

describe('chunksOf', () => {
  const collect = async (data) => {
    const out = [];
    for await (const c of chunksOf(data)) out.push(Buffer.from(c));
    return out;
  };

  it('splits bytes, text and Blobs into pieces of at most 1 MiB', async () => {
    assert.equal(CHUNK_BYTES, MiB - 1024);
    const bytes = randomBytes(2 * CHUNK_BYTES + 5);
    for (const data of [bytes, bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length), new Blob([bytes])]) {
      const chunks = await collect(data);
      assert.deepEqual(chunks.map((c) => c.length), [CHUNK_BYTES, CHUNK_BYTES, 5]);
      assert.equal(sha(Buffer.concat(chunks)), sha(bytes));
    }
    assert.deepEqual(await collect('héllo'), [Buffer.from('héllo')]);
    assert.deepEqual(await collect(''), []);
  });

  it('gathers a stream\'s small chunks and splits its big ones', async () => {
    const small = Array.from({ length: 100 }, () => randomBytes(10_000));
    const big = randomBytes(3 * MiB + 1);
    const parts = [...small, big, Buffer.from('tail')];
    const web = new ReadableStream({
      start(c) {
        for (const p of parts) c.enqueue(new Uint8Array(p));
        c.close();
      },
    });
    for (const source of [web, Readable.from(parts), (async function* () { yield* parts; })()]) {
      const chunks = await collect(source);
      assert.ok(chunks.every((c) => c.length > 0 && c.length <= MiB), chunks.map((c) => c.length).join(','));
      assert.ok(chunks.length <= 9, `${chunks.length} messages for 4 MiB`);
      assert.equal(sha(Buffer.concat(chunks)), sha(Buffer.concat(parts)));
    }
  });

  it('refuses what is not data', async () => {
    await assert.rejects(collect(42), InvalidArgumentError);
    await assert.rejects(collect((async function* () { yield 42; })()), /not a string, ArrayBuffer or Uint8Array/);
  });
});

// A scripted FileService: files live in a Map; a few paths answer with errors.
const FILES = new Map();
const FLAKED = new Set();
const calls = { writes: [], reads: 0 };
const entry = (path, size, type = 1, extra = {}) => ({
  name: path.split('/').pop(),
  path,
  type,
  size,
  mode: type === 2 ? 0o755 : 0o644,
  owner: 'user',
  group: 'user',
  uid: 1000,
  gid: 1000,
  modifiedAtMs: 1_700_000_000_123,
  symlinkTarget: '',
  ...extra,
});
const ERRORS = {
  '/missing': [grpc.status.NOT_FOUND, '/missing: no such file or directory'],
  '/secret': [grpc.status.PERMISSION_DENIED, '/secret: permission denied'],
  '/exists': [grpc.status.ALREADY_EXISTS, '/exists: file exists'],
  '/full': [grpc.status.RESOURCE_EXHAUSTED, '/full: no space left on device'],
  '/dir': [grpc.status.FAILED_PRECONDITION, '/dir: is a directory'],
};
const fail = (path, cb) => {
  const e = ERRORS[path];
  if (!e) return false;
  cb({ code: e[0], details: e[1] });
  return true;
};

const service = {
  Stat(call, cb) {
    const { path } = call.request;
    if (fail(path, cb)) return;
    if (path === '/link') return cb(null, { entry: entry('/link', 7, 3, { symlinkTarget: '/secret', mode: 0o777 }) });
    if (!FILES.has(path)) return cb({ code: grpc.status.NOT_FOUND, details: `${path}: no such file or directory` });
    cb(null, { entry: entry(path, FILES.get(path).length) });
  },
  ListDir(call, cb) {
    cb(null, { entries: [entry('/d/a', 1), entry('/d/sub', 4096, 2), entry('/d/sub/b', 2)].slice(0, call.request.depth >= 2 ? 3 : 2) });
  },
  MakeDir(call, cb) {
    cb(null, { entry: entry(call.request.path, 4096, 2, { mode: call.request.mode || 0o755 }), created: call.request.path !== '/d' });
  },
  Move(call, cb) {
    if (fail(call.request.destination, cb)) return;
    cb(null, { entry: entry(call.request.destination, 1) });
  },
  Remove(call, cb) {
    if (fail(call.request.path, cb)) return;
    calls.removed = call.request;
    cb(null, {});
  },
  Read(call) {
    calls.reads++;
    const { path, offset } = call.request;
    if (fail(path, (e) => call.emit('error', Object.assign(new Error(e.details), e)))) return;
    const data = FILES.get(path);
    if (!data) return call.emit('error', Object.assign(new Error('nf'), { code: grpc.status.NOT_FOUND, details: `${path}: no such file or directory` }));
    call.write({ entry: entry(path, data.length), offset, data: Buffer.alloc(0) });
    // '/flaky' breaks once, after 3 MiB: the SDK must resume from there.
    const breakAt = path === '/flaky' && calls.reads === 1 ? 3 * MiB : Infinity;
    let at = offset;
    const pump = () => {
      while (at < data.length) {
        if (at >= breakAt) {
          call.emit('error', Object.assign(new Error('dropped'), { code: grpc.status.UNAVAILABLE, details: 'connection dropped' }));
          return;
        }
        const piece = data.subarray(at, Math.min(data.length, at + MiB));
        const more = call.write({ offset: at, data: piece });
        at += piece.length;
        if (!more) return call.once('drain', pump);
      }
      call.end();
    };
    pump();
  },
  Write(call, cb) {
    const messages = [];
    call.on('data', (m) => messages.push({ path: m.path, user: m.user, mode: m.mode, data: Buffer.from(m.data) }));
    call.on('end', () => {
      if (call.cancelled || !messages.length) return;
      calls.writes.push(messages);
      const path = messages[0].path;
      if (fail(path, cb)) return;
      // '/flaky-*' fails its first attempt as a dropped connection would.
      if (path.startsWith('/flaky-') && !FLAKED.has(path)) {
        FLAKED.add(path);
        return cb({ code: grpc.status.UNAVAILABLE, details: 'connection dropped' });
      }
      const data = Buffer.concat(messages.map((m) => m.data));
      FILES.set(path, data);
      cb(null, { entry: entry(path, data.length) });
    });
    call.on('error', () => {});
  },
  WatchDir(call) {
    if (call.request.path === '/missing') {
      return call.emit('error', Object.assign(new Error('nf'), { code: grpc.status.NOT_FOUND, details: '/missing: no such file or directory' }));
    }
    call.write({ kind: 1 });
    for (const [type, name] of [[1, 'a'], [2, 'a'], [4, 'a'], [1, 'b'], [3, 'b'], [5, 'c'], [9, 'unknown-type']]) {
      call.write({ kind: 3, type, name });
    }
    call.write({ kind: 2 });
    call.write({ kind: 4 });
    calls.watch = call;
  },
};

let server;
let client;
before(async () => {
  const def = protoLoader.loadSync(new URL('../../proto/sandstream/agent/v1/agent.proto', import.meta.url).pathname, {
    longs: Number,
    enums: Number,
    defaults: true,
  });
  const pkg = grpc.loadPackageDefinition(def);
  server = new grpc.Server();
  server.addService(pkg.sandstream.agent.v1.FileService.service, service);
  const port = await new Promise((res, rej) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
  );
  client = new AgentClient({ host: '127.0.0.1', port, token: 't' }, { recoveryTimeoutMs: 10_000 });
});
after(() => {
  client?.close();
  server?.forceShutdown();
});

describe('files against a scripted FileService', () => {
  it('writes in messages of at most 1 MiB, the first naming the file, and reads it back', async () => {
    const data = randomBytes(5 * CHUNK_BYTES + 3);
    calls.writes = [];
    const info = await client.files.write('/big.bin', new Blob([data]), { user: 'root', mode: 0o600 });
    assert.equal(info.path, '/big.bin');
    assert.equal(info.name, 'big.bin');
    assert.equal(info.type, FileType.FILE);
    assert.equal(info.size, data.length);
    assert.equal(info.permissions, '-rw-r--r--');
    assert.ok(info.modifiedTime instanceof Date);
    assert.equal(info.modifiedTime.getTime(), 1_700_000_000_123);
    const [messages] = calls.writes;
    assert.deepEqual(messages.map((m) => m.data.length), [CHUNK_BYTES, CHUNK_BYTES, CHUNK_BYTES, CHUNK_BYTES, CHUNK_BYTES, 3]);
    assert.deepEqual([messages[0].path, messages[0].user, messages[0].mode], ['/big.bin', 'root', 0o600]);
    assert.ok(messages.slice(1).every((m) => m.path === '' && m.user === '' && m.mode === 0));
    const back = await client.files.read('/big.bin', { format: 'bytes' });
    assert.ok(back instanceof Uint8Array);
    assert.equal(sha(back), sha(data));
    const blob = await client.files.read('/big.bin', { format: 'blob' });
    assert.equal(sha(Buffer.from(await blob.arrayBuffer())), sha(data));
  });

  it('writes an empty file with one message, and several files in order', async () => {
    calls.writes = [];
    const infos = await client.files.write([
      { path: '/e', data: '' },
      { path: '/t', data: 'héllo wörld' },
    ]);
    assert.deepEqual(infos.map((i) => [i.path, i.size]), [['/e', 0], ['/t', 13]]);
    assert.equal(calls.writes[0].length, 1);
    assert.equal(await client.files.read('/t'), 'héllo wörld');
    assert.equal(await client.files.read('/e'), '');
  });

  it('resumes a read that broke from the offset it reached', async () => {
    const data = randomBytes(8 * MiB);
    FILES.set('/flaky', data);
    calls.reads = 0;
    const stream = await client.files.read('/flaky', { format: 'stream' });
    const chunks = [];
    for await (const c of stream) chunks.push(Buffer.from(c));
    assert.equal(calls.reads, 2);
    assert.equal(sha(Buffer.concat(chunks)), sha(data));
  });

  it('maps the agent\'s errors to the SDK\'s classes, with the agent\'s message', async () => {
    const cases = [
      [() => client.files.read('/missing'), FileNotFoundError, 'NOT_FOUND'],
      [() => client.files.read('/secret', { format: 'stream' }), PermissionError, 'PERMISSION_DENIED'],
      [() => client.files.getInfo('/secret'), PermissionError, 'PERMISSION_DENIED'],
      [() => client.files.rename('/a', '/exists'), FileExistsError, 'ALREADY_EXISTS'],
      [() => client.files.write('/full', 'x'), NotEnoughSpaceError, 'RESOURCE_EXHAUSTED'],
      [() => client.files.remove('/dir', { recursive: false }), InvalidArgumentError, 'FAILED_PRECONDITION'],
    ];
    for (const [fn, cls, code] of cases) {
      await assert.rejects(fn(), (e) => {
        assert.ok(e instanceof cls, `${e}`);
        assert.ok(e instanceof SandboxError);
        assert.equal(e.code, code);
        assert.match(e.message, /^files\.\w+: \/\w+: /);
        return true;
      });
    }
    assert.ok(new FileNotFoundError('x') instanceof NotFoundError);
  });

  it('exists, getInfo, list, makeDir, rename and remove', async () => {
    FILES.set('/here', Buffer.from('x'));
    assert.equal(await client.files.exists('/here'), true);
    assert.equal(await client.files.exists('/nope'), false);
    await assert.rejects(client.files.exists('/secret'), PermissionError);
    const link = await client.files.getInfo('/link');
    assert.deepEqual([link.type, link.symlinkTarget, link.permissions], [FileType.SYMLINK, '/secret', 'lrwxrwxrwx']);
    assert.deepEqual((await client.files.list('/d')).map((e) => [e.path, e.type]), [['/d/a', 'file'], ['/d/sub', 'dir']]);
    assert.equal((await client.files.list('/d', { depth: 2 })).length, 3);
    await assert.rejects(client.files.list('/d', { depth: 0 }), InvalidArgumentError);
    assert.equal(await client.files.makeDir('/d'), false);
    assert.equal(await client.files.makeDir('/d/new'), true);
    assert.equal((await client.files.rename('/a', '/b')).path, '/b');
    await client.files.remove('/d');
    assert.equal(calls.removed.recursive, true);
    await client.files.remove('/d', { recursive: false, user: 'root' });
    assert.deepEqual([calls.removed.recursive, calls.removed.user], [false, 'root']);
  });

  it('refuses bad arguments before sending anything', async () => {
    await assert.rejects(client.files.read(''), InvalidArgumentError);
    await assert.rejects(client.files.read('/x', { format: 'json' }), InvalidArgumentError);
    await assert.rejects(client.files.write('/x', 'y', { mode: 0o10000 }), InvalidArgumentError);
    await assert.rejects(client.files.write('/x', 'y', { user: '' }), InvalidArgumentError);
    await assert.rejects(client.files.write('/x'), InvalidArgumentError);
    await assert.rejects(client.files.write('/x', 42), InvalidArgumentError);
  });

  it('sends a write of bytes again after a lost connection, but not a stream\'s', async () => {
    calls.writes = [];
    const data = randomBytes(2 * MiB);
    assert.equal((await client.files.write('/flaky-bytes', data)).size, data.length);
    assert.equal(calls.writes.length, 2);
    assert.equal(sha(FILES.get('/flaky-bytes')), sha(data));
    await assert.rejects(client.files.write('/flaky-stream', Readable.from([data])), (e) => e instanceof ConnectionError && /connection dropped/.test(e.message));
    assert.equal(FILES.has('/flaky-stream'), false);
  });

  it('leaves a write alone when its source fails, with the source\'s error', async () => {
    calls.writes = [];
    const boom = new Error('source broke');
    const source = (async function* () {
      yield Buffer.alloc(MiB);
      throw boom;
    })();
    await assert.rejects(client.files.write('/broken', source), (e) => e === boom);
    assert.equal(FILES.has('/broken'), false);
  });

  it('watchDir delivers events in order, then stop() ends it with onExit()', async () => {
    const events = [];
    let exited;
    const exit = new Promise((r) => (exited = r));
    const handle = await client.files.watchDir(
      '/w',
      async (e) => {
        events.push(e);
        // A slow handler holds back the next event.
        await new Promise((r) => setTimeout(r, 5));
      },
      { onExit: (err) => exited(err ?? 'clean') },
    );
    while (events.length < 7) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(events, [
      { name: 'a', type: FilesystemEventType.CREATE },
      { name: 'a', type: FilesystemEventType.WRITE },
      { name: 'a', type: FilesystemEventType.RENAME },
      { name: 'b', type: FilesystemEventType.CREATE },
      { name: 'b', type: FilesystemEventType.REMOVE },
      { name: 'c', type: FilesystemEventType.CHMOD },
      { name: '', type: FilesystemEventType.OVERFLOW },
    ]);
    await handle.stop();
    assert.equal(await exit, 'clean');
  });

  it('watchDir rejects when the watch cannot start, and ends with TimeoutError at its timeoutMs', async () => {
    await assert.rejects(client.files.watchDir('/missing', () => {}), FileNotFoundError);
    let exited;
    const exit = new Promise((r) => (exited = r));
    await client.files.watchDir('/w', () => {}, { timeoutMs: 50, onExit: exited });
    const err = await exit;
    assert.ok(err instanceof TimeoutError);
    assert.equal(err.kind, 'watch');
  });
});
