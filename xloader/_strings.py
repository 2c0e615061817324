"""A compact, immutable table of strings (paths, ids) in two NumPy buffers.

Forked workers that index a Python list of strings touch each object's refcount and slowly
copy the whole list into their own memory (copy-on-read). One bytes buffer plus an offsets
array has no per-item objects, so reading it never dirties shared pages.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np


class StringTable:
    """Strings stored as `os.fsencode` bytes, so undecodable file names round-trip exactly."""

    __slots__ = ("_data", "_offsets")

    def __init__(self, items: Iterable[str]):
        encoded = [os.fsencode(item) for item in items]
        lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self._offsets[1:])
        self._data = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> str:
        start, end = self._offsets[index], self._offsets[index + 1]
        return os.fsdecode(self._data[start:end].tobytes())

    def __iter__(self) -> Iterator[str]:
        for index in range(len(self)):
            yield self[index]

    def tolist(self) -> list[str]:
        return list(self)

    def take(self, keep: np.ndarray) -> StringTable:
        """A new table of the strings where `keep` (bool, one per string) is True, in order."""
        table = StringTable.__new__(StringTable)
        starts, ends = self._offsets[:-1][keep], self._offsets[1:][keep]
        lengths = ends - starts
        table._offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=table._offsets[1:])
        pieces = [self._data[start:end] for start, end in zip(starts.tolist(), ends.tolist(), strict=True)]
        table._data = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.uint8)
        return table
