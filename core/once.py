"""`@once`: a zero-argument factory run at most once per process, even from many threads.

`functools.cache` lets two threads racing on the first call each build their own object (and
one of them keeps it): two login throttles counting apart, or two Redis pools. Sync views
run on many threads, so worker-wide objects they reach are built under a lock.
"""

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class once(Generic[T]):  # noqa: N801  (used as a decorator, named like functools.cache)
    """Call the wrapped factory on first use, under a lock; `cache_clear()` forgets it."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._value: list[T] = []
        self.__doc__ = build.__doc__
        self.__name__ = build.__name__

    def __call__(self) -> T:
        if not self._value:
            with self._lock:
                if not self._value:
                    self._value.append(self._build())
        return self._value[0]

    def cache_clear(self) -> None:
        with self._lock:
            self._value.clear()
