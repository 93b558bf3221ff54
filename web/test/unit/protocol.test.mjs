// Unit tests of the page's run protocol (src/protocol.ts), under Node without a browser:
// `npm run test:unit` compiles the pure modules to build/unit and runs these. The REST
// replies and the timers are fakes the tests drive by hand, so nothing here waits on a
// clock.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ExecutionStream, GAP_WAIT_MS, RoomLink, pollDue, socketErrorAction } from "../../build/unit/protocol.js";

const EX = "ex-0000000001";
const SB = "sb-0000000001";

/** A stream whose REST requests wait until the test answers them, and whose timers fire when the test says. */
function world() {
  const rendered = [];
  const requests = [];
  const timers = new Map();
  let nextTimer = 1;
  const stats = { socketChunks: 0, restChunks: 0, duplicatesDropped: 0 };
  const ask = (kind, afterSeq) =>
    new Promise((resolve, reject) => requests.push({ kind, afterSeq, resolve, reject }));
  const ports = {
    fetchLogs: (id, afterSeq) => {
      assert.equal(id, EX);
      return ask("logs", afterSeq);
    },
    fetchState: (id) => {
      assert.equal(id, EX);
      return ask("state");
    },
    render: (r) => rendered.push(r),
    setTimer: (fn, ms) => {
      const h = nextTimer++;
      timers.set(h, { fn, ms });
      return h;
    },
    clearTimer: (h) => timers.delete(h),
    now: () => 10_000,
  };
  const stream = new ExecutionStream(EX, SB, 4_000, ports, stats);
  return {
    stream,
    stats,
    rendered,
    requests,
    timers,
    /** What was shown, compactly: chunk seqs, `phase:x`, `end:status`. */
    shown: () => rendered.map((r) => (r.kind === "chunk" ? r.chunk.seq : r.kind === "phase" ? `phase:${r.phase}` : `end:${r.end.status}`)),
    text: () => rendered.filter((r) => r.kind === "chunk").map((r) => r.chunk.data).join(""),
    /** The one request waiting for an answer. */
    next(kind) {
      const r = requests.shift();
      assert.ok(r, `expected a ${kind} request, none was made`);
      assert.equal(r.kind, kind);
      return r;
    },
    fireTimers() {
      const due = [...timers.values()];
      timers.clear();
      for (const t of due) t.fn();
    },
  };
}

function out(seq, data = `${seq}\n`, extra = {}) {
  return { executionId: EX, containerId: SB, seq, type: "stdout", phase: "run", data, ...extra };
}
const chunk = (seq, data = `${seq}\n`, extra = {}) => ({ seq, type: "stdout", phase: "run", data, ...extra });
/** Lets the promise continuations of an answered request run. */
const settle = () => new Promise((r) => setImmediate(r));

