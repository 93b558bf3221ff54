// The editor's tabs: the program, its dependency file, extra files added with "+", and
// stdin, for the language chosen; each language's files are kept in localStorage.
import { CodeEditor } from "./editor.ts";
import type { Layout } from "./layout.ts";
import type { Messages } from "./messages.ts";
import { badFileName, DEPS, DEPS_HINT, Language, LANGUAGES, loadWorkspaces, PROGRAM, saveWorkspaces, Workspace } from "./workspace.ts";

/** The editor key of the stdin tab (not a file name: it has a character names cannot). */
const STDIN_TAB = ":stdin";
const LANGUAGE_KEY = "sandstream.language";

/** Tabs of another kind (the sandbox's files opened from the file tree): the editor
 * keys they own, their tab elements, and what they hear of edits and selection. */
export interface ExtraTabs {
  owns(name: string): boolean;
  changed(name: string, content: string): void;
  /** Their tabs, placed after the language's files. */
  render(): HTMLElement[];
  /** After each render: the editor key shown. */
  shown(name: string | null): void;
}

export class Tabs {
  readonly editor: CodeEditor;
  private readonly workspaces = loadWorkspaces();
  private lang: Language = (localStorage.getItem(LANGUAGE_KEY) as Language) || "python";
  private saveTimer: number | null = null;
  private addingFile = false;
  /** The sandbox's files open in the editor (open-files.ts), once wired. */
  extra: ExtraTabs | null = null;

  constructor(
    private readonly el: Pick<Layout, "tabs" | "editor" | "language">,
    private readonly messages: Messages,
    onRun: () => void,
  ) {
    if (!this.workspaces[this.lang]) this.lang = "python";
    this.editor = new CodeEditor(el.editor, {
      onRun,
      onChange: (name, content) => {
        if (this.extra?.owns(name)) return this.extra.changed(name, content);
        if (name === STDIN_TAB) this.ws().stdin = content;
        const f = this.ws().files.find((x) => x.name === name);
        if (f) f.content = content;
        if (this.saveTimer) clearTimeout(this.saveTimer);
        this.saveTimer = window.setTimeout(() => saveWorkspaces(this.workspaces), 300);
      },
    });
    el.language.addEventListener("change", () => this.loadLanguage(el.language.value as Language));
    this.loadLanguage(this.lang);
    // The dependency and stdin tabs show "empty" until they have content.
    setInterval(() => {
      const deps = el.tabs.querySelector(".tab.deps .tab-hint");
      if (deps) deps.textContent = this.ws().files[1].content.trim() ? "" : "empty";
      const stdin = el.tabs.querySelector(".tab.stdin .tab-hint");
      if (stdin) stdin.textContent = (this.ws().stdin ?? "").length ? "" : "empty";
    }, 1000);
  }

  get language(): Language {
    return this.lang;
  }

  /** The current language's files and stdin. */
  ws(): Workspace {
    return this.workspaces[this.lang];
  }

  setLanguage(l: Language) {
    if (!LANGUAGES.some((x) => x.id === l)) throw new Error(`unknown language ${l}`);
    this.loadLanguage(l);
  }

  /** A file of the current language; "code" and "program" name the program. */
  getFile(name: string): string | null {
    return this.ws().files.find((f) => f.name === this.fileName(name))?.content ?? null;
  }

  files(): string[] {
    return this.ws().files.map((f) => f.name);
  }

  /** Sets a file of the current language, adding it when it is new; "code" and "program" name the program. */
  setFile(name: string, content: string) {
    this.putFile(this.fileName(name), content);
  }

  private putFile(name: string, content: string) {
    const w = this.ws();
    let f = w.files.find((x) => x.name === name);
    if (!f) {
      f = { name, content };
      w.files.push(f);
      this.editor.load(name, content);
    } else {
      this.editor.setContent(name, content);
    }
    f.content = content;
    saveWorkspaces(this.workspaces);
    this.render();
  }

