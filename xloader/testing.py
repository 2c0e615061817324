"""Helpers for parity checks in users' own tests: batch fingerprints and an equality assertion.

Works on NumPy arrays and on anything with a `.numpy()` method (torch tensors, eager TF tensors);
convert framework-specific layouts (e.g. torch NCHW) back before comparing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["assert_same_batches", "fingerprint"]


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    return np.ascontiguousarray(np.asarray(value))


def _parts(batch: Any) -> Sequence[Any]:
    return tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)


def fingerprint(batch: Any) -> str:
    """A short hex digest of a batch (`x` or `(x, y, ...)`): shapes, dtypes and every byte.

    Equal fingerprints mean bit-identical batches (up to SHA-256 collisions).
    """
    digest = hashlib.sha256()
    for part in _parts(batch):
        array = _as_numpy(part)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def assert_same_batches(actual: Iterable[Any], expected: Iterable[Any]) -> None:
    """Raise `AssertionError` naming the first batch (and part) that differs in count, shape, dtype or value."""
    actual_list, expected_list = list(actual), list(expected)
    if len(actual_list) != len(expected_list):
        raise AssertionError(f"{len(actual_list)} batches, expected {len(expected_list)}.")
    for index, (got, want) in enumerate(zip(actual_list, expected_list, strict=True)):
        got_parts, want_parts = _parts(got), _parts(want)
        if len(got_parts) != len(want_parts):
            raise AssertionError(f"batch {index}: {len(got_parts)} parts, expected {len(want_parts)}.")
        for part, (a, e) in enumerate(zip(got_parts, want_parts, strict=True)):
            a, e = _as_numpy(a), _as_numpy(e)
            if a.dtype != e.dtype or a.shape != e.shape:
                raise AssertionError(f"batch {index} part {part}: {a.shape} {a.dtype}, expected {e.shape} {e.dtype}.")
            if not np.array_equal(a, e):
                differing = int(np.count_nonzero(a != e))
                raise AssertionError(f"batch {index} part {part}: {differing} of {a.size} values differ.")
