/**
 * `files.watchDir()`: a `FileService.WatchDir` stream turned into `onEvent` calls, in the
 * agent's order, one at a time (an `onEvent` that returns a promise holds back the next
 * event until it settles), until `stop()`, the watch's `timeoutMs`, or an error.
 */
import type * as grpc from '@grpc/grpc-js';
import type { AgentConnection } from './agent.js';
import { type FilesystemEvent } from './files-types.js';
interface WireWatchEvent {
    kind: number;
    type: number;
    name: string;
}
/** A running watch of `files.watchDir()` (E2B's `WatchHandle`). */
export declare class WatchHandle {
    private readonly conn;
    private readonly call;
    private readonly path;
    private readonly onEvent;
    private readonly onExit;
    private readonly timeouts;
    /** @internal Resolves once the agent said the watch is in place. */
    readonly started: Promise<void>;
    private startResolve;
    private startReject;
    private isStarted;
    private ended;
    private paused;
    private idleTimer?;
    private startTimer?;
    private lifeTimer?;
    /** @internal */
    constructor(conn: AgentConnection, call: grpc.ClientReadableStream<WireWatchEvent>, path: string, onEvent: (event: FilesystemEvent) => void | Promise<void>, onExit: ((err?: Error) => void | Promise<void>) | undefined, timeouts: {
        requestTimeoutMs: number;
        timeoutMs: number;
    });
    /** Stops watching. `onExit` is then called with no error. */
    stop(): Promise<void>;
    private onMessage;
    private deliver;
    /** A stream that carries nothing (not even the agent's keepalives) for `streamIdleTimeoutMs` is dead. */
    private armIdle;
    private end;
}
export {};
