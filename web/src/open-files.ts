// The sandbox's files opened in the editor from the file tree: each has a tab after the
// language's own files, and the bar above the editor shows its path, whether it has
// unsaved changes, Download and Save (Ctrl/Cmd+S). Text of at most 1 MiB opens (the
// language from its extension); a binary or bigger file is offered as a download. A file
// with no unsaved changes follows the sandbox: when a listing shows it changed there, it
// is read again. These files belong to one sandbox: when the page moves to another, they
// close.
import { baseName, downloadFile, fileError, FileEntry, HOME, joinPath, MAX_EDIT_BYTES, fmtSize, readText, writeFile } from "./files-api.ts";
import type { Layout } from "./layout.ts";
import type { Messages } from "./messages.ts";
import type { Sandbox } from "./sandbox.ts";
import { ExtraTabs, selectOnActivate, Tabs } from "./tabs.ts";

/** Editor keys of sandbox files: this prefix and the absolute path (the language's own
 * file names cannot contain ':'). */
const PREFIX = "sandbox:";

interface OpenFile {
  path: string;
  sandboxId: string;
  /** The text as last read from or written to the sandbox. */
  saved: string;
  dirty: boolean;
  saving: boolean;
  /** What the last listing (or read or write) said, to notice changes made in the sandbox. */
  size: number;
  modifiedAt?: string;
  /** The last listing of its folder did not have it. */
  gone: boolean;
}

type BarElements = Pick<Layout, "fileBar" | "filePath" | "fileState" | "fileSave" | "fileDownload">;

export class OpenFiles implements ExtraTabs {
  private readonly files = new Map<string, OpenFile>();
  private readonly opening = new Set<string>();
  private activeKey: string | null = null;
  /** Called when the file shown changes, and after a save (the tree highlights it, lists again). */
  onShown: () => void = () => {};
  onSaved: () => void = () => {};

  constructor(
    private readonly el: BarElements,
    private readonly tabs: Tabs,
    private readonly messages: Messages,
    private readonly sandbox: Sandbox,
  ) {
    tabs.extra = this;
    el.fileSave.addEventListener("click", () => void this.save());
    el.fileDownload.addEventListener("click", () => void this.download());
    document.addEventListener("keydown", (e) => {
      if (!(e.ctrlKey || e.metaKey) || e.altKey || e.key.toLowerCase() !== "s") return;
      e.preventDefault(); // not the browser's "Save page as"
      if (this.activeKey) void this.save();
      else messages.show("info", "Ctrl/Cmd+S saves files opened from the file tree. The language's own tabs are kept in this browser and written to the sandbox by each run.");
    });
    sandbox.onChange(() => this.closeAll());
    window.addEventListener("beforeunload", (e) => {
      if ([...this.files.values()].some((f) => f.dirty)) e.preventDefault();
    });
  }

  /** The path of the sandbox file shown in the editor, if any. */
  get activePath(): string | null {
    return this.activeKey ? (this.files.get(this.activeKey)?.path ?? null) : null;
  }

  /** The open files' paths, in tab order. */
  get paths(): string[] {
    return [...this.files.values()].map((f) => f.path);
  }

  /** The editor's text of open file `path`, or null. */
  text(path: string): string | null {
    return this.files.has(PREFIX + path) ? this.tabs.editor.content(PREFIX + path) : null;
  }

  // ExtraTabs (tabs.ts).

  owns(name: string): boolean {
    return name.startsWith(PREFIX);
  }

  changed(key: string, content: string) {
    const f = this.files.get(key);
    if (!f) return;
    const dirty = content !== f.saved;
    if (dirty !== f.dirty) {
      f.dirty = dirty;
      this.tabs.render();
    }
  }

  render(): HTMLElement[] {
    return [...this.files].map(([key, f]) => {
      const tab = document.createElement("div");
      const active = key === this.tabs.editor.activeName;
      tab.className = "tab sandbox-file" + (active ? " active" : "") + (f.dirty ? " dirty" : "");
      tab.setAttribute("role", "tab");
      tab.setAttribute("aria-selected", String(active));
      tab.dataset.testid = "sandbox-file-tab";
      tab.dataset.path = f.path;
      tab.tabIndex = 0;
      tab.title = `${f.path}, in sandbox ${f.sandboxId}`;
      const label = document.createElement("span");
      label.className = "tab-name";
      label.textContent = baseName(f.path);
      const close = document.createElement("button");
      close.className = "tab-close";
      close.title = f.dirty ? `Close ${f.path} (unsaved changes)` : `Close ${f.path}`;
      close.setAttribute("aria-label", `Close ${f.path}`);
      close.dataset.testid = "close-sandbox-file";
      close.textContent = f.dirty ? "●" : "×";
      close.addEventListener("click", (e) => {
        e.stopPropagation();
        this.close(key);
      });
      tab.append(label, close);
      selectOnActivate(tab, () => this.tabs.selectTab(key));
      return tab;
    });
  }

  shown(name: string | null) {
    this.activeKey = name && this.files.has(name) ? name : null;
    this.drawBar();
    this.onShown();
  }

  // Opening, saving, closing.

