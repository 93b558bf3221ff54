/**
 * The types of `sandbox.files` (E2B's names and shapes), the agent's wire messages of
 * `FileService` (protocol v1.3), and how its answers and errors become the SDK's.
 */
import * as grpc from '@grpc/grpc-js';
import type { AgentConnection } from './agent.js';
import {
  FileExistsError,
  FileNotFoundError,
  InvalidArgumentError,
  NotEnoughSpaceError,
  PermissionError,
  SandboxError,
} from './errors.js';

/** What a filesystem entry is (E2B's `FileType`, plus `SYMLINK` and `OTHER`). */
export enum FileType {
  FILE = 'file',
  DIR = 'dir',
  /** A symbolic link, described rather than followed: see `symlinkTarget`. */
  SYMLINK = 'symlink',
  /** A device, socket or FIFO. */
  OTHER = 'other',
}

/** What `files.write()` returns for each file (E2B's `WriteInfo`; the SDK returns a whole {@link EntryInfo}). */
export interface WriteInfo {
  /** The last component of `path`. */
  name: string;
  type?: FileType;
  /** Absolute, as resolved in the sandbox. */
  path: string;
}

/** One entry of the sandbox's filesystem (E2B's `EntryInfo`). */
export interface EntryInfo extends WriteInfo {
  type: FileType;
  /** Bytes (for a symlink: the length of its target). */
  size: number;
  /** Permission bits with setuid, setgid and sticky (`mode & 0o7777`), e.g. `0o644`. */
  mode: number;
  /** As `ls -l` prints them: `'-rw-r--r--'`, `'drwxr-xr-x'`, `'lrwxrwxrwx'`. */
  permissions: string;
  /** The owner's name in the sandbox (its uid where it has none). */
  owner: string;
  /** The group's name in the sandbox (its gid where it has none). */
  group: string;
  uid: number;
  gid: number;
  /** Last modification. */
  modifiedTime: Date;
  /** A symlink's target, as written in the link. */
  symlinkTarget?: string;
}

/** Kinds of change `files.watchDir()` reports (E2B's `FilesystemEventType`, plus `OVERFLOW`). */
export enum FilesystemEventType {
  CREATE = 'create',
  WRITE = 'write',
  REMOVE = 'remove',
  /** The entry moved away from `name`; its new name, if inside the watch, comes as `CREATE`. */
  RENAME = 'rename',
  CHMOD = 'chmod',
  /**
   * The sandbox's kernel dropped events because they came faster than they were read
   * (`name` is `''`): list the directory again to learn its state.
   */
  OVERFLOW = 'overflow',
}

/** A change under a watched directory. */
export interface FilesystemEvent {
  /** Relative to the watched directory (`'sub/f.txt'` in a recursive watch). */
  name: string;
  type: FilesystemEventType;
}

/** Who a request runs as: `'root'`, `'user'` (the default), another name of the sandbox's /etc/passwd, or a uid. */
export type Username = 'root' | 'user' | (string & {});

/** Options of every `files` call. */
export interface FilesystemRequestOpts {
  /**
   * Who the request runs as, with exactly that user's permissions (the kernel checks
   * every path): `'root'`, `'user'`, another name of the sandbox's /etc/passwd, or a uid.
   * Unset: the sandbox's default user, `user`. A relative path is relative to that user's home.
   */
  user?: Username;
  /** Limit for the request (for `read`/`write`/`watchDir`: until the transfer or the watch starts). Default: the sandbox's `requestTimeoutMs`. */
  requestTimeoutMs?: number;
}

/** Options of `files.read()`. */
export interface FilesystemReadOpts extends FilesystemRequestOpts {
  /** `'text'` (default, UTF-8), `'bytes'` (Uint8Array), `'blob'` or `'stream'` (a web ReadableStream). */
  format?: 'text' | 'bytes' | 'blob' | 'stream';
}

/** Options of `files.write()`. */
export interface FilesystemWriteOpts extends FilesystemRequestOpts {
  /** Permission bits of the file (no umask applies). Unset: a new file gets `0o644`, a replaced one keeps its mode. */
  mode?: number;
}

