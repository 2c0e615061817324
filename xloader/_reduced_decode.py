"""Reduced-size JPEG decode: decode at 1/2, 1/4 or 1/8 scale when the target size allows it.

# NOTE [ Reduced-size decode ]
libjpeg-turbo can skip most of the inverse DCT and decode a JPEG directly at 1/2, 1/4 or 1/8 of
its size (each side rounded up: a 1001-pixel-wide JPEG gives 501, 251 or 126 pixels). OpenCV
exposes this as `IMREAD_REDUCED_*`. With `downscale_on_decode=True` a source decodes each JPEG
at the *largest* reduction whose result still covers `image_size` (after the centred crop of
`keep_aspect_ratio`, if asked), then resizes it to `image_size` with the source's filter as
before. So the resize only ever shrinks, never enlarges, and the result stays close to a full
decode + area resize (PSNR in docs/performance.md), but it is not bit-identical to a full decode:
that is why the option is off by default. Which reduction is used depends only on the file's
declared size and the options, so Keras and torch, any worker count, cached or not, get the same
pixels. Non-JPEG files, and JPEGs too small to reduce, decode at full size.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from xloader._geometry import aspect_crop_box
from xloader._image_header import declared_size

__all__ = ["DownscaleTarget", "check_downscale", "reduced_flags", "reduction"]

_FACTORS = (8, 4, 2)
# Reduced grey decode flags; OR-ing IMREAD_COLOR_RGB (or IMREAD_COLOR, BGR) makes them colour.
_REDUCED = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}
_COLOUR = {
    "rgb": cv2.IMREAD_COLOR_RGB,
    "grayscale": 0,
    "rgba": cv2.IMREAD_COLOR,  # a JPEG has no alpha: BGR, made RGBA by decode_image as a full decode is
}


class DownscaleTarget(NamedTuple):
    """What a reduced decode must still cover: the source's `image_size` and `keep_aspect_ratio`."""

    size: tuple[int, int]
    keep_aspect_ratio: bool


def check_downscale(downscale_on_decode: object, image_size: tuple[int, int] | None) -> bool:
    """Validate a source's `downscale_on_decode` against its (checked) `image_size`."""
    if not isinstance(downscale_on_decode, (bool, np.bool_)):
        raise TypeError(f"downscale_on_decode must be True or False, got {downscale_on_decode!r}.")
    if downscale_on_decode and image_size is None:
        raise ValueError(
            "downscale_on_decode=True needs an image_size: it decodes JPEGs at the smallest scale that still "
            "covers that size. Pass image_size=(height, width), or leave downscale_on_decode out."
        )
    return bool(downscale_on_decode)


def reduction(height: int, width: int, target: DownscaleTarget) -> int:
    """The largest factor in (8, 4, 2) at which an image of (`height`, `width`), decoded at
    1/factor (each side rounded up, as libjpeg does), still covers `target.size` (its centred
    aspect crop does, with `target.keep_aspect_ratio`); 1 if none does."""
    want_height, want_width = target.size
    for factor in _FACTORS:
        reduced_height, reduced_width = -(-height // factor), -(-width // factor)
        if target.keep_aspect_ratio:
            _, _, reduced_height, reduced_width = aspect_crop_box(reduced_height, reduced_width, target.size)
        if reduced_height >= want_height and reduced_width >= want_width:
            return factor
    return 1


def reduced_flags(data: bytes, color_mode: str, target: DownscaleTarget, full_flags: int) -> int:
    """`cv2.imdecode` flags for `data`: a reduced decode (NOTE [ Reduced-size decode ]) if `data`
    is a JPEG that `target` allows to reduce, else `full_flags` unchanged."""
    if not data.startswith(b"\xff\xd8"):
        return full_flags
    size = declared_size(data)
    if size is None:
        return full_flags
    factor = reduction(size[1], size[0], target)
    if factor == 1:
        return full_flags
    return _REDUCED[factor] | _COLOUR[color_mode] | cv2.IMREAD_IGNORE_ORIENTATION
