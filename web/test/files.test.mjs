// The playground's file tree, in headless Chromium against the real server: a file a
// program wrote shows in the tree, opens in the editor, is edited and saved back
// (Ctrl+S), and the next run prints what was saved; files dropped on the tree (a
// synthetic drop with a DataTransfer) land in the folder dropped on, or the home
// directory; a download's bytes are the file's; a binary file is not opened; a full disk,
// a file the sandbox user may not read and a missing folder are told in words. Run by
// `npm test`.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { checkPrerequisites, launchBrowser, screenshot, startServer } from "./harness.mjs";

const RUN_TIMEOUT = 10 * 60_000;
const DONE = ["success", "error", "timeout", "cancelled", "failed"];
const HOME = "/home/user";

let server;
let browser;
let context;
let adminKey;

/** The file's bytes as the REST API serves them (with the admin key, not the page). */
async function restRead(sandboxId, filePath) {
  const url = `${server.baseUrl}/api/v1/sandboxes/${encodeURIComponent(sandboxId)}/files?path=${encodeURIComponent(filePath)}`;
  const res = await fetch(url, { headers: { authorization: `Bearer ${adminKey}` }, signal: AbortSignal.timeout(60_000) });
  assert.equal(res.status, 200, `GET ${filePath}: ${res.status} ${await res.clone().text()}`);
  return Buffer.from(await res.arrayBuffer());
}

/** Writes a file through the REST API (with the admin key), as another client would. */
async function restWrite(sandboxId, filePath, body) {
  const url = `${server.baseUrl}/api/v1/sandboxes/${encodeURIComponent(sandboxId)}/files?path=${encodeURIComponent(filePath)}`;
  const res = await fetch(url, { method: "PUT", body, headers: { authorization: `Bearer ${adminKey}` }, signal: AbortSignal.timeout(60_000) });
  assert.ok(res.status === 201 || res.status === 200, `PUT ${filePath}: ${res.status} ${await res.text()}`);
}

async function restRemove(sandboxId, filePath) {
  const url = `${server.baseUrl}/api/v1/sandboxes/${encodeURIComponent(sandboxId)}/files?path=${encodeURIComponent(filePath)}&recursive=true`;
  const res = await fetch(url, { method: "DELETE", headers: { authorization: `Bearer ${adminKey}` }, signal: AbortSignal.timeout(60_000) });
  assert.equal(res.status, 204, `DELETE ${filePath}: ${res.status} ${await res.text()}`);
}

const row = (p) => `[data-testid="tree-item"][data-path="${p}"]`;

