// Builds the package: the proto descriptor (gen-proto.mjs), then ESM and CommonJS
// JavaScript with type declarations from src/ into dist/.
//
// dist/ is committed, so that the package installs from a checkout (`npm install
// <checkout>/sdk/typescript`, or a tarball from `npm pack`) with nothing built first and
// no development tools. `--check` builds into a scratch directory instead and fails
// when dist/ differs from it (a stale dist/: run `npm run build` and commit dist/);
// `--check --against DIR` compares DIR instead of dist/ (for the test of the check).
// TypeScript is pinned (package-lock.json), so the same sources build the same bytes.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const check = args.includes('--check');
const against = args.includes('--against') ? resolve(args[args.indexOf('--against') + 1]) : join(pkg, 'dist');
// The scratch build sits at dist/'s depth, so its source maps point at ../../src as dist/'s do.
const out = check ? join(pkg, '.dist-check') : join(pkg, 'dist');

function run(script, ...rest) {
  const r = spawnSync(process.execPath, [script, ...rest], { cwd: pkg, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

run(join(pkg, 'scripts', 'gen-proto.mjs'));
rmSync(out, { recursive: true, force: true });
const tsc = createRequire(join(pkg, 'package.json')).resolve('typescript/bin/tsc');
for (const flavour of ['esm', 'cjs']) {
  run(tsc, '-p', join(pkg, `tsconfig.${flavour}.json`), '--outDir', join(out, flavour));
}
// Marks each build's module system so Node loads dist/esm as ESM and dist/cjs as CommonJS.
writeFileSync(join(out, 'esm', 'package.json'), '{"type":"module"}\n');
writeFileSync(join(out, 'cjs', 'package.json'), '{"type":"commonjs"}\n');

if (check) {
  const stale = differences(out, against);
  rmSync(out, { recursive: true, force: true });
  if (stale.length) {
    console.error(
      `${relative(process.cwd(), against) || '.'} is not what src/ builds to (${stale.length} files differ):\n` +
        stale.slice(0, 20).map((f) => `  ${f}\n`).join('') +
        'Run `npm run build` in sdk/typescript and commit dist/.',
    );
    process.exit(1);
  }
  console.log(`${relative(process.cwd(), against) || '.'} is what src/ builds to`);
}

/** What differs between the built tree `built` and `dir`, one line per file. */
function differences(built, dir) {
  const files = (root, at = root) =>
    existsSync(at)
      ? readdirSync(at, { withFileTypes: true }).flatMap((e) =>
          e.isDirectory() ? files(root, join(at, e.name)) : [relative(root, join(at, e.name))],
        )
      : [];
  const all = [...new Set([...files(built), ...files(dir)])].sort();
  return all.flatMap((f) => {
    const [x, y] = [join(built, f), join(dir, f)];
    if (!existsSync(y)) return [`${f} is missing`];
    if (!existsSync(x)) return [`${f} is not built from src/`];
    return readFileSync(x).equals(readFileSync(y)) ? [] : [`${f} differs`];
  });
}
