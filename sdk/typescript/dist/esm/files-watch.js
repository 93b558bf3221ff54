import { ConnectionError, SandboxError, TimeoutError } from './errors.js';
import { eventType, FilesystemEventType, mapFileError, WatchKind } from './files-types.js';
/** A running watch of `files.watchDir()` (E2B's `WatchHandle`). */
export class WatchHandle {
    /** @internal */
    constructor(conn, call, path, onEvent, onExit, timeouts) {
        this.conn = conn;
        this.call = call;
        this.path = path;
        this.onEvent = onEvent;
        this.onExit = onExit;
        this.timeouts = timeouts;
        this.isStarted = false;
        this.ended = false;
        this.paused = false;
        this.started = new Promise((res, rej) => {
            this.startResolve = res;
            this.startReject = rej;
        });
        this.started.catch(() => { });
        this.startTimer = setTimeout(() => this.end(new TimeoutError(`files.watchDir: the sandbox agent at ${conn.address} did not start watching ${path} within requestTimeoutMs (${timeouts.requestTimeoutMs} ms)`, 'request', { code: 'DEADLINE_EXCEEDED' })), timeouts.requestTimeoutMs);
        call.on('data', (m) => this.onMessage(m));
        call.on('error', (e) => this.end(mapFileError(conn, e, 'files.watchDir')));
        call.on('end', () => this.end(this.isStarted
            ? new SandboxError(`files.watchDir: the watch of ${path} ended: the directory was removed or moved`, { code: 'watch_ended' })
            : new SandboxError(`files.watchDir: the sandbox agent ended the watch of ${path} before it started (a broken agent?)`, { code: 'INTERNAL' })));
    }
    /** Stops watching. `onExit` is then called with no error. */
    async stop() {
        this.end(undefined);
    }
    onMessage(m) {
        if (this.ended)
            return;
        this.armIdle();
        if (!this.isStarted) {
            if (m.kind !== WatchKind.STARTED) {
                this.end(new SandboxError(`files.watchDir: the sandbox agent's first message for ${this.path} was not STARTED (a broken agent?)`, { code: 'INTERNAL' }));
                return;
            }
            this.isStarted = true;
            clearTimeout(this.startTimer);
            if (this.timeouts.timeoutMs > 0) {
                this.lifeTimer = setTimeout(() => this.end(new TimeoutError(`files.watchDir: the watch of ${this.path} ran for its timeoutMs (${this.timeouts.timeoutMs} ms) and was ended; pass timeoutMs: 0 for no limit`, 'watch', {
                    code: 'watch_timeout',
                })), this.timeouts.timeoutMs);
            }
            this.startResolve();
            return;
        }
        let event;
        if (m.kind === WatchKind.FILESYSTEM) {
            const type = eventType(m.type);
            if (type)
                event = { name: m.name, type };
        }
        else if (m.kind === WatchKind.OVERFLOW) {
            event = { name: '', type: FilesystemEventType.OVERFLOW };
        }
        if (event)
            this.deliver(event);
    }
    deliver(event) {
        let r;
        try {
            r = this.onEvent(event);
        }
        catch (e) {
            this.end(e);
            return;
        }
        if (r && typeof r.then === 'function') {
            // Hold back the next event until this one is handled.
            this.paused = true;
            clearTimeout(this.idleTimer);
            this.call.pause();
            r.then(() => {
                this.paused = false;
                if (this.ended)
                    return;
                this.armIdle();
                this.call.resume();
            }, (e) => this.end(e instanceof Error ? e : new Error(String(e))));
        }
    }
    /** A stream that carries nothing (not even the agent's keepalives) for `streamIdleTimeoutMs` is dead. */
    armIdle() {
        clearTimeout(this.idleTimer);
        if (this.paused || this.ended)
            return;
        const ms = this.conn.options.streamIdleTimeoutMs;
        this.idleTimer = setTimeout(() => this.end(new ConnectionError(`files.watchDir: no message from the sandbox agent at ${this.conn.address} for ${ms} ms while watching ${this.path}`, { code: 'connection_lost' })), ms);
    }
    end(err) {
        if (this.ended)
            return;
        this.ended = true;
        clearTimeout(this.idleTimer);
        clearTimeout(this.startTimer);
        clearTimeout(this.lifeTimer);
        this.call.cancel();
        if (!this.isStarted) {
            // watchDir() rejects; onExit is for watches that started.
            this.startReject(err ?? new SandboxError(`files.watchDir: the watch of ${this.path} was stopped before it started`));
            return;
        }
        try {
            const r = this.onExit?.(err);
            if (r && typeof r.catch === 'function')
                r.catch(() => { });
        }
        catch {
            /* onExit's own failure has nowhere to go */
        }
    }
}
//# sourceMappingURL=files-watch.js.map