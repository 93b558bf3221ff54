// Sandstream playground: edit a program, run it in a sandbox, watch its output live.
//
// It speaks the same contract a third-party frontend (design note 000's CodeEditor.tsx)
// would: `POST /api/sandbox/exec`, then socket.io `join-container` and the
// `execution-*` events, with `resume-execution` after a reconnect. Chunks are kept in
// `seq` order, each once.
import { io, Socket } from "socket.io-client";
import "./style.css";
import { api, ApiError, ExecAccepted, ExecutionInfo, LogChunk, LogsPage } from "./api";
import { CodeEditor } from "./editor";
import { LogTerminal } from "./terminal";
import {
  badFileName,
  DEPS,
  DEPS_HINT,
  Language,
  LANGUAGES,
  loadWorkspaces,
  PROGRAM,
  saveWorkspaces,
  Workspace,
} from "./workspace";

type Status = "idle" | "starting" | "running" | "success" | "error" | "timeout" | "cancelled" | "failed";
type Phase = "install" | "run";
type ConnState = "connecting" | "connected" | "reconnecting" | "unauthorized";

interface OutputEvent extends LogChunk {
  executionId: string;
  containerId: string;
}
interface PhaseEvent {
  executionId: string;
  containerId: string;
  phase: Phase;
}
interface CompleteEvent {
  executionId: string;
  containerId: string;
  exitCode: number | null;
  status: "success" | "error" | "timeout" | "cancelled";
  durationMs?: number | null;
  error?: string;
}

interface Execution {
  id: string;
  containerId: string;
  language: Language;
  program: string;
  timeoutMs: number;
  lastSeq: number;
  pending: Map<number, LogChunk>;
  phase: Phase | null;
  finishing: boolean;
  done: boolean;
  gapTimer: number | null;
  startedAt: number;
}

const PHASE_ORDER: Record<Phase, number> = { install: 1, run: 2 };
/** The editor key of the stdin tab (not a file name: it has a character names cannot). */
const STDIN_TAB = ":stdin";
const CONTAINER_KEY = "sandstream.containerId";

// ---------------------------------------------------------------------------------
// DOM

const app = document.getElementById("app")!;
app.innerHTML = `
<header class="topbar">
  <div class="brand">
    <svg viewBox="0 0 32 32" aria-hidden="true"><rect width="32" height="32" rx="7" fill="#1f6feb"/><path d="M7 11c4-4 8 4 12 0s6-2 6-2M7 17c4-4 8 4 12 0s6-2 6-2M7 23c4-4 8 4 12 0s6-2 6-2" stroke="#fff" stroke-width="2.4" fill="none" stroke-linecap="round"/></svg>
    <span class="name">Sandstream</span><span class="sub">playground</span>
  </div>
  <div class="controls">
    <label class="field"><span>Language</span>
      <select data-testid="language" aria-label="Language">
        ${LANGUAGES.map((l) => `<option value="${l.id}">${l.label}</option>`).join("")}
      </select>
    </label>
    <label class="field" title="Bounds the whole run, dependency install included"><span>Timeout</span>
      <input data-testid="timeout" aria-label="Timeout in seconds" type="number" min="1" max="86400" step="1" value="120" /><span class="unit">s</span>
    </label>
    <button class="btn primary" data-testid="run" title="Run (Ctrl/Cmd+Enter)"><span class="icon">▶</span> Run <kbd class="kbd">⌘/Ctrl ↵</kbd></button>
    <button class="btn danger" data-testid="stop" disabled title="Stop the running program"><span class="icon">■</span> Stop</button>
    <button class="btn" data-testid="new-sandbox" title="Throw this sandbox away and start a fresh one">New sandbox</button>
  </div>
</header>
<div class="message" data-testid="message" data-kind="" hidden role="alert">
  <span class="text" data-testid="message-text"></span>
  <button class="btn small" data-testid="message-action" hidden></button>
  <button class="dismiss" aria-label="Dismiss" data-testid="message-dismiss">×</button>
</div>
<main class="layout">
  <section class="pane editor-pane" aria-label="Editor">
    <div class="tabs" role="tablist" data-testid="tabs"></div>
    <div class="editor" data-testid="editor"></div>
  </section>
  <section class="pane output-pane" aria-label="Output">
    <div class="statusbar">
      <span class="status" data-testid="status" data-status="idle" data-exit-code="" data-phase="" data-duration-ms="" role="status" aria-live="polite">
        <span class="dot"></span><span class="label" data-testid="status-label">Ready</span>
      </span>
      <span class="phase" data-testid="phase"></span>
      <span class="exit" data-testid="exit-code"></span>
      <span class="duration" data-testid="duration"></span>
      <span class="spacer"></span>
      <span class="sandbox" data-testid="sandbox-id" title="The sandbox is reused between runs"></span>
      <span class="conn" data-testid="connection" data-state="connecting"><span class="dot"></span><span class="conn-label">connecting…</span></span>
    </div>
    <div class="terminal" data-testid="terminal"></div>
    <pre data-testid="terminal-text" hidden></pre>
  </section>
</main>`;

