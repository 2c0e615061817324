"""What the segmentation sources share: mask modes and dtypes, the transform call, checks, pairing.

# NOTE [ Masks through albumentations ]
Measured on albumentations 2.0.8 with OpenCV 5.0.0 (NumPy 2.4):
- An int64 mask comes back as int32 from every transform that goes through OpenCV (HorizontalFlip,
  VerticalFlip, Affine, Rotate, SafeRotate, ShiftScaleRotate, Perspective, Elastic/Grid/Optical
  distortion, PiecewiseAffine, ThinPlateSpline, Resize, RandomResizedCrop, LongestMaxSize,
  PadIfNeeded...), but stays int64 through RandomRotate90, Transpose, D4 and crops. With
  `HorizontalFlip(p=0.5)` and `Affine(p=0.5)` the dtype was int32 for 23 of 40 seeds and int64
  for 17: it changes at random. `GridElasticDeform` raises on int64 masks, and every warp
  (Affine, Rotate, Perspective, the distortions) raises on bool masks.
- uint8 and int32 masks, (H, W), (H, W, 1) and (H, W, K) for K = 3, 5, 7, keep their dtype and
  shape through all of those, and mask values stay within the input's set: masks are resampled
  with nearest neighbour unless the user asks otherwise (`mask_interpolation=` on a transform or
  on `Compose`, or `area_for_downscale="image_mask"`), which blends class indices into classes
  that are not there (1 and 3 into 2).
- `mask=` of shape (H, W, K) and `masks=[K arrays of (H, W)]` give identical values. `mask` is
  faster up to K = 4 (one OpenCV call), `masks` from K = 5 (albucore's `maybe_process_in_chunks`
  splits `mask` into chunks of 4 channels: 2.8 ms against 1.5 ms for K = 8 at 256x256). `MaskDropout` and
  `CoarseDropout(mask_indices=...)` read `mask` only, and `MaskDropout` needs it single-channel.
So xloader (1) hands the transform index maps as uint8, or int32 when classes do not fit uint8,
never int64 or bool; (2) hands multi-hot stacks as one (H, W, K) uint8 `mask`; (3) builds one-hot
masks *after* the transform, from the transformed index map, so pixels filled at the border
(`fill_mask=0`) are background rather than "no class"; (4) casts the result to the requested
dtype and checks its shape and values; (5) refuses transforms that interpolate masks.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from xloader._checks import check_choice, list_preview
from xloader._fused_normalize import NormalizedImage
from xloader.cache import CachedSample, decode_sample
from xloader.decoding import read_mask, resize_mask
from xloader.errors import BadImageError, DatasetError
from xloader.sources._base import ImageSource

MaskMode = Literal["index", "one_hot", "multi_hot"]
Unpaired = Literal["raise", "skip", "background"]

MASK_MODES: tuple[str, ...] = ("index", "one_hot", "multi_hot")
_DTYPES: dict[str, dict[str, np.dtype]] = {
    "index": {"uint8": np.dtype(np.uint8), "int64": np.dtype(np.int64)},
    "one_hot": {"uint8": np.dtype(np.uint8), "float32": np.dtype(np.float32)},
    "multi_hot": {"uint8": np.dtype(np.uint8), "float32": np.dtype(np.float32)},
}
_NEAREST = (cv2.INTER_NEAREST, cv2.INTER_NEAREST_EXACT)


def dtype_name(dtype: object) -> object:
    """`np.int64`, `"int64"` and `np.dtype("int64")` all give `"int64"`; anything else is returned as is."""
    try:
        return np.dtype(dtype).name  # type: ignore[call-overload]
    except TypeError:
        return dtype


@dataclass(frozen=True, slots=True, kw_only=True)
class MaskFormat:
    """What `y` a segmentation source returns.

    Attributes:
        mode: "index" (H, W) class indices; "one_hot" (H, W, num_classes) with channel 0 the
            background; "multi_hot" (H, W, num_classes - 1), channel k for class k + 1, overlaps kept.
        dtype: the dtype of `y`.
        num_classes: the number of classes counting the background (index 0), or None (index
            mode only) when unknown.
    """

    mode: str
    dtype: np.dtype
    num_classes: int | None

    @property
    def work_dtype(self) -> np.dtype:
        """The dtype an index map has while it is transformed: uint8 when every class fits, else int32."""
        if self.num_classes is not None:
            return np.dtype(np.uint8) if self.num_classes <= 256 else np.dtype(np.int32)
        return np.dtype(np.uint8) if self.dtype == np.uint8 else np.dtype(np.int32)


def mask_format(
    mask_mode: object,
    mask_dtype: object,
    num_classes: object,
    *,
    modes: Sequence[str] = MASK_MODES,
) -> MaskFormat:
    """Validate the mask options of a source (`ValueError`/`TypeError` naming the option)."""
    check_choice("mask_mode", mask_mode, tuple(modes))
    mode = str(mask_mode)
    dtypes = _DTYPES[mode]
    name = dtype_name(mask_dtype)
    if name not in dtypes:
        options = ", ".join(repr(d) for d in dtypes)
        raise ValueError(f"mask_dtype must be one of {options}; got {mask_dtype!r} (with mask_mode={mode!r}).")
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
            raise TypeError(f"num_classes must be an int or None, got {num_classes!r}.")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 (the background and one class), got {num_classes}.")
        num_classes = int(num_classes)
        if mode == "index" and name == "uint8" and num_classes > 256:
            raise ValueError(f"num_classes={num_classes} does not fit mask_dtype='uint8'. Pass mask_dtype='int64'.")
    elif mode != "index":
        raise ValueError(f"mask_mode={mode!r} needs num_classes (the number of classes, background included).")
    return MaskFormat(mode=mode, dtype=dtypes[str(name)], num_classes=num_classes)


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


def size_mismatch(mask_path: str, mask_shape: tuple[int, ...], image_path: str, image_shape: tuple[int, ...]) -> None:
    """Raise `BadImageError` if a mask file and its image differ in height or width."""
    if tuple(mask_shape[:2]) == tuple(image_shape[:2]):
        return
    reason = (
        f"the mask is {mask_shape[0]}x{mask_shape[1]} (HxW) but its image {image_path} "
        f"is {image_shape[0]}x{image_shape[1]}; a mask must have its image's size"
    )
    raise BadImageError(f"cannot use {mask_path}: {reason}.", path=mask_path, reason=reason)


def read_binary_mask(path: str, image_path: str, image_shape: tuple[int, ...]) -> np.ndarray:
    """A binary mask file as a bool (H, W) array: every non-zero pixel is on."""
    mask = read_mask(path)
    size_mismatch(path, mask.shape, image_path, image_shape)
    return mask != 0


def checked_index_map(
    mask: np.ndarray,
    path: str,
    image_path: str,
    image_shape: tuple[int, ...],
    fmt: MaskFormat,
    mask_values: Any = None,
) -> np.ndarray:
    """A decoded mask file (at `path`) as the index map the transform gets: its size checked
    against its image's, stored values remapped by `mask_values` (a `MaskValues` or None),
    class values checked against `fmt`, in `fmt.work_dtype`."""
    size_mismatch(path, mask.shape, image_path, image_shape)
    if mask_values is not None:
        mask = mask_values.apply(mask, path)
    limit = fmt.dtype if fmt.mode == "index" else fmt.work_dtype
    check_class_values(mask, fmt.num_classes, path, limit)
    # int64 never reaches the transform: NOTE [ Masks through albumentations ].
    return mask.astype(fmt.work_dtype, copy=False)


def check_class_values(mask: np.ndarray, num_classes: int | None, path: str, limit_dtype: np.dtype) -> None:
    """Raise `BadImageError` naming `path` if a class index is >= `num_classes` or does not fit `limit_dtype`."""
    if not mask.size:
        return
    top = int(mask.max())
    if num_classes is not None and top >= num_classes:
        row, column = (int(v) for v in np.argwhere(mask == top)[0])
        reason = (
            f"mask value {top} (first at row {row}, column {column}) is not a class index below "
            f"num_classes={num_classes}"
        )
        hint = " (255 often marks pixels to ignore, as in Pascal VOC)" if top == 255 else ""
        raise BadImageError(
            f"cannot use {path}: {reason}. Pass the right num_classes, or fix the mask{hint}.", path=path, reason=reason
        )
    if limit_dtype.kind in "ui" and top > np.iinfo(limit_dtype).max:
        reason = f"mask values go up to {top}, which does not fit mask_dtype={limit_dtype.name}"
        raise BadImageError(f"cannot use {path}: {reason}. Pass mask_dtype='int64'.", path=path, reason=reason)


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


def finish_mask(mask: Any, fmt: MaskFormat, image_hw: tuple[int, ...] | None) -> np.ndarray:
    """The transformed mask as `y`: shape checked, dtype cast, one-hot built after the transform."""
    array = np.asarray(mask)
    if fmt.mode == "multi_hot":
        channels = fmt.num_classes - 1  # type: ignore[operator]
        if array.ndim == 2 and channels == 1:
            array = array[:, :, np.newaxis]
        expected = f"(H, W, {channels})"
        good = array.ndim == 3 and array.shape[2] == channels
    else:
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        expected = "(H, W)"
        good = array.ndim == 2
    if not good or (image_hw is not None and array.shape[:2] != tuple(image_hw)):
        raise ValueError(
            f"the transform returned a mask of shape {array.shape} for an image of shape "
            f"{tuple(image_hw) if image_hw is not None else '?'}; xloader expects {expected} with the image's "
            "height and width. Do not transpose masks in the transform (no ToTensorV2: the adapters make tensors)."
        )
    if array.size and fmt.num_classes is not None:
        top = int(array.max())
        limit = 1 if fmt.mode == "multi_hot" else fmt.num_classes - 1
        if top > limit or int(array.min()) < 0:
            raise ValueError(
                f"the transform returned mask values up to {top}, but {fmt.mode} masks of {fmt.num_classes} classes "
                f"hold 0..{limit}. A fill_mask value outside that range, or a transform that changes mask values, "
                "causes this."
            )
    if fmt.mode == "one_hot":
        classes = np.arange(fmt.num_classes, dtype=array.dtype)  # type: ignore[arg-type]
        hot = np.equal(array[:, :, np.newaxis], classes)
        return hot.view(np.uint8) if fmt.dtype == np.uint8 else hot.astype(fmt.dtype)
    return np.ascontiguousarray(array, dtype=fmt.dtype)


def settle_unpaired(
    unpaired: str,
    *,
    no_mask: list[str],
    no_image: list[str],
    no_mask_text: str,
    no_image_text: str,
    rule: str,
) -> list[tuple[str, str]]:
    """Apply the `unpaired` policy to images without masks and masks without images.

    "raise": `DatasetError` listing both. "skip": both left out, warned about, returned as
    (path, reason) pairs for `.skipped`. "background": images without masks stay (all
    background); masks without images are skipped as with "skip".
    """
    keep_images = unpaired == "background"
    reported_images = [] if keep_images else no_mask
    if not reported_images and not no_image:
        return []
    problems = []
    if reported_images:
        problems.append(f"{len(reported_images)} {no_mask_text}: {list_preview(reported_images)}")
    if no_image:
        problems.append(f"{len(no_image)} {no_image_text}: {list_preview(no_image)}")
    if unpaired == "raise":
        message = "; ".join(problems) + f". {rule} Pass unpaired='skip' to leave them out (they are listed in .skipped)"
        if reported_images:
            message += ", or unpaired='background' to use images without masks as all background"
        raise DatasetError(message + ".")
    warnings.warn("; ".join(problems) + ". They are skipped (see .skipped).", stacklevel=3)
    return [(p, "image has no mask") for p in reported_images] + [(p, "mask has no image") for p in no_image]


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

    Subclasses fill `_index` (column `files`: image paths relative to `images_dir`), configure
    the images (`_configure_images`), set `mask_format` and implement `_mask(index, image_shape)`.
    """

    has_targets = True
    mask_format: MaskFormat

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