/** Options of `files.list()`. */
export interface FilesystemListOpts extends FilesystemRequestOpts {
  /** How many levels down to list: 1 (default) the directory's children only. */
  depth?: number;
}

/** Options of `files.remove()`. */
export interface FilesystemRemoveOpts extends FilesystemRequestOpts {
  /**
   * Remove a directory with everything in it (default `true`, as E2B's `remove`). `false`:
   * only an empty directory is removed; a non-empty one rejects with
   * {@link InvalidArgumentError} (code `FAILED_PRECONDITION`, "directory not empty").
   */
  recursive?: boolean;
}

/** Options of `files.makeDir()`. */
export interface FilesystemMakeDirOpts extends FilesystemRequestOpts {
  /** Permission bits of the directories it creates (default `0o755`). */
  mode?: number;
}

/** Options of `files.watchDir()`. */
export interface WatchOpts extends FilesystemRequestOpts {
  /** How long the watch runs, in ms; then it ends and `onExit` gets a {@link TimeoutError} (kind `'watch'`). `0`: no limit. Default 60 000 (E2B's). */
  timeoutMs?: number;
  /** Also report changes in subdirectories (default false). */
  recursive?: boolean;
  /**
   * Called once when the watch ends: with no argument after `stop()`, with the error
   * otherwise: the directory was removed or moved (code `'watch_ended'`), the connection
   * was lost, `timeoutMs` passed ({@link TimeoutError}), or `onEvent` threw (its error).
   */
  onExit?: (err?: Error) => void | Promise<void>;
}

/** One file of `files.write([...])`. */
export interface WriteEntry {
  path: string;
  data: WriteData;
}

/** Something that hands out chunks with `getReader()`, as a web `ReadableStream` does. */
export interface ReadableStreamLike<T> {
  getReader(): {
    read(): Promise<{ done: boolean; value?: T }>;
    releaseLock(): void;
    cancel(reason?: unknown): Promise<void>;
  };
}

/** Something with a size that reads as bytes, as a `Blob` (or `File`) does. */
export interface BlobLike {
  readonly size: number;
  slice(start?: number, end?: number): { arrayBuffer(): Promise<ArrayBuffer> };
}

/**
 * What `files.write()` accepts: text (written as UTF-8), bytes, a Blob, a web
 * ReadableStream, or any async iterable of chunks (a Node `Readable`, say). Streams and
 * Blobs are sent as they are read, never gathered whole in memory.
 */
export type WriteData =
  | string
  | ArrayBuffer
  | ArrayBufferView
  | BlobLike
  | ReadableStreamLike<Uint8Array | ArrayBuffer | string>
  | AsyncIterable<Uint8Array | ArrayBuffer | string>;

/** `EntryInfo` as the agent sends it (proto-loader, longs as numbers). */
export interface WireEntry {
  name: string;
  path: string;
  type: number;
  symlinkTarget: string;
  size: number;
  mode: number;
  owner: string;
  group: string;
  modifiedAtMs: number;
  uid: number;
  gid: number;
}

/** `WatchDirEvent.kind` and `.type` on the wire. */
export const WatchKind = { STARTED: 1, KEEPALIVE: 2, FILESYSTEM: 3, OVERFLOW: 4 } as const;
const EVENT_TYPES: Record<number, FilesystemEventType> = {
  1: FilesystemEventType.CREATE,
  2: FilesystemEventType.WRITE,
  3: FilesystemEventType.REMOVE,
  4: FilesystemEventType.RENAME,
  5: FilesystemEventType.CHMOD,
};

/** The SDK's name of a wire `FsEventType`, or undefined for one this SDK does not know. */
export function eventType(wire: number): FilesystemEventType | undefined {
  return EVENT_TYPES[wire];
}

const FILE_TYPES: Record<number, FileType> = { 1: FileType.FILE, 2: FileType.DIR, 3: FileType.SYMLINK, 4: FileType.OTHER };
const TYPE_CHARS: Record<FileType, string> = { file: '-', dir: 'd', symlink: 'l', other: '?' };

