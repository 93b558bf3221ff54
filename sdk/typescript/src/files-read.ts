/**
 * `files.read()`: a file's bytes over `FileService.Read`, pulled chunk by chunk as the
 * caller consumes them (so a stream's reader sets the pace, down to the agent's disk
 * reads, through HTTP/2 flow control), and resumed from the offset reached after a
 * dropped connection.
 */
import type * as grpc from '@grpc/grpc-js';
import { constants as bufferConstants } from 'node:buffer';
import { isTransient, type AgentConnection } from './agent.js';
import { AuthenticationError, ConnectionError, NotFoundError, SandboxError, TimeoutError } from './errors.js';
import { mapFileError, toEntryInfo, type EntryInfo, type WireEntry } from './files-types.js';

interface WireReadResponse {
  entry?: WireEntry | null;
  data: Buffer;
  offset: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** An open download: the file's entry as opened, then its bytes from `chunks()`. */
export class FileDownload {
  /** The file as the agent opened it. */
  entry!: EntryInfo;
  private wireEntry!: WireEntry;
  private call?: grpc.ClientReadableStream<WireReadResponse>;
  private messages?: AsyncIterator<WireReadResponse>;
  private offset = 0;
  private cancelled = false;

  private constructor(
    private readonly conn: AgentConnection,
    private readonly path: string,
    private readonly user: string,
    private readonly timeoutMs: number,
  ) {}

  /** Opens `path` and resolves once the agent sent its entry (rejects with the SDK's error, e.g. {@link FileNotFoundError}). */
  static async open(conn: AgentConnection, path: string, user: string, timeoutMs: number): Promise<FileDownload> {
    const d = new FileDownload(conn, path, user, timeoutMs);
    try {
      const first = await d.start(timeoutMs);
      d.wireEntry = first.entry!;
      d.entry = toEntryInfo(first.entry!);
      d.pending = first;
    } catch (e) {
      d.cancel();
      throw mapFileError(conn, e, `files.read`, timeoutMs);
    }
    return d;
  }

  /** The first message's data, delivered by the first `chunks()` step. */
  private pending?: WireReadResponse;

