"""The WebSocket side's Prometheus metrics: connections, frames, closes, the channel layer,
room fan-out and the session registry (served at /metrics by `operations`). Every label
value comes from a fixed set, never from user input.
"""

import time

from prometheus_client import Counter, Gauge, Histogram

# Re-exported: call sites count through this module alone (`metrics.labelled(metrics.WS_SENT, …)`).
from core.metrics import label as label
from core.metrics import labelled as labelled
from realtime.protocol.codes import CloseCode, ErrorCode

ENDPOINTS = frozenset({"echo", "session"})
# A handshake is accepted, refused at the edge, or refused with an error code's refusal.
CONNECTION_OUTCOMES = frozenset({"accepted", "rate_limited", "origin_refused"}) | frozenset(
    code.refusal[1] for code in ErrorCode if code.refusal is not None
)
SERVER_TYPES = frozenset(
    {
        "welcome",
        "echo",
        "pong",
        "refreshed",
        "expiring",
        "error",
        "subscribed",
        "unsubscribed",
        "published",
        "presence",
        "message",
        "history",
        "join",
        "leave",
        "text",
        "binary",
    }
)
CLOSE_CODES = frozenset(str(int(code)) for code in CloseCode)
ERROR_CODES = frozenset(str(code) for code in ErrorCode)
LAYER_OPERATIONS = frozenset({"group_add", "group_discard", "group_send", "send", "receive"})
FANOUT_EVENTS = frozenset(
    {"session.revoke", "session.revoke_token", "session.disconnect", "room.message"}
)


def endpoint_label(path: str) -> str:
    """The `endpoint` label of a WebSocket path: `echo`, `session` or `other`."""
    return label(path.strip("/").removeprefix("ws/"), ENDPOINTS)


WS_OPEN = Gauge(
    "switchboard_ws_connections_open",
    "Open WebSocket connections.",
    ["endpoint"],
    multiprocess_mode="livesum",
)
WS_CONNECTIONS = Counter(
    "switchboard_ws_connections",
    "WebSocket connection attempts by outcome.",
    ["endpoint", "outcome"],
)
WS_RECEIVED = Counter(
    "switchboard_ws_messages_received", "Client frames received.", ["endpoint", "type"]
)
WS_SENT = Counter("switchboard_ws_messages_sent", "Frames sent to clients.", ["endpoint", "type"])
WS_PROTOCOL_ERRORS = Counter(
    "switchboard_ws_protocol_errors", "Error frames sent, by error code.", ["code"]
)
WS_CLOSES = Counter(
    "switchboard_ws_closes", "WebSocket closes, by close code.", ["endpoint", "code"]
)
FANOUT_LATENCY = Histogram(
    "switchboard_fanout_latency_seconds",
    "From a server-side send to its delivery on the receiving worker.",
    ["event"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
LAYER_CONFIG_MISMATCH = Gauge(
    "switchboard_layer_config_mismatch",
    "Other alive workers whose channel layer (REDIS_LAYER_URLS) differs from this worker's.",
    multiprocess_mode="livemax",
)
LAYER_SHARDS_DOWN = Gauge(
    "switchboard_channel_layer_shards_down",
    "Shards of the channel layer this worker cannot reach (with one Redis: 1 while it is down).",
    multiprocess_mode="livemax",
)
LAYER_FAILURES = Counter(
    "switchboard_channel_layer_failures", "Channel-layer operations that failed.", ["operation"]
)
ROOM_FANOUT_DROPPED = Counter(
    "switchboard_room_fanout_dropped",
    "Room messages not delivered: refused by a full worker channel (once per worker), or "
    "not sent to one subscriber.",
    ["reason"],
)
# Room history (realtime/rooms/history.py, feed.py). `namespace` is a configured namespace's
# name (REALTIME_NAMESPACES: a set the operator fixed), never a room's.
HISTORY_PUBLISHED = Counter(
    "switchboard_history_published",
    "Publications stored in a room's history, by namespace.",
    ["namespace"],
)
HISTORY_STORE_FAILURES = Counter(
    "switchboard_history_store_failures",
    "Publications refused (answered `unavailable`, not delivered): their history could not be "
    "stored.",
    ["namespace"],
)
HISTORY_LENGTH = Histogram(
    "switchboard_history_length",
    "Messages in a room's history after each publication, by namespace.",
    ["namespace"],
    buckets=(1, 10, 100, 1000, 10000),
)
HISTORY_RECOVERIES = Counter(
    "switchboard_history_recoveries",
    "Subscribes with `since`, by namespace and result (recovered, not_recovered).",
    ["namespace", "result"],
)
HISTORY_DUPLICATES = Counter(
    "switchboard_history_duplicates",
    "Room messages a worker received twice or after their offset was handled (dropped).",
)
HISTORY_GAPS = Counter(
    "switchboard_history_gaps",
    "Room messages missing from a worker's channel: read from history (filled) or lost "
    "(skipped: no longer in history).",
    ["outcome"],
)

REGISTRY_CLOSES_PENDING = Gauge(
    "switchboard_registry_closes_pending",
    "Session closes whose registry write failed, waiting for a retry.",
    multiprocess_mode="livesum",
)
REGISTRY_CLOSE_RETRIES = Counter(
    "switchboard_registry_close_retries",
    "Retries of the failed session-close writes, by outcome (recorded, failed).",
    ["outcome"],
)
REGISTRY_CLOSES_DROPPED = Counter(
    "switchboard_registry_closes_dropped",
    "Session closes not kept for retries: too many were waiting already.",
)


def fanout_observe(kind: str, event: dict[str, object]) -> None:
    """Record how long a server-side event (its `sent_at`) took to reach this worker."""
    sent_at = event.get("sent_at")
    if isinstance(sent_at, int | float):
        FANOUT_LATENCY.labels(kind).observe(max(0.0, time.time() - sent_at))
