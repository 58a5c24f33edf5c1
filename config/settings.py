"""Switchboard settings: one module, every value from the environment (see .env.example).

(Over 300 lines on purpose: the house style keeps every setting in this one env-driven
module, in banner sections, so that one file says how a deployment is configured.)
"""

import ipaddress
from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from config.log_servers import server_loggers
from config.redis_topology import RedisTopology
from core.version import __version__

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# Optional file of variables (real environment variables win). DJANGO_ENV_FILE= (empty)
# reads none: tests set that, so a developer's .env cannot leak into them.
ENV_FILE = env.str("DJANGO_ENV_FILE", default=str(BASE_DIR / ".env"))
if ENV_FILE and Path(ENV_FILE).exists():
    env.read_env(ENV_FILE)

# ---------------------------------------------------------------------------
# CORE
# ---------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)

# An empty value (as in a copied .env.example) counts as unset.
SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
if DEBUG:
    SECRET_KEY = SECRET_KEY or "dev-only-insecure-key-never-use-in-production"
else:
    if not SECRET_KEY:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG=0 "
            "(or set DJANGO_DEBUG=1 for local development)."
        )

# Loopback only unless told otherwise: safe by default, and it lets `make run` work.
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "accounts.admin_apps.SwitchboardAdminConfig",  # django.contrib.admin, throttled login
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "accounts",
    "realtime",
    "operations",
    "console",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# ---------------------------------------------------------------------------
# DATABASE
# ---------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Wait for a writer instead of failing at once: daphne runs sync views in threads.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("timeout", 20)
    # Transactions take the write lock when they begin: a deferred one that read first
    # cannot wait for another writer (SQLite refuses at once to avoid a deadlock), so two
    # workers recording sessions at the same moment would get "database is locked".
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A server that drops packets must not hold the one thread that runs lookups for minutes.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    # psycopg's connection pool (Django 5.1+): without it every database_sync_to_async call
    # opens a new connection, and a handshake's three calls spent most of their time there
    # (docs/perf/README.md). A worker runs its queries on one thread, so 2 connections serve
    # it; 8 leave room for admin and REST views under load.
    if env.bool("DATABASE_POOL", default=True):
        DATABASES["default"]["OPTIONS"]["pool"] = {"min_size": 2, "max_size": 8, "timeout": 5}
# PgBouncer in transaction pooling mode (docs/DEPLOYMENT.md#postgresql-connections) gives each
# transaction whichever server connection is free, so nothing may outlive a transaction: not
# a server-side cursor (QuerySet.iterator() keeps one open across transactions in autocommit),
# not a prepared statement (Django turns psycopg's off already; kept off here whatever
# DATABASE_URL's options say).
if env.bool("DATABASE_PGBOUNCER", default=False):
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured(
            "DATABASE_PGBOUNCER=1 needs DATABASE_URL to name PgBouncer "
            "(postgres://user:password@host:6432/db); unset it for another database."
        )
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = None

# ---------------------------------------------------------------------------
# CACHE AND CHANNELS
# ---------------------------------------------------------------------------
# Where Redis is (config/redis_topology.py; docs/CONFIGURATION.md#redis): one server, or a
# master that Sentinel names, and the channel layer there or sharded over several servers.
REDIS_TOPOLOGY = RedisTopology.from_env(
    url=env("REDIS_URL", default=""),
    sentinels=env("REDIS_SENTINELS", default=""),
    sentinel_master=env("REDIS_SENTINEL_MASTER", default=""),
    layer_urls=env("REDIS_LAYER_URLS", default=""),
)
REDIS_URL = REDIS_TOPOLOGY.url  # "" when there is no Redis; the sentinels' master by name
REDIS_SENTINELS = REDIS_TOPOLOGY.sentinels
REDIS_SENTINEL_MASTER = REDIS_TOPOLOGY.sentinel_master
REDIS_LAYER_URLS = REDIS_TOPOLOGY.layer_urls
# For servers whose URL names none, and for the sentinels themselves.
REDIS_PASSWORD = env("REDIS_PASSWORD", default="")
REDIS_SENTINEL_PASSWORD = env("REDIS_SENTINEL_PASSWORD", default="")

