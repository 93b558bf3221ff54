// Starts the real Sandstream server (`sandstream up`) and headless Chromium for the
// browser tests. No fakes: the page talks to the real server, which runs the programs
// in real sandboxes.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const WEB_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const REPO = path.resolve(WEB_DIR, "..");
export const RESULTS = path.join(WEB_DIR, "test-results");
export const SCREENSHOTS = path.join(RESULTS, "screenshots");
export const BIN = process.env.SANDSTREAM_BIN || path.join(REPO, "target", "debug", "sandstream");
export const DIST = process.env.SANDSTREAM_WEB_DIR || path.join(WEB_DIR, "dist");
export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
/** The first start builds the default template (~10 min), so the wait is long. */
export const START_TIMEOUT_MS = Number(process.env.SANDSTREAM_START_TIMEOUT_MS || 20 * 60_000);

export function checkPrerequisites() {
  const problems = [];
  if (!fs.existsSync(BIN)) {
    problems.push(
      `Sandstream binary not found at ${BIN}. Build it (cargo build -p sandstream, from ${REPO}) or point SANDSTREAM_BIN at it.`,
    );
  } else {
    try {
      fs.accessSync(BIN, fs.constants.X_OK);
    } catch {
      problems.push(`${BIN} is not executable.`);
    }
  }
  if (!fs.existsSync(path.join(DIST, "index.html"))) {
    problems.push(`The page is not built: ${DIST}/index.html is missing. Run \`npm run build\` in web/ first.`);
  }
  if (!fs.existsSync(CHROMIUM)) {
    problems.push(`Chromium not found at ${CHROMIUM}. Install it (apt-get install -y chromium chromium-driver) or set CHROMIUM_PATH.`);
  }
  if (problems.length) throw new Error("Cannot run the browser tests:\n  - " + problems.join("\n  - "));
}

/**
 * Starts `sandstream up --listen 127.0.0.1:0 --data-dir <tmp>` and waits for its
 * "Sandstream ready at http://…" line and its one-time login URL. Its output goes to
 * test-results/`logName` (one per test file: node --test may run files at once).
 */