  /** Starts a `Read` from `this.offset` and waits (at most `waitMs`) for its first message, which must carry the entry. */
  private async start(waitMs: number): Promise<WireReadResponse> {
    const { client, metadata } = await this.conn.service('file', waitMs);
    const call = client.Read!({ path: this.path, offset: this.offset, length: 0, user: this.user }, metadata) as grpc.ClientReadableStream<WireReadResponse>;
    this.call = call;
    if (this.cancelled) call.cancel();
    // The stream's async iterator reads a message only when asked for one: nothing piles up.
    const messages = call[Symbol.asyncIterator]() as AsyncIterator<WireReadResponse>;
    this.messages = messages;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(
          new TimeoutError(
            `files.read: the sandbox agent at ${this.conn.address} did not start sending ${this.path} within requestTimeoutMs (${waitMs} ms)`,
            'request',
            { code: 'DEADLINE_EXCEEDED' },
          ),
        );
        call.cancel();
      }, waitMs);
    });
    try {
      const next = messages.next();
      // Lost the race with the timer: its rejection (the cancelled call) is no one's business.
      next.catch(() => {});
      const r = await Promise.race([next, timeout]);
      if (r.done || !r.value.entry) {
        throw new SandboxError(`files.read: the sandbox agent sent no entry for ${this.path} (a broken agent?)`, { code: 'INTERNAL' });
      }
      return r.value;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops the download (the agent stops reading the file). */
  cancel(): void {
    this.cancelled = true;
    this.call?.cancel();
  }

  /**
   * The file's bytes, chunk by chunk (each at most the agent's chunk size, 1 MiB), read
   * from the agent only as they are asked for. After a dropped connection it reads on
   * from the offset it reached, for up to `recoveryTimeoutMs`, provided the file still
   * has the same size and modification time; otherwise it fails rather than splice two
   * versions of the file.
   */
  async *chunks(): AsyncGenerator<Buffer, void, undefined> {
    let recoveryStart: number | undefined;
    let attempt = 0;
    try {
      for (;;) {
        try {
          if (this.pending) {
            const first = this.pending;
            this.pending = undefined;
            if (first.data.length) {
              this.offset += first.data.length;
              yield first.data;
            }
          }
          for (;;) {
            const r = await this.nextMessage();
            if (r.done) return;
            const data = r.value.data;
            if (!data.length) continue;
            if (r.value.offset !== this.offset) {
              throw new SandboxError(
                `files.read: the sandbox agent sent ${this.path}'s bytes from offset ${r.value.offset} where ${this.offset} was due (a broken agent?)`,
                { code: 'INTERNAL' },
              );
            }
            this.offset += data.length;
            recoveryStart = undefined;
            attempt = 0;
            yield data;
          }
        } catch (e) {
          // isTransient: a dropped connection or a stalled stream (ConnectionError), not the agent's refusal.
          if (this.cancelled || !isTransient(e)) throw mapFileError(this.conn, e, 'files.read');
          recoveryStart ??= Date.now();
          await this.resume(e, recoveryStart, attempt++);
        }
      }
    } finally {
      // Stopped early (the caller broke off, or an error): the agent stops reading.
      this.call?.cancel();
    }
  }

  /**
   * The next message, asked for only now (the caller wants data). An agent that sends
   * nothing for `streamIdleTimeoutMs` meanwhile is treated as a dropped connection.
   */
  private async nextMessage(): Promise<IteratorResult<WireReadResponse>> {
    const ms = this.conn.options.streamIdleTimeoutMs;
    const next = this.messages!.next();
    next.catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.call?.cancel();
        reject(new ConnectionError(`files.read: no data from the sandbox agent at ${this.conn.address} for ${ms} ms while reading ${this.path}`, { code: 'stream_idle' }));
      }, ms);
    });
    try {
      return await Promise.race([next, idle]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Re-opens the file at the offset reached; throws when it cannot within `recoveryTimeoutMs`. */
  private async resume(cause: unknown, since: number, attempt: number): Promise<void> {
    const o = this.conn.options;
    for (;;) {
      if (Date.now() - since >= o.recoveryTimeoutMs) {
        const last = this.conn.mapError(cause, 'last attempt').message;
        throw new ConnectionError(
          `files.read: lost the connection to the sandbox agent at ${this.conn.address} while reading ${this.path} ` +
            `(at byte ${this.offset}) and could not resume within recoveryTimeoutMs (${o.recoveryTimeoutMs} ms); ${last}`,
          { code: 'connection_lost', cause },
        );
      }
      if (attempt >= 1) {
        try {
          await this.conn.refresh();
        } catch (e) {
          if (e instanceof NotFoundError || e instanceof AuthenticationError) {
            throw new ConnectionError(`files.read: lost the connection while reading ${this.path}, and fetching the connection info again failed: ${e.message}`, {
              code: e.code,
              cause: e,
            });
          }
        }
      }
      await sleep(Math.min(50 * 2 ** attempt, 1_000));
      attempt++;
      let first: WireReadResponse;
      try {
        first = await this.start(Math.max(1, Math.min(2_000, since + o.recoveryTimeoutMs - Date.now())));
      } catch (e) {
        if (e instanceof TimeoutError || isTransient(e)) {
          cause = e;
          continue;
        }
        throw mapFileError(this.conn, e, 'files.read');
      }
      const now = first.entry!;
      if (now.size !== this.wireEntry.size || now.modifiedAtMs !== this.wireEntry.modifiedAtMs) {
        this.cancel();
        throw new ConnectionError(
          `files.read: lost the connection while reading ${this.path} (at byte ${this.offset}), and the file changed before the read could resume ` +
            `(size ${this.wireEntry.size} → ${now.size}); read it again`,
          { code: 'connection_lost', cause },
        );
      }
      this.pending = first;
      return;
    }
  }
}

/** Reads the whole file into one buffer (sized from the entry, grown if the file grew). */
export async function readAll(d: FileDownload, limit: number, format: string): Promise<Buffer> {
  const tooBig = (size: number) =>
    new SandboxError(
      `files.read: ${d.entry.path} has ${size} bytes, more than format '${format}' can hold in one value (${limit}); read it with format 'stream'`,
      { code: 'too_large' },
    );
  if (d.entry.size > limit) {
    d.cancel();
    throw tooBig(d.entry.size);
  }
  let buf = Buffer.allocUnsafe(d.entry.size);
  let used = 0;
  for await (const chunk of d.chunks()) {
    if (used + chunk.length > buf.length) {
      // The file grew after it was opened.
      if (used + chunk.length > limit) {
        d.cancel();
        throw tooBig(used + chunk.length);
      }
      const bigger = Buffer.allocUnsafe(Math.min(limit, Math.max(used + chunk.length, buf.length * 2)));
      buf.copy(bigger, 0, 0, used);
      buf = bigger;
    }
    chunk.copy(buf, used);
    used += chunk.length;
  }
  return used === buf.length ? buf : buf.subarray(0, used);
}

/** The largest string and buffer this Node can make. */
export const MAX_TEXT_BYTES = bufferConstants.MAX_STRING_LENGTH;
export const MAX_BYTES = bufferConstants.MAX_LENGTH;

/**
 * A web ReadableStream of the file's bytes that reads from the agent only when its reader
 * asks (highWaterMark 0: nothing is fetched ahead of demand); cancelling it stops the download.
 */
export function toWebStream(d: FileDownload): ReadableStream<Uint8Array> {
  const it = d.chunks();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const r = await it.next();
          if (r.done) controller.close();
          else controller.enqueue(new Uint8Array(r.value.buffer, r.value.byteOffset, r.value.byteLength));
        } catch (e) {
          controller.error(e);
        }
      },
      async cancel() {
        d.cancel();
        await it.return(undefined);
      },
    },
    { highWaterMark: 0 },
  );
}
