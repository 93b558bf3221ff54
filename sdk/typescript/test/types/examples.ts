// Compiled (not run) by `npm test`: the README's examples must type-check against the
// published declarations, through the package's own exports map.
import {
  Sandbox,
  AgentClient,
  CommandExitError,
  TimeoutError,
  type CommandResult,
  type CommandHandle,
  type ProcessInfo,
  type SandboxInfo,
  type EntryInfo,
  type WriteInfo,
  type FilesystemEvent,
  FileType,
  FilesystemEventType,
  FileNotFoundError,
  PermissionError,
  WatchHandle,
  type PtySize,
  PtyHandle,
  DEFAULT_PTY_TIMEOUT_MS,
} from '@sandstream/sdk';

export async function examples(): Promise<void> {
  const sandbox = await Sandbox.create({ timeoutMs: 600_000, envs: { FOO: 'bar' }, metadata: { user: 'alice' } });
  const s2 = await Sandbox.create('default', { apiKey: 'k', apiUrl: 'http://127.0.0.1:3000' });
  const id: string = sandbox.id;
  const result: CommandResult = await sandbox.commands.run('echo hi', {
    onStdout: (d: string) => void d,
    onStderr: (d: string) => void d,
    timeout: 60_000,
    cwd: '/tmp',
    envs: { A: 'b' },
    user: 'root',
  });
  await sandbox.commands.run('whoami', { user: 'user' });
  await sandbox.commands.run('whoami', { user: 'www-data', background: true });
  const code: number = result.exitCode;
  // Both streams in the program's order.
  const merged: CommandResult = await sandbox.commands.run('echo a; echo b >&2', {
    onOutput: (d: string, stream: 'stdout' | 'stderr') => void [d, stream],
  });
  const interleaved: string = merged.output;
  const handle: CommandHandle = await sandbox.commands.run('sleep 10', { background: true, stdin: true });
  await handle.sendStdin('x');
  await handle.closeStdin();
  const killed: boolean = await handle.kill();
  try {
    await handle.wait();
  } catch (e) {
    if (e instanceof CommandExitError) console.log(e.exitCode, e.stdout, e.stderr, e.output);
    if (e instanceof TimeoutError && e.kind === 'command') console.log(e.exitCode);
  }
  const procs: ProcessInfo[] = await sandbox.commands.list();
  const again: CommandHandle = await sandbox.commands.connect(procs[0]!.id, { onStdout: (d) => void d, onStdoutBytes: (b: Uint8Array) => void b });
  await again.wait();
  const list: SandboxInfo[] = await Sandbox.list();
  await sandbox.setTimeout(1000);
  await Sandbox.connect(id, { requestTimeoutMs: 10_000, recoveryTimeoutMs: 120_000, keepaliveTimeMs: 15_000, keepaliveTimeoutMs: 10_000 });
  // Files (README "Files").
  const text: string = await sandbox.files.read('/etc/hostname');
  const bytes: Uint8Array = await sandbox.files.read('/bin/ls', { format: 'bytes' });
  const blob: Blob = await sandbox.files.read('/bin/ls', { format: 'blob' });
  const stream = await sandbox.files.read('/var/log/big.log', { format: 'stream', user: 'root' });
  for await (const chunk of stream) void (chunk satisfies Uint8Array);
  const written: WriteInfo = await sandbox.files.write('/home/user/hello.txt', 'hello');
  const entries: EntryInfo[] = await sandbox.files.write([
    { path: 'a.bin', data: new Uint8Array([1, 2, 3]) },
    { path: 'b.bin', data: new ArrayBuffer(8) },
    { path: 'c.bin', data: new Blob(['x']) },
    { path: 'd.bin', data: stream },
  ], { user: 'root', mode: 0o600 });
  const listed: EntryInfo[] = await sandbox.files.list('/home/user', { depth: 2 });
  if (listed[0]?.type === FileType.DIR) console.log(listed[0].permissions, listed[0].modifiedTime.toISOString(), listed[0].symlinkTarget);
  const there: boolean = await sandbox.files.exists('/tmp');
  const info: EntryInfo = await sandbox.files.getInfo('/tmp');
  const moved: EntryInfo = await sandbox.files.rename('/tmp/a', '/tmp/b');
  const created: boolean = await sandbox.files.makeDir('/tmp/x/y');
  await sandbox.files.remove('/tmp/x', { recursive: false });
  const watch: WatchHandle = await sandbox.files.watchDir(
    '/home/user',
    (e: FilesystemEvent) => {
      if (e.type === FilesystemEventType.WRITE) console.log(e.name);
    },
    { recursive: true, timeoutMs: 0, onExit: (err?: Error) => void err },
  );
  await watch.stop();
  try {
    await sandbox.files.read('/root/secret');
  } catch (e) {
    if (e instanceof FileNotFoundError || e instanceof PermissionError) console.log(e.message, e.code);
  }
  void [text, bytes, blob, written, entries, there, info, moved, created];
  const size: PtySize = { cols: 80, rows: 24 };
  const term: PtyHandle = await sandbox.pty.create({ ...size, onData: (d: Uint8Array) => void d, user: 'root', timeoutMs: 0 });
  await term.sendInput('ls\n');
  await term.resize({ cols: 120, rows: 40 });
  const seen: number = term.offset;
  const retaken: PtyHandle = await sandbox.pty.connect(term.pid!, { offset: seen, onData: (d) => void d.length });
  await sandbox.pty.sendInput(retaken.pid!, new Uint8Array([3]));
  await sandbox.pty.resize(retaken.pid!, size);
  const ended: boolean = await sandbox.pty.kill(retaken.pid!);
  void [ended, DEFAULT_PTY_TIMEOUT_MS];
  await sandbox.kill();
  await s2.kill();
  const agent = new AgentClient({ host: '127.0.0.1', port: 50052, token: 't' });
  const { stdout } = await agent.commands.run('uname -a');
  agent.close();
  void [code, killed, list, stdout];
}
