// Runs: start one (`POST /api/sandbox/exec`), follow its output (src/protocol.ts keeps
// it in order, once each; this file shows it), stop it, and show the last run again after
// a reload. While the socket is down or silent, a watchdog asks REST instead.
import { api, ApiError, ExecAccepted, ExecutionInfo, LogsPage } from "./api.ts";
import type { Connection, ConnectionHandlers } from "./connection.ts";
import type { CompleteEvent, ContainerJoinedEvent, ErrorEvent, LogChunk, OutputEvent, PhaseEvent } from "./events.ts";
import type { Messages } from "./messages.ts";
import { ExecutionStream, pollDue, Render, RoomLink, RunEnd, Send, socketErrorAction, StreamStats } from "./protocol.ts";
import type { Sandbox } from "./sandbox.ts";
import { describeEnd } from "./ending.ts";
import type { StatusLine } from "./status.ts";
import type { Tabs } from "./tabs.ts";
import type { LogTerminal } from "./terminal.ts";
import type { Language } from "./workspace.ts";

/** The run shown: its stream and what the page needs to describe it. */
interface Run {
  stream: ExecutionStream;
  language: Language;
  program: string;
  timeoutMs: number;
}

export interface RunStats extends StreamStats {
  resumes: number;
}

export interface RunDeps {
  tabs: Tabs;
  term: LogTerminal;
  status: StatusLine;
  messages: Messages;
  sandbox: Sandbox;
  stopButton: HTMLButtonElement;
  /** The timeout chosen for the next run. */
  timeoutMs: () => number;
  stats: RunStats;
  /** Called when a run ends (whatever its status). */
  onEnd?: () => void;
}

// The last run is remembered for this tab, so a reload shows it again (and, while it
// still runs, follows it: join, then resume from seq 0).
const LAST_RUN_KEY = "sandstream.lastRun";
interface SavedRun {
  id: string;
  containerId: string;
  language: Language;
  program: string;
  timeoutMs: number;
  startedAt: number;
}

export class Runs implements ConnectionHandlers {
  private cur: Run | null = null;
  /** Every chunk shown of the current run, once each, in order (`window.__sandstreamLog`). */
  readonly kept: LogChunk[] = [];
  private lastError: string | null = null;
  /** Counts the runs started from this page (data-run on the status line, for tests). */
  private runCount = 0;
  private lastEventAt = 0;
  private watchTimer: number | null = null;
  private readonly link = new RoomLink();
  private conn: Connection | null = null;

  constructor(private readonly d: RunDeps) {}

  /** The socket, once it exists (it calls this object's handlers). */
  useConnection(conn: Connection) {
    this.conn = conn;
  }

  get current() {
    return this.cur;
  }
  /** Why the last run could not start, or null. */
  get startError(): string | null {
    return this.lastError;
  }

  async run(): Promise<{ executionId: string; containerId: string } | null> {
    const { tabs, term, status, messages, sandbox } = this.d;
    if (status.busy) return null;
    status.mark({ run: ++this.runCount });
    messages.hide();
    const w = tabs.ws();
    const language = tabs.language;
    const program = w.files[0];
    const files: Record<string, string> = {};
    w.files.slice(1).forEach((f, i) => {
      if (i === 0 && !f.content.trim()) return; // empty dependency file: no install step
      files[f.name] = f.content;
    });
    const timeoutMs = this.d.timeoutMs();
    term.clear();
    this.kept.length = 0;
    this.show(null);
    this.lastError = null;
    status.setPhase(null);
    status.set("starting", { exitCode: null, durationMs: null });
    const containerId = sandbox.id;
    term.system(containerId ? `Starting ${program.name} in sandbox ${containerId}…` : `Starting a fresh sandbox for ${program.name}…`);

    const body: Record<string, unknown> = { code: program.content, language, files, timeout: timeoutMs };
    if (w.stdin) body.stdin = w.stdin;
    let res: ExecAccepted;
    try {
      res = await api<ExecAccepted>("POST", "/api/sandbox/exec", containerId ? { ...body, containerId } : body, { timeoutMs: 120000 });
    } catch (err) {
      const e = err as ApiError;
      if (containerId && (e.status === 404 || e.status === 409)) {
        sandbox.set(null);
        messages.show("info", `Sandbox ${containerId} is gone (expired or removed); started a fresh one.`);
        term.system(`Sandbox ${containerId} is gone; starting a fresh one…`);
        try {
          res = await api<ExecAccepted>("POST", "/api/sandbox/exec", body, { timeoutMs: 120000 });
        } catch (err2) {
          return this.failStart(err2);
        }
      } else {
        return this.failStart(err);
      }
    }
    const data = res?.data;
    if (!data?.executionId || !data?.containerId) return this.failStart(new Error("The server answered without an execution id."));
    sandbox.set(data.containerId);
    // A sandbox lives for a TTL (5 min by default): keep it at least as long as this run
    // may take, plus a while for the next run, so it is neither lost mid-run nor between runs.
    const ttl = Math.max(5 * 60_000, timeoutMs + 5 * 60_000);
    void api("POST", `/api/v1/sandboxes/${encodeURIComponent(data.containerId)}/timeout`, { timeoutMs: ttl }, { timeoutMs: 15000 }).catch(() => undefined);
    const run = this.newRun(data.executionId, data.containerId, Date.now(), language, program.name, timeoutMs);
    status.set("running");
    this.remember(run);
    this.follow(run);
    return { executionId: run.stream.id, containerId: run.stream.containerId };
  }

