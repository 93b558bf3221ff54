// How the page follows one execution's output: every chunk once, in `seq` order, the
// phase banners in order, and the end only after the output before it (API.md,
// "Delivering in order, each chunk once").
//
// No DOM and no module state: an `ExecutionStream` takes the socket's events and the
// REST replies (through `StreamPorts`, which the page backs with fetch and timers, and
// test/unit/protocol.test.mjs with fakes) and says what to show through `render`.
// `RoomLink` says what to send on the socket after a (re)connect, and
// `socketErrorAction` what a socket `error` event means for the run.
import type { CompleteEvent, ContainerJoinedEvent, ErrorEvent, FinalStatus, LogChunk, OutputEvent, Phase, PhaseEvent, ResumeRequest } from "./events.ts";

/** How long a chunk that arrived early waits for the ones before it, before REST is asked. */
export const GAP_WAIT_MS = 1200;
/** A run's socket silent this long (connected) or down this long is polled over REST. */
export const SILENCE_MS = 4000;
export const OFFLINE_POLL_MS = 1500;

/** What to show, in the order to show it. */
export type Render =
  /** A chunk of output, each seq once, in order. */
  | { kind: "chunk"; chunk: LogChunk }
  /** The run entered a phase (install, then run; never backwards). */
  | { kind: "phase"; phase: Phase }
  /** The run ended; nothing follows for it. */
  | { kind: "end"; end: RunEnd };

export interface RunEnd {
  status: FinalStatus;
  exitCode: number | null;
  durationMs: number;
  error: string | null;
  /** The kernel's out-of-memory killer ended it: the sandbox reached its memory limit. */
  oomKilled: boolean;
  /** The phase the run reached (an install that failed is told apart from the program). */
  phase: Phase | null;
}

/** What `GET /api/v1/executions/{id}` says. */
export interface ExecutionState {
  status: "running" | FinalStatus;
  exitCode: number | null;
  durationMs: number | null;
  error?: string | null;
  oomKilled?: boolean;
}

export type TimerHandle = unknown;

/** The outside world of a stream. A failed request rejects; its error may carry the HTTP `status`. */
export interface StreamPorts {
  /** `GET /api/v1/executions/{id}/logs?afterSeq=N`: the stored chunks after `afterSeq`. */
  fetchLogs(executionId: string, afterSeq: number): Promise<LogChunk[]>;
  /** `GET /api/v1/executions/{id}`. */
  fetchState(executionId: string): Promise<ExecutionState>;
  render(r: Render): void;
  setTimer(fn: () => void, ms: number): TimerHandle;
  clearTimer(t: TimerHandle): void;
  now(): number;
}

/** Counters the page shows to tests (`window.__sandstream.stats`). */
export interface StreamStats {
  socketChunks: number;
  restChunks: number;
  duplicatesDropped: number;
}

const PHASE_ORDER: Record<Phase, number> = { install: 1, run: 2 };
const FINAL: readonly string[] = ["success", "error", "timeout", "cancelled"] satisfies FinalStatus[];

function isPhase(p: unknown): p is Phase {
  return p === "install" || p === "run";
}

function httpStatus(err: unknown): number | undefined {
  const s = (err as { status?: unknown } | null)?.status;
  return typeof s === "number" ? s : undefined;
}

/**
 * One execution's output as the page keeps it. `lastSeq` is the last chunk shown; a
 * chunk with `seq` `lastSeq + 1` is shown at once with any held ones after it, a later
 * one is held for the gap (which REST fills after `GAP_WAIT_MS`), and one not past
 * `lastSeq` is dropped. Once `detach`ed (the page moved on to another run), replies
 * still in flight are ignored.
 */
export class ExecutionStream {
  private last = 0;
  private readonly pending = new Map<number, LogChunk>();
  private reached: Phase | null = null;
  private finishing = false;
  private ended = false;
  private detached = false;
  private gapTimer: TimerHandle | null = null;

  constructor(
    readonly id: string,
    readonly containerId: string,
    readonly startedAt: number,
    private readonly ports: StreamPorts,
    private readonly stats: StreamStats,
  ) {}

  /** The last seq shown. */
  get lastSeq(): number {
    return this.last;
  }
  get phase(): Phase | null {
    return this.reached;
  }
  /** The end was shown (or the stream was detached): nothing more comes from it. */
  get done(): boolean {
    return this.ended || this.detached;
  }

