import { AgentConnection, type WireExecuteRequest } from './agent.js';
import { type CommandStatus } from './errors.js';
/** Receives decoded output: UTF-8 text, never splitting a character across calls. */
export type OutputCallback = (data: string) => void;
/** Receives output exactly as the command wrote it. */
export type BytesCallback = (data: Uint8Array) => void;
export declare const STATUS: Record<number, CommandStatus>;
/**
 * One channel's receiving end: drops bytes already seen (offsets make resumes exact),
 * decodes UTF-8 with a streaming decoder, collects if asked.
 */
export declare class ChannelSink {
    readonly name: 'stdout' | 'stderr';
    private readonly onText;
    private readonly onBytes;
    /** The next byte offset expected: everything before it was delivered exactly once. */
    next: number;
    private readonly decoder?;
    private readonly chunks?;
    private collected;
    constructor(name: 'stdout' | 'stderr', onText: OutputCallback | undefined, onBytes: BytesCallback | undefined, collect: boolean, start?: number);
    /** Delivers `data` found at `offset`, minus any prefix already delivered. */
    push(offset: number, data: Buffer): void;
    /** Flushes the decoder: an incomplete character at the very end becomes U+FFFD. */
    finish(): void;
    /** Everything collected so far, as text. */
    text(): string;
}
export interface EndMessage {
    exitCode: number;
    status: CommandStatus;
    signal?: number;
    oomKilled?: boolean;
    outputLimitReached?: boolean;
    error?: string;
    truncated: boolean;
}
/**
 * Follows one command's output to its end, over `Execute` (a new command) or `Attach`
 * (an existing one), and re-attaches from the last offsets after a dropped connection.
 */
export declare class CommandFollower {
    private readonly conn;
    private readonly requestTimeoutMs;
    commandId?: string;
    pid?: number;
    truncated: boolean;
    readonly stdout: ChannelSink;
    readonly stderr: ChannelSink;
    readonly done: Promise<EndMessage>;
    /** Resolves on the first message (the command is known to run), rejects if the stream fails first. */
    readonly ready: Promise<void>;
    private readyResolve;
    private readyReject;
    private isReady;
    private call?;
    private stopped;
    constructor(conn: AgentConnection, start: {
        execute: WireExecuteRequest;
    } | {
        attach: string;
        pid?: number;
    }, sinks: {
        stdout: ChannelSink;
        stderr: ChannelSink;
    }, requestTimeoutMs: number);
    private markReady;
    /** Stops following (the command keeps running in the sandbox). */
    stop(): void;
    private follow;
    private what;
    private consume;
}
/**
 * A command in progress (from `run(..., {background: true})` or `commands.connect()`).
 * Its output keeps flowing to the callbacks; `wait()` gives the result.
 */
