// Sandbox creation as a user of the SDK sees it: Sandbox.create() until a first
// commands.run('true') returns, against a local `sandstream up`, cold (every sandbox
// created on demand) and with the runner's warm pool. Prints numbers; asserts nothing.
//
//   node bench/create.mjs [--samples 50] [--pool 4]
import { cpus, loadavg } from 'node:os';
import { Sandbox } from '@sandstream/sdk';
import { startServer } from '../test/helpers/server.mjs';
import { opt, pct } from './common.mjs';

const samples = Number(opt('samples', 50));
const pool = Number(opt('pool', 4));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

console.log(`create → first run('true'): node ${process.version}, ${cpus().length} CPUs, load ${loadavg()[0].toFixed(2)}`);
for (const [label, extraArgs] of [
  ['cold', []],
  [`warm pool of ${pool}`, ['--warm-pool', String(pool)]],
]) {
  const server = await startServer({ extraArgs });
  const opts = { apiKey: server.apiKey, apiUrl: server.apiUrl };
  await sleep(3000); // the pool fills
  const times = [];
  for (let i = 0; i < samples + 3; i++) {
    const t0 = process.hrtime.bigint();
    const sb = await Sandbox.create(opts);
    await sb.commands.run('true');
    const t1 = process.hrtime.bigint();
    if (i >= 3) times.push(Number(t1 - t0) / 1e6);
    await sb.kill();
    await sleep(300); // a user's requests are not back to back; the pool refills meanwhile
  }
  times.sort((a, b) => a - b);
  console.log(`${label.padEnd(16)} n=${times.length}  p50 ${pct(times, 50).toFixed(1)} ms  p99 ${pct(times, 99).toFixed(1)} ms  min ${times[0].toFixed(1)} ms`);
  await server.stop();
}
