// The page's markup and the elements the other modules drive. The `data-testid`s are the
// hooks the browser tests use (web/README.md lists them).
import { LANGUAGES } from "./workspace.ts";

const HTML = `
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
    <button class="btn" data-testid="files-toggle" aria-pressed="false" title="Show or hide the sandbox's files">Files</button>
    <div class="menu">
      <button class="btn" data-testid="sandboxes-toggle" aria-haspopup="menu" aria-expanded="false" title="This key's sandboxes">Sandboxes <span class="badge" data-testid="sandboxes-count"></span></button>
      <div class="menu-panel" data-testid="sandbox-list" role="menu" aria-label="This key's sandboxes" hidden></div>
    </div>
    <button class="btn" data-testid="sign-out" title="End this browser's session">Sign out</button>
  </div>
</header>
<div class="message" data-testid="message" data-kind="" hidden role="alert">
  <span class="text" data-testid="message-text"></span>
  <button class="btn small" data-testid="message-action" hidden></button>
  <button class="dismiss" aria-label="Dismiss" data-testid="message-dismiss">×</button>
</div>
<main class="layout" data-testid="layout">
  <aside class="pane files-pane" aria-label="Sandbox files" data-testid="files" hidden>
    <div class="files-head">
      <input class="files-root" data-testid="files-root" aria-label="Directory shown" spellcheck="false" autocomplete="off" />
      <button class="icon-btn" data-testid="files-upload" title="Upload files to this directory" aria-label="Upload files">⤒</button>
      <button class="icon-btn" data-testid="files-refresh" title="Refresh the list" aria-label="Refresh the list">⟳</button>
      <input type="file" multiple hidden data-testid="files-upload-input" />
    </div>
    <div class="files-tree" data-testid="file-tree" role="tree" aria-label="Files in the sandbox"></div>
    <div class="files-note" data-testid="files-note" data-kind=""></div>
  </aside>
  <section class="pane editor-pane" aria-label="Editor">
    <div class="tabs" role="tablist" data-testid="tabs"></div>
    <div class="file-bar" data-testid="file-bar" hidden>
      <span class="file-path" data-testid="file-path"></span>
      <span class="file-state" data-testid="file-state" data-state=""></span>
      <span class="spacer"></span>
      <button class="btn small" data-testid="file-download" title="Download this file as it is in the sandbox">Download</button>
      <button class="btn small primary" data-testid="file-save" title="Save to the sandbox (Ctrl/Cmd+S)">Save</button>
    </div>
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
    <div class="output-tabs" role="tablist" aria-label="Output">
      <button class="output-tab" role="tab" aria-selected="true" data-testid="output-tab-log" title="The runs' output">Run log</button>
      <button class="output-tab" role="tab" aria-selected="false" data-testid="output-tab-terminal" title="A shell in the sandbox">Terminal</button>
      <span class="spacer"></span>
      <span class="shell-state" data-testid="shell-state" data-state="idle"></span>
      <button class="btn small" data-testid="shell-new" hidden title="Open another shell in this sandbox">New terminal</button>
    </div>
    <div class="terminal" data-testid="terminal"></div>
    <pre data-testid="terminal-text" hidden></pre>
    <div class="terminal shell" data-testid="shell" hidden></div>
    <pre data-testid="shell-text" hidden></pre>
  </section>
</main>`;

export interface Layout {
  language: HTMLSelectElement;
  timeout: HTMLInputElement;
  run: HTMLButtonElement;
  stop: HTMLButtonElement;
  newSandbox: HTMLButtonElement;
  filesToggle: HTMLButtonElement;
  sandboxesToggle: HTMLButtonElement;
  sandboxesCount: HTMLElement;
  sandboxList: HTMLElement;
  signOut: HTMLButtonElement;
  message: HTMLElement;
  messageText: HTMLElement;
  messageAction: HTMLButtonElement;
  messageDismiss: HTMLButtonElement;
  layout: HTMLElement;
  files: HTMLElement;
  filesRoot: HTMLInputElement;
  filesUpload: HTMLButtonElement;
  filesUploadInput: HTMLInputElement;
  filesRefresh: HTMLButtonElement;
  fileTree: HTMLElement;
  filesNote: HTMLElement;
  tabs: HTMLElement;
  fileBar: HTMLElement;
  filePath: HTMLElement;
  fileState: HTMLElement;
  fileDownload: HTMLButtonElement;
  fileSave: HTMLButtonElement;
  editor: HTMLElement;
  status: HTMLElement;
  statusLabel: HTMLElement;
  phase: HTMLElement;
  exitCode: HTMLElement;
  duration: HTMLElement;
  sandbox: HTMLElement;
  connection: HTMLElement;
  terminal: HTMLElement;
  terminalText: HTMLElement;
  outputTabLog: HTMLButtonElement;
  outputTabTerminal: HTMLButtonElement;
  shellState: HTMLElement;
  shellNew: HTMLButtonElement;
  shell: HTMLElement;
  shellText: HTMLElement;
}

/** Writes the page into `app` and returns its elements. */
export function mountLayout(app: HTMLElement): Layout {
  app.innerHTML = HTML;
  const $ = <T extends HTMLElement = HTMLElement>(sel: string) => app.querySelector<T>(`[data-testid="${sel}"]`)!;
  return {
    language: $<HTMLSelectElement>("language"),
    timeout: $<HTMLInputElement>("timeout"),
    run: $<HTMLButtonElement>("run"),
    stop: $<HTMLButtonElement>("stop"),
    newSandbox: $<HTMLButtonElement>("new-sandbox"),
    filesToggle: $<HTMLButtonElement>("files-toggle"),
    sandboxesToggle: $<HTMLButtonElement>("sandboxes-toggle"),
    sandboxesCount: $("sandboxes-count"),
    sandboxList: $("sandbox-list"),
    signOut: $<HTMLButtonElement>("sign-out"),
    message: $("message"),
    messageText: $("message-text"),
    messageAction: $<HTMLButtonElement>("message-action"),
    messageDismiss: $<HTMLButtonElement>("message-dismiss"),
    layout: $("layout"),
    files: $("files"),
    filesRoot: $<HTMLInputElement>("files-root"),
    filesUpload: $<HTMLButtonElement>("files-upload"),
    filesUploadInput: $<HTMLInputElement>("files-upload-input"),
    filesRefresh: $<HTMLButtonElement>("files-refresh"),
    fileTree: $("file-tree"),
    filesNote: $("files-note"),
    tabs: $("tabs"),
    fileBar: $("file-bar"),
    filePath: $("file-path"),
    fileState: $("file-state"),
    fileDownload: $<HTMLButtonElement>("file-download"),
    fileSave: $<HTMLButtonElement>("file-save"),
    editor: $("editor"),
    status: $("status"),
    statusLabel: $("status-label"),
    phase: $("phase"),
    exitCode: $("exit-code"),
    duration: $("duration"),
    sandbox: $("sandbox-id"),
    connection: $("connection"),
    terminal: $("terminal"),
    terminalText: $("terminal-text"),
    outputTabLog: $<HTMLButtonElement>("output-tab-log"),
    outputTabTerminal: $<HTMLButtonElement>("output-tab-terminal"),
    shellState: $("shell-state"),
    shellNew: $<HTMLButtonElement>("shell-new"),
    shell: $("shell"),
    shellText: $("shell-text"),
  };
}
