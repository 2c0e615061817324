"""Byte ranges of packed shards: one `os.pread` (or ranged GET) each, and a per-process cache of
whole blocks.

# NOTE [ Block reads ]
With `order="block"` (NOTE [ Block order ]), the samples of a block are used together within
one window of the epoch, so the first member a process needs from a block brings in the whole
block: one read of the block's span of its shard. The block stays in the process's cache, shared
by its threads and bounded in bytes (`2 * window * block_size` by default: a batch spans at most
two windows; the least recently used block goes first), and its other members are sliced out of
it. A thread that needs a block another thread is reading waits for that read instead of making
its own. An epoch thus makes about one read per block and process (each worker process reads
the blocks its batches touch) instead of one per member; each member's CRC-32 is still checked.
A forked worker keeps the blocks its parent had finished reading. With `order="random"` nothing
is cached: each member is one read of its own bytes.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any

from xloader import storage

__all__ = ["ShardReader"]

Block = dict[int, tuple[int, bytes]]  # {shard: (first byte, data)}


class ShardReader:
    """Reads byte ranges of the shard files `paths`, opening each once per process, and keeps
    up to `cache_bytes` of blocks (NOTE [ Block reads ]).

    Forked workers may share the parent's descriptors (`pread` has no file position); pickling
    (spawned workers) drops them and the cache. `reads` counts the reads this process made.
    """

    def __init__(self, paths: list[str], cache_bytes: int):
        self.paths = paths
        self.cache_bytes = cache_bytes
        self._fds: dict[int, int] = {}
        self.reads = 0
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._blocks: OrderedDict[int, Future[Block]] = OrderedDict()
        self._sizes: dict[int, int] = {}  # bytes of each finished block in `_blocks`
        self._held = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"paths": self.paths, "cache_bytes": self.cache_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["paths"], state["cache_bytes"])  # type: ignore[misc]

    def _fork_check(self) -> None:
        """In a forked child: a new lock, and only the blocks the parent had finished reading
        (a read another thread of the parent had under way never finishes here)."""
        if self._pid != os.getpid():
            self._pid, self._lock = os.getpid(), threading.Lock()
            for key in [key for key in self._blocks if key not in self._sizes]:
                del self._blocks[key]

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
        self._fork_check()
        with self._lock:
            self.reads += 1
        path = self.paths[shard]
        if storage.is_url(path):  # one ranged GET, prefetched with the batch's (`TarShards.paths_of`)
            return storage.read_url(storage.byte_range(path, offset, size))
        return os.pread(self._fd(shard), size, offset)

    def cached(self, key: int) -> bool:
        """Whether block `key` is in this process's cache or being read into it."""
        self._fork_check()
        return key in self._blocks

    def block(self, key: int, spans: dict[int, tuple[int, int]]) -> Block:
        """Block `key`'s bytes, {shard: (start, data)}, from this process's cache or read now
        from `spans` ({shard: (start, end)}): NOTE [ Block reads ]."""
        self._fork_check()
        with self._lock:
            entry = self._blocks.get(key)
            reader = entry is None
            if entry is None:
                entry = self._blocks[key] = Future()
            else:
                self._blocks.move_to_end(key)
        if not reader:
            return entry.result()
        try:
            found = {shard: (start, self.read(shard, start, end - start)) for shard, (start, end) in spans.items()}
        except BaseException as error:
            with self._lock:
                self._blocks.pop(key, None)
            entry.set_exception(error)
            raise
        entry.set_result(found)
        with self._lock:
            if key in self._blocks:
                self._sizes[key] = sum(len(data) for _, data in found.values())
                self._held += self._sizes[key]
            self._evict()
        return found

    def _evict(self) -> None:
        """Drop the least recently used finished blocks until at most `cache_bytes` are held
        (the newest block stays even if it alone is larger). Called with the lock held."""
        for key in list(self._blocks):
            if self._held <= self.cache_bytes or len(self._sizes) <= 1:
                return
            if key in self._sizes:
                del self._blocks[key]
                self._held -= self._sizes.pop(key)

    def close(self) -> None:
        """Close the shard files this process opened and drop its cached blocks."""
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)
        with self._lock:
            self._blocks, self._sizes, self._held = OrderedDict(), {}, 0
