// The sandbox files REST routes (API.md, "Files"), as the file tree and the editor use
// them: list a directory, read a file as text (bounded), write one, and the URL a
// download link points at. Authentication is the page's session cookie, as for every
// other call (api.ts).
import { api, ApiError, raw } from "./api.ts";

export type EntryType = "file" | "dir" | "symlink" | "other";

/** One entry as `GET /api/v1/sandboxes/{id}/files/list` lists it. */
export interface FileEntry {
  name: string;
  path: string;
  type: EntryType;
  size: number;
  mode: number;
  owner: string;
  group: string;
  symlinkTarget?: string;
  /** Last modification, RFC 3339. */
  modifiedAt?: string;
}

/** The most bytes the editor opens; bigger files are offered as a download. */
export const MAX_EDIT_BYTES = 1024 * 1024;

/** Where programs and uploads go unless told otherwise (the sandbox user's home). */
export const HOME = "/home/user";

/** The files routes of a sandbox. */
export function base(sandboxId: string): string {
  return `/api/v1/sandboxes/${encodeURIComponent(sandboxId)}/files`;
}

/** The URL of a file's bytes: what a download link points at. */
export function fileUrl(sandboxId: string, path: string): string {
  return `${base(sandboxId)}?path=${encodeURIComponent(path)}`;
}

/** The children of directory `path` (one level). */
export async function listDir(sandboxId: string, path: string): Promise<FileEntry[]> {
  const res = await api<{ entries?: FileEntry[] }>("GET", `${base(sandboxId)}/list?path=${encodeURIComponent(path)}&depth=1`, undefined, {
    timeoutMs: 15000,
  });
  return Array.isArray(res?.entries) ? res.entries : [];
}

export type ReadResult = { kind: "text"; text: string } | { kind: "binary" } | { kind: "too-large" };

/** A file's content when it is UTF-8 text of at most MAX_EDIT_BYTES. At most one byte
 * more than that is fetched (a Range request), however big the file has grown. */
export async function readText(sandboxId: string, path: string): Promise<ReadResult> {
  const signal = AbortSignal.timeout(60000);
  // 416: nothing to read at offset 0, i.e. the file is empty.
  const res = await raw("GET", fileUrl(sandboxId, path), { headers: { range: `bytes=0-${MAX_EDIT_BYTES}` }, allow: [416], signal });
  if (res.status === 416) return { kind: "text", text: "" };
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await res.arrayBuffer());
  } catch {
    throw new ApiError(0, "unreachable", "the transfer was cut off");
  }
  if (bytes.length > MAX_EDIT_BYTES) return { kind: "too-large" };
  if (bytes.includes(0)) return { kind: "binary" };
  try {
    return { kind: "text", text: new TextDecoder("utf-8", { fatal: true }).decode(bytes) };
  } catch {
    return { kind: "binary" };
  }
}

/** Writes `body` to `path` (parents are created), replacing what was there. */
export async function writeFile(sandboxId: string, path: string, body: string | Blob): Promise<FileEntry | null> {
  const res = await raw("PUT", fileUrl(sandboxId, path), {
    body,
    headers: { "content-type": "application/octet-stream" },
    // Uploads may be large: bound by the time without progress only through the server.
    signal: AbortSignal.timeout(typeof body === "string" ? 60000 : 30 * 60000),
  });
  try {
    return ((await res.json()) as FileEntry) ?? null;
  } catch {
    return null;
  }
}

/** Asks for a file's first byte, to learn (in words) why a download would fail before
 * the browser starts one. Resolves when the file can be read. */
export async function checkReadable(sandboxId: string, path: string): Promise<void> {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), 15000);
  try {
    await raw("GET", fileUrl(sandboxId, path), { headers: { range: "bytes=0-0" }, allow: [416], signal: ctrl.signal });
  } finally {
    clearTimeout(timer);
    ctrl.abort(); // the byte itself is not needed
  }
}

/** Downloads a file through a link with the `download` attribute to the GET route (the
 * browser streams it to disk and sends the session cookie, as for any same-origin
 * request), after a one-byte request that turns a failure into an ApiError in words. */
export async function downloadFile(sandboxId: string, path: string): Promise<void> {
  await checkReadable(sandboxId, path);
  const a = document.createElement("a");
  a.href = fileUrl(sandboxId, path);
  a.download = baseName(path);
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
}

/** The parent directory of an absolute path ("/" for "/x"). */
export function parentOf(path: string): string {
  const i = path.replace(/\/+$/, "").lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

/** `dir` joined with a relative `name`. */
export function joinPath(dir: string, name: string): string {
  return (dir.endsWith("/") ? dir : dir + "/") + name.replace(/^\/+/, "");
}

export function baseName(path: string): string {
  return path.replace(/\/+$/, "").split("/").pop() || path;
}

/** 1234567 → "1.2 MiB". */
export function fmtSize(n: number): string {
  if (!Number.isFinite(n) || n < 0) return "";
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

/** The error of a files call in words, naming the file; the codes API.md documents. */
export function fileError(err: unknown, what: string): string {
  if (!(err instanceof ApiError)) return `${what}: ${err instanceof Error ? err.message : String(err)}`;
  const phrase: Record<number, string> = {
    403: "permission denied",
    404: "not found",
    409: "the sandbox is not running any more",
    413: "too large for the server",
    507: "the sandbox's disk is full",
  };
  const p = phrase[err.status];
  if (!p) return `${what}: ${err.message}`;
  // The server's message starts with the path, which `what` already names.
  const detail = err.serverMessage.replace(/^\/[^:]*: /, "");
  const more = detail && detail !== p ? ` (${detail})` : "";
  const hint = err.status === 507 ? " Delete files in the sandbox to make room." : "";
  return `${what}: ${p}${more}.${hint}`;
}
