"""`ImageMaskFolder`: segmentation from an images folder and a masks folder paired by file stem."""

from __future__ import annotations

import os
import warnings
from typing import Literal

import numpy as np

from xloader._strings import StringTable
from xloader.decoding import COLOR_MODES, INTERPOLATIONS, ColorMode, read_image, read_mask, resize_image, resize_mask
from xloader.errors import BadImageError, DatasetError
from xloader.sources._base import TransformedSource, check_choice, check_directory, check_image_size, list_preview
from xloader.sources._walk import list_image_files

__all__ = ["ImageMaskFolder"]

_MASK_DTYPES = {"uint8": np.dtype(np.uint8), "int64": np.dtype(np.int64)}


def _dtype_name(dtype: object) -> object:
    try:
        return np.dtype(dtype).name  # type: ignore[call-overload]
    except TypeError:
        return dtype


def _by_stem(top: str, files: list[str], what: str) -> dict[str, str]:
    stems: dict[str, str] = {}
    clashes: list[str] = []
    for path in files:
        stem = os.path.splitext(path)[0]
        if stem in stems:
            clashes.append(f"{os.path.join(top, stems[stem])} and {os.path.join(top, path)}")
        stems[stem] = path
    if clashes:
        raise DatasetError(
            f"{what} {top!r} has several files with the same name stem, so pairing is ambiguous: "
            f"{list_preview(clashes)}. Keep one file per stem."
        )
    return stems


