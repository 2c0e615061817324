"""The one index every source keeps: per-sample columns in compact NumPy storage.

A layout parser (folder per class, image+mask pairs, a manifest, run-length rows...) fills a
`SampleIndex`; leaving bad files out, subsetting and splitting act on it once, here, for every
source. Columns are NumPy arrays, `StringTable`s (paths, ids) or `Ragged` groups (a variable
number of items per sample: mask files, CSV rows, runs), all indexable without Python objects
per item, so forked workers reading them never copy them (copy-on-read).
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np

from xloader._strings import StringTable

__all__ = ["Ragged", "SampleIndex", "positions"]

Column = Union[np.ndarray, StringTable, "Ragged"]


def positions(rows: Any, length: int) -> np.ndarray:
    """`rows` (a bool mask of `length`, or integer positions) as int64 positions, checked."""
    array = np.asarray(rows)
    if array.dtype == bool:
        if array.shape != (length,):
            raise ValueError(f"a mask of samples must have one entry per sample ({length}), got shape {array.shape}.")
        return np.flatnonzero(array)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"sample indices must be integers, got dtype {array.dtype}.")
    array = array.astype(np.int64).reshape(-1)
    if array.size and (array.min() < 0 or array.max() >= length):
        bad = array[(array < 0) | (array >= length)][0]
        raise IndexError(f"sample index {bad} is out of range for a source of {length} samples.")
    return array


def _take(column: Column, rows: np.ndarray) -> Column:
    return column[rows] if isinstance(column, np.ndarray) else column.take(rows)


class Ragged:
    """A variable number of items per sample: items of sample i are `offsets[i]:offsets[i + 1]`
    of every column in `columns` (which may itself hold `Ragged` groups, e.g. runs per CSV row)."""

    __slots__ = ("columns", "offsets")

    def __init__(self, offsets: np.ndarray, **columns: Column):
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.columns: dict[str, Any] = columns

    @classmethod
    def from_counts(cls, counts: Any, **columns: Column) -> Ragged:
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(np.asarray(counts, dtype=np.int64), out=offsets[1:])
        return cls(offsets, **columns)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, index: int, column: str) -> Any:
        """Column `column`'s items of sample `index`."""
        return self.columns[column][self.offsets[index] : self.offsets[index + 1]]

    def span(self, index: int) -> range:
        """The item positions of sample `index`."""
        return range(int(self.offsets[index]), int(self.offsets[index + 1]))

    def take(self, rows: np.ndarray) -> Ragged:
        rows = positions(rows, len(self))
        starts = self.offsets[rows]
        counts = self.offsets[rows + 1] - starts
        new = Ragged.from_counts(counts)
        items = np.repeat(starts - new.offsets[:-1], counts) + np.arange(int(new.offsets[-1]), dtype=np.int64)
        new.columns = {name: _take(column, items) for name, column in self.columns.items()}
        return new


class SampleIndex:
    """Named per-sample columns of equal length; `index.files[i]` reads column `files` of sample i."""

    __slots__ = ("columns",)

    def __init__(self, **columns: Column):
        lengths = {name: len(column) for name, column in columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"index columns must have one entry per sample; lengths are {lengths}.")
        self.columns: dict[str, Any] = columns

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getattr__(self, name: str) -> Any:
        if name == "columns":  # not set yet (unpickling)
            raise AttributeError(name)
        try:
            return self.columns[name]
        except KeyError:
            raise AttributeError(f"the index has no column {name!r} (columns: {list(self.columns)}).") from None

    def __getstate__(self) -> dict[str, Any]:
        return self.columns

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.columns = state

    def take(self, rows: np.ndarray | list[int]) -> SampleIndex:
        """The samples at `rows` (a bool mask or integer positions), in that order."""
        chosen = positions(rows, len(self))
        return SampleIndex(**{name: _take(column, chosen) for name, column in self.columns.items()})

    def replace(self, **columns: Column) -> SampleIndex:
        return SampleIndex(**{**self.columns, **columns})
