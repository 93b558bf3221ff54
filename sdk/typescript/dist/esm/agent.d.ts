/**
 * The connection to one sandbox's agent: one gRPC channel (one HTTP/2 connection) that
 * carries every command of the sandbox, authenticated with the sandbox token.
 */
import * as grpc from '@grpc/grpc-js';
import { SandboxError } from './errors.js';
/** Where a sandbox's agent listens and the token that opens it (`GET /api/v1/sandboxes/{id}/connection`). */
export interface ConnectionInfo {
    host: string;
    port: number;
    token: string;
}
/** Options of the agent connection. All durations are in milliseconds. */
export interface AgentConnectionOptions {
    /**
     * Limit for one request: a unary agent RPC (`Start`, `List`, `Signal`, …), the wait for
     * the agent to confirm a command started, and every REST call. Not a limit on how long a
     * command may run (that is the command's `timeoutMs`). Default 30 000.
     */
    requestTimeoutMs?: number;
    /**
     * How long the SDK keeps trying to reconnect and resume a command's output after the
     * connection dropped, before it gives up with a `ConnectionError`. Default 60 000.
     */
    recoveryTimeoutMs?: number;
    /** HTTP/2 keepalive ping interval (`grpc.keepalive_time_ms`). Default 15 000. */
    keepaliveTimeMs?: number;
    /** How long to wait for a keepalive ping's answer (`grpc.keepalive_timeout_ms`). Default 10 000. */
    keepaliveTimeoutMs?: number;
    /**
     * A command stream that carries nothing (the agent sends a keepalive message every 10 s
     * on a silent stream) for this long is treated as a dead connection and resumed. Default 45 000.
     */
    streamIdleTimeoutMs?: number;
    /**
     * Largest HTTP/2 frame the agent may send (SETTINGS_MAX_FRAME_SIZE), 16 384 to 16 777 215.
     * Default 1 MiB, as PROTOCOL.md recommends: bulk output then costs the agent and this
     * process far less CPU. grpc-js has no option for it, so the SDK adds the setting to the
     * HTTP/2 sessions that grpc-js opens to this agent's address (and to no other). 0 leaves
     * HTTP/2's default of 16 KiB.
     */
    maxFrameSize?: number;
    /** HTTP/2 flow-control window advertised to the agent (`grpc-node.flow_control_window`). Default 16 MiB. */
    flowControlWindowBytes?: number;
    /** Extra grpc-js channel options, merged over the SDK's. */
    channelOptions?: grpc.ChannelOptions;
}
export declare const DEFAULT_REQUEST_TIMEOUT_MS = 30000;
export declare const DEFAULT_RECOVERY_TIMEOUT_MS = 60000;
/** The agent's services: `exec` (commands) and `file` (files, protocol v1.3). */
export type AgentService = 'exec' | 'file';
/** Wire enums (numbers, as proto-loader gives them). */
export declare const EventKind: {
    readonly OUTPUT: 0;
    readonly STARTED: 1;
    readonly KEEPALIVE: 2;
    readonly END: 3;
    readonly TRUNCATED: 4;
    readonly SESSION_OPENED: 5;
};
export declare const OutputChannel: {
    readonly STDOUT: 0;
    readonly STDERR: 1;
};
export declare const OutputEncoding: {
    readonly TEXT: 0;
    readonly BYTES: 1;
};
export declare const ExitStatus: {
    readonly UNSPECIFIED: 0;
    readonly EXITED: 1;
    readonly SIGNALED: 2;
    readonly TIMED_OUT: 3;
    readonly FAILED: 4;
};
/** A `CommandOutput` message as proto-loader decodes it. */
export interface WireOutput {
    line: string;
    channel: number;
    end: boolean;
    exitCode: number;
    data: Buffer;
    offset: number;
    commandId: string;
    kind: number;
    status: number;
    signal: number;
    error: string;
    stdoutBytes: number;
    stderrBytes: number;
    truncated: boolean;
    pid: number;
    oomKilled: boolean;
    outputLimitReached: boolean;
}
export interface WireExecuteRequest {
    command: string;
    cwd?: string;
    env?: Record<string, string>;
    timeout?: number;
    encoding?: number;
    stdin?: Uint8Array;
    keepStdinOpen?: boolean;
    outputLimitBytes?: number;
    user?: string;
    pty?: {
        cols: number;
        rows: number;
    };
}
export interface WireCommandInfo {
    commandId: string;
    command: string;
    cwd: string;
    pid: number;
    running: boolean;
    status: number;
    exitCode: number;
    signal: number;
    stdoutBytes: number;
    stderrBytes: number;
    startedAtMs: number;
    finishedAtMs: number;
    truncated: boolean;
    error: string;
    oomKilled: boolean;
    user: string;
    pty?: {
        cols: number;
        rows: number;
    } | null;
}
export type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;
/** Where the connection gets its {host, port, token}: fixed, or fetched (and fetched again after a failure). */
export type ConnectionSource = ConnectionInfo | (() => Promise<ConnectionInfo>);
/**
 * One HTTP/2 connection to a sandbox agent. Created lazily on the first call; all
 * commands of the sandbox share it. `refresh()` fetches the connection info again (when a
 * provider was given) and switches to the new address or token if it changed.
 */
