/**
 * Following one command's output: each channel's sink (exact resume by offset, streaming
 * UTF-8 decoding) and the follower that executes or attaches, and attaches again after a
 * dropped connection until the command's end arrives.
 */
import type * as grpc from '@grpc/grpc-js';
import { StringDecoder } from 'node:string_decoder';
import {
  AgentConnection,
  EventKind,
  ExitStatus,
  OutputChannel,
  OutputEncoding,
  isTransient,
  type WireExecuteRequest,
  type WireOutput,
} from './agent.js';
import {
  AuthenticationError,
  ConnectionError,
  NotFoundError,
  SandboxError,
  TimeoutError,
  type CommandStatus,
} from './errors.js';

/** Receives decoded output: UTF-8 text, never splitting a character across calls. */
export type OutputCallback = (data: string) => void;
/** Receives output exactly as the command wrote it. */
export type BytesCallback = (data: Uint8Array) => void;
/**
 * Receives stdout and stderr together, in the order the agent recorded them (the order the
 * program wrote them), decoded as UTF-8 per stream: `stream` says which one `data` came from.
 */
export type MergedCallback = (data: string, stream: 'stdout' | 'stderr') => void;

export const STATUS: Record<number, CommandStatus> = {
  [ExitStatus.EXITED]: 'exited',
  [ExitStatus.SIGNALED]: 'signaled',
  [ExitStatus.TIMED_OUT]: 'timed_out',
  [ExitStatus.FAILED]: 'failed',
};

const TEXT_PIECE = 64 * 1024;

/** Decodes `data` with `decoder` in pieces of at most 64 KiB, giving each non-empty text to `to`. */
function decodeInPieces(decoder: StringDecoder, data: Buffer, to: (text: string) => void): void {
  // V8 allocates strings of 64 KiB several times faster than 1 MiB ones (the agent sends
  // up to 1 MiB per message).
  for (let at = 0; at < data.length; at += TEXT_PIECE) {
    const text = decoder.write(at === 0 && data.length <= TEXT_PIECE ? data : data.subarray(at, at + TEXT_PIECE));
    if (text) to(text);
  }
}

/**
 * Both channels in the order their bytes arrived, which is the agent's order (its spool's,
 * the same for a live reader and for one that resumed): delivered to `onOutput` as it
 * arrives, and, when collecting, remembered as runs of (channel, length) so that `text()`
 * rebuilds the interleaved output from each channel's collected bytes without keeping a
 * third copy of them.
 */
export class MergedOutput {
  private readonly decoders?: { stdout: StringDecoder; stderr: StringDecoder };
  /** Runs: +n is n bytes of stdout, -n n bytes of stderr. */
  private readonly runs?: number[];

  constructor(
    private readonly onOutput: MergedCallback | undefined,
    collect: boolean,
  ) {
    if (onOutput) this.decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
    if (collect) this.runs = [];
  }

  /** Bytes new on `stream`, in arrival order. */
  push(stream: 'stdout' | 'stderr', data: Buffer): void {
    if (this.runs) {
      const n = stream === 'stdout' ? data.length : -data.length;
      const last = this.runs.length - 1;
      if (last >= 0 && Math.sign(this.runs[last]!) === Math.sign(n)) this.runs[last]! += n;
      else this.runs.push(n);
    }
    if (this.decoders) decodeInPieces(this.decoders[stream], data, (t) => this.onOutput!(t, stream));
  }

  /** Flushes the decoders: an incomplete character at the very end becomes U+FFFD. */
  finish(): void {
    if (!this.decoders) return;
    for (const stream of ['stdout', 'stderr'] as const) {
      const text = this.decoders[stream].end();
      if (text) this.onOutput!(text, stream);
    }
  }

