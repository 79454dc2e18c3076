"""Two small caches for the query path: an LRU of query vectors and a short-lived result cache.

Both are keyed by the model version / index they belong to and are emptied together when the
catalogue's alias moves to a new index version.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Hashable


class LRU:
    """A thread-safe least-recently-used map with hit/miss counts."""

    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
            self.misses += 1
            return None

    def put(self, key: Hashable, value: Any) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class TTLCache(LRU):
    """An LRU whose entries expire ``ttl`` seconds after they were stored."""

    def __init__(self, size: int, ttl: float, clock=time.monotonic):
        super().__init__(size)
        self.ttl, self.clock = ttl, clock

    def get(self, key: Hashable) -> Any | None:
        found = super().get(key)
        if found is None:
            return None
        stored, value = found
        if self.clock() - stored > self.ttl:
            with self._lock:
                self._data.pop(key, None)
                self.hits -= 1
                self.misses += 1
            return None
        return value

    def put(self, key: Hashable, value: Any) -> None:
        super().put(key, (self.clock(), value))