# redis-py 8 defaults to a 5 s socket timeout, the same as channels-redis' 5 s blocking
# read: every idle consumer would die with 1011. The read timeout must exceed it.
REDIS_SOCKET_TIMEOUT = 15
REDIS_CONNECT_TIMEOUT = 2
# One command of Switchboard's own clients (tickets, heartbeats, limits, cache reads): longer
# than the connect timeout, because a worker busy with a burst of handshakes reads replies
# late, and a late reply is not an outage.
REDIS_COMMAND_TIMEOUT = 5
# Every Redis connection comes from core/redis.py: each pool (one per event loop and layer,
# one for sync code) holds at most REDIS_MAX_CONNECTIONS; a caller finding it full waits for
# a free one, at most REDIS_POOL_TIMEOUT seconds (a busy pool is not an outage).
REDIS_MAX_CONNECTIONS = env.int("REDIS_MAX_CONNECTIONS", default=100)
REDIS_POOL_TIMEOUT = env.float("REDIS_POOL_TIMEOUT", default=10.0)
if REDIS_MAX_CONNECTIONS < 2 or REDIS_POOL_TIMEOUT <= 0:
    raise ImproperlyConfigured(
        "REDIS_MAX_CONNECTIONS must be at least 2 and REDIS_POOL_TIMEOUT above 0 seconds."
    )
# Group membership lapses after this long unless renewed; sessions renew it on every
# token refresh, which JWT_ACCESS_TTL forces far more often (checked at startup).
CHANNEL_GROUP_EXPIRY = 86400

# Room fan-out (realtime/rooms/fanout.py): each worker reads room messages on one channel of
# its own, which holds at most this many undelivered messages; past it Redis refuses them,
# counted in switchboard_room_fanout_dropped_total and logged. (Redis only: the in-memory
# layer keeps channels' default of 100 and drops silently; it serves one process anyway.)
WS_ROOM_FANOUT_CAPACITY = env.int("WS_ROOM_FANOUT_CAPACITY", default=1000)

if REDIS_URL:
    CHANNEL_LAYER_CONFIG = {
        "hosts": REDIS_TOPOLOGY.layer_hosts(
            socket_timeout=REDIS_SOCKET_TIMEOUT, socket_connect_timeout=REDIS_CONNECT_TIMEOUT
        ),
        "group_expiry": CHANNEL_GROUP_EXPIRY,
        # A sender checks the receiver's capacity: every layer names the worker channels'.
        "channel_capacity": {"rooms.*": WS_ROOM_FANOUT_CAPACITY},
    }
    CHANNEL_LAYERS: dict[str, dict[str, Any]] = {
        "default": {
            "BACKEND": "core.channel_layer.RedisChannelLayer",
            "CONFIG": CHANNEL_LAYER_CONFIG,
        },
        # The same Redis and keys; only the workers' room channels are read through it.
        "rooms": {
            "BACKEND": "core.channel_layer.RedisChannelLayer",
            "CONFIG": {**CHANNEL_LAYER_CONFIG, "capacity": WS_ROOM_FANOUT_CAPACITY},
        },
    }
    CACHES = {
        "default": {
            "BACKEND": "core.redis_cache.FactoryRedisCache",
            # Connections from core/redis.py (its timeouts and pool size).
            "LOCATION": REDIS_URL,
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# ---------------------------------------------------------------------------
# AUTH AND JWT
# ---------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

JWT_ACCESS_TTL = env.int("JWT_ACCESS_TTL", default=300)
JWT_REFRESH_TTL = env.int("JWT_REFRESH_TTL", default=86400)
if not 0 < JWT_ACCESS_TTL < CHANNEL_GROUP_EXPIRY:
    raise ImproperlyConfigured(
        f"JWT_ACCESS_TTL must be between 1 and {CHANNEL_GROUP_EXPIRY - 1} seconds: sessions "
        "renew their channel-layer group membership on each token refresh."
    )

# Keys: HS256 with JWT_SIGNING_KEY (default DJANGO_SECRET_KEY), or RS256/ES256 with PEM key
# files. After a rotation the old keys still verify until removed from the previous list.
JWT_ALGORITHM = env.str("JWT_ALGORITHM", default="HS256")
if JWT_ALGORITHM not in ("HS256", "RS256", "ES256"):
    raise ImproperlyConfigured("JWT_ALGORITHM must be HS256, RS256 or ES256.")


def _key_file(variable: str, path: str | None = None) -> str:
    path = env.str(variable, default="") if path is None else path
    if not path:
        raise ImproperlyConfigured(
            f"{variable} must name a PEM file when JWT_ALGORITHM={JWT_ALGORITHM}."
        )
    try:
        return Path(path).read_text()
    except OSError as e:
        raise ImproperlyConfigured(f"{variable}: cannot read {path} ({e.strerror}).") from e


if JWT_ALGORITHM == "HS256":
    JWT_SIGNING_KEY = env("JWT_SIGNING_KEY", default="") or SECRET_KEY
    JWT_VERIFYING_KEY = ""
    JWT_PREVIOUS_KEYS = tuple(env.list("JWT_PREVIOUS_SIGNING_KEYS", default=[]))
else:
    JWT_SIGNING_KEY = _key_file("JWT_PRIVATE_KEY_FILE")
    JWT_VERIFYING_KEY = _key_file("JWT_PUBLIC_KEY_FILE")
    JWT_PREVIOUS_KEYS = tuple(
        _key_file("JWT_PREVIOUS_PUBLIC_KEY_FILES", path)
        for path in env.list("JWT_PREVIOUS_PUBLIC_KEY_FILES", default=[])
    )

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=JWT_ACCESS_TTL),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=JWT_REFRESH_TTL),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "ALGORITHM": JWT_ALGORITHM,
    "SIGNING_KEY": JWT_SIGNING_KEY,
    "VERIFYING_KEY": JWT_VERIFYING_KEY,
    "AUDIENCE": env("JWT_AUDIENCE", default="switchboard"),
    "ISSUER": env("JWT_ISSUER", default="switchboard"),
    "LEEWAY": 0,
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    "UPDATE_LAST_LOGIN": False,
}
JWT_MIN_KEY_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash
if JWT_ALGORITHM == "HS256" and any(
    len(key.encode()) < JWT_MIN_KEY_BYTES for key in (JWT_SIGNING_KEY, *JWT_PREVIOUS_KEYS)
):
    raise ImproperlyConfigured(
        f"JWT_SIGNING_KEY (or DJANGO_SECRET_KEY, which it defaults to) and each of "
        f"JWT_PREVIOUS_SIGNING_KEYS must be at least "
        f"{JWT_MIN_KEY_BYTES} bytes for HS256: a shorter key can be brute-forced offline."
    )
