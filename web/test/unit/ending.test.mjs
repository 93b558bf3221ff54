// How the page tells the end of a run in words (src/ending.ts): an out-of-memory kill is
// said as such, with the server's sentence naming the memory limit, never as a bare exit
// code; an ordinary failure (even one with 137) is not.
import { test } from "node:test";
import assert from "node:assert/strict";
import { describeEnd, fmtDuration } from "../../build/unit/ending.js";

const OOM_WORDS = "the program was killed by the out-of-memory killer: the sandbox reached its memory limit of 512 MiB";
const base = { status: "error", exitCode: 137, durationMs: 1500, error: null, oomKilled: false, phase: "run" };

test("an out-of-memory kill is told in words on the terminal, the status line and the message bar", () => {
  const w = describeEnd({ ...base, error: OOM_WORDS, oomKilled: true }, 120_000);
  assert.equal(w.line, `✘ Out of memory · exit code 137 · 1.50 s · ${OOM_WORDS}`);
  assert.equal(w.color, "31");
  assert.equal(w.exitNote, "out of memory");
  assert.equal(w.phase, "");
  assert.deepEqual(w.message, {
    kind: "error",
    text: "The program was killed by the out-of-memory killer: the sandbox reached its memory limit of 512 MiB.",
  });
});

test("an install that ran out of memory names the install", () => {
  const why = OOM_WORDS.replace("the program was", "the dependency installation was");
  const w = describeEnd({ ...base, error: why, oomKilled: true, phase: "install" }, 120_000);
  assert.match(w.line, /^✘ Dependency install ran out of memory · exit code 137 · /);
  assert.ok(w.line.endsWith(why));
  assert.equal(w.phase, "while installing dependencies");
});

test("an out-of-memory end without the server's sentence still says it", () => {
  const w = describeEnd({ ...base, oomKilled: true }, 120_000);
  assert.match(w.line, /out-of-memory killer: the sandbox reached its memory limit$/);
  assert.match(w.message.text, /^Killed by the out-of-memory killer/);
});

test("positive control: an exit 137 or 1 that is not for memory says nothing of memory", () => {
  for (const exitCode of [137, 1]) {
    const w = describeEnd({ ...base, exitCode }, 120_000);
    assert.equal(w.line, `✘ Failed · exit code ${exitCode} · 1.50 s`);
    assert.equal(w.exitNote, "");
    assert.equal(w.message, null);
    assert.doesNotMatch(JSON.stringify(w), /memory/i);
  }
  const install = describeEnd({ ...base, exitCode: 1, error: "dependency installation failed with exit code 1", phase: "install" }, 120_000);
  assert.equal(install.line, "✘ Dependency install failed · exit code 1 · 1.50 s · dependency installation failed with exit code 1");
});

test("success, timeout and stop read as before", () => {
  assert.equal(describeEnd({ ...base, status: "success", exitCode: 0 }, 1000).line, "✔ Finished · exit code 0 · 1.50 s");
  const t = describeEnd({ ...base, status: "timeout", exitCode: 124 }, 2000);
  assert.equal(t.line, "⏱ Timed out after 2.00 s (the limit) · exit code 124");
  assert.equal(t.message.kind, "warn");
  assert.equal(describeEnd({ ...base, status: "cancelled", exitCode: 130 }, 1000).line, "■ Stopped · exit code 130 · 1.50 s");
  assert.equal(fmtDuration(61_000), "1 min 1 s");
});