export declare class AgentConnection {
    readonly options: Required<Omit<AgentConnectionOptions, 'channelOptions'>> & {
        channelOptions: grpc.ChannelOptions;
    };
    private info?;
    private client?;
    /** The FileService client, on the same channel (the same HTTP/2 connection) as `client`. */
    private fileClient?;
    private metadata?;
    private pending?;
    private closed;
    private readonly provider?;
    constructor(source: ConnectionSource, options?: AgentConnectionOptions);
    /** The address currently in use, for messages (`host:port`, or `(not connected)`). */
    get address(): string;
    /** The connection info currently in use, fetching it first if needed. */
    connectionInfo(): Promise<ConnectionInfo>;
    private ensure;
    private open;
    /**
     * Fetches the connection info again (if it comes from a provider) and reconnects if it
     * changed. Concurrent callers share one fetch. Without a provider, nothing happens.
     */
    refresh(): Promise<void>;
    /** Closes the connection. Streams in progress fail; the commands keep running in the sandbox. */
    close(): void;
    get isClosed(): boolean;
    /**
     * Waits until the HTTP/2 connection is up, at most `withinMs`. Costs nothing when it is
     * (the common case); otherwise the first call does not fail just because the sandbox's
     * agent is still starting, or the connection is being re-established.
     */
    private whenReady;
    /** Opens a server stream (`Execute`, `Attach`) once connected (waiting at most `readyWithinMs`). */
    stream(method: 'Execute' | 'Attach', request: object, readyWithinMs?: number): Promise<grpc.ClientReadableStream<WireOutput>>;
    /**
     * The client of `service` and the call metadata, once connected (waiting at most
     * `readyWithinMs`), for calls that manage their own streams.
     */
    service(service: AgentService, readyWithinMs?: number): Promise<{
        client: AnyClient;
        metadata: grpc.Metadata;
    }>;
    /**
     * A unary call with the request deadline (`opts.timeoutMs`, default `requestTimeoutMs`);
     * errors are mapped to SDK errors (by `opts.mapError`, default {@link mapError}).
     */
    unary<T>(method: string, request: object, what: string, opts?: {
        service?: AgentService;
        timeoutMs?: number;
        mapError?: (err: unknown, what: string) => SandboxError;
    }): Promise<T>;
    /** Turns a gRPC error into an SDK error whose message says what to do. */
    mapError(err: unknown, what: string, timeoutMs?: number): SandboxError;
}
/** Errors after which a command stream is resumed rather than failed. */
export declare function isTransient(err: unknown): boolean;
