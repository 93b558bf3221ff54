// Browser tests of the playground against the real server: `npm test` in web/.
// Needs target/debug/sandstream (or SANDSTREAM_BIN), web/dist (built by `pretest`), and
// /usr/bin/chromium (or CHROMIUM_PATH). Each test saves a screenshot under
// test-results/screenshots/.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { checkPrerequisites, launchBrowser, screenshot, sleep, startServer, WEB_DIR } from "./harness.mjs";

const RUN_TIMEOUT = 10 * 60_000;
const DONE = ["success", "error", "timeout", "cancelled", "failed"];

let server;
let browser;
let context;

/** Seed 000's test case, verbatim. */
const SEED_PROGRAM = `# test.py
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt

# 创建一些随机数据
data = np.random.randn(100, 4)
df = pd.DataFrame(data, columns=['A', 'B', 'C', 'D'])

# 打印数据统计
print("Data statistics:")
print(df.describe())

# 简单数据处理
df['E'] = df.A + df.B
print("\\nTotal rows after processing:", len(df))

# 生成结果
print("\\nProcessing complete!")
`;
// The seed's pins (numpy 1.22 / pandas 1.5 / matplotlib 3.5) have no wheels for
// Python 3.11; these are the nearest with cp311 manylinux wheels.
const SEED_REQUIREMENTS = "numpy==1.26.4\npandas==2.1.4\nmatplotlib==3.8.2\n";