# What daphne's --websocket_timeout is set to (its default: a day); `check --deploy` warns
# when channels-redis would forget group members before daphne closes the socket.
DAPHNE_WEBSOCKET_TIMEOUT = env.int("DAPHNE_WEBSOCKET_TIMEOUT", default=86400)
# The longest raw token either door accepts; anything longer is refused before decoding.
JWT_MAX_TOKEN_BYTES = 4096
# A WebSocket handshake waits this long for its one user lookup before answering
# `unavailable` (close 1013) instead of hanging on a locked or unreachable database.
AUTH_DB_TIMEOUT = env.float("AUTH_DB_TIMEOUT", default=2.0)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.VersionedJWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["accounts.parsers.JSONParser"],  # deep JSON: 400, not 500
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "accounts.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Switchboard API",
    "DESCRIPTION": (
        "JWT login and account endpoints. The WebSocket protocol is in docs/asyncapi.yaml."
    ),
    "VERSION": __version__,  # core/version.py: the one version
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",  # served from our static files, never from a CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

ACCOUNTS_ALLOW_REGISTRATION = env.bool("ACCOUNTS_ALLOW_REGISTRATION", default=True)
# limits' rate strings: https://limits.readthedocs.io/en/stable/quickstart.html#rate-limit-string-notation
LOGIN_FAILURES_PER_USERNAME = env("LOGIN_FAILURES_PER_USERNAME", default="5/15minutes")
LOGIN_FAILURES_PER_IP = env("LOGIN_FAILURES_PER_IP", default="100/hour")

# ---------------------------------------------------------------------------
# WEBSOCKETS
# ---------------------------------------------------------------------------
WS_MAX_MESSAGE_BYTES = env.int("WS_MAX_MESSAGE_BYTES", default=65536)
WS_MESSAGES_PER_SECOND = env.float("WS_MESSAGES_PER_SECOND", default=20.0)
WS_MESSAGE_BURST = env.int("WS_MESSAGE_BURST", default=40)
WS_EXPIRY_WARNING = env.int("WS_EXPIRY_WARNING", default=30)
WS_ECHO_PREFIX = env.str("WS_ECHO_PREFIX", default="Server received: ")
WS_ALLOWED_ORIGINS = env.list("WS_ALLOWED_ORIGINS", default=[])
if not 0 < WS_MAX_MESSAGE_BYTES <= 1024 * 1024:
    raise ImproperlyConfigured(
        "WS_MAX_MESSAGE_BYTES must be between 1 and 1048576: daphne drops larger messages "
        "without a close frame before the application sees them."
    )