  /** Opens a file of the sandbox in use (or shows its tab when it is open). */
  async open(entry: Pick<FileEntry, "path" | "type" | "size" | "modifiedAt">) {
    const key = PREFIX + entry.path;
    if (this.files.has(key)) return this.tabs.selectTab(key);
    const id = this.sandbox.id;
    if (!id || this.opening.has(key)) return;
    const name = baseName(entry.path);
    if (entry.type === "file" && entry.size > MAX_EDIT_BYTES) return this.offerDownload(entry.path, `${name} is ${fmtSize(entry.size)}: files over ${fmtSize(MAX_EDIT_BYTES)} are not opened in the editor.`);
    this.opening.add(key);
    let read;
    try {
      read = await readText(id, entry.path);
    } catch (err) {
      this.messages.show("error", fileError(err, `Could not open ${entry.path}`));
      return;
    } finally {
      this.opening.delete(key);
    }
    if (this.sandbox.id !== id || this.files.has(key)) return;
    if (read.kind === "binary") return this.offerDownload(entry.path, `${name} is not a text file (it is binary, or not UTF-8): it is not opened in the editor.`);
    if (read.kind === "too-large") return this.offerDownload(entry.path, `${name} is over ${fmtSize(MAX_EDIT_BYTES)}: it is not opened in the editor.`);
    this.files.set(key, { path: entry.path, sandboxId: id, saved: read.text, dirty: false, saving: false, size: entry.size, modifiedAt: entry.modifiedAt, gone: false });
    this.tabs.editor.load(key, read.text);
    this.tabs.selectTab(key);
    this.tabs.editor.focus();
  }

  /** Writes the file shown (or `key`) to the sandbox. */
  async save(key = this.activeKey) {
    const f = key ? this.files.get(key) : undefined;
    if (!key || !f || f.saving) return;
    const text = this.tabs.editor.content(key);
    f.saving = true;
    this.drawBar();
    try {
      const entry = await writeFile(f.sandboxId, f.path, text);
      f.saved = text;
      f.gone = false;
      f.size = entry?.size ?? new TextEncoder().encode(text).length;
      f.modifiedAt = entry?.modifiedAt;
      // A run writes the language's files into the home directory from their tabs.
      const shadowed = this.tabs.files().find((n) => joinPath(HOME, n) === f.path);
      if (shadowed) this.messages.show("info", `Saved ${f.path}. The next run writes the ${shadowed} tab over it.`);
    } catch (err) {
      this.messages.show("error", fileError(err, `Could not save ${f.path}`));
    } finally {
      f.saving = false;
      if (this.files.get(key) === f) f.dirty = this.tabs.editor.content(key) !== f.saved;
      this.tabs.render();
      this.onSaved();
    }
  }

  close(key: string) {
    const f = this.files.get(key);
    if (!f) return;
    if (f.dirty && !confirm(`${f.path} has unsaved changes. Close it anyway?`)) return;
    this.files.delete(key);
    const wasActive = this.tabs.editor.activeName === key;
    this.tabs.editor.drop(key);
    if (wasActive) this.tabs.selectTab(this.tabs.files()[0]);
    else this.tabs.render();
  }

  /** Closes every file (the page moved to another sandbox, or to none). */
  private closeAll() {
    if (!this.files.size) return;
    const lost = [...this.files.values()].filter((f) => f.dirty).map((f) => f.path);
    const wasActive = this.activeKey !== null;
    for (const key of this.files.keys()) this.tabs.editor.drop(key);
    this.files.clear();
    if (wasActive) this.tabs.selectTab(this.tabs.files()[0]);
    else this.tabs.render();
    if (lost.length) this.messages.show("warn", `The page moved to another sandbox: closed the files of the one before; unsaved changes to ${lost.join(", ")} are lost.`);
  }

  /** A listing of `dir`: open files there that changed in the sandbox (and have no
   * unsaved changes here) are read again; one that is gone is marked so. */
  listed(dir: string, entries: FileEntry[]) {
    for (const [key, f] of this.files) {
      if (f.path.slice(0, f.path.lastIndexOf("/")) !== dir.replace(/\/+$/, "") || f.saving) continue;
      const e = entries.find((x) => x.path === f.path);
      if (f.gone !== !e) {
        f.gone = !e;
        if (key === this.activeKey) this.drawBar();
      }
      if (!e || f.dirty || (e.size === f.size && e.modifiedAt === f.modifiedAt)) continue;
      f.size = e.size;
      f.modifiedAt = e.modifiedAt;
      void this.reload(key, f);
    }
  }

  private async reload(key: string, f: OpenFile) {
    let read;
    try {
      read = await readText(f.sandboxId, f.path);
    } catch {
      return; // the next listing tries again, or marks it gone
    }
    if (this.files.get(key) !== f || f.dirty || f.saving || read.kind !== "text" || read.text === f.saved) return;
    f.saved = read.text;
    this.tabs.editor.setContent(key, read.text);
  }

  private async download(path = this.activePath) {
    const id = this.sandbox.id;
    if (!path || !id) return;
    try {
      await downloadFile(id, path);
    } catch (err) {
      this.messages.show("error", fileError(err, `Could not download ${path}`));
    }
  }

  private offerDownload(path: string, why: string) {
    this.messages.show("info", why, { label: "Download", run: () => void this.download(path) });
  }

  private drawBar() {
    const f = this.activeKey ? this.files.get(this.activeKey) : undefined;
    const { fileBar, filePath, fileState, fileSave } = this.el;
    fileBar.hidden = !f;
    if (!f) return;
    filePath.textContent = f.path;
    filePath.title = `${f.path}, in sandbox ${f.sandboxId}`;
    const state = f.saving ? "saving" : f.dirty ? "dirty" : f.gone ? "gone" : "saved";
    fileState.dataset.state = state;
    fileState.textContent = { saving: "saving…", dirty: "unsaved changes", gone: "deleted in the sandbox: Save writes it again", saved: "saved" }[state];
    fileSave.disabled = f.saving;
  }
}
