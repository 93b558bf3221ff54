import { CommandHandle, type Commands } from './commands.js';
import { ChannelSink, CommandFollower, type BytesCallback } from './follow.js';
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
export declare const DEFAULT_PTY_TIMEOUT_MS = 60000;
/** A terminal: a {@link CommandHandle} (`pid`, `wait()`, `kill()`, `disconnect()`) that takes input and resizes. */
export declare class PtyHandle extends CommandHandle {
    private readonly sink;
    /** @internal */
    constructor(commands: Commands, follower: CommandFollower, timeoutMs: number, sink: ChannelSink);
    /** @internal Resolves once the agent answered (the terminal exists). */
    ready(): Promise<void>;
    /** Output bytes received so far, counted from the terminal's start: `pty.connect(pid, { offset })` resumes after them. */
    get offset(): number;
    /** Types into the terminal (a string is sent as UTF-8; `'\x03'` is Ctrl-C). */
    sendInput(data: string | Uint8Array): Promise<void>;
    /** Changes the terminal's size; its programs get SIGWINCH. */
    resize(size: PtySize): Promise<void>;
}
/** Starts and follows terminals in one sandbox, on the sandbox's one connection. */
export declare class Pty {
    private readonly commands;
    /** Command ids by pid, for the terminals this client started or connected to. */
    private readonly ids;
    /** @internal */
    constructor(commands: Commands);
    /**
     * Starts a terminal and resolves at once to its handle; output reaches `onData` live.
     *
     * ```ts
     * const term = await sandbox.pty.create({ cols: 80, rows: 24, onData: (d) => process.stdout.write(d) })
     * await term.sendInput('echo $((6*7))\n')
     * ```
     */
    create(opts: PtyCreateOpts): Promise<PtyHandle>;
    /**
     * Follows a terminal again by its pid (after a dropped connection, a page reload, from
     * another process). Rejects with {@link NotFoundError} when no terminal has that pid.
     */
    connect(pid: number, opts?: PtyConnectOpts): Promise<PtyHandle>;
    /** Types into the terminal with this pid. */
    sendInput(pid: number, data: string | Uint8Array): Promise<void>;
    /** Resizes the terminal with this pid. */
    resize(pid: number, size: PtySize): Promise<void>;
    /** Kills the terminal with this pid (its whole session). Resolves false if it had ended or is unknown. */
    kill(pid: number, signal?: number): Promise<boolean>;
    private follow;
    /** The command id of the terminal with this pid: known here, else the newest the agent lists. */
    private idOf;
}