# Install realtime.server.daphne_adapter (1003/1008/1009 close codes, close reasons, early 1009,
# access-log redaction). Only tests turn it off, to show what stock daphne does.
WS_DAPHNE_COMPAT = env.bool("WS_DAPHNE_COMPAT", default=True)
# Rooms: the authorization policy (a dotted path to a function(*, user, channel, action))
# and the most rooms one connection may join.
REALTIME_CHANNEL_POLICY = env(
    "REALTIME_CHANNEL_POLICY", default="realtime.rooms.policy.default_channel_policy"
)
WS_MAX_SUBSCRIPTIONS = env.int("WS_MAX_SUBSCRIPTIONS", default=100)
# Channel namespaces (realtime/rooms/namespaces.py): the part of a room's name before its
# first "." mapped to its history, presence, join/leave and publishing rules, as JSON, e.g.
# {"chat": {"history_size": 100, "history_ttl": 300, "join_leave": true}}. Checked at startup.
REALTIME_NAMESPACES = env.json("REALTIME_NAMESPACES", default={})
# Seconds a room's epoch and last offset outlive its last publication (messages: history_ttl).
WS_HISTORY_META_TTL = env.int("WS_HISTORY_META_TTL", default=7 * 24 * 3600)
# Seconds after which a silent worker's (e.g. SIGKILLed) presence entries stop counting.
WS_PRESENCE_TTL = env.int("WS_PRESENCE_TTL", default=30)
# Sessions: at most this many online per user (one more is closed 4502); at most this many
# connection attempts per client IP per minute, across all workers (over it: 4008; 0: off);
# closed sessions kept this many days in the registry (`manage.py prune_sessions`).
WS_MAX_SESSIONS_PER_USER = env.int("WS_MAX_SESSIONS_PER_USER", default=20)
WS_CONNECTS_PER_MINUTE = env.int("WS_CONNECTS_PER_MINUTE", default=120)
WS_SESSION_RETENTION_DAYS = env.int("WS_SESSION_RETENTION_DAYS", default=30)
# Bytes a connection may have queued for sending before it is closed as a slow client (4009).
WS_MAX_SEND_BACKLOG = env.int("WS_MAX_SEND_BACKLOG", default=1024 * 1024)
if WS_MAX_SEND_BACKLOG < WS_MAX_MESSAGE_BYTES:
    raise ImproperlyConfigured(
        "WS_MAX_SEND_BACKLOG must be at least WS_MAX_MESSAGE_BYTES: one message must fit."
    )
# Seconds a connection without credentials gets to send {"type":"auth","token":…}.
WS_AUTH_TIMEOUT = env.float("WS_AUTH_TIMEOUT", default=10.0)
# Bind each WebSocket ticket to the client IP that asked for it.
WS_TICKET_BIND_IP = env.bool("WS_TICKET_BIND_IP", default=False)
# Tickets one client IP may ask for per minute (DRF's rate notation).
WS_TICKETS_PER_MINUTE = env.int("WS_TICKETS_PER_MINUTE", default=60)
# Protocol errors tolerated per minute before the session is closed with 1008.
WS_MAX_PROTOCOL_ERRORS = 20
# A session dropping more than WS_MESSAGE_BURST frames within this many seconds is closed 4008.
WS_RATE_ABUSE_WINDOW = 10

# ---------------------------------------------------------------------------
# PROXIES
# ---------------------------------------------------------------------------
# CIDRs of the reverse proxies in front of the workers (e.g. 127.0.0.1/32 for nginx on the
# same host). Only requests from these have X-Forwarded-For read (from the right).
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
try:
    TRUSTED_PROXY_NETWORKS = tuple(
        ipaddress.ip_network(cidr.strip(), strict=False) for cidr in TRUSTED_PROXIES
    )
except ValueError as e:
    raise ImproperlyConfigured(f"TRUSTED_PROXIES must be a comma list of CIDRs: {e}") from e
# The path prefix the site is served under, if any (daphne's Daphne-Root-Path header is
# ignored: a client could send it).
ASGI_ROOT_PATH = env.str("ASGI_ROOT_PATH", default="").rstrip("/")

