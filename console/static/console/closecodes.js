// WebSocket close codes in words (README "Close codes"), and what the console does after each.
//
// The rule the server promises: 4000-4499 may reconnect after doing what the code says;
// 4500-4999 must not reconnect with the same credentials. 1001/1006/1011/1012/1013 are transient.

/** What the console does after a close: reconnect, refresh the token then reconnect, or stop. */
export const Action = Object.freeze({
  RECONNECT: "reconnect",
  REFRESH_THEN_RECONNECT: "refresh-then-reconnect",
  STOP: "stop",
});

const CODES = {
  1000: ["normal closure", "the connection was closed normally"],
  1001: ["server going away", "the server is restarting or stopping"],
  1002: ["protocol error", "a frame broke the WebSocket protocol"],
  1003: ["binary frames are not supported", "this endpoint takes text frames only"],
  1006: ["connection lost", "the connection dropped without a close frame (network or server down)"],
  1008: ["too many protocol errors", "more than 20 protocol errors in a minute"],
  1007: ["invalid UTF-8", "a text frame was not valid UTF-8"],
  1009: ["message too big", "a frame was larger than the server accepts"],
  1011: ["internal error", "the server failed unexpectedly"],
  1012: ["service restart", "the server is restarting; the console reconnects"],
  1013: ["try again later", "the server's database cannot answer right now"],
  4001: ["token expired", "the access token expired; the console refreshes it and reconnects"],
  4008: ["rate limited", "too many messages or connections; the console backs off"],
  4009: ["slow client", "this page did not read fast enough"],
  4500: [
    "unauthorized",
    "your credentials were refused — log in again",
  ],
  4501: [
    "session revoked",
    "your tokens were revoked or an operator disconnected this session — log in again",
  ],
  4502: [
    "too many sessions",
    "you have too many sessions open — close another one first",
  ],
};

// A browser reports a refused handshake (a 403, e.g. a foreign origin) as 1006 before any
// "open", exactly as an unreachable server: the page cannot tell which.
export const HANDSHAKE_FAILED = Object.freeze({
  reason: "handshake failed",
  meaning:
    "the server refused the connection (check the origin / proxy Host header) or cannot be reached",
});

/** The close `code` in words: {reason, meaning}. Unknown codes are described by their range. */
export function closeDescribe(code) {
  if (CODES[code]) {
    const [reason, meaning] = CODES[code];
    return { reason, meaning };
  }
  if (code >= 4000 && code <= 4499) {
    return { reason: "retry later", meaning: "the server asks the client to reconnect later" };
  }
  if (code >= 4500 && code <= 4999) {
    return { reason: "do not reconnect", meaning: "the server refused this session for good" };
  }
  return { reason: "closed", meaning: `closed with code ${code}` };
}

/** 4500-4999: the credentials are done for; the page drops them (logs out). */
export function closeIsFatal(code) {
  return code !== null && code >= 4500 && code <= 4999;
}

/**
 * Error codes the server sends just before it closes the session (4001, 4500-4502): the page
 * says nothing of the error frame, since the close that follows says it once.
 */
export const CLOSING_ERRORS = Object.freeze([
  "unauthorized",
  "token_expired",
  "session_revoked",
  "too_many_sessions",
]);

/** What to do after the close `code` of a connection the person did not close themselves. */
export function closeAction(code) {
  if (code === 4001) return Action.REFRESH_THEN_RECONNECT;
  if ([1001, 1006, 1011, 1012, 1013].includes(code)) return Action.RECONNECT;
  if (code >= 4000 && code <= 4499) return Action.RECONNECT;
  return Action.STOP;
}
