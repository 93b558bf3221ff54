/**
 * `sandbox.pty`: interactive terminals in a sandbox (E2B's shape). A terminal is a command
 * on a pseudo-terminal: its output is one byte stream, kept by the agent and resumable from
 * any offset; input is written in order; the size can change at any time.
 */
import { OutputEncoding, type WireCommandInfo, type WireExecuteRequest } from './agent.js';
import { CommandHandle, type Commands } from './commands.js';
import { InvalidArgumentError, NotFoundError } from './errors.js';
import { ChannelSink, CommandFollower, MergedOutput, type BytesCallback } from './follow.js';

/** A terminal's size in character cells (each 1 to 10,000). */
export interface PtySize {
  cols: number;
  rows: number;
}

/** Options of `pty.create()`. */
export interface PtyCreateOpts extends PtySize {
  /** Called with the terminal's output bytes as they arrive (escape sequences included). */
  onData?: BytesCallback;
  /**
   * What to run on the terminal, as a shell line. Default: the user's shell as an
   * interactive login shell (`bash -i -l` in the default template).
   */
  cmd?: string;
  /** Working directory (default: the user's home). */
  cwd?: string;
  /** Environment variables added; `TERM` is `xterm-256color` unless set here. */
  envs?: Record<string, string>;
  /** Who the terminal's programs run as: `'user'` (default), `'root'`, a name or a uid. */
  user?: 'root' | 'user' | (string & {});
  /**
   * How long the terminal may live, in milliseconds, after which the agent kills it.
   * Default 60,000 (E2B's); `0` means no limit (the sandbox's lifetime still applies).
   */
  timeoutMs?: number;
  /** Limit for the requests that start the terminal, see `requestTimeoutMs` on the sandbox. */
  requestTimeoutMs?: number;
}

/** Options of `pty.connect()`. */
export interface PtyConnectOpts {
  /** Called with the terminal's output bytes as they arrive. */
  onData?: BytesCallback;
  /**
   * How many of the terminal's output bytes you already have: output resumes right after
   * them, without loss or duplicates (`handle.offset` of the earlier handle). Default 0:
   * everything the terminal printed is replayed first, then live output follows.
   */
  offset?: number;
}

/** The default `timeoutMs` of `pty.create()`, E2B's. */
export const DEFAULT_PTY_TIMEOUT_MS = 60_000;

/** A terminal: a {@link CommandHandle} (`pid`, `wait()`, `kill()`, `disconnect()`) that takes input and resizes. */
export class PtyHandle extends CommandHandle {
  /** @internal */
  constructor(
    commands: Commands,
    follower: CommandFollower,
    timeoutMs: number,
    private readonly sink: ChannelSink,
  ) {
    super(commands, follower, timeoutMs);
  }

  /** @internal Resolves once the agent answered (the terminal exists). */
  ready(): Promise<void> {
    return this.follower.ready;
  }

  /** Output bytes received so far, counted from the terminal's start: `pty.connect(pid, { offset })` resumes after them. */
  get offset(): number {
    return this.sink.next;
  }

  /** Types into the terminal (a string is sent as UTF-8; `'\x03'` is Ctrl-C). */
  sendInput(data: string | Uint8Array): Promise<void> {
    return this.commands.sendStdin(this.id, data);
  }

  /** Changes the terminal's size; its programs get SIGWINCH. */
  async resize(size: PtySize): Promise<void> {
    checkSize(size);
    await this.commands.connection.unary('ResizePty', { commandId: this.id, size: { cols: size.cols, rows: size.rows } }, `resizing the terminal of command ${this.id}`);
  }
}

function checkSize(size: PtySize): void {
  const ok = (v: unknown) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 10_000;
  if (!size || !ok(size.cols) || !ok(size.rows)) {
    throw new InvalidArgumentError(`a terminal's cols and rows must be whole numbers from 1 to 10000, got ${JSON.stringify({ cols: size?.cols, rows: size?.rows })}`);
  }
}

/** Starts and follows terminals in one sandbox, on the sandbox's one connection. */
export class Pty {
  /** Command ids by pid, for the terminals this client started or connected to. */
  private readonly ids = new Map<number, string>();

  /** @internal */
  constructor(private readonly commands: Commands) {}

