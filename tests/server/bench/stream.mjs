// Benchmark of the live-log path: a byte written in a sandbox until a socket.io client
// has it, with many executions streaming at once; then many concurrent executions with
// every byte checked. Prints numbers; asserts nothing. Starts its own `sandstream up`.
//
//   node bench/stream.mjs [--latency-execs 100] [--sandboxes 10] [--bulk-execs 200] [--bulk-mb 1]
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import { startServer, api, cleanupSandboxes, connectClient, sleep } from '../lib/harness.mjs';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const latencyExecs = opt('latency-execs', 100);
const sandboxCount = opt('sandboxes', 10);
const bulkExecs = opt('bulk-execs', 200);
const bulkMb = opt('bulk-mb', 1);
const pct = (s, p) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
const nowUs = () => (performance.timeOrigin + performance.now()) * 1000;

function rssOf(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)[1]);
  return { rssMiB: kb('VmRSS') / 1024, hwmMiB: kb('VmHWM') / 1024 };
}

const server = await startServer();
console.log(`live-log benchmark: ${os.cpus().length} CPUs, load ${os.loadavg()[0].toFixed(2)}, server ${server.url}`);
try {
  const sandboxes = [];
  for (let i = 0; i < sandboxCount; i++) {
    const r = await api(server, 'POST', '/api/v1/sandboxes', { body: { timeoutMs: 3_600_000 } });
    if (r.status !== 201) throw new Error(`create: ${r.status} ${r.text}`);
    sandboxes.push(r.body.id);
  }
  const clients = [];
  for (const id of sandboxes) {
    const c = await connectClient(server);
    await c.join(id);
    clients.push(c);
  }
  const idle = rssOf(server.child.pid);

  // 1. Latency: each execution prints its wall-clock time (µs) every 10 ms for 3 s.
  const lat = [];
  const pending = new Map();
  let partial = new Map();
  for (const c of clients) {
    c.socket.on('execution-output', (p) => {
      const t = nowUs();
      if (p.type !== 'stdout' || p.phase !== 'run') return;
      const text = (partial.get(p.executionId) ?? '') + p.data;
      const lines = text.split('\n');
      partial.set(p.executionId, lines.pop());
      for (const l of lines) if (l) lat.push((t - Number(l)) / 1000);
    });
    c.socket.on('execution-complete', (p) => pending.get(p.executionId)?.());
  }
  const code = 'import time\nfor _ in range(300):\n    print(time.time_ns() // 1000, flush=True)\n    time.sleep(0.01)\n';
  const done = [];
  for (let i = 0; i < latencyExecs; i++) {
    const r = await api(server, 'POST', '/api/sandbox/exec', { body: { code, language: 'python', containerId: sandboxes[i % sandboxes.length] } });
    if (r.status !== 202) throw new Error(`exec: ${r.status} ${r.text}`);
    done.push(new Promise((res) => pending.set(r.body.data.executionId, res)));
  }
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, rssOf(server.child.pid).rssMiB)), 100);
  await Promise.all(done);
  clearInterval(sampler);
  lat.sort((a, b) => a - b);
  console.log(
    `latency, ${latencyExecs} executions streaming at once: n=${lat.length}  p50 ${pct(lat, 50).toFixed(2)} ms  p99 ${pct(lat, 99).toFixed(2)} ms  max ${lat[lat.length - 1].toFixed(1)} ms; server RSS idle ${idle.rssMiB.toFixed(1)} MiB, peak ${peak.toFixed(1)} MiB`,
  );

  // 2. Bulk: executions each print bulkMb MiB of pseudo-random text and its sha256 on stderr.
  const got = new Map();
  const sums = new Map();
  const bulkDone = new Map();
  for (const c of clients) {
    c.socket.on('execution-output', (p) => {
      if (!bulkDone.has(p.executionId) || p.phase !== 'run') return;
      if (p.type === 'stdout') got.get(p.executionId).update(p.data);
      else sums.set(p.executionId, (sums.get(p.executionId) ?? '') + p.data);
    });
    c.socket.on('execution-complete', (p) => bulkDone.get(p.executionId)?.(p));
  }
  const bulkCode = `import hashlib, random, sys\nrandom.seed(${Date.now()})\nh = hashlib.sha256()\nfor _ in range(${bulkMb * 16}):\n    s = ''.join(random.choice('abcdefghijklmnopqrstuvwxyz0123456789\\n') for _ in range(65536))\n    h.update(s.encode())\n    sys.stdout.write(s)\nsys.stdout.flush()\nprint(h.hexdigest(), file=sys.stderr)\n`;
  const t0 = performance.now();
  const waits = [];
  peak = 0;
  const sampler2 = setInterval(() => (peak = Math.max(peak, rssOf(server.child.pid).rssMiB)), 100);
  for (let i = 0; i < bulkExecs; i++) {
    const r = await api(server, 'POST', '/api/sandbox/exec', { body: { code: bulkCode, language: 'python', containerId: sandboxes[i % sandboxes.length] } });
    if (r.status !== 202) throw new Error(`exec: ${r.status} ${r.text}`);
    const id = r.body.data.executionId;
    got.set(id, createHash('sha256'));
    waits.push(new Promise((res) => bulkDone.set(id, res)));
  }
  const results = await Promise.all(waits);
  const secs = (performance.now() - t0) / 1000;
  clearInterval(sampler2);
  let ok = 0;
  for (const [id, h] of got) if (h.digest('hex') === (sums.get(id) ?? '').trim()) ok++;
  const success = results.filter((r) => r.status === 'success').length;
  console.log(
    `bulk, ${bulkExecs} executions at once × ${bulkMb} MiB: ${secs.toFixed(1)} s, ${((bulkExecs * bulkMb) / secs).toFixed(1)} MiB/s delivered; checksums matching ${ok}/${bulkExecs}, exit 0 ${success}/${bulkExecs}; server peak RSS ${peak.toFixed(1)} MiB`,
  );
  for (const c of clients) c.close();
} finally {
  await cleanupSandboxes(server);
  await server.stop();
}
