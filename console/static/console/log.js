// The live frame log: every frame in and out, and each connection event, with a UTC timestamp.

const MAX_ENTRIES = 1000;
const ARROWS = { in: "←", out: "→", event: "•" };

/** `text` with token and ticket values blanked: the log is for reading, screenshots included. */
export function redact(text) {
  return text
    .replace(/("(?:token|access|refresh|ticket|password)"\s*:\s*)"[^"]*"/g, '$1"[redacted]"')
    .replace(/([?&](?:ticket|token)=)[^&\s]+/g, "$1[redacted]");
}

/** Appends entries to the list element `list` (newest last), keeping the last MAX_ENTRIES. */
export class FrameLog {
  constructor(list) {
    this.list = list;
  }

  /** One entry: `direction` "in", "out" or "event", the `endpoint` name, and the text. */
  record(direction, endpoint, text) {
    const item = document.createElement("li");
    item.dataset.testid = "log-entry";
    item.dataset.direction = direction;
    item.dataset.endpoint = endpoint;
    item.className = `log-${direction}`;
    const time = document.createElement("time");
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = now.toISOString().slice(11, 23);
    const label = document.createElement("span");
    label.className = "log-label";
    label.textContent = `${ARROWS[direction]} ${endpoint}`;
    const body = document.createElement("code");
    body.textContent = redact(String(text)); // textContent: frames are never parsed as HTML
    item.append(time, label, body);
    const atBottom = this.list.scrollTop + this.list.clientHeight >= this.list.scrollHeight - 4;
    this.list.append(item);
    while (this.list.childElementCount > MAX_ENTRIES) this.list.firstElementChild.remove();
    if (atBottom) this.list.scrollTop = this.list.scrollHeight;
  }

  clear() {
    this.list.replaceChildren();
  }
}
