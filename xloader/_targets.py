"""The one target encoder: class labels and masks, from stored values to the `y` a batch holds.

Class labels (`class_target`): "int", "binary", "categorical", "multi_hot". Masks (`MaskFormat`):
"index", "one_hot", "multi_hot" maps, with stored values remapped (`MaskValues`, `mask_values=`),
checked against `num_classes` and the dtype, and finished after the transform (`finish_mask`);
several binary mask files merged into one (`merge_binary_masks`), run-length rows decoded into
one (`decode_rows`). Every source and packed shard encodes its targets here, so each rule and its
message exist once.

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

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from xloader._checks import check_choice, list_preview
from xloader.errors import BadImageError, DatasetError
from xloader.index._sample_index import Ragged

__all__ = [
    "MASK_MODES",
    "MaskFormat",
    "MaskValues",
    "check_binary_classes",
    "check_class_values",
    "checked_index_map",
    "class_target",
    "decode_rows",
    "dtype_name",
    "finish_mask",
    "mask_format",
    "merge_binary_masks",
    "runs_text",
    "runs_to_pixels",
    "size_mismatch",
]

MASK_MODES: tuple[str, ...] = ("index", "one_hot", "multi_hot")
_DTYPES: dict[str, dict[str, np.dtype]] = {
    "index": {"uint8": np.dtype(np.uint8), "int64": np.dtype(np.int64)},
    "one_hot": {"uint8": np.dtype(np.uint8), "float32": np.dtype(np.float32)},
    "multi_hot": {"uint8": np.dtype(np.uint8), "float32": np.dtype(np.float32)},
}


def class_target(label_mode: str | None, classes: Any, num_classes: int) -> np.ndarray:
    """The one target encoder of class labels: "int" -> int64 index, "binary" -> float32 0/1,
    "categorical" and "multi_hot" -> float32 (num_classes,) with a 1 at each of `classes`."""
    if label_mode == "int":
        return np.asarray(classes, dtype=np.int64)
    if label_mode == "binary":
        return np.asarray(classes, dtype=np.float32)
    hot = np.zeros(num_classes, dtype=np.float32)
    hot[classes] = 1.0
    return hot


def check_binary_classes(label_mode: object, class_names: Sequence[str], where: str) -> None:
    """Raise `DatasetError` unless `label_mode="binary"` has exactly two classes (`where`: what
    the classes came from, for the message)."""
    if label_mode == "binary" and len(class_names) != 2:
        shown = list_preview([repr(name) for name in class_names])
        raise DatasetError(
            f"label_mode='binary' needs exactly 2 classes, but {where} has {len(class_names)}: [{shown}]. "
            "Use label_mode='int' or 'categorical'."
        )


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


def size_mismatch(mask_path: str, mask_shape: tuple[int, ...], image_path: str, image_shape: tuple[int, ...]) -> None:
    """Raise `BadImageError` if a mask file and its image differ in height or width."""
    if tuple(mask_shape[:2]) == tuple(image_shape[:2]):
        return
    reason = (
        f"the mask is {mask_shape[0]}x{mask_shape[1]} (HxW) but its image {image_path} "
        f"is {image_shape[0]}x{image_shape[1]}; a mask must have its image's size"
    )
    raise BadImageError(f"cannot use {mask_path}: {reason}.", path=mask_path, reason=reason)


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


class MaskValues:
    """A lookup table from stored values (0..max key) to class indices; other values are refused."""

    __slots__ = ("_known", "_table", "mapping")

    def __init__(self, mapping: Mapping[int, int]):
        self.mapping = {int(k): int(v) for k, v in mapping.items()}
        top = max(self.mapping)
        self._table = np.zeros(top + 1, dtype=np.int64)
        self._known = np.zeros(top + 1, dtype=bool)
        for stored, index in self.mapping.items():
            self._table[stored], self._known[stored] = index, True

    @classmethod
    def of(cls, mapping: object) -> MaskValues | None:
        """Check `mask_values` (None, or a non-empty mapping of ints >= 0 to ints >= 0)."""
        if mapping is None:
            return None
        if not isinstance(mapping, Mapping) or not mapping:
            raise TypeError(f"mask_values must be a non-empty dict of stored value -> class index, got {mapping!r}.")
        for key, value in mapping.items():
            for what, number in (("stored value", key), ("class index", value)):
                if isinstance(number, (bool, np.bool_)) or not isinstance(number, (int, np.integer)) or number < 0:
                    raise ValueError(f"mask_values maps ints >= 0 to ints >= 0; {what} {number!r} is not one.")
        return cls(mapping)

    def apply(self, mask: np.ndarray, path: str) -> np.ndarray:
        """`mask` with every stored value replaced by its class index (uint8 if they all fit, else int64)."""
        values = np.unique(mask)
        unknown = values[(values < 0) | (values >= len(self._known))]
        if not unknown.size:
            unknown = values[~self._known[values]]
        if unknown.size:
            reason = (
                f"mask value {int(unknown[0])} is not a key of mask_values "
                f"(stored values: {values.tolist()[:20]}; mask_values keys: {sorted(self.mapping)})"
            )
            raise BadImageError(f"cannot use {path}: {reason}. Add it to mask_values.", path=path, reason=reason)
        table = self._table.astype(np.uint8) if self._table.max() <= 255 else self._table
        return table[mask]


def merge_binary_masks(
    fmt: MaskFormat, image_shape: tuple[int, ...], masks: Iterable[tuple[int, np.ndarray]]
) -> np.ndarray:
    """One image's binary masks, (class, bool (H, W)) in merge order, as the mask of `fmt`: an
    index map in `fmt.work_dtype` where a later mask wins an overlap, or for "multi_hot" a uint8
    (H, W, classes) stack with one channel per class (packed shards merge with this too)."""
    height, width = image_shape[:2]
    if fmt.mode == "multi_hot":
        mask = np.zeros((height, width, fmt.num_classes - 1), np.uint8)  # type: ignore[operator]
    else:
        mask = np.zeros((height, width), fmt.work_dtype)
    for class_index, on in masks:
        if fmt.mode == "multi_hot":
            mask[on, class_index - 1] = 1
        else:
            mask[on] = class_index
    return mask


def runs_to_pixels(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat 0-based indices of every pixel the runs cover, run by run."""
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, np.int64)
    # Position p of the output belongs to run r: index = starts[r] + (p - first position of r).
    firsts = np.cumsum(lengths) - lengths
    return np.repeat(starts - firsts, lengths) + np.arange(total, dtype=np.int64)