  /** Text given to the program on stdin ("" for none). */
  setStdin(text: string) {
    this.ws().stdin = text;
    this.editor.setContent(STDIN_TAB, text);
    saveWorkspaces(this.workspaces);
    this.render();
  }

  removeFile(name: string) {
    const w = this.ws();
    const i = w.files.findIndex((f) => f.name === name);
    if (i < 2) return; // the program and the dependency file stay
    w.files.splice(i, 1);
    const wasActive = this.editor.activeName === name;
    this.editor.drop(name);
    if (wasActive) this.editor.show(w.files[Math.min(i, w.files.length - 1)].name);
    saveWorkspaces(this.workspaces);
    this.render();
  }

  selectTab(name: string) {
    if (!this.editor.has(name)) return;
    this.editor.show(name);
    this.render();
  }

  private fileName(name: string): string {
    return name === "code" || name === "program" ? PROGRAM[this.lang] : name;
  }

  private loadLanguage(l: Language) {
    this.lang = l;
    localStorage.setItem(LANGUAGE_KEY, l);
    this.el.language.value = l;
    const editor = this.editor;
    editor.dropAll((name) => !this.extra?.owns(name));
    for (const f of this.ws().files) editor.load(f.name, f.content, f.name === DEPS[l] ? DEPS_HINT[l] : "");
    editor.load(STDIN_TAB, this.ws().stdin ?? "", "Text given to the program on its standard input (optional).");
    editor.show(PROGRAM[l]);
    this.render();
  }

  render() {
    const tabsEl = this.el.tabs;
    const editor = this.editor;
    tabsEl.textContent = "";
    this.ws().files.forEach((f, i) => {
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
          this.removeFile(f.name);
        });
        tab.append(close);
      }
      selectOnActivate(tab, () => this.selectTab(f.name));
      tabsEl.append(tab);
    });
    if (this.extra) tabsEl.append(...this.extra.render());
    // stdin is not a file: it is sent as the request's `stdin`.
    const stdinTab = document.createElement("div");
    stdinTab.className = "tab stdin" + (editor.activeName === STDIN_TAB ? " active" : "");
    stdinTab.setAttribute("role", "tab");
    stdinTab.setAttribute("aria-selected", String(editor.activeName === STDIN_TAB));
    stdinTab.dataset.testid = "tab-stdin";
    stdinTab.tabIndex = 0;
    stdinTab.title = "Standard input for the program";
    stdinTab.innerHTML = `<span class="tab-name">stdin</span><span class="tab-hint">${(this.ws().stdin ?? "").length ? "" : "empty"}</span>`;
    selectOnActivate(stdinTab, () => this.selectTab(STDIN_TAB));
    tabsEl.append(this.addingFile ? this.newFileForm() : this.addButton());
    const spacer = document.createElement("span");
    spacer.className = "tabs-spacer";
    tabsEl.append(spacer, stdinTab);
    this.extra?.shown(editor.activeName);
  }

  private addButton(): HTMLElement {
    const add = document.createElement("button");
    add.className = "tab-add";
    add.dataset.testid = "add-file";
    add.title = "Add a file";
    add.setAttribute("aria-label", "Add a file");
    add.textContent = "+";
    add.addEventListener("click", () => {
      this.addingFile = true;
      this.render();
    });
    return add;
  }

  private newFileForm(): HTMLElement {
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
      const why = badFileName(name, this.files());
      if (why) {
        this.messages.show("warn", why);
        input.focus();
        return;
      }
      this.addingFile = false;
      this.messages.hide();
      this.putFile(name, "");
      this.selectTab(name);
      this.editor.focus();
    });
    input.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        this.addingFile = false;
        this.render();
      }
    });
    input.addEventListener("blur", () => {
      setTimeout(() => {
        if (this.addingFile && !input.value.trim()) {
          this.addingFile = false;
          this.render();
        }
      }, 150);
    });
    setTimeout(() => input.focus(), 0);
    return form;
  }
}

export function selectOnActivate(tab: HTMLElement, select: () => void) {
  tab.addEventListener("click", select);
  tab.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      select();
    }
  });
}
