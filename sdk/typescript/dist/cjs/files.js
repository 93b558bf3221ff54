"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
exports.Filesystem = void 0;
const errors_js_1 = require("./errors.js");
const files_read_js_1 = require("./files-read.js");
const files_types_js_1 = require("./files-types.js");
const files_watch_js_1 = require("./files-watch.js");
const files_write_js_1 = require("./files-write.js");
/** E2B's default for how long a watch runs. */
const DEFAULT_WATCH_TIMEOUT_MS = 60_000;
/** A sandbox's files (`sandbox.files`). Paths are the sandbox's; a relative one is relative to the user's home. */
class Filesystem {
    /** @internal */
    constructor(connection) {
        this.connection = connection;
    }
    async read(path, opts = {}) {
        (0, files_types_js_1.checkPath)(path);
        const format = opts.format ?? 'text';
        if (!['text', 'bytes', 'blob', 'stream'].includes(format)) {
            throw new errors_js_1.InvalidArgumentError(`format must be 'text', 'bytes', 'blob' or 'stream', got ${JSON.stringify(format)}`);
        }
        const d = await files_read_js_1.FileDownload.open(this.connection, path, (0, files_types_js_1.checkUser)(opts.user), this.timeout(opts));
        switch (format) {
            case 'stream':
                return (0, files_read_js_1.toWebStream)(d);
            case 'text':
                return (await (0, files_read_js_1.readAll)(d, files_read_js_1.MAX_TEXT_BYTES, format)).toString('utf8');
            case 'bytes': {
                const b = await (0, files_read_js_1.readAll)(d, files_read_js_1.MAX_BYTES, format);
                return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
            }
            default:
                return new Blob([await (0, files_read_js_1.readAll)(d, files_read_js_1.MAX_BYTES, format)]);
        }
    }
    async write(pathOrFiles, dataOrOpts, maybeOpts) {
        if (Array.isArray(pathOrFiles)) {
            const opts = (dataOrOpts ?? {});
            const header = { user: (0, files_types_js_1.checkUser)(opts.user), mode: (0, files_types_js_1.checkMode)(opts.mode) };
            pathOrFiles.forEach((f, i) => (0, files_types_js_1.checkPath)(f?.path, `files[${i}].path`));
            const out = [];
            for (const f of pathOrFiles)
                out.push(await (0, files_write_js_1.writeFileRetrying)(this.connection, f.path, f.data, header, this.timeout(opts)));
            return out;
        }
        if (typeof pathOrFiles !== 'string') {
            throw new errors_js_1.InvalidArgumentError('files.write() needs a path and data, or an array of {path, data}');
        }
        (0, files_types_js_1.checkPath)(pathOrFiles);
        if (dataOrOpts === undefined || dataOrOpts === null)
            throw new errors_js_1.InvalidArgumentError(`files.write(${JSON.stringify(pathOrFiles)}) needs data to write`);
        const opts = maybeOpts ?? {};
        const header = { user: (0, files_types_js_1.checkUser)(opts.user), mode: (0, files_types_js_1.checkMode)(opts.mode) };
        return (0, files_write_js_1.writeFileRetrying)(this.connection, pathOrFiles, dataOrOpts, header, this.timeout(opts));
    }
    /** Writes several files (E2B's `writeFiles`): the same as `write(files, opts)`. */
    writeFiles(files, opts) {
        return this.write(files, opts);
    }
    /**
     * A directory's entries, sorted by path: its children (`depth` 1, the default), or
     * `depth` levels down. Symlinks are listed, not followed.
     */
    async list(path, opts = {}) {
        (0, files_types_js_1.checkPath)(path);
        const depth = opts.depth ?? 1;
        if (!Number.isInteger(depth) || depth < 1)
            throw new errors_js_1.InvalidArgumentError(`depth must be a whole number >= 1, got ${depth}`);
        const res = await this.call('ListDir', { path, depth, user: (0, files_types_js_1.checkUser)(opts.user) }, 'files.list', opts);
        return res.entries.map(files_types_js_1.toEntryInfo);
    }
    /** Whether the path exists (a symlink counts, even a dangling one). NOT_FOUND is `false`; other errors throw. */
    async exists(path, opts = {}) {
        try {
            await this.getInfo(path, opts);
            return true;
        }
        catch (e) {
            if (e instanceof errors_js_1.FileNotFoundError)
                return false;
            throw e;
        }
    }
    /** Describes one entry; a symlink is described, not followed. */
    async getInfo(path, opts = {}) {
        (0, files_types_js_1.checkPath)(path);
        const res = await this.call('Stat', { path, user: (0, files_types_js_1.checkUser)(opts.user) }, 'files.getInfo', opts);
        return (0, files_types_js_1.toEntryInfo)(res.entry);
    }
    /**
     * Removes a file, a symlink (not its target) or a directory. A directory goes with
     * everything in it unless `recursive: false` (E2B's `remove` is recursive). A missing
     * path rejects with {@link FileNotFoundError}.
     */
    async remove(path, opts = {}) {
        (0, files_types_js_1.checkPath)(path);
        await this.call('Remove', { path, recursive: opts.recursive ?? true, user: (0, files_types_js_1.checkUser)(opts.user) }, 'files.remove', opts);
    }
    /** Renames (moves) an entry, creating the destination's missing parents; resolves to the entry at its new path. */
    async rename(oldPath, newPath, opts = {}) {
        (0, files_types_js_1.checkPath)(oldPath, 'oldPath');
        (0, files_types_js_1.checkPath)(newPath, 'newPath');
        const res = await this.call('Move', { source: oldPath, destination: newPath, user: (0, files_types_js_1.checkUser)(opts.user) }, 'files.rename', opts);
        return (0, files_types_js_1.toEntryInfo)(res.entry);
    }
    /** Creates a directory and its missing parents. Resolves `false` when it already existed (nothing changed). */
    async makeDir(path, opts = {}) {
        (0, files_types_js_1.checkPath)(path);
        const res = await this.call('MakeDir', { path, mode: (0, files_types_js_1.checkMode)(opts.mode), user: (0, files_types_js_1.checkUser)(opts.user) }, 'files.makeDir', opts);
        return res.created;
    }
    /**
     * Watches a directory (and with `recursive`, its subdirectories) and calls `onEvent` for
     * each change, in order. Resolves once the watch is in place: a change made after that
     * is reported. It runs until `handle.stop()`, `timeoutMs` (default 60 s, `0` for no
     * limit) or an error; `onExit` learns which.
     */
    async watchDir(path, onEvent, opts = {}) {
        (0, files_types_js_1.checkPath)(path);
        if (typeof onEvent !== 'function')
            throw new errors_js_1.InvalidArgumentError('files.watchDir() needs an onEvent callback');
        const timeoutMs = opts.timeoutMs ?? DEFAULT_WATCH_TIMEOUT_MS;
        if (!Number.isFinite(timeoutMs) || timeoutMs < 0) {
            throw new errors_js_1.InvalidArgumentError(`timeoutMs must be a number of milliseconds >= 0 (0 means no limit), got ${timeoutMs}`);
        }
        const user = (0, files_types_js_1.checkUser)(opts.user);
        const requestTimeoutMs = this.timeout(opts);
        const { client, metadata } = await this.connection.service('file', requestTimeoutMs).catch((e) => {
            throw (0, files_types_js_1.mapFileError)(this.connection, e, 'files.watchDir', requestTimeoutMs);
        });
        const call = client.WatchDir({ path, recursive: opts.recursive ?? false, user }, metadata);
        const handle = new files_watch_js_1.WatchHandle(this.connection, call, path, onEvent, opts.onExit, { requestTimeoutMs, timeoutMs });
        await handle.started;
        return handle;
    }
    timeout(opts) {
        const t = opts.requestTimeoutMs ?? this.connection.options.requestTimeoutMs;
        if (!Number.isFinite(t) || t <= 0)
            throw new errors_js_1.InvalidArgumentError(`requestTimeoutMs must be a positive number of milliseconds, got ${t}`);
        return t;
    }
    call(method, request, what, opts) {
        const timeoutMs = this.timeout(opts);
        return this.connection.unary(method, request, what, {
            service: 'file',
            timeoutMs,
            mapError: (e, w) => (0, files_types_js_1.mapFileError)(this.connection, e, w, timeoutMs),
        });
    }
}
exports.Filesystem = Filesystem;
//# sourceMappingURL=files.js.map