// Benchmark of files in and out of a sandbox. Prints numbers; asserts nothing but that
// every transfer arrived whole.
//
//   node bench/files.mjs [--gib N] [--runs N] [--samples N] [--docker]
//
// Starts `$SANDSTREAM_BIN up` (as the tests do) and creates a sandbox, then measures:
// 1. a 1 KiB `files.write` then `files.read` through the SDK (--samples, default 500),
//    then each alone;
// 2. an N GiB file of random bytes (--gib, default 1) from a local file into the sandbox
//    and back into a local file, through the SDK (`files.write` of a file stream,
//    `files.read` as a stream) and through REST (`PUT`/`GET /api/v1/sandboxes/{id}/files`,
//    Node's `http`), --runs times each (default 2);
// 3. with --docker, the same with `docker cp` (the CLI, as a user would run it) into and
//    out of a running container of the template (--docker-image IMAGE, default the newest
//    `sandstream-template:*` image the docker backend imported), and the 1 KiB round trip
//    as `docker exec -i C sh -c 'cat > f'` then `docker exec C cat f`.
// Every downloaded copy's sha256 is compared with the source's (outside the timings).
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Sandbox } from '@sandstream/sdk';
import { startServer } from '../test/helpers/server.mjs';
import { args, load, opt, pct } from './common.mjs';

const gib = Number(opt('gib', 1));
const runs = Number(opt('runs', 2));
const samples = Number(opt('samples', 500));
const size = Math.round(gib * 1024 ** 3);
const MB = 1e6;

const seconds = (t0) => Number(process.hrtime.bigint() - t0) / 1e9;
const rate = (secs) => `${(size / MB / secs).toFixed(0)} MB/s (${secs.toFixed(2)} s)`;
const latency = (label, ms) => {
  ms.sort((a, b) => a - b);
  console.log(`${label} (${ms.length} samples): p50 ${pct(ms, 50).toFixed(2)} ms, p99 ${pct(ms, 99).toFixed(2)} ms, max ${ms[ms.length - 1].toFixed(2)} ms`);
};

async function sha256File(path) {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), hash);
  return hash.digest('hex');
}

const work = mkdtempSync(join(tmpdir(), 'sandstream-files-bench-'));
const source = join(work, 'source.bin');
const copy = join(work, 'copy.bin');
{
  // Random bytes, so no layer can compress them; written in 16 MiB pieces.
  const out = createWriteStream(source);
  const piece = 16 << 20;
  for (let left = size; left > 0; left -= piece) {
    if (!out.write(randomBytes(Math.min(piece, left)))) await new Promise((r) => out.once('drain', r));
  }
  await new Promise((r, j) => out.end((e) => (e ? j(e) : r())));
}
const sourceSha = await sha256File(source);
const checkCopy = async (label) => {
  const got = statSync(copy).size;
  if (got !== size) throw new Error(`${label}: downloaded ${got} of ${size} bytes`);
  if ((await sha256File(copy)) !== sourceSha) throw new Error(`${label}: the downloaded copy differs from the source`);
  rmSync(copy);
};

const server = await startServer();
const sandbox = await Sandbox.create({ apiKey: server.apiKey, apiUrl: server.apiUrl, requestTimeoutMs: 600_000, timeoutMs: 3_600_000 });
console.log(
  `files benchmark: node ${process.version}, ${cpus().length} CPUs, sandbox ${sandbox.id} of a local \`sandstream up\`, ` +
    `${gib} GiB of random bytes from ${tmpdir()}, load average ${load()}`,
);

