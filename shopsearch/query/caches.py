"""The query path's caches: query vectors (a local LRU in front of a Redis shared by every worker)
and a short-lived result cache.

The local caches are keyed by the model version / index they belong to and are emptied together
when the catalogue's alias moves to a new index version. They are cachetools' caches behind one
lock (cachetools' caches are not thread-safe), with hit and miss counts for the stats.

:class:`QueryVectors` puts the shared layer behind the local LRU: a vector encoded by one proxy
worker is read by every other worker of the host (or of the cluster, with one Redis), stored as
float32 bytes under the model version and the normalised text. Redis down or slow: the local
LRU and the encoder answer, and Redis is asked again after ``RETRY_SECONDS``; a search never
fails for the cache.

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

import concurrent.futures
import threading
import time
from typing import Any, Callable, Hashable
from urllib.parse import urlsplit, urlunsplit

import cachetools
import numpy as np
import redis

RETRY_SECONDS = 5.0      # after a Redis failure, the shared cache rests this long (no timeout paid per query meanwhile)
REDIS_TIMEOUT = 0.1      # seconds: a local Redis answers in well under a millisecond; slower means trouble
KEY_PREFIX = "shopsearch:qv:"


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


def shared_cache_url(vector_cache_url: str, redis_url: str) -> str | None:
    """The shared cache's Redis: the setting, or database 2 of ``redis_url``'s server; None when ``off``.

    >>> shared_cache_url("", "redis://127.0.0.1:6379/0")
    'redis://127.0.0.1:6379/2'
    >>> shared_cache_url("off", "redis://h:1/0") is None
    True
    """
    if vector_cache_url.strip().lower() == "off":
        return None
    if vector_cache_url.strip():
        return vector_cache_url.strip()
    parts = urlsplit(redis_url)
    return urlunsplit((parts.scheme, parts.netloc, "/2", parts.query, parts.fragment))


def vector_key(model_version: str | None, text: str) -> str:
    """The shared cache's key of a query vector: model version and normalised text.

    >>> vector_key("minilm@1", "red shoes")
    'shopsearch:qv:minilm@1:red shoes'
    """
    return f"{KEY_PREFIX}{model_version or '-'}:{text}"


def pack_vector(vector: list[float]) -> bytes:
    """A vector as float32 bytes (4 bytes a dimension; the encoders' own precision, so nothing is lost).

    >>> unpack_vector(pack_vector([0.5, -1.0]))
    [0.5, -1.0]
    """
    return np.asarray(vector, dtype=np.float32).tobytes()


def unpack_vector(data: bytes) -> list[float]:
    """The vector :func:`pack_vector` stored."""
    return np.frombuffer(data, dtype=np.float32).tolist()


class QueryVectors:
    """Query vectors: the local LRU first, then the shared Redis (``url`` None: local only).

    ``get`` answers ``(vector, where)`` with ``where`` one of ``local``, ``shared`` or None (a miss:
    encode, then ``put``). ``put`` keeps the vector locally at once and writes it to Redis on a
    background thread, so the search that encoded it does not wait for the write (a Redis round
    trip, 0.3-0.8 ms on this machine); ``flush`` waits for the writes sent so far. ``clear``
    empties the local LRU only: shared keys carry the model version, so an alias move never makes
    them wrong.
    """

    def __init__(self, local: LRU, url: str | None, ttl_seconds: int, clock: Callable[[], float] = time.monotonic):
        self.local, self.ttl, self.clock = local, int(ttl_seconds), clock
        self.redis = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT,
                                          retry_on_timeout=False) if url else None
        self._resting_until = 0.0
        self.shared_hits = self.shared_misses = self.shared_errors = 0
        self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="vector-cache")

    def get(self, model_version: str | None, text: str) -> tuple[list[float] | None, str | None]:
        """The vector of ``text`` under ``model_version`` and where it was found."""
        found = self.local.get((model_version, text))
        if found is not None:
            return found, "local"
        data = self._shared(lambda r: r.get(vector_key(model_version, text)))
        if data is None:
            self.shared_misses += 1
            return None, None
        self.shared_hits += 1
        vector = unpack_vector(data)
        self.local.put((model_version, text), vector)
        return vector, "shared"

    def put(self, model_version: str | None, text: str, vector: list[float]) -> None:
        """Keep a freshly encoded vector locally, and in the shared cache in the background."""
        self.local.put((model_version, text), vector)
        if self.redis is not None:
            self._writer.submit(self._shared, lambda r: r.set(vector_key(model_version, text), pack_vector(vector), ex=self.ttl))

    def flush(self) -> None:
        """Wait until every shared write sent so far is done (or failed)."""
        self._writer.submit(lambda: None).result()

    def _shared(self, call):
        """``call(redis)``, or None when there is no shared cache, it rests after a failure, or it fails now."""
        if self.redis is None or self.clock() < self._resting_until:
            return None
        try:
            return call(self.redis)
        except (redis.RedisError, OSError):
            self.shared_errors += 1
            self._resting_until = self.clock() + RETRY_SECONDS
            return None

    def clear(self) -> None:
        """Empty the local LRU (after the alias moved)."""
        self.local.clear()

    def __len__(self) -> int:
        return len(self.local)
