// Spawns a real sandstream-agent on a free port of 127.0.0.1 for tests and benchmarks.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const here = dirname(fileURLToPath(import.meta.url));
export const SDK_DIR = resolve(here, '..', '..');
export const REPO_DIR = resolve(SDK_DIR, '..', '..');

/** Cargo's target directory: CARGO_TARGET_DIR when set (relative to the repository, as
 * cargo run from it takes it), else the repository's own. */
export function targetDir() {
  return resolve(REPO_DIR, process.env.CARGO_TARGET_DIR || 'target');
}

export function agentBinary() {
  const target = targetDir();
  const candidates = [
    process.env.SANDSTREAM_AGENT_BIN,
    join(target, 'x86_64-unknown-linux-gnu/release/sandstream-agent'),
    join(target, 'release/sandstream-agent'),
    join(target, 'debug/sandstream-agent'),
  ].filter(Boolean);
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(
      `no sandstream-agent binary: looked at ${candidates.join(', ')}. Build it (./scripts/build-agent.sh or cargo build -p sandstream-agent) or set SANDSTREAM_AGENT_BIN.`,
    );
  }
  return found;
}

/** Starts an agent; resolves to {host, port, token, info, stop()}. */
export async function startAgent({ token = randomBytes(16).toString('hex'), args = [] } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'sandstream-sdk-agent-'));
  const child = spawn(
    agentBinary(),
    ['--listen', '127.0.0.1:0', '--token', token, '--spool-dir', join(dir, 'spool'), '--workdir', dir, ...args],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' } },
  );
  // Never leave it behind, even when the test process exits abruptly.
  const reap = () => child.kill('SIGKILL');
  process.once('exit', reap);
  child.once('exit', () => process.off('exit', reap));
  let log = '';
  const port = await new Promise((resolveP, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent did not start within 10 s:\n${log}`)), 10_000);
    const onData = (d) => {
      log += d.toString();
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        child.stdout.off('data', onData);
        child.stderr.off('data', onData);
        resolveP(Number(m[1]));
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`agent exited with ${code} before listening:\n${log}`));
    });
  });
  child.stdout.resume();
  child.stderr.resume();
  const exited = new Promise((r) => child.on('exit', r));
  return {
    host: '127.0.0.1',
    port,
    token,
    dir,
    info: { host: '127.0.0.1', port, token },
    child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
