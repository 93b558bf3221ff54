// Same-origin REST calls. The session cookie (set by a `/?token=…` login link or by
// signing in with a key, signin.ts) authenticates them; the page keeps no key.
import type { FinalStatus, LogChunk, Phase } from "./events.ts";

export class ApiError extends Error {
  constructor(
    /** HTTP status; 0 when the server could not be reached at all. */
    public readonly status: number,
    public readonly code: string,
    /** The server's own message (or ours when it sent none). */
    public readonly serverMessage: string,
  ) {
    super(describeError(status, code, serverMessage));
    this.name = "ApiError";
  }
}

/** A sentence a user can act on, for every error the API documents. */
export function describeError(status: number, code: string, message: string): string {
  switch (status) {
    case 0:
      return "Cannot reach the Sandstream server. Check that it is running and that this machine is online.";
    case 400:
      return `The server rejected the request: ${message}`;
    case 401:
      return "Not signed in (or the session expired). Reload the page to sign in with an API key, or open a link from `sandstream login-link`.";
    case 403:
      return `Not allowed: ${message}`;
    case 404:
      return `Not found: ${message}`;
    case 409:
      return `The sandbox is not running any more: ${message}`;
    case 413:
      return `Too large: ${message}. Make the program or its files smaller.`;
    case 503:
      return `No capacity right now: ${message}. Try again in a moment.`;
    case 507:
      return `The sandbox's disk is full: ${message}. Delete files in the sandbox, or start a sandbox with more disk.`;
    default:
      if (status >= 500 && code === "internal") return "The server hit an internal error. Try again; if it persists, check the server log.";
      if (status >= 500) return `The server is unavailable (HTTP ${status}). ${message}`.trim();
      return `Request failed (HTTP ${status}): ${message}`;
  }
}

export async function api<T = unknown>(
  method: string,
  path: string,
  body?: unknown,
  opts: { timeoutMs?: number; headers?: Record<string, string> } = {},
): Promise<T> {
  const ctrl = new AbortController();
  const timer = opts.timeoutMs ? setTimeout(() => ctrl.abort(), opts.timeoutMs) : undefined;
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: {
        accept: "application/json",
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...opts.headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: ctrl.signal,
    });
  } catch {
    throw new ApiError(0, "unreachable", "network error");
  } finally {
    if (timer) clearTimeout(timer);
  }
  const text = await res.text().catch(() => "");
  const json = parseJson(text);
  if (!res.ok) throw errorOf(res, json);
  return json as T;
}

function parseJson(text: string): any {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

/** The ApiError of a failed answer, from the server's JSON error shape when it sent one. */
function errorOf(res: Response, json: any): ApiError {
  const code = json && typeof json.code === "string" ? json.code : `http_${res.status}`;
  const message = json && typeof json.message === "string" ? json.message : res.statusText || `HTTP ${res.status}`;
  return new ApiError(res.status, code, message);
}

/** A same-origin request whose answer is not JSON (file bytes): the response when it is
 * a success (or its status is in `allow`), an ApiError otherwise. `signal` aborts it
 * (a caller that reads the body bounds the whole exchange with it). */
export async function raw(
  method: string,
  path: string,
  opts: { body?: BodyInit; headers?: Record<string, string>; allow?: number[]; signal?: AbortSignal } = {},
): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(path, { method, credentials: "same-origin", headers: opts.headers, body: opts.body, signal: opts.signal });
  } catch {
    throw new ApiError(0, "unreachable", "network error");
  }
  if (res.ok || opts.allow?.includes(res.status)) return res;
  throw errorOf(res, parseJson(await res.text().catch(() => "")));
}

export interface ExecAccepted {
  status: "accepted";
  data: { containerId: string; executionId: string; message?: string };
}

export interface ExecutionInfo {
  id: string;
  containerId: string;
  language: string;
  status: "running" | FinalStatus;
  phase: Phase | null;
  exitCode: number | null;
  durationMs: number | null;
  error?: string | null;
  oomKilled?: boolean;
}

export interface LogsPage {
  chunks: LogChunk[];
  complete: boolean;
}

/** A sandbox as `GET /api/v1/sandboxes` lists it (the fields the page shows). */
export interface SandboxInfo {
  id: string;
  template: string;
  state: string;
  createdAt: string;
  expiresAt: string;
}
