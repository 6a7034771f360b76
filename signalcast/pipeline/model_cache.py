"""The loaded models of one worker process, bounded by bytes, least recently used first.

An entry's size is its artifact's length: a loaded model takes memory roughly in proportion
to its serialised bytes (a random forest of megabytes, a logistic regression of kilobytes), so
a count bound would let a few large families take a worker's memory. An entry larger than the
whole bound is served but not kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

DEFAULT_BYTES = 256 * 1024 * 1024


class ModelCache:
    """A thread-safe LRU mapping bounded by the sum of its entries' sizes.

    >>> cache = ModelCache(max_bytes=10)
    >>> cache.put((1, "a"), "m1", 4); cache.put((2, "b"), "m2", 4)
    >>> cache.get((1, "a"))  # now the most recently used
    'm1'
    >>> cache.put((3, "c"), "m3", 4)  # evicts (2, "b"), the least recently used
    >>> sorted(k[0] for k in cache.keys()), cache.bytes
    ([1, 3], 8)
    """

    def __init__(self, max_bytes: int = DEFAULT_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = self.misses = self.evictions = 0

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: Hashable, value: Any, size: int, *, replaces: Hashable | None = None
            ) -> None:
        """Keep ``value`` (``size`` bytes); entries whose key starts with ``replaces`` (e.g.
        the older checksums of the same version) are dropped first."""
        with self._lock:
            if replaces is not None:
                for stale in [k for k in self._entries
                              if isinstance(k, tuple) and k[0] == replaces]:
                    self._drop(stale)
            if key in self._entries:
                self._drop(key)
            if size > self.max_bytes:
                return
            while self._entries and self.bytes + size > self.max_bytes:
                self._drop(next(iter(self._entries)))
                self.evictions += 1
            self._entries[key] = (value, size)
            self.bytes += size

    def _drop(self, key: Hashable) -> None:
        _, size = self._entries.pop(key)
        self.bytes -= size

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0
