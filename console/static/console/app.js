// Wiring: the page's forms and buttons to the API, the session, the echo socket and the log.

import { Api } from "./api.js";
import { FrameLog } from "./log.js";
import { Session } from "./session.js";
import { ReconnectingSocket } from "./socket.js";

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

function say(testid, text, kind = "info") {
  const element = $(testid);
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

// -- account ---------------------------------------------------------------------------------

function showLoggedIn(user) {
  $("logged-out").hidden = true;
  $("logged-in").hidden = false;
  $("user-name").textContent = user.username;
  $("user-email").textContent = user.email;
  $("admin-link").hidden = !user.is_staff;
}

function showLoggedOut(why) {
  session.close();
  $("logged-in").hidden = true;
  $("logged-out").hidden = false;
  $("admin-link").hidden = true;
  if (why) say("account-message", why);
}

onSubmit("register-form", async (form) => {
  const { username, email, password } = fields(form);
  try {
    await api.register({ username, email, password });
    say("account-message", `registered ${username}: now log in`, "ok");
    $("login-username").value = username;
  } catch (e) {
    say("account-message", `registration refused: ${e.message}`, "error");
  }
});

onSubmit("login-form", async (form) => {
  const { username, password } = fields(form);
  try {
    await api.login(username, password);
    showLoggedIn(await api.me());
    say("account-message", "");
  } catch (e) {
    say("account-message", `login refused: ${e.message}`, "error");
  }
});

onClick("logout", async () => {
  try {
    await api.logout();
  } catch (e) {
    log.record("event", "rest", `logout: ${e.message}`);
  }
});

onClick("logout-all", async () => {
  try {
    await api.logoutAll();
  } catch (e) {
    log.record("event", "rest", `logout everywhere: ${e.message}`);
  }
});

api.addEventListener("logged-out", (event) => showLoggedOut(event.detail));

// -- session ---------------------------------------------------------------------------------

function showStatus(testid, { state, text }) {
  say(testid, text, state);
}

session.addEventListener("status", (event) => {
  showStatus("session-status", event.detail);
  if (event.detail.state !== "stopped") $("session-stop").hidden = true;
});
session.addEventListener("stopped", (event) => {
  $("session-stop-reason").textContent = event.detail.reason;
  $("session-stop-meaning").textContent = event.detail.meaning;
  $("session-stop-code").textContent = event.detail.code ?? "—";
  $("session-stop").hidden = false;
});
session.addEventListener("welcome", (event) => {
  $("session-id").textContent = event.detail.session_id;
});
session.addEventListener("rooms", () => {
  $("room-joined").textContent = [...session.rooms].sort().join(", ") || "none";
});
session.addEventListener("frame", (event) => {
  const frame = event.detail;
  if (frame.type === "message") {
    const item = document.createElement("li");
    item.dataset.testid = "room-message-entry";
    const who = frame.from ? frame.from.username : "server";
    item.textContent = `[${frame.channel}] ${who}: ${JSON.stringify(frame.data)}`;
    $("room-messages").append(item);
  } else if (frame.type === "presence") {
    const names = frame.users.map((user) => user.username).join(", ");
    $("presence-users").textContent = `${frame.channel}: ${names || "nobody"}`;
  } else if (frame.type === "error") {
    say("session-notice", `${frame.code}: ${frame.message}`, "error");
  }
});

onClick("session-connect", () => session.connect());
onClick("session-disconnect", () => session.close());
onSubmit("echo-form", (form) => {
  const { text } = fields(form);
  let data = text;
  try {
    data = JSON.parse(text); // JSON when it parses, else the plain string
  } catch {
    // a plain string is fine
  }
  if (!session.echo(data)) say("session-notice", "not connected", "error");
});
onClick("ping-send", () => {
  if (!session.ping()) say("session-notice", "not connected", "error");
});

// -- rooms -----------------------------------------------------------------------------------

const room = () => $("room-name").value.trim();
const roomAction = (send) => () => {
  if (!send(room())) say("session-notice", "not connected", "error");
};
onClick("room-subscribe", roomAction((name) => session.subscribe(name)));
onClick("room-unsubscribe", roomAction((name) => session.unsubscribe(name)));
onClick("room-presence", roomAction((name) => session.presence(name)));
onSubmit("publish-form", (form) => {
  const { message } = fields(form);
  if (!session.publish(room(), message)) say("session-notice", "not connected", "error");
  $("room-message").value = "";
});

// -- /ws/echo/ -------------------------------------------------------------------------------

echoSocket.addEventListener("status", (event) => showStatus("echo-status", event.detail));
echoSocket.addEventListener("stopped", (event) => {
  const { reason, meaning } = event.detail;
  say("echo-status", `stopped: ${reason} — ${meaning}`, "stopped");
});
onClick("echo-connect", () => echoSocket.connect());
onClick("echo-disconnect", () => echoSocket.close());
onSubmit("echo-text-form", (form) => {
  const { text } = fields(form);
  if (!echoSocket.send(text)) say("echo-status", "not connected", "error");
});

// -- log -------------------------------------------------------------------------------------

onClick("log-clear", () => log.clear());
document.body.dataset.ready = "true"; // the tests wait for this before typing