  /** The interleaved text, rebuilt from each channel's collected bytes ('' when not collecting). */
  text(stdout: Buffer, stderr: Buffer): string {
    if (!this.runs) return '';
    const dec = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
    const at = { stdout: 0, stderr: 0 };
    const parts: string[] = [];
    for (const run of this.runs) {
      const stream = run > 0 ? 'stdout' : 'stderr';
      const bytes = stream === 'stdout' ? stdout : stderr;
      const n = Math.abs(run);
      parts.push(dec[stream].write(bytes.subarray(at[stream], at[stream] + n)));
      at[stream] += n;
    }
    parts.push(dec.stdout.end(), dec.stderr.end());
    return parts.join('');
  }
}

/**
 * One channel's receiving end: drops bytes already seen (offsets make resumes exact),
 * decodes UTF-8 with a streaming decoder, collects if asked.
 */
export class ChannelSink {
  /** The next byte offset expected: everything before it was delivered exactly once. */
  next: number;
  // Node's streaming UTF-8 decoder: like a streaming TextDecoder (a character split across
  // chunks is held until complete; invalid bytes become U+FFFD) and ~5x faster on 64 KiB chunks.
  private readonly decoder?: StringDecoder;
  private readonly chunks?: Buffer[];
  private collected = 0;

  constructor(
    readonly name: 'stdout' | 'stderr',
    private readonly onText: OutputCallback | undefined,
    private readonly onBytes: BytesCallback | undefined,
    collect: boolean,
    start = 0,
    private readonly merged?: MergedOutput,
  ) {
    this.next = start;
    if (onText) this.decoder = new StringDecoder('utf8');
    if (collect) this.chunks = [];
  }

  /** Delivers `data` found at `offset`, minus any prefix already delivered. */
  push(offset: number, data: Buffer): void {
    const end = offset + data.length;
    if (end <= this.next) return;
    if (offset > this.next) {
      throw new SandboxError(
        `${this.name} jumped from byte ${this.next} to byte ${offset}: the agent skipped output. This is a bug; please report it.`,
      );
    }
    const fresh = offset < this.next ? data.subarray(this.next - offset) : data;
    this.next = end;
    if (this.chunks) {
      this.chunks.push(fresh);
      this.collected += fresh.length;
    }
    if (this.onBytes) this.onBytes(fresh);
    if (this.decoder) decodeInPieces(this.decoder, fresh, this.onText!);
    this.merged?.push(this.name, fresh);
  }

  /** Flushes the decoder: an incomplete character at the very end becomes U+FFFD. */
  finish(): void {
    if (this.decoder) {
      const text = this.decoder.end();
      if (text) this.onText!(text);
    }
  }

  /** Everything collected so far, as text. */
  text(): string {
    return this.bytes().toString('utf8');
  }

  /** Everything collected so far, as bytes (empty when not collecting). */
  bytes(): Buffer {
    if (!this.chunks) return Buffer.alloc(0);
    if (this.chunks.length > 1) {
      const all = Buffer.concat(this.chunks, this.collected);
      this.chunks.length = 0;
      this.chunks.push(all);
    }
    return this.chunks.length ? this.chunks[0]! : Buffer.alloc(0);
  }
}

export interface EndMessage {
  exitCode: number;
  status: CommandStatus;
  signal?: number;
  oomKilled?: boolean;
  outputLimitReached?: boolean;
  error?: string;
  truncated: boolean;
}

type StreamOutcome =
  | { kind: 'end'; end: EndMessage }
  | { kind: 'error'; error: unknown; progressed: boolean }
  | { kind: 'fatal'; error: unknown };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Follows one command's output to its end, over `Execute` (a new command) or `Attach`
 * (an existing one), and re-attaches from the last offsets after a dropped connection.
 */
export class CommandFollower {
  commandId?: string;
  pid?: number;
  truncated = false;
  readonly stdout: ChannelSink;
  readonly stderr: ChannelSink;
  /** Both channels in the agent's order (`onOutput`, `output`). */
  readonly merged: MergedOutput;
  readonly done: Promise<EndMessage>;
  /** Resolves on the first message (the command is known to run), rejects if the stream fails first. */
  readonly ready: Promise<void>;
  private readyResolve!: () => void;
  private readyReject!: (e: unknown) => void;
  private isReady = false;
  private call?: grpc.ClientReadableStream<WireOutput>;
  private stopped = false;

