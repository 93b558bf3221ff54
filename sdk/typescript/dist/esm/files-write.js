import { AuthenticationError, ConnectionError, InvalidArgumentError, NotFoundError, SandboxError, TimeoutError } from './errors.js';
import { mapFileError, toEntryInfo, } from './files-types.js';
/**
 * Most data bytes per message: a little under 1 MiB, so that a message and its framing
 * fit in one HTTP/2 frame of the 1 MiB the agent accepts (its reads use the same size).
 */
export const CHUNK_BYTES = 1024 * 1024 - 1024;
/** Small chunks of a stream are gathered up to this many bytes per message. */
const GATHER_BYTES = 256 * 1024;
function isBlob(d) {
    return (typeof d === 'object' &&
        d !== null &&
        typeof d.size === 'number' &&
        typeof d.slice === 'function' &&
        typeof d.arrayBuffer === 'function');
}
function bytesOf(value, what) {
    if (typeof value === 'string')
        return Buffer.from(value, 'utf8');
    if (value instanceof ArrayBuffer)
        return Buffer.from(value);
    if (ArrayBuffer.isView(value))
        return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    throw new InvalidArgumentError(`${what} gave a chunk that is not a string, ArrayBuffer or Uint8Array: ${Object.prototype.toString.call(value)}`);
}
/** Pieces of at most CHUNK_BYTES of one buffer (views, no copies). */
function* split(buf) {
    for (let at = 0; at < buf.length; at += CHUNK_BYTES)
        yield buf.subarray(at, Math.min(buf.length, at + CHUNK_BYTES));
}
/** A stream's chunks, small ones gathered, large ones split: each at most CHUNK_BYTES. */
async function* regroup(source, what) {
    let held = [];
    let heldBytes = 0;
    const flush = () => {
        const out = held.length === 1 ? held[0] : Buffer.concat(held, heldBytes);
        held = [];
        heldBytes = 0;
        return out;
    };
    for await (const value of source) {
        const buf = bytesOf(value, what);
        if (!buf.length)
            continue;
        if (heldBytes && heldBytes + buf.length > GATHER_BYTES)
            yield flush();
        if (buf.length >= GATHER_BYTES) {
            yield* split(buf);
            continue;
        }
        held.push(buf);
        heldBytes += buf.length;
    }
    if (heldBytes)
        yield flush();
}
/** A web ReadableStream (or anything with `getReader()`) as an async iterable; cancelled if left early. */
async function* fromReader(stream) {
    const reader = stream.getReader();
    let finished = false;
    try {
        for (;;) {
            const r = await reader.read();
            if (r.done) {
                finished = true;
                return;
            }
            yield r.value;
        }
    }
    finally {
        if (!finished)
            await reader.cancel().catch(() => { });
        reader.releaseLock();
    }
}
/** The data as chunks of at most CHUNK_BYTES, read from the source only as they are asked for. */
export async function* chunksOf(data) {
    if (typeof data === 'string' || data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
        yield* split(bytesOf(data, 'data'));
    }
    else if (isBlob(data)) {
        for (let at = 0; at < data.size; at += CHUNK_BYTES) {
            yield Buffer.from(await data.slice(at, Math.min(data.size, at + CHUNK_BYTES)).arrayBuffer());
        }
    }
    else if (data && typeof data.getReader === 'function') {
        yield* regroup(fromReader(data), 'the ReadableStream');
    }
    else if (data && typeof data[Symbol.asyncIterator] === 'function') {
        yield* regroup(data, 'the async iterable');
    }
    else {
        throw new InvalidArgumentError(`files.write: data must be a string, ArrayBuffer, Uint8Array, Blob, ReadableStream or async iterable of chunks, got ${Object.prototype.toString.call(data)}`);
    }
}
/**
 * Waits until the call takes more data (or failed). An agent that takes nothing for
 * `streamIdleTimeoutMs` is treated as lost: HTTP/2 keepalives only prove the connection lives.
 */
async function drained(c, failure, conn, path) {
    const ms = conn.options.streamIdleTimeoutMs;
    let timer;
    let onDrain = () => { };
    try {
        await Promise.race([
            new Promise((r) => c.once('drain', (onDrain = r))),
            failure,
            new Promise((_, reject) => {
                timer = setTimeout(() => reject(new ConnectionError(`files.write: the sandbox agent at ${conn.address} took no data for ${ms} ms while writing ${path}; the file was left as it was`, { code: 'stream_idle' })), ms);
            }),
        ]);
    }
    finally {
        clearTimeout(timer);
        c.off('drain', onDrain);
    }
}
/**
 * Writes `data` to `path` and resolves to the file as written. The agent writes a
 * temporary file beside the target and renames it over the target only when the stream
 * ended cleanly: when anything fails (the data's source too), the call is cancelled and
 * the target stays as it was.
 */
