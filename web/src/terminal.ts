// The log view: xterm.js renders the output the way a terminal does (ANSI colours,
// `\r` redraws in place). A plain-text mirror of everything written is kept in a hidden
// element so tests (and screen readers) can read it.
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import "@xterm/xterm/css/xterm.css";

const ANSI = /\x1b\[[0-?]*[ -\/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-Z\\-_]/g;

export function stripAnsi(s: string): string {
  return s.replace(ANSI, "");
}

export type WriteKind = "stdout" | "stderr" | "system";

export class LogTerminal {
  readonly term: Terminal;
  private readonly fit: FitAddon;
  private lastChar = "\n";
  private lastKind: WriteKind | null = null;
  /** The stream whose line was ended early because the other stream wrote. */
  private brokenKind: WriteKind | null = null;
  private fitQueued = false;

  constructor(
    private readonly host: HTMLElement,
    private readonly mirror: HTMLElement,
  ) {
    this.term = new Terminal({
      convertEol: true, // "\n" → "\r\n"; a lone "\r" still returns to column 0 (progress bars)
      disableStdin: true,
      cursorBlink: false,
      scrollback: 20000,
      fontSize: 13,
      lineHeight: 1.2,
      fontFamily: 'ui-monospace, "SFMono-Regular", "JetBrains Mono", Menlo, Consolas, "Liberation Mono", "DejaVu Sans Mono", monospace',
      allowProposedApi: false,
      theme: {
        background: "#0d1117",
        foreground: "#d6dde6",
        cursor: "#0d1117",
        selectionBackground: "#264f78",
        black: "#484f58",
        red: "#ff7b72",
        green: "#3fb950",
        yellow: "#d29922",
        blue: "#58a6ff",
        magenta: "#bc8cff",
        cyan: "#39c5cf",
        white: "#b1bac4",
        brightBlack: "#6e7681",
        brightRed: "#ffa198",
        brightGreen: "#56d364",
        brightYellow: "#e3b341",
        brightBlue: "#79c0ff",
        brightMagenta: "#d2a8ff",
        brightCyan: "#56d4dd",
        brightWhite: "#f0f6fc",
      },
    });
    this.fit = new FitAddon();
    this.term.loadAddon(this.fit);
    this.term.open(host);
    this.term.write("\x1b[?25l"); // no cursor: this is a log, not a shell
    new ResizeObserver(() => this.queueFit()).observe(host);
    this.queueFit();
  }

  private queueFit() {
    if (this.fitQueued) return;
    this.fitQueued = true;
    requestAnimationFrame(() => {
      this.fitQueued = false;
      if (this.host.clientWidth > 0 && this.host.clientHeight > 0) {
        try {
          this.fit.fit();
        } catch {
          /* not laid out yet */
        }
      }
    });
  }

  clear() {
    this.term.reset();
    this.term.write("\x1b[?25l");
    this.mirror.textContent = "";
    this.lastChar = "\n";
    this.lastKind = null;
    this.brokenKind = null;
  }

  /**
   * Program output. stderr is shown in red so it stands apart from stdout.
   *
   * stdout and stderr are two pipes merged by the server in the order it read them, so a
   * line of one stream can be cut by the other (`print("a")` unbuffered arrives as "a"
   * then "\n"). When the stream changes in the middle of a line, the line is ended first,
   * and the interrupted stream's own newline, when it comes, is not doubled.
   */
  write(data: string, kind: WriteKind) {
    if (!data) return;
    if (this.lastChar !== "\n" && this.lastKind !== null && this.lastKind !== kind) {
      this.emit("\n", kind);
      this.brokenKind = this.lastKind;
    } else if (this.brokenKind === kind) {
      if (data.startsWith("\r\n")) data = data.slice(2);
      else if (data.startsWith("\n")) data = data.slice(1);
      this.brokenKind = null;
      if (!data) return;
    }
    if (this.brokenKind === kind) this.brokenKind = null;
    this.emit(data, kind);
    this.lastKind = kind;
  }

  private emit(data: string, kind: WriteKind) {
    if (kind === "stderr") this.term.write("\x1b[91m" + data + "\x1b[39m");
    else this.term.write(data);
    this.mirror.append(stripAnsi(data));
    this.lastChar = data[data.length - 1];
  }

  /** A line of our own (phase banners, the exit summary), on a line of its own. */
  system(line: string, sgr = "2") {
    const lead = this.lastChar === "\n" ? "" : "\r\n";
    this.term.write(`${lead}\x1b[${sgr}m${line}\x1b[0m\r\n`);
    this.mirror.append(`${lead ? "\n" : ""}${line}\n`);
    this.lastChar = "\n";
    this.lastKind = null;
    this.brokenKind = null;
  }
}
