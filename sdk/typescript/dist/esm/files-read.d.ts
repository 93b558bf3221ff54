import { type AgentConnection } from './agent.js';
import { type EntryInfo } from './files-types.js';
/** An open download: the file's entry as opened, then its bytes from `chunks()`. */
export declare class FileDownload {
    private readonly conn;
    private readonly path;
    private readonly user;
    private readonly timeoutMs;
    /** The file as the agent opened it. */
    entry: EntryInfo;
    private wireEntry;
    private call?;
    private messages?;
    private offset;
    private cancelled;
    private constructor();
    /** Opens `path` and resolves once the agent sent its entry (rejects with the SDK's error, e.g. {@link FileNotFoundError}). */
    static open(conn: AgentConnection, path: string, user: string, timeoutMs: number): Promise<FileDownload>;
    /** The first message's data, delivered by the first `chunks()` step. */
    private pending?;
    /** Starts a `Read` from `this.offset` and waits (at most `waitMs`) for its first message, which must carry the entry. */
    private start;
    /** Stops the download (the agent stops reading the file). */
    cancel(): void;
    /**
     * The file's bytes, chunk by chunk (each at most the agent's chunk size, 1 MiB), read
     * from the agent only as they are asked for. After a dropped connection it reads on
     * from the offset it reached, for up to `recoveryTimeoutMs`, provided the file still
     * has the same size and modification time; otherwise it fails rather than splice two
     * versions of the file.
     */
    chunks(): AsyncGenerator<Buffer, void, undefined>;
    /**
     * The next message, asked for only now (the caller wants data). An agent that sends
     * nothing for `streamIdleTimeoutMs` meanwhile is treated as a dropped connection.
     */
    private nextMessage;
    /** Re-opens the file at the offset reached; throws when it cannot within `recoveryTimeoutMs`. */
    private resume;
}
/** Reads the whole file into one buffer (sized from the entry, grown if the file grew). */
export declare function readAll(d: FileDownload, limit: number, format: string): Promise<Buffer>;
/** The largest string and buffer this Node can make. */
export declare const MAX_TEXT_BYTES: number;
export declare const MAX_BYTES: number;
/**
 * A web ReadableStream of the file's bytes that reads from the agent only when its reader
 * asks (highWaterMark 0: nothing is fetched ahead of demand); cancelling it stops the download.
 */
export declare function toWebStream(d: FileDownload): ReadableStream<Uint8Array>;
