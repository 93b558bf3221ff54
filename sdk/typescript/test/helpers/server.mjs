// Starts a real Sandstream server (`sandstream up`) for the server-level tests.
// SANDSTREAM_BIN picks the binary; default debug/sandstream in cargo's target directory.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { targetDir } from './agent.mjs';

export function serverBinary() {
  return process.env.SANDSTREAM_BIN || join(targetDir(), 'debug', 'sandstream');
}

/** Resolves to {apiUrl, apiKey, stop()} once the server printed "Sandstream ready at URL". */
export async function startServer({ readyTimeoutMs = 10 * 60_000, extraArgs = [] } = {}) {
  const bin = serverBinary();
  if (!existsSync(bin)) {
    throw new Error(
      `the server-level tests need a Sandstream server binary, and ${bin} does not exist. ` +
        'Build it first (cargo build -p sandstream) or point SANDSTREAM_BIN at one.',
    );
  }
  const help = spawnSync(bin, ['up', '--help'], { encoding: 'utf8', timeout: 30_000 });
  if (help.status !== 0) {
    throw new Error(
      `${bin} cannot run \`sandstream up\` (\`up --help\` exited with ${help.status}: ${(help.stderr || help.stdout || '').trim().split('\n')[0]}). ` +
        'Build a server binary that has the `up` command, or point SANDSTREAM_BIN at one.',
    );
  }
  const apiKey = `sk-test-${randomBytes(16).toString('hex')}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'sandstream-sdk-server-'));
  const child = spawn(bin, ['up', '--listen', '127.0.0.1:0', '--data-dir', dataDir, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SANDSTREAM_API_KEY: apiKey },
  });
  // Never leave it behind, even when the test process exits abruptly.
  const reap = () => child.kill('SIGKILL');
  process.once('exit', reap);
  child.once('exit', () => process.off('exit', reap));
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => {
    err += d.toString();
    if (err.length > 64_000) err = err.slice(-32_000);
  });
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
  const apiUrl = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`sandstream up did not print "Sandstream ready at" within ${readyTimeoutMs / 1000} s.\nstdout:\n${out}\nstderr (tail):\n${err.slice(-4000)}`));
    }, readyTimeoutMs);
    child.stdout.on('data', (d) => {
      out += d.toString();
      const m = /Sandstream ready at (http:\/\/[^\s/]+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`sandstream up exited (${code ?? signal}) before it was ready.\nstdout:\n${out}\nstderr (tail):\n${err.slice(-4000)}`));
    });
  });
  child.stdout.resume();
  return {
    apiUrl,
    apiKey,
    dataDir,
    child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
