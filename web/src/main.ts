// Sandstream playground: edit a program, run it in a sandbox, watch its output live.
//
// It speaks the same contract a third-party frontend (design note 000's CodeEditor.tsx)
// would: `POST /api/sandbox/exec`, then socket.io `join-container` and the
// `execution-*` events, with `resume-execution` after a reconnect. This file only wires
// the parts together: signin.ts (the sign-in screen when the API answers 401, and
// signing out), layout.ts (the markup), tabs.ts (editor and files), status.ts (the
// status line), sandbox.ts (the sandbox reused between runs), sandboxes.ts (the key's
// sandboxes), shell.ts (the Terminal tab: a shell in the sandbox), file-tree.ts and open-files.ts (the sandbox's files: listed, opened in the
// editor, saved, uploaded, downloaded), connection.ts (socket.io), runs.ts (starting,
// following and stopping runs) and protocol.ts (keeping a run's output in `seq` order, each chunk once; no DOM,
// unit-tested under Node).
import "./style.css";
import { api, ApiError, type SandboxInfo } from "./api.ts";
import { Connection } from "./connection.ts";
import { FileTree } from "./file-tree.ts";
import { mountLayout } from "./layout.ts";
import { Messages } from "./messages.ts";
import { OpenFiles } from "./open-files.ts";
import { Runs } from "./runs.ts";
import { Sandbox } from "./sandbox.ts";
import { SandboxList } from "./sandboxes.ts";
import { mountSignIn, signOut } from "./signin.ts";
import { Shell } from "./shell.ts";
import { StatusLine } from "./status.ts";
import { Tabs } from "./tabs.ts";
import { LogTerminal } from "./terminal.ts";
import type { Language } from "./workspace.ts";

const app = document.getElementById("app")!;
void start();

/** Signed in (the API answers) → the playground; 401 → the sign-in screen. Any other
 * failure (the server is down) still shows the playground, which says what is wrong. */
async function start() {
  let list: SandboxInfo[] | null = null;
  try {
    list = await api<SandboxInfo[]>("GET", "/api/v1/sandboxes", undefined, { timeoutMs: 10000 });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return mountSignIn(app);
  }
  playground(list);
}

