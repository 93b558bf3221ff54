// Slowloris: idle and slow TCP connections must not use the server up. Each must send
// its request head within 10 s, and one address holds a bounded number of connections.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import { fileServer } from '../lib/harness.mjs';

const server = await fileServer(after);
const { hostname, port } = new URL(server.url);

/** GET /healthz from local address `from`; resolves the status or rejects after 5 s. */
function health(from) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: hostname, port, path: '/healthz', localAddress: from, agent: false, timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('timeout', () => req.destroy(new Error('healthz timed out')));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Opens `n` TCP connections from `from` that send nothing (or, with `dribble`, one header
 * byte per second). In batches of 100: a thousand connects at once can overflow the
 * listen backlog while the host is busy, and a connection the kernel completed but the
 * server never accepted stays open on this side for a minute of SYN-ACK retries, whatever
 * the server's timeouts (that is the kernel's SYN queue, not what this test is about).
 */
async function idle(n, from, { dribble = false } = {}) {
  const socks = [];
  for (let i = 0; i < n; i++) {
    if (i > 0 && i % 100 === 0) await Promise.all(socks.slice(-100).map(connected));
    const s = net.connect({ host: hostname, port, localAddress: from });
    s.on('error', () => {});
    s.closedAt = new Promise((r) => s.once('close', () => r(Date.now())));
    if (dribble) {
      s.once('connect', () => {
        const head = 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'a'.repeat(100);
        let i = 0;
        s.timer = setInterval(() => (i < head.length && !s.destroyed ? s.write(head[i++]) : clearInterval(s.timer)), 1000);
      });
    }
    socks.push(s);
  }
  await Promise.all(socks.map(connected));
  return socks;
}

/** Resolves once socket `s` has connected or closed. */
function connected(s) {
  return new Promise((r) => (s.connecting ? s.once('connect', r).once('close', r) : r()));
}

test('idle and slow connections are closed after the header timeout, and other clients are served meanwhile', async () => {
  const t0 = Date.now();
  const quiet = await idle(1500, '127.0.0.1');
  const slow = await idle(20, '127.0.0.3', { dribble: true });
  try {
    // Another address is served at once, whatever the first one holds.
    assert.equal(await health('127.0.0.2'), 200);
    // Every idle or dribbling connection is closed by the server within the timeout.
    const closed = await Promise.race([
      Promise.all([...quiet, ...slow].map((s) => s.closedAt)),
      new Promise((r) => setTimeout(() => r(null), 25_000)),
    ]);
    assert.ok(closed, `idle connections still open after ${Date.now() - t0} ms`);
    const last = Math.max(...closed) - t0;
    assert.ok(last >= 5_000, `closed after ${last} ms: sooner than any reasonable header timeout`);
    // Positive control: the address that held them is served again.
    assert.equal(await health('127.0.0.1'), 200);
  } finally {
    for (const s of [...quiet, ...slow]) {
      clearInterval(s.timer);
      s.destroy();
    }
  }
});
