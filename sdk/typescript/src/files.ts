/**
 * `sandbox.files`: read, write, list and watch a sandbox's files over gRPC straight to its
 * agent's `FileService` (agent protocol v1.3), on the sandbox's one HTTP/2 connection.
 * Every request runs with the credentials of the user it names, as that user's commands
 * would: the sandbox's kernel checks every path.
 */
import type * as grpc from '@grpc/grpc-js';
import type { AgentConnection } from './agent.js';
import { FileNotFoundError, InvalidArgumentError, type ConnectionError } from './errors.js';
import { FileDownload, MAX_BYTES, MAX_TEXT_BYTES, readAll, toWebStream } from './files-read.js';
import {
  checkMode,
  checkPath,
  checkUser,
  mapFileError,
  toEntryInfo,
  type EntryInfo,
  type FilesystemEvent,
  type FilesystemListOpts,
  type FilesystemMakeDirOpts,
  type FilesystemReadOpts,
  type FilesystemRemoveOpts,
  type FilesystemRequestOpts,
  type FilesystemWriteOpts,
  type WatchOpts,
  type WireEntry,
  type WriteData,
  type WriteEntry,
} from './files-types.js';
import { WatchHandle } from './files-watch.js';
import { writeFileRetrying } from './files-write.js';

/** E2B's default for how long a watch runs. */
const DEFAULT_WATCH_TIMEOUT_MS = 60_000;

/** A sandbox's files (`sandbox.files`). Paths are the sandbox's; a relative one is relative to the user's home. */
export class Filesystem {
  /** @internal */
  constructor(private readonly connection: AgentConnection) {}

  /** Reads a file as text (UTF-8; invalid bytes become U+FFFD). */
  read(path: string, opts?: FilesystemReadOpts & { format?: 'text' }): Promise<string>;
  /** Reads a file's bytes. */
  read(path: string, opts: FilesystemReadOpts & { format: 'bytes' }): Promise<Uint8Array>;
  /** Reads a file into a Blob. */
  read(path: string, opts: FilesystemReadOpts & { format: 'blob' }): Promise<Blob>;
  /**
   * Reads a file as a web `ReadableStream` of its bytes, resolved once the agent opened the
   * file (so a missing file rejects here). Bytes are fetched only as the stream is read;
   * cancelling the stream stops the download.
   */
  read(path: string, opts: FilesystemReadOpts & { format: 'stream' }): Promise<ReadableStream<Uint8Array>>;
  async read(path: string, opts: FilesystemReadOpts = {}): Promise<string | Uint8Array | Blob | ReadableStream<Uint8Array>> {
    checkPath(path);
    const format = opts.format ?? 'text';
    if (!['text', 'bytes', 'blob', 'stream'].includes(format)) {
      throw new InvalidArgumentError(`format must be 'text', 'bytes', 'blob' or 'stream', got ${JSON.stringify(format)}`);
    }
    const d = await FileDownload.open(this.connection, path, checkUser(opts.user), this.timeout(opts));
    switch (format) {
      case 'stream':
        return toWebStream(d);
      case 'text':
        return (await readAll(d, MAX_TEXT_BYTES, format)).toString('utf8');
      case 'bytes': {
        const b = await readAll(d, MAX_BYTES, format);
        return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
      }
      default:
        return new Blob([await readAll(d, MAX_BYTES, format)]);
    }
  }

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
  async write(
    pathOrFiles: string | WriteEntry[],
    dataOrOpts?: WriteData | FilesystemWriteOpts,
    maybeOpts?: FilesystemWriteOpts,
  ): Promise<EntryInfo | EntryInfo[]> {
    if (Array.isArray(pathOrFiles)) {
      const opts = (dataOrOpts ?? {}) as FilesystemWriteOpts;
      const header = { user: checkUser(opts.user), mode: checkMode(opts.mode) };
      pathOrFiles.forEach((f, i) => checkPath(f?.path, `files[${i}].path`));
      const out: EntryInfo[] = [];
      for (const f of pathOrFiles) out.push(await writeFileRetrying(this.connection, f.path, f.data, header, this.timeout(opts)));
      return out;
    }
    if (typeof pathOrFiles !== 'string') {
      throw new InvalidArgumentError('files.write() needs a path and data, or an array of {path, data}');
    }
    checkPath(pathOrFiles);
    if (dataOrOpts === undefined || dataOrOpts === null) throw new InvalidArgumentError(`files.write(${JSON.stringify(pathOrFiles)}) needs data to write`);
    const opts = maybeOpts ?? {};
    const header = { user: checkUser(opts.user), mode: checkMode(opts.mode) };
    return writeFileRetrying(this.connection, pathOrFiles, dataOrOpts as WriteData, header, this.timeout(opts));
  }

  /** Writes several files (E2B's `writeFiles`): the same as `write(files, opts)`. */
  writeFiles(files: WriteEntry[], opts?: FilesystemWriteOpts): Promise<EntryInfo[]> {
    return this.write(files, opts);
  }

