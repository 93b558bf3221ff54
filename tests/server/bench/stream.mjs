// Benchmark of the live-log path: a byte written in a sandbox until a socket.io client
// has it, with many executions streaming at once; then many concurrent executions with
// every byte checked. Prints numbers; asserts nothing. Starts its own `sandstream up`
// (SANDSTREAM_BIN, as the e2e tests do; point it at the release build that
// scripts/start.sh runs, target/release/sandstream, to measure what users run).
//
//   node bench/stream.mjs [--latency-execs 100] [--sandboxes 10] [--lines 300] [--interval-ms 10]
//                         [--ramp-ms auto] [--bulk-execs 200] [--bulk-mb 1] [--per-second]
//
// 1. Latency. Every execution (Python) starts, prints `ready`, then sleeps until a common
//    start time T0 (chosen so that all of them have started by then) plus its own random
//    phase within one interval, and from there prints its wall-clock time in µs every
//    `interval` ms, `lines` times; then it waits 1–3 s before exiting. The socket.io client
//    (joined to the container's room) subtracts that stamp from its own clock when the
//    event reaches its handler: same host, same clock (CLOCK_REALTIME). So the number
//    covers program → pipe → agent (spool) → gRPC → server (decode, store, number) →
//    socket.io → client's event handler, with all executions streaming at once. The start
//    and the exit of 100 interpreters at once (on a 2-vCPU VM, ~0.1 CPU-s each) are kept
//    out of the measured window: they are not the log path, and they would stall it.
// 2. Bulk. Executions each print `bulk-mb` MiB of random base64 text and its sha256 on
//    stderr, all at once. The client follows API.md's delivery rule (keep seq order, hold
//    past a gap, drop duplicates; when `execution-complete` names a lastSeq it has not
//    reached, `resume-execution` from the last seq it kept) and hashes what it kept.
//
// Printed: p50/p90/p99/p99.9/max latency (`--per-second`: per second of arrival), load
// average, CPU seconds over the streaming window spent by the server (per thread), by
// this client, by the sandboxes (their cgroups: agents and programs; agents alone) and by
// the whole machine (other load included), CPU per event, the server's RSS (idle before,
// peak, after), checksums matching, and how many live events the client missed (and so
// resumed). Everything shares the machine's CPUs: when "whole machine" is near its
// maximum, latency is CPU queueing, whatever the log path does. The default rate (100
// executions × a line every 10 ms = 10,000 lines/s) saturates a 2-vCPU VM: the
// sandboxes (Python and agents) take over one core, the server and this client most of
// the other; `--interval-ms 20/50/100` show the path below saturation.
import { readFileSync, readdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import { startServer, api, cleanupSandboxes, connectClient, sleep } from '../lib/harness.mjs';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const flag = (name) => args.includes(`--${name}`);
const latencyExecs = opt('latency-execs', 100);
const sandboxCount = opt('sandboxes', 10);
const lines = opt('lines', 300);
const intervalMs = opt('interval-ms', 10);
const rampMs = opt('ramp-ms', Math.max(4000, latencyExecs * 80));
const bulkExecs = opt('bulk-execs', 200);
const bulkMb = opt('bulk-mb', 1);
const perSecond = flag('per-second');

const pct = (s, p) => (s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN);
const nowUs = () => (performance.timeOrigin + performance.now()) * 1000;
const f1 = (x) => x.toFixed(1);
const f2 = (x) => x.toFixed(2);
const load = () => os.loadavg().map(f2).join(' ');
const hz = 100; // USER_HZ on Linux

function procStat(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / hz; // utime + stime, seconds
}
function machineBusy() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return { busy: (f[0] + f[1] + f[2] + f[5] + f[6]) / hz, steal: (f[7] ?? 0) / hz };
}
/** CPU seconds of each of a process's threads, summed by thread name. */
function threadsCpu(pid) {
  const by = {};
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const name = s.slice(s.indexOf('(') + 1, s.lastIndexOf(')'));
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      by[name] = (by[name] ?? 0) + (Number(f[11]) + Number(f[12])) / hz;
    } catch {
      /* gone */
    }
  }
  return by;
}
/** CPU seconds of the agents of the given sandboxes (they outlive a phase). */
function agentsCpu(sandboxIds) {
  let sum = 0;
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      const i = cmd.indexOf('--sandbox-id');
      if (i < 0 || !sandboxIds.has(cmd[i + 1])) continue;
      const s = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      sum += (Number(f[11]) + Number(f[12])) / hz;
    } catch {
      /* gone */
    }
  }
  return sum;
}
/**
 * CPU seconds of the given sandboxes (agent and programs: their cgroups, as the oci
 * backend names them; cgroup v1 or v2). NaN where the host lays cgroups out otherwise.
 */