const $ = <T extends HTMLElement = HTMLElement>(sel: string) => app.querySelector<T>(`[data-testid="${sel}"]`)!;
const langSelect = $<HTMLSelectElement>("language");
const timeoutInput = $<HTMLInputElement>("timeout");
const runBtn = $<HTMLButtonElement>("run");
const stopBtn = $<HTMLButtonElement>("stop");
const newBtn = $<HTMLButtonElement>("new-sandbox");
const messageEl = $("message");
const messageText = $("message-text");
const messageAction = $<HTMLButtonElement>("message-action");
const tabsEl = $("tabs");
const statusEl = $("status");
const statusLabel = $("status-label");
const phaseEl = $("phase");
const exitEl = $("exit-code");
const durationEl = $("duration");
const sandboxEl = $("sandbox-id");
const connEl = $("connection");

const term = new LogTerminal($("terminal"), $("terminal-text"));

// ---------------------------------------------------------------------------------
// Workspace and editor

const workspaces = loadWorkspaces();
let language: Language = (localStorage.getItem("sandstream.language") as Language) || "python";
if (!workspaces[language]) language = "python";
let saveTimer: number | null = null;

const editor = new CodeEditor($("editor"), {
  onRun: () => void run(),
  onChange: (name, content) => {
    if (name === STDIN_TAB) ws().stdin = content;
    const f = ws().files.find((x) => x.name === name);
    if (f) f.content = content;
    if (saveTimer) clearTimeout(saveTimer);
    saveTimer = window.setTimeout(() => saveWorkspaces(workspaces), 300);
  },
});

function ws(): Workspace {
  return workspaces[language];
}

let addingFile = false;

function renderTabs() {
  tabsEl.textContent = "";
  const w = ws();
  w.files.forEach((f, i) => {
    const tab = document.createElement("div");
    tab.className = "tab" + (editor.activeName === f.name ? " active" : "") + (i === 0 ? " program" : i === 1 ? " deps" : " extra");
    tab.setAttribute("role", "tab");
    tab.setAttribute("aria-selected", String(editor.activeName === f.name));
    tab.dataset.testid = `tab-${f.name}`;
    tab.dataset.file = f.name;
    tab.tabIndex = 0;
    const label = document.createElement("span");
    label.className = "tab-name";
    label.textContent = f.name;
    tab.append(label);
    if (i === 1) {
      const hint = document.createElement("span");
      hint.className = "tab-hint";
      hint.textContent = f.content.trim() ? "" : "empty";
      tab.append(hint);
    }
    if (i >= 2) {
      const close = document.createElement("button");
      close.className = "tab-close";
      close.title = `Remove ${f.name}`;
      close.setAttribute("aria-label", `Remove ${f.name}`);
      close.dataset.testid = `close-${f.name}`;
      close.textContent = "×";
      close.addEventListener("click", (e) => {
        e.stopPropagation();
        removeFile(f.name);
      });
      tab.append(close);
    }
    tab.addEventListener("click", () => selectTab(f.name));
    tab.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        selectTab(f.name);
      }
    });
    tabsEl.append(tab);
  });
  // stdin is not a file: it is sent as the request's `stdin`.
  const stdinTab = document.createElement("div");
  stdinTab.className = "tab stdin" + (editor.activeName === STDIN_TAB ? " active" : "");
  stdinTab.setAttribute("role", "tab");
  stdinTab.setAttribute("aria-selected", String(editor.activeName === STDIN_TAB));
  stdinTab.dataset.testid = "tab-stdin";
  stdinTab.tabIndex = 0;
  stdinTab.title = "Standard input for the program";
  stdinTab.innerHTML = `<span class="tab-name">stdin</span><span class="tab-hint">${(ws().stdin ?? "").length ? "" : "empty"}</span>`;
  stdinTab.addEventListener("click", () => selectTab(STDIN_TAB));
  stdinTab.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      selectTab(STDIN_TAB);
    }
  });
  if (addingFile) {
    const form = document.createElement("form");
    form.className = "new-file";
    const input = document.createElement("input");
    input.dataset.testid = "new-file-name";
    input.placeholder = "file name, e.g. data.csv";
    input.setAttribute("aria-label", "New file name");
    input.spellcheck = false;
    form.append(input);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const name = input.value.trim();
      const why = badFileName(name, ws().files.map((f) => f.name));
      if (why) {
        showMessage("warn", why);
        input.focus();
        return;
      }
      addingFile = false;
      hideMessage();
      setFile(name, "");
      selectTab(name);
      editor.focus();
    });
    input.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        addingFile = false;
        renderTabs();
      }
    });
    input.addEventListener("blur", () => {
      setTimeout(() => {
        if (addingFile && !input.value.trim()) {
          addingFile = false;
          renderTabs();
        }
      }, 150);
    });
    tabsEl.append(form);
    setTimeout(() => input.focus(), 0);
  } else {
    const add = document.createElement("button");
    add.className = "tab-add";
    add.dataset.testid = "add-file";
    add.title = "Add a file";
    add.setAttribute("aria-label", "Add a file");
    add.textContent = "+";
    add.addEventListener("click", () => {
      addingFile = true;
      renderTabs();
    });
    tabsEl.append(add);
  }
  const spacer = document.createElement("span");
  spacer.className = "tabs-spacer";
  tabsEl.append(spacer, stdinTab);
}

