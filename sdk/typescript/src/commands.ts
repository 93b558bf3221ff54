/**
 * `sandbox.commands`: run commands in a sandbox and stream their output live, resuming
 * transparently after a dropped connection.
 */
import {
  AgentConnection,
  OutputEncoding,
  type WireCommandInfo,
  type WireExecuteRequest,
} from './agent.js';
import {
  CommandExitError,
  InvalidArgumentError,
  NotFoundError,
  TimeoutError,
  type CommandExitFields,
  type CommandStatus,
} from './errors.js';
import {
  ChannelSink,
  CommandFollower,
  MergedOutput,
  STATUS,
  type BytesCallback,
  type EndMessage,
  type MergedCallback,
  type OutputCallback,
} from './follow.js';

export { ChannelSink, type BytesCallback, type MergedCallback, type OutputCallback };

/** Options of `commands.run()`. */
export interface CommandStartOptions {
  /** Called with stdout as it arrives, decoded as UTF-8 (invalid bytes become U+FFFD). */
  onStdout?: OutputCallback;
  /** Called with stderr as it arrives, decoded as UTF-8 (invalid bytes become U+FFFD). */
  onStderr?: OutputCallback;
  /** Called with stdout's raw bytes as they arrive (for binary output). */
  onStdoutBytes?: BytesCallback;
  /** Called with stderr's raw bytes as they arrive (for binary output). */
  onStderrBytes?: BytesCallback;
  /**
   * Called with stdout and stderr as they arrive, interleaved in the order the program wrote
   * them (the agent's order, also after a resume): `(data, stream)`, `stream` being
   * `'stdout'` or `'stderr'`. Decoded as UTF-8 per stream, like `onStdout` / `onStderr`.
   */
  onOutput?: MergedCallback;
  /**
   * Command timeout in milliseconds: when it runs longer, the agent kills its whole process
   * group and `run()` rejects with a `TimeoutError` of kind `'command'` (exit code 124).
   * `0` or unset: no limit (the sandbox's own lifetime still applies).
   */
  timeout?: number;
  /** Same as `timeout` (E2B's name). */
  timeoutMs?: number;
  /**
   * Who the command runs as (E2B's option): `'root'`, `'user'` (the sandbox's default user),
   * any other name from the sandbox's /etc/passwd, or a numeric uid. `HOME`, `USER`,
   * `LOGNAME` and the default `cwd` (the user's home) follow it. Unset: the sandbox's default
   * user, `user`. An unknown name rejects with {@link InvalidArgumentError}
   * ("unknown user NAME") and nothing runs. Root inside a sandbox is never root on its host.
   */
  user?: 'root' | 'user' | (string & {});
  /** Working directory; relative paths resolve against the agent's workdir (the `user`'s home when one is given). */
  cwd?: string;
  /** Environment variables added for this command. */
  envs?: Record<string, string>;
  /**
   * Standard input. A string or bytes is written at start and then stdin is closed (unless
   * `keepStdinOpen`). `true` keeps stdin open for `handle.sendStdin()` / `closeStdin()`
   * (background commands only).
   */
  stdin?: string | Uint8Array | boolean;
  /** Keep stdin open after writing `stdin`, for `sendStdin()`. Implied by `stdin: true`. */
  keepStdinOpen?: boolean;
  /**
   * Most bytes of output (stdout and stderr together) the command may print. When it
   * reaches them the agent keeps exactly that many, kills the command's whole process
   * group and `run()` rejects with a {@link CommandExitError} whose `outputLimitReached`
   * is true. Enforced in the sandbox, so it holds even when this client is gone.
   * 0 (default): only the agent's own cap (2 GiB) applies.
   */
  maxOutputBytes?: number;
  /** Run in the background: `run()` resolves at once to a {@link CommandHandle}. */
  background?: boolean;
  /**
   * Collect stdout and stderr into the result (default true). Set false for huge outputs
   * that you consume through the callbacks: memory then stays bounded whatever the size.
   */
  collectOutput?: boolean;
  /** Limit for the requests that start the command, see `requestTimeoutMs` on the sandbox. */
  requestTimeoutMs?: number;
}

