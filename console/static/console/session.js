// `/ws/session/`: connect with a single-use ticket, keep the access token fresh (REST refresh,
// then the in-band `refresh` frame), and rejoin the person's rooms after every reconnect.

import { ReconnectingSocket } from "./socket.js";

// Refresh this long before the access token expires (at most half its remaining life): ahead
// of the server's own `expiring` warning (30 s before, by default).
const REFRESH_LEAD_MS = 60000;

/**
 * Events: those of ReconnectingSocket ("status", "stopped") plus "welcome" (the frame),
 * "frame" (every parsed server frame) and "rooms" (the set of joined rooms changed).
 */
export class Session extends EventTarget {
  #nextId = 1;
  #refreshTimer = null;

  constructor({ api, log, wsBase }) {
    super();
    this.api = api;
    this.log = log;
    this.rooms = new Set(); // joined rooms, rejoined after a reconnect
    this.socket = new ReconnectingSocket({
      name: "session",
      log,
      // Never the access token in a URL: a ticket, good once for 30 s.
      urlFor: async () => `${wsBase}ws/session/?ticket=${encodeURIComponent(await api.ticket())}`,
      beforeRetry: async () => this.api.refresh(), // 4001: a new access token before the ticket
    });
    for (const name of ["status", "stopped"]) {
      this.socket.addEventListener(name, (e) => this.dispatchEvent(new CustomEvent(name, { detail: e.detail })));
    }
    this.socket.addEventListener("stopped", () => this.#refreshCancel());
    this.socket.addEventListener("message", (e) => this.#received(e.detail));
  }

  connect() {
    this.socket.connect();
  }

  close() {
    this.#refreshCancel();
    this.socket.close();
  }

  echo(data) {
    return this.#send({ type: "echo", data });
  }

  ping() {
    return this.#send({ type: "ping" });
  }

  subscribe(channel) {
    return this.#send({ type: "subscribe", channel });
  }

  unsubscribe(channel) {
    return this.#send({ type: "unsubscribe", channel });
  }

  publish(channel, data) {
    return this.#send({ type: "publish", channel, data });
  }

  presence(channel) {
    return this.#send({ type: "presence", channel });
  }

  /** REST refresh (rotation), then hand the new access token to the open session. */
  async refreshNow() {
    this.#refreshCancel();
    try {
      await this.api.refresh();
    } catch (e) {
      this.log.record("event", "session", `token refresh failed: ${e.message}`);
      return;
    }
    this.#send({ type: "refresh", token: this.api.accessToken });
  }

  #send(frame) {
    return this.socket.send(JSON.stringify({ ...frame, id: this.#nextId++ }));
  }

  #received(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (frame.type === "welcome") {
      this.#refreshPlan(frame.expires_at);
      for (const room of this.rooms) this.subscribe(room);
      this.dispatchEvent(new CustomEvent("welcome", { detail: frame }));
    } else if (frame.type === "refreshed") {
      this.#refreshPlan(frame.expires_at);
    } else if (frame.type === "expiring") {
      this.refreshNow();
    } else if (frame.type === "subscribed") {
      this.rooms.add(frame.channel);
      this.dispatchEvent(new Event("rooms"));
    } else if (frame.type === "unsubscribed") {
      this.rooms.delete(frame.channel);
      this.dispatchEvent(new Event("rooms"));
    }
    this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
  }

  #refreshPlan(expiresAt) {
    this.#refreshCancel();
    const left = Date.parse(expiresAt) - Date.now();
    if (Number.isNaN(left)) return;
    const delay = Math.max(0, left - Math.min(REFRESH_LEAD_MS, left / 2));
    this.#refreshTimer = setTimeout(() => this.refreshNow(), delay);
  }

  #refreshCancel() {
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
  }
}