  /**
   * Starts a terminal and resolves at once to its handle; output reaches `onData` live.
   *
   * ```ts
   * const term = await sandbox.pty.create({ cols: 80, rows: 24, onData: (d) => process.stdout.write(d) })
   * await term.sendInput('echo $((6*7))\n')
   * ```
   */
  async create(opts: PtyCreateOpts): Promise<PtyHandle> {
    checkSize(opts);
    const timeoutMs = opts.timeoutMs ?? DEFAULT_PTY_TIMEOUT_MS;
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) {
      throw new InvalidArgumentError(`timeoutMs must be a number of milliseconds >= 0 (0 means no limit), got ${timeoutMs}`);
    }
    if (opts.user !== undefined && (typeof opts.user !== 'string' || opts.user === '')) {
      throw new InvalidArgumentError(`user must be a non-empty user name or uid (or unset for the sandbox's default user), got ${JSON.stringify(opts.user)}`);
    }
    const request: WireExecuteRequest = {
      command: opts.cmd ?? '',
      cwd: opts.cwd ?? '',
      env: opts.envs ?? {},
      timeout: Math.ceil(timeoutMs),
      encoding: OutputEncoding.BYTES,
      keepStdinOpen: true,
      pty: { cols: opts.cols, rows: opts.rows },
      ...(opts.user ? { user: opts.user } : {}),
    };
    const conn = this.commands.connection;
    const started = await conn.unary<{ commandId: string; pid: number }>('Start', request, 'starting a terminal', opts.requestTimeoutMs !== undefined ? { timeoutMs: opts.requestTimeoutMs } : {});
    this.ids.set(started.pid, started.commandId);
    return this.follow(started.commandId, started.pid, opts.onData, 0, timeoutMs, opts.requestTimeoutMs);
  }

  /**
   * Follows a terminal again by its pid (after a dropped connection, a page reload, from
   * another process). Rejects with {@link NotFoundError} when no terminal has that pid.
   */
  async connect(pid: number, opts: PtyConnectOpts = {}): Promise<PtyHandle> {
    const offset = opts.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new InvalidArgumentError(`offset must be a whole number of bytes >= 0, got ${offset}`);
    }
    const id = await this.idOf(pid);
    const handle = this.follow(id, pid, opts.onData, offset, 0);
    await handle.ready();
    return handle;
  }

  /** Types into the terminal with this pid. */
  async sendInput(pid: number, data: string | Uint8Array): Promise<void> {
    await this.commands.sendStdin(await this.idOf(pid), data);
  }

  /** Resizes the terminal with this pid. */
  async resize(pid: number, size: PtySize): Promise<void> {
    checkSize(size);
    const id = await this.idOf(pid);
    await this.commands.connection.unary('ResizePty', { commandId: id, size: { cols: size.cols, rows: size.rows } }, `resizing the terminal of command ${id}`);
  }

  /** Kills the terminal with this pid (its whole session). Resolves false if it had ended or is unknown. */
  async kill(pid: number, signal = 9): Promise<boolean> {
    let id: string;
    try {
      id = await this.idOf(pid);
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
    return this.commands.kill(id, signal);
  }

  private follow(id: string, pid: number, onData: BytesCallback | undefined, offset: number, timeoutMs: number, requestTimeoutMs?: number): PtyHandle {
    const merged = new MergedOutput(undefined, false);
    const sink = new ChannelSink('stdout', undefined, onData, false, offset, merged);
    const unused = new ChannelSink('stderr', undefined, undefined, false, 0, merged);
    const follower = new CommandFollower(
      this.commands.connection,
      { attach: id, pid },
      { stdout: sink, stderr: unused, merged },
      requestTimeoutMs ?? this.commands.connection.options.requestTimeoutMs,
    );
    return new PtyHandle(this.commands, follower, timeoutMs, sink);
  }

  /** The command id of the terminal with this pid: known here, else the newest the agent lists. */
  private async idOf(pid: number): Promise<string> {
    if (!Number.isSafeInteger(pid) || pid <= 0) throw new InvalidArgumentError(`pid must be a positive whole number, got ${pid}`);
    const known = this.ids.get(pid);
    if (known) return known;
    const res = await this.commands.connection.unary<{ commands: WireCommandInfo[] }>('List', {}, 'listing commands');
    const found = res.commands.filter((c) => c.pid === pid && c.pty).pop();
    if (!found) throw new NotFoundError(`no terminal with pid ${pid} in this sandbox`);
    this.ids.set(pid, found.commandId);
    return found.commandId;
  }
}
