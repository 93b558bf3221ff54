// The page's copy of the socket.io contract (src/events.ts) against the server's source:
// fails when the server emits or listens to an event the page does not know, when the
// page knows one the server no longer has, or when the fields of `execution-output`,
// `execution-complete` or `resume-execution` change. SERVER_SRC points at another copy of the server's sources
// (to see this test fail on a changed one).
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CLIENT_EVENTS, COMPLETE_EVENT_FIELDS, OUTPUT_EVENT_FIELDS, RESUME_FIELDS, SERVER_EVENTS } from "../../build/unit/events.js";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const SERVER_SRC = process.env.SERVER_SRC || path.join(REPO, "crates", "sandstream-server", "src");
const HINT = `update web/src/events.ts (and the page) to match ${SERVER_SRC}, or this test if the server names its events another way`;

function rustSources(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return rustSources(p);
    return e.name.endsWith(".rs") ? [{ path: p, text: fs.readFileSync(p, "utf8") }] : [];
  });
}

const sources = rustSources(SERVER_SRC);
const all = sources.map((s) => s.text).join("\n");
const matches = (re) => new Set([...all.matchAll(re)].map((m) => m[1]));
const sorted = (xs) => [...xs].sort();

/** `#[serde(rename_all = "camelCase")] struct Name { … }` → its fields as they go on the wire. */
function wireFields(name) {
  const m = all.match(new RegExp(`((?:#\\[[^\\]]*\\]\\s*)*)(?:pub(?:\\([^)]*\\))?\\s+)?struct ${name}\\b[^{]*\\{([\\s\\S]*?)\\n\\}`));
  assert.ok(m, `no \`struct ${name}\` in ${SERVER_SRC}: ${HINT}`);
  const camel = /rename_all\s*=\s*"camelCase"/.test(m[1]);
  const fields = [];
  let rename = null;
  for (const line of m[2].split("\n")) {
    const r = line.match(/#\[serde\([^)]*\brename\s*=\s*"([^"]+)"/);
    if (r) rename = r[1];
    const f = line.match(/^\s*(?:pub(?:\([^)]*\))?\s+)?([a-z_][a-z0-9_]*)\s*:/);
    if (!f) continue;
    fields.push(rename ?? (camel ? f[1].replace(/_([a-z])/g, (_, c) => c.toUpperCase()) : f[1]));
    rename = null;
  }
  return fields;
}

const EVENTS_RS = path.join("hub", "events.rs");
const eventsRs = sources.find((s) => s.path.endsWith(EVENTS_RS));

test("the server's sources are where the test looks", () => {
  assert.ok(eventsRs, `no ${EVENTS_RS} under ${SERVER_SRC}`);
});

test("every event the server emits is one the page knows, and the other way round", () => {
  // hub/events.rs names every event the server sends in `Event::name`:
  //     Event::Output(_) => "execution-output",
  const emitted = new Set([...(eventsRs?.text ?? "").matchAll(/Event::[A-Za-z]+\(_\)\s*=>\s*"([^"]+)"/g)].map((m) => m[1]));
  // Nothing else sends an event by name: every emit goes through `Event`.
  const byName = matches(/\.emit\(\s*"([^"]+)"/g);
  assert.deepEqual(sorted(byName), [], `events sent by name, outside hub/events.rs: ${HINT}`);
  assert.deepEqual(sorted(emitted), sorted(SERVER_EVENTS), HINT);
});

test("every event the server listens to is one the page sends, and the other way round", () => {
  // s.on("join-container", …)
  const listened = matches(/\.on\(\s*"([^"]+)"/g);
  assert.deepEqual(sorted(listened), sorted(CLIENT_EVENTS), HINT);
});

test("execution-output carries the fields the page reads", () => {
  assert.deepEqual(sorted(wireFields("OutputEvent")), sorted(OUTPUT_EVENT_FIELDS), HINT);
});

test("execution-complete carries the fields the page reads", () => {
  assert.deepEqual(sorted(wireFields("CompleteEvent")), sorted(COMPLETE_EVENT_FIELDS), HINT);
});

test("resume-execution takes the fields the page sends", () => {
  assert.deepEqual(sorted(wireFields("Resume")), sorted(RESUME_FIELDS), HINT);
});
