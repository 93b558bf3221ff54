/**
 * `files.write()`: one file over `FileService.Write`, a client stream of chunks of at most
 * 1 MiB, taken from the data only as fast as the agent accepts them (the call's buffer and
 * HTTP/2 flow control hold back the source), never gathered whole in memory.
 */
import type * as grpc from '@grpc/grpc-js';
import type { AgentConnection } from './agent.js';
import { AuthenticationError, ConnectionError, InvalidArgumentError, NotFoundError, SandboxError, TimeoutError } from './errors.js';
import {
  mapFileError,
  toEntryInfo,
  type BlobLike,
  type EntryInfo,
  type ReadableStreamLike,
  type WireEntry,
  type WriteData,
} from './files-types.js';

/**
 * Most data bytes per message: a little under 1 MiB, so that a message and its framing
 * fit in one HTTP/2 frame of the 1 MiB the agent accepts (its reads use the same size).
 */
export const CHUNK_BYTES = 1024 * 1024 - 1024;
/** Small chunks of a stream are gathered up to this many bytes per message. */
const GATHER_BYTES = 256 * 1024;

function isBlob(d: unknown): d is BlobLike {
  return (
    typeof d === 'object' &&
    d !== null &&
    typeof (d as BlobLike).size === 'number' &&
    typeof (d as BlobLike).slice === 'function' &&
    typeof (d as { arrayBuffer?: unknown }).arrayBuffer === 'function'
  );
}

function bytesOf(value: unknown, what: string): Buffer {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new InvalidArgumentError(`${what} gave a chunk that is not a string, ArrayBuffer or Uint8Array: ${Object.prototype.toString.call(value)}`);
}

/** Pieces of at most CHUNK_BYTES of one buffer (views, no copies). */
function* split(buf: Buffer): Generator<Buffer> {
  for (let at = 0; at < buf.length; at += CHUNK_BYTES) yield buf.subarray(at, Math.min(buf.length, at + CHUNK_BYTES));
}

/** A stream's chunks, small ones gathered, large ones split: each at most CHUNK_BYTES. */
async function* regroup(source: AsyncIterable<unknown>, what: string): AsyncGenerator<Buffer> {
  let held: Buffer[] = [];
  let heldBytes = 0;
  const flush = () => {
    const out = held.length === 1 ? held[0]! : Buffer.concat(held, heldBytes);
    held = [];
    heldBytes = 0;
    return out;
  };
  for await (const value of source) {
    const buf = bytesOf(value, what);
    if (!buf.length) continue;
    if (heldBytes && heldBytes + buf.length > GATHER_BYTES) yield flush();
    if (buf.length >= GATHER_BYTES) {
      yield* split(buf);
      continue;
    }
    held.push(buf);
    heldBytes += buf.length;
  }
  if (heldBytes) yield flush();
}