function loadLanguage(l: Language) {
  language = l;
  localStorage.setItem("sandstream.language", l);
  langSelect.value = l;
  editor.dropAll();
  for (const f of ws().files) editor.load(f.name, f.content, f.name === DEPS[l] ? DEPS_HINT[l] : "");
  editor.load(STDIN_TAB, ws().stdin ?? "", "Text given to the program on its standard input (optional).");
  editor.show(PROGRAM[l]);
  renderTabs();
}

function selectTab(name: string) {
  if (!editor.has(name)) return;
  editor.show(name);
  renderTabs();
}

function setFile(name: string, content: string) {
  const w = ws();
  let f = w.files.find((x) => x.name === name);
  if (!f) {
    f = { name, content };
    w.files.push(f);
    editor.load(name, content);
  } else {
    editor.setContent(name, content);
  }
  f.content = content;
  saveWorkspaces(workspaces);
  renderTabs();
}

function removeFile(name: string) {
  const w = ws();
  const i = w.files.findIndex((f) => f.name === name);
  if (i < 2) return; // the program and the dependency file stay
  w.files.splice(i, 1);
  const wasActive = editor.activeName === name;
  editor.drop(name);
  if (wasActive) editor.show(w.files[Math.min(i, w.files.length - 1)].name);
  saveWorkspaces(workspaces);
  renderTabs();
}

langSelect.addEventListener("change", () => loadLanguage(langSelect.value as Language));
loadLanguage(language);
// The dependency tab shows "empty" until it has content.
setInterval(() => {
  const deps = tabsEl.querySelector(".tab.deps .tab-hint");
  if (deps) deps.textContent = ws().files[1].content.trim() ? "" : "empty";
  const stdin = tabsEl.querySelector(".tab.stdin .tab-hint");
  if (stdin) stdin.textContent = (ws().stdin ?? "").length ? "" : "empty";
}, 1000);

// ---------------------------------------------------------------------------------
// Messages

type MessageKind = "error" | "warn" | "info";
function showMessage(kind: MessageKind, text: string, action?: { label: string; run: () => void }) {
  messageEl.hidden = false;
  messageEl.dataset.kind = kind;
  messageText.textContent = text;
  if (action) {
    messageAction.hidden = false;
    messageAction.textContent = action.label;
    messageAction.onclick = () => {
      hideMessage();
      action.run();
    };
  } else {
    messageAction.hidden = true;
    messageAction.onclick = null;
  }
}
function hideMessage() {
  messageEl.hidden = true;
  messageEl.dataset.kind = "";
}
$("message-dismiss").addEventListener("click", hideMessage);

// ---------------------------------------------------------------------------------
// Status line

let status: Status = "idle";
let lastError: string | null = null;

function fmtDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const m = Math.floor(ms / 60000);
  return `${m} min ${Math.round((ms % 60000) / 1000)} s`;
}

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

function setStatus(s: Status, extra: { exitCode?: number | null; durationMs?: number | null } = {}) {
  status = s;
  statusEl.dataset.status = s;
  statusLabel.textContent = STATUS_LABEL[s];
  const busy = s === "starting" || s === "running";
  runBtn.disabled = busy;
  stopBtn.disabled = s !== "running";
  newBtn.disabled = busy;
  langSelect.disabled = busy;
  document.body.dataset.busy = String(busy);
  if ("exitCode" in extra) {
    const c = extra.exitCode;
    statusEl.dataset.exitCode = c === null || c === undefined ? "" : String(c);
    exitEl.textContent = c === null || c === undefined ? "" : `exit code ${c}`;
  }
  if ("durationMs" in extra) {
    const d = extra.durationMs;
    statusEl.dataset.durationMs = d === null || d === undefined ? "" : String(Math.round(d));
    durationEl.textContent = d === null || d === undefined ? "" : fmtDuration(d);
  }
}