/** Options of `commands.connect()`. */
export interface CommandConnectOptions {
  onStdout?: OutputCallback;
  onStderr?: OutputCallback;
  onOutput?: MergedCallback;
  onStdoutBytes?: BytesCallback;
  onStderrBytes?: BytesCallback;
  collectOutput?: boolean;
  /**
   * Where to start on each channel, in bytes. Default 0: the whole output is replayed
   * from the start (the agent keeps it), then live output follows.
   */
  stdoutOffset?: number;
  stderrOffset?: number;
}

/** A finished command (exit code 0; other codes throw {@link CommandExitError} with the same fields). */
export interface CommandResult extends CommandExitFields {}

/** A command the agent knows (running, or finished and still kept). */
export interface ProcessInfo {
  id: string;
  command: string;
  cwd: string;
  pid: number;
  running: boolean;
  /** The user it runs as, when the command was started with `user` (unset: the sandbox's default user). */
  user?: string;
  /** Its terminal's size, for a terminal (`sandbox.pty`); unset for a command on pipes. */
  pty?: { cols: number; rows: number };
  /** Unset while running. */
  status?: CommandStatus;
  exitCode?: number;
  signal?: number;
  /** True when the kernel killed it for going over the sandbox's memory limit. */
  oomKilled?: boolean;
  stdoutBytes: number;
  stderrBytes: number;
  startedAt: Date;
  finishedAt?: Date;
  truncated: boolean;
  error?: string;
}

export class CommandHandle {
  private readonly result: Promise<CommandResult>;
  private ended?: { exitCode: number; error?: string };

  /** @internal */
  constructor(
    protected readonly commands: Commands,
    protected readonly follower: CommandFollower,
    private readonly timeoutMs: number,
  ) {
    this.result = follower.done.then((end) => {
      this.ended = { exitCode: end.exitCode, ...(end.error ? { error: end.error } : {}) };
      return finishResult(follower, end, this.timeoutMs);
    });
    this.result.catch(() => {});
  }

  /** The command's id (a UUID). */
  get id(): string {
    return this.follower.commandId!;
  }

  /** The process id (also its process group id) inside the sandbox, once known. */
  get pid(): number | undefined {
    return this.follower.pid;
  }

  /** The exit code once the command ended (and its end was received), else undefined. */
  get exitCode(): number | undefined {
    return this.ended?.exitCode;
  }

  /** The agent's sentence about how the command ended, if any. */
  get error(): string | undefined {
    return this.ended?.error;
  }

  /** Stdout received so far ('' with `collectOutput: false`). */
  get stdout(): string {
    return this.follower.stdout.text();
  }

  /** Stderr received so far ('' with `collectOutput: false`). */
  get stderr(): string {
    return this.follower.stderr.text();
  }

  /** Stdout and stderr received so far, interleaved in the agent's order ('' with `collectOutput: false`). */
  get output(): string {
    return mergedText(this.follower);
  }

  /**
   * Waits for the command to end. Resolves to the result on exit code 0; rejects with
   * {@link CommandExitError} on another exit code or a signal (after `kill()` too), and with
   * {@link TimeoutError} (kind `'command'`) when its timeout killed it.
   */
  wait(): Promise<CommandResult> {
    return this.result;
  }

  /**
   * Sends a signal (default SIGKILL) to the command's whole process group.
   * Resolves false if the command had already ended or is unknown.
   */
  kill(signal = 9): Promise<boolean> {
    return this.commands.kill(this.id, signal);
  }

  /** Writes to the command's stdin (start it with `stdin: true`). */
  sendStdin(data: string | Uint8Array): Promise<void> {
    return this.commands.sendStdin(this.id, data);
  }

  /** Closes the command's stdin: it reads end-of-file. */
  closeStdin(): Promise<void> {
    return this.commands.closeStdin(this.id);
  }

  /**
   * Stops receiving output; the command keeps running in the sandbox (connect to it
   * again with `commands.connect(id)`). `wait()` then rejects.
   */
  disconnect(): void {
    this.follower.stop();
  }
}

function mergedText(f: CommandFollower): string {
  return f.merged.text(f.stdout.bytes(), f.stderr.bytes());
}