export async function writeFile(conn, path, data, header, timeoutMs) {
    const what = 'files.write';
    const source = chunksOf(data);
    let sourceError;
    const pull = async () => {
        try {
            return await source.next();
        }
        catch (e) {
            sourceError = { error: e };
            throw e;
        }
    };
    let call;
    let failed;
    let settled = false;
    let timedOut = false;
    let timer;
    try {
        const { client, metadata } = await conn.service('file', timeoutMs).catch((e) => {
            throw mapFileError(conn, e, what, timeoutMs);
        });
        let resolveRes;
        let rejectRes;
        let onFailure;
        const response = new Promise((resolve, reject) => {
            resolveRes = resolve;
            rejectRes = reject;
        });
        response.catch(() => { });
        // Stops waiting for the call to drain as soon as it failed.
        const failure = new Promise((r) => (onFailure = r));
        const c = client.Write(metadata, (err, res) => {
            if (err) {
                failed = err;
                onFailure();
                rejectRes(err);
            }
            else
                resolveRes(res);
        });
        call = c;
        const first = await pull();
        c.write({ path, user: header.user, mode: header.mode, data: first.done ? Buffer.alloc(0) : first.value });
        if (!first.done) {
            for (;;) {
                if (failed !== undefined)
                    break;
                if (c.writableNeedDrain) {
                    await drained(c, failure, conn, path);
                    if (failed !== undefined)
                        break;
                }
                const next = await pull();
                if (next.done)
                    break;
                c.write({ data: next.value });
            }
        }
        if (failed === undefined) {
            c.end();
            // Once everything is handed over, the agent has requestTimeoutMs to answer.
            c.once('finish', () => {
                if (settled)
                    return;
                timer = setTimeout(() => {
                    timedOut = true;
                    c.cancel();
                }, timeoutMs);
            });
        }
        const res = await response;
        if (!res.entry)
            throw new SandboxError(`${what}: the sandbox agent sent no entry for ${path} (a broken agent?)`, { code: 'INTERNAL' });
        return toEntryInfo(res.entry);
    }
    catch (e) {
        call?.cancel();
        await source.return(undefined).catch(() => { });
        // The data's own source failed: its error, as it is (the file was left as it was).
        if (sourceError && sourceError.error === e)
            throw e;
        if (timedOut) {
            throw new TimeoutError(`${what}: the sandbox agent at ${conn.address} did not confirm writing ${path} within requestTimeoutMs (${timeoutMs} ms) after all its data was sent; ` +
                'the file was left as it was. Raise requestTimeoutMs if the sandbox is just slow.', 'request', { code: 'DEADLINE_EXCEEDED', cause: e });
        }
        throw mapFileError(conn, e, what, timeoutMs);
    }
    finally {
        settled = true;
        clearTimeout(timer);
    }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/**
 * {@link writeFile}, sent again from the start after a lost connection when the data can
 * be read again (a string, bytes or a Blob), for up to `recoveryTimeoutMs`. That is safe
 * because a write replaces the target atomically: a repeated write leaves the same file.
 * A stream's data is gone once sent, so its write fails with the {@link ConnectionError}.
 */
export async function writeFileRetrying(conn, path, data, header, timeoutMs) {
    const replayable = typeof data === 'string' || data instanceof ArrayBuffer || ArrayBuffer.isView(data) || isBlob(data);
    let since;
    for (let attempt = 0;; attempt++) {
        try {
            return await writeFile(conn, path, data, header, timeoutMs);
        }
        catch (e) {
            if (!replayable || !(e instanceof ConnectionError) || conn.isClosed)
                throw e;
            since ??= Date.now();
            if (Date.now() - since >= conn.options.recoveryTimeoutMs)
                throw e;
            if (attempt >= 1) {
                try {
                    await conn.refresh();
                }
                catch (r) {
                    // The sandbox is gone or no longer ours: sending again cannot succeed.
                    if (r instanceof NotFoundError || r instanceof AuthenticationError)
                        throw e;
                }
            }
            await sleep(Math.min(50 * 2 ** attempt, 1_000));
        }
    }
}
//# sourceMappingURL=files-write.js.map