// Wiring: the page's forms and buttons to the API, the session, the echo socket and the log.
// What is enabled follows the state tables of states.js (`render`); each section says its own
// errors and results in its own notice, and the next success there clears the error.

import { Api } from "./api.js";
import { FrameLog } from "./log.js";
import { missingWords } from "./recovery.js";
import { Session } from "./session.js";
import { ReconnectingSocket } from "./socket.js";
import {
  ECHO_CONTROLS,
  PAGE_CONTROLS,
  PageState,
  SocketState,
  controlsFor,
  pageState,
} from "./states.js";

const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);

const base = document.body.dataset.base; // the site's path prefix, "/" unless ASGI_ROOT_PATH
const wsBase = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${base}`;
const api = new Api(base);
const log = new FrameLog($("log"));
const session = new Session({ api, log, wsBase });
const echoSocket = new ReconnectingSocket({
  name: "echo",
  log,
  urlFor: async () => `${wsBase}ws/echo/`,
});

const MAX_LIST_ENTRIES = 200; // room messages and echo replies shown (the log keeps more)

// Each section's one notice line; a request's replies and errors go to its section's.
const NOTICES = {
  account: "account-message",
  session: "session-notice",
  rooms: "room-notice",
  echo: "echo-notice",
};
const SECTION_OF_REQUEST = {
  echo: "session",
  ping: "session",
  subscribe: "rooms",
  unsubscribe: "rooms",
  publish: "rooms",
  presence: "rooms",
  // `refresh` has no section: the page sends it by itself, and a refused one ends in a close.
};

/** Say `text` in `section`'s notice; kind "error", "ok" or "info". An empty text clears it. */
function notice(section, text, kind = "info") {
  const element = $(NOTICES[section]);
  element.textContent = text;
  element.dataset.kind = kind;
}

/** The form's fields by name, then the form cleared of its password. */
function fields(form) {
  const values = Object.fromEntries(new FormData(form));
  const password = form.querySelector('input[type="password"]');
  if (password) password.value = "";
  return values;
}

function onSubmit(testid, handler) {
  $(testid).addEventListener("submit", async (event) => {
    event.preventDefault();
    await handler(event.target);
  });
}

function onClick(testid, handler) {
  $(testid).addEventListener("click", handler);
}

function listAppend(testid, entryTestid, text) {
  const list = $(testid);
  const item = document.createElement("li");
  item.dataset.testid = entryTestid;
  item.textContent = text; // textContent: frames are never parsed as HTML
  list.append(item);
  while (list.childElementCount > MAX_LIST_ENTRIES) list.firstElementChild.remove();
}

// -- state -----------------------------------------------------------------------------------

/** Show the page's state: the controls enabled in it, the status lines, the account. */
function render() {
  const state = pageState({ loggedIn: api.loggedIn, socket: session.state });
  document.body.dataset.session = state; // the tests read the states here
  for (const [testid, enabled] of controlsFor(PAGE_CONTROLS, state)) $(testid).disabled = !enabled;
  $("logged-out").hidden = state !== PageState.LOGGED_OUT;
  $("logged-in").hidden = state === PageState.LOGGED_OUT;
  const status = $("session-status");
  status.dataset.state = state;
  status.textContent = state === PageState.LOGGED_OUT ? "not connected" : session.text;

  document.body.dataset.echo = echoSocket.state;
  for (const [testid, enabled] of controlsFor(ECHO_CONTROLS, echoSocket.state)) {
    $(testid).disabled = !enabled;
  }
  const echoStatus = $("echo-status");
  echoStatus.dataset.state = echoSocket.state;
  echoStatus.textContent = echoSocket.text;
}

/** The session's traces on the page, gone: after a logout, and (but the rooms' messages)
 * after a disconnect. */
function sessionForget({ messages }) {
  $("session-id").textContent = "—";
  $("session-reply").textContent = "—";
  $("presence-users").textContent = "—";
  $("room-joined").textContent = "none";
  if (messages) $("room-messages").replaceChildren();
}

/** A socket's stop (not a logout) in words: it will not reconnect by itself. */
function stopWords({ code, reason, meaning }) {
  if (code === null) return `cannot connect: ${meaning}`;
  return `stopped after close ${code} (${reason}): ${meaning} — connect again when ready`;
}

// -- account ---------------------------------------------------------------------------------

function showUser(user) {
  $("user-name").textContent = user.username;
  $("user-email").textContent = user.email;
  $("admin-link").hidden = !user.is_staff;
}

onSubmit("register-form", async (form) => {
  const { username, email, password } = fields(form);
  try {
    await api.register({ username, email, password });
    notice("account", `registered ${username}: now log in`, "ok");
    $("login-username").value = username;
  } catch (e) {
    notice("account", `registration refused: ${e.message}`, "error");
  }
});

onSubmit("login-form", async (form) => {
  const { username, password } = fields(form);
  try {
    await api.login(username, password);
    showUser(await api.me());
    notice("account", "");
  } catch (e) {
    api.forget(""); // half logged in (tokens, but no user) is no state of this page
    notice("account", `login refused: ${e.message}`, "error");
  }
  render();
});

for (const [testid, logout] of [
  ["logout", () => api.logout()],
  ["logout-all", () => api.logoutAll()],
]) {
  onClick(testid, async () => {
    // Closed first: the server's 4501 after logout-all is then the person's doing, not news.
    session.close();
    try {
      await logout();
    } catch (e) {
      log.record("event", "rest", `${testid}: ${e.message}`);
    }
  });
}

api.addEventListener("tokens", render);
api.addEventListener("logged-out", (event) => {
  session.close();
  $("user-name").textContent = "";
  $("user-email").textContent = "";
  $("admin-link").hidden = true;
  sessionForget({ messages: true });
  notice("session", "");
  notice("rooms", "");
  notice("account", event.detail.why, event.detail.kind);
  render();
});

// -- /ws/session/ ----------------------------------------------------------------------------

session.addEventListener("state", (event) => {
  if (event.detail.state === SocketState.IDLE) sessionForget({ messages: false });
  render();
});
session.addEventListener("stopped", (event) => {
  if (!api.loggedIn) return; // logged out by it: the account section says why, once
  notice("session", stopWords(event.detail), "error");
});
session.addEventListener("welcome", (event) => {
  $("session-id").textContent = event.detail.session_id;
  notice("session", "");
});
session.addEventListener("rooms", () => {
  $("room-joined").textContent = [...session.rooms].sort().join(", ") || "none";
});
session.addEventListener("message", (event) => {
  const frame = event.detail;
  const who = frame.from ? frame.from.username : "server";
  const offset = Number.isInteger(frame.offset) ? ` #${frame.offset}` : "";
  const line = `[${frame.channel}]${offset} ${who}: ${JSON.stringify(frame.data)}`;
  listAppend("room-messages", "room-message-entry", line);
});
// Said where the gap is, among the room's messages (and in the frame log, by the session).
session.addEventListener("missed", (event) => {
  listAppend("room-messages", "room-missed-entry", missingWords(event.detail.channel));
});

