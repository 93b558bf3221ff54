// The signed-in key's sandboxes: a menu in the top bar listing what
// `GET /api/v1/sandboxes` answers (the server lists only the caller's key's own, so a
// tenant sees its sandboxes and no one else's) and sending the page's runs to one of them.
import "./sandboxes.css";
import { api, ApiError, type SandboxInfo } from "./api.ts";
import type { Layout } from "./layout.ts";
import type { Sandbox } from "./sandbox.ts";

type ListElements = Pick<Layout, "sandboxesToggle" | "sandboxesCount" | "sandboxList">;

export class SandboxList {
  private items: SandboxInfo[] = [];

  constructor(
    private readonly el: ListElements,
    private readonly sandbox: Sandbox,
  ) {
    el.sandboxesToggle.addEventListener("click", () => (this.open ? this.close() : void this.openMenu()));
    document.addEventListener("click", (e) => {
      if (this.open && !el.sandboxList.parentElement!.contains(e.target as Node)) this.close();
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && this.open) this.close();
    });
  }

  get open(): boolean {
    return !this.el.sandboxList.hidden;
  }

  /** The ids listed, in order. */
  get ids(): string[] {
    return this.items.map((s) => s.id);
  }

  /** Shows `list` (the page's first call already fetched it). */
  show(list: SandboxInfo[]) {
    this.items = list;
    this.render();
  }

  /** Asks the server again. */
  async refresh() {
    try {
      this.show(await api<SandboxInfo[]>("GET", "/api/v1/sandboxes", undefined, { timeoutMs: 10000 }));
    } catch (err) {
      this.renderError(err instanceof ApiError ? err.message : String(err));
    }
  }

  close() {
    this.el.sandboxList.hidden = true;
    this.el.sandboxesToggle.setAttribute("aria-expanded", "false");
  }

  private async openMenu() {
    this.el.sandboxList.hidden = false;
    this.el.sandboxesToggle.setAttribute("aria-expanded", "true");
    await this.refresh();
  }

  private render() {
    const { sandboxesCount, sandboxList } = this.el;
    sandboxesCount.textContent = String(this.items.length);
    sandboxList.dataset.loaded = "true";
    sandboxList.replaceChildren();
    if (this.items.length === 0) {
      sandboxList.append(note("No sandboxes yet: the first run starts one."));
      return;
    }
    for (const sb of this.items) {
      const item = document.createElement("button");
      item.type = "button";
      item.className = "menu-item";
      item.setAttribute("role", "menuitem");
      item.dataset.testid = "sandbox-item";
      item.dataset.sandboxId = sb.id;
      item.dataset.state = sb.state;
      if (sb.id === this.sandbox.id) item.setAttribute("aria-current", "true");
      const id = document.createElement("span");
      id.className = "menu-item-id";
      id.textContent = sb.id;
      const meta = document.createElement("span");
      meta.className = "menu-item-meta";
      const created = new Date(sb.createdAt);
      meta.textContent = `${sb.state} · ${sb.template} · since ${isNaN(created.getTime()) ? sb.createdAt : created.toLocaleString()}`;
      item.append(id, meta);
      item.title = sb.state === "running" ? "Send the next runs to this sandbox" : `This sandbox is ${sb.state}`;
      item.disabled = sb.state !== "running";
      item.addEventListener("click", () => {
        if (this.sandbox.use(sb.id)) this.close();
      });
      sandboxList.append(item);
    }
  }

  private renderError(text: string) {
    this.el.sandboxList.dataset.loaded = "true";
    this.el.sandboxList.replaceChildren(note(text, "error"));
  }
}

function note(text: string, kind = "") {
  const p = document.createElement("p");
  p.className = "menu-note";
  p.dataset.testid = "sandbox-list-note";
  if (kind) p.dataset.kind = kind;
  p.textContent = text;
  return p;
}