  constructor(
    private readonly conn: AgentConnection,
    start: { execute: WireExecuteRequest } | { attach: string; pid?: number },
    sinks: { stdout: ChannelSink; stderr: ChannelSink; merged: MergedOutput },
    private readonly requestTimeoutMs: number,
  ) {
    this.stdout = sinks.stdout;
    this.stderr = sinks.stderr;
    this.merged = sinks.merged;
    this.ready = new Promise<void>((res, rej) => {
      this.readyResolve = res;
      this.readyReject = rej;
    });
    this.ready.catch(() => {});
    if ('attach' in start) {
      this.commandId = start.attach;
      this.pid = start.pid;
    }
    this.done = this.follow('execute' in start ? start.execute : undefined);
    this.done.then(
      () => this.markReady(),
      (e) => this.readyReject(e),
    );
  }

  private markReady(): void {
    if (!this.isReady) {
      this.isReady = true;
      this.readyResolve();
    }
  }

  /** Stops following (the command keeps running in the sandbox). */
  stop(): void {
    this.stopped = true;
    this.call?.cancel();
  }

  private async follow(execute?: WireExecuteRequest): Promise<EndMessage> {
    const o = this.conn.options;
    let recoveryStart: number | undefined;
    let attempt = 0;
    let lastError: unknown;
    for (;;) {
      let outcome: StreamOutcome;
      let sent = false;
      try {
        // While recovering, each attempt waits for the connection only briefly, so that
        // the connection info can be fetched again between attempts.
        const readyWithin =
          recoveryStart === undefined
            ? this.requestTimeoutMs
            : Math.max(1, Math.min(2_000, recoveryStart + o.recoveryTimeoutMs - Date.now()));
        const call =
          execute && !this.commandId
            ? await this.conn.stream('Execute', execute, readyWithin)
            : await this.conn.stream(
                'Attach',
                {
                  commandId: this.commandId,
                  stdoutOffset: this.stdout.next,
                  stderrOffset: this.stderr.next,
                  encoding: OutputEncoding.BYTES,
                },
                readyWithin,
              );
        sent = true;
        outcome = await this.consume(call);
      } catch (e) {
        outcome = { kind: 'error', error: e, progressed: false };
      }
      if (outcome.kind === 'end') {
        this.stdout.finish();
        this.stderr.finish();
        this.merged.finish();
        return outcome.end;
      }
      if (outcome.kind === 'fatal') throw outcome.error;
      const err = outcome.error;
      if (this.stopped) {
        throw new SandboxError(
          `stopped following command ${this.commandId ?? '(not started)'}; it keeps running in the sandbox (commands.connect() follows it again)`,
          { code: 'disconnected' },
        );
      }
      if (!isTransient(err)) throw this.conn.mapError(err, this.what());
      if (!this.commandId) {
        if (err instanceof TimeoutError) throw err;
        // Never sent: nothing runs, say why we could not send it.
        if (!sent) throw this.conn.mapError(err, 'running the command');
        const cause = this.conn.mapError(err, 'starting the command');
        throw new ConnectionError(
          `lost the connection to the sandbox agent at ${this.conn.address} before it confirmed that the command started, ` +
            `so it may or may not be running (commands.list() shows what runs). ${cause.message}`,
          { code: cause.code, cause: err },
        );
      }
      lastError = err;
      if (outcome.progressed) {
        recoveryStart = undefined;
        attempt = 0;
      }
      recoveryStart ??= Date.now();
      if (Date.now() - recoveryStart >= o.recoveryTimeoutMs) {
        const last = this.conn.mapError(lastError, 'last attempt').message;
        throw new ConnectionError(
          `lost the connection to the sandbox agent at ${this.conn.address} while following command ${this.commandId} ` +
            `and could not resume within recoveryTimeoutMs (${o.recoveryTimeoutMs} ms); ${last}. ` +
            `The command keeps running in the sandbox: commands.connect('${this.commandId}') resumes its output once the sandbox is reachable again.`,
          { code: 'connection_lost', cause: lastError },
        );
      }
      // The first retry reuses the address we had; after that, ask where the agent is now.
      if (attempt >= 1) {
        try {
          await this.conn.refresh();
        } catch (e) {
          // The sandbox is gone or we may no longer see it: resuming cannot succeed.
          if (e instanceof NotFoundError || e instanceof AuthenticationError) {
            throw new ConnectionError(
              `lost the connection to the sandbox agent while following command ${this.commandId}, and fetching its connection info again failed: ${e.message}`,
              { code: e.code, cause: e },
            );
          }
          /* the server may be unreachable too: keep trying until the recovery window ends */
        }
      }
      await sleep(Math.min(50 * 2 ** attempt, 1_000));
      attempt++;
    }
  }

