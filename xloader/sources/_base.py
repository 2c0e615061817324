"""What xloader's own sources share: the index, the transform, the bad-file policy, the decode path.

A source is a layout parser (it fills a `SampleIndex`) plus how one index row becomes a sample.
Pruning, subsetting and fingerprints act on the index here, once; images decode through one
`ImageDecoder` (NOTE [ One sample's path ] in xloader/_decoder.py).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xloader._checks import check_choice, list_preview
from xloader._decoder import ImageDecoder
from xloader._targets import class_target
from xloader.cache import CachedSample, SourceCache, bind_cache, decode_sample, image_sample
from xloader.errors import DatasetError
from xloader.index._sample_index import SampleIndex
from xloader.source import Source, refuse_indexing
from xloader.transforms import TransformRunner, check_transform

__all__ = ["ImageSource", "Source", "TransformedSource", "class_target"]


def _load_takes_defer_normalize(cls: type) -> bool:
    # A subclass whose own `load` has no `defer_normalize` is never asked to defer.
    return "defer_normalize" in inspect.signature(cls.load).parameters  # type: ignore[attr-defined]


class TransformedSource:
    """Shared plumbing: the index, the optional transform and its per-sample seeding.

    Subclasses fill `self._index` (a `SampleIndex`) and implement `load` and `describe`.
    """

    has_targets: bool = False
    x_is_image: bool | None = True
    y_is_image: bool = False  # y is an (H, W, C) image like x (label_mode="input"): adapters lay it out like x
    _index: SampleIndex

    def __init__(self, transform: object):
        checked = check_transform(transform)
        self.transform = checked
        self._runner = TransformRunner(checked) if checked is not None else None

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: object) -> Any:
        refuse_indexing(self)

    @property
    def fuses_normalize(self) -> bool:
        """True if `Batches` should call `load(..., defer_normalize=True)`: NOTE [ Normalize
        fused into the batch write ] (xloader/_fused_normalize.py)."""
        runner = self._runner
        return runner is not None and runner.fuses_normalize and _load_takes_defer_normalize(type(self))

    def _transform(
        self, data: dict[str, np.ndarray], *, seed: int, epoch: int, index: int, defer_normalize: bool = False
    ) -> dict[str, Any]:
        if self._runner is None:
            return data
        return self._runner(data, seed=seed, epoch=epoch, index=index, defer_normalize=defer_normalize)

    def validate(self, *, workers: int | None = None, progress: bool = False) -> Any:
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
        keep = np.ones(len(self), dtype=bool)
        keep[[bad.index for bad in report.bad_files]] = False
        if not keep.any():
            raise DatasetError(
                f"every one of the {len(keep)} files is bad, e.g. {report.bad_files[0].path}: "
                f"{report.bad_files[0].reason}. Nothing is left in {self!r}."
            )
        self._index = self._index.take(keep)
        self.skipped += [(bad.path, bad.reason) for bad in report.bad_files]
        warnings.warn(
            f"{len(report.bad_files)} of {len(keep)} files cannot be read and are left out "
            f"(on_bad_file='skip'): {list_preview([bad.path for bad in report.bad_files], 5)}. "
            "The list with reasons is in .skipped.",
            stacklevel=stacklevel,
        )


class _DecoderOption:
    """A decoder option read and set as the source's own attribute (`source.image_size = ...`
    builds a new, checked decoder)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, source: Any, owner: type | None = None) -> Any:
        return getattr(source.decoder, self.name)

    def __set__(self, source: Any, value: Any) -> None:
        source.decoder = dataclasses.replace(source.decoder, **{self.name: value})


_DECODER_OPTIONS = [option.name for option in dataclasses.fields(ImageDecoder) if option.init]


class ImageSource(TransformedSource):
    """A source whose `x` is an image file: `root` joined with `self._index.files[i]`, decoded
    by `decoder`. Classification sources implement `_target`; mask sources override `load`."""

    x_is_image = True
    decoder: ImageDecoder
    label_mode: str | None = None

    decoded_cache: SourceCache | None = None

    def _configure_images(self, root: str, *, cache: object = None, **image_options: Any) -> None:
        self._root = root
        self.decoder = ImageDecoder(**image_options)
        self.decoded_cache = bind_cache(cache)

    def _configure_images_from(self, root: str, arguments: Mapping[str, Any]) -> None:
        """`_configure_images` with the image options (`ImageDecoder`'s fields, and `cache`)
        found among a constructor's `arguments`, its `locals()`: the constructor's signature
        names them for users, and they are handed on here once (NOTE [ One list of loader
        keywords ] in xloader/batching.py)."""
        names = [*_DECODER_OPTIONS, "cache"]
        self._configure_images(root, **{name: arguments[name] for name in names if name in arguments})

    image_size = _DecoderOption()
    color_mode = _DecoderOption()
    interpolation = _DecoderOption()
    keep_aspect_ratio = _DecoderOption()
    max_pixels = _DecoderOption()
    downscale_on_decode = _DecoderOption()

    def describe(self, index: int) -> str:
        return os.path.join(self._root, self._index.files[index])

    def paths_of(self, indices: Sequence[int]) -> list[str]:
        """The files the samples at `indices` read (`SupportsPaths`), so a batch's remote
        objects are fetched together (NOTE [ Remote storage ]); a sample the decoded cache
        holds reads none."""
        cache, views = self.decoded_cache, [(index, self._cache_view(index)) for index in indices]
        return [path for index, view in views if not (cache and cache.holds(self, index, view)) for path in view.paths]

    def _cache_view(self, index: int) -> CachedSample:
        """Sample `index` as the decoded cache sees it: its files, options and decode."""
        return image_sample(self.decoder, self.describe(index))

    def sample_key(self, index: int) -> str:
        """The file's path relative to the source's folder, with "/" separators."""
        return str(self._index.files[index]).replace(os.sep, "/")

    @property
    def filenames(self) -> list[str]:
        """Image paths relative to the source's folder (`root`, `base_dir`, `images_dir`), in index
        order: Keras's `DirectoryIterator.filenames`."""
        return self._index.files.tolist()

    @property
    def filepaths(self) -> list[str]:
        """Paths joined with the source's folder, in index order."""
        return [os.path.join(self._root, name) for name in self._index.files]

    def _target(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def load(
        self, index: int, *, seed: int, epoch: int, with_targets: bool, defer_normalize: bool = False
    ) -> tuple[Any, np.ndarray | None]:
        image = decode_sample(self, index)[0]  # self.decoder's decode, through the decoded cache
        data = self._transform({"image": image}, seed=seed, epoch=epoch, index=index, defer_normalize=defer_normalize)
        image = data["image"]  # with defer_normalize, possibly a NormalizedImage (NOTE in _fused_normalize.py)
        if not (with_targets and self.has_targets):
            return image, None
        if self.label_mode == "input":
            return image, image  # batched into separate arrays: y is a copy, as Keras's batch_x.copy()
        return image, self._target(index)