function setPhaseLabel(p: Phase | null, program = "") {
  statusEl.dataset.phase = p ?? "";
  phaseEl.dataset.phase = p ?? "";
  phaseEl.textContent = p === "install" ? "installing dependencies" : p === "run" ? `running ${program}` : "";
}

// ---------------------------------------------------------------------------------
// Sandbox (reused between runs)

let containerId: string | null = localStorage.getItem(CONTAINER_KEY);
let joinedContainer: string | null = null;

function setContainer(id: string | null) {
  containerId = id;
  if (id) localStorage.setItem(CONTAINER_KEY, id);
  else localStorage.removeItem(CONTAINER_KEY);
  sandboxEl.textContent = id ? `sandbox ${id}` : "new sandbox on next run";
  sandboxEl.dataset.containerId = id ?? "";
}

// ---------------------------------------------------------------------------------
// Connection (socket.io, same origin; the session cookie authenticates it)

const stats = { socketChunks: 0, restChunks: 0, duplicatesDropped: 0, reconnects: 0, resumes: 0, disconnects: 0 };

const socket: Socket = io({
  path: "/socket.io/",
  withCredentials: true,
  reconnection: true,
  reconnectionDelay: 500,
  reconnectionDelayMax: 2000,
  randomizationFactor: 0.2,
  timeout: 8000,
});

let conn: ConnState = "connecting";
let everConnected = false;
function setConn(c: ConnState, detail = "") {
  conn = c;
  connEl.dataset.state = c;
  const label = connEl.querySelector(".conn-label")!;
  label.textContent =
    c === "connected" ? "live" : c === "connecting" ? "connecting…" : c === "reconnecting" ? "reconnecting…" : "not signed in";
  connEl.title = detail || label.textContent!;
}

socket.on("connect", () => {
  if (everConnected) stats.reconnects++;
  everConnected = true;
  setConn("connected");
  if (messageEl.dataset.kind && messageEl.dataset.conn === "1") {
    hideMessage();
    messageEl.dataset.conn = "";
  }
  joinedContainer = null;
  // Rooms belong to a socket: a new connection joins again (and then resumes).
  if (cur && !cur.done) socket.emit("join-container", cur.containerId);
});

socket.on("disconnect", (reason) => {
  joinedContainer = null;
  stats.disconnects++;
  if (reason === "io client disconnect") return;
  setConn("reconnecting", `connection lost (${reason})`);
  if (reason === "io server disconnect") setTimeout(() => socket.connect(), 1000);
  if (cur && !cur.done) startWatch();
});

socket.on("connect_error", (err: Error & { data?: any }) => {
  const msg = String(err?.message ?? err);
  if (/unauthori[sz]ed|\b401\b|forbidden|api key|unknown key|revoked|session|log in/i.test(msg) || err?.data?.code === "unauthorized") {
    setConn("unauthorized", msg);
    showMessage("error", "Not signed in (or the session expired). Open the login link printed by `sandstream up` (http://…/?token=…).");
    messageEl.dataset.conn = "1";
  } else {
    setConn(everConnected ? "reconnecting" : "connecting", `cannot connect: ${msg}`);
  }
  // A refused handshake is not retried by socket.io itself; keep trying slowly.
  if (!socket.active) setTimeout(() => socket.connect(), 3000);
  if (cur && !cur.done) startWatch();
});

socket.on("container-joined", (ev: { containerId: string }) => {
  joinedContainer = ev?.containerId ?? null;
  if (cur && !cur.done && cur.containerId === joinedContainer) resume();
});

socket.on("error", (ev: { code?: string; message?: string }) => {
  const code = ev?.code ?? "";
  const message = ev?.message ?? "unknown error";
  console.warn("socket error event", ev);
  if (code === "not_found" || code === "conflict") {
    if (cur && !cur.done && message.includes(cur.id)) {
      // The execution is unknown to the server: nothing more will come.
      finalize({ executionId: cur.id, containerId: cur.containerId, exitCode: null, status: "error", error: message });
      return;
    }
    if (cur && !cur.done && message.includes(cur.containerId)) {
      // The sandbox is gone but its execution's log is kept: replay it without the room.
      resume();
      if (containerId === cur.containerId) setContainer(null);
      return;
    }
    const gone = containerId && (message.includes(containerId) || !cur || cur.done) ? containerId : null;
    if (gone && (!cur || cur.done)) {
      setContainer(null);
      showMessage("warn", `Sandbox ${gone} is gone (expired or removed). The next run starts a fresh one.`);
    }
    return;
  }
  showMessage("error", `Server: ${message}`);
});

socket.on("execution-output", (ev: OutputEvent) => {
  if (!cur || ev?.executionId !== cur.id) return;
  lastEventAt = Date.now();
  stats.socketChunks++;
  accept(ev);
});

