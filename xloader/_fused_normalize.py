"""albumentations' Normalize applied while a sample is written into its batch.

# NOTE [ Normalize fused into the batch write ]
A pipeline that ends in `A.Normalize()` turns each uint8 image into a float32 one in three
`cv2.LUT` calls and a `cv2.merge`; the batch writer then copies that float32 image into the
batch (splitting it into planes for NCHW). For a 224x224x3 image the merge and the copy cost
about as much again as the lookups. When the transform is an `A.Compose` whose last step is an
always-applied `A.Normalize` with `normalization="standard"`, which maps each value of each
channel on its own, xloader runs the Compose without that step and writes the uint8 result
through the same lookup straight into the batch (each channel into its own plane for NCHW).

Bit-identical by construction: the lookup table is Normalize's own output for a ramp image
whose pixels are 0..255 in every channel (albumentations computes uint8 Normalize as a lookup
table too), and the random state is untouched: Normalize draws nothing that could affect the
sample, and the steps before it draw exactly as in the full Compose. `tests/test_fused_normalize.py`
checks batches against the unfused pipeline. Any other image (not uint8, more than 4 channels)
gets the Normalize step itself.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import cv2
import numpy as np


def fusable(transform: Any) -> bool:
    """Whether `transform` is an `A.Compose` that always runs and ends in a per-value Normalize.

    Decided from the classes' names (exact classes, not subclasses): the core never imports
    albumentations, whose pipelines come from the user."""
    if not (_is_albumentations(transform, "Compose") and transform.p == 1 and transform.transforms):
        return False
    last = transform.transforms[-1]
    return _is_albumentations(last, "Normalize") and last.normalization == "standard" and last.p == 1


def _is_albumentations(obj: object, name: str) -> bool:
    kind = type(obj)
    return kind.__name__ == name and kind.__module__.split(".")[0] == "albumentations"


class NormalizedImage(NamedTuple):
    """An image still to be normalized: `lut[v, 0, c]` is Normalize's output for value `v` of
    channel `c`. Has the `shape` and `dtype` of the normalized image; `write` puts it in a batch."""

    pixels: np.ndarray  # (H, W, C) uint8, C in 1..4
    lut: np.ndarray  # (256, 1, C)
    channel_luts: tuple[np.ndarray, ...]  # lut[:, :, c], each contiguous

    @property
    def shape(self) -> tuple[int, ...]:
        return self.pixels.shape

    @property
    def dtype(self) -> np.dtype:
        return self.lut.dtype

    def write(self, target: np.ndarray) -> None:
        """`target[...] =` the normalized image; `target` is (H, W, C) of `self.dtype`, possibly a
        transposed view of C planes (channels-first batches), each then written in place."""
        planes = target.transpose(2, 0, 1)
        if planes.flags.c_contiguous:  # channels-first, or one channel: a lookup per plane
            sources = cv2.split(self.pixels) if len(planes) > 1 else (self.pixels[:, :, 0],)
            if all(_lookup_into(*job) for job in zip(sources, self.channel_luts, planes, strict=True)):
                return
        elif target.flags.c_contiguous and _lookup_into(self.pixels, self.lut, target):
            return
        target[...] = self.finish()

    def finish(self) -> np.ndarray:
        """The normalized image as an array (H, W, C)."""
        return cv2.LUT(self.pixels, self.lut).reshape(self.pixels.shape)


def _lookup_into(source: np.ndarray, lut: np.ndarray, target: np.ndarray) -> bool:
    """`target[...] = lut[source]` in place; False if OpenCV could not write `target` itself."""
    try:
        # OpenCV writes into `dst` when its size and type match, and silently allocates otherwise.
        written = cv2.LUT(source, lut, dst=target)
    except cv2.error:  # a layout OpenCV cannot take as dst
        return False
    return np.may_share_memory(written, target)


class SplitCompose:
    """A `fusable` Compose (one thread's own copy, which this modifies), split into the steps
    before Normalize (`head`, which receives `set_random_state`) and the Normalize, applied by
    `finish`."""

    def __init__(self, transform: Any):
        self.head = transform
        self.normalize = transform.transforms[-1]
        self.head.transforms = transform.transforms[:-1]
        self._luts: dict[int, tuple[np.ndarray, tuple[np.ndarray, ...]]] = {}

    def finish(self, image: np.ndarray) -> NormalizedImage | np.ndarray:
        """The head's output image, normalized when written (or now, if it cannot be)."""
        if not (image.dtype == np.uint8 and image.ndim == 3 and 1 <= image.shape[2] <= 4):
            return self.normalize(image=image)["image"]
        channels = image.shape[2]
        luts = self._luts.get(channels)
        if luts is None:
            ramp = np.repeat(np.arange(256, dtype=np.uint8).reshape(256, 1, 1), channels, axis=2)
            lut = np.ascontiguousarray(self.normalize(image=ramp)["image"]).reshape(256, 1, channels)
            luts = self._luts[channels] = lut, tuple(np.ascontiguousarray(lut[:, :, c]) for c in range(channels))
        return NormalizedImage(np.ascontiguousarray(image), *luts)
