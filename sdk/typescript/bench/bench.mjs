// Benchmark of the TypeScript SDK. Prints numbers; asserts nothing.
//
//   npm run bench                          # spawns a bare sandstream-agent on 127.0.0.1
//   node bench/bench.mjs --sandbox sb-…    # an existing sandbox (SANDSTREAM_API_URL / SANDSTREAM_API_KEY)
//   node bench/bench.mjs --server          # starts `$SANDSTREAM_BIN up` (as the tests do), creates a sandbox, measures it
//
// Options: --samples N (default 2000), --warmup N (100), --gib N (size of each stream, 1),
// --streams N (3 runs of the stream), --docker (then the same measures through
// `docker exec` into a running container, the tool a user would otherwise use; needs a
// Docker engine and an image: --docker-image IMAGE, default the newest
// `sandstream-template:*` image the docker backend imported), --docker-samples N (200).
import { spawn, spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { AgentClient, Sandbox } from '@sandstream/sdk';
import { startAgent } from '../test/helpers/agent.mjs';
import { startServer } from '../test/helpers/server.mjs';
import { args, load, opt, pct } from './common.mjs';

const samples = Number(opt('samples', 2000));
const warmup = Number(opt('warmup', 100));
const gib = Number(opt('gib', 1));
const streams = Number(opt('streams', 3));
const sandboxId = opt('sandbox', undefined);

let commands;
let cleanup;
let target;
if (args.includes('--server')) {
  const server = await startServer();
  const sb = await Sandbox.create({ apiKey: server.apiKey, apiUrl: server.apiUrl, requestTimeoutMs: 600_000, timeoutMs: 3_600_000 });
  commands = sb.commands;
  target = `sandbox ${sb.id} of a local \`sandstream up\` (agent at ${(await sb.getConnectionInfo()).host})`;
  cleanup = async () => {
    await sb.kill();
    await server.stop();
  };
} else if (sandboxId) {
  const sb = await Sandbox.connect(sandboxId);
  commands = sb.commands;
  target = `sandbox ${sandboxId} (${(await sb.getConnectionInfo()).host})`;
  cleanup = async () => sb.close();
} else {
  const agent = await startAgent();
  const client = new AgentClient(agent.info);
  commands = client.commands;
  target = `bare agent on 127.0.0.1:${agent.port}`;
  cleanup = async () => {
    client.close();
    await agent.stop();
  };
}

console.log(`@sandstream/sdk benchmark: node ${process.version}, ${cpus().length} CPUs, ${target}, load average ${load()}`);

// 1. Round trip of commands.run('true') on an open connection.
for (let i = 0; i < warmup; i++) await commands.run('true');
const times = [];
const rtCpu0 = process.cpuUsage();
for (let i = 0; i < samples; i++) {
  const t0 = process.hrtime.bigint();
  await commands.run('true');
  times.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
const rtCpu = process.cpuUsage(rtCpu0);
times.sort((a, b) => a - b);
const mean = times.reduce((a, b) => a + b, 0) / times.length;
console.log(
  `commands.run('true') round trip (${samples} samples after ${warmup} warm-up): ` +
    `p50 ${pct(times, 50).toFixed(2)} ms, p99 ${pct(times, 99).toFixed(2)} ms, mean ${mean.toFixed(2)} ms, max ${times[times.length - 1].toFixed(2)} ms; ` +
    `SDK process CPU ${((rtCpu.user + rtCpu.system) / 1000 / samples).toFixed(2)} ms per run`,
);

// 2. Throughput of a stream into onStdout (decoded text), then into onStdoutBytes only.
const bytesPerStream = Math.round(gib * 1024 ** 3);
async function stream(label, useText) {
  for (let i = 1; i <= streams; i++) {
    let n = 0;
    let peakRss = 0;
    const sample = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await commands.run(`head -c ${bytesPerStream} /dev/zero`, {
      collectOutput: false,
      ...(useText ? { onStdout: (d) => (n += d.length) } : { onStdoutBytes: (b) => (n += b.length) }),
    });
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    clearInterval(sample);
    const cpu = process.cpuUsage(cpu0);
    if (n !== bytesPerStream) throw new Error(`received ${n} of ${bytesPerStream} bytes`);
    console.log(
      `stream ${gib} GiB into ${label}, run ${i}: ${(bytesPerStream / 1e6 / secs).toFixed(0)} MB/s ` +
        `(${secs.toFixed(2)} s, SDK process CPU ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s, peak RSS ${(peakRss / 1048576).toFixed(0)} MiB)`,
    );
  }
}
await stream('onStdout (text)', true);
await stream('onStdoutBytes (raw)', false);

if (args.includes('--docker')) await dockerSideBySide();

console.log(`load average at the end: ${load()} (other work on the machine skews every number)`);
await cleanup();

function docker(argv) {
  const r = spawnSync('docker', argv, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`docker ${argv.join(' ')}: ${r.error ?? r.stderr.trim()}`);
  return r.stdout.trim();
}

/** `docker exec` (the CLI, as a user would run it) into a container left idle for the purpose. */
async function dockerSideBySide() {
  const image =
    opt('docker-image', undefined) ??
    docker(['images', '--format', '{{.Repository}}:{{.Tag}}', 'sandstream-template']).split('\n').find(Boolean);
  if (!image) throw new Error('--docker: no image; pass --docker-image IMAGE (or run the docker backend once)');
  const container = docker(['run', '-d', '--rm', '--network', 'none', image, 'sleep', 'infinity']);
  try {
    const dockerSamples = Number(opt('docker-samples', 200));
    const run = (argv, onData) =>
      new Promise((resolve, reject) => {
        const child = spawn('docker', argv, { stdio: ['ignore', 'pipe', 'inherit'] });
        child.stdout.on('data', onData ?? (() => {}));
        child.on('error', reject);
        child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`docker ${argv[0]} exited with ${code}`))));
      });
    for (let i = 0; i < 10; i++) await run(['exec', container, 'true']);
    const dt = [];
    for (let i = 0; i < dockerSamples; i++) {
      const t0 = process.hrtime.bigint();
      await run(['exec', container, 'true']);
      dt.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    dt.sort((a, b) => a - b);
    console.log(
      `docker exec CONTAINER true (${image}, ${dockerSamples} samples after 10 warm-up, from node's child_process): ` +
        `p50 ${pct(dt, 50).toFixed(2)} ms, p99 ${pct(dt, 99).toFixed(2)} ms, max ${dt[dt.length - 1].toFixed(2)} ms`,
    );
    for (let i = 1; i <= streams; i++) {
      let n = 0;
      const t0 = process.hrtime.bigint();
      await run(['exec', container, 'head', '-c', String(bytesPerStream), '/dev/zero'], (d) => (n += d.length));
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      if (n !== bytesPerStream) throw new Error(`docker exec stream: received ${n} of ${bytesPerStream} bytes`);
      console.log(`docker exec stream ${gib} GiB into a node 'data' handler, run ${i}: ${(bytesPerStream / 1e6 / secs).toFixed(0)} MB/s (${secs.toFixed(2)} s)`);
    }
  } finally {
    docker(['rm', '-f', container]);
  }
}