socket.on("execution-phase", (ev: PhaseEvent) => {
  if (!cur || ev?.executionId !== cur.id || cur.done) return;
  lastEventAt = Date.now();
  if (cur.pending.size === 0) advancePhase(ev.phase);
});

socket.on("execution-complete", (ev: CompleteEvent) => {
  if (!cur || ev?.executionId !== cur.id) return;
  void complete(ev);
});

// ---------------------------------------------------------------------------------
// Runs

let cur: Execution | null = null;
const kept: (LogChunk & { executionId?: string })[] = [];
(window as any).__sandstreamLog = kept;

function resume() {
  if (!cur || cur.done) return;
  stats.resumes++;
  lastEventAt = Date.now();
  socket.emit("resume-execution", { executionId: cur.id, afterSeq: cur.lastSeq });
}

/** Keeps a chunk once, in seq order; a chunk that arrives early waits for the gap. */
function accept(c: LogChunk) {
  const e = cur;
  if (!e || e.done) return;
  const seq = Number(c.seq);
  if (!Number.isFinite(seq) || seq <= e.lastSeq || e.pending.has(seq)) {
    stats.duplicatesDropped++;
    return;
  }
  e.pending.set(seq, { seq, type: c.type, phase: c.phase, data: String(c.data ?? "") });
  flush(false);
}

function flush(force: boolean) {
  const e = cur;
  if (!e) return;
  for (;;) {
    let next = e.pending.get(e.lastSeq + 1);
    if (!next && force && e.pending.size) next = e.pending.get(Math.min(...e.pending.keys()));
    if (!next) break;
    e.pending.delete(next.seq);
    e.lastSeq = next.seq;
    emitChunk(next);
  }
  if (e.pending.size && !e.gapTimer && !e.done) {
    e.gapTimer = window.setTimeout(() => void fillGap(), 1200);
  } else if (!e.pending.size && e.gapTimer) {
    clearTimeout(e.gapTimer);
    e.gapTimer = null;
  }
}

function emitChunk(c: LogChunk) {
  if (c.phase === "install" || c.phase === "run") advancePhase(c.phase);
  kept.push({ seq: c.seq, type: c.type, phase: c.phase, data: c.data });
  term.write(c.data, c.type === "stderr" ? "stderr" : "stdout");
}

function advancePhase(p: Phase) {
  const e = cur;
  if (!e || !(p in PHASE_ORDER)) return;
  if (e.phase && PHASE_ORDER[p] <= PHASE_ORDER[e.phase]) return;
  e.phase = p;
  setPhaseLabel(p, e.program);
  if (p === "install") {
    const cmd = e.language === "python" ? "pip install -r requirements.txt" : "npm install";
    term.system(`▸ Installing dependencies (${cmd})`, "36");
  } else {
    term.system(`▸ Running ${e.program}`, "36");
  }
}

/** Fetches what is missing after the last kept chunk over REST (a gap, or a complete). */
async function fetchMissing(): Promise<boolean> {
  const e = cur;
  if (!e) return false;
  try {
    const page = await api<LogsPage>("GET", `/api/v1/executions/${encodeURIComponent(e.id)}/logs?afterSeq=${e.lastSeq}`, undefined, { timeoutMs: 5000 });
    if (cur !== e) return false;
    for (const c of page?.chunks ?? []) {
      if (c.seq > e.lastSeq && !e.pending.has(c.seq)) {
        stats.restChunks++;
        e.pending.set(c.seq, c);
      }
    }
    return true;
  } catch {
    return false;
  }
}

async function fillGap() {
  const e = cur;
  if (!e) return;
  e.gapTimer = null;
  if (!e.pending.size || e.done) return;
  const ok = await fetchMissing();
  if (cur !== e) return;
  // When the server answered and the gap is still there, the server has no such chunk.
  flush(ok);
}

async function complete(ev: CompleteEvent) {
  const e = cur;
  if (!e || e.done || e.finishing) return;
  e.finishing = true;
  // Make sure nothing is missing before the summary line: one cheap REST call for
  // anything after the last kept chunk (normally an empty answer).
  await fetchMissing();
  if (cur !== e) return;
  flush(true);
  finalize(ev);
}

