"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
exports.Commands = exports.CommandHandle = exports.ChannelSink = void 0;
/**
 * `sandbox.commands`: run commands in a sandbox and stream their output live, resuming
 * transparently after a dropped connection.
 */
const agent_js_1 = require("./agent.js");
const errors_js_1 = require("./errors.js");
const follow_js_1 = require("./follow.js");
Object.defineProperty(exports, "ChannelSink", { enumerable: true, get: function () { return follow_js_1.ChannelSink; } });
class CommandHandle {
    /** @internal */
    constructor(commands, follower, timeoutMs) {
        this.commands = commands;
        this.follower = follower;
        this.timeoutMs = timeoutMs;
        this.result = follower.done.then((end) => {
            this.ended = { exitCode: end.exitCode, ...(end.error ? { error: end.error } : {}) };
            return finishResult(follower, end, this.timeoutMs);
        });
        this.result.catch(() => { });
    }
    /** The command's id (a UUID). */
    get id() {
        return this.follower.commandId;
    }
    /** The process id (also its process group id) inside the sandbox, once known. */
    get pid() {
        return this.follower.pid;
    }
    /** The exit code once the command ended (and its end was received), else undefined. */
    get exitCode() {
        return this.ended?.exitCode;
    }
    /** The agent's sentence about how the command ended, if any. */
    get error() {
        return this.ended?.error;
    }
    /** Stdout received so far ('' with `collectOutput: false`). */
    get stdout() {
        return this.follower.stdout.text();
    }
    /** Stderr received so far ('' with `collectOutput: false`). */
    get stderr() {
        return this.follower.stderr.text();
    }
    /** Stdout and stderr received so far, interleaved in the agent's order ('' with `collectOutput: false`). */
    get output() {
        return mergedText(this.follower);
    }
    /**
     * Waits for the command to end. Resolves to the result on exit code 0; rejects with
     * {@link CommandExitError} on another exit code or a signal (after `kill()` too), and with
     * {@link TimeoutError} (kind `'command'`) when its timeout killed it.
     */
    wait() {
        return this.result;
    }
    /**
     * Sends a signal (default SIGKILL) to the command's whole process group.
     * Resolves false if the command had already ended or is unknown.
     */
    kill(signal = 9) {
        return this.commands.kill(this.id, signal);
    }
    /** Writes to the command's stdin (start it with `stdin: true`). */
    sendStdin(data) {
        return this.commands.sendStdin(this.id, data);
    }
    /** Closes the command's stdin: it reads end-of-file. */
    closeStdin() {
        return this.commands.closeStdin(this.id);
    }
    /**
     * Stops receiving output; the command keeps running in the sandbox (connect to it
     * again with `commands.connect(id)`). `wait()` then rejects.
     */
    disconnect() {
        this.follower.stop();
    }
}
exports.CommandHandle = CommandHandle;
function mergedText(f) {
    return f.merged.text(f.stdout.bytes(), f.stderr.bytes());
}
function finishResult(f, end, timeoutMs) {
    const result = {
        exitCode: end.exitCode,
        stdout: f.stdout.text(),
        stderr: f.stderr.text(),
        commandId: f.commandId,
        status: end.status,
        truncated: end.truncated,
        ...(end.error ? { error: end.error } : {}),
        ...(end.signal ? { signal: end.signal } : {}),
        ...(end.oomKilled ? { oomKilled: true } : {}),
        ...(end.outputLimitReached ? { outputLimitReached: true } : {}),
    };
    // Built when read, once: a third copy of the output only for callers who want it.
    let output;
    Object.defineProperty(result, 'output', { get: () => (output ??= mergedText(f)), enumerable: false });
    if (end.status === 'timed_out') {
        throw new errors_js_1.TimeoutError(`command ${result.commandId} ran longer than its timeout${timeoutMs ? ` of ${timeoutMs} ms` : ''} and the agent killed its process group ` +
            `(exit code ${result.exitCode}${end.error ? `: ${end.error}` : ''}). This is the command timeout (timeoutMs); raise it, or pass 0 for no limit.`, 'command', { code: 'command_timeout', result });
    }
    if (result.exitCode !== 0)
        throw new errors_js_1.CommandExitError(result);
    return result;
}
function toBytes(data) {
    return typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
/** Runs and follows commands in one sandbox. All of them share the sandbox's one connection. */
class Commands {
    /** @internal */
    constructor(connection) {
        this.connection = connection;
    }
    async run(command, options = {}) {
        if (typeof command !== 'string' || command === '') {
            throw new errors_js_1.InvalidArgumentError('commands.run() needs a non-empty command string');
        }
        const timeoutMs = options.timeoutMs ?? options.timeout ?? 0;
        if (!Number.isFinite(timeoutMs) || timeoutMs < 0) {
            throw new errors_js_1.InvalidArgumentError(`timeout must be a number of milliseconds >= 0 (0 means no limit), got ${timeoutMs}`);
        }
        const keepOpen = options.stdin === true || options.keepStdinOpen === true;
        const maxOutputBytes = options.maxOutputBytes ?? 0;
        if (!Number.isSafeInteger(maxOutputBytes) || maxOutputBytes < 0) {
            throw new errors_js_1.InvalidArgumentError(`maxOutputBytes must be a whole number of bytes >= 0 (0 means the agent's own cap), got ${maxOutputBytes}`);
        }
        if (options.user !== undefined && (typeof options.user !== 'string' || options.user === '')) {
            throw new errors_js_1.InvalidArgumentError(`user must be a non-empty user name or uid (or unset for the sandbox's default user), got ${JSON.stringify(options.user)}`);
        }
        const request = {
            command,
            cwd: options.cwd ?? '',
            env: options.envs ?? {},
            timeout: Math.ceil(timeoutMs),
            encoding: agent_js_1.OutputEncoding.BYTES,
            keepStdinOpen: keepOpen,
            ...(maxOutputBytes ? { outputLimitBytes: maxOutputBytes } : {}),
            ...(options.user ? { user: options.user } : {}),
            ...(typeof options.stdin === 'string' || options.stdin instanceof Uint8Array ? { stdin: toBytes(options.stdin) } : {}),
        };
        const sinks = this.sinks(options);
        const requestTimeoutMs = options.requestTimeoutMs ?? this.connection.options.requestTimeoutMs;
        if (options.background) {
            const started = await this.connection.unary('Start', request, 'starting a background command');
            const follower = new follow_js_1.CommandFollower(this.connection, { attach: started.commandId, pid: started.pid }, sinks, requestTimeoutMs);
            return new CommandHandle(this, follower, timeoutMs);
        }
        if (keepOpen) {
            throw new errors_js_1.InvalidArgumentError('stdin: true (keep stdin open) needs background: true, so that you can call handle.sendStdin()');
        }
        const follower = new follow_js_1.CommandFollower(this.connection, { execute: request }, sinks, requestTimeoutMs);
        const end = await follower.done;
        return finishResult(follower, end, timeoutMs);
    }
    /**
     * Follows a command that is running (or finished and still kept) by its id. By default
     * its whole output is replayed from the start, then live output follows. Rejects with
     * {@link NotFoundError} for an unknown id.
     */
    async connect(commandId, options = {}) {
        const follower = new follow_js_1.CommandFollower(this.connection, { attach: commandId }, this.sinks(options, options.stdoutOffset ?? 0, options.stderrOffset ?? 0), this.connection.options.requestTimeoutMs);
        await follower.ready;
        return new CommandHandle(this, follower, 0);
    }
    /** The commands the agent knows: running ones, and finished ones it still keeps (`running: false`). */
    async list() {
        const res = await this.connection.unary('List', {}, 'listing commands');
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
                    status: follow_js_1.STATUS[c.status] ?? 'unknown',
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
    async kill(commandId, signal = 9) {
        try {
            await this.connection.unary('Signal', { commandId, signal }, `signalling command ${commandId}`);
            return true;
        }
        catch (e) {
            if (e instanceof errors_js_1.NotFoundError)
                return false;
            if (e instanceof errors_js_1.InvalidArgumentError && (e.code === 'FAILED_PRECONDITION'))
                return false;
            throw e;
        }
    }
    /** Writes to a command's stdin; it must have been started with `stdin: true` and `background: true`. */
    async sendStdin(commandId, data) {
        await this.connection.unary('WriteStdin', { commandId, data: toBytes(data) }, `writing to the stdin of command ${commandId}`);
    }
    /** Closes a command's stdin, so it reads end-of-file. */
    async closeStdin(commandId) {
        await this.connection.unary('CloseStdin', { commandId }, `closing the stdin of command ${commandId}`);
    }
    sinks(o, stdoutStart = 0, stderrStart = 0) {
        const collect = o.collectOutput ?? true;
        const merged = new follow_js_1.MergedOutput(o.onOutput, collect);
        return {
            stdout: new follow_js_1.ChannelSink('stdout', o.onStdout, o.onStdoutBytes, collect, stdoutStart, merged),
            stderr: new follow_js_1.ChannelSink('stderr', o.onStderr, o.onStderrBytes, collect, stderrStart, merged),
            merged,
        };
    }
}
exports.Commands = Commands;
//# sourceMappingURL=commands.js.map