/** `ls -l`'s permission string of a type and mode: `permissions(FileType.DIR, 0o1777)` is `'drwxrwxrwt'`. */
export function permissions(type: FileType, mode: number): string {
  const bit = (b: number, c: string) => (mode & b ? c : '-');
  const special = (exec: number, flag: number, set: string) =>
    mode & flag ? (mode & exec ? set : set.toUpperCase()) : bit(exec, 'x');
  return (
    TYPE_CHARS[type] +
    bit(0o400, 'r') + bit(0o200, 'w') + special(0o100, 0o4000, 's') +
    bit(0o040, 'r') + bit(0o020, 'w') + special(0o010, 0o2000, 's') +
    bit(0o004, 'r') + bit(0o002, 'w') + special(0o001, 0o1000, 't')
  );
}

/** The SDK's {@link EntryInfo} of a wire entry. */
export function toEntryInfo(e: WireEntry): EntryInfo {
  const type = FILE_TYPES[e.type] ?? FileType.OTHER;
  const mode = e.mode & 0o7777;
  return {
    name: e.name,
    type,
    path: e.path,
    size: e.size,
    mode,
    permissions: permissions(type, mode),
    owner: e.owner,
    group: e.group,
    uid: e.uid,
    gid: e.gid,
    modifiedTime: new Date(e.modifiedAtMs),
    ...(type === FileType.SYMLINK ? { symlinkTarget: e.symlinkTarget } : {}),
  };
}

/**
 * Turns a `FileService` error into the SDK's: NOT_FOUND is {@link FileNotFoundError},
 * PERMISSION_DENIED {@link PermissionError} (the kernel's refusal; a refused token is
 * UNAUTHENTICATED), ALREADY_EXISTS {@link FileExistsError}, RESOURCE_EXHAUSTED
 * {@link NotEnoughSpaceError}; INVALID_ARGUMENT, FAILED_PRECONDITION and OUT_OF_RANGE
 * {@link InvalidArgumentError} with that `code`; the rest as for commands.
 */
export function mapFileError(conn: AgentConnection, err: unknown, what: string, timeoutMs?: number): SandboxError {
  if (err instanceof SandboxError) return conn.mapError(err, what, timeoutMs);
  const e = err as Partial<grpc.ServiceError>;
  const code = typeof e.code === 'number' ? e.code : undefined;
  const details = e.details || (err as Error)?.message || String(err);
  const opts = { code: code !== undefined ? grpc.status[code] : undefined, cause: err };
  switch (code) {
    case grpc.status.NOT_FOUND:
      return new FileNotFoundError(`${what}: ${details}`, opts);
    case grpc.status.PERMISSION_DENIED:
      return new PermissionError(`${what}: ${details}`, opts);
    case grpc.status.ALREADY_EXISTS:
      return new FileExistsError(`${what}: ${details}`, opts);
    case grpc.status.RESOURCE_EXHAUSTED:
      return new NotEnoughSpaceError(`${what}: ${details}`, opts);
    case grpc.status.UNIMPLEMENTED:
      return new SandboxError(
        `${what}: the sandbox's agent at ${conn.address} has no FileService (it predates agent protocol v1.3); ` +
          'create the sandbox again from a template built with a newer agent',
        opts,
      );
    default:
      return conn.mapError(err, what, timeoutMs);
  }
}

/** Checks the `user` option as `commands.run()` does. */
export function checkUser(user: unknown): string {
  if (user === undefined) return '';
  if (typeof user !== 'string' || user === '') {
    throw new InvalidArgumentError(`user must be a non-empty user name or uid (or unset for the sandbox's default user), got ${JSON.stringify(user)}`);
  }
  return user;
}

/** Checks a path argument. */
export function checkPath(path: unknown, what = 'path'): string {
  if (typeof path !== 'string' || path === '') {
    throw new InvalidArgumentError(`${what} must be a non-empty string, got ${JSON.stringify(path)}`);
  }
  if (path.includes('\0')) throw new InvalidArgumentError(`${what} must not contain a NUL byte`);
  return path;
}

/** Checks a `mode` option: permission bits, 0 to 0o7777. */
export function checkMode(mode: unknown): number {
  if (mode === undefined) return 0;
  if (typeof mode !== 'number' || !Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
    throw new InvalidArgumentError(`mode must be permission bits from 0 to 0o7777 (e.g. 0o644), got ${String(mode)}`);
  }
  return mode;
}