function finalize(ev: CompleteEvent) {
  const e = cur;
  if (!e || e.done) return;
  e.done = true;
  if (e.gapTimer) clearTimeout(e.gapTimer);
  stopWatch();
  const durationMs = typeof ev.durationMs === "number" ? ev.durationMs : Date.now() - e.startedAt;
  const code = ev.exitCode;
  const st: Status = (["success", "error", "timeout", "cancelled"] as const).includes(ev.status as any) ? (ev.status as Status) : "error";
  setStatus(st, { exitCode: code, durationMs });
  // The phase stays in data-phase; in words only when the install is where it failed.
  phaseEl.textContent = st !== "success" && e.phase === "install" ? "while installing dependencies" : "";
  const codeText = code === null || code === undefined ? "" : ` · exit code ${code}`;
  const dur = ` · ${fmtDuration(durationMs)}`;
  switch (st) {
    case "success":
      term.system(`✔ Finished${codeText}${dur}`, "32");
      break;
    case "error":
      term.system(`✘ ${e.phase === "install" ? "Dependency install failed" : "Failed"}${codeText}${dur}${ev.error ? ` · ${ev.error}` : ""}`, "31");
      break;
    case "timeout":
      term.system(`⏱ Timed out after ${fmtDuration(e.timeoutMs)} (the limit)${codeText}`, "33");
      showMessage("warn", `The program ran past its timeout of ${fmtDuration(e.timeoutMs)} and was stopped. Raise the timeout if it needs longer.`);
      break;
    case "cancelled":
      term.system(`■ Stopped${codeText}${dur}`, "33");
      break;
  }
}

function currentTimeoutMs(): number {
  const s = Number(timeoutInput.value);
  return Number.isFinite(s) && s > 0 ? Math.round(s * 1000) : 120000;
}

/** Counts the runs started from this page (data-run on the status line, for tests). */
let runCount = 0;

async function run(): Promise<{ executionId: string; containerId: string } | null> {
  if (status === "starting" || status === "running") return null;
  statusEl.dataset.run = String(++runCount);
  hideMessage();
  const w = ws();
  const program = w.files[0];
  const files: Record<string, string> = {};
  w.files.slice(1).forEach((f, i) => {
    if (i === 0 && !f.content.trim()) return; // empty dependency file: no install step
    files[f.name] = f.content;
  });
  const timeoutMs = currentTimeoutMs();
  term.clear();
  kept.length = 0;
  cur = null;
  lastError = null;
  setPhaseLabel(null);
  setStatus("starting", { exitCode: null, durationMs: null });
  term.system(containerId ? `Starting ${program.name} in sandbox ${containerId}…` : `Starting a fresh sandbox for ${program.name}…`);

  const body: Record<string, unknown> = { code: program.content, language, files, timeout: timeoutMs };
  if (w.stdin) body.stdin = w.stdin;
  let res: ExecAccepted;
  try {
    res = await api<ExecAccepted>("POST", "/api/sandbox/exec", containerId ? { ...body, containerId } : body, { timeoutMs: 120000 });
  } catch (err) {
    const e = err as ApiError;
    if (containerId && (e.status === 404 || e.status === 409)) {
      const gone = containerId;
      setContainer(null);
      showMessage("info", `Sandbox ${gone} is gone (expired or removed); started a fresh one.`);
      term.system(`Sandbox ${gone} is gone; starting a fresh one…`);
      try {
        res = await api<ExecAccepted>("POST", "/api/sandbox/exec", body, { timeoutMs: 120000 });
      } catch (err2) {
        return failStart(err2);
      }
    } else {
      return failStart(err);
    }
  }
  const data = res?.data;
  if (!data?.executionId || !data?.containerId) return failStart(new Error("The server answered without an execution id."));
  setContainer(data.containerId);
  // A sandbox lives for a TTL (5 min by default): keep it at least as long as this run
  // may take, plus a while for the next run, so it is neither lost mid-run nor between runs.
  const ttl = Math.max(5 * 60_000, timeoutMs + 5 * 60_000);
  void api("POST", `/api/v1/sandboxes/${encodeURIComponent(data.containerId)}/timeout`, { timeoutMs: ttl }, { timeoutMs: 15000 }).catch(() => undefined);
  cur = {
    id: data.executionId,
    containerId: data.containerId,
    language,
    program: program.name,
    timeoutMs,
    lastSeq: 0,
    pending: new Map(),
    phase: null,
    finishing: false,
    done: false,
    gapTimer: null,
    startedAt: Date.now(),
  };
  statusEl.dataset.executionId = cur.id;
  setStatus("running");
  startClock(cur);
  rememberRun(cur);
  lastEventAt = Date.now();
  startWatch();
  // Join the sandbox's room (or, when already in it, ask for anything sent before we
  // knew the execution id). Events are routed by room, not by socket id, so they
  // survive a reconnect.
  if (socket.connected) {
    if (joinedContainer === cur.containerId) resume();
    else socket.emit("join-container", cur.containerId);
  }
  return { executionId: cur.id, containerId: cur.containerId };
}

