"""What a source is: the dataset side of xloader, one sample at a time.

A source knows which samples exist (its index) and how to turn sample `i` into arrays.
Everything about order, batching and epochs belongs to `xloader.Batches`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from xloader.errors import DatasetError
from xloader.transforms import TransformRunner, check_transform

__all__ = ["Source"]


@runtime_checkable
class Source(Protocol):
    """The protocol `Batches` and both adapters rely on.

    Attributes:
        has_targets: whether `load(..., with_targets=True)` returns a target (`y`).
        x_is_image: True if `x` is an (H, W, C) image (the torch adapter moves C first),
            False if not, None to decide from the batch (4-D batches are images).
    """

    has_targets: bool
    x_is_image: bool | None

    def __len__(self) -> int: ...

    def load(self, index: int, *, seed: int, epoch: int, with_targets: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Sample `index` as `(x, y)` (`y` None without targets), transformed with the
        per-sample random state of (seed, epoch, index)."""
        ...

    def describe(self, index: int) -> str:
        """Where sample `index` comes from (a path or an id), for error messages."""
        ...


class TransformedSource:
    """Shared plumbing: the optional transform and its per-sample seeding."""

    has_targets: bool = False
    x_is_image: bool | None = True
    y_is_image: bool = False  # y is an (H, W, C) image like x (label_mode="input"): adapters lay it out like x

    def __init__(self, transform: object):
        checked = check_transform(transform)
        self.transform = checked
        self._runner = TransformRunner(checked) if checked is not None else None

    @property
    def defers_normalize(self) -> bool:
        """True if `Batches` should call `load(..., defer_normalize=True)`: NOTE [ Normalize
        fused into the batch write ] (xloader/_fused_normalize.py)."""
        takes_it = getattr(type(self).load, "takes_defer_normalize", False)  # not an override's
        return takes_it and self._runner is not None and self._runner.fuses_normalize

    def _transform(
        self, data: dict[str, np.ndarray], *, seed: int, epoch: int, index: int, defer_normalize: bool = False
    ) -> dict[str, Any]:
        if self._runner is None:
            return data
        return self._runner(data, seed=seed, epoch=epoch, index=index, defer_normalize=defer_normalize)

    def validate(self, *, workers: int = 4, progress: bool = False) -> Any:
        """Decode every sample once and report bad files, class counts, image sizes and the
        files this source left out: see `xloader.validation.validate`."""
        from xloader.validation import validate

        return validate(self, workers=workers, progress=progress)  # type: ignore[arg-type]

    def _apply_bad_file_policy(self, on_bad_file: object, *, stacklevel: int = 3) -> None:
        """Call at the end of a source's `__init__`: NOTE [ Bad-file policy ] in validation.py."""
        check_choice("on_bad_file", on_bad_file, ("raise", "skip"))
        self.on_bad_file = on_bad_file
        if not hasattr(self, "skipped"):
            self.skipped: list[tuple[str, str]] = []
        if on_bad_file == "raise":
            return
        from xloader.validation import validate

        runner, self._runner = self._runner, None  # files are checked, not augmentations
        try:
            report = validate(self)  # type: ignore[arg-type]
        finally:
            self._runner = runner
        if not report.bad_files:
            return
        keep = np.ones(len(self), dtype=bool)  # type: ignore[arg-type]
        keep[[bad.index for bad in report.bad_files]] = False
        if not keep.any():
            raise DatasetError(
                f"every one of the {len(keep)} files is bad, e.g. {report.bad_files[0].path}: "
                f"{report.bad_files[0].reason}. Nothing is left in {self!r}."
            )
        self._keep(keep)
        self.skipped += [(bad.path, bad.reason) for bad in report.bad_files]
        warnings.warn(
            f"{len(report.bad_files)} of {len(keep)} files cannot be read and are left out "
            f"(on_bad_file='skip'): {list_preview([bad.path for bad in report.bad_files], 5)}. "
            "The list with reasons is in .skipped.",
            stacklevel=stacklevel,
        )

    def _keep(self, keep: np.ndarray) -> None:
        """Restrict the index to the samples where `keep` (bool, one per sample) is True."""
        raise NotImplementedError(f"{type(self).__name__} cannot leave samples out (on_bad_file='skip').")


def takes_defer_normalize(load: Callable[..., Any]) -> Callable[..., Any]:
    """Marks a source's `load` as taking `defer_normalize=True` (its x may then be a
    `NormalizedImage`). A subclass that overrides `load` is not marked, so it is never asked."""
    load.takes_defer_normalize = True  # type: ignore[attr-defined]
    return load


def keep_ragged(offsets: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For items stored as ragged rows (row i is elements `offsets[i]:offsets[i + 1]`), keeping the
    rows where `keep` is True: (which elements stay, bool; the new offsets, int64)."""
    counts = np.diff(offsets)
    elements = np.repeat(keep, counts)
    new_offsets = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
    np.cumsum(counts[keep], out=new_offsets[1:])
    return elements, new_offsets


def check_image_size(image_size: object) -> tuple[int, int] | None:
    """Validate `image_size` = (height, width) of positive ints, or None (keep file sizes)."""
    if image_size is None:
        return None
    if (
        not isinstance(image_size, Sequence)
        or len(image_size) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in image_size)
    ):
        raise TypeError(f"image_size must be (height, width) as two ints, or None; got {image_size!r}.")
    height, width = (int(v) for v in image_size)
    if height <= 0 or width <= 0:
        raise ValueError(f"image_size must be positive, got {image_size!r}.")
    return height, width


def check_bool(name: str, value: object) -> bool:
    """Return `value` if it is True or False (NumPy's included), else raise `TypeError`."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}; got {value!r}.")


def check_directory(path: str | os.PathLike[str], what: str) -> str:
    """Return `path` as a string if it is an existing directory, else raise with the path named."""
    text = os.fspath(path)
    if not os.path.exists(text):
        raise FileNotFoundError(f"{what} {text!r} does not exist.")
    if not os.path.isdir(text):
        raise DatasetError(f"{what} {text!r} is not a directory.")
    return text


def list_preview(items: Sequence[str], limit: int = 10) -> str:
    """`a, b, c and 7 more` for error messages that must name every bad file without flooding."""
    shown = ", ".join(items[:limit])
    more = len(items) - limit
    return f"{shown} and {more} more" if more > 0 else shown