  async stop() {
    const { status, messages, stopButton } = this.d;
    const run = this.cur;
    if (!run || run.stream.done || status.status !== "running") return;
    stopButton.disabled = true;
    stopButton.dataset.stopping = "true";
    try {
      await api("POST", `/api/v1/executions/${encodeURIComponent(run.stream.id)}/cancel`, {}, { timeoutMs: 15000 });
      // execution-complete (status cancelled) follows on the socket; poll in case it does not.
      setTimeout(() => {
        if (this.cur === run) void run.stream.poll();
      }, 4000);
    } catch (err) {
      const ae = err as ApiError;
      if (ae.status === 409) void run.stream.poll();
      else {
        messages.show("error", `Could not stop: ${ae.message}`);
        if (this.cur === run && !run.stream.done) stopButton.disabled = false;
      }
    } finally {
      delete stopButton.dataset.stopping;
    }
  }

  /** Shows the run this tab showed last (after a reload), following it while it runs. */
  async reattach() {
    let saved: SavedRun | null = null;
    try {
      saved = JSON.parse(sessionStorage.getItem(LAST_RUN_KEY) ?? "null");
    } catch {
      saved = null;
    }
    if (!saved?.id || !saved.containerId) return;
    let info: ExecutionInfo;
    try {
      info = await api<ExecutionInfo>("GET", `/api/v1/executions/${encodeURIComponent(saved.id)}`, undefined, { timeoutMs: 10000 });
    } catch (err) {
      if ((err as ApiError).status === 404) sessionStorage.removeItem(LAST_RUN_KEY);
      return;
    }
    if (this.cur || this.d.status.status !== "idle") return; // the user started something meanwhile
    this.d.term.clear();
    this.kept.length = 0;
    const run = this.newRun(saved.id, saved.containerId, saved.startedAt || Date.now(), saved.language, saved.program, saved.timeoutMs);
    this.d.term.system(`${info.status === "running" ? "Following" : "Showing"} the last run (${saved.program}, ${saved.id})…`);
    this.d.status.set("running", { exitCode: null, durationMs: null });
    this.follow(run);
  }

  // Socket events (ConnectionHandlers).

  connected() {
    this.sendAll(this.link.connected(this.cur?.stream ?? null));
  }
  disconnected() {
    this.link.disconnected();
  }
  lost() {
    if (this.cur && !this.cur.stream.done) this.startWatch();
  }
  joined(ev: ContainerJoinedEvent) {
    this.sendAll(this.link.containerJoined(ev, this.cur?.stream ?? null));
  }
  output(ev: OutputEvent) {
    if (this.cur?.stream.output(ev)) this.lastEventAt = Date.now();
  }
  phase(ev: PhaseEvent) {
    if (this.cur?.stream.phaseEvent(ev)) this.lastEventAt = Date.now();
  }
  complete(ev: CompleteEvent) {
    void this.cur?.stream.complete(ev);
  }
  error(ev: ErrorEvent) {
    console.warn("socket error event", ev);
    const stream = this.cur?.stream ?? null;
    const action = socketErrorAction(ev, stream, this.d.sandbox.id);
    switch (action.kind) {
      case "end-run":
        stream?.fail(action.error);
        break;
      case "replay": {
        const request = stream?.resumeRequest();
        if (request) this.send({ event: "resume-execution", request });
        if (action.forgetSandbox) this.d.sandbox.set(null);
        break;
      }
      case "sandbox-gone":
        this.d.sandbox.set(null);
        this.d.messages.show("warn", `Sandbox ${action.containerId} is gone (expired or removed). The next run starts a fresh one.`);
        break;
      case "show":
        this.d.messages.show("error", `Server: ${action.message}`);
        break;
      case "ignore":
        break;
    }
  }

