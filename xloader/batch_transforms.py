"""Batch-level augmentation recipes for `batch_transform=`: MixUp, CutMix, a random choice of them.

Each recipe is a picklable callable `recipe(batch, generator) -> batch` on a classification
batch `(x, y)`: `x` (N, H, W, C) images, `y` (N,) integer class labels (or (N, num_classes)
label weights from an earlier recipe). It returns `y` as float32 (N, num_classes) label
weights, which `keras.losses.CategoricalCrossentropy` and `torch.nn.CrossEntropyLoss` take as
targets. The arithmetic follows torchvision's `transforms.v2.MixUp` and `CutMix` (the batch is
paired with itself rolled by one), with NumPy's generator in place of torch's: the random draws
come from the generator `xloader.Batches` passes (NOTE [ Batch transforms ]), so they are the
same in every worker, in Keras and in torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from xloader.batching import Batch, BatchTransform

__all__ = ["CutMix", "MixUp", "RandomChoice"]


def _check_alpha(name: str, alpha: object) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"{name}(alpha=...) must be a number > 0, got {alpha!r}.")
    return float(alpha)


def _check_num_classes(name: str, num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{name}(num_classes=...) must be an int >= 1, got {num_classes!r}.")
    return num_classes


class _Mixing:
    """What MixUp and CutMix share: options, the batch checks and the label mixing."""

    def __init__(self, *, alpha: float = 1.0, num_classes: int):
        name = type(self).__name__
        self.alpha = _check_alpha(name, alpha)
        self.num_classes = _check_num_classes(name, num_classes)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha}, num_classes={self.num_classes})"

    def _split(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """(x, y as float32 (N, num_classes) label weights), after checking the batch's shape."""
        name = type(self).__name__
        if not isinstance(batch, tuple):
            raise TypeError(f"{name} mixes images and labels: the batch must be (x, y); use it with to_fit=True.")
        x, y = batch
        if x.ndim != 4:
            raise ValueError(f"{name} expects (N, H, W, C) images, got x of shape {x.shape}.")
        if y.ndim == 1 and np.issubdtype(y.dtype, np.integer):
            if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
                raise ValueError(
                    f"{name}(num_classes={self.num_classes}) got labels from {y.min()} to {y.max()}; "
                    "pass the dataset's number of classes (len(source.class_names))."
                )
            return x, np.eye(self.num_classes, dtype=np.float32)[y]
        if y.shape == (len(x), self.num_classes):
            return x, y.astype(np.float32, copy=False)
        raise ValueError(
            f"{name} mixes class labels: y must be (N,) integer labels or (N, {self.num_classes}) label "
            f"weights, got {y.shape} {y.dtype} (segmentation masks are not mixed by this recipe)."
        )

    @staticmethod
    def _mix_labels(y: np.ndarray, lam: float) -> np.ndarray:
        return np.roll(y, 1, axis=0) * np.float32(1.0 - lam) + y * np.float32(lam)


class MixUp(_Mixing):
    """MixUp (Zhang et al., 2018): each image and label is blended with the previous one in the batch.

    With `lam` drawn from Beta(alpha, alpha) once per batch: `x = lam * x + (1 - lam) * roll(x, 1)`
    as float32 (uint8 images become float32 in 0..255) and the labels likewise, one-hot first.

    Args:
        alpha: the Beta distribution's parameter, > 0 (torchvision's default 1.0; its
            classification reference uses 0.2 for ResNets).
        num_classes: number of classes, for the one-hot labels.

    Example:
        >>> batches = Batches(data, batch_size=32, shuffle=True, seed=0,  # doctest: +SKIP
        ...                   batch_transform=MixUp(alpha=0.2, num_classes=10))
    """

    def __call__(self, batch: Batch, generator: np.random.Generator) -> Batch:
        x, y = self._split(batch)
        lam = float(generator.beta(self.alpha, self.alpha))
        x = x.astype(np.float32, copy=False)
        mixed = np.roll(x, 1, axis=0) * np.float32(1.0 - lam) + x * np.float32(lam)
        return mixed, self._mix_labels(y, lam)


class CutMix(_Mixing):
    """CutMix (Yun et al., 2019): a box of each image is replaced by the same box of the previous image.

    With `lam` from Beta(alpha, alpha), a centre (cy, cx) uniform over the image and half-sides
    `int(0.5 * sqrt(1 - lam) * H)` and `... * W`, clipped to the image; labels are mixed with
    the area actually kept (`1 - box area / (H * W)`). Images keep their dtype.

    Args:
        alpha: the Beta distribution's parameter, > 0 (torchvision's default 1.0).
        num_classes: number of classes, for the one-hot labels.
    """

    def __call__(self, batch: Batch, generator: np.random.Generator) -> Batch:
        x, y = self._split(batch)
        lam = float(generator.beta(self.alpha, self.alpha))
        height, width = x.shape[1], x.shape[2]
        center_x, center_y = int(generator.integers(width)), int(generator.integers(height))
        r = 0.5 * math.sqrt(1.0 - lam)
        half_w, half_h = int(r * width), int(r * height)
        x1, y1 = max(center_x - half_w, 0), max(center_y - half_h, 0)
        x2, y2 = min(center_x + half_w, width), min(center_y + half_h, height)
        out = x.copy()
        out[:, y1:y2, x1:x2] = np.roll(x, 1, axis=0)[:, y1:y2, x1:x2]
        kept = 1.0 - (x2 - x1) * (y2 - y1) / (width * height)
        return out, self._mix_labels(y, kept)


class RandomChoice:
    """Applies one of `transforms` per batch, picked uniformly with the batch's generator
    (torchvision's reference: `RandomChoice([MixUp(...), CutMix(...)])`).

    Example:
        >>> mix = RandomChoice([MixUp(alpha=0.2, num_classes=10), CutMix(alpha=1.0, num_classes=10)])
    """

    def __init__(self, transforms: Sequence[BatchTransform]):
        self.transforms = list(transforms)
        if not self.transforms or not all(callable(t) for t in self.transforms):
            raise ValueError(f"RandomChoice needs a non-empty list of batch transforms, got {transforms!r}.")

    def __repr__(self) -> str:
        return f"RandomChoice({self.transforms!r})"

    def __call__(self, batch: Batch, generator: np.random.Generator) -> Batch:
        chosen = self.transforms[int(generator.integers(len(self.transforms)))]
        return chosen(batch, generator)
