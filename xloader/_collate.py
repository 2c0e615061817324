"""Samples -> one batch array per field, written into a preallocated C-contiguous array."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from xloader.errors import DatasetError

Allocate = Callable[[str, tuple[int, ...], np.dtype], "np.ndarray | None"]
"""`allocate(field, shape, dtype)`: an array to build the batch field in, or None for a new one."""


class BatchWriter:
    """Stacks `count` arrays of equal shape and dtype; the first one fixes both.

    `describe(i)` names the i-th sample's origin for the error raised on a mismatch.
    """

    def __init__(self, count: int, field: str, allocate: Allocate | None = None):
        self.count = count
        self.field = field
        self.allocate = allocate
        self.array: np.ndarray | None = None

    def put(self, position: int, value: np.ndarray, where: Callable[[], str]) -> None:
        value = np.asarray(value)
        if self.array is None:
            shape = (self.count, *value.shape)
            given = self.allocate(self.field, shape, value.dtype) if self.allocate is not None else None
            self.array = given if given is not None else np.empty(shape, dtype=value.dtype)
        elif value.shape != self.array.shape[1:] or value.dtype != self.array.dtype:
            first = f"{self.array.shape[1:]} {self.array.dtype}"
            raise DatasetError(
                f"cannot batch {where()}: its {self.field} is {value.shape} {value.dtype} but the batch's "
                f"first sample's is {first}. Give the dataset an image_size, or make the transform "
                "return one size and dtype (e.g. end it with A.Resize)."
            )
        self.array[position] = value
