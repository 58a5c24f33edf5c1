// The console's states, said once: a socket's states and the moves between them, the page's
// states, and which controls work in each. The page enables a control only in the states
// listed here, so a click can never ask for something the state cannot do.

/** One WebSocket (socket.js): its states. */
export const SocketState = Object.freeze({
  IDLE: "idle", // no socket and none wanted
  CONNECTING: "connecting", // fetching a ticket or in the handshake
  OPEN: "open",
  WAITING: "waiting", // closed by the server; reconnecting after a backoff (or a refresh)
  CLOSING: "closing", // the person asked to close; waiting for the close to complete
});

/** Every move a socket may make; socket.js refuses any other (a bug, said in the log). */
export const SOCKET_MOVES = Object.freeze({
  [SocketState.IDLE]: [SocketState.CONNECTING],
  [SocketState.CONNECTING]: [
    SocketState.OPEN,
    SocketState.WAITING, // the ticket request failed for a reason that may pass, or 1006
    SocketState.IDLE, // refused for good, or closed by the person before the handshake
    SocketState.CLOSING, // closed by the person during the handshake
  ],
  [SocketState.OPEN]: [SocketState.WAITING, SocketState.IDLE, SocketState.CLOSING],
  [SocketState.WAITING]: [SocketState.CONNECTING, SocketState.IDLE],
  [SocketState.CLOSING]: [SocketState.IDLE],
});

/** The `/ws/session/` side of the page: logged out, or logged in with the socket's state. */
export const PageState = Object.freeze({
  LOGGED_OUT: "logged-out",
  DISCONNECTED: "disconnected", // logged in, not connected
  CONNECTING: "connecting", // connecting, or waiting to reconnect
  OPEN: "open",
  CLOSING: "closing",
});

/** The page's state from whether it holds tokens and the session socket's state. */
export function pageState({ loggedIn, socket }) {
  if (!loggedIn) return PageState.LOGGED_OUT;
  return {
    [SocketState.IDLE]: PageState.DISCONNECTED,
    [SocketState.CONNECTING]: PageState.CONNECTING,
    [SocketState.WAITING]: PageState.CONNECTING,
    [SocketState.OPEN]: PageState.OPEN,
    [SocketState.CLOSING]: PageState.CLOSING,
  }[socket];
}

const ROOM_CONTROLS = ["room-subscribe", "room-unsubscribe", "room-presence", "room-publish"];
const LOGOUT = ["logout", "logout-all"];

/** The account and session controls (data-testid) enabled in each PageState; others disabled. */
export const PAGE_CONTROLS = Object.freeze({
  [PageState.LOGGED_OUT]: ["register-submit", "login-submit"],
  [PageState.DISCONNECTED]: [...LOGOUT, "session-connect"],
  [PageState.CONNECTING]: [...LOGOUT, "session-disconnect"],
  [PageState.OPEN]: [...LOGOUT, "session-disconnect", "echo-send", "ping-send", ...ROOM_CONTROLS],
  [PageState.CLOSING]: [...LOGOUT],
});

/** The anonymous `/ws/echo/` controls enabled in each SocketState of its socket. */
export const ECHO_CONTROLS = Object.freeze({
  [SocketState.IDLE]: ["echo-connect"],
  [SocketState.CONNECTING]: ["echo-disconnect"],
  [SocketState.WAITING]: ["echo-disconnect"],
  [SocketState.OPEN]: ["echo-disconnect", "echo-text-send"],
  [SocketState.CLOSING]: [],
});

/** Every control named in `table`, each with whether it is enabled in `state`. */
export function controlsFor(table, state) {
  const all = new Set(Object.values(table).flat());
  const enabled = new Set(table[state]);
  return [...all].sort().map((testid) => [testid, enabled.has(testid)]);
}
