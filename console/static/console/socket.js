// One WebSocket that reconnects by the close-code rule: backoff with full jitter after
// transient closes, a token refresh first after 4001, and a full stop, in words, otherwise.
// Its states and their moves are in states.js; `#enter` is the one place a state changes.

import { backoffDelay } from "./backoff.js";
import {
  Action,
  HANDSHAKE_FAILED,
  closeAction,
  closeDescribe,
  closeIsFatal,
} from "./closecodes.js";
import { SOCKET_MOVES, SocketState } from "./states.js";

// A connection open this long counts as stable: the next failure starts the backoff afresh.
const STABLE_AFTER_MS = 10000;

const STATE_TEXT = {
  [SocketState.IDLE]: "not connected",
  [SocketState.CONNECTING]: "connecting…",
  [SocketState.OPEN]: "connected",
  [SocketState.WAITING]: "reconnecting…",
  [SocketState.CLOSING]: "closing…",
};

/**
 * Events: "state" (detail {state, text}), "open", "message" (detail: the frame's text), and
 * "stopped" (detail {code, reason, meaning, fatal}): the server ended it, or refused it, and it
 * will not reconnect by itself; `code` is null when no connection was made (a refused ticket),
 * `fatal` true for 4500-4999 (do not reconnect with the same credentials).
 */
export class ReconnectingSocket extends EventTarget {
  #ws = null;
  #state = SocketState.IDLE;
  #text = STATE_TEXT[SocketState.IDLE];
  #attempt = 0;
  // Bumped by every attempt and every close: a ticket, refresh or socket from an earlier one
  // that answers late is ignored.
  #generation = 0;
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

  /** One of SocketState. */
  get state() {
    return this.#state;
  }

  /** The state in words for people ("reconnecting in 1.2 s"). */
  get text() {
    return this.#text;
  }

  get isOpen() {
    return this.#state === SocketState.OPEN && this.#ws.readyState === WebSocket.OPEN;
  }

  /** Open (the person asked) with a fresh backoff; only from IDLE. False in any other state. */
  connect() {
    if (this.#state !== SocketState.IDLE) return false;
    this.#attempt = 0;
    this.#open();
    return true;
  }

  /** Close with 1000 and stay closed: CLOSING until the close completes, or IDLE at once
   * when there is no socket yet (fetching a ticket, waiting to reconnect). */
  close() {
    if (this.#state === SocketState.IDLE || this.#state === SocketState.CLOSING) return;
    this.#generation += 1;
    this.#clearTimers();
    if (this.#ws) {
      this.#enter(SocketState.CLOSING);
      this.#ws.close(1000, "closed by the person");
    } else {
      this.#enter(SocketState.IDLE);
    }
  }

  /** Send one text frame; false when not open. */
  send(text) {
    if (!this.isOpen) return false;
    this.#ws.send(text);
    this.log.record("out", this.name, text);
    return true;
  }

  async #open() {
    const generation = ++this.#generation;
    this.#enter(SocketState.CONNECTING);
    let url;
    try {
      url = await this.urlFor();
    } catch (e) {
      if (generation !== this.#generation) return; // closed meanwhile
      this.log.record("event", this.name, `cannot connect: ${e.message}`);
      if (e.retryable) this.#retry();
      else this.#stop({ code: null, reason: "cannot connect", meaning: e.message });
      return;
    }
    if (generation !== this.#generation) return;
    this.log.record("event", this.name, `connecting to ${url}`);
    const ws = new WebSocket(url);
    this.#ws = ws;
    let opened = false;
    ws.addEventListener("open", () => {
      if (ws !== this.#ws || this.#state !== SocketState.CONNECTING) return;
      opened = true;
      this.log.record("event", this.name, "open");
      this.#enter(SocketState.OPEN);
      this.#later(STABLE_AFTER_MS, () => {
        this.#attempt = 0;
      });
      this.dispatchEvent(new Event("open"));
    });
    ws.addEventListener("message", (event) => {
      if (ws !== this.#ws) return;
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
    // A browser reports a refused handshake as 1006 too: say what it may be.
    const refused = !opened && code === 1006;
    const words = refused ? HANDSHAKE_FAILED : closeDescribe(code);
    const sent = reason ? ` (reason "${reason}")` : "";
    const why = refused ? ` — ${words.meaning}` : "";
    this.log.record("event", this.name, `closed ${code}: ${words.reason}${sent}${why}`);
    if (this.#state === SocketState.CLOSING) {
      this.#enter(SocketState.IDLE); // the person's close, completed
      return;
    }
    const action = closeAction(code);
    if (action === Action.STOP) {
      this.#stop({ code, ...words });
      return;
    }
    if (action === Action.REFRESH_THEN_RECONNECT) {
      const generation = ++this.#generation;
      this.#enter(SocketState.WAITING, "refreshing the token…");
      try {
        await this.beforeRetry(code);
      } catch (e) {
        if (generation !== this.#generation) return;
        if (!e.retryable) {
          const meaning = `the token could not be refreshed (${e.message})`;
          this.#stop({ code, reason: words.reason, meaning });
          return;
        }
      }
      if (generation !== this.#generation) return;
    }
    this.#retry();
  }

  #retry() {
    const delay = backoffDelay(this.#attempt);
    this.#attempt += 1;
    const due = Date.now() + delay;
    const tick = () => {
      const seconds = Math.max(0, (due - Date.now()) / 1000);
      this.#enter(SocketState.WAITING, `reconnecting in ${seconds.toFixed(1)} s`);
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

  #stop({ code, reason, meaning }) {
    this.#clearTimers();
    this.#enter(SocketState.IDLE);
    const fatal = closeIsFatal(code);
    this.dispatchEvent(new CustomEvent("stopped", { detail: { code, reason, meaning, fatal } }));
  }

  /** The one place the state changes; a move states.js does not list is a bug. */
  #enter(state, text = STATE_TEXT[state]) {
    if (state !== this.#state && !SOCKET_MOVES[this.#state].includes(state)) {
      throw new Error(`${this.name}: no move from ${this.#state} to ${state}`);
    }
    this.#state = state;
    this.#text = text;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, text } }));
  }

  #later(ms, fn) {
    const id = setTimeout(fn, ms);
    this.#timers.push(() => clearTimeout(id));
  }

  #clearTimers() {
    for (const clear of this.#timers.splice(0)) clear();
  }
}
