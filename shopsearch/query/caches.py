"""Two small caches for the query path: an LRU of query vectors and a short-lived result cache.

Both are keyed by the model version / index they belong to and are emptied together when the
catalogue's alias moves to a new index version. They are cachetools' caches behind one lock
(cachetools' caches are not thread-safe), with hit and miss counts for the stats.

>>> lru = LRU(2)
>>> lru.put("a", 1); lru.put("b", 2); _ = lru.get("a"); lru.put("c", 3)
>>> lru.get("b") is None, lru.get("a"), len(lru)
(True, 1, 2)
>>> now = [0.0]
>>> ttl = TTLCache(10, 5.0, clock=lambda: now[0])
>>> ttl.put("q", "answer"); now[0] = 4.0; ttl.get("q")
'answer'
>>> now[0] = 6.0; ttl.get("q") is None
True
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Hashable

import cachetools


class LRU:
    """A thread-safe least-recently-used map with hit/miss counts; ``size <= 0`` keeps nothing."""

    def __init__(self, size: int):
        self.size = size
        self._data = self._make(max(1, size))
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def _make(self, maxsize: int) -> cachetools.Cache:
        return cachetools.LRUCache(maxsize)

    def get(self, key: Hashable) -> Any | None:
        """The value stored under ``key``, or None (a miss)."""
        with self._lock:
            found = self._data.get(key)
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
            return found

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value`` under ``key``, evicting the least recently used entry when full."""
        if self.size <= 0:
            return
        with self._lock:
            self._data[key] = value

    def clear(self) -> None:
        """Forget every entry (the counts stay)."""
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


class TTLCache(LRU):
    """An LRU whose entries expire ``ttl`` seconds after they were stored."""

    def __init__(self, size: int, ttl: float, clock: Callable[[], float] = time.monotonic):
        self.ttl, self.clock = ttl, clock
        super().__init__(size)

    def _make(self, maxsize: int) -> cachetools.Cache:
        return cachetools.TTLCache(maxsize, self.ttl, timer=self.clock)