describe("output order", () => {
  test("chunks in order are shown at once, after the phase banner", () => {
    const w = world();
    for (const s of [1, 2, 3]) assert.equal(w.stream.output(out(s)), true);
    assert.deepEqual(w.shown(), ["phase:run", 1, 2, 3]);
    assert.equal(w.text(), "1\n2\n3\n");
    assert.equal(w.stream.lastSeq, 3);
    assert.equal(w.timers.size, 0, "no gap, no timer");
    assert.equal(w.requests.length, 0, "no gap, no REST");
  });

  test("out-of-order seqs are shown in order; the early one waits for the gap without REST", () => {
    const w = world();
    w.stream.output(out(1));
    w.stream.output(out(3));
    w.stream.output(out(4));
    assert.deepEqual(w.shown(), ["phase:run", 1], "3 and 4 wait for 2");
    assert.deepEqual([...w.timers.values()].map((t) => t.ms), [GAP_WAIT_MS], "one gap timer");
    w.stream.output(out(2));
    assert.deepEqual(w.shown(), ["phase:run", 1, 2, 3, 4]);
    assert.equal(w.timers.size, 0, "the gap closed: its timer is cleared");
    assert.equal(w.requests.length, 0);
    assert.equal(w.stats.socketChunks, 4);
  });

  test("a gap that persists is filled from REST, and nothing is shown twice", async () => {
    const w = world();
    w.stream.output(out(1));
    w.stream.output(out(3));
    w.stream.output(out(5));
    w.fireTimers();
    const req = w.next("logs");
    assert.equal(req.afterSeq, 1, "REST is asked for everything after the last chunk shown");
    req.resolve([chunk(2), chunk(3), chunk(4), chunk(5), chunk(6)]);
    await settle();
    assert.deepEqual(w.shown(), ["phase:run", 1, 2, 3, 4, 5, 6]);
    assert.equal(w.text(), "1\n2\n3\n4\n5\n6\n");
    assert.equal(w.stats.restChunks, 3, "only 2, 4 and 6 came from REST: 3 and 5 were held already");
    // The socket's own copies arriving late are dropped.
    w.stream.output(out(4));
    w.stream.output(out(6));
    assert.deepEqual(w.shown(), ["phase:run", 1, 2, 3, 4, 5, 6]);
    assert.equal(w.stats.duplicatesDropped, 2);
    assert.equal(w.timers.size, 0);
  });

  test("a gap the server cannot fill is skipped once it answered; one it could not ask about waits", async () => {
    const w = world();
    w.stream.output(out(1));
    w.stream.output(out(3));
    w.fireTimers();
    w.next("logs").reject(Object.assign(new Error("network error"), { status: 0 }));
    await settle();
    assert.deepEqual(w.shown(), ["phase:run", 1], "no answer: 3 still waits for 2");
    assert.equal(w.timers.size, 1, "and the gap is tried again");
    w.fireTimers();
    w.next("logs").resolve([chunk(3)]);
    await settle();
    assert.deepEqual(w.shown(), ["phase:run", 1, 3], "the server has no 2: 3 is shown");
    assert.equal(w.timers.size, 0);
  });

  test("duplicate events are dropped, whether already shown or still held", () => {
    const w = world();
    w.stream.output(out(1));
    w.stream.output(out(1));
    w.stream.output(out(3));
    w.stream.output(out(3, "a different copy\n"));
    w.stream.output(out(0));
    w.stream.output(out(Number.NaN));
    w.stream.output(out(2));
    assert.deepEqual(w.shown(), ["phase:run", 1, 2, 3]);
    assert.equal(w.text(), "1\n2\n3\n", "the first copy of 3 is the one kept");
    assert.equal(w.stats.duplicatesDropped, 4);
  });

  test("text is shown as the server sent it: it decodes UTF-8 whole characters, the page does not re-split", () => {
    const w = world();
    w.stream.output(out(2, "界 ✔\n"));
    w.stream.output(out(1, "数据 é "));
    assert.equal(w.text(), "数据 é 界 ✔\n");
  });

  test("events of another execution are not this run's", () => {
    const w = world();
    assert.equal(w.stream.output({ ...out(1), executionId: "ex-other" }), false);
    assert.equal(w.stream.phaseEvent({ executionId: "ex-other", containerId: SB, phase: "run" }), false);
    assert.deepEqual(w.shown(), []);
    assert.equal(w.stats.socketChunks, 0);
  });
});

describe("phases", () => {
  test("install then run, each banner once and before its first chunk, never backwards", () => {
    const w = world();
    assert.equal(w.stream.phaseEvent({ executionId: EX, containerId: SB, phase: "install" }), true);
    w.stream.output(out(1, "Collecting numpy\n", { phase: "install" }));
    w.stream.output(out(2, "hello\n", { phase: "run" }));
    w.stream.phaseEvent({ executionId: EX, containerId: SB, phase: "run" });
    w.stream.phaseEvent({ executionId: EX, containerId: SB, phase: "install" });
    assert.deepEqual(w.shown(), ["phase:install", 1, "phase:run", 2]);
    assert.equal(w.stream.phase, "run");
  });

  test("a phase event waits while chunks of the phase before it are held", () => {
    const w = world();
    w.stream.output(out(2, "Successfully installed\n", { phase: "install" }));
    w.stream.phaseEvent({ executionId: EX, containerId: SB, phase: "run" });
    assert.deepEqual(w.shown(), [], "run is not announced ahead of the held install output");
    w.stream.output(out(1, "Collecting\n", { phase: "install" }));
    w.stream.output(out(3, "program\n", { phase: "run" }));
    assert.deepEqual(w.shown(), ["phase:install", 1, 2, "phase:run", 3]);
  });
});

