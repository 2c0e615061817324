"""The transform protocol and how a transform is run for one sample.

# NOTE [ Per-sample random state ]
A transform (an `albumentations.Compose` or anything with the same two methods) is called as
`transform(image=..., mask=...)` and returns a dict with the same keys. Before each call xloader
installs fresh generators fixed by (seed, epoch, sample index) with
`transform.set_random_state(numpy_generator, python_random)`, so the augmentation of a sample
depends on nothing else: not the worker, not the thread, not what ran before.
Because that call mutates the transform, each thread works on its own deep copy (a shared
Compose reseeded from several threads races: one thread's draws land in another's sample).
`Compose(seed=...)` is not used: it gives every child transform the same stream.
"""

from __future__ import annotations

import copy
import random
import threading
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np

from xloader import _fused_normalize
from xloader._random import sample_generators

__all__ = ["Transform", "TransformRunner"]


@runtime_checkable
class Transform(Protocol):
    """What xloader needs of an augmentation pipeline; `albumentations.Compose` satisfies it."""

    def __call__(self, **data: Any) -> dict[str, Any]: ...

    def set_random_state(self, random_generator: np.random.Generator, py_random: random.Random) -> None: ...


def check_transform(transform: object) -> Transform | None:
    """Return `transform` if it follows the `Transform` protocol (or is None), else raise `TypeError`."""
    if transform is None:
        return None
    if not callable(transform) or not callable(getattr(transform, "set_random_state", None)):
        raise TypeError(
            f"transform must be callable as transform(image=...) and have a "
            f"set_random_state(numpy_generator, python_random) method, as albumentations.Compose does; "
            f"got {type(transform).__name__}. Wrap plain functions in albumentations.Lambda inside a Compose."
        )
    return cast(Transform, transform)


class TransformRunner:
    """Runs one transform with per-sample random state, on a per-thread copy.

    Picklable: the per-thread copies are dropped and rebuilt on the other side.
    """

    def __init__(self, transform: Transform):
        self.transform = transform
        self.fuses_normalize = _fused_normalize.fusable(transform)
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        return {"transform": self.transform}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["transform"])  # type: ignore[misc]

    def _thread_copy(self) -> Transform:
        mine = getattr(self._local, "transform", None)
        if mine is None:
            mine = copy.deepcopy(self.transform)
            self._local.transform = mine
        return mine

    def _thread_split(self) -> _fused_normalize.SplitCompose | None:
        """This thread's split copy, or None if the transform (changed since) no longer splits."""
        if not hasattr(self._local, "split"):
            mine = copy.deepcopy(self.transform)
            self._local.split = _fused_normalize.SplitCompose(mine) if _fused_normalize.fusable(mine) else None
        return self._local.split

    def __call__(
        self, data: dict[str, np.ndarray], *, seed: int, epoch: int, index: int, defer_normalize: bool = False
    ) -> dict[str, Any]:
        """Apply the transform to `data` (keyword targets such as image, mask) for sample `index`.

        With `defer_normalize` and a transform that `fuses_normalize`, `result["image"]` may be a
        `NormalizedImage` that the batch writer normalizes as it writes it
        (NOTE [ Normalize fused into the batch write ]); the values are the same.
        """
        numpy_generator, python_random = sample_generators(seed, epoch, index)
        split = self._thread_split() if defer_normalize and self.fuses_normalize else None
        if split is not None:
            split.head.set_random_state(numpy_generator, python_random)
            result = split.head(**data)
            result["image"] = split.finish(result["image"])
            return result
        transform = self._thread_copy()
        transform.set_random_state(numpy_generator, python_random)
        result = transform(**data)
        if not isinstance(result, dict):
            raise TypeError(f"transform must return a dict of targets, got {type(result).__name__}.")
        return result
