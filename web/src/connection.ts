// The socket.io connection (same origin; the session cookie authenticates it): the
// connection indicator, reconnecting, and handing the server's events to the page.
import { io, Socket } from "socket.io-client";
import type { ClientToServerEvents, CompleteEvent, ContainerJoinedEvent, ErrorEvent, OutputEvent, PhaseEvent, ServerToClientEvents } from "./events.ts";
import type { Messages } from "./messages.ts";
import type { Send } from "./protocol.ts";

export type ConnState = "connecting" | "connected" | "reconnecting" | "unauthorized";

export interface ConnectionStats {
  reconnects: number;
  disconnects: number;
}

/** What the page does with the connection's events. */
export interface ConnectionHandlers {
  /** The socket connected, the first time or again. */
  connected(): void;
  /** The socket closed, for whatever reason (its rooms are gone with it). */
  disconnected(): void;
  /** The socket is down, or cannot connect: a run goes on over REST meanwhile. */
  lost(): void;
  joined(ev: ContainerJoinedEvent): void;
  output(ev: OutputEvent): void;
  phase(ev: PhaseEvent): void;
  complete(ev: CompleteEvent): void;
  error(ev: ErrorEvent): void;
}

const UNAUTHORIZED = /unauthori[sz]ed|\b401\b|forbidden|api key|unknown key|revoked|session|log in/i;

export class Connection {
  readonly socket: Socket<ServerToClientEvents, ClientToServerEvents>;
  private conn: ConnState = "connecting";
  private everConnected = false;

  constructor(
    private readonly el: HTMLElement,
    messages: Messages,
    stats: ConnectionStats,
    h: ConnectionHandlers,
  ) {
    const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io({
      path: "/socket.io/",
      withCredentials: true,
      reconnection: true,
      reconnectionDelay: 500,
      reconnectionDelayMax: 2000,
      randomizationFactor: 0.2,
      timeout: 8000,
    });
    this.socket = socket;

    socket.on("connect", () => {
      if (this.everConnected) stats.reconnects++;
      this.everConnected = true;
      this.set("connected");
      if (messages.aboutConnection) {
        messages.hide();
        messages.aboutConnection = false;
      }
      h.connected();
    });

    socket.on("disconnect", (reason) => {
      h.disconnected();
      stats.disconnects++;
      if (reason === "io client disconnect") return;
      this.set("reconnecting", `connection lost (${reason})`);
      if (reason === "io server disconnect") setTimeout(() => socket.connect(), 1000);
      h.lost();
    });

    socket.on("connect_error", (err: Error & { data?: any }) => {
      const msg = String(err?.message ?? err);
      if (UNAUTHORIZED.test(msg) || err?.data?.code === "unauthorized") {
        this.set("unauthorized", msg);
        messages.show("error", "Not signed in (or the session expired, or was signed out).", {
          label: "Sign in",
          run: () => location.reload(),
        });
        messages.aboutConnection = true;
      } else {
        this.set(this.everConnected ? "reconnecting" : "connecting", `cannot connect: ${msg}`);
      }
      // A refused handshake is not retried by socket.io itself; keep trying slowly.
      if (!socket.active) setTimeout(() => socket.connect(), 3000);
      h.lost();
    });

    socket.on("container-joined", (ev) => h.joined(ev));
    socket.on("error", (ev) => h.error(ev));
    socket.on("execution-output", (ev) => h.output(ev));
    socket.on("execution-phase", (ev) => h.phase(ev));
    socket.on("execution-complete", (ev) => h.complete(ev));
  }

  get state(): ConnState {
    return this.conn;
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  send(s: Send) {
    if (s.event === "join-container") this.socket.emit("join-container", s.containerId);
    else this.socket.emit("resume-execution", s.request);
  }

  /** Closes the transport as a network drop does; socket.io reconnects. */
  drop() {
    (this.socket.io as any).engine?.close();
  }

  private set(c: ConnState, detail = "") {
    this.conn = c;
    this.el.dataset.state = c;
    const label = this.el.querySelector(".conn-label")!;
    label.textContent =
      c === "connected" ? "live" : c === "connecting" ? "connecting…" : c === "reconnecting" ? "reconnecting…" : "not signed in";
    this.el.title = detail || label.textContent!;
  }
}
