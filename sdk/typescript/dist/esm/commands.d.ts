/**
 * `sandbox.commands`: run commands in a sandbox and stream their output live, resuming
 * transparently after a dropped connection.
 */
import { AgentConnection } from './agent.js';
import { type CommandExitFields, type CommandStatus } from './errors.js';
import { ChannelSink, CommandFollower, type BytesCallback, type MergedCallback, type OutputCallback } from './follow.js';
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
export interface CommandResult extends CommandExitFields {
}
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
    pty?: {
        cols: number;
        rows: number;
    };
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
export declare class CommandHandle {
    protected readonly commands: Commands;
    protected readonly follower: CommandFollower;
    private readonly timeoutMs;
    private readonly result;
    private ended?;
    /** @internal */
    constructor(commands: Commands, follower: CommandFollower, timeoutMs: number);
    /** The command's id (a UUID). */
    get id(): string;
    /** The process id (also its process group id) inside the sandbox, once known. */
    get pid(): number | undefined;
    /** The exit code once the command ended (and its end was received), else undefined. */
    get exitCode(): number | undefined;
    /** The agent's sentence about how the command ended, if any. */
    get error(): string | undefined;
    /** Stdout received so far ('' with `collectOutput: false`). */
    get stdout(): string;
    /** Stderr received so far ('' with `collectOutput: false`). */
    get stderr(): string;
    /** Stdout and stderr received so far, interleaved in the agent's order ('' with `collectOutput: false`). */
    get output(): string;
    /**
     * Waits for the command to end. Resolves to the result on exit code 0; rejects with
     * {@link CommandExitError} on another exit code or a signal (after `kill()` too), and with
     * {@link TimeoutError} (kind `'command'`) when its timeout killed it.
     */
    wait(): Promise<CommandResult>;
    /**
     * Sends a signal (default SIGKILL) to the command's whole process group.
     * Resolves false if the command had already ended or is unknown.
     */
    kill(signal?: number): Promise<boolean>;
    /** Writes to the command's stdin (start it with `stdin: true`). */
    sendStdin(data: string | Uint8Array): Promise<void>;
    /** Closes the command's stdin: it reads end-of-file. */
    closeStdin(): Promise<void>;
    /**
     * Stops receiving output; the command keeps running in the sandbox (connect to it
     * again with `commands.connect(id)`). `wait()` then rejects.
     */
    disconnect(): void;
}
/** Runs and follows commands in one sandbox. All of them share the sandbox's one connection. */
export declare class Commands {
    readonly connection: AgentConnection;
    /** @internal */
    constructor(connection: AgentConnection);
    /** Runs a command in the background and resolves at once to its handle. */
    run(command: string, options: CommandStartOptions & {
        background: true;
    }): Promise<CommandHandle>;
    /**
     * Runs a command and resolves when it ends, with its exit code and output. Output reaches
     * `onStdout` / `onStderr` live. A non-zero exit code rejects with {@link CommandExitError}
     * (it carries `exitCode`, `stdout`, `stderr`); a command timeout with {@link TimeoutError}.
     */
    run(command: string, options?: CommandStartOptions & {
        background?: false;
    }): Promise<CommandResult>;
    run(command: string, options?: CommandStartOptions): Promise<CommandResult | CommandHandle>;
    /**
     * Follows a command that is running (or finished and still kept) by its id. By default
     * its whole output is replayed from the start, then live output follows. Rejects with
     * {@link NotFoundError} for an unknown id.
     */
    connect(commandId: string, options?: CommandConnectOptions): Promise<CommandHandle>;
    /** The commands the agent knows: running ones, and finished ones it still keeps (`running: false`). */
    list(): Promise<ProcessInfo[]>;
    /**
     * Sends a signal (default SIGKILL, 9) to a command's whole process group. Resolves true
     * if it was sent, false if the command had already ended or is unknown.
     */
    kill(commandId: string, signal?: number): Promise<boolean>;
    /** Writes to a command's stdin; it must have been started with `stdin: true` and `background: true`. */
    sendStdin(commandId: string, data: string | Uint8Array): Promise<void>;
    /** Closes a command's stdin, so it reads end-of-file. */
    closeStdin(commandId: string): Promise<void>;
    private sinks;
}
