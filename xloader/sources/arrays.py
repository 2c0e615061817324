"""`ArrayDataset`: samples already in memory as NumPy arrays."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from xloader.index._sample_index import SampleIndex
from xloader.sources._base import TransformedSource

__all__ = ["ArrayDataset"]


class ArrayDataset(TransformedSource):
    """In-memory samples: `x[i]` (and `y[i]`) along the first axis.

    With a transform, `x[i]` goes through `transform(image=x[i])` (and, with `y_is_mask=True`,
    `transform(image=x[i], mask=y[i])`, so masks move with their images). Arrays are not copied.

    Args:
        x: inputs, shape (N, ...).
        y: targets, shape (N, ...), or None for inputs only.
        transform: an albumentations `Compose` (or any `xloader.transforms.Transform`).
        y_is_mask: pass `y[i]` to the transform as `mask` (segmentation).
        x_is_image: whether `x[i]` is an (H, W, C) image (the torch adapter moves C first);
            None: True if `x` is 4-D.

    Example:
        >>> data = ArrayDataset(np.zeros((10, 32, 32, 3), np.uint8), np.arange(10))
        >>> len(data)
        10
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray | None = None,
        *,
        transform: object = None,
        y_is_mask: bool = False,
        x_is_image: bool | None = None,
    ):
        super().__init__(transform)
        self.x = np.asarray(x)
        self.y = None if y is None else np.asarray(y)
        if self.x.ndim == 0 or len(self.x) == 0:
            raise ValueError(f"x must hold at least one sample along its first axis; got shape {self.x.shape}.")
        if self.y is not None and len(self.y) != len(self.x):
            raise ValueError(f"x has {len(self.x)} samples but y has {len(self.y)}; they must match.")
        if y_is_mask and self.y is None:
            raise ValueError("y_is_mask=True needs y.")
        self.y_is_mask = y_is_mask
        self.has_targets = self.y is not None
        self.x_is_image = (self.x.ndim == 4) if x_is_image is None else x_is_image
        self._index = SampleIndex(rows=np.arange(len(self.x), dtype=np.int64))

    def describe(self, index: int) -> str:
        return f"x[{self._index.rows[index]}]"

    def sample_key(self, index: int) -> str:
        """A digest of the sample's bytes (x, and y if any), so other arrays never share a fingerprint."""
        row = int(self._index.rows[index])
        digest = hashlib.blake2b(digest_size=16)
        for array in (self.x, self.y):
            if array is not None:
                item = np.ascontiguousarray(array[row])
                digest.update(f"{item.dtype.str}{item.shape}".encode())
                digest.update(item.tobytes())
        return digest.hexdigest()

    def load(self, index: int, *, seed: int, epoch: int, with_targets: bool) -> tuple[np.ndarray, np.ndarray | None]:
        row = int(self._index.rows[index])
        x = self.x[row]
        y = self.y[row] if (with_targets and self.y is not None) else None
        if self._runner is None:
            return x, y
        data: dict[str, Any] = {"image": x}
        if self.y_is_mask and y is not None:
            data["mask"] = y
        out = self._transform(data, seed=seed, epoch=epoch, index=index)
        return out["image"], (out["mask"] if "mask" in data else y)