describe("Sandstream playground: the sandbox's files (real server, headless Chromium)", { timeout: 40 * 60_000 }, () => {
  before(
    async () => {
      checkPrerequisites();
      server = await startServer({ logName: "server-files.log" });
      console.log(`# server at ${server.baseUrl} (log: ${server.logPath})`);
      adminKey = fs.readFileSync(path.join(server.dataDir, "admin-key"), "utf8").trim();
      browser = await launchBrowser();
      context = await browser.newContext({ viewport: { width: 1366, height: 820 }, acceptDownloads: true });
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

  test("write, list, open, edit, save, run; upload by drop; download", { timeout: RUN_TIMEOUT * 3 }, async () => {
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
      await page.waitForSelector('[data-testid="connection"][data-state="connected"]', { timeout: 60_000 });
      // Shown by default in a wide window.
      assert.equal(await page.getAttribute('[data-testid="files-toggle"]', "aria-pressed"), "true");
      assert.ok(await page.isVisible('[data-testid="file-tree"]'));
      assert.match(await page.textContent('[data-testid="files-note"]'), /No sandbox yet/);

      // A program writes greet.py (once) and a folder, then imports greet.
      const program = [
        "import os",
        "os.makedirs('data', exist_ok=True)",
        "if not os.path.exists('greet.py'):",
        "    open('greet.py', 'w').write('print(\"hello from greet\")\\n')",
        "import greet",
      ].join("\n");
      await page.evaluate((p) => {
        window.__sandstream.setLanguage("python");
        window.__sandstream.setFile("main.py", p);
        window.__sandstream.setFile("requirements.txt", "");
        window.__sandstream.setTimeoutSeconds(120);
      }, program);
      let st = await runAndWait(page);
      assert.equal(st.status, "success", `status ${st.status}: ${st.message}\n${await stdout(page)}`);
      assert.match(await stdout(page), /^hello from greet$/m);
      const sandboxId = st.containerId;

      // The tree lists it (after the run, without a reload), with the folder.
      await page.waitForSelector(row(`${HOME}/greet.py`), { timeout: 30_000 });
      await page.waitForSelector(`${row(`${HOME}/data`)}[data-type="dir"]`, { timeout: 30_000 });
      assert.ok((await page.textContent(row(`${HOME}/greet.py`))).includes("26 B"), "the size is shown");

      // The tree watches the directory: with the watch live it does not poll, so a file
      // another client writes (here through REST) shows only through the watch, in an
      // opened folder too, and goes when removed.
      await page.waitForSelector('[data-testid="file-tree"][data-watch="live"]', { timeout: 30_000 });
      await restWrite(sandboxId, `${HOME}/from-elsewhere.txt`, "written by another client\n");
      await page.waitForSelector(row(`${HOME}/from-elsewhere.txt`), { timeout: 30_000 });
      await page.click(row(`${HOME}/data`));
      await page.waitForSelector(`${row(`${HOME}/data`)}[aria-expanded="true"]`, { timeout: 30_000 });
      await restWrite(sandboxId, `${HOME}/data/deep.txt`, "in a folder\n");
      await page.waitForSelector(row(`${HOME}/data/deep.txt`), { timeout: 30_000 });
      await restRemove(sandboxId, `${HOME}/from-elsewhere.txt`);
      await restRemove(sandboxId, `${HOME}/data/deep.txt`);
      await page.waitForSelector(row(`${HOME}/from-elsewhere.txt`), { state: "detached", timeout: 30_000 });
      await page.waitForSelector(row(`${HOME}/data/deep.txt`), { state: "detached", timeout: 30_000 });
      assert.equal(await page.getAttribute('[data-testid="file-tree"]', "data-watch"), "live");
      await page.click(row(`${HOME}/data`));

      // Click: it opens in the editor, in its own tab, with the bar above the editor.
      await page.click(row(`${HOME}/greet.py`));
      const tab = `[data-testid="sandbox-file-tab"][data-path="${HOME}/greet.py"]`;
      await page.waitForSelector(`${tab}[aria-selected="true"]`, { timeout: 30_000 });
      assert.equal(await page.textContent('[data-testid="file-path"]'), `${HOME}/greet.py`);
      assert.equal(await page.getAttribute('[data-testid="file-state"]', "data-state"), "saved");
      assert.equal(await editorText(page), 'print("hello from greet")\n');
      assert.equal(await page.getAttribute(`${row(`${HOME}/greet.py`)}`, "aria-selected"), "true", "the tree marks the open file");

      // Edit (typed into the editor), then Ctrl+S.
      await page.click(".cm-content");
      await page.keyboard.press("Control+A");
      await page.keyboard.insertText('print("edited in the playground, then saved")\n');
      await page.waitForSelector('[data-testid="file-state"][data-state="dirty"]');
      await page.keyboard.press("Control+S");
      await page.waitForSelector('[data-testid="file-state"][data-state="saved"]', { timeout: 30_000 });
      assert.equal((await restRead(sandboxId, `${HOME}/greet.py`)).toString("utf8"), 'print("edited in the playground, then saved")\n');

      // The next run imports the saved file.
      await page.evaluate(() => window.__sandstream.selectTab("main.py"));
      st = await runAndWait(page);
      assert.equal(st.status, "success", `status ${st.status}: ${st.message}`);
      assert.equal(st.containerId, sandboxId);
      assert.match(await stdout(page), /^edited in the playground, then saved$/m);
      assert.doesNotMatch(await stdout(page), /hello from greet/);

      // The Save button too: one more edit, saved with the button.
      await page.click(tab);
      await page.click(".cm-content");
      await page.keyboard.press("Control+End");
      await page.keyboard.insertText('print("second line")\n');
      await page.click('[data-testid="file-save"]');
      await page.waitForSelector('[data-testid="file-state"][data-state="saved"]', { timeout: 30_000 });
      assert.equal((await restRead(sandboxId, `${HOME}/greet.py`)).toString("utf8"), 'print("edited in the playground, then saved")\nprint("second line")\n');

      // Upload: two files dropped on the data folder's row go into it …
      const text = "uploaded by a drop\nline 2 ✓\n";
      const binary = Array.from({ length: 3000 }, (_, i) => (i * 7 + 3) % 256); // has NUL bytes
      await drop(page, row(`${HOME}/data`), [
        { name: "dropped.txt", bytes: [...Buffer.from(text)] },
        { name: "blob.bin", bytes: binary },
      ]);
      await page.waitForSelector(row(`${HOME}/data/dropped.txt`), { timeout: 60_000 });
      await page.waitForSelector(row(`${HOME}/data/blob.bin`), { timeout: 60_000 });
      assert.match(await page.textContent('[data-testid="message"]'), /Uploaded 2 files to \/home\/user\/data\./);
      assert.equal((await restRead(sandboxId, `${HOME}/data/dropped.txt`)).toString("utf8"), text);
      assert.deepEqual([...(await restRead(sandboxId, `${HOME}/data/blob.bin`))], binary);
      // … and a file dropped on the tree's free space goes into the home directory.
      await drop(page, '[data-testid="file-tree"]', [{ name: "top.txt", bytes: [...Buffer.from("top level\n")] }]);
      await page.waitForSelector(row(`${HOME}/top.txt`), { timeout: 60_000 });
      assert.equal((await restRead(sandboxId, `${HOME}/top.txt`)).toString("utf8"), "top level\n");
      // A program sees the uploads.
      await page.evaluate(() => window.__sandstream.setFile("main.py", "print(open('data/dropped.txt').read().splitlines()[1])"));
      st = await runAndWait(page);
      assert.equal(st.status, "success");
      assert.match(await stdout(page), /^line 2 ✓$/m);

      // Download: the link's bytes are the file's.
      await page.hover(row(`${HOME}/data/blob.bin`));
      const [download] = await Promise.all([page.waitForEvent("download", { timeout: 60_000 }), page.click(`${row(`${HOME}/data/blob.bin`)} [data-testid="tree-download"]`)]);
      assert.equal(download.suggestedFilename(), "blob.bin");
      assert.deepEqual([...fs.readFileSync(await download.path())], binary);
      // The text file from the bar above the editor, once it is open.
      await page.click(row(`${HOME}/data/dropped.txt`));
      await page.waitForSelector(`[data-testid="sandbox-file-tab"][data-path="${HOME}/data/dropped.txt"][aria-selected="true"]`, { timeout: 30_000 });
      assert.equal(await editorText(page), text);
      const [download2] = await Promise.all([page.waitForEvent("download", { timeout: 60_000 }), page.click('[data-testid="file-download"]')]);
      assert.equal(fs.readFileSync(await download2.path(), "utf8"), text);

      // A binary file is not opened in the editor: it is offered as a download.
      await page.click(row(`${HOME}/data/blob.bin`));
      await page.waitForFunction(() => /not a text file/.test(document.querySelector('[data-testid="message"]').textContent), null, { timeout: 30_000 });
      assert.equal(await page.$(`[data-testid="sandbox-file-tab"][data-path="${HOME}/data/blob.bin"]`), null);
      assert.equal(await page.textContent('[data-testid="message-action"]'), "Download");
      await screenshot(page, "file tree");

      // A full disk (507) in words: a sandbox with a 16 MiB disk, picked in the
      // Sandboxes menu, and a 64 MiB file dropped on its tree.
      const small = await rest("POST", "/api/v1/sandboxes", { diskMb: 16 });
      assert.equal(small.status, 201, small.text);
      await page.click('[data-testid="sandboxes-toggle"]');
      await page.click(`[data-testid="sandbox-item"][data-sandbox-id="${small.body.id}"]`);
      await page.waitForSelector(`[data-testid="sandbox-id"][data-container-id="${small.body.id}"]`);
      assert.deepEqual(await page.evaluate(() => window.__sandstream.fileTree.openPaths()), [], "the other sandbox's files are closed");
      await page.waitForSelector('[data-testid="file-tree"][data-loaded="true"]', { timeout: 30_000 });
      await drop(page, '[data-testid="file-tree"]', [{ name: "big.bin", size: 64 << 20 }]);
      await page.waitForFunction(() => /Could not upload big\.bin to \/home\/user: the sandbox's disk is full/.test(document.querySelector('[data-testid="message"]').textContent), null, {
        timeout: 120_000,
      });

      // Errors in words: a file the sandbox's user may not read.
      await page.fill('[data-testid="files-root"]', "/etc");
      await page.press('[data-testid="files-root"]', "Enter");
      await page.waitForSelector(row("/etc/shadow"), { timeout: 30_000 });
      await page.click(row("/etc/shadow"));
      await page.waitForFunction(() => /Could not open \/etc\/shadow: permission denied/.test(document.querySelector('[data-testid="message"]').textContent), null, {
        timeout: 30_000,
      });
      // A directory that does not exist.
      await page.fill('[data-testid="files-root"]', "/no/such/dir");
      await page.press('[data-testid="files-root"]', "Enter");
      await page.waitForFunction(() => /Cannot list \/no\/such\/dir: not found/.test(document.querySelector('[data-testid="files-note"]').textContent), null, { timeout: 30_000 });

      assert.deepEqual(foreign, [], "requests to anything but the Sandstream server");
      assert.deepEqual(pageErrors, [], "the page threw");
    } finally {
      await screenshot(page, "file tree (end)").catch(() => {});
      await page.close().catch(() => {});
    }
  });
});

