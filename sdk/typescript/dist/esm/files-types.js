/**
 * The types of `sandbox.files` (E2B's names and shapes), the agent's wire messages of
 * `FileService` (protocol v1.3), and how its answers and errors become the SDK's.
 */
import * as grpc from '@grpc/grpc-js';
import { FileExistsError, FileNotFoundError, InvalidArgumentError, NotEnoughSpaceError, PermissionError, SandboxError, } from './errors.js';
/** What a filesystem entry is (E2B's `FileType`, plus `SYMLINK` and `OTHER`). */
export var FileType;
(function (FileType) {
    FileType["FILE"] = "file";
    FileType["DIR"] = "dir";
    /** A symbolic link, described rather than followed: see `symlinkTarget`. */
    FileType["SYMLINK"] = "symlink";
    /** A device, socket or FIFO. */
    FileType["OTHER"] = "other";
})(FileType || (FileType = {}));
/** Kinds of change `files.watchDir()` reports (E2B's `FilesystemEventType`, plus `OVERFLOW`). */
export var FilesystemEventType;
(function (FilesystemEventType) {
    FilesystemEventType["CREATE"] = "create";
    FilesystemEventType["WRITE"] = "write";
    FilesystemEventType["REMOVE"] = "remove";
    /** The entry moved away from `name`; its new name, if inside the watch, comes as `CREATE`. */
    FilesystemEventType["RENAME"] = "rename";
    FilesystemEventType["CHMOD"] = "chmod";
    /**
     * The sandbox's kernel dropped events because they came faster than they were read
     * (`name` is `''`): list the directory again to learn its state.
     */
    FilesystemEventType["OVERFLOW"] = "overflow";
})(FilesystemEventType || (FilesystemEventType = {}));
/** `WatchDirEvent.kind` and `.type` on the wire. */
export const WatchKind = { STARTED: 1, KEEPALIVE: 2, FILESYSTEM: 3, OVERFLOW: 4 };
const EVENT_TYPES = {
    1: FilesystemEventType.CREATE,
    2: FilesystemEventType.WRITE,
    3: FilesystemEventType.REMOVE,
    4: FilesystemEventType.RENAME,
    5: FilesystemEventType.CHMOD,
};
/** The SDK's name of a wire `FsEventType`, or undefined for one this SDK does not know. */
export function eventType(wire) {
    return EVENT_TYPES[wire];
}
const FILE_TYPES = { 1: FileType.FILE, 2: FileType.DIR, 3: FileType.SYMLINK, 4: FileType.OTHER };
const TYPE_CHARS = { file: '-', dir: 'd', symlink: 'l', other: '?' };
/** `ls -l`'s permission string of a type and mode: `permissions(FileType.DIR, 0o1777)` is `'drwxrwxrwt'`. */
export function permissions(type, mode) {
    const bit = (b, c) => (mode & b ? c : '-');
    const special = (exec, flag, set) => mode & flag ? (mode & exec ? set : set.toUpperCase()) : bit(exec, 'x');
    return (TYPE_CHARS[type] +
        bit(0o400, 'r') + bit(0o200, 'w') + special(0o100, 0o4000, 's') +
        bit(0o040, 'r') + bit(0o020, 'w') + special(0o010, 0o2000, 's') +
        bit(0o004, 'r') + bit(0o002, 'w') + special(0o001, 0o1000, 't'));
}
/** The SDK's {@link EntryInfo} of a wire entry. */
export function toEntryInfo(e) {
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
export function mapFileError(conn, err, what, timeoutMs) {
    if (err instanceof SandboxError)
        return conn.mapError(err, what, timeoutMs);
    const e = err;
    const code = typeof e.code === 'number' ? e.code : undefined;
    const details = e.details || err?.message || String(err);
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
            return new SandboxError(`${what}: the sandbox's agent at ${conn.address} has no FileService (it predates agent protocol v1.3); ` +
                'create the sandbox again from a template built with a newer agent', opts);
        default:
            return conn.mapError(err, what, timeoutMs);
    }
}
/** Checks the `user` option as `commands.run()` does. */
export function checkUser(user) {
    if (user === undefined)
        return '';
    if (typeof user !== 'string' || user === '') {
        throw new InvalidArgumentError(`user must be a non-empty user name or uid (or unset for the sandbox's default user), got ${JSON.stringify(user)}`);
    }
    return user;
}
/** Checks a path argument. */
export function checkPath(path, what = 'path') {
    if (typeof path !== 'string' || path === '') {
        throw new InvalidArgumentError(`${what} must be a non-empty string, got ${JSON.stringify(path)}`);
    }
    if (path.includes('\0'))
        throw new InvalidArgumentError(`${what} must not contain a NUL byte`);
    return path;
}
/** Checks a `mode` option: permission bits, 0 to 0o7777. */
export function checkMode(mode) {
    if (mode === undefined)
        return 0;
    if (typeof mode !== 'number' || !Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
        throw new InvalidArgumentError(`mode must be permission bits from 0 to 0o7777 (e.g. 0o644), got ${String(mode)}`);
    }
    return mode;
}
//# sourceMappingURL=files-types.js.map