export async function startServer({ logName = "server.log" } = {}) {
  fs.mkdirSync(RESULTS, { recursive: true });
  const dataDir = process.env.SANDSTREAM_TEST_DATA_DIR || fs.mkdtempSync(path.join(os.tmpdir(), "sandstream-web-test-"));
  const ownDataDir = !process.env.SANDSTREAM_TEST_DATA_DIR;
  const logPath = path.join(RESULTS, logName);
  const log = fs.createWriteStream(logPath);
  const child = spawn(BIN, ["up", "--listen", "127.0.0.1:0", "--data-dir", dataDir], {
    cwd: REPO,
    env: { ...process.env, SANDSTREAM_WEB_DIR: DIST, NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true, // its own process group, so everything it started can be stopped
  });
  let tail = "";
  let baseUrl = null;
  let loginUrl = null;
  let exited = null;
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`sandstream up did not get ready within ${START_TIMEOUT_MS / 1000} s; see ${logPath}\n${tail}`)),
      START_TIMEOUT_MS,
    );
    timer.unref();
    const onLine = (line) => {
      const ready = line.match(/Sandstream ready at (https?:\/\/[^\s"']+)/);
      if (ready) baseUrl = ready[1].replace(/\/+$/, "");
      const login = line.match(/(https?:\/\/[^\s"']+\/\?token=[^\s"']+)/);
      if (login && !loginUrl) loginUrl = login[1];
      if (baseUrl && loginUrl) {
        clearTimeout(timer);
        resolve();
      }
    };
    for (const [name, stream] of [
      ["out", child.stdout],
      ["err", child.stderr],
    ]) {
      let buf = "";
      stream.setEncoding("utf8");
      stream.on("data", (d) => {
        log.write(d);
        tail = (tail + d).slice(-4000);
        buf += d;
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (name === "out" || !loginUrl || !baseUrl) onLine(line);
        }
      });
    }
    child.on("exit", (code, signal) => {
      exited = { code, signal };
      clearTimeout(timer);
      reject(new Error(`sandstream up exited (code ${code}, signal ${signal}) before it was ready; see ${logPath}\n${tail}`));
    });
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${BIN}: ${err.message}`));
    });
  });
  let onExit;
  const exitedPromise = new Promise((r) => (onExit = r));
  child.on("exit", (code, signal) => onExit({ code, signal }));
  const server = {
    child,
    /** Resolves when the server process exits (at any time). */
    exited: exitedPromise,
    get tail() {
      return tail;
    },
    dataDir,
    logPath,
    get baseUrl() {
      return baseUrl;
    },
    get loginUrl() {
      return loginUrl;
    },
    async stop() {
      // Sandboxes outlive a server restart by design: remove the ones the tests made.
      if (!exited && baseUrl) await deleteSandboxes(baseUrl, dataDir).catch((err) => console.error(`# could not remove the test sandboxes: ${err.message}`));
      if (!exited) {
        const gone = new Promise((r) => child.once("exit", r));
        try {
          process.kill(child.pid, "SIGTERM");
        } catch {}
        const clean = await Promise.race([gone.then(() => true), sleep(60_000, { unref: true }).then(() => false)]);
        if (!clean) console.error("# sandstream up did not exit within 60 s of SIGTERM; killing it");
        if (!clean) {
          try {
            process.kill(-child.pid, "SIGKILL");
          } catch {}
          await Promise.race([gone, sleep(5000, { unref: true })]);
        }
        // Whatever else it started in its process group.
        try {
          process.kill(-child.pid, "SIGTERM");
        } catch {}
      }
      log.end();
      if (ownDataDir) removeDataDir(dataDir);
    },
  };
  try {
    await ready;
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}

/** Deletes every sandbox of the admin key's tenant (the page's session is that key's). */
async function deleteSandboxes(baseUrl, dataDir) {
  const key = fs.readFileSync(path.join(dataDir, "admin-key"), "utf8").trim();
  const headers = { authorization: `Bearer ${key}` };
  const res = await fetch(`${baseUrl}/api/v1/sandboxes`, { headers, signal: AbortSignal.timeout(15_000) });
  if (!res.ok) throw new Error(`GET /api/v1/sandboxes answered ${res.status}`);
  const list = await res.json();
  await Promise.all(
    list.map((sb) =>
      fetch(`${baseUrl}/api/v1/sandboxes/${encodeURIComponent(sb.id)}`, { method: "DELETE", headers, signal: AbortSignal.timeout(60_000) }).catch(
        (err) => console.error(`# DELETE ${sb.id}: ${err.message}`),
      ),
    ),
  );
}

function removeDataDir(dir) {
  // Never recurse into something still mounted (a sandbox's rootfs or a bind mount).
  try {
    const mounts = fs.readFileSync("/proc/mounts", "utf8");
    if (mounts.split("\n").some((l) => (l.split(" ")[1] ?? "").startsWith(dir + "/") || l.split(" ")[1] === dir)) {
      console.error(`# leaving ${dir}: something is still mounted under it`);
      return;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  } catch (err) {
    console.error(`# could not remove ${dir}: ${err.message}`);
  }
}

/** `unref`: a timer that does not keep the process alive (for races against an exit). */
export function sleep(ms, { unref = false } = {}) {
  return new Promise((r) => {
    const t = setTimeout(r, ms);
    if (unref) t.unref();
  });
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
  });
}

/** A file-system-safe name for a test's screenshot. */
export function slug(name) {
  return name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 80);
}

export async function screenshot(page, name, extra = []) {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  const file = path.join(SCREENSHOTS, `${slug(name)}.png`);
  try {
    await page.screenshot({ path: file });
    for (const p of extra) fs.copyFileSync(file, p);
  } catch (err) {
    console.error(`# screenshot ${file} failed: ${err.message}`);
  }
  return file;
}
