"""What the segmentation sources share: the image+mask transform call, mask-file pairing, the
`unpaired` policy, the `MaskSource` load. Mask formats and checks are the target encoder's
(xloader/_targets.py, NOTE [ Masks through albumentations ]).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any, Literal, TypedDict

import cv2
import numpy as np

from xloader._checks import check_choice, check_directory, list_preview
from xloader._fused_normalize import NormalizedImage
from xloader._targets import MaskFormat, checked_index_map, finish_mask, mask_format, size_mismatch
from xloader.cache import CachedSample, DecodedCache, decode_sample
from xloader.decoding import DEFAULT_MAX_PIXELS, ColorMode, read_mask, resize_mask
from xloader.errors import DatasetError
from xloader.sources._base import ImageSource, TransformedSource

# checked_index_map, mask_format and size_mismatch are also imported from here (xloader/shards/).
__all__ = [
    "MaskOptions",
    "MaskSource",
    "check_mask_interpolation",
    "checked_index_map",
    "files_by_stem",
    "mask_format",
    "read_binary_mask",
    "relative_stem",
    "resize_nearest",
    "size_mismatch",
    "transform_with_mask",
]

MaskMode = Literal["index", "one_hot", "multi_hot"]
Unpaired = Literal["raise", "skip", "background"]


class MaskOptions(TypedDict, total=False):
    """The options `MultiMaskFolder` and `RLEMasks` take with `ImageMaskFolder`'s meaning, and
    these defaults: `mask_mode="index"`, `mask_dtype="uint8"`, `unpaired="raise"`,
    `color_mode="rgb"`, `interpolation="bilinear"`, `follow_links=False`, `on_bad_file="raise"`,
    `max_pixels=DEFAULT_MAX_PIXELS`, `cache=None` (`MaskSource._configure_masks` applies them)."""

    mask_mode: MaskMode
    mask_dtype: str
    unpaired: Unpaired
    color_mode: ColorMode
    interpolation: str
    follow_links: bool
    on_bad_file: str
    max_pixels: int | None
    cache: str | os.PathLike[str] | DecodedCache | None

_NEAREST = (cv2.INTER_NEAREST, cv2.INTER_NEAREST_EXACT)


def check_mask_interpolation(transform: object) -> None:
    """Refuse a transform that resamples masks with anything but nearest neighbour.

    Walks `Compose`-like objects through their `transforms` attribute (no albumentations import).
    See NOTE [ Masks through albumentations ].
    """
    pending = [transform]
    while pending:
        item = pending.pop()
        if item is None:
            continue
        interpolation = getattr(item, "mask_interpolation", None)
        if interpolation is not None and interpolation not in _NEAREST:
            raise ValueError(
                f"{type(item).__name__} resamples masks with mask_interpolation={interpolation!r}, which blends "
                "class indices into values that are not classes. Use cv2.INTER_NEAREST (albumentations' default) "
                "for masks."
            )
        if getattr(item, "area_for_downscale", None) == "image_mask":
            raise ValueError(
                f"{type(item).__name__} has area_for_downscale='image_mask', which averages class indices of masks. "
                "Use area_for_downscale='image' (or None)."
            )
        children = getattr(item, "transforms", None)
        if isinstance(children, Sequence):
            pending.extend(children)


def resize_nearest(mask: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """`xloader.decoding.resize_mask` (nearest neighbour, the one mask resize of the package) for an
    (H, W) or (H, W, K) mask, keeping a channel axis of size 1 (OpenCV drops it)."""
    resized = resize_mask(mask, size)
    return resized[:, :, np.newaxis] if resized.ndim == mask.ndim - 1 else resized


def read_binary_mask(path: str, image_path: str, image_shape: tuple[int, ...]) -> np.ndarray:
    """A binary mask file as a bool (H, W) array: every non-zero pixel is on."""
    mask = read_mask(path)
    size_mismatch(path, mask.shape, image_path, image_shape)
    return mask != 0


def transform_with_mask(
    source: Any,
    image: np.ndarray,
    mask: np.ndarray,
    fmt: MaskFormat,
    *,
    seed: int,
    epoch: int,
    index: int,
    defer_normalize: bool = False,
) -> tuple[Any, np.ndarray]:
    """Run the source's transform on image and mask in one call; return (image, `y` in `fmt`).

    `mask` is an (H, W) index map in `fmt.work_dtype` (modes "index" and "one_hot") or an
    (H, W, K) uint8 0/1 stack ("multi_hot"). See NOTE [ Masks through albumentations ].
    With `defer_normalize`, the image may be a `NormalizedImage` (xloader/_fused_normalize.py).
    """
    out = source._transform(
        {"image": image, "mask": mask}, seed=seed, epoch=epoch, index=index, defer_normalize=defer_normalize
    )
    image = out["image"]
    known = isinstance(image, (np.ndarray, NormalizedImage))
    return image, finish_mask(out["mask"], fmt, image.shape[:2] if known else None)


def relative_stem(path: str) -> str:
    """`x/a.png` -> `x/a`: the name images and masks pair by."""
    return os.path.splitext(path)[0]


def files_by_stem(top: str, files: list[str], what: str) -> dict[str, str]:
    """{path without extension: path}; two files with one stem raise `DatasetError` naming both."""
    stems: dict[str, str] = {}
    clashes: list[str] = []
    for path in files:
        stem = relative_stem(path)
        if stem in stems:
            clashes.append(f"{os.path.join(top, stems[stem])} and {os.path.join(top, path)}")
        stems[stem] = path
    if clashes:
        raise DatasetError(
            f"{what} {top!r} has several files with the same name stem, so pairing is ambiguous: "
            f"{list_preview(clashes)}. Keep one file per stem."
        )
    return stems


class MaskSource(ImageSource):
    """What the segmentation sources share: a sample is its image and the mask `_mask` builds
    for it, resized (the mask with nearest neighbour) and transformed in one call.

    Subclasses call `_configure_masks` first, fill `_index` (column `files`: image paths
    relative to `images_dir`), set `mask_format` and implement `_mask(index, image_shape)`.
    """

    has_targets = True
    mask_format: MaskFormat

    def _configure_masks(
        self,
        images_dir: Any,
        masks_dir: Any,
        names: tuple[str, ...],
        *,
        image_size: tuple[int, int] | None,
        transform: object,
        mask_mode: object = "index",
        mask_dtype: object = "uint8",
        unpaired: object = "raise",
        color_mode: ColorMode = "rgb",
        interpolation: str = "bilinear",
        follow_links: bool = False,
        on_bad_file: str = "raise",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        cache: object = None,
    ) -> None:
        """The set-up every mask source starts with, before a folder is listed: the transform
        (masks resampled with nearest neighbour only), the mask options, the folders (`names`:
        how the messages call them; `masks_dir=None` for none) and the image options, checked."""
        TransformedSource.__init__(self, transform)
        check_mask_interpolation(self.transform)
        mask_format(mask_mode, mask_dtype, 2)  # option errors before any folder is read
        check_choice("unpaired", unpaired, ("raise", "skip", "background"))
        self._configure_images_from(check_directory(images_dir, names[0]), locals())
        if masks_dir is not None:
            self.masks_dir = check_directory(masks_dir, names[-1])
        self.unpaired, self.follow_links, self._on_bad_file = str(unpaired), follow_links, on_bad_file
        self._mask_options = (mask_mode, mask_dtype)

    def _settle_unpaired(
        self, no_mask: list[str], no_image: list[str], rule: str, *, texts: tuple[tuple[str, str], ...] | None = None
    ) -> None:
        """Apply `self.unpaired` to images without masks and masks without images, into
        `self.skipped`. `texts`: what each lacks, said of one and of several (default: naming
        the two folders).

        "raise": `DatasetError` listing both. "skip": both left out, warned about, listed as
        (path, reason) in `.skipped`. "background": images without masks stay (all background);
        masks without images are skipped as with "skip".
        """
        no_mask_text, no_image_text = texts or (
            (f"image has no mask in {self.masks_dir!r}", f"images have no mask in {self.masks_dir!r}"),
            (f"mask has no image in {self.images_dir!r}", f"masks have no image in {self.images_dir!r}"),
        )
        self.skipped: list[tuple[str, str]] = []
        keep_images = self.unpaired == "background"
        reported_images = [] if keep_images else no_mask
        if not reported_images and not no_image:
            return
        problems = []
        for files, (one, several) in ((reported_images, no_mask_text), (no_image, no_image_text)):
            if files:
                problems.append(f"{len(files)} {one if len(files) == 1 else several}: {list_preview(files)}")
        if self.unpaired == "raise":
            message = "; ".join(problems) + f". {rule} Pass unpaired='skip' to leave them out (they are listed in .skipped)"
            if reported_images:
                message += ", or unpaired='background' to use images without masks as all background"
            raise DatasetError(message + ".")
        warnings.warn("; ".join(problems) + ". They are skipped (see .skipped).", stacklevel=3)
        self.skipped = [(p, "image has no mask") for p in reported_images] + [(p, "mask has no image") for p in no_image]

    @property
    def images_dir(self) -> str:
        return self._root

    @property
    def image_files(self) -> list[str]:
        """Image paths relative to `images_dir`, in index order (the same as `filenames`)."""
        return self.filenames

    def _mask(self, index: int, image_shape: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def _cached_sample(self, index: int) -> CachedSample | None:
        """Image and mask of sample `index` as the decoded cache keeps them, or None to cache the
        image only (the mask is then made at each load)."""
        return None

    def _cache_view(self, index: int) -> CachedSample:
        return self._cached_sample(index) or super()._cache_view(index)

    def load(
        self, index: int, *, seed: int, epoch: int, with_targets: bool, defer_normalize: bool = False
    ) -> tuple[Any, np.ndarray | None]:
        sample = self._cached_sample(index) if with_targets and self.decoded_cache is not None else None
        image, file_shape, mask = decode_sample(self, index, sample)  # resized; the mask too if cached
        if not with_targets:
            data = self._transform(
                {"image": image}, seed=seed, epoch=epoch, index=index, defer_normalize=defer_normalize
            )
            return data["image"], None
        if mask is None:
            mask = resize_nearest(self._mask(index, file_shape), self.image_size)
        return transform_with_mask(
            self, image, mask, self.mask_format, seed=seed, epoch=epoch, index=index,
            defer_normalize=defer_normalize,
        )
