// How the end of a run is told in words: the terminal's last line, the note after the
// exit code on the status line, and the message bar's text. Pure (no DOM), so
// test/unit/ending.test.mjs checks the words; runs.ts shows them.
import type { RunEnd } from "./protocol.ts";

export function fmtDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const m = Math.floor(ms / 60000);
  return `${m} min ${Math.round((ms % 60000) / 1000)} s`;
}

export interface EndWords {
  /** The terminal's last line, and its ANSI colour. */
  line: string;
  color: string;
  /** After "exit code N" on the status line ("" for none). */
  exitNote: string;
  /** The status line's phase, after the end: only an install that failed is named. */
  phase: string;
  /** For the message bar, or null. */
  message: { kind: "warn" | "error"; text: string } | null;
}

/** The words for `end`; `timeoutMs` is the limit the run had. */
export function describeEnd(end: RunEnd, timeoutMs: number): EndWords {
  const code = end.exitCode;
  const codeText = code === null ? "" : ` · exit code ${code}`;
  const dur = ` · ${fmtDuration(end.durationMs)}`;
  const install = end.phase === "install";
  const phase = end.status !== "success" && install ? "while installing dependencies" : "";
  const words = { exitNote: "", phase, message: null };
  switch (end.status) {
    case "success":
      return { ...words, line: `✔ Finished${codeText}${dur}`, color: "32" };
    case "error": {
      if (end.oomKilled) {
        // The server's sentence names the sandbox's memory limit; a bare 137 says nothing.
        const why = end.error ?? "killed by the out-of-memory killer: the sandbox reached its memory limit";
        const what = install ? "Dependency install ran out of memory" : "Out of memory";
        return {
          ...words,
          line: `✘ ${what}${codeText}${dur} · ${why}`,
          color: "31",
          exitNote: "out of memory",
          message: { kind: "error", text: `${why[0].toUpperCase()}${why.slice(1)}.` },
        };
      }
      const what = install ? "Dependency install failed" : "Failed";
      return { ...words, line: `✘ ${what}${codeText}${dur}${end.error ? ` · ${end.error}` : ""}`, color: "31" };
    }
    case "timeout":
      return {
        ...words,
        line: `⏱ Timed out after ${fmtDuration(timeoutMs)} (the limit)${codeText}`,
        color: "33",
        message: {
          kind: "warn",
          text: `The program ran past its timeout of ${fmtDuration(timeoutMs)} and was stopped. Raise the timeout if it needs longer.`,
        },
      };
    case "cancelled":
      return { ...words, line: `■ Stopped${codeText}${dur}`, color: "33" };
  }
}
