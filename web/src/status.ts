// The status line: the run's status, phase, exit code and duration, the sandbox in use,
// and the controls a run locks (Run, Stop, New sandbox, the language).
import { fmtDuration } from "./ending.ts";
import type { Phase } from "./events.ts";
import type { Layout } from "./layout.ts";

export type Status = "idle" | "starting" | "running" | "success" | "error" | "timeout" | "cancelled" | "failed";

const STATUS_LABEL: Record<Status, string> = {
  idle: "Ready",
  starting: "Starting…",
  running: "Running",
  success: "Success",
  error: "Error",
  timeout: "Timed out",
  cancelled: "Stopped",
  failed: "Could not start",
};


type StatusElements = Pick<
  Layout,
  "status" | "statusLabel" | "phase" | "exitCode" | "duration" | "sandbox" | "run" | "stop" | "newSandbox" | "language"
>;

export class StatusLine {
  private current: Status = "idle";
  private clock: number | null = null;

  constructor(private readonly el: StatusElements) {}

  get status(): Status {
    return this.current;
  }

  get busy(): boolean {
    return this.current === "starting" || this.current === "running";
  }

  /** `exitNote` follows the exit code in words (e.g. "out of memory"). */
  set(s: Status, extra: { exitCode?: number | null; exitNote?: string; durationMs?: number | null } = {}) {
    const el = this.el;
    this.current = s;
    el.status.dataset.status = s;
    el.statusLabel.textContent = STATUS_LABEL[s];
    const busy = this.busy;
    el.run.disabled = busy;
    el.stop.disabled = s !== "running";
    el.newSandbox.disabled = busy;
    el.language.disabled = busy;
    document.body.dataset.busy = String(busy);
    if ("exitCode" in extra) {
      const c = extra.exitCode;
      el.status.dataset.exitCode = c === null || c === undefined ? "" : String(c);
      const note = extra.exitNote ? ` (${extra.exitNote})` : "";
      el.exitCode.textContent = c === null || c === undefined ? "" : `exit code ${c}${note}`;
    }
    if ("durationMs" in extra) {
      const d = extra.durationMs;
      el.status.dataset.durationMs = d === null || d === undefined ? "" : String(Math.round(d));
      el.duration.textContent = d === null || d === undefined ? "" : fmtDuration(d);
    }
  }

  /** The phase in data-phase, and in words while it goes on. */
  setPhase(p: Phase | null, program = "") {
    this.el.status.dataset.phase = p ?? "";
    this.el.phase.dataset.phase = p ?? "";
    this.el.phase.textContent = p === "install" ? "installing dependencies" : p === "run" ? `running ${program}` : "";
  }

  /** After the end the phase stays in data-phase; in words only when the install is where it failed. */
  setEndPhase(text: string) {
    this.el.phase.textContent = text;
  }

  get exitCode(): number | null {
    return this.el.status.dataset.exitCode === "" ? null : Number(this.el.status.dataset.exitCode);
  }
  get durationMs(): number | null {
    return this.el.status.dataset.durationMs === "" ? null : Number(this.el.status.dataset.durationMs);
  }

  /** Data attributes the tests read: the execution shown and how many runs this page started. */
  mark(attrs: { executionId?: string; run?: number }) {
    if (attrs.executionId !== undefined) this.el.status.dataset.executionId = attrs.executionId;
    if (attrs.run !== undefined) this.el.status.dataset.run = String(attrs.run);
  }

  /** The duration ticks while `going()` (the server's own figure replaces it at the end). */
  tick(startedAt: number, going: () => boolean) {
    if (this.clock) clearInterval(this.clock);
    this.clock = window.setInterval(() => {
      if (!going()) {
        if (this.clock) clearInterval(this.clock);
        this.clock = null;
        return;
      }
      this.el.duration.textContent = fmtDuration(Date.now() - startedAt).replace(/\.\d+ s$/, " s");
    }, 250);
  }

  /** The sandbox runs go to (null: a fresh one on the next run). */
  showSandbox(id: string | null, text?: string) {
    this.el.sandbox.textContent = text ?? (id ? `sandbox ${id}` : "new sandbox on next run");
    this.el.sandbox.dataset.containerId = id ?? "";
  }
}