/** The playground, for a signed-in browser; `list`: the key's sandboxes, when known. */
function playground(list: SandboxInfo[] | null) {
  document.body.dataset.auth = list ? "signed-in" : "unknown";
  const el = mountLayout(app);
  const stats = { socketChunks: 0, restChunks: 0, duplicatesDropped: 0, reconnects: 0, resumes: 0, disconnects: 0 };

  const term = new LogTerminal(el.terminal, el.terminalText);
  const messages = new Messages(el);
  const status = new StatusLine(el);
  const tabs = new Tabs(el, messages, () => runFromUi());
  const sandbox = new Sandbox(status, messages, el.newSandbox);
  const runs = new Runs({
    tabs,
    term,
    status,
    messages,
    sandbox,
    stopButton: el.stop,
    timeoutMs: () => {
      const s = Number(el.timeout.value);
      return Number.isFinite(s) && s > 0 ? Math.round(s * 1000) : 120000;
    },
    stats,
    onEnd: () => void tree.refresh(),
  });
  const openFiles = new OpenFiles(el, tabs, messages, sandbox);
  const tree = new FileTree(el, sandbox, messages, {
    open: (entry) => void openFiles.open(entry),
    activePath: () => openFiles.activePath,
    listed: (dir, entries) => openFiles.listed(dir, entries),
  });
  openFiles.onShown = () => tree.render();
  openFiles.onSaved = () => void tree.refresh();
  const conn = new Connection(el.connection, messages, stats, runs);
  runs.useConnection(conn);

  const shell = new Shell({ host: el.shell, mirror: el.shellText, state: el.shellState, newButton: el.shellNew }, sandbox);
  const showOutput = (tab: "log" | "terminal") => {
    const terminal = tab === "terminal";
    el.outputTabLog.setAttribute("aria-selected", String(!terminal));
    el.outputTabTerminal.setAttribute("aria-selected", String(terminal));
    el.terminal.hidden = terminal;
    el.shell.hidden = !terminal;
    sessionStorage.setItem("sandstream.outputTab", tab);
    shell.setVisible(terminal);
  };
  el.outputTabLog.addEventListener("click", () => showOutput("log"));
  el.outputTabTerminal.addEventListener("click", () => showOutput("terminal"));

  /** Run, from the button or a shortcut: the run log is shown. */
  const runFromUi = () => {
    showOutput("log");
    void runs.run();
  };
  el.run.addEventListener("click", runFromUi);
  el.stop.addEventListener("click", () => void runs.stop());
  const sandboxes = new SandboxList(el, sandbox);
  if (list) sandboxes.show(list);
  el.newSandbox.addEventListener("click", () => void sandbox.renew().then(() => sandboxes.refresh()));
  el.signOut.addEventListener("click", async () => {
    el.signOut.disabled = true;
    try {
      await signOut();
    } catch (err) {
      messages.show("error", err instanceof ApiError ? err.message : String(err));
      el.signOut.disabled = false;
      return;
    }
    // What this page remembered belongs to the key that signed out.
    sandbox.set(null);
    sessionStorage.clear();
    location.replace("/");
  });
  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter" && !e.defaultPrevented) {
      e.preventDefault();
      runFromUi();
    }
  });
  el.timeout.value = localStorage.getItem("sandstream.timeoutSec") ?? el.timeout.value;
  el.timeout.addEventListener("change", () => localStorage.setItem("sandstream.timeoutSec", el.timeout.value));

  status.set("idle", { exitCode: null, durationMs: null });
  term.system("Write a program, then press Run (Ctrl/Cmd+Enter). Output appears here, live.");
  sandbox.check(list);
  void runs.reattach();
  if (sessionStorage.getItem("sandstream.outputTab") === "terminal") showOutput("terminal");

  // Hooks for tests and automation (the UI stays the primary way in).
  (window as any).__sandstreamLog = runs.kept;
  (window as any).__sandstream = {
    setLanguage: (l: Language) => tabs.setLanguage(l),
    getLanguage: () => tabs.language,
    /** Sets a file of the current language (the program is "main.py"/"main.js"/"main.ts"; "code" is an alias). */
    setFile: (name: string, content: string) => tabs.setFile(name, content),
    /** Text given to the program on stdin ("" for none). */
    setStdin: (text: string) => tabs.setStdin(text),
    getFile: (name: string) => tabs.getFile(name),
    files: () => tabs.files(),
    removeFile: (name: string) => tabs.removeFile(name),
    selectTab: (name: string) => tabs.selectTab(name),
    setTimeoutSeconds(s: number) {
      el.timeout.value = String(s);
      el.timeout.dispatchEvent(new Event("change"));
    },
    run: () => runs.run(),
    stop: () => runs.stop(),
    newSandbox: () => sandbox.renew(),
    /** The ids of the key's sandboxes, as the Sandboxes menu last listed them. */
    sandboxes: () => sandboxes.ids,
    /** Points the page at a sandbox id (e.g. one that no longer exists). */
    setContainerId: (id: string | null) => sandbox.set(id),
    state: () => {
      const run = runs.current?.stream;
      return {
        status: status.status,
        phase: run?.phase ?? null,
        exitCode: status.exitCode,
        durationMs: status.durationMs,
        containerId: sandbox.id,
        executionId: run?.id ?? null,
        lastSeq: run?.lastSeq ?? 0,
        connection: conn.state,
        error: runs.startError,
        message: messages.text,
      };
    },
    stats,
    /** The Terminal tab: its shell's id, the output bytes shown, the xterm's size, its state. */
    terminal: {
      show: () => showOutput("terminal"),
      id: () => shell.id,
      bytes: () => shell.bytes,
      size: () => shell.size,
      state: () => shell.state,
    },
    /** The sandbox's files: the tree's rows, the files open in the editor. */
    fileTree: {
      paths: () => tree.paths(),
      refresh: () => tree.refresh(),
      setRoot: (path: string) => tree.setRoot(path),
      show: (on: boolean) => tree.setShown(on, false),
      open: (path: string) => openFiles.open({ path, type: "file", size: 0 }),
      openPaths: () => openFiles.paths,
      /** The editor's text of an open sandbox file (null when it is not open). */
      text: (path: string) => openFiles.text(path),
      save: () => openFiles.save(),
    },
    /** Text of the whole log as kept (every chunk once, in seq order). */
    text: () => runs.kept.map((c) => c.data).join(""),
    /** Forcibly closes the transport, as a network drop does; socket.io reconnects. */
    dropConnection: () => conn.drop(),
    socket: conn.socket,
  };
}
