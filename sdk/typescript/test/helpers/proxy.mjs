// Starts tcp-proxy-main.mjs as a child process; kill() drops every connection through it.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('./tcp-proxy-main.mjs', import.meta.url));

export async function startProxy({ port = 0, targetHost = '127.0.0.1', targetPort }) {
  const child = spawn(process.execPath, [main, String(port), targetHost, String(targetPort)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // Never leave it behind, even when the test process exits abruptly.
  const reap = () => child.kill('SIGKILL');
  process.once('exit', reap);
  child.once('exit', () => process.off('exit', reap));
  const proxy = { child, port: 0, connections: 0 };
  let buf = '';
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('proxy did not start')), 10_000);
    child.stdout.on('data', (d) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line === 'connection') proxy.connections++;
        const m = /^proxy listening on (\d+)$/.exec(line);
        if (m) {
          proxy.port = Number(m[1]);
          clearTimeout(timer);
          resolve();
        }
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`proxy exited with ${code}`));
    });
  });
  const exited = new Promise((r) => child.on('exit', r));
  proxy.kill = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  return proxy;
}
