// The package installs from a checkout, with nothing run in it first, the three ways the
// README names: `npm install <checkout>/sdk/typescript` (npm links the folder),
// `npm install --install-links <checkout>/sdk/typescript` (npm copies it), and the tarball
// of `npm pack <checkout>/sdk/typescript`. Each checkout is this package's files as git
// sees them (tracked and new, nothing ignored: no node_modules), in a temporary
// directory. In each empty project the package imports, and the seed's example (design
// note 002: `commands.run` with its callbacks, timeout and cwd) runs against a real
// Sandstream server (`$SANDSTREAM_BIN up`); it fails, never skips, when the binary is
// missing. npm may fetch the dependencies from the registry; it prefers its cache.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { SDK_DIR } from '../helpers/agent.mjs';
import { startServer } from '../helpers/server.mjs';

const root = mkdtempSync(join(tmpdir(), 'sandstream-sdk-install-'));
let server;
after(async () => {
  await server?.stop();
  rmSync(root, { recursive: true, force: true });
});

// The seed's example, as a user of the installed package writes it.
const EXAMPLE = `import { Sandbox } from '@sandstream/sdk';
const sandbox = await Sandbox.create({ timeoutMs: 120_000, requestTimeoutMs: 600_000 });
try {
  const streamed = { out: '', err: '' };
  const result = await sandbox.commands.run('echo "hello from stdout"; echo "hello from stderr" >&2; pwd', {
    onStdout: (data) => (streamed.out += data),
    onStderr: (data) => (streamed.err += data),
    timeout: 60_000,
    cwd: '/tmp',
  });
  console.log(JSON.stringify({ exitCode: result.exitCode, stdout: result.stdout, stderr: result.stderr, streamed }));
} finally {
  await sandbox.kill();
}
`;

/** A checkout of this package (its files as git sees them, none ignored) in `dir`. */
function checkout(dir) {
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard', '--', '.'], {
    cwd: SDK_DIR,
    encoding: 'utf8',
  })
    .split('\0')
    .filter((f) => f && existsSync(join(SDK_DIR, f)));
  const pkg = join(dir, 'sdk', 'typescript');
  for (const f of files) {
    mkdirSync(dirname(join(pkg, f)), { recursive: true });
    copyFileSync(join(SDK_DIR, f), join(pkg, f));
  }
  assert.ok(existsSync(join(pkg, 'dist', 'esm', 'index.js')), 'dist/ is not in the checkout: is it committed?');
  assert.ok(!existsSync(join(pkg, 'node_modules')));
  return pkg;
}

/** An empty project in `dir`. */
function project(dir) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'uses-sandstream', version: '1.0.0', private: true, type: 'module' }));
  return dir;
}

function npm(cwd, ...args) {
  const r = spawnSync('npm', [...args, '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], {
    cwd,
    encoding: 'utf8',
    timeout: 5 * 60_000,
  });
  assert.equal(r.status, 0, `npm ${args.join(' ')} in ${cwd}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

function node(cwd, args, env = {}) {
  const r = spawnSync(process.execPath, args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 10 * 60_000 });
  assert.equal(r.status, 0, `node ${args.join(' ')} in ${cwd}: ${r.stderr}${r.stdout}`);
  return r.stdout.trim();
}

const IMPORT = "import('@sandstream/sdk').then(m => console.log(typeof m.Sandbox.create))";
const REQUIRE = "console.log(typeof require('@sandstream/sdk').Sandbox.create)";

/** Runs the example in `app` against the server; checks what it printed. */
function runExample(app) {
  assert.ok(server, 'no Sandstream server: see the failure of "starts sandstream up"');
  writeFileSync(join(app, 'example.mjs'), EXAMPLE);
  const out = node(app, ['example.mjs'], { SANDSTREAM_API_URL: server.apiUrl, SANDSTREAM_API_KEY: server.apiKey });
  const r = JSON.parse(out.split('\n').at(-1));
  assert.deepEqual(r, {
    exitCode: 0,
    stdout: 'hello from stdout\n/tmp\n',
    stderr: 'hello from stderr\n',
    streamed: { out: 'hello from stdout\n/tmp\n', err: 'hello from stderr\n' },
  });
}

describe('installing the SDK from a checkout', () => {
  it('starts sandstream up', { timeout: 11 * 60_000 }, async () => {
    server = await startServer();
  });

  it('npm install <checkout>/sdk/typescript: linked, its runtime dependencies installed in the checkout', { timeout: 12 * 60_000 }, () => {
    const pkg = checkout(join(root, 'linked'));
    const app = project(join(root, 'linked-app'));
    npm(app, 'install', pkg);
    const installed = join(app, 'node_modules', '@sandstream', 'sdk');
    assert.ok(lstatSync(installed).isSymbolicLink(), 'npm linked the folder');
    // The package's prepare script installed what its code imports, and nothing else.
    assert.ok(existsSync(join(pkg, 'node_modules', '@grpc', 'grpc-js', 'package.json')));
    assert.ok(!existsSync(join(pkg, 'node_modules', 'typescript')), 'development tools installed in the checkout');
    assert.equal(node(app, ['-e', IMPORT]), 'function');
    runExample(app);
  });

  it('npm install --install-links <checkout>/sdk/typescript: copied, dependencies in the project', { timeout: 12 * 60_000 }, () => {
    const pkg = checkout(join(root, 'copied'));
    const app = project(join(root, 'copied-app'));
    npm(app, 'install', '--install-links', pkg);
    const installed = join(app, 'node_modules', '@sandstream', 'sdk');
    assert.ok(!lstatSync(installed).isSymbolicLink(), 'npm copied the package');
    assert.ok(existsSync(join(app, 'node_modules', '@grpc', 'grpc-js', 'package.json')));
    assert.ok(!existsSync(join(pkg, 'node_modules')), 'nothing was installed in the checkout');
    assert.equal(node(app, ['-e', IMPORT]), 'function');
    runExample(app);
  });

  it('npm pack <checkout>/sdk/typescript, then npm install the tarball: ESM and CommonJS', { timeout: 12 * 60_000 }, () => {
    const pkg = checkout(join(root, 'packed'));
    const tarballs = join(root, 'tarballs');
    mkdirSync(tarballs);
    npm(root, 'pack', pkg, '--pack-destination', tarballs);
    const [tgz] = readdirSync(tarballs);
    assert.match(tgz, /^sandstream-sdk-\d+\.\d+\.\d+\.tgz$/);
    const listing = execFileSync('tar', ['-tzf', join(tarballs, tgz)], { encoding: 'utf8' }).split('\n');
    for (const f of ['package/package.json', 'package/README.md', 'package/dist/esm/index.js', 'package/dist/esm/index.d.ts', 'package/dist/cjs/index.js', 'package/dist/cjs/index.d.ts']) {
      assert.ok(listing.includes(f), `${f} is not in the tarball`);
    }
    assert.ok(!listing.some((f) => f.startsWith('package/test/') || f.startsWith('package/node_modules/')), 'the tarball ships tests or node_modules');
    const app = project(join(root, 'packed-app'));
    npm(app, 'install', join(tarballs, tgz));
    assert.equal(node(app, ['-e', IMPORT]), 'function');
    assert.equal(node(app, ['-e', REQUIRE]), 'function');
    runExample(app);
  });
});
