// The playground's Terminal tab, in headless Chromium against the real server: a shell
// opens in the sandbox, keystrokes typed into the xterm reach it (`echo $((6*7))` prints
// 42), the shell is told the xterm's size when the window grows, and after a page
// reload the same shell is shown again with its earlier output, once, and still answers;
// an exited shell offers a new one, and a remembered terminal that is gone is replaced.
// Run by `npm test`.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { checkPrerequisites, launchBrowser, screenshot, startServer } from "./harness.mjs";

let server;
let browser;
let context;

/** The Terminal tab's mirror, without carriage returns (the pty ends lines with \r\n). */
const mirror = (page) => page.$eval('[data-testid="shell-text"]', (el) => el.textContent.replace(/\r/g, ""));
const count = (text, s) => text.split(s).length - 1;

/** Waits until the Terminal tab's mirror matches `re`. */
async function waitMirror(page, re, timeout = 60_000) {
  await page.waitForFunction(
    ([src, flags]) => new RegExp(src, flags).test(document.querySelector('[data-testid="shell-text"]').textContent.replace(/\r/g, "")),
    [re.source, re.flags],
    { timeout },
  );
}

/** Types `line` and Enter into the xterm, as a user does. */
async function typeLine(page, line) {
  await page.click('[data-testid="shell"] .xterm');
  await page.keyboard.type(line);
  await page.keyboard.press("Enter");
}

describe("Sandstream playground: the Terminal tab (real server, headless Chromium)", { timeout: 30 * 60_000 }, () => {
  before(
    async () => {
      checkPrerequisites();
      server = await startServer({ logName: "server-terminal.log" });
      console.log(`# server at ${server.baseUrl} (log: ${server.logPath})`);
      browser = await launchBrowser();
      context = await browser.newContext({ viewport: { width: 1366, height: 820 } });
      const page = await context.newPage();
      const res = await page.goto(server.loginUrl, { waitUntil: "load" });
      assert.ok(res && res.status() < 400, `login URL answered ${res?.status()}`);
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

  test("type into the shell, read the answer; a reload shows the same shell again", { timeout: 10 * 60_000 }, async () => {
    const page = await context.newPage();
    const pageErrors = [];
    page.on("pageerror", (err) => pageErrors.push(String(err)));
    const foreign = [];
    page.on("request", (req) => {
      const url = req.url();
      if (!url.startsWith(server.baseUrl + "/") && !/^(data|blob|about):/.test(url)) foreign.push(url);
    });
    try {
      await page.goto(server.baseUrl + "/", { waitUntil: "load" });
      await page.waitForSelector('[data-testid="output-tab-terminal"]');
      // The run log is shown first; the Terminal tab opens a shell (and a sandbox, as there is none yet).
      assert.equal(await page.isVisible('[data-testid="terminal"]'), true);
      await page.click('[data-testid="output-tab-terminal"]');
      assert.equal(await page.isVisible('[data-testid="terminal"]'), false);
      await page.waitForSelector('[data-testid="shell-state"][data-state="live"]', { timeout: 5 * 60_000 });
      const sandboxId = await page.evaluate(() => window.__sandstream.state().containerId);
      assert.match(sandboxId ?? "", /^sb-/);
      const tid = await page.evaluate(() => window.__sandstream.terminal.id());
      assert.ok(tid, "the terminal has an id");

      await typeLine(page, "echo $((6*7))");
      await waitMirror(page, /echo \$\(\(6\*7\)\)\n42\n/);
      // The xterm fits its pane, and the shell was told that size.
      await typeLine(page, "echo cols=$(tput cols)");
      await waitMirror(page, /\ncols=\d+\n/);
      const cols = Number(/\ncols=(\d+)\n/.exec(await mirror(page))[1]);
      const size = await page.evaluate(() => window.__sandstream.terminal.size());
      assert.equal(cols, size.cols, "the shell sees the xterm's width");
      assert.notEqual(cols, 80, "the fit addon's width, not the default 80");
      await screenshot(page, "terminal-42");
      const before = await mirror(page);
      const bytes = await page.evaluate(() => window.__sandstream.terminal.bytes());

      await page.reload({ waitUntil: "load" });
      // The tab chosen is kept; the same shell is shown again, from its first byte.
      await page.waitForSelector('[data-testid="shell-state"][data-state="live"]', { timeout: 60_000 });
      assert.equal(await page.evaluate(() => window.__sandstream.terminal.id()), tid);
      await page.waitForFunction((n) => window.__sandstream.terminal.bytes() >= n, bytes, { timeout: 60_000 });
      const replayed = await mirror(page);
      assert.ok(replayed.startsWith(before), `the replay shows what was there before:\n${JSON.stringify(replayed)}`);
      assert.equal(count(replayed, "\n42\n"), 1, `42 once: ${JSON.stringify(replayed)}`);

      // Still the same shell: it answers; a wider window widens the xterm, and the shell is told.
      await page.setViewportSize({ width: 1900, height: 900 });
      await page.waitForFunction((c) => window.__sandstream.terminal.size().cols > c, cols, { timeout: 30_000 });
      const wider = (await page.evaluate(() => window.__sandstream.terminal.size())).cols;
      await typeLine(page, "echo again-$((7*8)) $(tput cols)");
      await waitMirror(page, new RegExp(`\\nagain-56 ${wider}\\n`));
      await screenshot(page, "terminal-after-reload");

      // Its exit is shown, with a way to a new shell.
      await typeLine(page, "exit 4");
      await page.waitForSelector('[data-testid="shell-state"][data-state="exited"]', { timeout: 60_000 });
      await waitMirror(page, /the shell ended with exit code 4/);
      await page.click('[data-testid="shell-new"]');
      await page.waitForSelector('[data-testid="shell-state"][data-state="live"]', { timeout: 60_000 });
      assert.notEqual(await page.evaluate(() => window.__sandstream.terminal.id()), tid);
      assert.doesNotMatch(await mirror(page), /42/, "a new shell starts with an empty screen");
      await typeLine(page, "echo new-$((2+3))");
      await waitMirror(page, /\nnew-5\n/);

      // A remembered terminal the sandbox no longer has: a new shell opens instead.
      await page.evaluate((sb) => sessionStorage.setItem(`sandstream.terminal.${sb}`, "no-such-terminal"), sandboxId);
      await page.reload({ waitUntil: "load" });
      await page.waitForSelector('[data-testid="shell-state"][data-state="live"]', { timeout: 60_000 });
      const replaced = await page.evaluate(() => window.__sandstream.terminal.id());
      assert.ok(replaced && replaced !== "no-such-terminal", String(replaced));
      await typeLine(page, "echo gone-$((1+2))");
      await waitMirror(page, /\ngone-3\n/);

      // Run shows the run log again; the program runs in the same sandbox.
      await page.click('[data-testid="run"]');
      assert.equal(await page.isVisible('[data-testid="terminal"]'), true);
      assert.equal(await page.isVisible('[data-testid="shell"]'), false);
      await page.waitForSelector('[data-testid="status"][data-status="success"]', { timeout: 5 * 60_000 });
      assert.equal(await page.evaluate(() => window.__sandstream.state().containerId), sandboxId);
      assert.deepEqual(pageErrors, []);
      assert.deepEqual(foreign, [], "the page asks nothing of other hosts");
    } catch (err) {
      await screenshot(page, "terminal-failure").catch(() => {});
      throw err;
    } finally {
      await page.close();
    }
  });
});
