/**
 * `files.watchDir()`: a `FileService.WatchDir` stream turned into `onEvent` calls, in the
 * agent's order, one at a time (an `onEvent` that returns a promise holds back the next
 * event until it settles), until `stop()`, the watch's `timeoutMs`, or an error.
 */
import type * as grpc from '@grpc/grpc-js';
import type { AgentConnection } from './agent.js';
import { ConnectionError, SandboxError, TimeoutError } from './errors.js';
import { eventType, FilesystemEventType, mapFileError, WatchKind, type FilesystemEvent } from './files-types.js';

interface WireWatchEvent {
  kind: number;
  type: number;
  name: string;
}

/** A running watch of `files.watchDir()` (E2B's `WatchHandle`). */
export class WatchHandle {
  /** @internal Resolves once the agent said the watch is in place. */
  readonly started: Promise<void>;
  private startResolve!: () => void;
  private startReject!: (e: unknown) => void;
  private isStarted = false;
  private ended = false;
  private paused = false;
  private idleTimer?: NodeJS.Timeout;
  private startTimer?: NodeJS.Timeout;
  private lifeTimer?: NodeJS.Timeout;

  /** @internal */
  constructor(
    private readonly conn: AgentConnection,
    private readonly call: grpc.ClientReadableStream<WireWatchEvent>,
    private readonly path: string,
    private readonly onEvent: (event: FilesystemEvent) => void | Promise<void>,
    private readonly onExit: ((err?: Error) => void | Promise<void>) | undefined,
    private readonly timeouts: { requestTimeoutMs: number; timeoutMs: number },
  ) {
    this.started = new Promise<void>((res, rej) => {
      this.startResolve = res;
      this.startReject = rej;
    });
    this.started.catch(() => {});
    this.startTimer = setTimeout(
      () =>
        this.end(
          new TimeoutError(
            `files.watchDir: the sandbox agent at ${conn.address} did not start watching ${path} within requestTimeoutMs (${timeouts.requestTimeoutMs} ms)`,
            'request',
            { code: 'DEADLINE_EXCEEDED' },
          ),
        ),
      timeouts.requestTimeoutMs,
    );
    call.on('data', (m: WireWatchEvent) => this.onMessage(m));
    call.on('error', (e: unknown) => this.end(mapFileError(conn, e, 'files.watchDir')));
    call.on('end', () =>
      this.end(
        this.isStarted
          ? new SandboxError(`files.watchDir: the watch of ${path} ended: the directory was removed or moved`, { code: 'watch_ended' })
          : new SandboxError(`files.watchDir: the sandbox agent ended the watch of ${path} before it started (a broken agent?)`, { code: 'INTERNAL' }),
      ),
    );
  }

  /** Stops watching. `onExit` is then called with no error. */
  async stop(): Promise<void> {
    this.end(undefined);
  }

  private onMessage(m: WireWatchEvent): void {
    if (this.ended) return;
    this.armIdle();
    if (!this.isStarted) {
      if (m.kind !== WatchKind.STARTED) {
        this.end(new SandboxError(`files.watchDir: the sandbox agent's first message for ${this.path} was not STARTED (a broken agent?)`, { code: 'INTERNAL' }));
        return;
      }
      this.isStarted = true;
      clearTimeout(this.startTimer);
      if (this.timeouts.timeoutMs > 0) {
        this.lifeTimer = setTimeout(
          () =>
            this.end(
              new TimeoutError(`files.watchDir: the watch of ${this.path} ran for its timeoutMs (${this.timeouts.timeoutMs} ms) and was ended; pass timeoutMs: 0 for no limit`, 'watch', {
                code: 'watch_timeout',
              }),
            ),
          this.timeouts.timeoutMs,
        );
      }
      this.startResolve();
      return;
    }
    let event: FilesystemEvent | undefined;
    if (m.kind === WatchKind.FILESYSTEM) {
      const type = eventType(m.type);
      if (type) event = { name: m.name, type };
    } else if (m.kind === WatchKind.OVERFLOW) {
      event = { name: '', type: FilesystemEventType.OVERFLOW };
    }
    if (event) this.deliver(event);
  }

  private deliver(event: FilesystemEvent): void {
    let r: void | Promise<void>;
    try {
      r = this.onEvent(event);
    } catch (e) {
      this.end(e as Error);
      return;
    }
    if (r && typeof (r as Promise<void>).then === 'function') {
      // Hold back the next event until this one is handled.
      this.paused = true;
      clearTimeout(this.idleTimer);
      this.call.pause();
      (r as Promise<void>).then(
        () => {
          this.paused = false;
          if (this.ended) return;
          this.armIdle();
          this.call.resume();
        },
        (e) => this.end(e instanceof Error ? e : new Error(String(e))),
      );
    }
  }

  /** A stream that carries nothing (not even the agent's keepalives) for `streamIdleTimeoutMs` is dead. */
  private armIdle(): void {
    clearTimeout(this.idleTimer);
    if (this.paused || this.ended) return;
    const ms = this.conn.options.streamIdleTimeoutMs;
    this.idleTimer = setTimeout(
      () => this.end(new ConnectionError(`files.watchDir: no message from the sandbox agent at ${this.conn.address} for ${ms} ms while watching ${this.path}`, { code: 'connection_lost' })),
      ms,
    );
  }

  private end(err: Error | undefined): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.idleTimer);
    clearTimeout(this.startTimer);
    clearTimeout(this.lifeTimer);
    this.call.cancel();
    if (!this.isStarted) {
      // watchDir() rejects; onExit is for watches that started.
      this.startReject(err ?? new SandboxError(`files.watchDir: the watch of ${this.path} was stopped before it started`));
      return;
    }
    try {
      const r = this.onExit?.(err);
      if (r && typeof (r as Promise<void>).catch === 'function') (r as Promise<void>).catch(() => {});
    } catch {
      /* onExit's own failure has nowhere to go */
    }
  }
}
