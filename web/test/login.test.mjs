// Getting in, in headless Chromium against the real server: a tenant's link from the
// real `sandstream login-link` opens the playground on the tenant's sandboxes and not the
// admin's; the sign-in form refuses a wrong key in words and signs in with the right
// one; signing out ends the session. Run by `npm test` after e2e.test.mjs.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { BIN, checkPrerequisites, launchBrowser, screenshot, startServer } from "./harness.mjs";

const run = promisify(execFile);

let server;
let browser;
let adminKey;
/** The tenant: { id, key }, and one sandbox each, created with each key. */
let tenant;
let tenantSandbox;
let adminSandbox;

async function rest(method, route, key, body) {
  const res = await fetch(server.baseUrl + route, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(180_000),
  });
  const text = await res.text();
  return { status: res.status, text, body: text ? JSON.parse(text) : null };
}

/** What `cookie` (a `name=value`) reaches: GET /api/v1/sandboxes's status. */
async function listWith(cookie) {
  const res = await fetch(server.baseUrl + "/api/v1/sandboxes", { headers: { cookie }, signal: AbortSignal.timeout(15_000) });
  return res.status;
}

/** A fresh browser context (no cookie), with checks that the page never threw. */
async function freshPage(t) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 820 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (err) => errors.push(String(err)));
  t.after(async () => {
    await context.close().catch(() => {});
    assert.deepEqual(errors, [], "the page threw");
  });
  return { context, page };
}

/** The ids the page's Sandboxes menu lists, once it has loaded them. */
async function listedSandboxes(page) {
  await page.click('[data-testid="sandboxes-toggle"]');
  await page.waitForSelector('[data-testid="sandbox-list"][data-loaded="true"]:not([hidden])', { timeout: 30_000 });
  return page.$$eval('[data-testid="sandbox-item"]', (items) => items.map((i) => i.dataset.sandboxId));
}

async function sessionCookie(context) {
  const c = (await context.cookies()).find((c) => c.name === "sandstream_session");
  return c ? `${c.name}=${c.value}` : null;
}

