// Runs every test file with node:test, one file at a time (the machine has few cores and
// some tests measure time and memory): unit, then agent-level, then server-level tests.
import { readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const groups = process.argv.length > 2 ? process.argv.slice(2) : ['unit', 'agent', 'server'];
const files = groups.flatMap((g) =>
  readdirSync(join('test', g))
    .filter((f) => f.endsWith('.test.mjs'))
    .sort()
    .map((f) => join('test', g, f)),
);
const flags = ['--test'];
if (process.allowedNodeEnvironmentFlags.has('--test-concurrency')) flags.push('--test-concurrency=1');
const r = spawnSync(process.execPath, [...flags, ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