# ---------------------------------------------------------------------------
# STATIC FILES
# ---------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "config.static_storage.ManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# ---------------------------------------------------------------------------
# SECURITY (production values; see docs/DEPLOYMENT.md, "Production checklist")
# ---------------------------------------------------------------------------
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
if env.bool("DJANGO_BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"

# ---------------------------------------------------------------------------
# METRICS
# ---------------------------------------------------------------------------
# Bearer token for GET /metrics. Unset: staff JWTs, and loopback clients when DEBUG is off.
# Several workers: set PROMETHEUS_MULTIPROC_DIR (read by prometheus-client itself).
METRICS_TOKEN = env("METRICS_TOKEN", default="")

# ---------------------------------------------------------------------------
# LOGGING
# ---------------------------------------------------------------------------
LOG_FILE = Path(env("LOG_FILE", default=str(BASE_DIR / "logs" / "websocket_errors.log")))
LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
# Bytes LOG_FILE reaches before it rotates (5 old files kept); 0 never rotates in-process.
LOG_FILE_MAX_BYTES = env.int("LOG_FILE_MAX_BYTES", default=10 * 1024 * 1024)
# Security events only (logger switchboard.security), in a file nothing in-process rotates.
SECURITY_LOG_FILE = Path(env("SECURITY_LOG_FILE", default="") or LOG_FILE.parent / "security.log")
SECURITY_LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
# Django's 4xx records (django.request "Not Found", django.security.*) written per minute,
# per process; the rest are counted in one summary line (config/log_noise.py).
LOG_4XX_PER_MINUTE = env.int("LOG_4XX_PER_MINUTE", default=10)
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOG_FORMAT = env("LOG_FORMAT", default="text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'text' or 'json', not {LOG_FORMAT!r}.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_secrets": {"()": "core.log_redaction.RedactSecretsFilter"},
        "worker": {"()": "config.log_format.WorkerFilter"},
        "room_overload": {"()": "realtime.rooms.overload.RoomOverloadFilter"},
        "client_errors": {
            "()": "config.log_noise.ClientErrorRateFilter",
            "per_minute": LOG_4XX_PER_MINUTE,
        },
    },
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(worker)s] %(message)s"},
        "json": {
            "()": "config.log_format.JsonFormatter",
            "format": "%(levelname)s %(name)s %(message)s %(worker)s",
            "rename_fields": {"levelname": "level", "name": "logger", "message": "event"},
            "timestamp": "timestamp",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["client_errors", "worker", "redact_secrets"],
        },
        "error_file": {
            "class": "logging.handlers.RotatingFileHandler",
            "filename": str(LOG_FILE),
            "maxBytes": LOG_FILE_MAX_BYTES,
            "backupCount": 5,
            "encoding": "utf-8",
            "level": "WARNING",
            "formatter": LOG_FORMAT,
            "filters": ["client_errors", "worker", "redact_secrets"],
        },
        # Why not rotating: a RotatingFileHandler deletes its oldest file when it rotates, and
        # each worker rotates the shared file by its own count, so noise could erase the
        # evidence. This file is only appended to (O_APPEND: the workers' lines do not
        # overwrite each other); rotate it outside the process (logrotate): the handler
        # reopens the file when it is moved away.
        "security_file": {
            "class": "logging.handlers.WatchedFileHandler",
            "filename": str(SECURITY_LOG_FILE),
            "encoding": "utf-8",
            "formatter": LOG_FORMAT,
            "filters": ["worker", "redact_secrets"],
        },
    },
    "root": {"handlers": ["console", "error_file"], "level": "WARNING"},
    "loggers": {
        "switchboard": {"level": LOG_LEVEL},
        # Security events go to SECURITY_LOG_FILE, and on (propagate) to the console and
        # LOG_FILE, where they are WARNING and above and so always written, beside the rest.
        "switchboard.security": {"level": "INFO", "handlers": ["security_file"]},
        "django": {"level": "INFO"},
        "daphne": {"level": "INFO"},
        # uvicorn's and granian's loggers, which they configured before this runs: through
        # the root's handlers above, redacted (config/log_servers.py).
        **server_loggers(),
        # Its over-capacity record: a room message dropped (realtime/rooms/overload.py).
        "channels_redis.core": {"level": "INFO", "filters": ["room_overload"]},
    },
}