// The last run is remembered for this tab, so a reload shows it again (and, while it
// still runs, follows it: join, then resume from seq 0).
const LAST_RUN_KEY = "sandstream.lastRun";
function rememberRun(e: Execution) {
  try {
    sessionStorage.setItem(
      LAST_RUN_KEY,
      JSON.stringify({ id: e.id, containerId: e.containerId, language: e.language, program: e.program, timeoutMs: e.timeoutMs, startedAt: e.startedAt }),
    );
  } catch {
    /* storage disabled */
  }
}

async function reattach() {
  let saved: { id: string; containerId: string; language: Language; program: string; timeoutMs: number; startedAt: number } | null = null;
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
  if (cur || status !== "idle") return; // the user started something meanwhile
  term.clear();
  kept.length = 0;
  cur = {
    id: saved.id,
    containerId: saved.containerId,
    language: saved.language,
    program: saved.program,
    timeoutMs: saved.timeoutMs,
    lastSeq: 0,
    pending: new Map(),
    phase: null,
    finishing: false,
    done: false,
    gapTimer: null,
    startedAt: saved.startedAt || Date.now(),
  };
  statusEl.dataset.executionId = cur.id;
  term.system(`${info.status === "running" ? "Following" : "Showing"} the last run (${saved.program}, ${saved.id})…`);
  setStatus("running", { exitCode: null, durationMs: null });
  startClock(cur);
  lastEventAt = Date.now();
  startWatch();
  if (socket.connected) socket.emit("join-container", cur.containerId);
}

// The duration ticks while a run goes on (the server's own figure replaces it at the end).
let clock: number | null = null;
function startClock(e: Execution) {
  if (clock) clearInterval(clock);
  clock = window.setInterval(() => {
    if (cur !== e || e.done) {
      if (clock) clearInterval(clock);
      clock = null;
      return;
    }
    durationEl.textContent = fmtDuration(Date.now() - e.startedAt).replace(/\.\d+ s$/, " s");
  }, 250);
}

function failStart(err: unknown): null {
  const msg = err instanceof ApiError ? err.message : err instanceof Error ? err.message : String(err);
  lastError = msg;
  setStatus("failed", { exitCode: null, durationMs: null });
  term.system(`✘ ${msg}`, "31");
  showMessage("error", msg);
  return null;
}

async function stop() {
  const e = cur;
  if (!e || e.done || status !== "running") return;
  stopBtn.disabled = true;
  stopBtn.dataset.stopping = "true";
  try {
    await api("POST", `/api/v1/executions/${encodeURIComponent(e.id)}/cancel`, {}, { timeoutMs: 15000 });
    // execution-complete (status cancelled) follows on the socket; poll in case it does not.
    setTimeout(() => {
      if (cur === e && !e.done) void pollOnce();
    }, 4000);
  } catch (err) {
    const ae = err as ApiError;
    if (ae.status === 409) void pollOnce();
    else {
      showMessage("error", `Could not stop: ${ae.message}`);
      if (cur === e && !e.done) stopBtn.disabled = false;
    }
  } finally {
    delete stopBtn.dataset.stopping;
  }
}

async function newSandbox() {
  if (status === "starting" || status === "running") return;
  const old = containerId;
  setContainer(null);
  hideMessage();
  newBtn.disabled = true;
  sandboxEl.textContent = "starting a fresh sandbox…";
  try {
    if (old) await api("DELETE", `/api/v1/sandboxes/${encodeURIComponent(old)}`, undefined, { timeoutMs: 15000 }).catch(() => undefined);
    const sb = await api<{ id: string }>("POST", "/api/v1/sandboxes", {}, { timeoutMs: 120000 });
    setContainer(sb.id);
    showMessage("info", `Fresh sandbox ${sb.id} is ready.`);
  } catch (err) {
    setContainer(null);
    const msg = err instanceof ApiError ? err.message : String(err);
    showMessage("warn", `${msg} A fresh sandbox will be started on the next run instead.`);
  } finally {
    const now = status as Status;
    newBtn.disabled = now === "starting" || now === "running";
  }
}

// A watchdog for the current run. While the socket is down, or when it has been silent
// for a while, the REST API is asked for the missing chunks and the status instead: the
// output keeps coming when socket.io cannot connect at all, and a chunk or a completion
// the socket never delivered (e.g. dropped by a full server-side buffer) still arrives.
let watchTimer: number | null = null;
let lastEventAt = 0;
const SILENCE_MS = 4000;
function startWatch() {
  if (watchTimer) return;
  watchTimer = window.setInterval(() => {
    const e = cur;
    if (!e || e.done) return stopWatch();
    const quiet = Date.now() - lastEventAt;
    if (quiet > (socket.connected ? SILENCE_MS : 1500)) {
      lastEventAt = Date.now();
      void pollOnce();
    }
  }, 1000);
}
function stopWatch() {
  if (watchTimer) clearInterval(watchTimer);
  watchTimer = null;
}

