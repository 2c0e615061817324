"""Exceptions raised by xloader for data problems.

`TypeError` and `ValueError` are used for wrong arguments; the classes below are for problems
in the data itself, so a training script can tell "my call is wrong" from "a file is bad".
"""

from __future__ import annotations

__all__ = ["XLoaderError", "BadImageError", "DatasetError", "SampleError", "WorkerDiedError"]


class XLoaderError(Exception):
    """Base class of the data errors xloader raises."""


class BadImageError(XLoaderError, ValueError):
    """A file could not be read or decoded, or does not fit its pair (image and mask).

    Attributes:
        path: the file at fault, as a string.
        reason: what is wrong with it, in words.

    The constructor takes the full message as its only positional argument, so the exception
    survives pickling across worker processes and torch's re-raise of worker errors.
    """

    def __init__(self, message: str, *, path: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.path = path
        self.reason = reason


class SampleError(XLoaderError):
    """A sample failed to load for a reason that is not a bad image (e.g. a user loader raised).

    The original exception is chained as `__cause__`. Attributes: `epoch`, `batch`, `index`
    (the sample's position in the dataset) and `path` (the sample's file or id).
    """

    def __init__(
        self,
        message: str,
        *,
        epoch: int | None = None,
        batch: int | None = None,
        index: int | None = None,
        path: str | None = None,
    ):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.index = index
        self.path = path


class DatasetError(XLoaderError, ValueError):
    """The dataset on disk (or as given) cannot be used: an empty root, a class folder with no
    images, images without masks, a duplicate file. The message names the paths and the fix."""


class WorkerDiedError(XLoaderError, RuntimeError):
    """A worker process ended abruptly (killed by a signal, e.g. the out-of-memory killer)."""