// What a successful reply says in its section (the session's replies go to its reply line).
const REPLY_WORDS = {
  echo: (frame) => `echo ${JSON.stringify(frame.data)}`,
  pong: (frame, request) => `pong after ${Math.round(performance.now() - request.sentAt)} ms`,
  subscribed: (frame) => `joined ${frame.channel}`,
  unsubscribed: (frame) => `left ${frame.channel}`,
  published: (frame) => `published to ${frame.channel}`,
};

session.addEventListener("reply", (event) => {
  const { request, frame } = event.detail;
  const section = request ? SECTION_OF_REQUEST[request.type] : "session";
  if (!section) return;
  if (frame.type === "error") {
    notice(section, `${frame.code}: ${frame.message}`, "error");
    return;
  }
  const words = REPLY_WORDS[frame.type]?.(frame, request) ?? "";
  if (section === "session") {
    $("session-reply").textContent = words;
    notice("session", "");
  } else if (frame.type === "presence") {
    const names = frame.users.map((user) => user.username).join(", ");
    $("presence-users").textContent = `${frame.channel}: ${names || "nobody"}`;
    notice("rooms", "");
  } else {
    notice("rooms", words, "ok");
  }
});

onClick("session-connect", () => {
  notice("session", "");
  session.connect();
});
onClick("session-disconnect", () => session.close());

/** Send with `send`; a control clicked as the socket closes is told so in its section. */
function sendOr(section, sent) {
  if (!sent) notice(section, "not sent: the session is not open", "error");
}

onSubmit("echo-form", (form) => {
  const { text } = fields(form);
  let data = text;
  try {
    data = JSON.parse(text); // JSON when it parses, else the plain string
  } catch {
    // a plain string is fine
  }
  sendOr("session", session.echo(data));
});
onClick("ping-send", () => sendOr("session", session.ping()));

// -- rooms -----------------------------------------------------------------------------------

const room = () => $("room-name").value.trim();
onClick("room-subscribe", () => sendOr("rooms", session.subscribe(room())));
onClick("room-unsubscribe", () => sendOr("rooms", session.unsubscribe(room())));
onClick("room-presence", () => sendOr("rooms", session.presence(room())));
onSubmit("publish-form", (form) => {
  const { message } = fields(form);
  sendOr("rooms", session.publish(room(), message));
  $("room-message").value = "";
});

// -- /ws/echo/ -------------------------------------------------------------------------------

echoSocket.addEventListener("state", render);
echoSocket.addEventListener("stopped", (event) => notice("echo", stopWords(event.detail), "error"));
echoSocket.addEventListener("message", (event) => {
  listAppend("echo-replies", "echo-reply", event.detail);
  notice("echo", "");
});
onClick("echo-connect", () => {
  notice("echo", "");
  echoSocket.connect();
});
onClick("echo-disconnect", () => echoSocket.close());
onSubmit("echo-text-form", (form) => {
  const { text } = fields(form);
  if (!echoSocket.send(text)) notice("echo", "not sent: the socket is not open", "error");
});

// -- log -------------------------------------------------------------------------------------

onClick("log-clear", () => log.clear());
render();
document.body.dataset.ready = "true"; // the tests wait for this before typing