  private what(): string {
    return this.commandId ? `following command ${this.commandId}` : 'running the command';
  }

  private consume(call: grpc.ClientReadableStream<WireOutput>): Promise<StreamOutcome> {
    this.call = call;
    if (this.stopped) call.cancel();
    return new Promise<StreamOutcome>((resolve) => {
      let finished = false;
      let progressed = false;
      let endMsg: EndMessage | undefined;
      const idleLimit = () => (this.commandId ? this.conn.options.streamIdleTimeoutMs : this.requestTimeoutMs);
      const finish = (o: StreamOutcome) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        resolve(o);
      };
      const onIdle = () => {
        const limit = idleLimit();
        const err = this.commandId
          ? new ConnectionError(`no message from the sandbox agent at ${this.conn.address} for ${limit} ms`)
          : new TimeoutError(
              `the sandbox agent at ${this.conn.address} did not confirm that the command started within requestTimeoutMs (${limit} ms); ` +
                'this is the request timeout, not the command timeout. Check that the sandbox is reachable, or raise requestTimeoutMs.',
              'request',
            );
        finish({ kind: 'error', error: err, progressed });
        call.cancel();
      };
      let armedFor = idleLimit();
      let timer = setTimeout(onIdle, armedFor);
      call.on('data', (m: WireOutput) => {
        if (finished) return;
        progressed = true;
        if (m.commandId && !this.commandId) this.commandId = m.commandId;
        try {
          switch (m.kind) {
            case EventKind.OUTPUT:
              if (m.data.length) (m.channel === OutputChannel.STDERR ? this.stderr : this.stdout).push(m.offset, m.data);
              break;
            case EventKind.STARTED:
              if (m.pid) this.pid = m.pid;
              break;
            case EventKind.TRUNCATED:
              this.truncated = true;
              break;
            case EventKind.END:
              endMsg = {
                exitCode: m.exitCode,
                status: STATUS[m.status] ?? 'unknown',
                truncated: m.truncated || this.truncated,
                ...(m.signal ? { signal: m.signal } : {}),
                ...(m.error ? { error: m.error } : {}),
                ...(m.oomKilled ? { oomKilled: true } : {}),
                ...(m.outputLimitReached ? { outputLimitReached: true } : {}),
              };
              break;
            default:
              break;
          }
        } catch (e) {
          finish({ kind: 'fatal', error: e });
          call.cancel();
          return;
        }
        this.markReady();
        if (m.end || endMsg) {
          finish({ kind: 'end', end: endMsg ?? { exitCode: m.exitCode, status: 'unknown', truncated: this.truncated } });
          return;
        }
        const limit = idleLimit();
        if (limit === armedFor) timer.refresh();
        else {
          clearTimeout(timer);
          armedFor = limit;
          timer = setTimeout(onIdle, limit);
        }
      });
      call.on('error', (e) => finish({ kind: 'error', error: e, progressed }));
      call.on('end', () => {
        if (endMsg) finish({ kind: 'end', end: endMsg });
        else
          finish({
            kind: 'error',
            error: new ConnectionError(`the stream from the sandbox agent at ${this.conn.address} ended before the command's end`),
            progressed,
          });
      });
    });
  }
}

/**
 * A command in progress (from `run(..., {background: true})` or `commands.connect()`).
 * Its output keeps flowing to the callbacks; `wait()` gives the result.
 */
