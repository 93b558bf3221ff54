// The message bar under the top bar: an error, a warning or a note, in words, with an
// optional action button.
import type { Layout } from "./layout.ts";

export type MessageKind = "error" | "warn" | "info";

export class Messages {
  constructor(private readonly el: Pick<Layout, "message" | "messageText" | "messageAction" | "messageDismiss">) {
    el.messageDismiss.addEventListener("click", () => this.hide());
  }

  show(kind: MessageKind, text: string, action?: { label: string; run: () => void }) {
    const { message, messageText, messageAction } = this.el;
    message.hidden = false;
    message.dataset.kind = kind;
    messageText.textContent = text;
    if (action) {
      messageAction.hidden = false;
      messageAction.textContent = action.label;
      messageAction.onclick = () => {
        this.hide();
        action.run();
      };
    } else {
      messageAction.hidden = true;
      messageAction.onclick = null;
    }
  }

  hide() {
    this.el.message.hidden = true;
    this.el.message.dataset.kind = "";
  }

  /** The message shown, or null. */
  get text(): string | null {
    return this.el.message.hidden ? null : this.el.messageText.textContent;
  }

  /** Whether the message shown is about the connection (it goes when the socket connects). */
  get aboutConnection(): boolean {
    return !!this.el.message.dataset.kind && this.el.message.dataset.conn === "1";
  }
  set aboutConnection(v: boolean) {
    this.el.message.dataset.conn = v ? "1" : "";
  }
}
