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
  await sandbox.kill();
  await s2.kill();
  const agent = new AgentClient({ host: '127.0.0.1', port: 50052, token: 't' });
  const { stdout } = await agent.commands.run('uname -a');
  agent.close();
  void [code, killed, list, stdout];
}