  owns(ev: { executionId?: unknown } | null | undefined): boolean {
    return !!ev && ev.executionId === this.id && !this.detached;
  }

  /** `execution-output`; true when it is this execution's (the socket is alive). */
  output(ev: OutputEvent): boolean {
    if (!this.owns(ev)) return false;
    this.stats.socketChunks++;
    this.accept(ev);
    return true;
  }

  /** `execution-phase`; true when it is this execution's and the run goes on. A chunk
   * held for a gap may be of an earlier phase, so the banner then waits for the chunks. */
  phaseEvent(ev: PhaseEvent): boolean {
    if (!this.owns(ev) || this.ended) return false;
    if (this.pending.size === 0 && isPhase(ev.phase)) this.advance(ev.phase);
    return true;
  }

  /**
   * `execution-complete`. The end is held until the output before it is in: the socket
   * may still be delivering (or may have dropped) chunks, so REST is asked once for
   * everything after the last chunk shown, which is then shown (a gap the server cannot
   * fill is skipped), and only then the end.
   */
  async complete(ev: CompleteEvent): Promise<void> {
    if (!this.owns(ev) || this.ended || this.finishing) return;
    this.finishing = true;
    await this.fetchMissing();
    if (this.detached) return;
    this.flush(true);
    this.end(ev);
  }

  /**
   * Asks REST instead of the socket (down, or silent for a while): the chunks after the
   * last one shown, then the execution's state, which ends the run when it has ended.
   */
  async poll(): Promise<void> {
    if (this.done || this.finishing) return;
    const ok = await this.fetchMissing();
    if (!ok || this.done) return;
    this.flush(false);
    let state: ExecutionState;
    try {
      state = await this.ports.fetchState(this.id);
    } catch (err) {
      if (!this.done && httpStatus(err) === 404) this.fail("the server no longer knows this execution");
      return;
    }
    if (this.done || !state || state.status === "running") return;
    await this.complete({
      executionId: this.id,
      containerId: this.containerId,
      exitCode: state.exitCode,
      status: state.status,
      durationMs: state.durationMs,
      error: state.error,
      oomKilled: state.oomKilled,
    });
  }

  /** Ends the run with status `error` (the server refused to follow it). */
  fail(error: string) {
    this.end({ exitCode: null, status: "error", error });
  }

  /** What `resume-execution` asks for after a (re)join: everything after the last chunk shown. */
  resumeRequest(): ResumeRequest | null {
    return this.done ? null : { executionId: this.id, afterSeq: this.last };
  }

  /** Stops the stream for good: the page started or showed another run. */
  detach() {
    this.detached = true;
    this.stopGapTimer();
  }

  private accept(c: LogChunk) {
    if (this.ended) return;
    const seq = Number(c.seq);
    if (!Number.isFinite(seq) || seq <= this.last || this.pending.has(seq)) {
      this.stats.duplicatesDropped++;
      return;
    }
    this.pending.set(seq, { seq, type: c.type, phase: c.phase, data: String(c.data ?? "") });
    this.flush(false);
  }

  /** Shows the held chunks that follow the last one; `force` skips gaps (the server has no such chunk). */
  private flush(force: boolean) {
    for (;;) {
      let next = this.pending.get(this.last + 1);
      if (!next && force && this.pending.size) next = this.pending.get(Math.min(...this.pending.keys()));
      if (!next) break;
      this.pending.delete(next.seq);
      this.last = next.seq;
      this.show(next);
    }
    if (this.pending.size && this.gapTimer === null && !this.ended) {
      this.gapTimer = this.ports.setTimer(() => void this.fillGap(), GAP_WAIT_MS);
    } else if (!this.pending.size) {
      this.stopGapTimer();
    }
  }

  private show(c: LogChunk) {
    if (isPhase(c.phase)) this.advance(c.phase);
    this.ports.render({ kind: "chunk", chunk: { seq: c.seq, type: c.type, phase: c.phase, data: c.data } });
  }

  private advance(p: Phase) {
    if (this.reached && PHASE_ORDER[p] <= PHASE_ORDER[this.reached]) return;
    this.reached = p;
    this.ports.render({ kind: "phase", phase: p });
  }

  /** Holds what REST has after the last chunk shown; false when the server did not answer. */
  private async fetchMissing(): Promise<boolean> {
    let chunks: LogChunk[];
    try {
      chunks = await this.ports.fetchLogs(this.id, this.last);
    } catch {
      return false;
    }
    if (this.detached) return false;
    for (const c of chunks ?? []) {
      const seq = Number(c?.seq);
      if (Number.isFinite(seq) && seq > this.last && !this.pending.has(seq)) {
        this.stats.restChunks++;
        this.pending.set(seq, { seq, type: c.type, phase: c.phase, data: String(c.data ?? "") });
      }
    }
    return true;
  }

