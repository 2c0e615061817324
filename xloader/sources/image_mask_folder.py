"""`ImageMaskFolder`: segmentation from an images folder and a masks folder paired by file stem."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from typing import Literal

import numpy as np

from xloader import storage
from xloader._strings import StringTable
from xloader._targets import MaskValues
from xloader.cache import CachedSample, DecodedCache, image_and_mask_sample
from xloader.decoding import DEFAULT_MAX_PIXELS, ColorMode, read_mask
from xloader.errors import DatasetError
from xloader.index._sample_index import SampleIndex
from xloader.index._walk import list_image_files
from xloader.sources._masks import (
    MaskSource,
    Unpaired,
    checked_index_map,
    files_by_stem,
    mask_format,
    resize_nearest,
)

__all__ = ["ImageMaskFolder"]


def _jpeg_files(names: Iterable[str]) -> list[str]:
    return [name for name in names if os.path.splitext(name)[1].lower() in (".jpg", ".jpeg")]


class ImageMaskFolder(MaskSource):
    """Image and class-index mask pairs: `images_dir/a.jpg` with `masks_dir/a.png`.

    Files pair by their path relative to their folder, without extension (sub-folders allowed:
    `images/x/a.jpg` pairs with `masks/x/a.png`). Each sample is `x`: uint8 (H, W, C) image and
    `y`: the mask, where every pixel of the file is a class index. Palette ("P") PNG masks give
    their palette indices, not colours. Both are resized to `image_size` (the mask with nearest
    neighbour, so no new class values appear) and then go through `transform(image=x, mask=y)`
    in one call, so every geometric change applies to both. `y` is (H, W) in `mask_dtype`
    (`mask_mode="index"`), or (H, W, num_classes) one-hot (`mask_mode="one_hot"`, built after
    the transform); its dtype and shape never depend on the transform's random choices.

    Args:
        images_dir: folder of images.
        masks_dir: folder of masks (PNG recommended: masks must be lossless).
        image_size: (height, width), or None to keep file sizes.
        transform: an albumentations `Compose` (or any `xloader.transforms.Transform`). It must
            resample masks with nearest neighbour (albumentations' default), else `ValueError`.
        color_mode: "rgb", "rgba" or "grayscale" for the image.
        interpolation: the image's resize filter (the mask always uses nearest).
        mask_dtype: with `mask_mode="index"`: "uint8" (default; up to 256 classes) or "int64"
            (what torch's `CrossEntropyLoss` wants as targets); with "one_hot": "uint8" (default)
            or "float32".
        num_classes: the number of classes, background included. Mask values must be below it
            (`BadImageError` naming the file otherwise). Required by `mask_mode="one_hot"`.
        mask_mode: "index" (default): (H, W) class indices; "one_hot": (H, W, num_classes), 0/1.
        mask_values: stored value -> class index, e.g. `{1: 0, 2: 1, 3: 2}` for the Oxford-IIIT
            Pets trimaps (stored 1, 2, 3). Applied to every mask file as it is read, before the
            `num_classes` check, the transform and the one-hot encoding; a stored value that is not
            a key is a `BadImageError` naming the file and the value. None (default): stored
            values are class indices.
        unpaired: "raise" (default): an image without a mask, or a mask without an image, is an
            error that lists them; "skip": they are left out, listed in `self.skipped` and warned
            about; "background": images without a mask are kept with an all-background mask
            (class 0), masks without an image are skipped.
        follow_links: follow symbolic links to folders while searching. Links to files are always
            listed if they lead to a regular file; named pipes, devices and sockets never are.
        on_bad_file: "raise" (default): an unreadable image or mask raises `BadImageError` naming
            it when its sample is loaded; "skip": every sample is read once now and bad ones are
            left out, listed with reasons in `.skipped` (NOTE [ Bad-file policy ]).
        max_pixels: refuse images and masks that declare more pixels than this (decompression
            bombs; NOTE [ Pixel limit ]); None: no limit.
        cache: keep decoded, resized images and masks: None (default), "memory", a directory
            or a `DecodedCache` (NOTE [ Decoded cache ]).
        storage_options: fsspec options when the folders are URLs (docs/remote.md).

    Raises:
        FileNotFoundError: a folder does not exist.
        DatasetError: no images, unpaired files (with `unpaired="raise"`), two files with one stem.
        BadImageError: at load time, a file that cannot be decoded, or a mask whose size differs
            from its image's, or whose values do not fit `mask_dtype` or `num_classes`.

    Example:
        >>> seg = ImageMaskFolder("data/images", "data/masks", image_size=(256, 256))  # doctest: +SKIP
        >>> x, y = seg.load(0, seed=0, epoch=0, with_targets=True)  # doctest: +SKIP
        >>> x.shape, y.shape, y.dtype  # doctest: +SKIP
        ((256, 256, 3), (256, 256), dtype('uint8'))
    """

    def __init__(
        self,
        images_dir: str | os.PathLike[str],
        masks_dir: str | os.PathLike[str],
        *,
        image_size: tuple[int, int] | None,
        transform: object = None,
        color_mode: ColorMode = "rgb",
        interpolation: str = "bilinear",
        mask_dtype: Literal["uint8", "int64", "float32"] = "uint8",
        num_classes: int | None = None,
        mask_mode: Literal["index", "one_hot"] = "index",
        mask_values: Mapping[int, int] | None = None,
        unpaired: Unpaired = "raise",
        follow_links: bool = False,
        on_bad_file: str = "raise",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        cache: str | os.PathLike[str] | DecodedCache | None = None,
        storage_options: dict | None = None,
    ):
        self._mounts = storage.mount(images_dir, masks_dir, storage_options=storage_options)  # NOTE [ Remote storage ]
        self._configure_masks(
            images_dir, masks_dir, ("images_dir", "masks_dir"), image_size=image_size, transform=transform,
            mask_mode=mask_mode, mask_dtype=mask_dtype, unpaired=unpaired, color_mode=color_mode,
            interpolation=interpolation, max_pixels=max_pixels, cache=cache,
        )
        self.mask_values = MaskValues.of(mask_values)
        self.mask_format = mask_format(mask_mode, mask_dtype, num_classes, modes=("index", "one_hot"))
        self.mask_dtype = self.mask_format.dtype
        self.num_classes = self.mask_format.num_classes

        images = files_by_stem(
            self.images_dir, list_image_files(self.images_dir, follow_links=self.follow_links), "images_dir"
        )
        masks = files_by_stem(self.masks_dir, list_image_files(self.masks_dir, follow_links=follow_links), "masks_dir")
        if not images:
            raise DatasetError(f"images_dir {self.images_dir!r} has no images.")
        jpeg_masks, jpeg_images = _jpeg_files(masks.values()), _jpeg_files(images.values())
        if len(jpeg_masks) > len(masks) / 2 and len(jpeg_images) < len(images) / 2:  # JPEG masks, lossless images
            warnings.warn(
                f"masks_dir {self.masks_dir!r} holds JPEG files ({len(jpeg_masks)} of {len(masks)}, e.g. "
                f"{jpeg_masks[0]}) and images_dir {self.images_dir!r} mostly others: were the two swapped?",
                stacklevel=2,
            )
        self._settle_unpaired(
            [os.path.join(self.images_dir, images[s]) for s in images if s not in masks],
            [os.path.join(self.masks_dir, masks[s]) for s in masks if s not in images],
            "Files pair by name without extension (a.jpg with a.png).",
        )
        stems = sorted(s for s in images if s in masks or unpaired == "background")
        if not stems:
            raise DatasetError(f"no image in {self.images_dir!r} has a mask in {self.masks_dir!r}.")
        self._index = SampleIndex(
            files=StringTable(images[s] for s in stems),
            masks=StringTable(masks.get(s, "") for s in stems),  # "": no mask, all background
        )
        self._apply_bad_file_policy(on_bad_file)

    def __repr__(self) -> str:
        return (
            f"ImageMaskFolder({self.images_dir!r}, {self.masks_dir!r}, {len(self)} pairs, "
            f"image_size={self.image_size}, mask_dtype={self.mask_dtype.name}"
            + (f", num_classes={self.num_classes}, mask_mode={self.mask_format.mode!r})" if self.num_classes else ")")
        )

    @property
    def mask_files(self) -> list[str]:
        """Mask paths relative to `masks_dir`, in index order ("" for an image kept without mask)."""
        return self._index.masks.tolist()

    def _cached_sample(self, index: int) -> CachedSample:
        fmt, name = self.mask_format, self._index.masks[index]
        values = None if self.mask_values is None else sorted(self.mask_values.mapping.items())
        options = f"mask={fmt.mode},{fmt.dtype.str},{fmt.num_classes},{fmt.work_dtype.str},values={values}"
        return image_and_mask_sample(
            self.decoder,
            self.describe(index),
            (os.path.join(self.masks_dir, name),) if name else (),
            options,
            fmt.work_dtype,
            lambda shape: resize_nearest(self._mask(index, shape), self.image_size),
        )

    def _mask(self, index: int, image_shape: tuple[int, ...]) -> np.ndarray:
        """The mask file as an index map in `mask_format.work_dtype`, checked against its image."""
        fmt = self.mask_format
        name = self._index.masks[index]
        if not name:
            return np.zeros(image_shape[:2], fmt.work_dtype)
        path = os.path.join(self.masks_dir, name)
        mask = read_mask(path, max_pixels=self.max_pixels)
        return checked_index_map(mask, path, self.describe(index), image_shape, fmt, self.mask_values)