function finishResult(f: CommandFollower, end: EndMessage, timeoutMs: number): CommandResult {
  const result = {
    exitCode: end.exitCode,
    stdout: f.stdout.text(),
    stderr: f.stderr.text(),
    commandId: f.commandId!,
    status: end.status,
    truncated: end.truncated,
    ...(end.error ? { error: end.error } : {}),
    ...(end.signal ? { signal: end.signal } : {}),
    ...(end.oomKilled ? { oomKilled: true } : {}),
    ...(end.outputLimitReached ? { outputLimitReached: true } : {}),
  } as CommandResult;
  // Built when read, once: a third copy of the output only for callers who want it.
  let output: string | undefined;
  Object.defineProperty(result, 'output', { get: () => (output ??= mergedText(f)), enumerable: false });
  if (end.status === 'timed_out') {
    throw new TimeoutError(
      `command ${result.commandId} ran longer than its timeout${timeoutMs ? ` of ${timeoutMs} ms` : ''} and the agent killed its process group ` +
        `(exit code ${result.exitCode}${end.error ? `: ${end.error}` : ''}). This is the command timeout (timeoutMs); raise it, or pass 0 for no limit.`,
      'command',
      { code: 'command_timeout', result },
    );
  }
  if (result.exitCode !== 0) throw new CommandExitError(result);
  return result;
}

