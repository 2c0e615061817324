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
        # One encode of the whole table, items ended by NUL (which no path or id can contain),
        # then the offsets from the positions of the NULs: no per-item Python work but the join.
        listed = list(items)
        data = os.fsencode("\0".join(listed) + "\0") if listed else b""
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0)
        if len(ends) != len(listed):
            raise ValueError("strings in a StringTable must not contain NUL characters.")
        self._offsets = np.zeros(len(listed) + 1, dtype=np.int64)
        self._offsets[1:] = ends + 1
        self._data = np.frombuffer(data, dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> str:
        if not 0 <= index < len(self._offsets) - 1:
            raise IndexError(f"string {index} is out of range: the table holds {len(self._offsets) - 1}.")
        start, end = self._offsets[index], self._offsets[index + 1] - 1  # without the ending NUL
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

    @classmethod
    def from_arrays(cls, data: np.ndarray, offsets: np.ndarray) -> StringTable:
        """The table `arrays()` returned, rebuilt without per-string work (a saved index)."""
        table = cls.__new__(cls)
        table._data, table._offsets = np.asarray(data, dtype=np.uint8), np.asarray(offsets, dtype=np.int64)
        return table

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(data, offsets): the two buffers, for saving; `from_arrays` reads them back."""
        return self._data, self._offsets
