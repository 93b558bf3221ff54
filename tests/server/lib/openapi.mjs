// Checks real answers against the server's own OpenAPI document (GET /api/openapi.json)
// with a JSON Schema 2020-12 validator (Ajv), and turns the document into TypeScript
// types (openapi-typescript) that real answers must type-check against (tsc).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import Ajv2020Module from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import openapiTS, { astToString } from 'openapi-typescript';

const Ajv2020 = Ajv2020Module.default ?? Ajv2020Module;
const addFormats = addFormatsModule.default ?? addFormatsModule;
const require = createRequire(import.meta.url);

/** `v` with every `#/components/schemas/X` reference turned into `#/$defs/X`. */
function toDefs(v) {
  if (Array.isArray(v)) return v.map(toDefs);
  if (v && typeof v === 'object') {
    const out = {};
    for (const [k, x] of Object.entries(v)) {
      out[k] = k === '$ref' && typeof x === 'string' ? x.replace('#/components/schemas/', '#/$defs/') : toDefs(x);
    }
    return out;
  }
  return v;
}

/** Every `format` value under `v`. */
function formats(v, out = new Set()) {
  if (Array.isArray(v)) v.forEach((x) => formats(x, out));
  else if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      if (k === 'format' && typeof x === 'string') out.add(x);
      else formats(x, out);
    }
  }
  return out;
}

/**
 * A checker for one document. `response(method, route, res)` asserts that `res` (as
 * `api` returns it) is an answer the document gives for that operation: its status is
 * listed (or `default` covers it), its content type is one the document names, and a JSON
 * body validates against the schema. `request(method, route, body)` asserts the document
 * accepts a body the test sends. `seen` holds `METHOD route status` of each checked answer.
 */
export function openapiChecker(doc) {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  // OpenAPI's numeric formats (utoipa writes int32, int64, double...): integers must be
  // integers, the rest is the schema's `type`.
  for (const f of formats(doc)) {
    if (ajv.formats[f]) continue;
    ajv.addFormat(f, { type: 'number', validate: /int/.test(f) ? (n) => Number.isInteger(n) : () => true });
  }
  const defs = toDefs(doc.components.schemas);
  const cache = new Map();
  const validator = (key, schema) => {
    if (!cache.has(key)) cache.set(key, ajv.compile({ $defs: defs, ...toDefs(schema) }));
    return cache.get(key);
  };
  const seen = new Set();
  const operation = (method, route) => {
    const op = doc.paths[route]?.[method.toLowerCase()];
    assert.ok(op, `${method} ${route} is not in the document`);
    return op;
  };
  const explain = (v) => ajv.errorsText(v.errors, { separator: '\n  ' });

  return {
    seen,
    response(method, route, res) {
      const op = operation(method, route);
      const what = `${method} ${route} answered ${res.status} ${res.text.slice(0, 500)}`;
      const documented = op.responses[String(res.status)] ?? op.responses.default;
      assert.ok(documented, `${what}: status not in the document`);
      const content = documented.content ?? {};
      const types = Object.keys(content);
      if (types.length === 0) {
        assert.equal(res.text, '', `${what}: the document says no body`);
      } else {
        const got = (res.headers.get('content-type') ?? '').split(';')[0].trim();
        const type = types.find((t) => t.split(';')[0].trim() === got);
        assert.ok(type, `${what}: content type ${got} is not one of ${types}`);
        if (got === 'application/json') {
          assert.ok(res.body !== undefined, `${what}: not JSON`);
          const v = validator(`${method} ${route} ${res.status}`, content[type].schema);
          assert.ok(v(res.body), `${what}:\n  ${explain(v)}`);
        } else {
          const v = validator(`${method} ${route} ${res.status} text`, content[type].schema);
          assert.ok(v(res.text), `${what}:\n  ${explain(v)}`);
        }
      }
      seen.add(`${method.toUpperCase()} ${route} ${res.status}`);
      return res;
    },
    request(method, route, body) {
      const op = operation(method, route);
      const schema = op.requestBody?.content?.['application/json']?.schema;
      assert.ok(schema, `${method} ${route} takes no JSON body in the document`);
      const v = validator(`${method} ${route} request`, schema);
      assert.ok(v(body), `${method} ${route}: the document refuses the body ${JSON.stringify(body)}:\n  ${explain(v)}`);
    },
  };
}

/**
 * Generates TypeScript types from `doc` with openapi-typescript and type-checks `program`
 * (TypeScript that imports `paths` and `components` from './api') with tsc --strict.
 * Returns tsc's output; throws with it when tsc fails.
 */
export async function typecheckAgainst(doc, program) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sandstream-openapi-ts-'));
  try {
    writeFileSync(path.join(dir, 'api.ts'), astToString(await openapiTS(doc)));
    writeFileSync(path.join(dir, 'check.ts'), program);
    const tsc = require.resolve('typescript/bin/tsc');
    const args = ['--noEmit', '--strict', '--target', 'es2022', '--module', 'esnext', '--moduleResolution', 'bundler', 'check.ts'];
    try {
      return execFileSync(process.execPath, [tsc, ...args], { cwd: dir, encoding: 'utf8' });
    } catch (e) {
      throw new Error(`tsc refused real answers against the generated types:\n${e.stdout}${e.stderr}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
