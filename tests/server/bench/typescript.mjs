// What type-checking costs a TypeScript run (issue 21): a hello world, timed inside one
// sandbox of the default template and through the exec API. Prints numbers; asserts
// nothing. Starts its own `sandstream up` (SANDSTREAM_BIN, as the e2e tests do).
//
//   node bench/typescript.mjs [--runs 20]
//
// 1. In the sandbox: `node RUNNER main.ts` `runs` times back to back, wall time of each,
//    for the runner before the type check (transpileModule of main.ts alone, kept below
//    as it was) and for today's (tsc's check with @types/node, then emit): started from
//    the template's startup snapshot, as the exec API does, and without it (a template
//    that has none), with and without Node.js's compile cache; plain `node -e`
//    JavaScript for scale.
// 2. Through the exec API, into one sandbox: `runs` TypeScript and `runs` JavaScript hello
//    worlds; each execution's durationMs (created → finished: files written, run, ended).
import { startServer, api, run, text, cleanupSandboxes } from '../lib/harness.mjs';

const args = process.argv.slice(2);
const runs = Number(args[args.indexOf('--runs') + 1] || 0) || 20;

/** The default template's TypeScript startup snapshot (runtime template/machine.rs). */
const SNAPSHOT = '/usr/local/lib/sandstream/typescript.blob';

/** The TypeScript runner before the type check, as exec/plan.rs had it. */
const TRANSPILE_ONLY = `const ts = require('typescript');
const fs = require('fs');
const path = require('path');
const Module = require('module');
const file = path.resolve(process.argv[2]);
const out = ts.transpileModule(fs.readFileSync(file, 'utf8'), {
  fileName: file,
  compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2020, esModuleInterop: true },
});
const m = new Module(file, null);
m.filename = file;
m.paths = Module._nodeModulePaths(path.dirname(file));
m._compile(out.outputText, file);
`;

/** A program (JavaScript) that times each of `cases` `runs` times in the sandbox and prints JSON. */
const timer = (runs, cases) => `const { spawnSync } = require('child_process');
const [runs, cases] = [${runs}, ${JSON.stringify(cases)}];
const result = {};
for (const [name, argv, env] of cases) {
  const ms = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(argv[0], argv.slice(1), { env: { ...process.env, ...env }, encoding: 'utf8' });
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (r.status !== 0 || r.stdout !== 'hello world\\n') throw new Error(name + ': ' + r.status + ' ' + r.stdout + r.stderr);
  }
  result[name] = ms;
}
console.log(JSON.stringify(result));
`;

const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))];
const line = (name, xs) =>
  console.log(`${name.padEnd(58)} p50 ${pct(xs, 50).toFixed(0).padStart(5)} ms  p90 ${pct(xs, 90).toFixed(0).padStart(5)} ms  (n=${xs.length})`);

const server = await startServer();
try {
  const hello = 'console.log("hello world");\n';
  // A first TypeScript execution writes .sandstream/run-ts.cjs and main.ts and makes the sandbox.
  const first = await run(server, { language: 'typescript', code: hello });
  if (text(first.chunks, { type: 'stdout' }) !== 'hello world\n') throw new Error(JSON.stringify(first));
  const containerId = first.data.containerId;
  const cases = [
    ['node -e (JavaScript, for scale)', ['node', '-e', 'console.log("hello world")'], {}],
    ['before: transpileModule of main.ts, no type check', ['node', 'bench-transpile-only.cjs', 'main.ts'], {}],
    ['after: check + emit, from the snapshot (what exec runs)', ['node', '--snapshot-blob', SNAPSHOT, '.sandstream/run-ts.cjs', 'main.ts'], {}],
    ['after: check + emit, no snapshot, no compile cache', ['node', '.sandstream/run-ts.cjs', 'main.ts'], { NODE_DISABLE_COMPILE_CACHE: '1' }],
    ['after: check + emit, no snapshot, compile cache', ['node', '.sandstream/run-ts.cjs', 'main.ts'], {}],
  ];
  console.log(`In one sandbox of the default template, ${runs} runs each (wall time of the node process):`);
  for (const c of cases) {
    // One execution per case: each stays well inside an execution's time limits.
    const timed = await run(
      server,
      { language: 'javascript', code: timer(runs, [c]), files: { 'bench-transpile-only.cjs': TRANSPILE_ONLY }, containerId, timeout: 300_000 },
      { timeoutMs: 400_000 },
    );
    if (timed.execution.exitCode !== 0) throw new Error(`${JSON.stringify(timed.execution)}\n${text(timed.chunks)}`);
    line(c[0], JSON.parse(text(timed.chunks, { type: 'stdout' }))[c[0]]);
  }

  console.log(`Through the exec API into that sandbox, ${runs} executions each (durationMs):`);
  for (const [language, code] of [['typescript', hello], ['javascript', hello]]) {
    const ms = [];
    for (let i = 0; i < runs; i++) {
      const r = await run(server, { language, code, containerId });
      if (text(r.chunks, { type: 'stdout' }) !== 'hello world\n') throw new Error(JSON.stringify(r));
      ms.push(r.execution.durationMs);
    }
    line(`${language} hello world`, ms);
  }
} finally {
  await cleanupSandboxes(server);
  await server.stop();
}