async function pollOnce() {
  const e = cur;
  if (!e || e.done || e.finishing) return;
  const ok = await fetchMissing();
  if (!ok || cur !== e || e.done) return;
  flush(false);
  try {
    const info = await api<ExecutionInfo>("GET", `/api/v1/executions/${encodeURIComponent(e.id)}`, undefined, { timeoutMs: 5000 });
    if (cur !== e || e.done) return;
    if (info && info.status !== "running") {
      void complete({ executionId: e.id, containerId: e.containerId, exitCode: info.exitCode, status: info.status, durationMs: info.durationMs });
    }
  } catch (err) {
    if ((err as ApiError).status === 404) {
      finalize({ executionId: e.id, containerId: e.containerId, exitCode: null, status: "error", error: "the server no longer knows this execution" });
    }
  }
}

// ---------------------------------------------------------------------------------
// Wiring

runBtn.addEventListener("click", () => void run());
stopBtn.addEventListener("click", () => void stop());
newBtn.addEventListener("click", () => void newSandbox());
document.addEventListener("keydown", (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === "Enter" && !e.defaultPrevented) {
    e.preventDefault();
    void run();
  }
});
timeoutInput.value = localStorage.getItem("sandstream.timeoutSec") ?? timeoutInput.value;
timeoutInput.addEventListener("change", () => localStorage.setItem("sandstream.timeoutSec", timeoutInput.value));

setContainer(containerId);
setStatus("idle", { exitCode: null, durationMs: null });
term.system("Write a program, then press Run (Ctrl/Cmd+Enter). Output appears here, live.");

// A remembered sandbox may have expired since: check, and forget it when it has.
if (containerId) {
  const id = containerId;
  api<{ state?: string }>("GET", `/api/v1/sandboxes/${encodeURIComponent(id)}`, undefined, { timeoutMs: 10000 })
    .then((sb) => {
      if (sb?.state === "killed" && containerId === id) setContainer(null);
    })
    .catch((err: ApiError) => {
      if ((err.status === 404 || err.status === 409) && containerId === id) setContainer(null);
      else if (err.status === 401) showMessage("error", err.message);
      else if (err.status === 0) showMessage("error", err.message);
    });
} else {
  // Tell the user early when the server is down or the session is missing.
  api("GET", "/api/v1/sandboxes", undefined, { timeoutMs: 10000 }).catch((err: ApiError) => {
    if (err.status === 401 || err.status === 0) showMessage("error", err.message);
  });
}

void reattach();

// ---------------------------------------------------------------------------------
// Hooks for tests and automation (the UI stays the primary way in).

(window as any).__sandstream = {
  setLanguage(l: Language) {
    if (!LANGUAGES.some((x) => x.id === l)) throw new Error(`unknown language ${l}`);
    loadLanguage(l);
  },
  getLanguage: () => language,
  /** Sets a file of the current language (the program is "main.py"/"main.js"/"main.ts"; "code" is an alias). */
  setFile(name: string, content: string) {
    if (name === "code" || name === "program") name = PROGRAM[language];
    setFile(name, content);
  },
  /** Text given to the program on stdin ("" for none). */
  setStdin(text: string) {
    ws().stdin = text;
    editor.setContent(STDIN_TAB, text);
    saveWorkspaces(workspaces);
    renderTabs();
  },
  getFile(name: string) {
    if (name === "code" || name === "program") name = PROGRAM[language];
    return ws().files.find((f) => f.name === name)?.content ?? null;
  },
  files: () => ws().files.map((f) => f.name),
  removeFile,
  selectTab,
  setTimeoutSeconds(s: number) {
    timeoutInput.value = String(s);
    timeoutInput.dispatchEvent(new Event("change"));
  },
  run,
  stop,
  newSandbox,
  /** Points the page at a sandbox id (e.g. one that no longer exists). */
  setContainerId(id: string | null) {
    setContainer(id);
  },
  state: () => ({
    status,
    phase: cur?.phase ?? null,
    exitCode: statusEl.dataset.exitCode === "" ? null : Number(statusEl.dataset.exitCode),
    durationMs: statusEl.dataset.durationMs === "" ? null : Number(statusEl.dataset.durationMs),
    containerId,
    executionId: cur?.id ?? null,
    lastSeq: cur?.lastSeq ?? 0,
    connection: conn,
    error: lastError,
    message: messageEl.hidden ? null : messageText.textContent,
  }),
  stats,
  /** Text of the whole log as kept (every chunk once, in seq order). */
  text: () => kept.map((c) => c.data).join(""),
  /** Forcibly closes the transport, as a network drop does; socket.io reconnects. */
  dropConnection() {
    (socket.io as any).engine?.close();
  },
  socket,
};