function sandboxesCpu(sandboxIds) {
  let sum = 0;
  for (const id of sandboxIds) {
    try {
      sum += Number(readFileSync(`/sys/fs/cgroup/cpuacct/sandstream/${id}/cpuacct.usage`, 'utf8')) / 1e9;
    } catch {
      try {
        const stat = readFileSync(`/sys/fs/cgroup/sandstream/${id}/cpu.stat`, 'utf8');
        sum += Number(/usage_usec (\d+)/.exec(stat)[1]) / 1e6;
      } catch {
        return NaN;
      }
    }
  }
  return sum;
}
function rssOf(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)[1]);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}
/** CPU and memory of the server, this client and the machine over one phase. */
function meter(pid) {
  const t0 = performance.now();
  const s0 = procStat(pid);
  const c0 = process.cpuUsage();
  const m0 = machineBusy();
  const a0 = agentsCpu(ourSandboxes);
  const sb0 = sandboxesCpu(ourSandboxes);
  const th0 = threadsCpu(pid);
  let peak = rssOf(pid).rss;
  const timer = setInterval(() => (peak = Math.max(peak, rssOf(pid).rss)), 50);
  return () => {
    clearInterval(timer);
    const secs = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    const m = machineBusy();
    const after = rssOf(pid).rss;
    return {
      secs,
      server: procStat(pid) - s0,
      agents: agentsCpu(ourSandboxes) - a0,
      sandboxes: sandboxesCpu(ourSandboxes) - sb0,
      threads: Object.entries(threadsCpu(pid))
        .map(([k, v]) => [k, v - (th0[k] ?? 0)])
        .filter(([, v]) => v > 0)
        .sort((a, b) => b[1] - a[1]),
      client: (c.user + c.system) / 1e6,
      machine: m.busy - m0.busy,
      steal: m.steal - m0.steal,
      peak: Math.max(peak, after),
      after,
    };
  };
}
const cpuLine = (m) =>
  `CPU s over ${f1(m.secs)} s: server ${f2(m.server)} (${m.threads.map(([k, v]) => `${k} ${f2(v)}`).join(', ')}), client ${f2(m.client)}, sandboxes ${f2(m.sandboxes)} (of which agents ${f2(m.agents)}), whole machine ${f2(m.machine)} of ${f2(m.secs * os.cpus().length)} (steal ${f2(m.steal)})`;

/**
 * Per-execution delivery state under API.md's rule: shows seq last+1 (then held ones
 * that follow), holds a larger seq, drops one not larger than last.
 */
class Delivery {
  constructor(onChunk) {
    this.last = 0;
    this.held = new Map();
    this.onChunk = onChunk;
    this.gaps = 0;
    this.dups = 0;
  }
  offer(p) {
    if (p.seq <= this.last) {
      this.dups++;
      return;
    }
    if (p.seq > this.last + 1 && !this.held.has(p.seq)) this.gaps++;
    this.held.set(p.seq, p);
    while (this.held.has(this.last + 1)) {
      const c = this.held.get(this.last + 1);
      this.held.delete(this.last + 1);
      this.last += 1;
      this.onChunk(c);
    }
  }
}

/** The benchmark's sandboxes, whose agents it counts. */
const ourSandboxes = new Set();

