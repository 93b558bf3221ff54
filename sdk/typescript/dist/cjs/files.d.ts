import type { AgentConnection } from './agent.js';
import { type EntryInfo, type FilesystemEvent, type FilesystemListOpts, type FilesystemMakeDirOpts, type FilesystemReadOpts, type FilesystemRemoveOpts, type FilesystemRequestOpts, type FilesystemWriteOpts, type WatchOpts, type WriteData, type WriteEntry } from './files-types.js';
import { WatchHandle } from './files-watch.js';
/** A sandbox's files (`sandbox.files`). Paths are the sandbox's; a relative one is relative to the user's home. */
export declare class Filesystem {
    private readonly connection;
    /** @internal */
    constructor(connection: AgentConnection);
    /** Reads a file as text (UTF-8; invalid bytes become U+FFFD). */
    read(path: string, opts?: FilesystemReadOpts & {
        format?: 'text';
    }): Promise<string>;
    /** Reads a file's bytes. */
    read(path: string, opts: FilesystemReadOpts & {
        format: 'bytes';
    }): Promise<Uint8Array>;
    /** Reads a file into a Blob. */
    read(path: string, opts: FilesystemReadOpts & {
        format: 'blob';
    }): Promise<Blob>;
    /**
     * Reads a file as a web `ReadableStream` of its bytes, resolved once the agent opened the
     * file (so a missing file rejects here). Bytes are fetched only as the stream is read;
     * cancelling the stream stops the download.
     */
    read(path: string, opts: FilesystemReadOpts & {
        format: 'stream';
    }): Promise<ReadableStream<Uint8Array>>;
    /**
     * Writes a file, creating its missing parent directories, and resolves to the file as
     * written. The agent writes beside the target and replaces it atomically once all the
     * data arrived: a write that fails leaves the target as it was. `data` is sent in chunks
     * of at most 1 MiB as it is read (a stream's or Blob's data is never held whole). After a
     * lost connection a string, bytes or a Blob is sent again (within `recoveryTimeoutMs`);
     * a stream's write rejects with {@link ConnectionError}.
     */
    write(path: string, data: WriteData, opts?: FilesystemWriteOpts): Promise<EntryInfo>;
    /** Writes several files, one after the other; resolves to their entries in the same order. */
    write(files: WriteEntry[], opts?: FilesystemWriteOpts): Promise<EntryInfo[]>;
    /** Writes several files (E2B's `writeFiles`): the same as `write(files, opts)`. */
    writeFiles(files: WriteEntry[], opts?: FilesystemWriteOpts): Promise<EntryInfo[]>;
    /**
     * A directory's entries, sorted by path: its children (`depth` 1, the default), or
     * `depth` levels down. Symlinks are listed, not followed.
     */
    list(path: string, opts?: FilesystemListOpts): Promise<EntryInfo[]>;
    /** Whether the path exists (a symlink counts, even a dangling one). NOT_FOUND is `false`; other errors throw. */
    exists(path: string, opts?: FilesystemRequestOpts): Promise<boolean>;
    /** Describes one entry; a symlink is described, not followed. */
    getInfo(path: string, opts?: FilesystemRequestOpts): Promise<EntryInfo>;
    /**
     * Removes a file, a symlink (not its target) or a directory. A directory goes with
     * everything in it unless `recursive: false` (E2B's `remove` is recursive). A missing
     * path rejects with {@link FileNotFoundError}.
     */
    remove(path: string, opts?: FilesystemRemoveOpts): Promise<void>;
    /** Renames (moves) an entry, creating the destination's missing parents; resolves to the entry at its new path. */
    rename(oldPath: string, newPath: string, opts?: FilesystemRequestOpts): Promise<EntryInfo>;
    /** Creates a directory and its missing parents. Resolves `false` when it already existed (nothing changed). */
    makeDir(path: string, opts?: FilesystemMakeDirOpts): Promise<boolean>;
    /**
     * Watches a directory (and with `recursive`, its subdirectories) and calls `onEvent` for
     * each change, in order. Resolves once the watch is in place: a change made after that
     * is reported. It runs until `handle.stop()`, `timeoutMs` (default 60 s, `0` for no
     * limit) or an error; `onExit` learns which.
     */
    watchDir(path: string, onEvent: (event: FilesystemEvent) => void | Promise<void>, opts?: WatchOpts): Promise<WatchHandle>;
    private timeout;
    private call;
}