class ImageMaskFolder(TransformedSource):
    """Image and class-index mask pairs: `images_dir/a.jpg` with `masks_dir/a.png`.

    Files pair by their path relative to their folder, without extension (sub-folders allowed:
    `images/x/a.jpg` pairs with `masks/x/a.png`). Each sample is `x`: uint8 (H, W, C) image and
    `y`: mask of shape (H, W) with dtype `mask_dtype`, where every pixel is a class index.
    Palette ("P") PNG masks give their palette indices, not colours. Both are resized to
    `image_size` (the mask with nearest neighbour, so no new class values appear) and then go
    through `transform(image=x, mask=y)` in one call, so every geometric change applies to both.
    The mask keeps shape (H, W) and `mask_dtype` whatever the transform returns.

    Args:
        images_dir: folder of images.
        masks_dir: folder of masks (PNG recommended: masks must be lossless).
        image_size: (height, width), or None to keep file sizes.
        transform: an albumentations `Compose` (or any `xloader.transforms.Transform`).
        color_mode: "rgb", "rgba" or "grayscale" for the image.
        interpolation: the image's resize filter (the mask always uses nearest).
        mask_dtype: "uint8" (default; up to 256 classes) or "int64" (what torch's
            `CrossEntropyLoss` wants as targets).
        unpaired: "raise" (default): an image without a mask, or a mask without an image, is an
            error that lists them; "skip": they are left out, listed in `self.skipped` and warned about.
        follow_links: follow symbolic links to folders while searching.

    Raises:
        FileNotFoundError: a folder does not exist.
        DatasetError: no images, unpaired files (with `unpaired="raise"`), two files with one stem.
        BadImageError: at load time, a file that cannot be decoded, or a mask whose size differs
            from its image's, or whose values do not fit `mask_dtype`.

    Example:
        >>> seg = ImageMaskFolder("data/images", "data/masks", image_size=(256, 256))  # doctest: +SKIP
        >>> x, y = seg.load(0, seed=0, epoch=0, with_targets=True)  # doctest: +SKIP
        >>> x.shape, y.shape, y.dtype  # doctest: +SKIP
        ((256, 256, 3), (256, 256), dtype('uint8'))
    """

    has_targets = True
    x_is_image = True

    def __init__(
        self,
        images_dir: str | os.PathLike[str],
        masks_dir: str | os.PathLike[str],
        *,
        image_size: tuple[int, int] | None,
        transform: object = None,
        color_mode: ColorMode = "rgb",
        interpolation: str = "bilinear",
        mask_dtype: Literal["uint8", "int64"] = "uint8",
        unpaired: Literal["raise", "skip"] = "raise",
        follow_links: bool = False,
    ):
        super().__init__(transform)
        self.images_dir = check_directory(images_dir, "images_dir")
        self.masks_dir = check_directory(masks_dir, "masks_dir")
        self.image_size = check_image_size(image_size)
        check_choice("color_mode", color_mode, COLOR_MODES)
        check_choice("interpolation", interpolation, tuple(INTERPOLATIONS))
        check_choice("mask_dtype", _dtype_name(mask_dtype), tuple(_MASK_DTYPES))
        check_choice("unpaired", unpaired, ("raise", "skip"))
        self.color_mode = color_mode
        self.interpolation = interpolation
        self.mask_dtype = _MASK_DTYPES[_dtype_name(mask_dtype)]
        self.skipped: list[tuple[str, str]] = []
        """(path, reason) of every file left out by `unpaired="skip"`."""

        images = _by_stem(self.images_dir, list_image_files(self.images_dir, follow_links=follow_links), "images_dir")
        masks = _by_stem(self.masks_dir, list_image_files(self.masks_dir, follow_links=follow_links), "masks_dir")
        if not images:
            raise DatasetError(f"images_dir {self.images_dir!r} has no images.")
        no_mask = [os.path.join(self.images_dir, images[s]) for s in images if s not in masks]
        no_image = [os.path.join(self.masks_dir, masks[s]) for s in masks if s not in images]
        if no_mask or no_image:
            problems = []
            if no_mask:
                problems.append(f"{len(no_mask)} images have no mask in {self.masks_dir!r}: {list_preview(no_mask)}")
            if no_image:
                problems.append(f"{len(no_image)} masks have no image in {self.images_dir!r}: {list_preview(no_image)}")
            if unpaired == "raise":
                raise DatasetError(
                    "; ".join(problems) + ". Files pair by name without extension (a.jpg with a.png). "
                    "Pass unpaired='skip' to leave them out (they are listed in .skipped)."
                )
            self.skipped = [(p, "image has no mask") for p in no_mask] + [(p, "mask has no image") for p in no_image]
            warnings.warn("; ".join(problems) + ". They are skipped (see .skipped).", stacklevel=2)
        stems = sorted(s for s in images if s in masks)
        if not stems:
            raise DatasetError(f"no image in {self.images_dir!r} has a mask in {self.masks_dir!r}.")
        self._images = StringTable(images[s] for s in stems)
        self._masks = StringTable(masks[s] for s in stems)

    def __len__(self) -> int:
        return len(self._images)

    def __repr__(self) -> str:
        return (
            f"ImageMaskFolder({self.images_dir!r}, {self.masks_dir!r}, {len(self)} pairs, "
            f"image_size={self.image_size}, mask_dtype={self.mask_dtype.name})"
        )

    @property
    def image_files(self) -> list[str]:
        """Image paths relative to `images_dir`, in index order."""
        return self._images.tolist()

    @property
    def mask_files(self) -> list[str]:
        """Mask paths relative to `masks_dir`, in index order."""
        return self._masks.tolist()

    def describe(self, index: int) -> str:
        return os.path.join(self.images_dir, self._images[index])

    def _mask_path(self, index: int) -> str:
        return os.path.join(self.masks_dir, self._masks[index])

    def _read_mask(self, index: int, image_shape: tuple[int, ...]) -> np.ndarray:
        path = self._mask_path(index)
        mask = read_mask(path)
        if mask.shape[:2] != image_shape[:2]:
            reason = (
                f"the mask is {mask.shape[0]}x{mask.shape[1]} (HxW) but its image {self.describe(index)} "
                f"is {image_shape[0]}x{image_shape[1]}; a mask must have its image's size"
            )
            raise BadImageError(f"cannot use {path}: {reason}.", path=path, reason=reason)
        if mask.dtype != self.mask_dtype and mask.size and int(mask.max()) > np.iinfo(self.mask_dtype).max:
            reason = f"mask values go up to {int(mask.max())}, which does not fit mask_dtype={self.mask_dtype.name}"
            raise BadImageError(f"cannot use {path}: {reason}. Pass mask_dtype='int64'.", path=path, reason=reason)
        return mask

    def load(self, index: int, *, seed: int, epoch: int, with_targets: bool) -> tuple[np.ndarray, np.ndarray | None]:
        image = read_image(self.describe(index), self.color_mode)
        if not with_targets:
            image = resize_image(image, self.image_size, self.interpolation)
            return self._transform({"image": image}, seed=seed, epoch=epoch, index=index)["image"], None
        mask = self._read_mask(index, image.shape)
        image = resize_image(image, self.image_size, self.interpolation)
        mask = resize_mask(mask, self.image_size)
        out = self._transform({"image": image, "mask": mask}, seed=seed, epoch=epoch, index=index)
        mask = np.asarray(out["mask"])
        if mask.ndim == 3 and mask.shape[2] == 1:
            mask = mask[:, :, 0]
        return out["image"], np.ascontiguousarray(mask, dtype=self.mask_dtype)
