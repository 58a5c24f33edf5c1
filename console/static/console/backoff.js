// Reconnect delays: exponential backoff with full jitter
// (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/).

export const BACKOFF_BASE_MS = 500;
export const BACKOFF_CAP_MS = 30000;

/** Milliseconds to wait before attempt number `attempt` (0 first): random in [0, min(cap, base·2^attempt)). */
export function backoffDelay(attempt, { base = BACKOFF_BASE_MS, cap = BACKOFF_CAP_MS } = {}) {
  const ceiling = Math.min(cap, base * 2 ** attempt);
  return Math.floor(Math.random() * ceiling);
}
