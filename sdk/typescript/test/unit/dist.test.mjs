// dist/ is committed (so that a checkout installs with nothing built first): it must be
// exactly what src/ builds to. `scripts/build.mjs --check` builds into a scratch
// directory and compares.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFileSync, cpSync, mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SDK_DIR } from '../helpers/agent.mjs';

const check = (...args) =>
  spawnSync(process.execPath, [join(SDK_DIR, 'scripts', 'build.mjs'), '--check', ...args], { cwd: SDK_DIR, encoding: 'utf8' });

describe('committed dist/', () => {
  it('is what src/ builds to', { timeout: 120_000 }, () => {
    const r = check();
    assert.equal(r.status, 0, `${r.stderr}${r.stdout}`);
  });

  it('a stale or incomplete copy is refused, naming the files', { timeout: 120_000 }, (t) => {
    const copy = mkdtempSync(join(tmpdir(), 'sandstream-sdk-dist-'));
    t.after(() => rmSync(copy, { recursive: true, force: true }));
    cpSync(join(SDK_DIR, 'dist'), copy, { recursive: true });
    appendFileSync(join(copy, 'esm', 'sandbox.js'), '// edited by hand\n');
    unlinkSync(join(copy, 'cjs', 'index.d.ts'));
    const r = check('--against', copy);
    assert.equal(r.status, 1, `${r.stderr}${r.stdout}`);
    assert.match(r.stderr, /is not what src\/ builds to \(2 files differ\)/);
    assert.match(r.stderr, /esm\/sandbox\.js differs/);
    assert.match(r.stderr, /cjs\/index\.d\.ts is missing/);
    assert.match(r.stderr, /Run `npm run build` in sdk\/typescript and commit dist\//);
  });
});
