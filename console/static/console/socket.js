// One WebSocket that reconnects by the close-code rule: backoff with full jitter after
// transient closes, a token refresh first after 4001, and a full stop, in words, otherwise.

import { backoffDelay } from "./backoff.js";
import { Action, HANDSHAKE_FAILED, closeAction, closeDescribe } from "./closecodes.js";

// A connection open this long counts as stable: the next failure starts the backoff afresh.
const STABLE_AFTER_MS = 10000;

/**
 * Events: "status" (detail {state, text}: "connecting", "open", "waiting", "stopped"),
 * "open", "message" (detail: the frame's text), "stopped" (detail {code, reason, meaning}).
 */
export class ReconnectingSocket extends EventTarget {
  #ws = null;
  #attempt = 0;
  #opening = false; // between asking for a URL (a ticket) and having a WebSocket
  #wanted = false; // the person asked for this connection and has not closed it
  #timers = [];

  /**
   * @param name label in the log ("session", "echo")
   * @param urlFor async () => the ws:// URL to open (may fetch a ticket; may throw ApiError)
   * @param log a FrameLog
   * @param beforeRetry async (code) => void, run before reconnecting after `code` (4001: refresh)
   */
  constructor({ name, urlFor, log, beforeRetry = async () => {} }) {
    super();
    this.name = name;
    this.urlFor = urlFor;
    this.log = log;
    this.beforeRetry = beforeRetry;
  }

  get isOpen() {
    return this.#ws !== null && this.#ws.readyState === WebSocket.OPEN;
  }

  /** Open (the person asked): a fresh backoff, then reconnect by the rule until closed. */
  connect() {
    this.#wanted = true;
    this.#attempt = 0;
    this.#clearTimers();
    if (this.#ws || this.#opening) return;
    this.#open();
  }

  /** Close with 1000 and stay closed. */
  close() {
    this.#wanted = false;
    this.#clearTimers();
    if (this.#ws) this.#ws.close(1000, "closed by the person");
    this.#status("stopped", "closed");
  }

  /** Send one text frame; false when not open. */
  send(text) {
    if (!this.isOpen) return false;
    this.#ws.send(text);
    this.log.record("out", this.name, text);
    return true;
  }

  async #open() {
    this.#status("connecting", "connecting…");
    this.#opening = true;
    let url;
    try {
      url = await this.urlFor();
    } catch (e) {
      this.#opening = false;
      if (!this.#wanted) return;
      if (e.retryable) {
        this.log.record("event", this.name, `cannot connect: ${e.message}`);
        this.#retry();
      } else {
        this.#stop(null, "cannot connect", e.message);
      }
      return;
    }
    this.#opening = false;
    if (!this.#wanted) return;
    this.log.record("event", this.name, `connecting to ${url}`);
    const ws = new WebSocket(url);
    this.#ws = ws;
    let opened = false;
    ws.addEventListener("open", () => {
      opened = true;
      this.log.record("event", this.name, "open");
      this.#status("open", "connected");
      this.#later(STABLE_AFTER_MS, () => {
        this.#attempt = 0;
      });
      this.dispatchEvent(new Event("open"));
    });
    ws.addEventListener("message", (event) => {
      const text = typeof event.data === "string" ? event.data : "[binary frame]";
      this.log.record("in", this.name, text);
      this.dispatchEvent(new CustomEvent("message", { detail: text }));
    });
    ws.addEventListener("close", (event) => this.#closed(ws, event, opened));
  }

  async #closed(ws, { code, reason }, opened) {
    if (ws !== this.#ws) return;
    this.#ws = null;
    this.#clearTimers();
    const words = !opened && code === 1006 ? HANDSHAKE_FAILED : closeDescribe(code);
    const sent = reason ? ` (reason "${reason}")` : "";
    this.log.record("event", this.name, `closed ${code}: ${words.reason}${sent} — ${words.meaning}`);
    if (!this.#wanted) return;
    const action = closeAction(code);
    if (action === Action.STOP) {
      this.#stop(code, words.reason, words.meaning);
      return;
    }
    if (action === Action.REFRESH_THEN_RECONNECT) {
      try {
        await this.beforeRetry(code);
      } catch (e) {
        if (!e.retryable) {
          this.#stop(code, words.reason, `the token could not be refreshed (${e.message})`);
          return;
        }
      }
    }
    this.#retry();
  }

  #retry() {
    if (!this.#wanted) return;
    const delay = backoffDelay(this.#attempt);
    this.#attempt += 1;
    const due = Date.now() + delay;
    const tick = () => {
      const seconds = Math.max(0, (due - Date.now()) / 1000);
      this.#status("waiting", `reconnecting in ${seconds.toFixed(1)} s`);
    };
    tick();
    this.log.record("event", this.name, `reconnecting in ${(delay / 1000).toFixed(1)} s`);
    const countdown = setInterval(tick, 200);
    this.#timers.push(() => clearInterval(countdown));
    this.#later(delay, () => {
      this.#clearTimers();
      this.#open();
    });
  }

  #stop(code, reason, meaning) {
    this.#wanted = false;
    this.#clearTimers();
    this.#status("stopped", `stopped: ${reason} — ${meaning}`);
    this.dispatchEvent(new CustomEvent("stopped", { detail: { code, reason, meaning } }));
  }

  #later(ms, fn) {
    const id = setTimeout(fn, ms);
    this.#timers.push(() => clearTimeout(id));
  }

  #clearTimers() {
    for (const clear of this.#timers.splice(0)) clear();
  }

  #status(state, text) {
    this.dispatchEvent(new CustomEvent("status", { detail: { state, text } }));
  }
}