describe("completion", () => {
  test("a completion that overtakes the last output is held until the output is in, then shown once", async () => {
    const w = world();
    w.stream.output(out(1));
    w.stream.output(out(2));
    const done = w.stream.complete({ executionId: EX, containerId: SB, exitCode: 0, status: "success", durationMs: 1234, lastSeq: 4 });
    const req = w.next("logs");
    assert.equal(req.afterSeq, 2);
    assert.deepEqual(w.shown(), ["phase:run", 1, 2], "no end before the output");
    // The socket still delivers while REST is asked.
    w.stream.output(out(3));
    assert.deepEqual(w.shown(), ["phase:run", 1, 2, 3]);
    req.resolve([chunk(3), chunk(4)]);
    await done;
    assert.deepEqual(w.shown(), ["phase:run", 1, 2, 3, 4, "end:success"]);
    assert.deepEqual(w.rendered.at(-1).end, { status: "success", exitCode: 0, durationMs: 1234, error: null, oomKilled: false, phase: "run" });
    assert.equal(w.stream.done, true);
    // The same completion again (a replay after a resume) and late chunks change nothing.
    await w.stream.complete({ executionId: EX, containerId: SB, exitCode: 0, status: "success", durationMs: 1234, lastSeq: 4 });
    w.stream.output(out(5));
    assert.deepEqual(w.shown(), ["phase:run", 1, 2, 3, 4, "end:success"]);
    assert.equal(w.requests.length, 0);
    assert.equal(w.timers.size, 0);
  });

  test("held chunks are shown before the end even when REST cannot be reached", async () => {
    const w = world();
    w.stream.output(out(1));
    w.stream.output(out(3));
    const done = w.stream.complete({ executionId: EX, containerId: SB, exitCode: 3, status: "error", durationMs: 50 });
    w.next("logs").reject(new Error("network error"));
    await done;
    assert.deepEqual(w.shown(), ["phase:run", 1, 3, "end:error"]);
    assert.equal(w.rendered.at(-1).end.exitCode, 3);
    assert.equal(w.timers.size, 0, "the gap timer went with the run");
  });

  test("an out-of-memory kill keeps its words and its flag to the end", async () => {
    const w = world();
    const error = "the program was killed by the out-of-memory killer: the sandbox reached its memory limit of 64 MiB";
    const done = w.stream.complete({ executionId: EX, containerId: SB, exitCode: 137, status: "error", durationMs: 80, error, oomKilled: true });
    w.next("logs").resolve([]);
    await done;
    assert.deepEqual(w.rendered.at(-1).end, { status: "error", exitCode: 137, durationMs: 80, error, oomKilled: true, phase: null });
  });

  test("an unknown status ends as an error, and a missing duration is measured from the start", async () => {
    const w = world();
    const done = w.stream.complete({ executionId: EX, containerId: SB, exitCode: null, status: "exploded" });
    w.next("logs").resolve([]);
    await done;
    assert.deepEqual(w.rendered.at(-1).end, { status: "error", exitCode: null, durationMs: 6_000, error: null, oomKilled: false, phase: null });
  });
});

describe("reconnect", () => {
  test("after a reconnect the run joins its room again and resumes after the last chunk shown", () => {
    const w = world();
    const link = new RoomLink();
    assert.deepEqual(link.follow(w.stream, true), [{ event: "join-container", containerId: SB }]);
    assert.deepEqual(link.containerJoined({ containerId: SB }, w.stream), [
      { event: "resume-execution", request: { executionId: EX, afterSeq: 0 } },
    ]);
    for (const s of [1, 2, 3]) w.stream.output(out(s));
    link.disconnected();
    assert.equal(link.joinedContainer, null);
    assert.deepEqual(link.connected(w.stream), [{ event: "join-container", containerId: SB }]);
    assert.deepEqual(link.containerJoined({ containerId: SB }, w.stream), [
      { event: "resume-execution", request: { executionId: EX, afterSeq: 3 } },
    ]);
    // The replay (1…5) and the live events overlap: each chunk is shown once.
    for (const s of [1, 2, 3, 4, 5]) w.stream.output(out(s));
    w.stream.output(out(5));
    assert.deepEqual(w.shown(), ["phase:run", 1, 2, 3, 4, 5]);
    assert.equal(w.stats.duplicatesDropped, 4);
  });

  test("a run started while the socket is in its room resumes at once; offline, nothing is sent", () => {
    const w = world();
    const link = new RoomLink();
    link.containerJoined({ containerId: SB }, null);
    assert.deepEqual(link.follow(w.stream, true), [{ event: "resume-execution", request: { executionId: EX, afterSeq: 0 } }]);
    assert.deepEqual(link.follow(w.stream, false), []);
    assert.deepEqual(link.containerJoined({ containerId: "sb-other" }, w.stream), [], "another sandbox's room");
  });

  test("a finished run joins and resumes nothing", async () => {
    const w = world();
    const link = new RoomLink();
    const done = w.stream.complete({ executionId: EX, containerId: SB, exitCode: 0, status: "success", durationMs: 1 });
    w.next("logs").resolve([]);
    await done;
    assert.deepEqual(link.connected(w.stream), []);
    assert.deepEqual(link.containerJoined({ containerId: SB }, w.stream), []);
    assert.equal(w.stream.resumeRequest(), null);
  });
});