  private newRun(id: string, containerId: string, startedAt: number, language: Language, program: string, timeoutMs: number): Run {
    let run: Run | null = null;
    const stream = new ExecutionStream(
      id,
      containerId,
      startedAt,
      {
        fetchLogs: async (execId, afterSeq) => {
          const page = await api<LogsPage>("GET", `/api/v1/executions/${encodeURIComponent(execId)}/logs?afterSeq=${afterSeq}`, undefined, { timeoutMs: 5000 });
          return page?.chunks ?? [];
        },
        fetchState: (execId) => api<ExecutionInfo>("GET", `/api/v1/executions/${encodeURIComponent(execId)}`, undefined, { timeoutMs: 5000 }),
        render: (r) => {
          if (run && this.cur === run) this.render(run, r);
        },
        setTimer: (fn, ms) => window.setTimeout(fn, ms),
        clearTimer: (t) => clearTimeout(t as number),
        now: () => Date.now(),
      },
      this.d.stats,
    );
    run = { stream, language, program, timeoutMs };
    this.show(run);
    return run;
  }

  /** Makes `run` the one shown (the one before it is dropped). */
  private show(run: Run | null) {
    this.cur?.stream.detach();
    this.cur = run;
    if (run) this.d.status.mark({ executionId: run.stream.id });
  }

  private follow(run: Run) {
    this.d.status.tick(run.stream.startedAt, () => this.cur === run && !run.stream.done);
    this.lastEventAt = Date.now();
    this.startWatch();
    this.sendAll(this.link.follow(run.stream, this.conn?.connected ?? false));
  }

  private render(run: Run, r: Render) {
    const { term, status } = this.d;
    switch (r.kind) {
      case "chunk": {
        const c = r.chunk;
        this.kept.push({ seq: c.seq, type: c.type, phase: c.phase, data: c.data });
        term.write(c.data, c.type === "stderr" ? "stderr" : "stdout");
        break;
      }
      case "phase":
        status.setPhase(r.phase, run.program);
        if (r.phase === "install") {
          const cmd = run.language === "python" ? "pip install -r requirements.txt" : "npm install";
          term.system(`▸ Installing dependencies (${cmd})`, "36");
        } else {
          term.system(`▸ Running ${run.program}`, "36");
        }
        break;
      case "end":
        this.showEnd(run, r.end);
        break;
    }
  }

  private showEnd(run: Run, end: RunEnd) {
    const { term, status, messages } = this.d;
    this.stopWatch();
    const words = describeEnd(end, run.timeoutMs);
    status.set(end.status, { exitCode: end.exitCode, exitNote: words.exitNote, durationMs: end.durationMs });
    status.setEndPhase(words.phase);
    term.system(words.line, words.color);
    if (words.message) messages.show(words.message.kind, words.message.text);
    this.d.onEnd?.();
  }

  private failStart(err: unknown): null {
    const msg = err instanceof ApiError ? err.message : err instanceof Error ? err.message : String(err);
    this.lastError = msg;
    this.d.status.set("failed", { exitCode: null, durationMs: null });
    this.d.term.system(`✘ ${msg}`, "31");
    this.d.messages.show("error", msg);
    return null;
  }

  private remember(run: Run) {
    const s = run.stream;
    const saved: SavedRun = { id: s.id, containerId: s.containerId, language: run.language, program: run.program, timeoutMs: run.timeoutMs, startedAt: s.startedAt };
    try {
      sessionStorage.setItem(LAST_RUN_KEY, JSON.stringify(saved));
    } catch {
      /* storage disabled */
    }
  }

  private sendAll(sends: Send[]) {
    for (const s of sends) this.send(s);
  }

  private send(s: Send) {
    if (!this.conn) return;
    if (s.event === "resume-execution") {
      this.d.stats.resumes++;
      this.lastEventAt = Date.now();
    }
    this.conn.send(s);
  }

  // A watchdog for the current run. While the socket is down, or when it has been silent
  // for a while, the REST API is asked for the missing chunks and the status instead: the
  // output keeps coming when socket.io cannot connect at all, and a chunk or a completion
  // the socket never delivered (e.g. dropped by a full server-side buffer) still arrives.
  private startWatch() {
    if (this.watchTimer) return;
    this.watchTimer = window.setInterval(() => {
      const run = this.cur;
      if (!run || run.stream.done) return this.stopWatch();
      if (pollDue(Date.now() - this.lastEventAt, this.conn?.connected ?? false)) {
        this.lastEventAt = Date.now();
        void run.stream.poll();
      }
    }, 1000);
  }

  private stopWatch() {
    if (this.watchTimer) clearInterval(this.watchTimer);
    this.watchTimer = null;
  }
}