describe("Getting in: login links and the sign-in form (real server, headless Chromium)", { timeout: 30 * 60_000 }, () => {
  before(
    async () => {
      checkPrerequisites();
      server = await startServer({ logName: "server-login.log" });
      console.log(`# server at ${server.baseUrl} (log: ${server.logPath})`);
      adminKey = fs.readFileSync(path.join(server.dataDir, "admin-key"), "utf8").trim();
      const made = await rest("POST", "/api/v1/keys", adminKey, { name: "web login test" });
      assert.equal(made.status, 201, made.text);
      tenant = made.body;
      const t = await rest("POST", "/api/v1/sandboxes", tenant.key, {});
      assert.equal(t.status, 201, t.text);
      tenantSandbox = t.body.id;
      const a = await rest("POST", "/api/v1/sandboxes", adminKey, {});
      assert.equal(a.status, 201, a.text);
      adminSandbox = a.body.id;
      browser = await launchBrowser();
    },
    { timeout: 25 * 60_000 },
  );

  after(async () => {
    await browser?.close().catch(() => {});
    if (tenant) {
      if (tenantSandbox) {
        const gone = await rest("DELETE", `/api/v1/sandboxes/${tenantSandbox}`, tenant.key).catch((e) => ({ status: 0, text: e.message }));
        if (gone.status !== 204) console.error(`# DELETE ${tenantSandbox}: ${gone.status} ${gone.text}`);
      }
      const revoked = await rest("DELETE", `/api/v1/keys/${tenant.id}`, adminKey).catch((e) => ({ status: 0, text: e.message }));
      if (revoked.status !== 204) console.error(`# revoking ${tenant.id}: ${revoked.status} ${revoked.text}`);
    }
    await server?.stop(); // deletes the admin key's sandboxes
  });

  test("a tenant's `sandstream login-link` opens the playground on the tenant's sandboxes only", async (t) => {
    const env = { ...process.env, SANDSTREAM_API_KEY: tenant.key };
    delete env.SANDSTREAM_API_URL;
    delete env.SANDSTREAM_DATA_DIR;
    const { stdout, stderr } = await run(BIN, ["login-link", "--server", server.baseUrl], { env, timeout: 30_000 });
    const link = stdout.trim();
    assert.match(link, new RegExp(`^${server.baseUrl.replace(/[.]/g, "\\.")}/\\?token=[0-9a-f]{48}$`), stdout);
    assert.match(stderr, new RegExp(`one-time link for key ${tenant.id}`), stderr);

    const { context, page } = await freshPage(t);
    const res = await page.goto(link, { waitUntil: "load" });
    assert.equal(res.status(), 200, "the link lands on the playground");
    assert.equal(new URL(page.url()).pathname + new URL(page.url()).search, "/", "the token is gone from the address bar");
    await page.waitForSelector('[data-testid="connection"][data-state="connected"]', { timeout: 60_000 });
    assert.equal(await page.getAttribute("body", "data-auth"), "signed-in");
    const listed = await listedSandboxes(page);
    assert.deepEqual(listed, [tenantSandbox], `the tenant's sandbox and nothing else (the admin's is ${adminSandbox})`);
    assert.equal(await page.textContent('[data-testid="sandboxes-count"]'), "1");
    // Picking it sends the runs there.
    await page.click(`[data-testid="sandbox-item"][data-sandbox-id="${tenantSandbox}"]`);
    assert.equal(await page.getAttribute('[data-testid="sandbox-id"]', "data-container-id"), tenantSandbox);
    await screenshot(page, "login link opens the tenant's playground");
    // The session is the tenant's on the server too: the admin's sandbox is not found.
    const seen = await page.evaluate(async (id) => (await fetch(`/api/v1/sandboxes/${id}`)).status, adminSandbox);
    assert.equal(seen, 404);
    assert.ok(await sessionCookie(context), "a session cookie");

    // The link worked once: a second browser is refused, with the command to run.
    const second = await freshPage(t);
    const again = await second.page.goto(link, { waitUntil: "load" });
    assert.equal(again.status(), 401);
    assert.match(await second.page.textContent("body"), /already used or has expired[\s\S]*sandstream login-link --server URL/);
    assert.equal(await sessionCookie(second.context), null, "the spent link set a cookie");
  });

  test("the sign-in form refuses a wrong key in words, signs in with the right one, and signs out", async (t) => {
    const { context, page } = await freshPage(t);
    await page.goto(server.baseUrl + "/", { waitUntil: "load" });
    await page.waitForSelector('[data-testid="signin"]', { timeout: 30_000 });
    assert.equal(await page.getAttribute("body", "data-auth"), "signed-out");
    assert.equal(await page.$('[data-testid="run"]'), null, "no playground without a session");

    // A wrong key: a clear message, no session.
    await page.fill('[data-testid="signin-key"]', "ss_this_is_not_a_key");
    await page.click('[data-testid="signin-submit"]');
    await page.waitForSelector('[data-testid="signin-error"]:not([hidden])', { timeout: 15_000 });
    assert.equal(
      await page.textContent('[data-testid="signin-error"]'),
      "That API key was not accepted: it is unknown or has been revoked.",
    );
    assert.equal(await sessionCookie(context), null, "a wrong key got a session cookie");
    assert.equal(await page.evaluate(async () => (await fetch("/api/v1/sandboxes")).status), 401);
    await screenshot(page, "sign-in form refuses a wrong key");

    // The right key: signed in, the playground with the tenant's sandboxes.
    await page.fill('[data-testid="signin-key"]', tenant.key);
    await page.click('[data-testid="signin-submit"]');
    await page.waitForSelector('[data-testid="connection"][data-state="connected"]', { timeout: 60_000 });
    assert.equal(await page.getAttribute("body", "data-auth"), "signed-in");
    assert.deepEqual(await listedSandboxes(page), [tenantSandbox]);
    const cookie = await sessionCookie(context);
    assert.ok(cookie, "no session cookie after signing in");
    assert.equal(await listWith(cookie), 200);
    const kept = await page.evaluate(() => JSON.stringify({ ...localStorage, ...sessionStorage }) + document.cookie);
    assert.ok(!kept.includes(tenant.key), "the page kept the key");
    await screenshot(page, "signed in with a key");

    // Signing out: the form again, and the old cookie is dead on the server.
    await page.keyboard.press("Escape");
    await page.click('[data-testid="sign-out"]');
    await page.waitForSelector('[data-testid="signin"]', { timeout: 30_000 });
    assert.equal(await sessionCookie(context), null, "the browser kept its cookie");
    assert.equal(await listWith(cookie), 401, "a copy of the signed-out cookie still works");
  });
});
