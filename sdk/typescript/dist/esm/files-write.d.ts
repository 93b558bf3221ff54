import type { AgentConnection } from './agent.js';
import { type EntryInfo, type WriteData } from './files-types.js';
/**
 * Most data bytes per message: a little under 1 MiB, so that a message and its framing
 * fit in one HTTP/2 frame of the 1 MiB the agent accepts (its reads use the same size).
 */
export declare const CHUNK_BYTES: number;
/** The data as chunks of at most CHUNK_BYTES, read from the source only as they are asked for. */
export declare function chunksOf(data: WriteData): AsyncGenerator<Buffer>;
/**
 * Writes `data` to `path` and resolves to the file as written. The agent writes a
 * temporary file beside the target and renames it over the target only when the stream
 * ended cleanly: when anything fails (the data's source too), the call is cancelled and
 * the target stays as it was.
 */
export declare function writeFile(conn: AgentConnection, path: string, data: WriteData, header: {
    user: string;
    mode: number;
}, timeoutMs: number): Promise<EntryInfo>;
/**
 * {@link writeFile}, sent again from the start after a lost connection when the data can
 * be read again (a string, bytes or a Blob), for up to `recoveryTimeoutMs`. That is safe
 * because a write replaces the target atomically: a repeated write leaves the same file.
 * A stream's data is gone once sent, so its write fails with the {@link ConnectionError}.
 */
export declare function writeFileRetrying(conn: AgentConnection, path: string, data: WriteData, header: {
    user: string;
    mode: number;
}, timeoutMs: number): Promise<EntryInfo>;
