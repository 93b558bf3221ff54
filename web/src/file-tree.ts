// The file tree: what is in the sandbox in use, under a directory (/home/user unless
// changed), with folders opened on click. While the tree is shown it watches the
// directory (file-watch.ts) and lists again when something in it changed; while no watch
// is live (and the browser tab is visible) it lists every POLL_MS instead. It also lists
// at once after a run ends, a save, an upload, or a change of sandbox. Clicking a file opens it
// in the editor (open-files.ts); each file has a download link; files dropped on the
// tree are uploaded into the folder they are dropped on (or the directory shown).
import "./files.css";
import { DirWatch } from "./file-watch.ts";
import { baseName, downloadFile, fileError, FileEntry, fileUrl, fmtSize, HOME, joinPath, listDir, parentOf, writeFile } from "./files-api.ts";
import type { Layout } from "./layout.ts";
import type { Messages } from "./messages.ts";
import type { Sandbox } from "./sandbox.ts";
import { collect, Dropped, dropped, MAX_UPLOAD_FILES } from "./upload.ts";

const ROOT_KEY = "sandstream.filesRoot";
const SHOWN_KEY = "sandstream.filesShown";
/** How often the shown tree is listed again while no watch is live. */
export const POLL_MS = 3000;
/** Rows drawn per folder (a sandbox may hold a folder of a million files). */
const MAX_ROWS = 500;

type TreeElements = Pick<
  Layout,
  "layout" | "files" | "filesToggle" | "filesRoot" | "filesUpload" | "filesUploadInput" | "filesRefresh" | "fileTree" | "filesNote"
>;

export interface TreeHooks {
  /** A file (or symlink) was clicked. */
  open(entry: FileEntry): void;
  /** The path of the sandbox file shown in the editor, if any. */
  activePath(): string | null;
  /** Directory `dir` was listed (open files check whether they changed). */
  listed(dir: string, entries: FileEntry[]): void;
}

interface Listing {
  entries: FileEntry[] | null;
  error: string | null;
}

export class FileTree {
  private root = localStorage.getItem(ROOT_KEY) || HOME;
  private readonly listings = new Map<string, Listing>();
  private readonly expanded = new Set<string>();
  private sandboxId: string | null;
  private running: Promise<void> | null = null;
  private again = false;
  private drawn = "";
  private busyNote: string | null = null;
  private dropRow: HTMLElement | null = null;
  private readonly watcher = new DirWatch(
    () => void this.refresh(),
    (live) => (this.el.fileTree.dataset.watch = live ? "live" : "polling"),
  );

