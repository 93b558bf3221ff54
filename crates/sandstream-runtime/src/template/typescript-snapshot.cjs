// Builds the default template's TypeScript startup snapshot (machine.rs runs it at the
// template's build, inside the new root, as the sandbox user):
//
//   node --snapshot-blob /usr/local/lib/sandstream/typescript.blob \
//        --build-snapshot /usr/local/lib/sandstream/typescript-snapshot.cjs
//
// The snapshot holds the template's TypeScript compiler already loaded, and Node.js's and
// ES2023's declaration files already parsed and bound: what every type check of a
// program would otherwise spend a second or more redoing. `node --snapshot-blob BLOB
// SCRIPT ARGS…` then runs SCRIPT as `node SCRIPT ARGS…` would, with
// `globalThis.__sandstreamTypeScript` ({ ts, file, sourceFiles }) set; the server's
// TypeScript runner (exec/run-ts.cjs) uses it when its TypeScript is this one and a
// cached file's text is still the file's text, and parses afresh otherwise.
'use strict';
const fs = require('fs');
const path = require('path');
const v8 = require('v8');

// The template's Node.js prefix, where machine.rs installs TypeScript and @types/node.
const prefix = '/usr/local';
const file = path.join(prefix, 'lib/node_modules/typescript/lib/typescript.js');
const typeRoot = path.join(prefix, 'lib/node_modules/@types');

// A snapshot's builder may `require` built-in modules only: TypeScript's CommonJS module
// is evaluated as `require` would.
const loaded = { exports: {} };
new Function('module', 'exports', 'require', '__filename', '__dirname', fs.readFileSync(file, 'utf8'))(
  loaded,
  loaded.exports,
  require,
  file,
  path.dirname(file),
);
const ts = loaded.exports;

// The declaration files of the runner's options (target, lib, types), loaded by a program
// of one empty file; its checker binds them.
const options = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.CommonJS,
  lib: ['lib.es2023.d.ts'],
  strict: true,
  skipLibCheck: true,
  types: ['node'],
  typeRoots: [typeRoot],
  noEmit: true,
};
const empty = path.join(prefix, 'lib/sandstream/empty.ts');
const host = ts.createCompilerHost(options);
const getSourceFile = host.getSourceFile;
host.getSourceFile = (name, ...rest) =>
  name === empty ? ts.createSourceFile(name, '', options.target) : getSourceFile.call(host, name, ...rest);
const fileExists = host.fileExists;
host.fileExists = (name) => name === empty || fileExists.call(host, name);
const program = ts.createProgram({ rootNames: [empty], options, host });
const diagnostics = ts.getPreEmitDiagnostics(program);
if (diagnostics.length > 0) {
  throw new Error(ts.formatDiagnostics(diagnostics, { getCurrentDirectory: () => '/', getCanonicalFileName: (f) => f, getNewLine: () => '\n' }));
}
const sourceFiles = new Map(program.getSourceFiles().filter((f) => f.isDeclarationFile).map((f) => [f.fileName, f]));
if (![...sourceFiles.keys()].some((f) => f.startsWith(path.join(typeRoot, 'node/')))) {
  throw new Error(`no @types/node under ${typeRoot}`);
}
globalThis.__sandstreamTypeScript = { ts, file, sourceFiles };

v8.startupSnapshot.setDeserializeMainFunction(() => {
  const script = process.argv[1];
  if (!script) {
    process.stderr.write('usage: node --snapshot-blob typescript.blob SCRIPT [ARGS...]\n');
    process.exit(1);
  }
  process.argv[1] = path.resolve(script);
  require('module').createRequire(process.argv[1])(process.argv[1]);
});
