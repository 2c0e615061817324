"""Byte ranges of packed shards: one `os.pread` (or ranged GET) each, and a per-process cache of
whole blocks.

# NOTE [ Block reads ]
With `order="block"` (NOTE [ Block order ]), the samples of a block are used together within
one window of the epoch, so the first member a process needs from a block brings in the whole
block: one read of the block's span of its shard. The block stays in the process's cache, shared
by its threads and bounded in bytes (two windows of the largest block, about
`2 * window * block_size`, which holds the blocks of a batch and the next one at the defaults;
the least recently used block that has been read goes first, and blocks whose reads have
started but not been used are kept over the bound), and its other members are sliced out of
it. A thread that needs a block another thread is reading waits for that read instead of making
its own. From object storage, `TarShards.paths_of` (called by `Batches` before a batch loads)
starts the GETs of the blocks the batch needs and the process neither holds nor is fetching, on
the storage pool (`storage.fetch_async`), so they run together and belong to the process, not to
one thread. An epoch thus makes about one read per block and process (each worker process reads
the blocks its batches touch) instead of one per member; each member's CRC-32 is still checked.
A forked worker keeps the blocks its parent had finished reading. With `order="random"` nothing
is cached: each member is one read of its own bytes.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from xloader import storage

__all__ = ["ShardReader"]


class _Block:
    """One block's bytes, read once by whichever thread asks first (the others wait for it)."""

    __slots__ = ("_lock", "_read", "data")

    def __init__(self, read: Callable[[], bytes]):
        self._read, self._lock = read, threading.Lock()
        self.data: bytes | None = None

    def get(self) -> bytes:
        with self._lock:
            if self.data is None:
                self.data = self._read()
            return self.data


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
        self._blocks: OrderedDict[int, tuple[int, int, _Block]] = OrderedDict()  # key: (start, end, block)
        self._held = 0  # bytes of the blocks in `_blocks`, read or being read

    def __getstate__(self) -> dict[str, Any]:
        return {"paths": self.paths, "cache_bytes": self.cache_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["paths"], state["cache_bytes"])  # type: ignore[misc]

    def _fork_check(self) -> None:
        """In a forked child: new locks, and only the blocks the parent had finished reading (a
        read another thread of the parent had under way never finishes here)."""
        if self._pid != os.getpid():
            self._pid, self._lock = os.getpid(), threading.Lock()
            for key, (start, end, block) in list(self._blocks.items()):
                if block.data is None:
                    del self._blocks[key]
                    self._held -= end - start
                else:
                    block._lock = threading.Lock()

    def _fd(self, shard: int) -> int:
        fd = self._fds.get(shard)
        if fd is None:
            opened = os.open(self.paths[shard], os.O_RDONLY)
            fd = self._fds.setdefault(shard, opened)
            if fd != opened:  # another thread opened it first
                os.close(opened)
        return fd

    def _count(self) -> None:
        with self._lock:
            self.reads += 1

    def read(self, shard: int, offset: int, size: int) -> bytes:
        """Up to `size` bytes of shard `shard` from `offset` (fewer if the file ends first)."""
        self._fork_check()
        self._count()
        path = self.paths[shard]
        if storage.is_url(path):  # one ranged GET, prefetched with the batch's (`TarShards.paths_of`)
            return storage.read_url(storage.byte_range(path, offset, size))
        return os.pread(self._fd(shard), size, offset)

    def cached(self, key: int) -> bool:
        """Whether block `key` is in this process's cache or being read into it."""
        self._fork_check()
        return key in self._blocks

    def start(self, key: int, shard: int, start: int, end: int) -> None:
        """Start the GET of block `key` (bytes `start` to `end` of a remote shard) on the storage
        pool, unless this process holds it or is reading it already."""
        self._fork_check()
        with self._lock:
            if key in self._blocks:
                return
            self.reads += 1
            fetched = storage.fetch_async(storage.byte_range(self.paths[shard], start, end - start))
            self._add(key, start, end, _Block(fetched))

    def block(self, key: int, shard: int, start: int, end: int) -> tuple[int, bytes]:
        """Block `key`, bytes `start` to `end` of shard `shard`, as (start, data), from this
        process's cache or read now (NOTE [ Block reads ])."""
        self._fork_check()
        with self._lock:
            found = self._blocks.get(key)
            if found is None:
                found = (start, end, _Block(lambda: self.read(shard, start, end - start)))
                self._add(key, *found)
            else:
                self._blocks.move_to_end(key)
        try:
            return found[0], found[2].get()
        except BaseException:
            with self._lock:  # a failed read is not kept: the next request reads again
                if key in self._blocks and self._blocks[key][2] is found[2]:
                    del self._blocks[key]
                    self._held -= end - start
            raise

    def _add(self, key: int, start: int, end: int, block: _Block) -> None:
        """Keep `block` as the newest; drop the least recently used blocks that have been read
        until at most `cache_bytes` are held. A block not read yet (its GET started for this
        batch or the next) is never dropped: its read would be lost and made again. Called with
        the lock held."""
        self._blocks[key] = (start, end, block)
        self._held += end - start
        if self._held <= self.cache_bytes:
            return
        for old in [k for k, (_, _, b) in self._blocks.items() if k != key and b.data is not None]:
            old_start, old_end, _ = self._blocks.pop(old)
            self._held -= old_end - old_start
            if self._held <= self.cache_bytes:
                return

    def close(self) -> None:
        """Close the shard files this process opened and drop its cached blocks."""
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)
        with self._lock:
            self._blocks, self._held = OrderedDict(), 0