  constructor(
    private readonly el: TreeElements,
    private readonly sandbox: Sandbox,
    private readonly messages: Messages,
    private readonly hooks: TreeHooks,
  ) {
    this.sandboxId = sandbox.id;
    el.filesRoot.value = this.root;
    const stored = localStorage.getItem(SHOWN_KEY);
    this.setShown(stored === null ? window.innerWidth > 900 : stored === "1", false);
    el.filesToggle.addEventListener("click", () => this.setShown(!this.shown, true));
    el.filesRefresh.addEventListener("click", () => {
      this.watcher.retry();
      this.follow();
      void this.refresh();
    });
    el.filesRoot.addEventListener("keydown", (e) => {
      if (e.key === "Enter") this.setRoot(el.filesRoot.value);
      if (e.key === "Escape") el.filesRoot.value = this.root;
    });
    el.filesRoot.addEventListener("blur", () => (el.filesRoot.value = this.root));
    el.filesUpload.addEventListener("click", () => el.filesUploadInput.click());
    el.filesUploadInput.addEventListener("change", () => {
      const files = [...(el.filesUploadInput.files ?? [])];
      el.filesUploadInput.value = "";
      void this.upload(this.root, { files, entries: [] });
    });
    this.dragAndDrop();
    sandbox.onChange((id) => {
      this.sandboxId = id;
      this.listings.clear();
      this.expanded.clear();
      this.render();
      this.follow();
      void this.refresh();
    });
    el.fileTree.dataset.watch = "polling";
    window.setInterval(() => {
      this.follow();
      if (this.shown && !document.hidden && this.sandboxId && !this.watcher.live) void this.refresh();
    }, POLL_MS);
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && this.shown) void this.refresh();
    });
    this.render();
    this.follow();
    if (this.shown) void this.refresh();
  }

  /** Watches what the tree shows, or nothing while it is hidden. */
  private follow() {
    if (this.shown && this.sandboxId) this.watcher.watch(this.sandboxId, this.root);
    else this.watcher.stop();
  }

  get shown(): boolean {
    return !this.el.files.hidden;
  }

  /** The paths drawn, in order (for tests). */
  paths(): string[] {
    return [...this.el.fileTree.querySelectorAll<HTMLElement>(".tree-row")].map((r) => r.dataset.path ?? "");
  }

  setShown(on: boolean, remember: boolean) {
    this.el.files.hidden = !on;
    this.el.layout.classList.toggle("with-files", on);
    this.el.filesToggle.setAttribute("aria-pressed", String(on));
    if (remember) localStorage.setItem(SHOWN_KEY, on ? "1" : "0");
    this.follow();
    if (on) void this.refresh();
  }

  setRoot(path: string) {
    const p = path.trim().replace(/(.)\/+$/, "$1");
    if (!p.startsWith("/")) {
      this.messages.show("warn", "Give an absolute path, such as /home/user or /tmp.");
      return;
    }
    this.root = p;
    this.el.filesRoot.value = p;
    localStorage.setItem(ROOT_KEY, p);
    this.listings.clear();
    this.render();
    this.follow();
    void this.refresh();
  }

  /** Lists the shown folders again; calls made while one runs share the next one. */
  refresh(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.listAll();
      } while (this.again);
    })().finally(() => (this.running = null));
    return this.running;
  }

  private async listAll() {
    const id = this.sandboxId;
    if (!id || !this.shown) return;
    const dirs = [this.root, ...[...this.expanded].filter((d) => this.visible(d))];
    const results = await Promise.all(
      dirs.map((dir) =>
        listDir(id, dir).then(
          (entries): Listing => ({ entries, error: null }),
          (err): Listing => ({ entries: null, error: fileError(err, `Cannot list ${dir}`) }),
        ),
      ),
    );
    if (id !== this.sandboxId) return; // the sandbox changed meanwhile
    dirs.forEach((dir, i) => {
      this.listings.set(dir, results[i]);
      const entries = results[i].entries;
      if (entries) this.hooks.listed(dir, entries);
    });
    this.render();
  }

  /** Whether folder `dir` is drawn: under the root, with every folder on the way open. */
  private visible(dir: string): boolean {
    if (!dir.startsWith(this.root === "/" ? "/" : this.root + "/")) return false;
    for (let p = parentOf(dir); p !== this.root && p !== "/"; p = parentOf(p)) if (!this.expanded.has(p)) return false;
    return true;
  }

  /** Draws the tree again when anything it shows changed (rows keep focus and hover). */
  render() {
    const active = this.hooks.activePath();
    const key = JSON.stringify([this.sandboxId, this.root, [...this.expanded], [...this.listings], active, this.busyNote]);
    if (key === this.drawn) return;
    this.drawn = key;
    const tree = this.el.fileTree;
    const focused = (document.activeElement as HTMLElement | null)?.closest?.(".tree-row") as HTMLElement | null;
    const focusPath = focused && tree.contains(focused) ? focused.dataset.path : null;
    const rows: HTMLElement[] = [];
    const top = this.listings.get(this.root);
    if (this.sandboxId && top?.entries) this.rows(this.root, 0, rows, active);
    tree.replaceChildren(...rows);
    if (focusPath) rows.find((r) => r.dataset.path === focusPath)?.focus();
    tree.dataset.loaded = String(!!top);
    if (!this.sandboxId) this.note("No sandbox yet: the first run (or New sandbox) starts one.");
    else if (this.busyNote) this.note(this.busyNote);
    else if (top?.error) this.note(top.error, "error");
    else if (top?.entries && !top.entries.length) this.note(`${this.root} is empty. Drop files here to upload them.`);
    else if (top) this.note("Drop files on a folder to upload them there.");
    else this.note("Listing…");
  }

  private rows(dir: string, depth: number, out: HTMLElement[], active: string | null) {
    const listing = this.listings.get(dir);
    if (listing?.error) {
      out.push(noteRow(listing.error, depth, "error"));
      return;
    }
    if (!listing?.entries) {
      out.push(noteRow("Listing…", depth));
      return;
    }
    const sorted = [...listing.entries].sort((a, b) => Number(b.type === "dir") - Number(a.type === "dir") || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of sorted.slice(0, MAX_ROWS)) {
      out.push(this.row(e, depth, e.path === active));
      if (e.type === "dir" && this.expanded.has(e.path)) this.rows(e.path, depth + 1, out, active);
    }
    if (sorted.length > MAX_ROWS) out.push(noteRow(`… and ${sorted.length - MAX_ROWS} more, not shown`, depth));
  }

  private row(e: FileEntry, depth: number, selected: boolean): HTMLElement {
    const row = document.createElement("div");
    const isDir = e.type === "dir";
    row.className = `tree-row ${e.type}` + (e.name.startsWith(".") ? " dotfile" : "");
    row.setAttribute("role", "treeitem");
    row.setAttribute("aria-selected", String(selected));
    if (isDir) row.setAttribute("aria-expanded", String(this.expanded.has(e.path)));
    row.dataset.testid = "tree-item";
    row.dataset.path = e.path;
    row.dataset.type = e.type;
    row.tabIndex = 0;
    row.style.paddingLeft = `${6 + depth * 14}px`;
    const modified = e.modifiedAt ? new Date(e.modifiedAt) : null;
    row.title = [
      e.path + (e.symlinkTarget ? ` → ${e.symlinkTarget}` : ""),
      [isDir ? "folder" : fmtSize(e.size), `mode ${(e.mode & 0o7777).toString(8).padStart(4, "0")}`, `${e.owner}:${e.group}`].join(" · "),
      modified && !isNaN(modified.getTime()) ? `modified ${modified.toLocaleString()}` : "",
    ]
      .filter(Boolean)
      .join("\n");
    const twisty = document.createElement("span");
    twisty.className = "twisty";
    twisty.textContent = isDir ? (this.expanded.has(e.path) ? "▾" : "▸") : "";
    const name = document.createElement("span");
    name.className = "tree-name";
    name.textContent = e.name + (isDir ? "/" : "") + (e.type === "symlink" ? ` → ${e.symlinkTarget ?? "?"}` : "");
    row.append(twisty, name);
    if (e.type === "file" || e.type === "symlink") {
      const size = document.createElement("span");
      size.className = "tree-size";
      size.textContent = e.type === "file" ? fmtSize(e.size) : "";
      const dl = document.createElement("a");
      dl.className = "tree-dl";
      dl.dataset.testid = "tree-download";
      dl.href = this.sandboxId ? fileUrl(this.sandboxId, e.path) : "#";
      dl.download = e.name;
      dl.title = `Download ${e.name}`;
      dl.setAttribute("aria-label", `Download ${e.name}`);
      dl.textContent = "⤓";
      dl.addEventListener("click", (ev) => {
        ev.preventDefault();
        ev.stopPropagation();
        void this.download(e.path);
      });
      row.append(size, dl);
    }
    const activate = () => {
      if (isDir) this.toggle(e.path);
      else if (e.type === "other") this.messages.show("info", `${e.path} is not a regular file (a device, socket or pipe): it cannot be opened.`);
      else this.hooks.open(e);
    };
    row.addEventListener("click", activate);
    row.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        activate();
      }
    });
    return row;
  }

  private toggle(dir: string) {
    if (this.expanded.has(dir)) {
      this.expanded.delete(dir);
      for (const d of [...this.expanded]) if (d.startsWith(dir + "/")) this.expanded.delete(d);
    } else {
      this.expanded.add(dir);
    }
    this.render();
    if (this.expanded.has(dir)) void this.refresh();
  }

  async download(path: string) {
    const id = this.sandboxId;
    if (!id) return;
    try {
      await downloadFile(id, path);
    } catch (err) {
      this.messages.show("error", fileError(err, `Could not download ${path}`));
    }
  }

  private note(text: string, kind = "") {
    this.el.filesNote.textContent = text;
    this.el.filesNote.dataset.kind = kind;
  }

  // Uploads: drop files on the tree (onto a folder's row: into that folder; onto a
  // file's row: beside it; elsewhere: into the directory shown).

  private dragAndDrop() {
    const pane = this.el.files;
    const carriesFiles = (e: DragEvent) => !!e.dataTransfer && [...e.dataTransfer.types].includes("Files");
    pane.addEventListener("dragover", (e) => {
      if (!carriesFiles(e)) return;
      e.preventDefault();
      e.dataTransfer!.dropEffect = "copy";
      this.markDrop(this.dropTarget(e.target));
    });
    pane.addEventListener("dragleave", (e) => {
      if (!pane.contains(e.relatedTarget as Node | null)) this.markDrop(null);
    });
    pane.addEventListener("drop", (e) => {
      if (!carriesFiles(e)) return;
      e.preventDefault();
      const dir = this.dropTarget(e.target).dir;
      this.markDrop(null);
      void this.upload(dir, dropped(e.dataTransfer!));
    });
  }

  /** The folder a drop on `target` goes to, and the row that shows it (none: the root). */
  private dropTarget(target: EventTarget | null): { dir: string; row: HTMLElement | null } {
    const row = (target as HTMLElement | null)?.closest?.(".tree-row") as HTMLElement | null;
    if (!row || !this.el.fileTree.contains(row)) return { dir: this.root, row: null };
    const path = row.dataset.path ?? this.root;
    if (row.dataset.type === "dir") return { dir: path, row };
    const dir = parentOf(path);
    return { dir, row: this.el.fileTree.querySelector<HTMLElement>(`.tree-row[data-path="${CSS.escape(dir)}"]`) };
  }

  private markDrop(t: { row: HTMLElement | null } | null) {
    this.dropRow?.classList.remove("drop-target");
    this.dropRow = t?.row ?? null;
    this.dropRow?.classList.add("drop-target");
    this.el.files.classList.toggle("dragging", !!t);
    this.el.fileTree.classList.toggle("drop-target", !!t && !t.row);
  }

  private async upload(dir: string, d: Dropped) {
    const id = this.sandboxId;
    if (!id) {
      this.messages.show("warn", "No sandbox yet: run a program (or press New sandbox) first, then drop the files again.");
      return;
    }
    let uploads;
    try {
      uploads = await collect(d);
    } catch (err) {
      this.messages.show("error", `Could not read the dropped files: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    const list = uploads.uploads;
    if (!list.length) return;
    let done = 0;
    let failed = false;
    for (const u of list) {
      this.busyNote = `Uploading ${done + 1} of ${list.length}: ${u.rel}…`;
      this.render();
      try {
        await writeFile(id, joinPath(dir, u.rel), u.file);
        done++;
      } catch (err) {
        this.messages.show("error", fileError(err, `Could not upload ${u.rel} to ${dir}`) + (done ? ` (${done} of ${list.length} uploaded before it).` : ""));
        failed = true;
        break;
      }
    }
    this.busyNote = null;
    if (dir !== this.root) this.expanded.add(dir);
    if (!failed && done) {
      const what = done === 1 ? baseName(list[0].rel) : `${done} files`;
      const more = uploads.truncated ? ` Only the first ${MAX_UPLOAD_FILES} files of the drop were uploaded.` : "";
      this.messages.show(uploads.truncated ? "warn" : "info", `Uploaded ${what} to ${dir}.${more}`);
    }
    this.render();
    await this.refresh();
  }
}

function noteRow(text: string, depth: number, kind = ""): HTMLElement {
  const p = document.createElement("div");
  p.className = "tree-note";
  if (kind) p.dataset.kind = kind;
  p.style.paddingLeft = `${20 + depth * 14}px`;
  p.textContent = text;
  return p;
}
