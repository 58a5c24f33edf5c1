"""What the `limits` library lacks: giving back one entry of a moving window.

A login takes one attempt from its client IP's failure allowance before the password is
checked (limits' `hit`, atomic); a login whose password was right gives that attempt back
(`core.rate_limits.SharedLimiter.give_back`). limits has no public call for it, so this
module reaches into its two moving-window storages, written against limits 5 (the version
guard below):

- Redis: the window is a list of timestamps, newest first (`acquire_moving_window.lua`
  LPUSHes them); LPOP removes one, atomically.
- memory: `MemoryStorage.events[key]`, newest first, guarded by `MemoryStorage.locks[key]`.
"""

import limits
from limits.storage import MemoryStorage, RedisStorage, Storage

SUPPORTED_MAJOR = 5
if int(limits.__version__.split(".")[0]) != SUPPORTED_MAJOR:
    raise ImportError(
        f"core/limits_compat.py is written for limits {SUPPORTED_MAJOR}.x, not "
        f"{limits.__version__}: check moving_window_give_back() against its storages."
    )


def moving_window_give_back(*, storage: Storage, key: str) -> None:
    """Remove one entry from the moving window at `key` (the newest: every entry counts
    the same, and the newest is the one a Redis list removes atomically)."""
    if isinstance(storage, RedisStorage):  # cluster and sentinel storages included
        # limits types its connection as a small protocol without lpop; it is a redis-py client.
        storage.get_connection().lpop(storage.prefixed_key(key))  # type: ignore[attr-defined]
    elif isinstance(storage, MemoryStorage):
        with storage.locks[key]:
            if events := storage.events.get(key):
                del events[0]
    else:
        raise NotImplementedError(f"no moving-window give-back for {type(storage).__name__}")
