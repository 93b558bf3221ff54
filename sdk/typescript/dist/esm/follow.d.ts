import { AgentConnection, type WireExecuteRequest } from './agent.js';
import { type CommandStatus } from './errors.js';
/** Receives decoded output: UTF-8 text, never splitting a character across calls. */
export type OutputCallback = (data: string) => void;
/** Receives output exactly as the command wrote it. */
export type BytesCallback = (data: Uint8Array) => void;
/**
 * Receives stdout and stderr together, in the order the agent recorded them (the order the
 * program wrote them), decoded as UTF-8 per stream: `stream` says which one `data` came from.
 */
export type MergedCallback = (data: string, stream: 'stdout' | 'stderr') => void;
export declare const STATUS: Record<number, CommandStatus>;
/**
 * Both channels in the order their bytes arrived, which is the agent's order (its spool's,
 * the same for a live reader and for one that resumed): delivered to `onOutput` as it
 * arrives, and, when collecting, remembered as runs of (channel, length) so that `text()`
 * rebuilds the interleaved output from each channel's collected bytes without keeping a
 * third copy of them.
 */
export declare class MergedOutput {
    private readonly onOutput;
    private readonly decoders?;
    /** Runs: +n is n bytes of stdout, -n n bytes of stderr. */
    private readonly runs?;
    constructor(onOutput: MergedCallback | undefined, collect: boolean);
    /** Bytes new on `stream`, in arrival order. */
    push(stream: 'stdout' | 'stderr', data: Buffer): void;
    /** Flushes the decoders: an incomplete character at the very end becomes U+FFFD. */
    finish(): void;
    /** The interleaved text, rebuilt from each channel's collected bytes ('' when not collecting). */
    text(stdout: Buffer, stderr: Buffer): string;
}
/**
 * One channel's receiving end: drops bytes already seen (offsets make resumes exact),
 * decodes UTF-8 with a streaming decoder, collects if asked.
 */
export declare class ChannelSink {
    readonly name: 'stdout' | 'stderr';
    private readonly onText;
    private readonly onBytes;
    private readonly merged?;
    /** The next byte offset expected: everything before it was delivered exactly once. */
    next: number;
    private readonly decoder?;
    private readonly chunks?;
    private collected;
    constructor(name: 'stdout' | 'stderr', onText: OutputCallback | undefined, onBytes: BytesCallback | undefined, collect: boolean, start?: number, merged?: MergedOutput | undefined);
    /** Delivers `data` found at `offset`, minus any prefix already delivered. */
    push(offset: number, data: Buffer): void;
    /** Flushes the decoder: an incomplete character at the very end becomes U+FFFD. */
    finish(): void;
    /** Everything collected so far, as text. */
    text(): string;
    /** Everything collected so far, as bytes (empty when not collecting). */
    bytes(): Buffer;
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
    /** Both channels in the agent's order (`onOutput`, `output`). */
    readonly merged: MergedOutput;
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
        merged: MergedOutput;
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
