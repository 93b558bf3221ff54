/**
 * Errors thrown by the SDK. Every error is a {@link SandboxError}; catch the subclasses
 * to tell causes apart. Messages say what went wrong and what to do about it.
 */
/** Base class of every error the SDK throws. */
export declare class SandboxError extends Error {
    /** The server's error code (`not_found`, `unauthorized`, …) or a gRPC status name. */
    readonly code?: string;
    /** The HTTP status of a failed REST call, if any. */
    readonly httpStatus?: number;
    constructor(message: string, options?: {
        code?: string;
        httpStatus?: number;
        cause?: unknown;
    });
}
/** The API key (server) or the sandbox token (agent) was missing or refused. */
export declare class AuthenticationError extends SandboxError {
}
/** The sandbox, command or route does not exist (or belongs to another tenant). */
export declare class NotFoundError extends SandboxError {
}
/** A request was malformed or refused as invalid (for instance a `cwd` that does not exist). */
export declare class InvalidArgumentError extends SandboxError {
}
/** A file or directory in the sandbox does not exist (E2B's name). A {@link NotFoundError}. */
export declare class FileNotFoundError extends NotFoundError {
}
/**
 * The user a `files` request ran as may not do that to the path: the sandbox's kernel
 * refused it (a file only root may read, a directory it may not write to, a symlink to
 * either). Run it as another user (`{ user: 'root' }`) or change the permissions.
 */
export declare class PermissionError extends SandboxError {
}
/** The path already exists where the request needs it not to (for instance a file where a directory is wanted). */
export declare class FileExistsError extends SandboxError {
}
/**
 * The sandbox has no room for what was written (its disk is full), or it is larger than
 * the agent accepts (E2B's name; the message says which).
 */
export declare class NotEnoughSpaceError extends SandboxError {
}
/**
 * The sandbox agent could not be reached, or the connection was lost and could not be
 * re-established within the recovery window.
 */
export declare class ConnectionError extends SandboxError {
}
/** Why a {@link TimeoutError} happened. */
export type TimeoutKind = 
/** A single request (REST call or agent RPC) took longer than `requestTimeoutMs`. */
'request'
/** The command ran longer than its `timeoutMs`; the agent killed its process group. */
 | 'command'
/** A `files.watchDir()` ran for its `timeoutMs` and was ended. */
 | 'watch';
/**
 * Something took too long. `kind` tells the two timeouts apart:
 * - `'request'`: one REST call or agent RPC exceeded `requestTimeoutMs`; nothing was killed.
 * - `'command'`: the command exceeded its own `timeoutMs` and the agent killed it (exit code
 *   124). `exitCode`, `stdout` and `stderr` then hold what it produced before.
 */
export declare class TimeoutError extends SandboxError {
    readonly kind: TimeoutKind;
    readonly exitCode?: number;
    readonly stdout?: string;
    readonly stderr?: string;
    readonly commandId?: string;
    constructor(message: string, kind: TimeoutKind, options?: {
        code?: string;
        cause?: unknown;
        result?: {
            exitCode: number;
            stdout: string;
            stderr: string;
            commandId?: string;
        };
    });
}
/** How a command ended. */
export type CommandStatus = 'exited' | 'signaled' | 'timed_out' | 'failed' | 'unknown';
/** The fields of a finished command; see `CommandResult` in commands. */
export interface CommandExitFields {
    /** The exit code: 0 on success; 128+N after signal N; 124 after a timeout. */
    exitCode: number;
    /** Everything the command wrote to stdout, decoded as UTF-8 ('' when `collectOutput: false`). */
    stdout: string;
    /** Everything the command wrote to stderr, decoded as UTF-8 ('' when `collectOutput: false`). */
    stderr: string;
    /**
     * Stdout and stderr interleaved in the order the program wrote them (the agent's order),
     * each decoded as UTF-8 ('' when `collectOutput: false`). Built when first read.
     */
    readonly output: string;
    /** The agent's sentence about how it ended, when there is one. */
    error?: string;
    /** The command's id (a UUID): use it with `commands.connect()`. */
    commandId: string;
    /** How the command ended. */
    status: CommandStatus;
    /** The signal that ended it, if one did. */
    signal?: number;
    /**
     * True when the kernel's out-of-memory killer ended it (or a process of its group) because
     * the sandbox went over its memory limit (`Sandbox.create({memoryMb})`).
     */
    oomKilled?: boolean;
    /**
     * True when the output reached `maxOutputBytes` and the agent killed the command's
     * process group: `stdout` and `stderr` hold exactly that many bytes together.
     */
    outputLimitReached?: boolean;
    /** True when the agent's output cap cut the output. */
    truncated: boolean;
}
/**
 * A command ended with a non-zero exit code (or was killed by a signal). It carries the same
 * fields as a `CommandResult` (`exitCode`, `stdout`, `stderr`, `error`), as E2B's does.
 * Pass nothing special to get it: `commands.run()` throws it; catch it to inspect the output.
 */
export declare class CommandExitError extends SandboxError implements CommandExitFields {
    #private;
    readonly exitCode: number;
    readonly stdout: string;
    readonly stderr: string;
    readonly error?: string;
    readonly commandId: string;
    readonly status: CommandStatus;
    readonly signal?: number;
    readonly oomKilled?: boolean;
    readonly outputLimitReached?: boolean;
    readonly truncated: boolean;
    constructor(result: CommandExitFields);
    get output(): string;
}