const server = await startServer();
const pid = server.child.pid;
console.log(`live-log benchmark: ${os.cpus().length} CPUs, load ${load()}, server ${server.url} (${process.env.SANDSTREAM_BIN ?? 'target/debug/sandstream'})`);
try {
  const sandboxes = [];
  for (let i = 0; i < sandboxCount; i++) {
    const r = await api(server, 'POST', '/api/v1/sandboxes', { body: { timeoutMs: 3_600_000 } });
    if (r.status !== 201) throw new Error(`create: ${r.status} ${r.text}`);
    sandboxes.push(r.body.id);
    ourSandboxes.add(r.body.id);
  }
  const clients = [];
  for (const id of sandboxes) {
    const c = await connectClient(server);
    await c.join(id);
    // The harness's Client records every event for the e2e tests; here only the
    // benchmark's own handlers run.
    c.socket.off('execution-output');
    c.socket.off('execution-phase');
    clients.push(c);
  }
  // Warm up: one short execution per sandbox (the virtualenv check, page cache, agent
  // connection), not measured.
  {
    const warm = new Map();
    const handler = (p) => warm.get(p.executionId)?.();
    for (const c of clients) c.socket.on('execution-complete', handler);
    await Promise.all(
      sandboxes.map(async (sb) => {
        const r = await api(server, 'POST', '/api/sandbox/exec', { body: { code: 'print(1)', language: 'python', containerId: sb } });
        if (r.status !== 202) throw new Error(`exec: ${r.status} ${r.text}`);
        await new Promise((res) => warm.set(r.body.data.executionId, res));
      }),
    );
    for (const c of clients) c.socket.off('execution-complete', handler);
  }
  const idle = rssOf(pid);
  console.log(`server RSS idle ${f1(idle.rss)} MiB (${sandboxCount} sandboxes, ${clients.length} socket.io clients); load ${load()}`);

  // ---- 1. Latency
  if (latencyExecs > 0) {
    const samples = []; // [latency ms, receive time ms]
    const state = new Map(); // executionId -> {partial, delivery}
    let ready = 0;
    let lastReadyAt = 0;
    let events = 0;
    const done = new Map();
    for (const c of clients) {
      c.socket.on('execution-output', (p) => {
        const t = nowUs();
        const st = state.get(p.executionId);
        if (!st) return;
        events++;
        st.delivery.offer({ ...p, t });
      });
      c.socket.on('execution-complete', (p) => done.get(p.executionId)?.(p));
    }
    const onChunk = (st) => (p) => {
      if (p.type !== 'stdout' || p.phase !== 'run') return;
      const text = st.partial + p.data;
      const ls = text.split('\n');
      st.partial = ls.pop();
      for (const l of ls) {
        if (l === 'ready') {
          ready++;
          lastReadyAt = Date.now();
        } else if (l) samples.push([(p.t - Number(l)) / 1000, p.t / 1000]);
      }
    };
    const t0s = Date.now() / 1000 + rampMs / 1000;
    const m = meter(pid);
    const waits = [];
    const t0post = Date.now();
    // Every execution runs the same program (each draws its own phase): executions in one
    // sandbox share its home directory and so its main.py.
    const code =
      `import random, time\nprint('ready', flush=True)\nstart = ${t0s.toFixed(6)} + random.random() * ${intervalMs / 1000}\ntime.sleep(max(0, start - time.time()))\n` +
      `for i in range(${lines}):\n    d = start + i * ${intervalMs / 1000} - time.time()\n    if d > 0:\n        time.sleep(d)\n` +
      `    print(time.time_ns() // 1000, flush=True)\n` +
      `time.sleep(1 + random.random() * 2)\n`;
    for (let i = 0; i < latencyExecs; i++) {
      const r = await api(server, 'POST', '/api/sandbox/exec', { body: { code, language: 'python', containerId: sandboxes[i % sandboxes.length] } });
      if (r.status !== 202) throw new Error(`exec: ${r.status} ${r.text}`);
      const id = r.body.data.executionId;
      const st = { partial: '' };
      st.delivery = new Delivery(onChunk(st));
      state.set(id, st);
      waits.push(new Promise((res) => done.set(id, res)));
    }
    const postMs = Date.now() - t0post;
    // Load and RSS at T0 (once everything runs, before the first stamp).
    await sleep(Math.max(0, t0s * 1000 - Date.now() - 20));
    const readyAtT0 = ready;
    const loadAtT0 = load();
    const eventsAtT0 = events;
    const mStream = meter(pid);
    const results = await Promise.all(waits);
    const stream = mStream();
    const res = m();
    const lat = samples.map((s) => s[0]).sort((a, b) => a - b);
    const gaps = [...state.values()].reduce((a, s) => a + s.delivery.gaps, 0);
    const ok = results.filter((r) => r.status === 'success').length;
    console.log(
      `latency, ${latencyExecs} executions streaming at once (${lines} lines every ${intervalMs} ms each, ${f1((latencyExecs * 1000) / intervalMs)} lines/s): ` +
        `n=${lat.length}/${latencyExecs * lines}  p50 ${f2(pct(lat, 50))} ms  p90 ${f2(pct(lat, 90))} ms  p99 ${f2(pct(lat, 99))} ms  p99.9 ${f2(pct(lat, 99.9))} ms  max ${f1(lat[lat.length - 1] ?? NaN)} ms`,
    );
    console.log(
      `  started: ${readyAtT0}/${latencyExecs} ready at T0 (posts took ${postMs} ms, ramp ${rampMs} ms${ready > readyAtT0 ? `, last ready ${lastReadyAt - t0s * 1000} ms after T0: raise --ramp-ms` : ''}); ` +
        `exit 0 ${ok}/${latencyExecs}; live events missed ${gaps}; load at T0 ${loadAtT0}, at end ${load()}`,
    );
    const n = events - eventsAtT0;
    console.log(`  while streaming (T0 to the last end): ${cpuLine(stream)}; server RSS peak ${f1(res.peak)} MiB (whole phase), after ${f1(res.after)} MiB`);
    console.log(
      `  ${n} execution-output events while streaming; CPU per event: server ${f1((stream.server * 1e6) / n)} µs, client ${f1((stream.client * 1e6) / n)} µs, agents ${f1((stream.agents * 1e6) / n)} µs`,
    );
    if (perSecond) {
      const first = Math.min(...samples.map((s) => s[1]));
      const bySec = new Map();
      for (const [l, t] of samples) {
        const k = Math.floor((t - first) / 1000);
        if (!bySec.has(k)) bySec.set(k, []);
        bySec.get(k).push(l);
      }
      for (const [k, v] of [...bySec].sort((a, b) => a[0] - b[0])) {
        v.sort((a, b) => a - b);
        console.log(`    second ${k}: n=${v.length} p50 ${f2(pct(v, 50))} p99 ${f2(pct(v, 99))} max ${f1(v[v.length - 1])} ms`);
      }
    }
    for (const c of clients) {
      c.socket.off('execution-output');
      c.socket.off('execution-complete');
    }
  }

  // ---- 2. Bulk
  if (bulkExecs > 0) {
    const execs = new Map(); // id -> {hash, sum, delivery, client, done}
    const completes = new Map();
    for (const c of clients) {
      c.socket.on('execution-output', (p) => execs.get(p.executionId)?.delivery.offer(p));
      c.socket.on('execution-complete', (p) => completes.get(p.executionId)?.(p));
    }
    const blocks = bulkMb * 16; // 16 × 64 KiB lines of base64 per MiB
    const bulkCode =
      `import base64, hashlib, os, sys\nh = hashlib.sha256()\nfor _ in range(${blocks}):\n` +
      `    s = base64.encodebytes(os.urandom(851 * 57))\n    s = s + b'x' * (65536 - len(s) - 1) + b'\\n'\n` +
      `    h.update(s)\n    sys.stdout.buffer.write(s)\nsys.stdout.flush()\nprint(h.hexdigest(), file=sys.stderr)\n`;
    const m = meter(pid);
    const waits = [];
    let resumed = 0;
    for (let i = 0; i < bulkExecs; i++) {
      const client = clients[i % clients.length];
      const r = await api(server, 'POST', '/api/sandbox/exec', { body: { code: bulkCode, language: 'python', containerId: sandboxes[i % sandboxes.length] } });
      if (r.status !== 202) throw new Error(`exec: ${r.status} ${r.text}`);
      const id = r.body.data.executionId;
      const e = { hash: createHash('sha256'), sum: '', bytes: 0, client };
      e.delivery = new Delivery((p) => {
        if (p.phase !== 'run') return;
        if (p.type === 'stdout') {
          e.hash.update(p.data);
          e.bytes += p.data.length;
        } else e.sum += p.data;
      });
      execs.set(id, e);
      waits.push(
        (async () => {
          // Wait for the end; resume from the last kept seq while the client lacks any.
          for (let attempt = 0; ; attempt++) {
            const fin = await new Promise((res) => completes.set(id, res));
            if (e.delivery.last >= fin.lastSeq || attempt >= 5) return fin;
            resumed++;
            client.socket.emit('resume-execution', { executionId: id, afterSeq: e.delivery.last });
          }
        })(),
      );
    }
    const results = await Promise.all(waits);
    const res = m();
    let ok = 0;
    let bytes = 0;
    let gaps = 0;
    let dups = 0;
    const bad = [];
    for (const [id, e] of execs) {
      if (e.hash.digest('hex') === e.sum.trim()) ok++;
      else bad.push(id);
      bytes += e.bytes;
      gaps += e.delivery.gaps;
      dups += e.delivery.dups;
    }
    const success = results.filter((r) => r.status === 'success').length;
    console.log(
      `bulk, ${bulkExecs} executions at once × ${bulkMb} MiB: ${f1(res.secs)} s, ${f1(bytes / 1048576 / res.secs)} MiB/s delivered; ` +
        `checksums matching ${ok}/${bulkExecs}, exit 0 ${success}/${bulkExecs}; live events missed ${gaps} (resumed ${resumed} times, duplicates dropped ${dups}); load at end ${load()}`,
    );
    console.log(`  ${cpuLine(res)}; server RSS peak ${f1(res.peak)} MiB, after ${f1(res.after)} MiB`);
    for (const id of bad.slice(0, 5)) {
      const e = execs.get(id);
      const r = await api(server, 'GET', `/api/v1/executions/${id}/logs?afterSeq=0`);
      const stored = r.body.chunks.filter((c) => c.phase === 'run' && c.type === 'stdout').map((c) => c.data).join('');
      const storedSum = createHash('sha256').update(stored).digest('hex');
      console.log(`  mismatch ${id}: kept ${e.bytes} bytes up to seq ${e.delivery.last}, sum ${JSON.stringify(e.sum)}; stored ${stored.length} bytes in ${r.body.chunks.length} chunks, sha ${storedSum}`);
    }
  }
  for (const c of clients) c.close();
  await sleep(500);
  const end = rssOf(pid);
  console.log(`server RSS at the end ${f1(end.rss)} MiB, high-water mark ${f1(end.hwm)} MiB`);
} finally {
  await cleanupSandboxes(server);
  await server.stop();
}