/** A web ReadableStream (or anything with `getReader()`) as an async iterable; cancelled if left early. */
async function* fromReader<T>(stream: ReadableStreamLike<T>): AsyncGenerator<T> {
  const reader = stream.getReader();
  let finished = false;
  try {
    for (;;) {
      const r = await reader.read();
      if (r.done) {
        finished = true;
        return;
      }
      yield r.value as T;
    }
  } finally {
    if (!finished) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/** The data as chunks of at most CHUNK_BYTES, read from the source only as they are asked for. */
export async function* chunksOf(data: WriteData): AsyncGenerator<Buffer> {
  if (typeof data === 'string' || data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
    yield* split(bytesOf(data, 'data'));
  } else if (isBlob(data)) {
    for (let at = 0; at < data.size; at += CHUNK_BYTES) {
      yield Buffer.from(await data.slice(at, Math.min(data.size, at + CHUNK_BYTES)).arrayBuffer());
    }
  } else if (data && typeof (data as ReadableStreamLike<unknown>).getReader === 'function') {
    yield* regroup(fromReader(data as ReadableStreamLike<unknown>), 'the ReadableStream');
  } else if (data && typeof (data as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function') {
    yield* regroup(data as AsyncIterable<unknown>, 'the async iterable');
  } else {
    throw new InvalidArgumentError(
      `files.write: data must be a string, ArrayBuffer, Uint8Array, Blob, ReadableStream or async iterable of chunks, got ${Object.prototype.toString.call(data)}`,
    );
  }
}

/**
 * Waits until the call takes more data (or failed). An agent that takes nothing for
 * `streamIdleTimeoutMs` is treated as lost: HTTP/2 keepalives only prove the connection lives.
 */
async function drained(c: grpc.ClientWritableStream<object>, failure: Promise<void>, conn: AgentConnection, path: string): Promise<void> {
  const ms = conn.options.streamIdleTimeoutMs;
  let timer: NodeJS.Timeout | undefined;
  let onDrain: () => void = () => {};
  try {
    await Promise.race([
      new Promise<void>((r) => c.once('drain', (onDrain = r))),
      failure,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new ConnectionError(`files.write: the sandbox agent at ${conn.address} took no data for ${ms} ms while writing ${path}; the file was left as it was`, { code: 'stream_idle' })),
          ms,
        );
      }),
    ]);
  } finally {
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
export async function writeFile(
  conn: AgentConnection,
  path: string,
  data: WriteData,
  header: { user: string; mode: number },
  timeoutMs: number,
): Promise<EntryInfo> {
  const what = 'files.write';
  const source = chunksOf(data);
  let sourceError: { error: unknown } | undefined;
  const pull = async () => {
    try {
      return await source.next();
    } catch (e) {
      sourceError = { error: e };
      throw e;
    }
  };
  let call: grpc.ClientWritableStream<object> | undefined;
  let failed: unknown;
  let settled = false;
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  try {
    const { client, metadata } = await conn.service('file', timeoutMs).catch((e) => {
      throw mapFileError(conn, e, what, timeoutMs);
    });
    let resolveRes!: (r: { entry: WireEntry }) => void;
    let rejectRes!: (e: unknown) => void;
    let onFailure!: () => void;
    const response = new Promise<{ entry: WireEntry }>((resolve, reject) => {
      resolveRes = resolve;
      rejectRes = reject;
    });
    response.catch(() => {});
    // Stops waiting for the call to drain as soon as it failed.
    const failure = new Promise<void>((r) => (onFailure = r));
    const c = client.Write!(metadata, (err: grpc.ServiceError | null, res: { entry: WireEntry }) => {
      if (err) {
        failed = err;
        onFailure();
        rejectRes(err);
      } else resolveRes(res);
    }) as grpc.ClientWritableStream<object>;
    call = c;
    const first = await pull();
    c.write({ path, user: header.user, mode: header.mode, data: first.done ? Buffer.alloc(0) : first.value });
    if (!first.done) {
      for (;;) {
        if (failed !== undefined) break;
        if (c.writableNeedDrain) {
          await drained(c, failure, conn, path);
          if (failed !== undefined) break;
        }
        const next = await pull();
        if (next.done) break;
        c.write({ data: next.value });
      }
    }
    if (failed === undefined) {
      c.end();
      // Once everything is handed over, the agent has requestTimeoutMs to answer.
      c.once('finish', () => {
        if (settled) return;
        timer = setTimeout(() => {
          timedOut = true;
          c.cancel();
        }, timeoutMs);
      });
    }
    const res = await response;
    if (!res.entry) throw new SandboxError(`${what}: the sandbox agent sent no entry for ${path} (a broken agent?)`, { code: 'INTERNAL' });
    return toEntryInfo(res.entry);
  } catch (e) {
    call?.cancel();
    await source.return(undefined).catch(() => {});
    // The data's own source failed: its error, as it is (the file was left as it was).
    if (sourceError && sourceError.error === e) throw e;
    if (timedOut) {
      throw new TimeoutError(
        `${what}: the sandbox agent at ${conn.address} did not confirm writing ${path} within requestTimeoutMs (${timeoutMs} ms) after all its data was sent; ` +
          'the file was left as it was. Raise requestTimeoutMs if the sandbox is just slow.',
        'request',
        { code: 'DEADLINE_EXCEEDED', cause: e },
      );
    }
    throw mapFileError(conn, e, what, timeoutMs);
  } finally {
    settled = true;
    clearTimeout(timer);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * {@link writeFile}, sent again from the start after a lost connection when the data can
 * be read again (a string, bytes or a Blob), for up to `recoveryTimeoutMs`. That is safe
 * because a write replaces the target atomically: a repeated write leaves the same file.
 * A stream's data is gone once sent, so its write fails with the {@link ConnectionError}.
 */
export async function writeFileRetrying(
  conn: AgentConnection,
  path: string,
  data: WriteData,
  header: { user: string; mode: number },
  timeoutMs: number,
): Promise<EntryInfo> {
  const replayable = typeof data === 'string' || data instanceof ArrayBuffer || ArrayBuffer.isView(data) || isBlob(data);
  let since: number | undefined;
  for (let attempt = 0; ; attempt++) {
    try {
      return await writeFile(conn, path, data, header, timeoutMs);
    } catch (e) {
      if (!replayable || !(e instanceof ConnectionError) || conn.isClosed) throw e;
      since ??= Date.now();
      if (Date.now() - since >= conn.options.recoveryTimeoutMs) throw e;
      if (attempt >= 1) {
        try {
          await conn.refresh();
        } catch (r) {
          // The sandbox is gone or no longer ours: sending again cannot succeed.
          if (r instanceof NotFoundError || r instanceof AuthenticationError) throw e;
        }
      }
      await sleep(Math.min(50 * 2 ** attempt, 1_000));
    }
  }
}
