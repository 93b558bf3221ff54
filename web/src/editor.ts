// The code editor: one CodeMirror 6 view; each file keeps its own EditorState (its
// own undo history), swapped in when its tab is selected.
import { EditorState, Extension, Prec } from "@codemirror/state";
import {
  EditorView,
  keymap,
  lineNumbers,
  highlightActiveLine,
  highlightActiveLineGutter,
  drawSelection,
  dropCursor,
  rectangularSelection,
  crosshairCursor,
  highlightSpecialChars,
  placeholder as placeholderExt,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import {
  bracketMatching,
  foldGutter,
  foldKeymap,
  indentOnInput,
  syntaxHighlighting,
  defaultHighlightStyle,
  indentUnit,
} from "@codemirror/language";
import { autocompletion, closeBrackets, closeBracketsKeymap, completionKeymap } from "@codemirror/autocomplete";
import { highlightSelectionMatches, searchKeymap } from "@codemirror/search";
import { python } from "@codemirror/lang-python";
import { javascript } from "@codemirror/lang-javascript";
import { json } from "@codemirror/lang-json";
import { oneDark } from "@codemirror/theme-one-dark";

export function languageFor(name: string): Extension {
  const ext = name.toLowerCase().split(".").pop() ?? "";
  switch (ext) {
    case "py":
      return python();
    case "js":
    case "mjs":
    case "cjs":
      return javascript();
    case "jsx":
      return javascript({ jsx: true });
    case "ts":
    case "mts":
    case "cts":
      return javascript({ typescript: true });
    case "tsx":
      return javascript({ typescript: true, jsx: true });
    case "json":
      return json();
    default:
      return [];
  }
}

export interface EditorHooks {
  onRun: () => void;
  onChange: (name: string, content: string) => void;
}

export class CodeEditor {
  readonly view: EditorView;
  private states = new Map<string, EditorState>();
  private active: string | null = null;

  constructor(
    parent: HTMLElement,
    private readonly hooks: EditorHooks,
  ) {
    this.view = new EditorView({ parent, state: EditorState.create({ doc: "" }) });
  }

  private extensions(name: string, hint: string): Extension[] {
    return [
      lineNumbers(),
      highlightActiveLineGutter(),
      highlightSpecialChars(),
      history(),
      foldGutter(),
      drawSelection(),
      dropCursor(),
      EditorState.allowMultipleSelections.of(true),
      indentOnInput(),
      bracketMatching(),
      closeBrackets(),
      autocompletion(),
      rectangularSelection(),
      crosshairCursor(),
      highlightActiveLine(),
      highlightSelectionMatches(),
      indentUnit.of(name.endsWith(".py") ? "    " : "  "),
      Prec.highest(
        keymap.of([
          {
            key: "Mod-Enter",
            preventDefault: true,
            run: () => {
              this.hooks.onRun();
              return true;
            },
          },
        ]),
      ),
      keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...searchKeymap, ...historyKeymap, ...foldKeymap, ...completionKeymap, indentWithTab]),
      languageFor(name),
      oneDark,
      syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
      hint ? placeholderExt(hint) : [],
      EditorView.lineWrapping,
      EditorView.contentAttributes.of({ "aria-label": `Contents of ${name}`, "data-file": name }),
      EditorView.updateListener.of((u) => {
        if (u.docChanged) this.hooks.onChange(name, u.state.doc.toString());
      }),
    ];
  }

  /** Creates (or replaces) the state of one file. */
  load(name: string, content: string, hint = "") {
    const state = EditorState.create({ doc: content, extensions: this.extensions(name, hint) });
    this.states.set(name, state);
    if (this.active === name) this.view.setState(state);
  }

  has(name: string) {
    return this.states.has(name);
  }

  drop(name: string) {
    this.states.delete(name);
  }

  /** Drops every file `which` names (all of them without it). */
  dropAll(which: (name: string) => boolean = () => true) {
    if (this.active && which(this.active)) this.active = null;
    for (const name of [...this.states.keys()]) if (which(name)) this.states.delete(name);
  }

  show(name: string) {
    if (this.active && this.states.has(this.active)) this.states.set(this.active, this.view.state);
    const st = this.states.get(name);
    if (!st) return;
    this.active = name;
    this.view.setState(st);
  }

  get activeName() {
    return this.active;
  }

  content(name: string): string {
    if (name === this.active) return this.view.state.doc.toString();
    return this.states.get(name)?.doc.toString() ?? "";
  }

  /** Replaces a file's text as an edit (undoable), keeping its history. */
  setContent(name: string, content: string) {
    if (name === this.active) {
      this.view.dispatch({ changes: { from: 0, to: this.view.state.doc.length, insert: content } });
      return;
    }
    const st = this.states.get(name);
    if (!st) return;
    const tr = st.update({ changes: { from: 0, to: st.doc.length, insert: content } });
    this.states.set(name, tr.state);
    this.hooks.onChange(name, content);
  }

  focus() {
    this.view.focus();
  }
}