try {
  // 1. A small file written then read back.
  const small = randomBytes(1024);
  for (let i = 0; i < 50; i++) {
    await sandbox.files.write('small.bin', small);
    await sandbox.files.read('small.bin', { format: 'bytes' });
  }
  const rt = [];
  for (let i = 0; i < samples; i++) {
    const t0 = process.hrtime.bigint();
    await sandbox.files.write('small.bin', small);
    const back = await sandbox.files.read('small.bin', { format: 'bytes' });
    rt.push(seconds(t0) * 1000);
    if (Buffer.compare(Buffer.from(back), small) !== 0) throw new Error('the 1 KiB file came back different');
  }
  latency('SDK files.write then files.read of 1 KiB', rt);
  for (const [label, call] of [
    ['SDK files.write of 1 KiB alone', () => sandbox.files.write('small.bin', small)],
    ['SDK files.read of 1 KiB alone', () => sandbox.files.read('small.bin', { format: 'bytes' })],
  ]) {
    const ms = [];
    for (let i = 0; i < samples; i++) {
      const t0 = process.hrtime.bigint();
      await call();
      ms.push(seconds(t0) * 1000);
    }
    latency(label, ms);
  }

  // 2. The large file through the SDK and through REST.
  const cpu = (c0, secs) => `, this process ${(((c0.user + c0.system) / 1e6 / secs) * 100).toFixed(0)} % of a core`;
  for (let i = 1; i <= runs; i++) {
    let t0 = process.hrtime.bigint();
    let c0 = process.cpuUsage();
    await sandbox.files.write('big.bin', Readable.toWeb(createReadStream(source, { highWaterMark: 1 << 20 })));
    const up = seconds(t0);
    const upCpu = cpu(process.cpuUsage(c0), up);
    t0 = process.hrtime.bigint();
    c0 = process.cpuUsage();
    await pipeline(Readable.fromWeb(await sandbox.files.read('big.bin', { format: 'stream' })), createWriteStream(copy));
    const down = seconds(t0);
    console.log(`SDK ${gib} GiB, run ${i}: upload ${rate(up)}${upCpu}; download ${rate(down)}${cpu(process.cpuUsage(c0), down)}`);
    await checkCopy('SDK');
    await sandbox.files.remove('big.bin');
  }
  const route = `${server.apiUrl}/api/v1/sandboxes/${sandbox.id}/files?path=big.bin`;
  const auth = { authorization: `Bearer ${server.apiKey}` };
  for (let i = 1; i <= runs; i++) {
    let t0 = process.hrtime.bigint();
    let c0 = process.cpuUsage();
    await restUpload(route, auth);
    const up = seconds(t0);
    const upCpu = cpu(process.cpuUsage(c0), up);
    t0 = process.hrtime.bigint();
    c0 = process.cpuUsage();
    const res = await fetch(route, { headers: auth });
    if (res.status !== 200) throw new Error(`GET answered ${res.status}: ${await res.text()}`);
    await pipeline(Readable.fromWeb(res.body), createWriteStream(copy));
    const down = seconds(t0);
    console.log(`REST ${gib} GiB, run ${i}: upload ${rate(up)}${upCpu}; download ${rate(down)}${cpu(process.cpuUsage(c0), down)}`);
    await checkCopy('REST');
    await sandbox.files.remove('big.bin');
  }

  if (args.includes('--docker')) await dockerSideBySide();
} finally {
  await sandbox.kill().catch((e) => console.error(`kill: ${e.message}`));
  await server.stop();
  rmSync(work, { recursive: true, force: true });
}
console.log(`load average at the end: ${load()} (other work on the machine skews every number)`);

/** PUT the source file with its length, streamed by Node's `http` as a user's script would. */
function restUpload(url, headers) {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'PUT', headers: { ...headers, 'content-length': size, 'content-type': 'application/octet-stream' } }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => (res.statusCode === 201 || res.statusCode === 200 ? resolve() : reject(new Error(`PUT answered ${res.statusCode}: ${Buffer.concat(parts)}`))));
    });
    req.on('error', reject);
    createReadStream(source, { highWaterMark: 1 << 20 }).pipe(req);
  });
}

function docker(argv, input) {
  const r = spawnSync('docker', argv, { encoding: 'utf8', input, maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`docker ${argv.join(' ')}: ${r.error ?? r.stderr.trim()}`);
  return r.stdout;
}

/** `docker` CLI run from Node as a child process, resolving once it exited 0. */
function dockerAsync(argv, input) {
  return new Promise((resolve, reject) => {
    const child = spawn('docker', argv, { stdio: ['pipe', 'pipe', 'inherit'] });
    const out = [];
    child.stdout.on('data', (d) => out.push(d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`docker ${argv[0]} exited with ${code}`))));
    child.stdin.end(input);
  });
}

async function dockerSideBySide() {
  const image =
    opt('docker-image', undefined) ??
    docker(['images', '--format', '{{.Repository}}:{{.Tag}}', 'sandstream-template']).trim().split('\n').find(Boolean);
  if (!image) throw new Error('--docker: no image; pass --docker-image IMAGE (or run the docker backend once)');
  const container = docker(['run', '-d', '--rm', '--network', 'none', image, 'sleep', 'infinity']).trim();
  try {
    const small = randomBytes(1024);
    const put = ['exec', '-i', container, 'sh', '-c', 'cat > /tmp/small.bin'];
    const get = ['exec', container, 'cat', '/tmp/small.bin'];
    for (let i = 0; i < 10; i++) {
      await dockerAsync(put, small);
      await dockerAsync(get);
    }
    const rt = [];
    const dockerSamples = Math.min(samples, Number(opt('docker-samples', 100)));
    for (let i = 0; i < dockerSamples; i++) {
      const t0 = process.hrtime.bigint();
      await dockerAsync(put, small);
      const back = await dockerAsync(get);
      rt.push(seconds(t0) * 1000);
      if (Buffer.compare(back, small) !== 0) throw new Error('docker: the 1 KiB file came back different');
    }
    latency(`docker exec -i C sh -c 'cat > f' then docker exec C cat f, 1 KiB (${image})`, rt);
    // On the container's writable layer (a plain `docker run` has no tmpfs on /tmp).
    const inside = `${container}:/tmp/big.bin`;
    for (let i = 1; i <= runs; i++) {
      let t0 = process.hrtime.bigint();
      await dockerAsync(['cp', source, inside]);
      const up = seconds(t0);
      t0 = process.hrtime.bigint();
      await dockerAsync(['cp', inside, copy]);
      const down = seconds(t0);
      console.log(`docker cp ${gib} GiB, run ${i}: into the container ${rate(up)}, out of it ${rate(down)}`);
      await checkCopy('docker cp');
      docker(['exec', container, 'rm', '-f', '/tmp/big.bin']);
    }
  } finally {
    docker(['rm', '-f', container]);
  }
}