describe("polling over REST", () => {
  test("with the socket down, a poll shows the missing output and the end", async () => {
    const w = world();
    w.stream.output(out(1));
    let p = w.stream.poll();
    const logs = w.next("logs");
    assert.equal(logs.afterSeq, 1);
    logs.resolve([chunk(2), chunk(3)]);
    await settle();
    w.next("state").resolve({ status: "running", exitCode: null, durationMs: null });
    await p;
    assert.deepEqual(w.shown(), ["phase:run", 1, 2, 3]);
    p = w.stream.poll();
    w.next("logs").resolve([chunk(4)]);
    await settle();
    w.next("state").resolve({ status: "timeout", exitCode: 124, durationMs: 5000 });
    await settle();
    w.next("logs").resolve([]);
    await p;
    assert.deepEqual(w.shown(), ["phase:run", 1, 2, 3, 4, "end:timeout"]);
    assert.deepEqual(w.rendered.at(-1).end, { status: "timeout", exitCode: 124, durationMs: 5000, error: null, oomKilled: false, phase: "run" });
    assert.equal(w.stats.restChunks, 3);
  });

  test("a poll that finds an out-of-memory kill shows its words", async () => {
    const w = world();
    const p = w.stream.poll();
    w.next("logs").resolve([]);
    await settle();
    const error = "the program was killed by the out-of-memory killer: the sandbox reached its memory limit of 64 MiB";
    w.next("state").resolve({ status: "error", exitCode: 137, durationMs: 90, error, oomKilled: true });
    await settle();
    w.next("logs").resolve([]);
    await p;
    assert.deepEqual(w.rendered.at(-1).end, { status: "error", exitCode: 137, durationMs: 90, error, oomKilled: true, phase: null });
  });

  test("an execution the server no longer knows ends the run with an error", async () => {
    const w = world();
    const p = w.stream.poll();
    w.next("logs").resolve([]);
    await settle();
    w.next("state").reject(Object.assign(new Error("Not found"), { status: 404 }));
    await p;
    assert.deepEqual(w.rendered.at(-1), {
      kind: "end",
      end: { status: "error", exitCode: null, durationMs: 6_000, error: "the server no longer knows this execution", oomKilled: false, phase: null },
    });
  });

  test("the socket is polled when silent for 4 s, or down for 1.5 s", () => {
    assert.equal(pollDue(4001, true), true);
    assert.equal(pollDue(3999, true), false);
    assert.equal(pollDue(1501, false), true);
    assert.equal(pollDue(1499, false), false);
  });
});

test("a detached stream ignores replies still in flight and events", async () => {
  const w = world();
  w.stream.output(out(1));
  w.stream.output(out(3));
  const done = w.stream.complete({ executionId: EX, containerId: SB, exitCode: 0, status: "success", durationMs: 1 });
  w.stream.detach();
  assert.equal(w.timers.size, 0);
  w.next("logs").resolve([chunk(2), chunk(3)]);
  await done;
  assert.equal(w.stream.output(out(4)), false);
  assert.deepEqual(w.shown(), ["phase:run", 1], "nothing of the old run after the page moved on");
});

describe("socket errors", () => {
  const running = () => world().stream;
  test("an unknown execution ends the run", () => {
    const ev = { code: "not_found", message: `execution "${EX}" not found` };
    assert.deepEqual(socketErrorAction(ev, running(), SB), { kind: "end-run", error: ev.message });
  });
  test("a gone sandbox of a running execution is replayed without the room, and forgotten", () => {
    const ev = { code: "not_found", message: `container "${SB}" not found` };
    assert.deepEqual(socketErrorAction(ev, running(), SB), { kind: "replay", forgetSandbox: true });
    assert.deepEqual(socketErrorAction(ev, running(), "sb-other"), { kind: "replay", forgetSandbox: false });
  });
  test("with no run going on, the page's sandbox is gone", () => {
    const ev = { code: "not_found", message: `container "sb-0000000000" not found` };
    assert.deepEqual(socketErrorAction(ev, null, "sb-0000000000"), { kind: "sandbox-gone", containerId: "sb-0000000000" });
    assert.deepEqual(socketErrorAction(ev, null, null), { kind: "ignore" });
    assert.deepEqual(socketErrorAction(ev, running(), SB), { kind: "ignore" }, "another sandbox than the run's");
  });
  test("anything else is shown", () => {
    const ev = { code: "unauthorized", message: "the API key of this connection was revoked" };
    assert.deepEqual(socketErrorAction(ev, running(), SB), { kind: "show", message: ev.message });
  });
});