function toBytes(data: string | Uint8Array): Buffer {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Runs and follows commands in one sandbox. All of them share the sandbox's one connection. */
export class Commands {
  /** @internal */
  constructor(readonly connection: AgentConnection) {}

  /** Runs a command in the background and resolves at once to its handle. */
  run(command: string, options: CommandStartOptions & { background: true }): Promise<CommandHandle>;
  /**
   * Runs a command and resolves when it ends, with its exit code and output. Output reaches
   * `onStdout` / `onStderr` live. A non-zero exit code rejects with {@link CommandExitError}
   * (it carries `exitCode`, `stdout`, `stderr`); a command timeout with {@link TimeoutError}.
   */
  run(command: string, options?: CommandStartOptions & { background?: false }): Promise<CommandResult>;
  run(command: string, options?: CommandStartOptions): Promise<CommandResult | CommandHandle>;
  async run(command: string, options: CommandStartOptions = {}): Promise<CommandResult | CommandHandle> {
    if (typeof command !== 'string' || command === '') {
      throw new InvalidArgumentError('commands.run() needs a non-empty command string');
    }
    const timeoutMs = options.timeoutMs ?? options.timeout ?? 0;
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) {
      throw new InvalidArgumentError(`timeout must be a number of milliseconds >= 0 (0 means no limit), got ${timeoutMs}`);
    }
    const keepOpen = options.stdin === true || options.keepStdinOpen === true;
    const maxOutputBytes = options.maxOutputBytes ?? 0;
    if (!Number.isSafeInteger(maxOutputBytes) || maxOutputBytes < 0) {
      throw new InvalidArgumentError(`maxOutputBytes must be a whole number of bytes >= 0 (0 means the agent's own cap), got ${maxOutputBytes}`);
    }
    if (options.user !== undefined && (typeof options.user !== 'string' || options.user === '')) {
      throw new InvalidArgumentError(`user must be a non-empty user name or uid (or unset for the sandbox's default user), got ${JSON.stringify(options.user)}`);
    }
    const request: WireExecuteRequest = {
      command,
      cwd: options.cwd ?? '',
      env: options.envs ?? {},
      timeout: Math.ceil(timeoutMs),
      encoding: OutputEncoding.BYTES,
      keepStdinOpen: keepOpen,
      ...(maxOutputBytes ? { outputLimitBytes: maxOutputBytes } : {}),
      ...(options.user ? { user: options.user } : {}),
      ...(typeof options.stdin === 'string' || options.stdin instanceof Uint8Array ? { stdin: toBytes(options.stdin) } : {}),
    };
    const sinks = this.sinks(options);
    const requestTimeoutMs = options.requestTimeoutMs ?? this.connection.options.requestTimeoutMs;
    if (options.background) {
      const started = await this.connection.unary<{ commandId: string; pid: number }>('Start', request, 'starting a background command');
      const follower = new CommandFollower(this.connection, { attach: started.commandId, pid: started.pid }, sinks, requestTimeoutMs);
      return new CommandHandle(this, follower, timeoutMs);
    }
    if (keepOpen) {
      throw new InvalidArgumentError('stdin: true (keep stdin open) needs background: true, so that you can call handle.sendStdin()');
    }
    const follower = new CommandFollower(this.connection, { execute: request }, sinks, requestTimeoutMs);
    const end = await follower.done;
    return finishResult(follower, end, timeoutMs);
  }

  /**
   * Follows a command that is running (or finished and still kept) by its id. By default
   * its whole output is replayed from the start, then live output follows. Rejects with
   * {@link NotFoundError} for an unknown id.
   */
  async connect(commandId: string, options: CommandConnectOptions = {}): Promise<CommandHandle> {
    const follower = new CommandFollower(
      this.connection,
      { attach: commandId },
      this.sinks(options, options.stdoutOffset ?? 0, options.stderrOffset ?? 0),
      this.connection.options.requestTimeoutMs,
    );
    await follower.ready;
    return new CommandHandle(this, follower, 0);
  }

  /** The commands the agent knows: running ones, and finished ones it still keeps (`running: false`). */
  async list(): Promise<ProcessInfo[]> {
    const res = await this.connection.unary<{ commands: WireCommandInfo[] }>('List', {}, 'listing commands');
    return res.commands.map((c) => ({
      id: c.commandId,
      command: c.command,
      cwd: c.cwd,
      pid: c.pid,
      running: c.running,
      ...(c.user ? { user: c.user } : {}),
      ...(c.pty ? { pty: { cols: c.pty.cols, rows: c.pty.rows } } : {}),
      stdoutBytes: c.stdoutBytes,
      stderrBytes: c.stderrBytes,
      startedAt: new Date(c.startedAtMs),
      truncated: c.truncated,
      ...(c.running
        ? {}
        : {
            status: STATUS[c.status] ?? 'unknown',
            exitCode: c.exitCode,
            finishedAt: new Date(c.finishedAtMs),
            ...(c.signal ? { signal: c.signal } : {}),
            ...(c.oomKilled ? { oomKilled: true } : {}),
          }),
      ...(c.error ? { error: c.error } : {}),
    }));
  }

  /**
   * Sends a signal (default SIGKILL, 9) to a command's whole process group. Resolves true
   * if it was sent, false if the command had already ended or is unknown.
   */
  async kill(commandId: string, signal = 9): Promise<boolean> {
    try {
      await this.connection.unary('Signal', { commandId, signal }, `signalling command ${commandId}`);
      return true;
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      if (e instanceof InvalidArgumentError && (e.code === 'FAILED_PRECONDITION')) return false;
      throw e;
    }
  }

  /** Writes to a command's stdin; it must have been started with `stdin: true` and `background: true`. */
  async sendStdin(commandId: string, data: string | Uint8Array): Promise<void> {
    await this.connection.unary('WriteStdin', { commandId, data: toBytes(data) }, `writing to the stdin of command ${commandId}`);
  }

  /** Closes a command's stdin, so it reads end-of-file. */
  async closeStdin(commandId: string): Promise<void> {
    await this.connection.unary('CloseStdin', { commandId }, `closing the stdin of command ${commandId}`);
  }

  private sinks(
    o: {
      onStdout?: OutputCallback;
      onStderr?: OutputCallback;
      onStdoutBytes?: BytesCallback;
      onStderrBytes?: BytesCallback;
      onOutput?: MergedCallback;
      collectOutput?: boolean;
    },
    stdoutStart = 0,
    stderrStart = 0,
  ) {
    const collect = o.collectOutput ?? true;
    const merged = new MergedOutput(o.onOutput, collect);
    return {
      stdout: new ChannelSink('stdout', o.onStdout, o.onStdoutBytes, collect, stdoutStart, merged),
      stderr: new ChannelSink('stderr', o.onStderr, o.onStderrBytes, collect, stderrStart, merged),
      merged,
    };
  }
}
