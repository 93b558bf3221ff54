/**
 * Errors thrown by the SDK. Every error is a {@link SandboxError}; catch the subclasses
 * to tell causes apart. Messages say what went wrong and what to do about it.
 */
var __classPrivateFieldSet = (this && this.__classPrivateFieldSet) || function (receiver, state, value, kind, f) {
    if (kind === "m") throw new TypeError("Private method is not writable");
    if (kind === "a" && !f) throw new TypeError("Private accessor was defined without a setter");
    if (typeof state === "function" ? receiver !== state || !f : !state.has(receiver)) throw new TypeError("Cannot write private member to an object whose class did not declare it");
    return (kind === "a" ? f.call(receiver, value) : f ? f.value = value : state.set(receiver, value)), value;
};
var __classPrivateFieldGet = (this && this.__classPrivateFieldGet) || function (receiver, state, kind, f) {
    if (kind === "a" && !f) throw new TypeError("Private accessor was defined without a getter");
    if (typeof state === "function" ? receiver !== state || !f : !state.has(receiver)) throw new TypeError("Cannot read private member from an object whose class did not declare it");
    return kind === "m" ? f : kind === "a" ? f.call(receiver) : f ? f.value : state.get(receiver);
};
var _CommandExitError_result;
/** Base class of every error the SDK throws. */
export class SandboxError extends Error {
    constructor(message, options) {
        super(message);
        this.name = new.target.name;
        if (options?.code !== undefined)
            this.code = options.code;
        if (options?.httpStatus !== undefined)
            this.httpStatus = options.httpStatus;
        if (options?.cause !== undefined)
            this.cause = options.cause;
    }
}
/** The API key (server) or the sandbox token (agent) was missing or refused. */
export class AuthenticationError extends SandboxError {
}
/** The sandbox, command or route does not exist (or belongs to another tenant). */
export class NotFoundError extends SandboxError {
}
/** A request was malformed or refused as invalid (for instance a `cwd` that does not exist). */
export class InvalidArgumentError extends SandboxError {
}
/** A file or directory in the sandbox does not exist (E2B's name). A {@link NotFoundError}. */
export class FileNotFoundError extends NotFoundError {
}
/**
 * The user a `files` request ran as may not do that to the path: the sandbox's kernel
 * refused it (a file only root may read, a directory it may not write to, a symlink to
 * either). Run it as another user (`{ user: 'root' }`) or change the permissions.
 */
export class PermissionError extends SandboxError {
}
/** The path already exists where the request needs it not to (for instance a file where a directory is wanted). */
export class FileExistsError extends SandboxError {
}
/**
 * The sandbox has no room for what was written (its disk is full), or it is larger than
 * the agent accepts (E2B's name; the message says which).
 */
export class NotEnoughSpaceError extends SandboxError {
}
/**
 * The sandbox agent could not be reached, or the connection was lost and could not be
 * re-established within the recovery window.
 */
export class ConnectionError extends SandboxError {
}
/**
 * Something took too long. `kind` tells the two timeouts apart:
 * - `'request'`: one REST call or agent RPC exceeded `requestTimeoutMs`; nothing was killed.
 * - `'command'`: the command exceeded its own `timeoutMs` and the agent killed it (exit code
 *   124). `exitCode`, `stdout` and `stderr` then hold what it produced before.
 */
export class TimeoutError extends SandboxError {
    constructor(message, kind, options) {
        super(message, options);
        this.kind = kind;
        if (options?.result) {
            this.exitCode = options.result.exitCode;
            this.stdout = options.result.stdout;
            this.stderr = options.result.stderr;
            this.commandId = options.result.commandId;
        }
    }
}
/**
 * A command ended with a non-zero exit code (or was killed by a signal). It carries the same
 * fields as a `CommandResult` (`exitCode`, `stdout`, `stderr`, `error`), as E2B's does.
 * Pass nothing special to get it: `commands.run()` throws it; catch it to inspect the output.
 */
export class CommandExitError extends SandboxError {
    constructor(result) {
        const how = result.outputLimitReached
            ? `printed more than its maxOutputBytes, so the agent stopped it (exit code ${result.exitCode}); ` +
                'raise maxOutputBytes, or print less'
            : result.oomKilled
                ? `was killed by the kernel for going over the sandbox's memory limit (out of memory, exit code ${result.exitCode}); ` +
                    'use less memory or create the sandbox with a larger memoryMb'
                : result.status === 'signaled'
                    ? `was killed by signal ${result.signal} (exit code ${result.exitCode})`
                    : result.status === 'failed'
                        ? `was lost by the agent (exit code ${result.exitCode})`
                        : `exited with code ${result.exitCode}`;
        const detail = result.error ? `: ${result.error}` : '';
        const tail = lastLine(result.stderr);
        super(`command ${how}${detail}${tail ? `; last stderr line: ${tail}` : ''}`, { code: 'command_exit' });
        _CommandExitError_result.set(this, void 0);
        this.exitCode = result.exitCode;
        this.stdout = result.stdout;
        this.stderr = result.stderr;
        // Kept to read `output` from when asked (it is built then).
        __classPrivateFieldSet(this, _CommandExitError_result, result, "f");
        if (result.error !== undefined)
            this.error = result.error;
        this.commandId = result.commandId;
        this.status = result.status;
        if (result.signal !== undefined)
            this.signal = result.signal;
        if (result.oomKilled)
            this.oomKilled = true;
        if (result.outputLimitReached)
            this.outputLimitReached = true;
        this.truncated = result.truncated;
    }
    get output() {
        return __classPrivateFieldGet(this, _CommandExitError_result, "f").output;
    }
}
_CommandExitError_result = new WeakMap();
function lastLine(s) {
    const lines = s.split('\n').filter((l) => l.trim() !== '');
    const last = lines.length ? lines[lines.length - 1].trim() : '';
    return last.length > 200 ? `${last.slice(0, 200)}…` : last;
}
//# sourceMappingURL=errors.js.map