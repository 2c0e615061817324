"""Run-length rows into masks: the one rule `RLEMasks` and packed RLE shards decode with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

from xloader._targets import MaskFormat
from xloader.index._sample_index import Ragged

__all__ = ["decode_rows", "runs_text", "runs_to_pixels"]


def runs_to_pixels(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat 0-based indices of every pixel the runs cover, run by run."""
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, np.int64)
    # Position p of the output belongs to run r: index = starts[r] + (p - first position of r).
    firsts = np.cumsum(lengths) - lengths
    return np.repeat(starts - firsts, lengths) + np.arange(total, dtype=np.int64)


def runs_text(starts: np.ndarray, lengths: np.ndarray) -> str:
    """0-based `starts` and `lengths` as `"start length ..."`, pixels numbered from 1."""
    pairs = np.empty(2 * len(starts), np.int64)
    pairs[0::2], pairs[1::2] = starts.astype(np.int64) + 1, lengths
    return " ".join(map(str, pairs.tolist()))


def decode_rows(
    rows: Ragged,
    index: int,
    shape: tuple[int, int],
    fmt: MaskFormat,
    order: Literal["F", "C"],
    overrun: Callable[[int, int], None],
) -> np.ndarray:
    """The mask of sample `index` from its run-length rows (`rows`: a `Ragged` of rows with
    `classes` and `runs`, itself a `Ragged` of `starts` and `lengths`) at `shape` (H, W): an
    index map in `fmt.work_dtype`, or for "multi_hot" a uint8 (H, W, classes) stack. A run past
    the image calls `overrun(row, end pixel)`, which raises. Packed shards decode with this too."""
    runs, classes = rows.columns["runs"], rows.columns["classes"]
    height, width = shape
    pixels_in_image = height * width
    if fmt.mode == "multi_hot":
        mask = np.zeros((pixels_in_image, fmt.num_classes - 1), np.uint8)  # type: ignore[operator]
    else:
        mask = np.zeros(pixels_in_image, fmt.work_dtype)
    # Rows are sorted by class, so writing them in turn lets the highest class win an overlap.
    for row in rows.span(index):
        starts, lengths = runs.row(row, "starts").astype(np.int64), runs.row(row, "lengths").astype(np.int64)
        if not len(starts):
            continue
        end = int(starts[-1] + lengths[-1])  # runs are increasing: the last one ends last
        if end > pixels_in_image:
            overrun(row, end)
        pixels = runs_to_pixels(starts, lengths)
        if order == "F":  # to row-major positions, so the mask is built C-contiguous
            pixels = (pixels % height) * width + pixels // height
        if fmt.mode == "multi_hot":
            mask[pixels, int(classes[row]) - 1] = 1
        else:
            mask[pixels] = classes[row]
    return mask.reshape(height, width, -1) if fmt.mode == "multi_hot" else mask.reshape(height, width)