def runs_text(starts: np.ndarray, lengths: np.ndarray) -> str:
    """0-based `starts` and `lengths` as `"start length ..."`, pixels numbered from 1."""
    pairs = np.empty(2 * len(starts), np.int64)
    pairs[0::2], pairs[1::2] = starts.astype(np.int64) + 1, lengths
    return " ".join(map(str, pairs.tolist()))


def decode_rows(
    rows: Ragged,
    index: int,
    shape: tuple[int, int],
    fmt: MaskFormat,
    order: Literal["F", "C"],
    overrun: Callable[[int, int], None],
) -> np.ndarray:
    """The mask of sample `index` from its run-length rows (`rows`: a `Ragged` of rows with
    `classes` and `runs`, itself a `Ragged` of `starts` and `lengths`) at `shape` (H, W): an
    index map in `fmt.work_dtype`, or for "multi_hot" a uint8 (H, W, classes) stack. A run past
    the image calls `overrun(row, end pixel)`, which raises. Packed shards decode with this too."""
    runs, classes = rows.columns["runs"], rows.columns["classes"]
    height, width = shape
    pixels_in_image = height * width
    if fmt.mode == "multi_hot":
        mask = np.zeros((pixels_in_image, fmt.num_classes - 1), np.uint8)  # type: ignore[operator]
    else:
        mask = np.zeros(pixels_in_image, fmt.work_dtype)
    # Rows are sorted by class, so writing them in turn lets the highest class win an overlap.
    for row in rows.span(index):
        starts, lengths = runs.row(row, "starts").astype(np.int64), runs.row(row, "lengths").astype(np.int64)
        if not len(starts):
            continue
        end = int(starts[-1] + lengths[-1])  # runs are increasing: the last one ends last
        if end > pixels_in_image:
            overrun(row, end)
        pixels = runs_to_pixels(starts, lengths)
        if order == "F":  # to row-major positions, so the mask is built C-contiguous
            pixels = (pixels % height) * width + pixels // height
        if fmt.mode == "multi_hot":
            mask[pixels, int(classes[row]) - 1] = 1
        else:
            mask[pixels] = classes[row]
    return mask.reshape(height, width, -1) if fmt.mode == "multi_hot" else mask.reshape(height, width)