describe("Sandstream playground (real server, headless Chromium)", { timeout: 60 * 60_000 }, () => {
  before(
    async () => {
      checkPrerequisites(); // fails (never skips) when the binary, the build or Chromium is missing
      server = await startServer();
      console.log(`# server at ${server.baseUrl} (log: ${server.logPath})`);
      browser = await launchBrowser();
      context = await browser.newContext({ viewport: { width: 1366, height: 820 } });
      // The login URL works once: it sets the session cookie for this browser context,
      // which every page below shares.
      const page = await context.newPage();
      const res = await page.goto(server.loginUrl, { waitUntil: "load" });
      assert.ok(res, "no answer from the login URL");
      assert.ok(res.status() < 400, `login URL answered ${res.status()}`);
      await page.waitForSelector('[data-testid="connection"][data-state="connected"]', { timeout: 60_000 });
      await page.close();
    },
    { timeout: 25 * 60_000 },
  );

  after(async () => {
    await context?.close().catch(() => {});
    await browser?.close().catch(() => {});
    await server?.stop();
  });

  /** Opens the playground in a fresh page; `fn(page)` runs; a screenshot is always taken. */
  function pageTest(name, opts, fn) {
    test(name, { timeout: RUN_TIMEOUT + 60_000, ...opts }, async (t) => {
      const page = await context.newPage();
      if (opts.viewport) await page.setViewportSize(opts.viewport);
      const pageErrors = [];
      page.on("pageerror", (err) => pageErrors.push(String(err)));
      // Everything the page needs comes from the server itself, nothing from the internet.
      const foreign = [];
      page.on("request", (req) => {
        const url = req.url();
        if (!url.startsWith(server.baseUrl + "/") && !/^(data|blob|about):/.test(url)) foreign.push(url);
      });
      let consoleErrors = 0;
      page.on("console", (msg) => {
        if (msg.type() === "error" && ++consoleErrors <= 5) console.log(`# [${name}] console: ${msg.text()}`);
      });
      // A server that dies fails the test at once instead of leaving it to its timeout.
      let stopWatching;
      const died = new Promise((_, reject) => {
        stopWatching = () => reject = () => {};
        server.exited.then(({ code, signal }) => reject(new Error(`the server exited (code ${code}, signal ${signal}) during the test; see ${server.logPath}\n${server.tail}`)));
      });
      died.catch(() => {});
      try {
        await Promise.race([
          (async () => {
            await page.goto(server.baseUrl + "/", { waitUntil: "load" });
            await page.waitForSelector('[data-testid="connection"][data-state="connected"]', { timeout: 60_000 });
            await fn(page, t);
          })(),
          died,
        ]);
        stopWatching();
        assert.deepEqual(foreign, [], "requests to anything but the Sandstream server");
        assert.deepEqual(pageErrors, [], "the page threw");
      } finally {
        await screenshot(page, name, opts.alsoSaveAs ? [opts.alsoSaveAs] : []).catch(() => {});
        await page.close().catch(() => {});
      }
    });
  }

  // README's picture (web/screenshot.png, tracked) is replaced only when asked for:
  // SANDSTREAM_UPDATE_SCREENSHOT=1 npm test.
  const readmePicture = process.env.SANDSTREAM_UPDATE_SCREENSHOT === "1" ? path.join(WEB_DIR, "screenshot.png") : undefined;
  pageTest("python seed 000 numpy pandas matplotlib", { alsoSaveAs: readmePicture }, async (page) => {
    await setWorkspace(page, "python", { "main.py": SEED_PROGRAM, "requirements.txt": SEED_REQUIREMENTS }, 600);
    await run(page);
    await waitForLog(page, (log) => log.some((c) => c.phase === "install"), 120_000, "install output");
    assert.equal(await phase(page), "install", "the status line shows the install phase while pip runs");
    const st = await waitDone(page);
    const log = await getLog(page);
    const text = log.map((c) => c.data).join("");
    assert.equal(st.status, "success", `status ${st.status}; log:\n${tail(text)}`);
    assert.equal(st.exitCode, 0);
    await assertExitShown(page, "success", 0);

    const install = log.filter((c) => c.phase === "install").map((c) => c.data).join("");
    const runOut = log.filter((c) => c.phase === "run" && c.type === "stdout").map((c) => c.data).join("");
    assert.match(install, /Collecting numpy==1\.26\.4/);
    assert.match(install, /Downloading numpy-1\.26\.4-/, "pip's download lines are shown");
    assert.match(install, /Installing collected packages:/);
    assert.match(install, /Successfully installed/);
    const lastInstallSeq = Math.max(...log.filter((c) => c.phase === "install").map((c) => c.seq));
    const firstRunSeq = Math.min(...log.filter((c) => c.phase === "run").map((c) => c.seq));
    assert.ok(lastInstallSeq < firstRunSeq, "pip's output comes before the program's");
    assert.ok(text.indexOf("Successfully installed") < text.indexOf("Data statistics:"));
    assert.match(runOut, /Data statistics:/);
    for (const row of ["count", "mean", "std", "min", "25%", "50%", "75%", "max"]) assert.match(runOut, new RegExp(`^${row}\\s+-?\\d`, "m"), `statistics row ${row}`);
    assert.match(runOut, /count\s+100\.0+\s+100\.0+\s+100\.0+\s+100\.0+/);
    assert.match(runOut, /Total rows after processing: 100/);
    assert.match(runOut, /Processing complete!\s*$/);
    // The same text is on the terminal the user sees (and in the plain-text mirror).
    assert.match(await page.textContent('[data-testid="terminal-text"]'), /Processing complete!/);
    assert.match(await page.locator(".xterm-rows").innerText(), /Processing complete!/);
    await page.locator(".xterm-viewport").evaluate((el) => (el.scrollTop = el.scrollHeight));
  });

  pageTest("javascript with a package.json dependency", {}, async (page) => {
    const program = [
      "const _ = require('lodash');",
      "console.log('lodash', _.VERSION);",
      "console.log('chunks', JSON.stringify(_.chunk([1, 2, 3, 4, 5], 2)));",
      "console.log('words', _.words('fred, barney, & pebbles').join('|'));",
    ].join("\n");
    const pkg = JSON.stringify({ name: "playground", private: true, dependencies: { lodash: "4.17.21" } }, null, 2);
    await setWorkspace(page, "javascript", { "main.js": program, "package.json": pkg }, 300);
    await run(page);
    const st = await waitDone(page);
    const log = await getLog(page);
    const text = log.map((c) => c.data).join("");
    assert.equal(st.status, "success", `status ${st.status}; log:\n${tail(text)}`);
    assert.equal(st.exitCode, 0);
    assert.ok(log.some((c) => c.phase === "install"), "npm install ran (install phase)");
    assert.match(log.filter((c) => c.phase === "install").map((c) => c.data).join(""), /added \d+ package|up to date/);
    const out = log.filter((c) => c.phase === "run" && c.type === "stdout").map((c) => c.data).join("");
    assert.match(out, /lodash 4\.17\.21/);
    assert.match(out, /chunks \[\[1,2\],\[3,4\],\[5\]\]/);
    assert.match(out, /words fred\|barney\|pebbles/);
    await assertExitShown(page, "success", 0);
  });

  pageTest("1,000 alternating flushed stdout and stderr lines show in program order", {}, async (page) => {
    const program = [
      "import sys",
      "for i in range(1000):",
      "    sys.stdout.write(f'out {i}\\n'); sys.stdout.flush()",
      "    sys.stderr.write(f'err {i}\\n'); sys.stderr.flush()",
    ].join("\n");
    await setWorkspace(page, "python", { "main.py": program, "requirements.txt": "" }, 120);
    await run(page);
    const st = await waitDone(page);
    assert.equal(st.status, "success");
    const want = Array.from({ length: 1000 }, (_, i) => [`out ${i}`, `err ${i}`]).flat();
    // What the terminal shows (its text mirror), and the chunks the page kept.
    const shown = (await page.textContent('[data-testid="terminal-text"]')).split("\n").filter((l) => /^(out|err) \d+$/.test(l));
    const kept = (await getLog(page)).filter((c) => c.phase === "run").map((c) => c.data).join("").split("\n").filter(Boolean);
    for (const [what, got] of [["the terminal", shown], ["the page's chunks", kept]]) {
      const at = got.findIndex((l, i) => l !== want[i]);
      assert.ok(at === -1 && got.length === want.length, `${what}: line ${at} is ${JSON.stringify(got.slice(at - 1, at + 3))}, want ${JSON.stringify(want.slice(at - 1, at + 3))} (${got.length} lines)`);
    }
    // Positive control: stderr is still told apart (drawn in red).
    const red = await page.evaluate(() => {
      const row = [...document.querySelectorAll(".xterm-rows > div")].find((r) => /^err \d+/.test(r.textContent.trim()));
      return row ? [...row.querySelectorAll("span")].map((s) => s.className).join(" ") : null;
    });
    assert.match(red ?? "", /xterm-fg-9\b/, "a visible stderr line is red");
  });

  pageTest("stderr and exit code 3", {}, async (page) => {
    const program = [
      "import sys",
      "print('this goes to stdout', flush=True)",
      "print('this goes to stderr', file=sys.stderr, flush=True)",
      "sys.exit(3)",
    ].join("\n");
    await setWorkspace(page, "python", { "main.py": program, "requirements.txt": "" }, 120);
    await run(page);
    const st = await waitDone(page);
    const log = await getLog(page);
    assert.equal(st.status, "error", `status ${st.status}; log:\n${tail(log.map((c) => c.data).join(""))}`);
    assert.equal(st.exitCode, 3);
    assert.ok(log.every((c) => c.phase === "run"), "no install phase without a requirements.txt");
    assert.match(join(log, "stdout"), /this goes to stdout/);
    assert.match(join(log, "stderr"), /this goes to stderr/);
    assert.doesNotMatch(join(log, "stdout"), /this goes to stderr/);
    await assertExitShown(page, "error", 3);
    assert.equal(await page.textContent('[data-testid="exit-code"]'), "exit code 3");
    assert.doesNotMatch(await page.textContent('[data-testid="terminal-text"]'), /memory/i);
    // stderr is drawn in red on the terminal, stdout in the default colour.
    const colours = await page.evaluate(() => {
      const rows = [...document.querySelectorAll(".xterm-rows > div")];
      const find = (s) => rows.find((r) => r.textContent.includes(s));
      const cls = (row) => (row ? [...row.querySelectorAll("span")].map((s) => s.className).join(" ") : null);
      return { err: cls(find("this goes to stderr")), out: cls(find("this goes to stdout")) };
    });
    assert.match(colours.err ?? "", /xterm-fg-9\b/, "the stderr line is red");
    assert.doesNotMatch(colours.out ?? "", /xterm-fg-9\b/, "the stdout line is not red");
  });

  pageTest("a program that runs out of memory is told so in words", {}, async (page) => {
    // The playground's sandboxes have the default memory limit (512 MiB); this takes more.
    const program = ["print('allocating', flush=True)", "kept = []", "while True:", "    kept.append(b'x' * (8 << 20))"].join("\n");
    await setWorkspace(page, "python", { "main.py": program, "requirements.txt": "" }, 120);
    await run(page);
    const st = await waitDone(page);
    assert.equal(st.status, "error", `status ${st.status}`);
    assert.equal(st.exitCode, 137);
    await assertExitShown(page, "error", 137);
    const words = /the program was killed by the out-of-memory killer: the sandbox reached its memory limit of 512 MiB/i;
    assert.match(await page.textContent('[data-testid="exit-code"]'), /exit code 137 \(out of memory\)/);
    assert.match(await page.textContent('[data-testid="terminal-text"]'), /✘ Out of memory · exit code 137 · /);
    assert.match(await page.textContent('[data-testid="terminal-text"]'), words);
    assert.match(await page.textContent('[data-testid="message-text"]'), words);
    assert.equal(await page.isVisible('[data-testid="message"]'), true);
  });

  pageTest("extra files added with the plus tab", {}, async (page) => {
    await setWorkspace(page, "python", { "main.py": "print(open('data/greeting.txt').read().strip().upper())", "requirements.txt": "" }, 120);
    // The real UI: "+", a name, Enter, then type into the new tab.
    await page.click('[data-testid="add-file"]');
    await page.fill('[data-testid="new-file-name"]', "data/greeting.txt");
    await page.press('[data-testid="new-file-name"]', "Enter");
    await page.waitForSelector('[data-testid="tab-data/greeting.txt"].active');
    await page.click(".cm-content");
    await page.keyboard.type("hello from an extra file");
    await page.click('[data-testid="tab-main.py"]');
    assert.match(await page.textContent(".cm-content"), /greeting\.txt/);
    await run(page);
    const st = await waitDone(page);
    assert.equal(st.status, "success", `status ${st.status}; ${st.message}`);
    assert.match(join(await getLog(page), "stdout"), /HELLO FROM AN EXTRA FILE/);
    // A name the server would refuse is refused here, in words.
    await page.click('[data-testid="add-file"]');
    await page.fill('[data-testid="new-file-name"]', "../escape.txt");
    await page.press('[data-testid="new-file-name"]', "Enter");
    assert.match(await page.textContent('[data-testid="message"]'), /relative path/);
    await page.press('[data-testid="new-file-name"]', "Escape");
    await page.click('[data-testid="close-data/greeting.txt"]');
    assert.deepEqual(await page.evaluate(() => window.__sandstream.files()), ["main.py", "requirements.txt"]);
  });

  pageTest("typescript in two files, and a type error as tsc prints it", {}, async (page) => {
    const util = "export function shout(s: string): string {\n  return s.toUpperCase() + '!';\n}\n";
    const program = "import { shout } from './util';\nconsole.log(shout('two files'));\n";
    await setWorkspace(page, "typescript", { "main.ts": program, "package.json": "", "util.ts": util }, 120);
    await run(page);
    let st = await waitDone(page);
    assert.equal(st.status, "success", `status ${st.status}; ${join(await getLog(page), "stderr")}`);
    assert.equal(join(await getLog(page), "stdout"), "TWO FILES!\n");
    // The same program breaking util.ts's type: tsc's message, exit code 2, nothing run.
    await setWorkspace(page, "typescript", { "main.ts": program.replace("'two files'", "2"), "package.json": "", "util.ts": util }, 120);
    await run(page);
    st = await waitDone(page);
    await assertExitShown(page, "error", 2);
    const log = await getLog(page);
    assert.equal(join(log, "stderr"), "main.ts(2,19): error TS2345: Argument of type 'number' is not assignable to parameter of type 'string'.\n");
    assert.equal(join(log, "stdout"), "");
    assert.match(await page.textContent('[data-testid="terminal-text"]'), /main\.ts\(2,19\): error TS2345/);
  });

  pageTest("stdin tab", {}, async (page) => {
    const program = ["import sys", "first = input()", "rest = sys.stdin.read().split()", "print(f'Hello, {first} {\" \".join(rest)}!')"].join("\n");
    await setWorkspace(page, "python", { "main.py": program, "requirements.txt": "" }, 60);
    await page.click('[data-testid="tab-stdin"]');
    await page.click(".cm-content");
    await page.keyboard.type("Ada\nKing Lovelace\n");
    await run(page);
    const st = await waitDone(page);
    assert.equal(st.status, "success", `status ${st.status}; ${join(await getLog(page), "stderr")}`);
    assert.match(join(await getLog(page), "stdout"), /Hello, Ada King Lovelace!/);
  });

  pageTest("stop an infinite loop", {}, async (page) => {
    const program = ["import time", "i = 0", "while True:", "    i += 1", "    print(f'tick {i}', flush=True)", "    time.sleep(0.2)"].join("\n");
    await setWorkspace(page, "python", { "main.py": program, "requirements.txt": "" }, 300);
    await run(page);
    await waitForLog(page, (log) => log.map((c) => c.data).join("").includes("tick 5"), 120_000, "tick 5");
    assert.equal(await page.getAttribute('[data-testid="status"]', "data-status"), "running");
    assert.equal(await page.isEnabled('[data-testid="stop"]'), true);
    await page.click('[data-testid="stop"]');
    const st = await waitDone(page, 60_000);
    assert.equal(st.status, "cancelled");
    assert.equal(st.exitCode, 130);
    await assertExitShown(page, "cancelled", 130);
    assert.match(await page.textContent('[data-testid="terminal-text"]'), /Stopped/);
    assert.equal(await page.isEnabled('[data-testid="run"]'), true, "Run is available again");
  });

  pageTest("infinite loop stopped by its timeout", {}, async (page) => {
    const program = ["import time", "i = 0", "while True:", "    i += 1", "    print(f'tick {i}', flush=True)", "    time.sleep(0.5)"].join("\n");
    await setWorkspace(page, "python", { "main.py": program, "requirements.txt": "" }, 5);
    const t0 = Date.now();
    await run(page);
    const st = await waitDone(page, 120_000);
    assert.equal(st.status, "timeout", `status ${st.status}`);
    assert.equal(st.exitCode, 124);
    assert.ok(Date.now() - t0 >= 4500, "ran until the 5 s timeout");
    await assertExitShown(page, "timeout", 124);
    assert.match(await page.textContent('[data-testid="terminal-text"]'), /Timed out/);
    assert.match(await page.textContent('[data-testid="message"]'), /timeout/i);
    assert.match(join(await getLog(page), "stdout"), /tick 3/);
  });

  pageTest("connection dropped mid-run loses nothing", {}, async (page) => {
    const N = 100;
    const program = ["import time", `for i in range(1, ${N + 1}):`, "    print(i, flush=True)", "    time.sleep(0.1)"].join("\n");
    await setWorkspace(page, "python", { "main.py": program, "requirements.txt": "" }, 300);
    await run(page);
    await waitForLog(page, (log) => numbers(log).length >= 10, 120_000, "the first 10 numbers");

    // Drop the network: offline for the page, and the live socket closed as a dropped
    // link would close it (Chromium's offline mode leaves open websockets alone).
    const cdp = await page.context().newCDPSession(page);
    await cdp.send("Network.enable");
    await cdp.send("Network.emulateNetworkConditions", { offline: true, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await context.setOffline(true);
    await page.evaluate(() => window.__sandstream.dropConnection());
    await page.waitForSelector('[data-testid="connection"][data-state="reconnecting"]', { timeout: 10_000 });
    const atDrop = numbers(await getLog(page)).length;
    await sleep(4000);
    const whileOffline = numbers(await getLog(page)).length;
    assert.equal(await page.getAttribute('[data-testid="connection"]', "data-state"), "reconnecting", "still offline");
    assert.ok(whileOffline - atDrop <= 2, `nothing arrives while offline (${atDrop} → ${whileOffline})`);
    await screenshot(page, "connection dropped mid-run (offline)");

    await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await context.setOffline(false);
    await page.waitForSelector('[data-testid="connection"][data-state="connected"]', { timeout: 30_000 });
    const st = await waitDone(page, 120_000);
    const log = await getLog(page);
    assert.equal(st.status, "success", `status ${st.status}`);
    assert.equal(st.exitCode, 0);
    const got = numbers(log);
    assert.deepEqual(got, Array.from({ length: N }, (_, i) => i + 1), "every number once, in order");
    const seqs = log.map((c) => c.seq);
    assert.ok(seqs.every((s, i) => i === 0 || s > seqs[i - 1]), "seq strictly increasing (no duplicate chunk)");
    const stats = await page.evaluate(() => ({ ...window.__sandstream.stats }));
    console.log(`# reconnect stats: ${JSON.stringify(stats)}; ${atDrop} numbers before the drop`);
    assert.ok(stats.reconnects >= 1, "socket.io reconnected");
    assert.ok(stats.resumes >= 2, "resume-execution was sent again after the reconnect");
    assert.ok(atDrop < N, "the drop happened while the program was still printing");

    // A reload shows the same run again, complete, from the server's log.
    await page.reload();
    await page.waitForFunction((id) => document.querySelector('[data-testid="status"]').dataset.executionId === id, st.executionId, { timeout: 30_000 });
    const again = await waitDone(page, 60_000);
    assert.equal(again.status, "success");
    assert.equal(again.exitCode, 0);
    assert.deepEqual(numbers(await getLog(page)), Array.from({ length: N }, (_, i) => i + 1), "the reloaded page shows every number once");
    const reloadStats = await page.evaluate(() => ({ ...window.__sandstream.stats }));
    console.log(`# after reload: ${JSON.stringify(reloadStats)} (restChunks > 0: chunks the page filled in over REST)`);
  });

  pageTest("reuses the sandbox and starts a fresh one", {}, async (page) => {
    await setWorkspace(page, "python", { "main.py": "import socket\nprint('host', socket.gethostname())", "requirements.txt": "" }, 120);
    await run(page);
    let st = await waitDone(page);
    assert.equal(st.status, "success");
    const first = st.containerId;
    assert.match(first, /\S/);
    await run(page);
    st = await waitDone(page);
    assert.equal(st.status, "success");
    assert.equal(st.containerId, first, "the second run reuses the sandbox");

    await page.click('[data-testid="new-sandbox"]');
    await page.waitForFunction((old) => {
      const id = document.querySelector('[data-testid="sandbox-id"]').dataset.containerId;
      return id && id !== old;
    }, first, { timeout: 120_000 });
    await run(page);
    st = await waitDone(page);
    assert.equal(st.status, "success");
    assert.notEqual(st.containerId, first, "a fresh sandbox after New sandbox");

    // A sandbox that is gone (here: an id the server never knew) is replaced by a fresh
    // one: when the exec request answers 404 …
    await page.evaluate(() => window.__sandstream.setContainerId("sb-0000000000"));
    await run(page);
    st = await waitDone(page);
    assert.equal(st.status, "success", `status ${st.status}: ${st.message}`);
    assert.notEqual(st.containerId, "sb-0000000000");
    assert.match(await page.textContent('[data-testid="message"]'), /sb-0000000000 is gone/);
    // … and when a remembered sandbox turns out to be gone on page load.
    await page.evaluate(() => localStorage.setItem("sandstream.containerId", "sb-0000000000"));
    await page.reload();
    await page.waitForSelector('[data-testid="connection"][data-state="connected"]', { timeout: 60_000 });
    await run(page);
    st = await waitDone(page);
    assert.equal(st.status, "success", `status ${st.status}: ${st.message}`);
    assert.notEqual(st.containerId, "sb-0000000000");
  });

  pageTest("errors are shown in words", {}, async (page) => {
    // Too large (413): more code than --max-code-bytes (1 MiB by default).
    const big = "# padding\n" + ("x = 1  # " + "a".repeat(90) + "\n").repeat(12_000);
    await setWorkspace(page, "python", { "main.py": big, "requirements.txt": "" }, 60);
    await run(page);
    let st = await waitDone(page, 60_000);
    assert.equal(st.status, "failed");
    const msg413 = await page.textContent('[data-testid="message"]');
    assert.match(msg413, /too large/i, msg413);
    await screenshot(page, "errors are shown in words (too large)");

    // Server unreachable: the browser is offline.
    await setWorkspace(page, "python", { "main.py": "print('hi')", "requirements.txt": "" }, 60);
    await context.setOffline(true);
    try {
      await run(page);
      st = await waitDone(page, 60_000);
    } finally {
      await context.setOffline(false);
    }
    assert.equal(st.status, "failed");
    assert.match(await page.textContent('[data-testid="message"]'), /Cannot reach the Sandstream server/);
    await screenshot(page, "errors are shown in words (unreachable)");

    // And it works again once the server is reachable.
    await page.waitForSelector('[data-testid="connection"][data-state="connected"]', { timeout: 30_000 });
    await run(page);
    st = await waitDone(page);
    assert.equal(st.status, "success");
  });

  pageTest("narrow window", { viewport: { width: 390, height: 844 } }, async (page) => {
    await setWorkspace(page, "typescript", { "main.ts": "const n: number = 6 * 7;\nconsole.log(`answer: ${n}`);\n", "package.json": "" }, 120);
    for (const id of ["run", "stop", "new-sandbox", "language", "timeout", "status"]) {
      assert.ok(await page.isVisible(`[data-testid="${id}"]`), `${id} is visible`);
    }
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal scrolling (${overflow}px too wide)`);
    // The real UI path: keyboard shortcut from the editor.
    await page.click(".cm-content");
    await page.keyboard.press("Control+Enter");
    const st = await waitDone(page);
    assert.equal(st.status, "success", `status ${st.status}`);
    assert.match(join(await getLog(page), "stdout"), /answer: 42/);
  });
});

// ---------------------------------------------------------------------------------
// helpers

async function setWorkspace(page, language, files, timeoutSec) {
  await page.evaluate(
    ({ language, files, timeoutSec }) => {
      const s = window.__sandstream;
      s.setLanguage(language);
      for (const name of s.files().slice(2)) s.removeFile(name);
      for (const [name, content] of Object.entries(files)) s.setFile(name, content);
      s.setStdin("");
      s.setTimeoutSeconds(timeoutSec);
      s.selectTab(s.files()[0]);
    },
    { language, files, timeoutSec },
  );
}

async function run(page) {
  await page.waitForSelector('[data-testid="run"]:not([disabled])');
  const before = Number((await page.getAttribute('[data-testid="status"]', "data-run")) || 0);
  await page.click('[data-testid="run"]');
  await page.waitForFunction((n) => Number(document.querySelector('[data-testid="status"]').dataset.run || 0) > n, before);
}

async function waitDone(page, timeout = RUN_TIMEOUT) {
  await page.waitForFunction(
    (done) => {
      const s = document.querySelector('[data-testid="status"]').dataset.status;
      return done.includes(s);
    },
    DONE,
    { timeout, polling: 250 },
  );
  return page.evaluate(() => window.__sandstream.state());
}

async function waitForLog(page, pred, timeout, what) {
  const t0 = Date.now();
  for (;;) {
    const log = await getLog(page);
    if (pred(log)) return log;
    const st = await page.getAttribute('[data-testid="status"]', "data-status");
    if (DONE.includes(st)) throw new Error(`the run ended (${st}) before ${what}; log:\n${tail(log.map((c) => c.data).join(""))}`);
    if (Date.now() - t0 > timeout) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

function getLog(page) {
  return page.evaluate(() => window.__sandstreamLog.map((c) => ({ ...c })));
}

async function phase(page) {
  return page.getAttribute('[data-testid="status"]', "data-phase");
}

async function assertExitShown(page, status, code) {
  assert.equal(await page.getAttribute('[data-testid="status"]', "data-status"), status);
  assert.equal(await page.getAttribute('[data-testid="status"]', "data-exit-code"), String(code));
  assert.match(await page.textContent('[data-testid="exit-code"]'), new RegExp(`exit code ${code}\\b`));
  assert.match(await page.textContent('[data-testid="duration"]'), /\d/);
}

function join(log, type) {
  return log
    .filter((c) => c.type === type)
    .map((c) => c.data)
    .join("");
}

function numbers(log) {
  return join(log, "stdout")
    .split("\n")
    .filter((l) => /^\d+$/.test(l.trim()))
    .map(Number);
}

function tail(s, n = 3000) {
  return s.length > n ? "…" + s.slice(-n) : s;
}
