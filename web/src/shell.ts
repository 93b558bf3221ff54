// The Terminal tab: an interactive shell in the current sandbox. The server's terminal
// routes (API.md, "Terminals") open the user's login shell on a pseudo-terminal; its
// output comes as server-sent events from a byte offset (EventSource, with the page's
// session cookie), keystrokes go out as POSTs, in order, and the fit addon's size as a
// resize. The terminal's id is kept in sessionStorage per sandbox: after a reload the
// page re-attaches to the same shell from offset 0 and replays its whole output into a
// fresh xterm, so nothing is lost or shown twice. A plain-text mirror of the output is
// kept in a hidden element for tests, as for the run log.
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import "@xterm/xterm/css/xterm.css";
import { api, ApiError } from "./api.ts";
import type { Sandbox } from "./sandbox.ts";
import { stripAnsi } from "./terminal.ts";

/** Most characters per input request (the server takes 64 KiB; a character is ≤ 4 bytes). */
const INPUT_CHUNK = 16 * 1024;
const KEY_PREFIX = "sandstream.terminal.";
/** An escape sequence that is whole (what `stripAnsi` removes). */
const COMPLETE_ESCAPE = /^(\x1b\[[0-?]*[ -\/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-Z\\-_])/;

export type ShellState = "idle" | "opening" | "live" | "reconnecting" | "exited" | "error";

export interface ShellElements {
  host: HTMLElement;
  mirror: HTMLElement;
  state: HTMLElement;
  newButton: HTMLButtonElement;
}

export class Shell {
  private term: Terminal | null = null;
  private fit: FitAddon | null = null;
  private source: EventSource | null = null;
  private sandboxId: string | null = null;
  private tid: string | null = null;
  /** Bytes of output written to the xterm so far. */
  private offset = 0;
  private decoder = new TextDecoder();
  private pending = "";
  /** The start of an escape sequence the mirror has not seen the end of yet. */
  private carry = "";
  private sending = false;
  /** A size the shell has not been told yet. */
  private wantSize: { cols: number; rows: number } | null = null;
  private visible = false;
  private state_: ShellState = "idle";
  /** Bumped whenever the terminal shown changes, so late answers for an old one are dropped. */
  private generation = 0;

  constructor(
    private readonly el: ShellElements,
    private readonly sandbox: Sandbox,
  ) {
    el.newButton.addEventListener("click", () => void this.fresh());
    sandbox.onChange(() => {
      this.detach();
      if (this.visible) void this.start();
    });
  }

  get id(): string | null {
    return this.tid;
  }
  get bytes(): number {
    return this.offset;
  }
  /** The xterm's size in character cells (null before the tab was first shown). */
  get size(): { cols: number; rows: number } | null {
    return this.term ? { cols: this.term.cols, rows: this.term.rows } : null;
  }
  get state(): ShellState {
    return this.state_;
  }

  /** The tab was shown (true) or hidden: the shell starts on first show. */
  setVisible(on: boolean) {
    this.visible = on;
    if (!on) return;
    this.ensureXterm();
    this.queueFit();
    if (!this.source && this.state_ !== "exited" && this.state_ !== "opening") void this.start();
    this.term?.focus();
  }

  private ensureXterm() {
    if (this.term) return;
    const term = new Terminal({
      cursorBlink: true,
      scrollback: 10000,
      fontSize: 13,
      lineHeight: 1.2,
      fontFamily: 'ui-monospace, "SFMono-Regular", "JetBrains Mono", Menlo, Consolas, "Liberation Mono", "DejaVu Sans Mono", monospace',
      theme: { background: "#0d1117", foreground: "#d6dde6", cursor: "#d6dde6", selectionBackground: "#264f78" },
    });
    this.fit = new FitAddon();
    term.loadAddon(this.fit);
    term.open(this.el.host);
    term.onData((d) => this.type(d));
    term.onResize(() => this.queueResize());
    new ResizeObserver(() => this.queueFit()).observe(this.el.host);
    this.term = term;
  }

  private queueFit() {
    requestAnimationFrame(() => {
      if (!this.fit || this.el.host.clientWidth === 0 || this.el.host.clientHeight === 0) return;
      try {
        this.fit.fit();
      } catch {
        /* not laid out yet */
      }
    });
  }

  private setState(s: ShellState, note = "") {
    this.state_ = s;
    this.el.state.dataset.state = s;
    const words: Record<ShellState, string> = {
      idle: "",
      opening: "opening a shell…",
      live: "connected",
      reconnecting: "reconnecting…",
      exited: "",
      error: "",
    };
    this.el.state.textContent = note || words[s];
    this.el.newButton.hidden = !(s === "exited" || s === "error");
  }

  private storageKey(sandboxId: string) {
    return KEY_PREFIX + sandboxId;
  }

  /** Attaches to this sandbox's remembered terminal, or opens one (and a sandbox first when there is none). */
  private async start() {
    const gen = ++this.generation;
    this.setState("opening");
    try {
      let id = this.sandbox.id;
      if (!id) {
        const sb = await api<{ id: string }>("POST", "/api/v1/sandboxes", {}, { timeoutMs: 120000 });
        if (gen !== this.generation) return;
        this.sandbox.set(sb.id); // detaches and starts again, for this sandbox
        return;
      }
      const kept = sessionStorage.getItem(this.storageKey(id));
      this.sandboxId = id;
      this.reset();
      if (kept) return this.attach(kept, gen);
      await this.open(id, gen);
    } catch (err) {
      if (gen === this.generation) this.setState("error", err instanceof ApiError ? err.message : String(err));
    }
  }

  /** Opens a new shell in sandbox `id` at the xterm's size. */
  private async open(id: string, gen: number) {
    this.queueFit();
    await new Promise((r) => requestAnimationFrame(r));
    const cols = this.term?.cols ?? 80;
    const rows = this.term?.rows ?? 24;
    const t = await api<{ id: string }>("POST", `/api/v1/sandboxes/${encodeURIComponent(id)}/terminals`, { cols, rows }, { timeoutMs: 30000 });
    if (gen !== this.generation) return;
    sessionStorage.setItem(this.storageKey(id), t.id);
    this.attach(t.id, gen);
  }

  /** Follows terminal `tid` of the current sandbox from the offset written so far. */
  private attach(tid: string, gen: number) {
    const id = this.sandboxId!;
    this.tid = tid;
    const url = `/api/v1/sandboxes/${encodeURIComponent(id)}/terminals/${encodeURIComponent(tid)}/output?offset=${this.offset}`;
    const es = new EventSource(url);
    let opened = false;
    es.addEventListener("open", () => {
      opened = true;
      if (gen === this.generation) this.setState("live");
      this.queueResize();
    });
    es.addEventListener("output", (e) => {
      if (gen !== this.generation) return;
      const { offset, data } = JSON.parse((e as MessageEvent).data) as { offset: number; data: string };
      let bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
      // After a reconnect the server starts where asked; bytes this page has are skipped anyway.
      if (offset < this.offset) bytes = bytes.subarray(this.offset - offset);
      if (!bytes.length) return;
      this.offset += bytes.length;
      this.term?.write(bytes);
      this.mirrorText(this.decoder.decode(bytes, { stream: true }));
    });
    es.addEventListener("exit", (e) => {
      es.close();
      if (gen !== this.generation) return;
      this.source = null;
      const x = JSON.parse((e as MessageEvent).data) as { exitCode: number; status: string; error?: string };
      const why = x.error ? `: ${x.error}` : "";
      const line = `[the shell ended with exit code ${x.exitCode}${why}]`;
      this.term?.write(`\r\n\x1b[2m${line}\x1b[0m\r\n`);
      this.el.mirror.append(`\n${line}\n`);
      this.setState("exited", `exited (${x.exitCode})`);
    });
    es.addEventListener("end", () => {
      // The server lost the agent's stream: follow again from where this page is.
      es.close();
      if (gen !== this.generation) return;
      this.source = null;
      this.setState("reconnecting");
      window.setTimeout(() => gen === this.generation && this.attach(tid, gen), 1000);
    });
    es.addEventListener("error", () => {
      if (gen !== this.generation) return;
      if (es.readyState === EventSource.CONNECTING) return this.setState("reconnecting"); // EventSource retries by itself
      es.close();
      this.source = null;
      if (!opened) return void this.refused(tid, gen);
      this.setState("reconnecting");
      window.setTimeout(() => gen === this.generation && this.attach(tid, gen), 1000);
    });
    this.source = es;
  }

  /** Appends output to the mirror without its escape sequences; one cut by a chunk's end
   * waits for the rest, so the mirror is the same however the output was chunked. */
  private mirrorText(text: string) {
    text = this.carry + text;
    this.carry = "";
    const esc = text.lastIndexOf("\x1b");
    if (esc >= 0 && text.length - esc < 256 && !COMPLETE_ESCAPE.test(text.slice(esc))) {
      this.carry = text.slice(esc);
      text = text.slice(0, esc);
    }
    this.el.mirror.append(stripAnsi(text));
  }

  /** The output stream was refused: say why (a terminal that is gone is forgotten). */
  private async refused(tid: string, gen: number) {
    const id = this.sandboxId!;
    try {
      // The same request, to read the error: EventSource does not show it.
      const res = await fetch(`/api/v1/sandboxes/${encodeURIComponent(id)}/terminals/${encodeURIComponent(tid)}/output?offset=${this.offset}`, {
        headers: { accept: "application/json" },
      });
      const body = await res.json().catch(() => null);
      res.body?.cancel().catch(() => {});
      if (gen !== this.generation) return;
      if (res.ok) return this.attach(tid, gen);
      if (res.status === 404 && this.offset === 0) {
        // The remembered shell is gone (the sandbox's agent restarted): open a new one.
        sessionStorage.removeItem(this.storageKey(id));
        this.detach();
        return void this.start();
      }
      this.setState("error", body?.message ?? `HTTP ${res.status}`);
    } catch {
      if (gen === this.generation) this.setState("error", "Cannot reach the Sandstream server.");
    }
  }

  /** "New terminal": forgets the shell shown and opens another. */
  private async fresh() {
    if (this.sandboxId) sessionStorage.removeItem(this.storageKey(this.sandboxId));
    this.detach();
    await this.start();
  }

  private reset() {
    this.term?.reset();
    this.el.mirror.textContent = "";
    this.offset = 0;
    this.decoder = new TextDecoder();
    this.carry = "";
    this.pending = "";
    this.wantSize = null;
  }

  /** Stops following the terminal shown (it keeps running in the sandbox). */
  private detach() {
    this.generation++;
    this.source?.close();
    this.source = null;
    this.tid = null;
    this.sandboxId = null;
    this.reset();
    this.setState("idle");
  }

  /** Keystrokes: queued, and sent one request at a time so they arrive in order. */
  private type(data: string) {
    if (!this.tid || this.state_ === "exited") return;
    this.pending += data;
    this.kick();
  }

  /** The xterm's size changed (or the shell is new): the shell is told before any later
   * keystroke goes (one queue for both); sizes that pile up meanwhile become the last one. */
  private queueResize() {
    if (!this.tid || !this.term || this.state_ === "exited") return;
    this.wantSize = { cols: this.term.cols, rows: this.term.rows };
    this.kick();
  }

  private kick() {
    if (!this.sending) void this.flush();
  }

  private async flush() {
    this.sending = true;
    try {
      while ((this.pending || this.wantSize) && this.tid && this.sandboxId) {
        const base = `/api/v1/sandboxes/${encodeURIComponent(this.sandboxId)}/terminals/${encodeURIComponent(this.tid)}`;
        if (this.wantSize) {
          const size = this.wantSize;
          this.wantSize = null;
          await api("POST", `${base}/resize`, size, { timeoutMs: 30000 }).catch(() => undefined);
          continue;
        }
        const part = this.pending.slice(0, INPUT_CHUNK);
        this.pending = this.pending.slice(part.length);
        try {
          await api("POST", `${base}/input`, { data: part }, { timeoutMs: 30000 });
        } catch (err) {
          // An exited shell says so through its output stream; other failures are shown.
          if (err instanceof ApiError && err.status !== 409) this.setState(this.state_, err.message);
          this.pending = "";
        }
      }
    } finally {
      this.sending = false;
    }
  }
}