  private async fillGap() {
    this.gapTimer = null;
    if (!this.pending.size || this.done) return;
    const ok = await this.fetchMissing();
    if (this.done) return;
    // When the server answered and the gap is still there, the server has no such chunk.
    this.flush(ok);
  }

  private end(ev: { exitCode: number | null; status: string; durationMs?: number | null; error?: string | null; oomKilled?: boolean }) {
    if (this.done) return;
    this.ended = true;
    this.stopGapTimer();
    this.ports.render({
      kind: "end",
      end: {
        status: FINAL.includes(ev.status) ? (ev.status as FinalStatus) : "error",
        exitCode: typeof ev.exitCode === "number" ? ev.exitCode : null,
        durationMs: typeof ev.durationMs === "number" ? ev.durationMs : this.ports.now() - this.startedAt,
        error: ev.error ?? null,
        oomKilled: ev.oomKilled === true,
        phase: this.reached,
      },
    });
  }

  private stopGapTimer() {
    if (this.gapTimer === null) return;
    this.ports.clearTimer(this.gapTimer);
    this.gapTimer = null;
  }
}

/** A message the page sends on the socket. */
export type Send = { event: "join-container"; containerId: string } | { event: "resume-execution"; request: ResumeRequest };

/**
 * The socket's room, and what a run needs sent. Events are routed by room, not by socket
 * id, so they survive a reconnect; but rooms belong to a connection, so a new one joins
 * the sandbox's room again, and once joined the run resumes after its last chunk shown.
 */
export class RoomLink {
  private joined: string | null = null;

  get joinedContainer(): string | null {
    return this.joined;
  }

  /** The socket connected (again). */
  connected(run: ExecutionStream | null): Send[] {
    this.joined = null;
    return run && !run.done ? [{ event: "join-container", containerId: run.containerId }] : [];
  }

  disconnected() {
    this.joined = null;
  }

  /** `container-joined`. */
  containerJoined(ev: ContainerJoinedEvent | null | undefined, run: ExecutionStream | null): Send[] {
    this.joined = ev?.containerId ?? null;
    return run && run.containerId === this.joined ? resume(run) : [];
  }

  /** A run to follow (just started, or the last one shown again): join its sandbox's room,
   * or, when already in it, ask for anything sent before the page knew the execution id. */
  follow(run: ExecutionStream, socketConnected: boolean): Send[] {
    if (!socketConnected) return [];
    return this.joined === run.containerId ? resume(run) : [{ event: "join-container", containerId: run.containerId }];
  }
}

function resume(run: ExecutionStream): Send[] {
  const request = run.resumeRequest();
  return request ? [{ event: "resume-execution", request }] : [];
}

/** What a socket `error` event means. */
export type SocketErrorAction =
  /** The execution is unknown to the server: nothing more will come; end the run. */
  | { kind: "end-run"; error: string }
  /** The run's sandbox is gone but its log is kept: replay it without the room. */
  | { kind: "replay"; forgetSandbox: boolean }
  /** No run goes on and the page's sandbox is gone: the next run starts a fresh one. */
  | { kind: "sandbox-gone"; containerId: string }
  | { kind: "ignore" }
  /** Anything else is shown in words. */
  | { kind: "show"; message: string };

export function socketErrorAction(ev: Partial<ErrorEvent> | null | undefined, run: ExecutionStream | null, containerId: string | null): SocketErrorAction {
  const code = ev?.code ?? "";
  const message = ev?.message ?? "unknown error";
  if (code !== "not_found" && code !== "conflict") return { kind: "show", message };
  const live = run && !run.done ? run : null;
  if (live && message.includes(live.id)) return { kind: "end-run", error: message };
  if (live && message.includes(live.containerId)) return { kind: "replay", forgetSandbox: containerId === live.containerId };
  if (containerId && !live) return { kind: "sandbox-gone", containerId };
  return { kind: "ignore" };
}

/** Whether a run's socket has been quiet long enough to ask REST instead. */
export function pollDue(quietMs: number, socketConnected: boolean): boolean {
  return quietMs > (socketConnected ? SILENCE_MS : OFFLINE_POLL_MS);
}
