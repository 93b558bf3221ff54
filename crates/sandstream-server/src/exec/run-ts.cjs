// Runs a TypeScript program as `tsc && node main.js` would, inside the sandbox, with the
// template's TypeScript: `node run-ts.cjs main.ts [other.ts ...]` type-checks main.ts
// with the other files as one program (relative imports resolve among them), prints
// tsc's diagnostics to stderr in tsc's own format and exits 2 (tsc's exit code) without
// running anything; otherwise it emits CommonJS for every file, in memory, and runs
// main.ts as the main module. Written by the server's TypeScript plan (exec/plan.rs).
'use strict';
const fs = require('fs');
const path = require('path');
const Module = require('module');

/**
 * Writes to stderr whole before returning. process.stderr makes a pipe non-blocking and
 * queues what the pipe cannot take yet, and process.exit() drops that queue: the agent's
 * output pipes take one write at a time (to keep stdout and stderr in order), so a
 * second write followed by an exit could be lost.
 */
function writeStderr(text) {
  const buf = Buffer.from(text);
  let done = 0;
  while (done < buf.length) {
    try {
      done += fs.writeSync(2, buf, done);
    } catch (e) {
      if (e.code !== 'EAGAIN') throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}

/** Ends the run with a message of ours (not the program's, not tsc's). */
function refuse(message) {
  writeStderr(`sandstream: ${message}\n`);
  process.exit(1);
}

const [mainArg, ...otherArgs] = process.argv.slice(2);
if (!mainArg) refuse('usage: run-ts.cjs main.ts [other.ts ...]');
const main = path.resolve(mainArg);
const roots = [main, ...otherArgs.map((f) => path.resolve(f))];

// Node.js 22 keeps compiled code for the next start (TypeScript's compiler is 9 MB of
// JavaScript): later runs in the same sandbox start faster. A cache that cannot be
// written is only a slower start.
try {
  Module.enableCompileCache?.(path.join(require('os').tmpdir(), 'sandstream-node-compile-cache'));
} catch {}

// The default template's startup snapshot (runtime template/typescript-snapshot.cjs),
// when the run was started from it: its TypeScript loaded and the declaration files of
// Node.js and ES2023 parsed. Used only when `typescript` resolves to that same compiler
// (a program's own node_modules/typescript wins, as under plain `node`).
let warm = globalThis.__sandstreamTypeScript;
delete globalThis.__sandstreamTypeScript;
let ts;
try {
  const resolved = require.resolve('typescript', { paths: [__dirname] });
  ts = warm && warm.file === resolved ? warm.ts : require(resolved);
} catch {
  refuse("TypeScript cannot run in this sandbox: its template has no TypeScript compiler (the npm package 'typescript')");
}

// Node.js's own types (console, process, require, setTimeout, 'node:fs'): the
// program's own node_modules first, else the template's (`npm install -g @types/node`).
let nodeTypes = null;
try {
  nodeTypes = path.dirname(require.resolve('@types/node/package.json', { paths: [path.dirname(main), __dirname] }));
} catch {}

// tsc --init's choices for a Node.js 22 program (strict, ES2022 on Node's libraries
// rather than the DOM's), with CommonJS output so that `import`/`export` and top-level
// code run under `require`. skipLibCheck: declaration files are taken as written, which
// keeps the check to the program's own files.
const options = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.CommonJS,
  moduleResolution: ts.ModuleResolutionKind.Node10 ?? ts.ModuleResolutionKind.NodeJs,
  lib: ['lib.es2023.d.ts'],
  strict: true,
  esModuleInterop: true,
  skipLibCheck: true,
  forceConsistentCasingInFileNames: true,
  resolveJsonModule: true,
  types: nodeTypes ? ['node'] : [],
  typeRoots: nodeTypes ? [path.dirname(nodeTypes)] : [],
  inlineSourceMap: true,
  newLine: ts.NewLineKind.LineFeed,
};

/** JavaScript per TypeScript file, by absolute path. */
const outputs = new Map();
if (nodeTypes) {
  const host = ts.createCompilerHost(options);
  if (warm && ts === warm.ts) {
    // A parsed declaration file from the snapshot stands for the file only while its
    // text is the file's text (/usr/local is the user's to change).
    const parse = host.getSourceFile;
    host.getSourceFile = (fileName, target, ...rest) => {
      const cached = warm.sourceFiles.get(fileName);
      const version = typeof target === 'object' ? target.languageVersion : target;
      if (cached && cached.languageVersion === version && cached.text === host.readFile(fileName)) return cached;
      return parse.call(host, fileName, target, ...rest);
    };
  }
  const program = ts.createProgram({ rootNames: roots, options, host });
  const diagnostics = ts.getPreEmitDiagnostics(program);
  if (diagnostics.length > 0) {
    const cwd = process.cwd();
    const formatHost = { getCurrentDirectory: () => cwd, getCanonicalFileName: (f) => f, getNewLine: () => '\n' };
    writeStderr(ts.formatDiagnostics(diagnostics, formatHost));
    // TS1378 and TS1432 name a `module` option the caller cannot set here.
    if (diagnostics.some((d) => d.code === 1378 || d.code === 1432)) {
      writeStderr(
        'sandstream: top-level await is not supported: TypeScript programs run as CommonJS modules; wrap the code in an async function\n',
      );
    }
    process.exit(2);
  }
  program.emit(undefined, (_name, text, _bom, _onError, sources) => {
    for (const source of sources ?? []) outputs.set(path.resolve(source.fileName), text);
  });
  // The parsed declarations are the program's no more: its memory is the program's.
  warm = null;
} else {
  writeStderr(
    'sandstream: type checking is off: this template has no @types/node (Node.js type declarations), so TypeScript is only transpiled\n',
  );
}

/** Loads a TypeScript file: what the program emitted for it, else (a file outside it) transpiled alone. */
function load(module, filename) {
  let js = outputs.get(filename);
  if (js === undefined) {
    const source = fs.readFileSync(filename, 'utf8');
    js = ts.transpileModule(source, { fileName: filename, compilerOptions: options }).outputText;
  }
  module._compile(js, filename);
}
// Also makes `require('./util')` find util.ts, after util.js and its kin.
for (const ext of ['.ts', '.cts', '.tsx']) Module._extensions[ext] = load;
process.setSourceMapsEnabled?.(true);

// main.ts is the main module, as main.js is under `node main.js`.
process.argv = [process.argv[0], main];
const mainModule = new Module(main, null);
mainModule.id = '.';
process.mainModule = mainModule;
Module._cache[main] = mainModule;
mainModule.load(main);
