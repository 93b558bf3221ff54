// The same examples as examples.ts, resolved as CommonJS (the "require" condition of the exports map).
// Compiled (not run) by `npm test`.
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
  FileType,
  FilesystemEventType,
  PermissionError,
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
  const handle: CommandHandle = await sandbox.commands.run('sleep 10', { background: true, stdin: true });
  await handle.sendStdin('x');
  await handle.closeStdin();
  const killed: boolean = await handle.kill();
  try {
    await handle.wait();
  } catch (e) {
    if (e instanceof CommandExitError) console.log(e.exitCode, e.stdout, e.stderr);
    if (e instanceof TimeoutError && e.kind === 'command') console.log(e.exitCode);
  }
  const procs: ProcessInfo[] = await sandbox.commands.list();
  const again: CommandHandle = await sandbox.commands.connect(procs[0]!.id, { onStdout: (d) => void d, onStdoutBytes: (b: Uint8Array) => void b });
  await again.wait();
  const list: SandboxInfo[] = await Sandbox.list();
  await sandbox.setTimeout(1000);
  await Sandbox.connect(id, { requestTimeoutMs: 10_000, recoveryTimeoutMs: 120_000, keepaliveTimeMs: 15_000, keepaliveTimeoutMs: 10_000 });
  await sandbox.kill();
  await s2.kill();
  const agent = new AgentClient({ host: '127.0.0.1', port: 50052, token: 't' });
  const { stdout } = await agent.commands.run('uname -a');
  const entries: EntryInfo[] = await agent.files.list('/tmp', { depth: 2 });
  const bytes: Uint8Array = await agent.files.read('/bin/ls', { format: 'bytes', user: 'root' });
  await agent.files.write('/tmp/x', bytes, { mode: 0o600 });
  const w = await agent.files.watchDir('/tmp', (e) => void (e.type === FilesystemEventType.CREATE), { timeoutMs: 0 });
  await w.stop();
  try {
    await agent.files.read('/root/x');
  } catch (e) {
    if (e instanceof PermissionError) console.log(e.code);
  }
  void [entries[0]?.type === FileType.DIR];
  agent.close();
  void [code, killed, list, stdout];
}
