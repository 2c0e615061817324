"""`FileList`: the hand-written generator's pattern, a list of ids with labels, one file per sample."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from xloader import storage
from xloader._strings import StringTable
from xloader.decoding import check_regular_file, read_bytes, read_image
from xloader.errors import BadImageError, DatasetError, SampleError
from xloader.index._sample_index import SampleIndex
from xloader.sources._base import TransformedSource, class_target

__all__ = ["FileList", "load_file"]


def load_file(path: str) -> np.ndarray:
    """The default loader: `.npy` files with `numpy.load`, anything else decoded as an RGB image."""
    if path.lower().endswith(".npy"):
        try:
            if storage.is_url(path):  # NOTE [ Remote storage ]
                import io

                return np.load(io.BytesIO(read_bytes(path)), allow_pickle=False)
            check_regular_file(path)  # a FIFO would block np.load, /dev/zero never end
            return np.load(path, allow_pickle=False)
        except BadImageError:
            raise
        except FileNotFoundError:
            raise BadImageError(f"cannot read {path}: file not found.", path=path, reason="file not found") from None
        except (ValueError, OSError) as error:
            reason = f"not a valid .npy file ({error})"
            raise BadImageError(f"cannot read {path}: {reason}.", path=path, reason=reason) from None
    return read_image(path, "rgb")


def _labels_in_order(ids: Sequence[str], labels: object) -> np.ndarray:
    if isinstance(labels, Mapping):
        missing = [i for i in ids if i not in labels]
        if missing:
            raise DatasetError(f"labels has no entry for {len(missing)} ids, e.g. {missing[:5]}.")
        values = [labels[i] for i in ids]
    else:
        values = list(labels)  # type: ignore[call-overload]
        if len(values) != len(ids):
            raise ValueError(f"labels has {len(values)} entries but there are {len(ids)} ids; they must match.")
    array = np.asarray(values)
    if array.dtype == object:
        raise TypeError("labels must be numbers or equal-length arrays of numbers.")
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return array.astype(np.int64)
    return array


def _check_inside_root(root: str, ids: list[str], suffix: str) -> None:
    """Refuse ids that lead outside `root` once joined to it: ImageManifest's rule for its
    paths (NOTE [ Manifest paths stay inside base_dir ]), applied to the text only."""
    base = os.path.abspath(root)
    prefix = base.rstrip(os.sep) + os.sep
    outside = []
    for i in ids:
        name = f"{i}{suffix}"
        if ".." in name or os.path.isabs(name):  # on POSIX nothing else can leave root
            full = os.path.abspath(os.path.join(base, name))
            if not full.startswith(prefix):
                outside.append(f"{i!r} leads to {full!r}")
    if outside:
        raise DatasetError(
            f"ids must stay inside root {root!r} once joined to it; {len(outside)} do not: {', '.join(outside[:5])}. "
            "Remove '..' steps and absolute paths from the ids, or pass root=None and give full paths as ids."
        )


class FileList(TransformedSource):
    """Samples described by ids (or paths) with labels, each loaded by a function: the pattern of
    the classic Keras `DataGenerator(keras.utils.Sequence)` tutorial (one `.npy` per sample).

    Sample `i` is `x = load(path)` with `path = os.path.join(root, f"{ids[i]}{suffix}")`, passed
    through `transform(image=x)` if a transform is given, and `y = labels[i]` (or
    `labels[ids[i]]` if `labels` is a mapping, as in the tutorial's `labels` dict). Integer labels
    are int64; with `num_classes` they become float32 one-hot vectors. `x` keeps the dtype and
    shape `load` returns; all samples must agree to be batched.

    Args:
        ids: sample ids or paths, in index order; each must be unique.
        labels: a sequence aligned with `ids`, a mapping from id to label, or None (no targets).
        root: folder prefixed to every id. Ids must stay inside it once joined (no `..` step out,
            no absolute path), as `ImageManifest` paths stay inside `base_dir`. The check is on
            the ids' text: no file is read at construction, so a symbolic link inside `root` is
            followed wherever it leads (only to a regular file: see `decoding.read_bytes`).
            Without `root`, ids are paths used as given.
        suffix: text appended to every id, e.g. ".npy".
        load: `load(path) -> numpy.ndarray`; default `load_file` (`.npy` via `numpy.load`,
            anything else decoded as an RGB uint8 image). With process workers it must be
            picklable: a module-level function, not a lambda. Over a URL `root`, `path` is a
            URL: read it with `xloader.decoding.read_bytes(path)` (its bytes were fetched with
            the rest of the batch).
        transform: an albumentations `Compose` (or any `xloader.transforms.Transform`) applied as
            `transform(image=x)`.
        num_classes: if given, integer labels become one-hot float32 of this length.
        x_is_image: whether `x` is an (H, W, C) image (the torch adapter moves C first); None
            decides from the batch (4-D batches are images).
        on_bad_file: "raise" (default): a file that `load` cannot read (`BadImageError`) raises
            when its sample is loaded; "skip": every file is read once now and bad ones are left
            out, listed with reasons in `.skipped` (NOTE [ Bad-file policy ]).
        storage_options: fsspec options when `root` is a URL (docs/remote.md).

    Raises:
        DatasetError: empty or duplicated ids, missing labels, ids leading outside `root`.
        SampleError: at load time, when `load` raises (with the path and the original error).

    Example:
        >>> ids = ["id-1", "id-2"]; labels = {"id-1": 0, "id-2": 1}
        >>> data = FileList(ids, labels, root="data", suffix=".npy")  # doctest: +SKIP
    """

    def __init__(
        self,
        ids: Sequence[str],
        labels: Sequence[Any] | Mapping[str, Any] | np.ndarray | None = None,
        *,
        root: str | os.PathLike[str] | None = None,
        suffix: str = "",
        load: Callable[[str], np.ndarray] | None = None,
        transform: object = None,
        num_classes: int | None = None,
        x_is_image: bool | None = None,
        on_bad_file: str = "raise",
        storage_options: dict | None = None,
    ):
        super().__init__(transform)
        self._mounts = storage.mount(root, storage_options=storage_options)  # NOTE [ Remote storage ]
        if isinstance(ids, (str, bytes)):
            raise TypeError("ids must be a sequence of ids, not a single string.")
        id_list = [str(i) for i in ids]
        if not id_list:
            raise DatasetError("FileList needs at least one id; ids is empty.")
        repeated = sorted(i for i, count in Counter(id_list).items() if count > 1)
        if repeated:
            raise DatasetError(f"ids must be unique; listed more than once: {repeated[:10]}.")
        if load is not None and not callable(load):
            raise TypeError(f"load must be a function path -> numpy array, got {type(load).__name__}.")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
        self.root = os.fspath(root) if root is not None else None
        if self.root is not None:
            _check_inside_root(self.root, id_list, suffix)
        self.suffix = suffix
        self.load_fn = load or load_file
        self.num_classes = num_classes
        self.x_is_image = x_is_image
        label_array = _labels_in_order(id_list, labels) if labels is not None else None
        self.has_targets = label_array is not None
        if num_classes is not None and label_array is not None:
            if not np.issubdtype(label_array.dtype, np.integer) or label_array.ndim != 1:
                raise TypeError("num_classes needs one integer class index per id.")
            bad = label_array[(label_array < 0) | (label_array >= num_classes)]
            if bad.size:
                raise ValueError(f"labels must be in [0, {num_classes}); found {sorted(set(bad.tolist()))[:10]}.")
        columns = {"ids": StringTable(id_list)}
        self._index = SampleIndex(**columns, **({"labels": label_array} if label_array is not None else {}))
        self._apply_bad_file_policy(on_bad_file)

    @property
    def ids(self) -> list[str]:
        return self._index.ids.tolist()

    @property
    def labels(self) -> np.ndarray | None:
        """Every sample's label, in index order (None without labels)."""
        return self._index.labels.copy() if "labels" in self._index.columns else None

    def describe(self, index: int) -> str:
        name = f"{self._index.ids[index]}{self.suffix}"
        return os.path.join(self.root, name) if self.root is not None else name

    def sample_key(self, index: int) -> str:
        """The sample's id."""
        return str(self._index.ids[index])

    def paths_of(self, indices: Sequence[int]) -> list[str]:
        """The files of the samples at `indices` (`storage.SupportsPaths`)."""
        return [self.describe(index) for index in indices]

    def _target(self, index: int) -> np.ndarray:
        label = self._index.labels[index]
        return np.asarray(label) if self.num_classes is None else class_target("categorical", label, self.num_classes)

    def load(self, index: int, *, seed: int, epoch: int, with_targets: bool) -> tuple[np.ndarray, np.ndarray | None]:
        path = self.describe(index)
        try:
            x = np.asarray(self.load_fn(path))
        except (BadImageError, SampleError):
            raise
        except Exception as error:
            raise SampleError(
                f"load({path!r}) raised {type(error).__name__}: {error}", index=index, path=path
            ) from error
        if self._runner is not None:
            x = self._transform({"image": x}, seed=seed, epoch=epoch, index=index)["image"]
        target = self._target(index) if with_targets and self.has_targets else None
        return x, target
