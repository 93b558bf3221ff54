// Unit tests: no agent, no server.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import {
  ChannelSink,
  CommandExitError,
  SandboxError,
  TimeoutError,
  AuthenticationError,
  NotFoundError,
  Sandbox,
  AgentConnection,
} from '@sandstream/sdk';

describe('ChannelSink', () => {
  it('decodes a character split across chunks once it is complete', () => {
    const texts = [];
    const s = new ChannelSink('stdout', (t) => texts.push(t), undefined, true);
    const euro = Buffer.from('€'); // e2 82 ac
    s.push(0, Buffer.from([0x61, euro[0]]));
    s.push(2, euro.subarray(1, 2));
    s.push(3, Buffer.concat([euro.subarray(2), Buffer.from('b')]));
    s.finish();
    assert.deepEqual(texts, ['a', '€b']);
    assert.equal(s.text(), 'a€b');
  });

  it('drops bytes it already delivered (resume overlap) and keeps the rest', () => {
    const bytes = [];
    const s = new ChannelSink('stdout', undefined, (b) => bytes.push(Buffer.from(b).toString()), true);
    s.push(0, Buffer.from('hello '));
    s.push(0, Buffer.from('hello ')); // replayed whole
    s.push(3, Buffer.from('lo world')); // overlaps
    s.push(11, Buffer.from('!'));
    assert.deepEqual(bytes, ['hello ', 'world', '!']);
    assert.equal(s.next, 12);
    assert.equal(s.text(), 'hello world!');
  });

  it('refuses a gap instead of silently losing bytes', () => {
    const s = new ChannelSink('stderr', undefined, undefined, false);
    s.push(0, Buffer.from('ab'));
    assert.throws(() => s.push(5, Buffer.from('x')), (e) => e instanceof SandboxError && /stderr jumped from byte 2 to byte 5/.test(e.message));
  });

  it('starts at an offset and collects nothing when asked', () => {
    const s = new ChannelSink('stdout', undefined, undefined, false, 10);
    s.push(8, Buffer.from('abcd'));
    assert.equal(s.next, 12);
    assert.equal(s.text(), '');
  });
});

describe('errors', () => {
  it('CommandExitError carries the result fields, like E2B', () => {
    const e = new CommandExitError({ exitCode: 2, stdout: 'o', stderr: 'first\nboom\n', commandId: 'id', status: 'exited', truncated: false });
    assert.ok(e instanceof SandboxError && e instanceof Error);
    assert.equal(e.name, 'CommandExitError');
    assert.equal(e.exitCode, 2);
    assert.equal(e.stdout, 'o');
    assert.equal(e.stderr, 'first\nboom\n');
    assert.equal(e.message, 'command exited with code 2; last stderr line: boom');
  });

  it('TimeoutError tells the request timeout from the command timeout', () => {
    const r = new TimeoutError('x', 'request');
    assert.equal(r.kind, 'request');
    assert.equal(r.exitCode, undefined);
    const c = new TimeoutError('y', 'command', { result: { exitCode: 124, stdout: 'a', stderr: '' } });
    assert.equal(c.kind, 'command');
    assert.equal(c.exitCode, 124);
    assert.equal(c.stdout, 'a');
  });
});

describe('Sandbox without a server', () => {
  it('asks for an API key when there is none', async () => {
    const saved = process.env.SANDSTREAM_API_KEY;
    delete process.env.SANDSTREAM_API_KEY;
    try {
      await assert.rejects(Sandbox.create(), (e) => e instanceof AuthenticationError && /SANDSTREAM_API_KEY/.test(e.message));
    } finally {
      if (saved !== undefined) process.env.SANDSTREAM_API_KEY = saved;
    }
  });

  it('says when the server cannot be reached, naming the URL', async () => {
    await assert.rejects(Sandbox.list({ apiKey: 'k', apiUrl: 'http://127.0.0.1:1' }), (e) => {
      assert.equal(e.name, 'ConnectionError');
      assert.match(e.message, /cannot reach the Sandstream server at http:\/\/127\.0\.0\.1:1/);
      return true;
    });
  });

  it('maps REST errors of the documented shape (fake HTTP server)', async () => {
    const http = await import('node:http');
    const server = http.createServer((req, res) => {
      const auth = req.headers.authorization;
      res.setHeader('content-type', 'application/json');
      if (auth !== 'Bearer good') {
        res.statusCode = 401;
        res.end(JSON.stringify({ status: 'error', code: 'unauthorized', message: 'unknown API key' }));
      } else {
        res.statusCode = 404;
        res.end(JSON.stringify({ status: 'error', code: 'not_found', message: `sandbox ${req.url.split('/')[4]} not found` }));
      }
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    const apiUrl = `http://127.0.0.1:${server.address().port}`;
    try {
      await assert.rejects(Sandbox.connect('sb-1', { apiKey: 'bad', apiUrl }), (e) => {
        assert.ok(e instanceof AuthenticationError);
        assert.equal(e.httpStatus, 401);
        assert.equal(e.code, 'unauthorized');
        assert.match(e.message, /refused the API key \(unknown API key\)/);
        return true;
      });
      await assert.rejects(Sandbox.connect('sb-404', { apiKey: 'good', apiUrl }), (e) => {
        assert.ok(e instanceof NotFoundError);
        assert.match(e.message, /sandbox sb-404 not found/);
        return true;
      });
      assert.equal(await Sandbox.kill('sb-404', { apiKey: 'good', apiUrl }), false);
    } finally {
      server.close();
    }
  });
});

describe('package', () => {
  it('ships a copy of the agent proto identical to the repository', { skip: !existsSync(new URL('../../../../proto/sandstream/agent/v1/agent.proto', import.meta.url)) && 'not inside the repository' }, () => {
    const repo = readFileSync(new URL('../../../../proto/sandstream/agent/v1/agent.proto', import.meta.url));
    const copy = readFileSync(new URL('../../proto/sandstream/agent/v1/agent.proto', import.meta.url));
    assert.ok(copy.equals(repo), 'sdk/typescript/proto differs from proto/: run `npm run build` (it copies it)');
  });

  it('loads as CommonJS too', () => {
    const require = createRequire(import.meta.url);
    const cjs = require('@sandstream/sdk');
    assert.equal(typeof cjs.Sandbox.create, 'function');
    assert.equal(typeof cjs.AgentClient, 'function');
    assert.ok(new cjs.CommandExitError({ exitCode: 1, stdout: '', stderr: '', commandId: 'x', status: 'exited', truncated: false }) instanceof cjs.SandboxError);
    assert.ok(existsSync(new URL('../../dist/cjs/index.d.ts', import.meta.url)));
    assert.ok(existsSync(new URL('../../dist/esm/index.d.ts', import.meta.url)));
  });

  it('does not connect before the first call', () => {
    const c = new AgentConnection({ host: '127.0.0.1', port: 9, token: 't' });
    assert.equal(c.address, '127.0.0.1:9');
    c.close();
  });
});
