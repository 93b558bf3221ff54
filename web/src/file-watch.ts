// The file tree's watch: the server's watch route (server-sent events through
// EventSource, which sends the page's session cookie) on the tree's root directory,
// recursively. Each change or overflow asks for a new listing, at most once per
// DEBOUNCE_MS. While no watch is live (not yet open, the connection dropped, the agent
// ended it), `live` is false and the tree lists on its timer instead. A watch the server
// refused (no such directory, permission denied, the agent watches all it allows) is not
// asked for again until the sandbox or the root changes; a dropped or ended one is, on
// the next `watch` call.
import { base } from "./files-api.ts";

/** The most listings changes ask for per second: a build writing thousands of files
 * makes one listing every DEBOUNCE_MS, not thousands. */
export const DEBOUNCE_MS = 250;

export class DirWatch {
  private source: EventSource | null = null;
  private key = "";
  private refused = "";
  private timer: number | null = null;
  private live_ = false;

  constructor(
    /** Something in the watched tree changed. */
    private readonly changed: () => void,
    /** The watch became live, or stopped being live. */
    private readonly state: (live: boolean) => void,
  ) {}

  get live(): boolean {
    return this.live_;
  }

  /** Watches `dir` of sandbox `id` (nothing when `id` is null), keeping a live or opening
   * watch of the same directory. */
  watch(id: string | null, dir: string) {
    const key = id ? `${id}\n${dir}` : "";
    if (key && key === this.key && this.source && this.source.readyState !== EventSource.CLOSED) return;
    if (key && key === this.refused) return;
    this.stop();
    this.key = key;
    if (!id) return;
    const es = new EventSource(`${base(id)}/watch?path=${encodeURIComponent(dir)}&recursive=true`);
    let opened = false;
    es.addEventListener("open", () => {
      opened = true;
      this.setLive(true);
      this.schedule(); // what changed while no watch was live
    });
    es.addEventListener("change", () => this.schedule());
    es.addEventListener("overflow", () => this.schedule());
    es.addEventListener("end", () => {
      es.close();
      this.setLive(false);
    });
    es.addEventListener("error", () => {
      // Closed without ever opening: the server answered with an error status.
      if (es.readyState === EventSource.CLOSED && !opened) this.refused = key;
      if (es.readyState === EventSource.CLOSED) es.close();
      this.setLive(false);
    });
    this.source = es;
  }

  stop() {
    this.source?.close();
    this.source = null;
    this.key = "";
    if (this.timer !== null) window.clearTimeout(this.timer);
    this.timer = null;
    this.setLive(false);
  }

  /** Forgets a refusal, so the next `watch` asks again (the directory may exist now). */
  retry() {
    this.refused = "";
  }

  private schedule() {
    if (this.timer !== null) return;
    this.timer = window.setTimeout(() => {
      this.timer = null;
      this.changed();
    }, DEBOUNCE_MS);
  }

  private setLive(live: boolean) {
    if (live === this.live_) return;
    this.live_ = live;
    this.state(live);
  }
}
