"""Byte ranges of packed shards: one `os.pread` each, and a per-thread cache of whole blocks.

# NOTE [ Block reads ]
With `order="block"` (NOTE [ Block order ]), the samples of a block are used together within
one window of the epoch, so the first member a thread needs from a block brings in the whole
block: one read per shard the block's members lie in (usually one), spanning their bytes. The
block stays in that thread's cache (the `2 * window` most recent blocks: a batch spans at most
two windows), and its other members are sliced out of it. An epoch thus makes about one read per
block instead of one per member; the bytes are the same, and each member's CRC-32 is still
checked. With `order="random"` nothing is cached: each member is one read of its own bytes.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any

from xloader import storage

__all__ = ["ShardReader"]


class ShardReader:
    """Reads byte ranges of the shard files `paths`, opening each once per process.

    Forked workers may share the parent's descriptors (`pread` has no file position); pickling
    (spawned workers) drops them and the caches. `reads` counts the reads this process made.
    """

    def __init__(self, paths: list[str], cached_blocks: int):
        self.paths = paths
        self.cached_blocks = cached_blocks
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self.reads = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"paths": self.paths, "cached_blocks": self.cached_blocks}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["paths"], state["cached_blocks"])  # type: ignore[misc]

    def _fd(self, shard: int) -> int:
        fd = self._fds.get(shard)
        if fd is None:
            opened = os.open(self.paths[shard], os.O_RDONLY)
            fd = self._fds.setdefault(shard, opened)
            if fd != opened:  # another thread opened it first
                os.close(opened)
        return fd

    def read(self, shard: int, offset: int, size: int) -> bytes:
        """Up to `size` bytes of shard `shard` from `offset` (fewer if the file ends first)."""
        with self._lock:
            self.reads += 1
        path = self.paths[shard]
        if storage.is_url(path):  # one ranged GET, prefetched with the batch's (`TarShards.paths_of`)
            return storage.read_url(storage.byte_range(path, offset, size))
        return os.pread(self._fd(shard), size, offset)

    def cached(self, key: int) -> bool:
        """Whether block `key` is in this thread's cache."""
        return key in getattr(self._local, "blocks", ())

    def block(self, key: int, spans: dict[int, tuple[int, int]]) -> dict[int, tuple[int, bytes]]:
        """Block `key`'s bytes, {shard: (start, data)}, from this thread's cache or read now from
        `spans` ({shard: (start, end)}): NOTE [ Block reads ]."""
        cache: OrderedDict[int, dict[int, tuple[int, bytes]]] | None = getattr(self._local, "blocks", None)
        if cache is None:
            cache = self._local.blocks = OrderedDict()
        found = cache.get(key)
        if found is not None:
            cache.move_to_end(key)
            return found
        found = {shard: (start, self.read(shard, start, end - start)) for shard, (start, end) in spans.items()}
        cache[key] = found
        while len(cache) > self.cached_blocks:
            cache.popitem(last=False)
        return found

    def close(self) -> None:
        """Close the shard files this process opened and drop this thread's cached blocks."""
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)
        self._local = threading.local()