  /**
   * A directory's entries, sorted by path: its children (`depth` 1, the default), or
   * `depth` levels down. Symlinks are listed, not followed.
   */
  async list(path: string, opts: FilesystemListOpts = {}): Promise<EntryInfo[]> {
    checkPath(path);
    const depth = opts.depth ?? 1;
    if (!Number.isInteger(depth) || depth < 1) throw new InvalidArgumentError(`depth must be a whole number >= 1, got ${depth}`);
    const res = await this.call<{ entries: WireEntry[] }>('ListDir', { path, depth, user: checkUser(opts.user) }, 'files.list', opts);
    return res.entries.map(toEntryInfo);
  }

  /** Whether the path exists (a symlink counts, even a dangling one). NOT_FOUND is `false`; other errors throw. */
  async exists(path: string, opts: FilesystemRequestOpts = {}): Promise<boolean> {
    try {
      await this.getInfo(path, opts);
      return true;
    } catch (e) {
      if (e instanceof FileNotFoundError) return false;
      throw e;
    }
  }

  /** Describes one entry; a symlink is described, not followed. */
  async getInfo(path: string, opts: FilesystemRequestOpts = {}): Promise<EntryInfo> {
    checkPath(path);
    const res = await this.call<{ entry: WireEntry }>('Stat', { path, user: checkUser(opts.user) }, 'files.getInfo', opts);
    return toEntryInfo(res.entry);
  }

  /**
   * Removes a file, a symlink (not its target) or a directory. A directory goes with
   * everything in it unless `recursive: false` (E2B's `remove` is recursive). A missing
   * path rejects with {@link FileNotFoundError}.
   */
  async remove(path: string, opts: FilesystemRemoveOpts = {}): Promise<void> {
    checkPath(path);
    await this.call('Remove', { path, recursive: opts.recursive ?? true, user: checkUser(opts.user) }, 'files.remove', opts);
  }

  /** Renames (moves) an entry, creating the destination's missing parents; resolves to the entry at its new path. */
  async rename(oldPath: string, newPath: string, opts: FilesystemRequestOpts = {}): Promise<EntryInfo> {
    checkPath(oldPath, 'oldPath');
    checkPath(newPath, 'newPath');
    const res = await this.call<{ entry: WireEntry }>('Move', { source: oldPath, destination: newPath, user: checkUser(opts.user) }, 'files.rename', opts);
    return toEntryInfo(res.entry);
  }

  /** Creates a directory and its missing parents. Resolves `false` when it already existed (nothing changed). */
  async makeDir(path: string, opts: FilesystemMakeDirOpts = {}): Promise<boolean> {
    checkPath(path);
    const res = await this.call<{ created: boolean }>(
      'MakeDir',
      { path, mode: checkMode(opts.mode), user: checkUser(opts.user) },
      'files.makeDir',
      opts,
    );
    return res.created;
  }

  /**
   * Watches a directory (and with `recursive`, its subdirectories) and calls `onEvent` for
   * each change, in order. Resolves once the watch is in place: a change made after that
   * is reported. It runs until `handle.stop()`, `timeoutMs` (default 60 s, `0` for no
   * limit) or an error; `onExit` learns which.
   */
  async watchDir(path: string, onEvent: (event: FilesystemEvent) => void | Promise<void>, opts: WatchOpts = {}): Promise<WatchHandle> {
    checkPath(path);
    if (typeof onEvent !== 'function') throw new InvalidArgumentError('files.watchDir() needs an onEvent callback');
    const timeoutMs = opts.timeoutMs ?? DEFAULT_WATCH_TIMEOUT_MS;
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) {
      throw new InvalidArgumentError(`timeoutMs must be a number of milliseconds >= 0 (0 means no limit), got ${timeoutMs}`);
    }
    const user = checkUser(opts.user);
    const requestTimeoutMs = this.timeout(opts);
    const { client, metadata } = await this.connection.service('file', requestTimeoutMs).catch((e) => {
      throw mapFileError(this.connection, e, 'files.watchDir', requestTimeoutMs);
    });
    const call = client.WatchDir!({ path, recursive: opts.recursive ?? false, user }, metadata) as grpc.ClientReadableStream<never>;
    const handle = new WatchHandle(this.connection, call, path, onEvent, opts.onExit, { requestTimeoutMs, timeoutMs });
    await handle.started;
    return handle;
  }

  private timeout(opts: FilesystemRequestOpts): number {
    const t = opts.requestTimeoutMs ?? this.connection.options.requestTimeoutMs;
    if (!Number.isFinite(t) || t <= 0) throw new InvalidArgumentError(`requestTimeoutMs must be a positive number of milliseconds, got ${t}`);
    return t;
  }

  private call<T>(method: string, request: object, what: string, opts: FilesystemRequestOpts): Promise<T> {
    const timeoutMs = this.timeout(opts);
    return this.connection.unary<T>(method, request, what, {
      service: 'file',
      timeoutMs,
      mapError: (e, w) => mapFileError(this.connection, e, w, timeoutMs),
    });
  }
}
