// `/ws/session/`: connect with a single-use ticket, keep the access token fresh (REST refresh,
// then the in-band `refresh` frame), rejoin the person's rooms after every reconnect (from
// where each room's stream stands, in channels with history: recovery.js), match each reply
// to the request it answers, and log out for good after a 4500-4999 close.

import { CLOSING_ERRORS } from "./closecodes.js";
import {
  Delivery,
  MissReason,
  messageStep,
  missingWords,
  since,
  subscribedStep,
} from "./recovery.js";
import { ReconnectingSocket } from "./socket.js";
import { SocketState } from "./states.js";

// Refresh this long before the access token expires (at most half its remaining life): ahead
// of the server's own `expiring` warning (30 s before, by default).
const REFRESH_LEAD_MS = 60000;

/**
 * Events: "state" and "stopped" (those of ReconnectingSocket; on a 4500-4999 close the tokens
 * are dropped first, so `api` has already said "logged-out"), "welcome" (the frame), "message"
 * (a room's message frame, each once: a copy of one already shown, by offset, is not), "missed"
 * (detail {channel, reason}: some of its messages may be missing, one of MissReason), "rooms"
 * (the set of joined rooms changed) and "reply" (detail
 * {request, frame}: a reply, or an error frame, with the request it answers: {type, channel,
 * sentAt}, or null for an error that names no request).
 */
export class Session extends EventTarget {
  #nextId = 1;
  #refreshTimer = null;
  #asked = new Map(); // id → the request it was sent with, until its reply comes
  #positions = new Map(); // room → {epoch, offset} of its last message shown (history only)

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
    this.socket.addEventListener("state", (e) => this.#stateChanged(e.detail));
    this.socket.addEventListener("stopped", (e) => this.#stopped(e.detail));
    this.socket.addEventListener("message", (e) => this.#received(e.detail));
  }

  /** One of SocketState. */
  get state() {
    return this.socket.state;
  }

  get text() {
    return this.socket.text;
  }

  /** Connect (only when not connected); false otherwise. */
  connect() {
    return this.socket.connect();
  }

  /** The person's close: the rooms are left too (a new connection starts with none). */
  close() {
    this.#refreshCancel();
    this.#roomsClear();
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
    const id = this.#nextId++;
    if (!this.socket.send(JSON.stringify({ ...frame, id }))) return false;
    // The type and channel only: a refresh frame's token is not kept.
    this.#asked.set(id, { type: frame.type, channel: frame.channel, sentAt: performance.now() });
    return true;
  }

  #stateChanged(detail) {
    if (detail.state !== SocketState.OPEN) this.#asked.clear(); // no reply will come now
    this.dispatchEvent(new CustomEvent("state", { detail }));
  }

  #stopped(detail) {
    this.#refreshCancel();
    this.#roomsClear();
    if (detail.fatal) {
      // 4500-4999: these credentials must not connect again, so they are dropped for real.
      const why = `logged out after close ${detail.code} (${detail.reason}): ${detail.meaning}`;
      this.api.forget(why, "error");
    }
    this.dispatchEvent(new CustomEvent("stopped", { detail }));
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
      for (const room of this.rooms) this.#resubscribe(room);
      this.dispatchEvent(new CustomEvent("welcome", { detail: frame }));
    } else if (frame.type === "refreshed") {
      this.#refreshPlan(frame.expires_at);
    } else if (frame.type === "expiring") {
      this.refreshNow();
    } else if (frame.type === "subscribed") {
      this.rooms.add(frame.channel);
      this.dispatchEvent(new Event("rooms"));
      const { position, missed } = subscribedStep(this.#position(frame.channel), frame);
      this.#positionSet(frame.channel, position);
      if (missed) this.#missed(frame.channel, missed);
    } else if (frame.type === "unsubscribed") {
      this.rooms.delete(frame.channel);
      this.#positions.delete(frame.channel);
      this.dispatchEvent(new Event("rooms"));
    } else if (frame.type === "message") {
      this.#message(frame);
    }
    const request = this.#asked.get(frame.id) ?? null;
    this.#asked.delete(frame.id);
    if (frame.type === "error" && CLOSING_ERRORS.includes(frame.code)) return; // the close says it
    if (request || frame.type === "error") {
      this.dispatchEvent(new CustomEvent("reply", { detail: { request, frame } }));
    }
  }

  /** Join `channel` again after a reconnect: from its position, when it has one. */
  #resubscribe(channel) {
    const position = this.#position(channel);
    const frame = { type: "subscribe", channel };
    return this.#send(position ? { ...frame, since: since(position) } : frame);
  }

  #message(frame) {
    if (!this.rooms.has(frame.channel)) {
      // Not (or no longer) joined: shown as it is, with no position to keep.
      this.dispatchEvent(new CustomEvent("message", { detail: frame }));
      return;
    }
    const { position, delivery } = messageStep(this.#position(frame.channel), frame);
    if (delivery === Delivery.DROP) return;
    this.#positionSet(frame.channel, position);
    if (delivery === Delivery.MISSED) this.#missed(frame.channel, MissReason.EPOCH_CHANGED);
    this.dispatchEvent(new CustomEvent("message", { detail: frame }));
  }

  #missed(channel, reason) {
    this.log.record("event", "session", missingWords(channel));
    this.dispatchEvent(new CustomEvent("missed", { detail: { channel, reason } }));
  }

  #position(channel) {
    return this.#positions.get(channel) ?? null;
  }

  #positionSet(channel, position) {
    if (position) this.#positions.set(channel, position);
    else this.#positions.delete(channel);
  }

  #roomsClear() {
    this.#positions.clear();
    if (this.rooms.size === 0) return;
    this.rooms.clear();
    this.dispatchEvent(new Event("rooms"));
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
