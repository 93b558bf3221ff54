// The sandbox the page's runs go to, reused between runs and remembered across reloads;
// "New sandbox" throws it away and starts a fresh one.
import { api, ApiError } from "./api.ts";
import type { Messages } from "./messages.ts";
import type { StatusLine } from "./status.ts";

const CONTAINER_KEY = "sandstream.containerId";

export class Sandbox {
  private current: string | null = localStorage.getItem(CONTAINER_KEY);
  private readonly listeners: ((id: string | null) => void)[] = [];

  constructor(
    private readonly status: StatusLine,
    private readonly messages: Messages,
    private readonly newButton: HTMLButtonElement,
  ) {
    this.set(this.current);
  }

  /** The sandbox the next run goes to; null for a fresh one. */
  get id(): string | null {
    return this.current;
  }

  set(id: string | null) {
    const changed = id !== this.current;
    this.current = id;
    if (id) localStorage.setItem(CONTAINER_KEY, id);
    else localStorage.removeItem(CONTAINER_KEY);
    this.status.showSandbox(id);
    if (changed) for (const fn of this.listeners) fn(id);
  }

  /** Calls `fn` whenever the sandbox in use changes (to another one, or to none). */
  onChange(fn: (id: string | null) => void) {
    this.listeners.push(fn);
  }

  /** Sends the next runs to sandbox `id` (not while a run goes on); false when refused. */
  use(id: string): boolean {
    if (this.status.busy) {
      this.messages.show("warn", "A run is going on: stop it or wait for its end before switching sandboxes.");
      return false;
    }
    this.set(id);
    this.messages.show("info", `Runs now go to sandbox ${id}.`);
    return true;
  }

  /** Deletes the sandbox in use and starts a fresh one (not while a run goes on). */
  async renew() {
    if (this.status.busy) return;
    const old = this.current;
    this.set(null);
    this.messages.hide();
    this.newButton.disabled = true;
    this.status.showSandbox(null, "starting a fresh sandbox…");
    try {
      if (old) await api("DELETE", `/api/v1/sandboxes/${encodeURIComponent(old)}`, undefined, { timeoutMs: 15000 }).catch(() => undefined);
      const sb = await api<{ id: string }>("POST", "/api/v1/sandboxes", {}, { timeoutMs: 120000 });
      this.set(sb.id);
      this.messages.show("info", `Fresh sandbox ${sb.id} is ready.`);
    } catch (err) {
      this.set(null);
      const msg = err instanceof ApiError ? err.message : String(err);
      this.messages.show("warn", `${msg} A fresh sandbox will be started on the next run instead.`);
    } finally {
      this.newButton.disabled = this.status.busy;
    }
  }

  /** At load: forgets a remembered sandbox that expired meanwhile (or that is not this
   * key's: a 404 too), and tells the user early when the server is down or the session
   * is missing. `list`: the key's sandboxes, when the page already fetched them. */
  check(list: { id: string; state: string }[] | null) {
    const id = this.current;
    if (list) {
      const sb = list.find((s) => s.id === id);
      if (id && (!sb || sb.state === "killed")) this.set(null);
    } else if (id) {
      api<{ state?: string }>("GET", `/api/v1/sandboxes/${encodeURIComponent(id)}`, undefined, { timeoutMs: 10000 })
        .then((sb) => {
          if (sb?.state === "killed" && this.current === id) this.set(null);
        })
        .catch((err: ApiError) => {
          if ((err.status === 404 || err.status === 409) && this.current === id) this.set(null);
          else if (err.status === 401 || err.status === 0) this.messages.show("error", err.message);
        });
    } else {
      api("GET", "/api/v1/sandboxes", undefined, { timeoutMs: 10000 }).catch((err: ApiError) => {
        if (err.status === 401 || err.status === 0) this.messages.show("error", err.message);
      });
    }
  }
}