/** A REST call with the admin key. */
async function rest(method, route, body) {
  const res = await fetch(server.baseUrl + route, {
    method,
    headers: { authorization: `Bearer ${adminKey}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(180_000),
  });
  const text = await res.text();
  return { status: res.status, text, body: text ? JSON.parse(text) : null };
}

/** Dispatches dragenter, dragover and drop on `selector` with a DataTransfer of `files`. */
async function drop(page, selector, files) {
  await page.evaluate(
    ({ selector, files }) => {
      const dt = new DataTransfer();
      for (const f of files) dt.items.add(new File([f.bytes ? new Uint8Array(f.bytes) : new Uint8Array(f.size)], f.name));
      const target = document.querySelector(selector);
      if (!target) throw new Error(`nothing matches ${selector}`);
      for (const type of ["dragenter", "dragover", "drop"]) target.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
    },
    { selector, files },
  );
}

async function runAndWait(page) {
  const before = Number((await page.getAttribute('[data-testid="status"]', "data-run")) || 0);
  await page.click('[data-testid="run"]');
  await page.waitForFunction(
    ({ before, done }) => {
      const s = document.querySelector('[data-testid="status"]');
      return Number(s.dataset.run || 0) > before && done.includes(s.dataset.status);
    },
    { before, done: DONE },
    { timeout: RUN_TIMEOUT },
  );
  return page.evaluate(() => window.__sandstream.state());
}

function stdout(page) {
  return page.evaluate(() => window.__sandstreamLog.filter((c) => c.type === "stdout").map((c) => c.data).join(""));
}

/** The editor's text of the sandbox file shown. */
function editorText(page) {
  return page.evaluate(() => window.__sandstream.fileTree.text(document.querySelector('[data-testid="file-path"]').textContent));
}
