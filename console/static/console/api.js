// Switchboard's REST API, and the tokens it hands out. The access and refresh tokens live in
// this object's private fields only: never in web storage, a cookie or a URL, so a reload
// (or closing the tab) forgets them and the person logs in again.

/** A failed REST call: HTTP `status` (0: the server could not be reached), machine `code`, words. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** Worth trying again later: the server was unreachable, busy or failing, not refusing us. */
  get retryable() {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

/** The words of an error body: {"detail": ...} or DRF's per-field {"field": ["message"]}. */
function errorWords(body) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && typeof body === "object") {
    return Object.entries(body)
      .map(([field, messages]) => `${field}: ${[].concat(messages).join(" ")}`)
      .join("; ");
  }
  return "request failed";
}

/**
 * REST calls under `base` (the site's path prefix, ending in "/").
 * Events: "tokens" (logged in or refreshed), "logged-out" (tokens forgotten; detail {why, kind}:
 * words for people, and "info" when the person asked for it, "error" when they did not).
 */
export class Api extends EventTarget {
  #access = null;
  #refresh = null;
  #refreshing = null; // the refresh in flight: rotation lets each refresh token work once

  constructor(base) {
    super();
    this.base = base;
  }

  get loggedIn() {
    return this.#access !== null;
  }

  /** The current access token, for the in-band `refresh` frame only. */
  get accessToken() {
    return this.#access;
  }

  async register({ username, email, password }) {
    return this.#call("POST", "api/auth/register/", { body: { username, email, password } });
  }

  async login(username, password) {
    const tokens = await this.#call("POST", "api/auth/token/", { body: { username, password } });
    this.#store(tokens);
  }

  /** Spend the refresh token for a new pair (rotation); one call at a time. */
  async refresh() {
    if (!this.#refreshing) {
      this.#refreshing = this.#refreshOnce().finally(() => {
        this.#refreshing = null;
      });
    }
    return this.#refreshing;
  }

  async me() {
    return this.#authed("GET", "api/auth/me/");
  }

  /** A single-use WebSocket ticket (valid 30 s) for `/ws/session/?ticket=`. */
  async ticket() {
    const answer = await this.#authed("POST", "api/realtime/ticket/", { body: {} });
    return answer.ticket;
  }

  async logout() {
    try {
      await this.#authed("POST", "api/auth/logout/", { body: { refresh: this.#refresh } });
    } finally {
      this.forget("logged out");
    }
  }

  async logoutAll() {
    try {
      await this.#authed("POST", "api/auth/logout-all/", { body: {} });
    } finally {
      this.forget("logged out everywhere");
    }
  }

  /** Drop both tokens; `why` and `kind` ("info", "error") go to the "logged-out" listeners,
   * once: forgetting tokens already forgotten says nothing. */
  forget(why, kind = "info") {
    const had = this.#access !== null;
    this.#access = null;
    this.#refresh = null;
    if (had) this.dispatchEvent(new CustomEvent("logged-out", { detail: { why, kind } }));
  }

  async #refreshOnce() {
    if (!this.#refresh) throw new ApiError(401, "unauthorized", "not logged in");
    try {
      const tokens = await this.#call("POST", "api/auth/token/refresh/", {
        body: { refresh: this.#refresh },
      });
      this.#store(tokens);
    } catch (e) {
      // A refused refresh token will never work again; an unreachable server might.
      if (!e.retryable) {
        const why = `logged out: the server refused the refresh token (${e.code}) — log in again`;
        this.forget(why, "error");
      }
      throw e;
    }
  }

  #store({ access, refresh }) {
    this.#access = access;
    this.#refresh = refresh;
    this.dispatchEvent(new Event("tokens"));
  }

  /** A call with the access token; an expired or refused one is refreshed once, then retried. */
  async #authed(method, path, options = {}) {
    if (!this.#access) throw new ApiError(401, "unauthorized", "not logged in");
    try {
      return await this.#call(method, path, { ...options, bearer: this.#access });
    } catch (e) {
      if (e.status !== 401 || !this.#refresh) throw e;
      await this.refresh();
      return this.#call(method, path, { ...options, bearer: this.#access });
    }
  }

  async #call(method, path, { body, bearer } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    let response;
    try {
      response = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit", // the API takes JWTs only; the admin's session cookie stays home
        cache: "no-store",
      });
    } catch {
      throw new ApiError(0, "unreachable", "the server cannot be reached");
    }
    const text = await response.text();
    let answer = null;
    try {
      answer = text ? JSON.parse(text) : null;
    } catch {
      answer = { detail: `HTTP ${response.status}` };
    }
    if (!response.ok) {
      const code = (answer && answer.code) || `http_${response.status}`;
      throw new ApiError(response.status, code, errorWords(answer));
    }
    return answer;
  }
}
